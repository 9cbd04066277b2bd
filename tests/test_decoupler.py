"""ModalityDecoupler: masking modes, sample kinds, partial loading, real DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    mask_features,
)


def dict_items(kind: str, n: int = 6) -> list[dict]:
    make = (
        (lambda v, s: torch.full(s, float(v)))
        if kind == "tensor"
        else (lambda v, s: np.full(s, float(v), dtype=np.float32))
    )
    return [
        {"audio": make(i + 1, (2,)), "video": make(i + 1, (3, 2)), "label": i % 2} for i in range(n)
    ]


def total(x: object) -> float:
    return float(np.asarray(x).sum())


@pytest.mark.parametrize("kind", ["tensor", "numpy"])
def test_zeros_mode_dict_samples(kind: str) -> None:
    data = ModalityDecoupler(dict_items(kind), ("audio", "video"), mask="zeros")
    sample, index, modality = data[(2, 0)]
    assert (index, modality) == (2, 0)
    assert total(sample["audio"]) == 6.0 and total(sample["video"]) == 0.0
    assert sample["video"].shape == (3, 2) and sample["label"] == 0
    assert type(sample["video"]) is type(dict_items(kind)[0]["video"])
    full, index, modality = data[2]
    assert modality == ALL and total(full["video"]) == 18.0
    assert data[(2, ALL)][0]["video"] is not None


@pytest.mark.parametrize("kind", ["tensor", "numpy"])
def test_zeros_mode_tuple_samples(kind: str) -> None:
    items = [(d["label"], d["audio"], d["video"]) for d in dict_items(kind)]
    data = ModalityDecoupler(items, ("audio", "video"), locations={"audio": 1, "video": 2})
    sample, _, _ = data[(1, 1)]
    assert isinstance(sample, tuple) and sample[0] == 1
    assert total(sample[1]) == 0.0 and total(sample[2]) == 12.0
    assert sample[1].dtype == items[0][1].dtype


def test_drop_mode_removes_inactive_keys_and_collates() -> None:
    data = ModalityDecoupler(dict_items("tensor"), ("audio", "video"), mask="drop")
    sample, _, _ = data[(0, 1)]
    assert set(sample) == {"video", "label"}
    filt = HardSampleFilter(6, ("audio", "video"))
    loader = DataLoader(data, batch_sampler=ReassemblingBatchSampler(filt, 3))
    for batch, _, modality in loader:
        (m,) = set(modality.tolist())
        assert set(batch) == {("audio", "video")[m], "label"}
    with pytest.raises(ValueError, match="mask='drop' needs dict samples"):
        ModalityDecoupler(
            [(1, 2)], ("audio", "video"), locations={"audio": 0, "video": 1}, mask="drop"
        )


def test_none_mode_keeps_sample_and_mask_features_zeroes_inactive_rows() -> None:
    data = ModalityDecoupler(dict_items("tensor"), ("audio", "video"), mask="none")
    sample, _, modality = data[(0, 1)]
    assert total(sample["audio"]) == 2.0 and modality == 1
    feats = {"audio": torch.ones(3, 4, requires_grad=True), "video": torch.ones(3, 4)}
    out = mask_features(feats, torch.tensor([0, 1, ALL]), ("audio", "video"))
    assert out["audio"].sum(1).tolist() == [4.0, 0.0, 4.0]
    assert out["video"].sum(1).tolist() == [0.0, 4.0, 4.0]
    out["audio"].sum().backward()
    assert feats["audio"].grad is not None


class PartialDataset(Dataset):
    """Counts what it loads; can load one modality alone."""

    def __init__(self) -> None:
        self.items = dict_items("tensor")
        self.loads: list[tuple[int, tuple[str, ...]]] = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        self.loads.append((i, ("audio", "video")))
        return self.items[i]

    def load_modalities(self, i: int, names: tuple[str, ...]) -> dict:
        self.loads.append((i, names))
        return {k: v for k, v in self.items[i].items() if k in names or k == "label"}


def test_partial_loader_never_loads_the_masked_modality() -> None:
    base = PartialDataset()
    data = ModalityDecoupler(base, ("audio", "video"), mask="drop")
    base.loads.clear()  # the construction check read dataset[0] and the partial loader
    assert set(data[(3, 0)][0]) == {"audio", "label"}
    assert base.loads == [(3, ("audio",))]
    zeros = ModalityDecoupler(base, ("audio", "video"), mask="zeros")
    base.loads.clear()
    for _ in range(3):
        sample, _, _ = zeros[(4, 1)]
    assert total(sample["audio"]) == 0.0 and sample["audio"].shape == (2,)
    # one full load of sample 0 for the template, then only video loads
    assert base.loads == [
        (4, ("video",)),
        (0, ("audio", "video")),
        (4, ("video",)),
        (4, ("video",)),
    ]


class CountingFetch(Dataset):
    def __init__(self) -> None:
        self.items = dict_items("tensor")
        self.calls = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def __getitems__(self, idx: list[int]) -> list[dict]:
        self.calls += 1
        return [self.items[i] for i in idx]


def test_getitems_forwards_one_batch_call() -> None:
    base = CountingFetch()
    data = ModalityDecoupler(base, ("audio", "video"))
    out = data.__getitems__([(0, 0), (1, 0), 2])
    assert base.calls == 1
    assert [m for _, _, m in out] == [0, 0, ALL]
    assert total(out[0][0]["video"]) == 0.0 and total(out[2][0]["video"]) == 18.0


class LabelledSet(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"audio": torch.full((2,), float(i + 1)), "video": torch.full((3,), float(i + 1))}


def test_persistent_workers_follow_the_assignment_of_every_epoch() -> None:
    n, names = 24, ("audio", "video")
    filt = HardSampleFilter(n, names, score="loss")
    sampler = ReassemblingBatchSampler(filt, 4, order="random", seed=3)
    data = ModalityDecoupler(LabelledSet(n), names)
    loader = DataLoader(data, batch_sampler=sampler, num_workers=2, persistent_workers=True)
    seen_assignments = []
    for epoch in range(3):
        # a different hard modality per sample every epoch
        hard_audio = (torch.arange(n) + epoch) % 3 == 0
        scores = {"audio": hard_audio.float(), "video": torch.full((n,), 0.5)}
        filt.update(torch.arange(n), scores, modality=ALL)
        sampler.set_epoch(epoch)
        assignment = filt.snapshot(epoch)
        seen_assignments.append(assignment.tolist())
        count = 0
        for batch, index, modality in loader:
            (m,) = set(modality.tolist())
            assert bool((assignment[index] == m).all())
            active, other = batch[names[m]], batch[names[1 - m]]
            assert bool((active[:, 0] == index + 1).all())
            assert float(other.abs().sum()) == 0.0
            count += len(index)
        assert count == n
    assert len({tuple(a) for a in seen_assignments}) == 3
