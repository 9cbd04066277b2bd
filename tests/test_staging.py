"""Host updates are staged and written together: the table ends as if each call were written
at once, errors still raise at the call, and every reader sees the staged calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from remix_data import ALL, HardSampleFilter
from remix_data.calls import check_call
from remix_data.scores import score_outputs
from remix_data.staging import HostStage
from remix_data.table import ScoreTable
from remix_data.vocabulary import PAD

NAMES = ("a", "b", "c")
N = 12
DTYPES = (torch.float32, torch.float64, torch.bfloat16)


@st.composite
def calls(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Update calls over ``N`` samples: repeats within and across calls, every id kind,
    heads of 1 (binary) to 4 classes, some holding NaN, +inf or -inf."""
    out = []
    for _ in range(draw(st.integers(1, 8))):
        batch = draw(st.integers(1, 9))
        idx = draw(st.lists(st.integers(0, N - 1), min_size=batch, max_size=batch))
        heads = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
        kind = draw(st.sampled_from(["none", "one", "rows"]))
        ids: Any = None
        if kind == "one":
            ids = draw(st.sampled_from([ALL, PAD, 0, 1, 2]))
        elif kind == "rows":
            ids = torch.tensor(
                draw(st.lists(st.sampled_from([ALL, PAD, 0, 1, 2]), min_size=batch, max_size=batch))
            )
        if len(heads) > 1 and ids is None:
            ids = ALL
        classes = draw(st.sampled_from([1, 2, 4]))
        dtype = draw(st.sampled_from(DTYPES))
        seed = draw(st.integers(0, 2**16))
        logits = {}
        for h in heads:
            x = torch.randn(batch, classes, generator=torch.Generator().manual_seed(seed)) * 4
            bad = draw(st.sampled_from([None, None, None, "nan", "inf", "-inf"]))
            if bad is not None:
                x[draw(st.integers(0, batch - 1)), 0] = float(bad)
            logits[h] = x.to(dtype)
            seed += 1
        out.append({"idx": torch.tensor(idx), "outputs": logits, "modality": ids})
    return out


def reference(cs: list[dict[str, Any]], smoothing: float) -> ScoreTable:
    """Each call checked, scored and written at once: the host path without staging."""
    table = ScoreTable(len(NAMES), N, nonfinite="ignore", smoothing=smoothing)
    for c in cs:
        call = check_call(
            c["idx"], c["outputs"], c["modality"], NAMES, N, snapshot_epoch=None,
            score="confidence",
        )  # fmt: skip
        if call.names:
            heads = [c["outputs"][n] for n in call.names]
            assert isinstance(call.indices, np.ndarray) and not isinstance(call.ids, torch.Tensor)
            scores = score_outputs(heads, "confidence").numpy()
            table.write(call.rows, call.indices, call.ids, scores)
    return table


@given(calls(), st.sampled_from([0.0, 0.5]), st.integers(1, 40))
def test_staged_calls_leave_the_table_of_calls_written_at_once(
    cs: list[dict[str, Any]], smoothing: float, limit: int
) -> None:
    filt = HardSampleFilter(N, NAMES, nonfinite="ignore", smoothing=smoothing)
    filt.stage.limit = limit  # land in the middle of the run too
    for c in cs:
        filt.update(c["idx"], c["outputs"], modality=c["modality"])
    want = reference(cs, smoothing)
    got = filt.state_dict()  # a reader: writes the stage first
    assert len(filt.stage) == 0
    assert np.array_equal(got["values"].numpy(), want.values.numpy(), equal_nan=True)
    assert torch.equal(got["fresh"], want.fresh) and torch.equal(got["scored"], want.scored)
    assert (got["ignored"], got["duplicates"]) == (want.ignored, want.duplicates)


def test_a_non_finite_call_raises_at_the_call_after_the_staged_ones_are_written() -> None:
    filt = HardSampleFilter(4, ("a", "b"))
    filt.update([0, 1], {"a": torch.tensor([[3.0, 0.0], [0.0, 0.0]])}, modality=0)
    assert len(filt.stage) == 1  # staged, not yet in the table
    bad = torch.tensor([[0.0, 1.0], [float("nan"), 0.0]])
    with pytest.raises(ValueError, match=r"outputs\['a'\] gave a non-finite score .*row 1"):
        filt.update([2, 3], {"a": bad}, modality=0)
    assert len(filt.stage) == 0
    table = filt.table.values
    assert not torch.isnan(table[0, :2]).any() and torch.isnan(table[0, 2:]).all()


