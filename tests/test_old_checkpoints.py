"""Checkpoints saved by the code of 26fb052 load into today's filter and sampler.

``tests/data/make_checkpoints.py`` wrote them once with that code (do not rerun it):
a filter with scores, NaN, fresh flags, counters, a snapshot with filtered samples,
reweighting weights, labels and smoothing, and a sampler resumed in the middle of a
remix epoch.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from remix_data import HardSampleFilter, ReassemblingBatchSampler

DATA = Path(__file__).resolve().parent / "data"


def _maker() -> Any:
    spec = importlib.util.spec_from_file_location("make_checkpoints", DATA / "make_checkpoints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(DATA / name, weights_only=True)
    return state


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0))


def test_a_filter_checkpoint_of_26fb052_loads_with_every_table_and_record() -> None:
    saved = _load("filter_26fb052.pt")
    filt = _maker().make_filter()
    filt.load_state_dict(copy.deepcopy(saved))
    state = filt.state_dict()
    assert set(saved) <= set(state)
    for key in ("values", "fresh", "scored", "snapshot", "weights"):
        assert _same(state[key], saved[key]), key
    assert saved["values"].isnan().any() and saved["fresh"].any()  # the file holds both kinds
    assert (saved["snapshot"] == -1).any()  # and filtered samples
    assert state["history"] == saved["history"] and len(saved["history"]) == 3
    for key in ("ignored", "duplicates", "snapshot_epoch"):
        assert state[key] == saved[key] and saved[key] > 0, key
    # the restored filter serves the saved epoch and its weights as they were
    assert filt.snapshot(saved["snapshot_epoch"]).tolist() == saved["snapshot"].tolist()
    assert _same(filt.weights(torch.arange(filt.num_samples)), saved["weights"])
    assert filt.stats() == saved["history"][-1]


def test_a_sampler_checkpoint_of_26fb052_resumes_its_epoch() -> None:
    maker = _maker()
    filt = maker.make_filter()
    sampler = ReassemblingBatchSampler(filt, 5, warmup_epochs=1, seed=3)
    saved = _load("sampler_26fb052.pt")
    sampler.load_state_dict(dict(saved))
    filt.load_state_dict(_load("filter_26fb052.pt"))  # the pairing accepts the epoch's snapshot
    assert {k: sampler.state_dict()[k] for k in ("epoch", "yielded")} == {"epoch": 3, "yielded": 2}
    remaining = list(sampler)
    assert len(remaining) == saved["batches"] - saved["yielded"]
    snapshot = filt.snapshot(3)
    for batch in remaining:
        assert {int(snapshot[i]) for i, _ in batch} == {batch[0][1]}  # unimodal, as planned


def test_a_filter_checkpoint_of_26fb052_refuses_another_configuration() -> None:
    other = HardSampleFilter(24, ("audio", "video"), keep_ratio=0.75, reweight=True)
    with pytest.raises(ValueError, match="labels"):
        other.load_state_dict(_load("filter_26fb052.pt"))
