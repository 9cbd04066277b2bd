"""Seeing what happens: the filter's per-epoch history (data and logging), progress bars."""

from __future__ import annotations

import logging

import pytest
import torch

from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler, scoring_pass


def scored_filter(**kwargs: object) -> HardSampleFilter:
    """8 samples, loss scores: samples 0-2 are hardest for "a", 3-7 for "b"."""
    filt = HardSampleFilter(8, ("a", "b"), score="loss", **kwargs)  # type: ignore[arg-type]
    loss_a = torch.tensor([3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    filt.update(torch.arange(8), {"a": loss_a, "b": torch.full((8,), 1.0)})
    return filt


def test_history_records_each_epoch_as_data() -> None:
    filt = scored_filter(labels=[0, 1, 0, 1, 0, 1, 2, 2])
    sampler = ReassemblingBatchSampler(filt, batch_size=2, warmup_epochs=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        list(sampler)
    assert [h["epoch"] for h in filt.history] == [1, 2]  # warm-up epochs take no snapshot
    record = filt.history[-1]
    assert record["counts"] == {"a": 3, "b": 5}
    assert record["class_counts"] == {"a": [2, 1, 0], "b": [1, 2, 2]}
    assert record["mean_score"] == {"a": pytest.approx(9 / 8), "b": pytest.approx(1.0)}
    assert (record["filtered"], record["unscored"], record["ignored"]) == (0, 0, 0)
    assert filt.stats() == record


def test_history_without_labels_has_no_class_counts_and_counts_unscored() -> None:
    filt = HardSampleFilter(6, ("a", "b"))
    filt.update([0, 1], {"a": torch.zeros(2, 3), "b": torch.zeros(2, 3)})
    record = filt.snapshot(0)
    assert record.tolist() == [1, 1, 0, 1, 0, 1]  # ties to b; unscored spread by index
    (h,) = filt.history
    assert "class_counts" not in h
    assert (h["unscored"], h["counts"]) == (4, {"a": 2, "b": 4})
    assert h["mean_score"] == {"a": 0.0, "b": 0.0}


def test_history_counts_filtered_samples() -> None:
    filt = scored_filter(keep_ratio={"b": 0.5})
    filt.snapshot(0)
    assert filt.history[-1]["counts"] == {"a": 3, "b": 3}
    assert filt.history[-1]["filtered"] == 2


def test_each_snapshot_is_logged_on_the_remix_data_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    filt = scored_filter(keep_ratio={"b": 0.5})
    sampler = ReassemblingBatchSampler(filt, batch_size=2)
    with caplog.at_level(logging.INFO, logger="remix_data"):
        sampler.set_epoch(4)
        sampler.set_epoch(4)  # same epoch: no new snapshot, no new record
        sampler.set_epoch(5)
    records = [r for r in caplog.records if r.name == "remix_data"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    first = records[0].getMessage()
    assert first.startswith("remix epoch 4:")
    assert "a=0.38" in first and "b=0.38" in first and "filtered=2" in first
    assert "unscored=0" in first


def test_logging_is_silent_below_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="remix_data"):
        scored_filter().snapshot(0)
    assert not [r for r in caplog.records if r.name == "remix_data"]


def _pass(progress: bool) -> int:
    base = [{"a": torch.randn(3), "b": torch.randn(3)} for _ in range(10)]
    filt = HardSampleFilter(len(base), ("a", "b"))
    data = ModalityDecoupler(base, ("a", "b"))
    return scoring_pass(
        lambda s: {"a": s["a"], "b": s["b"]}, data, filt, batch_size=4, progress=progress
    )


def test_scoring_pass_shows_a_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    assert _pass(progress=True) == 10
    err = capsys.readouterr().err
    assert "remix scoring" in err and "3/3" in err


def test_scoring_pass_progress_can_be_turned_off(capsys: pytest.CaptureFixture[str]) -> None:
    assert _pass(progress=False) == 10
    assert "remix scoring" not in capsys.readouterr().err
