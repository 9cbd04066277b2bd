"""ModalityDecoupler: masking modes, sample kinds, partial loading, real DataLoader workers."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    RemixCollate,
    mask_features,
)
from remix_data.vocabulary import PAD


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


class SkippingFetch(CountingFetch):
    """A batched fetch that leaves out (or repeats) a sample: a common hand-written bug."""

    def __init__(self, change: str) -> None:
        super().__init__()
        self.change = change

    def __getitems__(self, idx: list[int]) -> list[dict]:
        if self.change == "skip":
            return [self.items[i] for i in idx if i != idx[0]]
        return [self.items[i] for i in idx] + [self.items[idx[-1]]]


@pytest.mark.parametrize("change", ["skip", "extra"])
def test_a_fetch_that_returns_another_count_raises_instead_of_shifting_indices(
    change: str,
) -> None:
    data = ModalityDecoupler(SkippingFetch(change), ("audio", "video"))
    got = 2 if change == "skip" else 4
    with pytest.raises(ValueError, match=rf"__getitems__ should return .* got {got} samples for 3"):
        data.__getitems__([(2, 0), (0, 0), (1, 0)])
    # through a real loader, the error reaches the loop
    sampler = ReassemblingBatchSampler(HardSampleFilter(len(data), data.modalities), 3)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=RemixCollate())
    with pytest.raises(ValueError, match="one sample per index"):
        next(iter(loader))


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


# ------------------------------------------------------- one source of truth
def test_the_filter_gives_names_order_and_size() -> None:
    filt = HardSampleFilter(6, ("video", "audio"))
    data = ModalityDecoupler(dict_items("tensor"), filt)
    assert data.modalities == ("video", "audio")
    sample, _, _ = data[(0, 0)]  # id 0 is video, as for the filter
    assert total(sample["audio"]) == 0.0 and total(sample["video"]) == 6.0
    for size in (5, 7):
        with pytest.raises(ValueError, match=rf"len\(dataset\)=6 and num_samples={size}"):
            ModalityDecoupler(dict_items("tensor"), HardSampleFilter(size, ("audio", "video")))


def test_a_mapping_as_modalities_is_rejected_naming_it() -> None:
    items = [(d["label"], d["audio"], d["video"]) for d in dict_items("tensor")]
    with pytest.raises(TypeError, match=r"modalities=\{'video': 1, 'audio': 0\}, whose order"):
        ModalityDecoupler(items, {"video": 1, "audio": 0})  # type: ignore[arg-type]
    data = ModalityDecoupler(items, ("audio", "video"), locations={"video": 2, "audio": 1})
    sample, _, _ = data[(1, 0)]
    assert total(sample[1]) == 4.0 and total(sample[2]) == 0.0


# ---------------------------------------------------------- sample checks
@pytest.mark.parametrize("mask", ["zeros", "drop", "none"])
def test_a_missing_key_raises_at_construction_naming_what_the_sample_holds(mask: str) -> None:
    nested = [{"inputs": {"audio": torch.ones(2), "video": torch.ones(3)}, "label": 0}]
    with pytest.raises(
        ValueError,
        match=r"modality 'audio' is not in dataset\[0\]: looked for key path 'audio', but "
        r"dataset\[0\] is a dict with keys \['inputs', 'label'\] "
        r"\(inputs: a dict with keys \['audio', 'video'\]\)",
    ):
        ModalityDecoupler(nested, ("audio", "video"), mask=mask)
    typo = [{"aud": torch.ones(2), "video": torch.ones(3)}]
    with pytest.raises(ValueError, match=r"modality 'audio' .* keys \['aud', 'video'\]"):
        ModalityDecoupler(typo, ("audio", "video"), mask=mask)


@pytest.mark.parametrize("mask", ["zeros", "drop"])
def test_nested_dict_samples_through_key_paths(mask: str) -> None:
    base = [
        {"inputs": {"a": torch.full((2,), i + 1.0), "v": torch.full((3,), i + 1.0)}, "y": i}
        for i in range(4)
    ]
    filt = HardSampleFilter(4, ("audio", "video"))
    data = ModalityDecoupler(
        base, filt, mask=mask, locations={"audio": "inputs.a", "video": "inputs.v"}
    )
    loader = DataLoader(data, batch_sampler=ReassemblingBatchSampler(filt, 2))
    for batch, index, modality in loader:
        (m,) = set(modality.tolist())
        active, other = ("a", "v") if m == 0 else ("v", "a")
        assert bool((batch["inputs"][active][:, 0] == index + 1).all())
        if mask == "drop":
            assert other not in batch["inputs"]
        else:
            assert float(batch["inputs"][other].abs().sum()) == 0.0
    assert float(base[0]["inputs"]["v"].sum()) == 3.0  # the wrapped samples are untouched


@dataclass
class Clip:
    audio: torch.Tensor
    video: torch.Tensor
    label: int


@dataclass(frozen=True)
class FrozenClip:
    audio: torch.Tensor
    video: torch.Tensor


class NamedClip(NamedTuple):
    label: int
    audio: torch.Tensor
    video: torch.Tensor


@pytest.mark.parametrize(
    "make",
    [
        lambda i: Clip(torch.full((2,), i + 1.0), torch.full((3,), i + 1.0), i),
        lambda i: FrozenClip(torch.full((2,), i + 1.0), torch.full((3,), i + 1.0)),
        lambda i: NamedClip(i, torch.full((2,), i + 1.0), torch.full((3,), i + 1.0)),
    ],
    ids=["dataclass", "frozen dataclass", "named tuple"],
)
def test_attribute_samples_are_masked_by_name(make: Any) -> None:
    base = [make(i) for i in range(4)]
    data = ModalityDecoupler(base, HardSampleFilter(4, ("audio", "video")))
    sample, index, modality = data[(2, 1)]
    assert type(sample) is type(base[2]) and (index, modality) == (2, 1)
    assert total(sample.audio) == 0.0 and total(sample.video) == 9.0
    assert total(base[2].audio) == 6.0  # the original is untouched
    batch = data.__getitems__([(1, 0), (3, 0)])
    assert [total(s.video) for s, _, _ in batch] == [0.0, 0.0]
    assert [total(s.audio) for s, _, _ in batch] == [4.0, 8.0]
    with pytest.raises(ValueError, match=r"mask='drop' removes modality 'audio' from a mapping"):
        ModalityDecoupler(base, ("audio", "video"), mask="drop")
    with pytest.raises(ValueError, match=r"modality 'video' is not in dataset\[0\].*fields"):
        ModalityDecoupler(base, ("audio", "video"), locations={"video": "frames"})


def test_drop_never_masks_nothing() -> None:
    """A sample that lacks the active modality raises instead of showing every modality."""
    base = [
        {"audio": torch.ones(1), "video": torch.ones(1)},
        {"aud": torch.ones(1), "video": torch.ones(1)},
    ]
    data = ModalityDecoupler(base, ("audio", "video"), mask="drop")
    with pytest.raises(
        ValueError, match=r"no 'audio' \(None or absent at 'audio'.*keys \['aud', 'video'\]"
    ):
        data[(1, 0)]
    with pytest.raises(ValueError, match=r"no 'audio' \(None or absent at 'audio'"):
        data.__getitems__([(1, 0), (1, 0)])


class VariableLength(Dataset):
    """Sequences of length i + 1; loads one modality alone, optionally with placeholders."""

    def __init__(self, placeholders: bool) -> None:
        self.placeholders = placeholders

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return {"audio": torch.ones(i + 1), "video": torch.ones(2 * i + 1)}

    def load_modalities(self, i: int, names: tuple[str, ...]) -> dict:
        full = self[i]
        out = {k: v for k, v in full.items() if k in names}
        if self.placeholders:  # a cheap tensor of each masked modality's own shape
            out.update({k: torch.empty(v.shape) for k, v in full.items() if k not in names})
        return out


def test_partial_loading_with_zeros_uses_each_samples_own_shape_or_raises() -> None:
    with pytest.raises(
        ValueError,
        match=r"modality 'audio' varies in shape \(dataset\[0\]: \(1,\), dataset\[3\]: \(4,\)\)",
    ):
        ModalityDecoupler(VariableLength(placeholders=False), ("audio", "video"))
    data = ModalityDecoupler(VariableLength(placeholders=True), ("audio", "video"))
    for i in range(4):
        sample, _, _ = data[(i, 1)]
        assert sample["audio"].shape == (i + 1,) and total(sample["audio"]) == 0.0
        assert total(sample["video"]) == 2 * i + 1
    # drop and none never need the masked modality's shape
    ModalityDecoupler(VariableLength(placeholders=False), ("audio", "video"), mask="drop")


def test_a_partial_loader_that_leaves_out_the_active_modality_raises() -> None:
    class Broken(VariableLength):
        def load_modalities(self, i: int, names: tuple[str, ...]) -> dict:
            return {"label": 0}

    with pytest.raises(
        ValueError,
        match=r"load_modalities\(0, \('audio',\)\) should return a sample holding 'audio'",
    ):
        ModalityDecoupler(Broken(False), ("audio", "video"), mask="drop")


def test_sampler_passed_as_sampler_raises_naming_batch_sampler() -> None:
    filt = HardSampleFilter(6, ("audio", "video"))
    data = ModalityDecoupler(dict_items("tensor"), filt)
    loader = DataLoader(data, sampler=ReassemblingBatchSampler(filt, 2))  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"got a list of \d keys: .* as batch_sampler=sampler, not sampler=sampler"
    ):
        next(iter(loader))
    with pytest.raises(TypeError, match=r"key's index should be an integer, but got key='3'"):
        data["3"]  # type: ignore[index]


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bfloat16, torch.bool])
def test_zeros_keep_every_dtype_in_both_paths(dtype: torch.dtype) -> None:
    base = [{"audio": torch.ones(3, dtype=dtype), "video": torch.ones(2)} for _ in range(3)]
    data = ModalityDecoupler(base, ("audio", "video"))
    for sample, _, _ in [data[(0, 1)], *data.__getitems__([(1, 1), (2, 1)])]:
        assert sample["audio"].dtype == dtype and not bool(sample["audio"].any())
        assert bool(sample["video"].all())


def test_the_decoupler_pickles_for_spawned_workers() -> None:
    data = ModalityDecoupler(VariableLength(placeholders=True), ("audio", "video"))
    again = pickle.loads(pickle.dumps(data))
    assert total(again[(2, 0)][0]["video"]) == 0.0 and again[(2, 0)][0]["video"].shape == (5,)


def test_mask_features_takes_the_filter_and_one_id_per_batch() -> None:
    filt = HardSampleFilter(3, ("audio", "video"))
    feats = {"audio": torch.ones(2, 3), "video": torch.ones(2, 3)}
    out = mask_features(feats, torch.tensor(1), filt)
    assert out["audio"].sum().item() == 0.0 and out["video"].sum().item() == 6.0
    with pytest.raises(
        ValueError,
        match=r"modality should be ALL \(-1\), PAD \(-2\) or lie in \[0, 2\), but got modality=5",
    ):
        mask_features(feats, 5, filt)
    with pytest.raises(ValueError, match=r"modality should hold ALL .* but got an id 2"):
        mask_features(feats, torch.tensor([0, 2]), filt)


def _reference_mask(value: torch.Tensor, ids: torch.Tensor, m: int) -> torch.Tensor:
    """The reference code's feature masking, written out: ``value * [id == m or id == ALL]``."""
    keep = ((ids == m) | (ids == ALL)).to(value.dtype)
    return value * keep.view(-1, *([1] * (value.dim() - 1)))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 3),
    st.integers(1, 6),
    st.sampled_from(["int", "zero-d", "host rows", "one host id"]),
    st.sampled_from([torch.int64, torch.int32, torch.uint8, torch.bool]),
    st.data(),
)
def test_mask_features_keeps_integer_and_bool_features_in_their_dtype(
    count: int, rows: int, form: str, dtype: torch.dtype, data: st.DataObject
) -> None:
    """Token ids, counts and flags: masked rows are zeros of the feature's own dtype, whichever
    form the ids take (one host id used to return float32 zeros, per-row ids the dtype)."""
    ids_of = st.integers(PAD, count - 1)
    if form == "host rows":
        ids = torch.tensor(data.draw(st.lists(ids_of, min_size=rows, max_size=rows))).long()
        modality: Any = ids
    else:
        one = data.draw(ids_of)
        ids = torch.full((rows,), one, dtype=torch.long)
        modality = {"int": one, "zero-d": torch.tensor(one), "one host id": ids}[form]
    names = tuple("abc"[:count])
    feats = {n: torch.arange(1, 3 * rows + 1).reshape(rows, 3).to(dtype) for n in names}
    out = mask_features(feats, modality, names)
    for m, n in enumerate(names):
        shown = (ids == m) | (ids == ALL)
        assert out[n].dtype == dtype and out[n].shape == feats[n].shape
        assert torch.equal(out[n][shown], feats[n][shown])
        assert not out[n][~shown].any()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 3),
    st.integers(0, 6),
    st.sampled_from(["int", "zero-d", "host rows", "one host id", "meta"]),
    st.sampled_from([torch.float32, torch.bfloat16, torch.float64]),
    st.integers(2, 3),
    st.data(),
)
def test_mask_features_is_the_reference_masking_in_values_and_gradients(
    count: int, rows: int, form: str, dtype: torch.dtype, dims: int, data: st.DataObject
) -> None:
    ids_of = st.integers(PAD, count - 1)  # PAD, ALL and every modality id
    if form in ("int", "zero-d", "one host id"):
        one = data.draw(ids_of)
        ids = torch.full((rows,), one, dtype=torch.long)
        modality: Any = {"int": one, "zero-d": torch.tensor(one), "one host id": ids}[form]
    else:
        ids = torch.tensor(data.draw(st.lists(ids_of, min_size=rows, max_size=rows)))
        ids = ids.long().reshape(rows)
        modality = ids
    names = tuple("abc"[:count])
    gen = torch.Generator().manual_seed(rows)
    shape = (rows, 3) if dims == 2 else (rows, 2, 3)
    base = {n: torch.randn(shape, generator=gen).to(dtype) for n in names}
    if form == "meta":  # the device path (ids on the features' device, not read)
        feats = {n: v.to("meta") for n, v in base.items()}
        out = mask_features(feats, ids.to("meta"), names)
        assert all(out[n].shape == shape and out[n].dtype == dtype for n in names)
        return
    feats = {n: v.clone().requires_grad_() for n, v in base.items()}
    refs = {n: v.clone().requires_grad_() for n, v in base.items()}
    out = mask_features(feats, modality, names)
    expected = {n: _reference_mask(refs[n], ids, m) for m, n in enumerate(names)}
    for n in names:  # bit for bit, the sign of a masked negative zero included
        assert torch.equal(out[n].detach().view(torch.int8), expected[n].detach().view(torch.int8))
    weights = torch.randn(shape, generator=gen).to(dtype)
    sum((o * weights).sum() for o in out.values()).backward()
    sum((e * weights).sum() for e in expected.values()).backward()
    for n in names:
        assert torch.equal(feats[n].grad, refs[n].grad), n  # type: ignore[arg-type]


