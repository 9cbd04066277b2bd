"""Presets: the paper's recipe and the recommended one build working parts."""

from __future__ import annotations

import pytest
import torch

from remix_data import ALL
from remix_data.presets import PAPER, RECOMMENDED, Preset, build
from remix_data.testing import check_epoch


def test_paper_preset_is_the_library_default() -> None:
    filt, sampler = build(PAPER, 40, ("a", "v"), 4, warmup_epochs=1)
    assert (filt.balance, filt.smoothing, filt.keep_ratio) == ("none", 0.0, [None, None])
    assert (sampler.order, sampler.joint_fraction, sampler.warmup_epochs) == ("sequential", 0.0, 1)
    assert PAPER.scoring == "pass" and PAPER.masked_encoder == "run"


def test_recommended_preset_plans_valid_epochs_with_joint_batches() -> None:
    labels = torch.arange(40) % 4
    filt, sampler = build(RECOMMENDED, 40, ("a", "v"), 4, labels=labels, seed=3)
    filt.update(torch.arange(40), {"a": torch.randn(40, 4), "v": torch.randn(40, 4)})
    (batches,) = check_epoch(sampler, epoch=1)
    assert ALL in {b[0][1] for b in batches}  # a quarter of each subset in joint batches
    counts = filt.stats()["class_counts"]
    assert all(abs(counts["a"][c] - counts["a"][0]) <= 1 for c in range(4))  # class-balanced


def test_build_rejects_bad_presets() -> None:
    with pytest.raises(ValueError, match="pass labels"):
        build(RECOMMENDED, 10, ("a", "v"), 2)
    with pytest.raises(TypeError, match="preset should be a Preset"):
        build("paper", 10, ("a", "v"), 2)  # type: ignore[arg-type]
    custom = Preset("mine", sampler={"order": "random"})
    assert build(custom, 10, ("a", "v"), 2, order="interleave")[1].order == "interleave"