def test_every_reader_writes_the_stage_first() -> None:
    logits = {"a": torch.tensor([[4.0, 0.0], [0.0, 0.0]]), "b": torch.zeros(2, 2)}
    readers: dict[str, Callable[[HardSampleFilter], Any]] = {
        "assignment": lambda f: f.assignment().tolist(),
        "stats": lambda f: f.stats()["mean_score"],
        "snapshot": lambda f: f.snapshot(0).tolist(),
        "state_dict": lambda f: f.state_dict()["values"].nan_to_num(-1).tolist(),
        "table": lambda f: f.table.values.nan_to_num(-1).tolist(),  # the attribute itself
    }
    for name, read in readers.items():
        staged, direct = HardSampleFilter(2, ("a", "b")), HardSampleFilter(2, ("a", "b"))
        direct.stage.limit = 0  # written at every call
        for f in (staged, direct):
            f.update([0, 1], logits, modality=ALL)
        assert len(staged.stage) == 1 and len(direct.stage) == 0, name
        assert read(staged) == read(direct), name


def test_a_loaded_state_drops_the_staged_calls() -> None:
    empty = HardSampleFilter(2, ("a", "b")).state_dict()
    filt = HardSampleFilter(2, ("a", "b"))
    filt.update([0, 1], {"a": torch.ones(2, 2)}, modality=0)
    filt.load_state_dict(empty)
    assert len(filt.stage) == 0 and torch.isnan(filt.state_dict()["values"]).all()


def test_staging_copies_what_a_loop_may_reuse() -> None:
    filt = HardSampleFilter(3, ("a", "b"))
    idx, ids = torch.tensor([0, 1]), torch.tensor([0, ALL])
    logits = torch.tensor([[5.0, 0], [0, 0]])
    filt.update(idx, {"a": logits, "b": logits.clone()}, modality=ids)
    idx.fill_(2)
    ids.fill_(1)
    logits.zero_()  # a loop overwriting its buffers before the stage is written
    values = filt.state_dict()["values"]
    assert values[0, 0] > 0.5 and values[0, 1] == 0 and torch.isnan(values[:, 2]).all()
    assert torch.isnan(values[1, 0]) and values[1, 1] == 0


def test_a_full_stage_is_written_at_the_call_that_fills_it() -> None:
    filt = HardSampleFilter(8, ("a", "b"))
    filt.stage.limit = 3 * 2 * 2  # three calls of two rows, two classes
    for start in range(0, 6, 2):
        filt.update([start, start + 1], {"a": torch.zeros(2, 2)}, modality=0)
    assert len(filt.stage) == 0
    assert (filt.table.values[0, :6] == 0).all() and torch.isnan(filt.table.values[0, 6:]).all()


def test_loss_scores_are_not_staged() -> None:
    filt = HardSampleFilter(2, ("a", "b"), score="loss")
    filt.update([0, 1], {"a": torch.tensor([0.5, 2.0])}, modality=0)
    assert len(filt.stage) == 0 and filt.table.values[0].tolist() == [0.5, 2.0]


def test_stage_scores_rows_together_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(0)
    heads = [torch.randn(b, 7, generator=gen) * 10 for b in (1, 5, 64, 3)]
    stage = HostStage()
    for i, h in enumerate(heads):
        assert stage.push(np.array([i % 2]), [h], np.arange(len(h)), None)
    scored = stage.drain()
    for h, call in zip(heads, scored):
        alone = score_outputs([h], "confidence").numpy()
        assert call.scores.dtype == np.float32 and np.array_equal(call.scores, alone)


def test_nonfinite_raise_is_never_deferred_into_a_later_call() -> None:
    """A finite call never scores non-finite, so the write of the stage cannot raise."""
    table = ScoreTable(1, 4)
    stage = HostStage()
    extreme = torch.tensor([[3e38, -3e38], [1e-45, 0.0]])
    assert stage.push(np.array([0]), [extreme], np.array([0, 1]), None)
    (call,) = stage.drain()
    assert np.isfinite(call.scores).all()
    table.write(call.rows, call.indices, call.ids, call.scores)  # NonFiniteScore otherwise
    assert torch.isfinite(table.values[0, :2]).all()