# ------------------------------------------------------------------ collate
def project_collate(samples: list[dict]) -> dict:
    """A project's own collate: fails on (sample, index, modality) triples."""
    return {
        "audio": torch.stack([s["audio"] for s in samples]),
        "video": torch.stack([s["video"] for s in samples]),
        "label": torch.tensor([s["label"] for s in samples]),
    }


def test_remix_collate_runs_the_projects_collate_on_the_samples_in_workers() -> None:
    filt = HardSampleFilter(6, ("audio", "video"))
    data = ModalityDecoupler(dict_items("tensor"), filt)
    plain = DataLoader(
        data, batch_sampler=ReassemblingBatchSampler(filt, 3), collate_fn=project_collate
    )
    with pytest.raises(TypeError, match=r"triples, not samples: .*RemixCollate\(my_collate\)"):
        next(iter(plain))  # why the wrapper exists, and the error says so
    sampler = ReassemblingBatchSampler(filt, 3)
    wrapped = DataLoader(
        data, batch_sampler=sampler, collate_fn=RemixCollate(project_collate), num_workers=2
    )
    default = DataLoader(data, batch_sampler=ReassemblingBatchSampler(filt, 3))  # same plan
    for (batch, index, modality), (ref, ref_index, ref_modality) in zip(wrapped, default):
        assert index.dtype == modality.dtype == torch.int64
        assert torch.equal(index, ref_index) and torch.equal(modality, ref_modality)
        assert all(torch.equal(batch[k], ref[k]) for k in ("audio", "video", "label"))
    assert torch.equal(RemixCollate()([data[(0, 1)], data[(2, 1)]])[0]["audio"], torch.zeros(2, 2))
    with pytest.raises(
        TypeError, match=r"should receive the .sample, index, modality. triples .* first is dict"
    ):
        RemixCollate()([{"audio": 1}])
    with pytest.raises(TypeError, match="collate_fn should be callable, but got collate_fn=3"):
        RemixCollate(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- names vs the filter's order
def named_items(names: tuple[str, ...], n: int = 8) -> list[dict[str, Any]]:
    return [
        {name: torch.full((2,), float(i)) for name in names} | {"label": i % 2} for i in range(n)
    ]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_names_in_another_order_than_the_filter_fail_at_the_first_batch(
    num_workers: int,
) -> None:
    filt = HardSampleFilter(8, ("audio", "video"))
    sampler = ReassemblingBatchSampler(filt, 4, warmup_epochs=1)
    data = ModalityDecoupler(named_items(("audio", "video")), ("video", "audio"))
    loader = DataLoader(data, batch_sampler=sampler, num_workers=num_workers)
    with pytest.raises(ValueError) as caught:
        next(iter(loader))  # a warm-up batch: caught before any remix epoch
    message = str(caught.value)
    assert "modalities=('video', 'audio')" in message
    assert "modalities=('audio', 'video')" in message
    assert "ModalityDecoupler(dataset, filt)" in message


def test_names_the_filter_lacks_fail_naming_both_lists() -> None:
    filt = HardSampleFilter(8, ("audio", "video"))
    sampler = ReassemblingBatchSampler(filt, 4)
    data = ModalityDecoupler(named_items(("a", "v")), ("a", "v"))
    with pytest.raises(
        ValueError, match=r"modalities=\('a', 'v'\).*modalities=\('audio', 'video'\)"
    ):
        data.__getitems__(next(iter(sampler)))


def test_the_filters_order_and_plain_key_lists_pass() -> None:
    filt = HardSampleFilter(8, ("audio", "video"))
    sampler = ReassemblingBatchSampler(filt, 4)
    items = named_items(("audio", "video"))
    for data in (ModalityDecoupler(items, filt), ModalityDecoupler(items, ("audio", "video"))):
        batches = list(DataLoader(data, batch_sampler=sampler))
        sampler.set_epoch(sampler.epoch + 1)
        assert sum(len(index) for _, index, _ in batches) == 8
    # Used on its own, with keys that name no filter, the decoupler cannot and does not check.
    swapped = ModalityDecoupler(items, ("video", "audio"))
    sample, index, modality = swapped.__getitems__([(3, 0)])[0]
    assert (index, modality) == (3, 0) and float(sample["audio"].sum()) == 0.0


@given(st.permutations(["a", "b", "c", "d"]), st.integers(2, 4))
@settings(max_examples=30, deadline=None)
def test_only_the_filters_own_order_passes(order: list[str], m: int) -> None:
    names = tuple(n for n in order if n in "abcd"[:m])
    filt = HardSampleFilter(8, tuple("abcd"[:m]))
    batch = next(iter(ReassemblingBatchSampler(filt, 4)))
    data = ModalityDecoupler(named_items(tuple("abcd"[:m])), names)
    if names == filt.modalities:
        assert len(data.__getitems__(batch)) == len(batch)
    else:
        with pytest.raises(ValueError, match=rf"modalities={re.escape(repr(names))}"):
            data.__getitems__(batch)
