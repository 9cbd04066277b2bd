"""Saved states that cannot be loaded wrongly: one test per rejected state, its message.

Every rejection ``raise`` in the state code of :class:`HardSampleFilter`,
:class:`ReassemblingBatchSampler` and :class:`StreamingRemixer` (and
:mod:`remix_data.states`) has a row or a test here that asserts the message: a
configuration mismatch names the key and both values, a bad table names the key,
the expected and the found shape, dtype or device; a sampler state and a filter
state from different points of the run (or different runs) are refused as a pair.
Each refused load leaves the object unchanged. Last, a state that passed through
``torch.save`` / ``torch.load(weights_only=True)`` still resumes exactly.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

from remix_data import ALL, HardSampleFilter, ReassemblingBatchSampler
from remix_data.states import labels_digest
from remix_data.streaming import StreamingRemixer

N, BATCH, WARMUP = 24, 4, 1
NAMES = ("audio", "video")
LABELS = [i % 3 for i in range(N)]

Batches = list[list[tuple[int, int]]]


def scores(index: torch.Tensor, epoch: int, run: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic per-sample losses that change with the epoch (and the run)."""
    x = index.to(torch.float32)
    return {
        "audio": (x * (3 + epoch + run)) % 7,
        "video": (x * (5 + 2 * epoch)) % 11 + run,
    }


def build(**filter_kwargs: Any) -> tuple[HardSampleFilter, ReassemblingBatchSampler]:
    filt = HardSampleFilter(N, NAMES, score="loss", **filter_kwargs)
    sampler = ReassemblingBatchSampler(filt, BATCH, warmup_epochs=WARMUP, order="random", seed=3)
    return filt, sampler


def train(
    filt: HardSampleFilter,
    sampler: ReassemblingBatchSampler,
    epochs: range,
    *,
    stop: tuple[int, int] | None = None,
    run: int = 0,
) -> tuple[Batches, dict[str, Any] | None]:
    """Online scoring over ``epochs``; with ``stop=(epoch, b)`` return both states after
    ``b`` batches of that epoch (``set_epoch`` of a resumed epoch keeps its position)."""
    seen: Batches = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        if stop == (epoch, 0):
            return seen, {"filter": filt.state_dict(), "sampler": sampler.state_dict()}
        for b, batch in enumerate(sampler, start=1):
            index = torch.tensor([i for i, _ in batch])
            modality = torch.tensor([m for _, m in batch])
            filt.update(index, scores(index, epoch, run), modality=modality)
            seen.append(batch)
            if stop == (epoch, b):
                return seen, {"filter": filt.state_dict(), "sampler": sampler.state_dict()}
    return seen, None


def states_at(epoch: int, b: int, *, run: int = 0) -> dict[str, Any]:
    filt, sampler = build()
    _, state = train(filt, sampler, range(epoch + 1), stop=(epoch, b), run=run)
    assert state is not None
    return state


def message(key: str, saved: Any, mine: Any, owner: str) -> str:
    return re.escape(f"state was saved with {key}={saved!r}, but this {owner} has {key}={mine!r}")


def unchanged(filt: HardSampleFilter) -> None:
    """A refused load changed nothing."""
    fresh = HardSampleFilter(N, NAMES, score="loss").state_dict()
    state = filt.state_dict()
    assert state["snapshot_epoch"] is None and state["history"] == []
    assert torch.equal(state["values"].isnan(), fresh["values"].isnan())


# --------------------------------------------------------------------------------------
# Filter: the configuration that shapes the assignment
# --------------------------------------------------------------------------------------
# (key, the saving filter's arguments, the loading filter's)
FILTER_CONFIG: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("keep_ratio", {"keep_ratio": 0.5}, {}),
    ("keep_ratio", {"keep_ratio": {"audio": 0.5, "video": 0.9}}, {"keep_ratio": 0.5}),
    ("threshold", {"threshold": 2.0}, {}),
    ("labels", {"labels": LABELS}, {}),
    ("smoothing", {"smoothing": 0.5}, {}),
    ("balance", {"balance": "class", "labels": LABELS}, {"labels": LABELS}),
    ("unscored", {"unscored": "filter"}, {}),
    ("reweight", {"reweight": True}, {}),
]


@pytest.mark.parametrize(
    ("key", "saving", "loading_kwargs"), FILTER_CONFIG, ids=[k for k, _, _ in FILTER_CONFIG]
)
def test_filter_state_of_another_configuration_is_rejected(
    key: str, saving: dict[str, Any], loading_kwargs: dict[str, Any]
) -> None:
    saved = HardSampleFilter(N, NAMES, score="loss", **saving)
    saved.update(torch.arange(N), scores(torch.arange(N), 0))
    saved.snapshot(1)
    state = saved.state_dict()
    loading = HardSampleFilter(N, NAMES, score="loss", **loading_kwargs)
    mine = loading.state_dict()[key]
    assert state[key] != mine
    with pytest.raises(ValueError, match=message(key, state[key], mine, "filter")):
        loading.load_state_dict(state)
    unchanged(loading)


def test_filter_state_with_labels_of_another_dataset_is_rejected() -> None:
    """Labels are recorded as a digest: the same labels pass, others name both digests."""
    state = HardSampleFilter(N, NAMES, labels=LABELS).state_dict()
    HardSampleFilter(N, NAMES, labels=torch.tensor(LABELS)).load_state_dict(state)
    other = [(i + 1) % 3 for i in range(N)]
    theirs, mine = labels_digest(LABELS), labels_digest(other)
    assert theirs is not None and mine is not None and theirs != mine
    with pytest.raises(ValueError, match=message("labels", theirs, mine, "filter")):
        HardSampleFilter(N, NAMES, labels=other).load_state_dict(state)


def test_filter_state_of_another_score_kind_is_rejected() -> None:
    state = HardSampleFilter(N, NAMES, score="confidence").state_dict()
    with pytest.raises(ValueError, match=message("score", "confidence", "loss", "filter")):
        HardSampleFilter(N, NAMES, score="loss").load_state_dict(state)


def test_filter_state_of_another_dataset_size_is_rejected() -> None:
    state = HardSampleFilter(N + 1, NAMES).state_dict()
    with pytest.raises(ValueError, match=message("num_samples", N + 1, N, "filter")):
        HardSampleFilter(N, NAMES).load_state_dict(state)


def test_filter_state_of_another_modality_list_is_rejected() -> None:
    state = HardSampleFilter(N, ("audio", "text")).state_dict()
    saved, mine = ["audio", "text"], ["audio", "video"]
    with pytest.raises(ValueError, match=message("modalities", saved, mine, "filter")):
        HardSampleFilter(N, NAMES).load_state_dict(state)
    # the order of the modalities is part of it (an assignment value m means modalities[m])
    state = HardSampleFilter(N, ("video", "audio")).state_dict()
    with pytest.raises(ValueError, match=message("modalities", ["video", "audio"], mine, "filter")):
        HardSampleFilter(N, NAMES).load_state_dict(state)


def test_filter_state_of_another_world_size_is_rejected() -> None:
    """A state from 2 ranks (``world_size`` as a 2-rank run records it) in one process;
    tests/test_distributed.py loads a real 2-rank state the same way."""
    state = {**HardSampleFilter(N, NAMES).state_dict(), "world_size": 2}
    with pytest.raises(ValueError, match=message("world_size", 2, 1, "filter")):
        HardSampleFilter(N, NAMES).load_state_dict(state)


def test_filter_state_without_a_recorded_key_is_rejected() -> None:
    """A state saved before the key was recorded cannot be checked, so it is refused."""
    state = HardSampleFilter(N, NAMES).state_dict()
    del state["balance"]
    with pytest.raises(ValueError, match=r"state should contain 'balance' \(states saved before"):
        HardSampleFilter(N, NAMES).load_state_dict(state)
    state = HardSampleFilter(N, NAMES).state_dict()
    del state["history"]
    with pytest.raises(ValueError, match=r"state should contain 'history'; got keys \["):
        HardSampleFilter(N, NAMES).load_state_dict(state)


def test_a_bool_never_matches_an_int_in_the_configuration() -> None:
    state = {**HardSampleFilter(N, NAMES).state_dict(), "reweight": 0}
    with pytest.raises(ValueError, match=message("reweight", 0, False, "filter")):
        HardSampleFilter(N, NAMES).load_state_dict(state)


def test_a_filter_state_that_is_no_mapping_is_rejected() -> None:
    with pytest.raises(TypeError, match="state should be a mapping, but got list"):
        HardSampleFilter(N, NAMES).load_state_dict([("values", None)])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Filter: truncated, retyped or misplaced tables, impossible values
# --------------------------------------------------------------------------------------
def _scored_state() -> dict[str, Any]:
    filt = HardSampleFilter(N, NAMES, score="loss", reweight=True)
    filt.update(torch.arange(N), scores(torch.arange(N), 0))
    filt.snapshot(2)
    filt.update(torch.arange(4), scores(torch.arange(4), 2), modality=ALL)  # since the sync
    return filt.state_dict()


def _gathered(state: dict[str, Any]) -> dict[str, Any]:
    """The ``ranks`` entry a one-rank gather would hold."""
    return {
        "ignored": torch.zeros(1, dtype=torch.int64),
        "duplicates": torch.zeros(1, dtype=torch.int64),
        "values": state["values"][None].clone(),
        "fresh": state["fresh"][None].clone(),
        "scored": state["scored"][None].clone(),
    }


def _ranks(**change: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda s: {"ranks": {**_gathered(s), **change}}


M = len(NAMES)
TABLES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], type[Exception], str]] = [
    (
        "values truncated",
        lambda s: {"values": s["values"][:, :-1]},
        ValueError,
        f"state['values'] should have shape ({M}, {N}), but got shape ({M}, {N - 1}) "
        "(a truncated or foreign table)",
    ),
    (
        "values of one modality",
        lambda s: {"values": s["values"][0]},
        ValueError,
        f"state['values'] should have shape ({M}, {N}), but got shape ({N},)",
    ),
    (
        "values float64",
        lambda s: {"values": s["values"].double()},
        TypeError,
        "state['values'] should have dtype torch.float32, but got torch.float64",
    ),
    (
        "values on another device",
        lambda s: {"values": s["values"].to("meta")},
        ValueError,
        "state['values'] should be on the CPU, but is on meta "
        "(load the checkpoint with torch.load(..., map_location='cpu'))",
    ),
    (
        "values as a list",
        lambda s: {"values": s["values"].tolist()},
        TypeError,
        "state['values'] should be a tensor, but got list",
    ),
    (
        "values with inf",
        lambda s: {"values": s["values"].masked_fill(torch.eye(M, N, dtype=torch.bool), torch.inf)},
        ValueError,
        "state['values'] should hold finite scores or NaN, but holds inf",
    ),
    (
        "fresh uint8",
        lambda s: {"fresh": s["fresh"].to(torch.uint8)},
        TypeError,
        "state['fresh'] should have dtype torch.bool, but got torch.uint8",
    ),
    (
        "fresh of three modalities",
        lambda s: {"fresh": torch.zeros(3, N, dtype=torch.bool)},
        ValueError,
        f"state['fresh'] should have shape ({M}, {N}), but got shape (3, {N})",
    ),
    (
        "scored truncated",
        lambda s: {"scored": s["scored"][: N // 2]},
        ValueError,
        f"state['scored'] should have shape ({N},), but got shape ({N // 2},)",
    ),
    (
        "ignored negative",
        lambda s: {"ignored": -1},
        ValueError,
        "state['ignored'] should be a non-negative integer value, but got state['ignored']=-1",
    ),
    (
        "ignored as a float",
        lambda s: {"ignored": 0.0},
        TypeError,
        "state['ignored'] should be a non-negative integer value, but got state['ignored']=0.0",
    ),
    (
        "duplicates negative",
        lambda s: {"duplicates": -1},
        ValueError,
        "state['duplicates'] should be a non-negative integer value, but got "
        "state['duplicates']=-1",
    ),
    (
        "snapshot int64",
        lambda s: {"snapshot": s["snapshot"].long()},
        TypeError,
        "state['snapshot'] should have dtype torch.int8, but got torch.int64",
    ),
    (
        "snapshot on another device",
        lambda s: {"snapshot": s["snapshot"].to("meta")},
        ValueError,
        "state['snapshot'] should be on the CPU, but is on meta",
    ),
    (
        "snapshot of a third modality",
        lambda s: {"snapshot": torch.full((N,), M, dtype=torch.int8)},
        ValueError,
        f"state['snapshot'] should hold modality ids in [-1, {M}), but got values in [{M}, {M}]",
    ),
    (
        "snapshot without its epoch",
        lambda s: {"snapshot_epoch": None},
        ValueError,
        "state should hold both a snapshot and its snapshot_epoch or neither, but got "
        "snapshot_epoch=None with snapshot set",
    ),
    (
        "snapshot epoch negative",
        lambda s: {"snapshot_epoch": -1},
        ValueError,
        "state['snapshot_epoch'] should be a non-negative integer value, but got "
        "state['snapshot_epoch']=-1",
    ),
    (
        "weights truncated",
        lambda s: {"weights": torch.ones(N - 1)},
        ValueError,
        f"state['weights'] should have shape ({N},), but got shape ({N - 1},)",
    ),
    (
        "weights float16",
        lambda s: {"weights": torch.ones(N, dtype=torch.float16)},
        TypeError,
        "state['weights'] should have dtype torch.float32, but got torch.float16",
    ),
    (
        "history as a dict",
        lambda s: {"history": {}},
        TypeError,
        "state['history'] should be a list, but got dict",
    ),
    (
        "ranks as a list",
        lambda s: {"ranks": [_gathered(s)]},
        TypeError,
        "state['ranks'] should be a mapping or None, but got list",
    ),
    (
        "ranks without fresh",
        lambda s: {"ranks": {k: v for k, v in _gathered(s).items() if k != "fresh"}},
        ValueError,
        "state['ranks'] should contain 'fresh'; got ['duplicates', 'ignored', 'scored', 'values']",
    ),
    (
        "ranks of two ranks",
        _ranks(ignored=torch.zeros(2, dtype=torch.int64)),
        ValueError,
        "state['ignored'] should have shape (1,), but got shape (2,)",
    ),
    (
        "ranks ignored negative",
        _ranks(ignored=torch.tensor([-3])),
        ValueError,
        "state['ranks']['ignored'] should be non-negative, got tensor([-3])",
    ),
    (
        "ranks duplicates negative",
        _ranks(duplicates=torch.tensor([-2])),
        ValueError,
        "state['ranks']['duplicates'] should be non-negative, got tensor([-2])",
    ),
    (
        "ranks values truncated",
        lambda s: _ranks(values=s["values"][None, :, :-2])(s),
        ValueError,
        f"state['values'] should have shape (1, {M}, {N}), but got shape (1, {M}, {N - 2})",
    ),
    (
        "ranks fresh int64",
        lambda s: _ranks(fresh=s["fresh"][None].long())(s),
        TypeError,
        "state['fresh'] should have dtype torch.bool, but got torch.int64",
    ),
    (
        "ranks scored on another device",
        lambda s: _ranks(scored=s["scored"][None].to("meta"))(s),
        ValueError,
        "state['scored'] should be on the CPU, but is on meta",
    ),
]


@pytest.mark.parametrize(
    ("change", "error", "text"), [t[1:] for t in TABLES], ids=[t[0] for t in TABLES]
)
def test_a_bad_table_is_rejected_before_anything_changes(
    change: Callable[[dict[str, Any]], dict[str, Any]], error: type[Exception], text: str
) -> None:
    """``meta`` stands for any non-CPU device: a checkpoint written on a GPU and loaded
    without ``map_location`` holds ``cuda`` tensors, which take the same branch."""
    state = _scored_state()
    loading = HardSampleFilter(N, NAMES, score="loss", reweight=True)
    with pytest.raises(error, match=re.escape(text)):
        loading.load_state_dict({**state, **change(state)})
    unchanged(loading)


def test_a_good_one_rank_gathered_state_restores_the_table() -> None:
    """The rows above are rejected for their change alone: the unchanged state loads."""
    state = _scored_state()
    loading = HardSampleFilter(N, NAMES, score="loss", reweight=True)
    loading.load_state_dict({**state, "ranks": _gathered(state)})
    restored = loading.state_dict()
    torch.testing.assert_close(restored["values"], state["values"], equal_nan=True)
    assert torch.equal(restored["fresh"], state["fresh"]) and restored["fresh"].any()
    assert restored["snapshot_epoch"] == 2


# --------------------------------------------------------------------------------------
# Sampler: configuration and position
# --------------------------------------------------------------------------------------
SAMPLER_CONFIG: list[tuple[str, dict[str, Any]]] = [
    ("num_replicas", {"num_replicas": 2, "rank": 0}),
    ("batch_size", {"batch_size": 5}),
    ("accumulation_steps", {"accumulation_steps": 2}),
    ("seed", {"seed": 4}),
    ("warmup_epochs", {"warmup_epochs": 2}),
    ("order", {"order": "interleave"}),
    ("drop_last", {"drop_last": True}),
    ("joint_fraction", {"joint_fraction": 0.25}),
    ("tail", {"tail": "keep"}),
]
SAMPLER_BASE = {"batch_size": BATCH, "warmup_epochs": WARMUP, "order": "random", "seed": 3}


@pytest.mark.parametrize(("key", "kwargs"), SAMPLER_CONFIG, ids=[k for k, _ in SAMPLER_CONFIG])
def test_sampler_state_of_another_configuration_is_rejected(
    key: str, kwargs: dict[str, Any]
) -> None:
    saved = ReassemblingBatchSampler(HardSampleFilter(N, NAMES), **{**SAMPLER_BASE, **kwargs})
    state = saved.state_dict()
    loading = ReassemblingBatchSampler(HardSampleFilter(N, NAMES), **SAMPLER_BASE)
    mine = loading.state_dict()[key]
    with pytest.raises(ValueError, match=message(key, state[key], mine, "sampler")):
        loading.load_state_dict(state)
    assert (
        loading.state_dict()
        == ReassemblingBatchSampler(HardSampleFilter(N, NAMES), **SAMPLER_BASE).state_dict()
    )


def test_sampler_state_of_another_dataset_size_or_modality_list_is_rejected() -> None:
    state = ReassemblingBatchSampler(HardSampleFilter(N + 2, NAMES), **SAMPLER_BASE).state_dict()
    loading = ReassemblingBatchSampler(HardSampleFilter(N, NAMES), **SAMPLER_BASE)
    with pytest.raises(ValueError, match=message("num_samples", N + 2, N, "sampler")):
        loading.load_state_dict(state)
    other = ("audio", "text")
    state = ReassemblingBatchSampler(HardSampleFilter(N, other), **SAMPLER_BASE).state_dict()
    with pytest.raises(ValueError, match=message("modalities", other, NAMES, "sampler")):
        loading.load_state_dict(state)


SAMPLER_POSITION: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("no mapping", {}, TypeError, "state should be a mapping, but got list"),
    ("without tail", {"tail": None}, ValueError, "state should contain 'tail'; got keys ["),
    (
        "epoch negative",
        {"epoch": -1},
        ValueError,
        "state['epoch'] should be a non-negative integer value, but got state['epoch']=-1",
    ),
    (
        "yielded as a float",
        {"yielded": 1.0},
        TypeError,
        "state['yielded'] should be a non-negative integer value, but got state['yielded']=1.0",
    ),
    (
        "batches negative",
        {"batches": -2, "samples": (N,)},
        ValueError,
        "state['batches'] should be a non-negative integer value, but got state['batches']=-2",
    ),
    (
        "samples as a string",
        {"batches": 6, "samples": "24"},
        ValueError,
        "state['samples'] should be a sequence of counts, but got '24'",
    ),
    (
        "samples negative",
        {"batches": 6, "samples": (N, -1)},
        ValueError,
        "state['samples'] should be a non-negative integer value, but got state['samples']=-1",
    ),
    (
        "yielded past the epoch",
        {"yielded": 7, "batches": 6, "samples": (N,)},
        ValueError,
        "state['yielded'] should be at most state['batches']=6, but got yielded=7",
    ),
]


@pytest.mark.parametrize(
    ("change", "error", "text"),
    [t[1:] for t in SAMPLER_POSITION],
    ids=[t[0] for t in SAMPLER_POSITION],
)
def test_a_bad_sampler_position_is_rejected(
    change: dict[str, Any], error: type[Exception], text: str
) -> None:
    _, sampler = build()
    state: Any = {**sampler.state_dict(), **change}
    if "tail" in change:
        del state["tail"]
    if not change:
        state = list(state.items())
    with pytest.raises(error, match=re.escape(text)):
        sampler.load_state_dict(state)
    assert sampler.state_dict()["epoch"] == 0 and sampler.state_dict()["yielded"] == 0


# --------------------------------------------------------------------------------------
# The pair: a sampler state and a filter state from different points or runs
# --------------------------------------------------------------------------------------
def _pair_error(epoch: int, b: int, batches: int, need: str, held: str) -> str:
    return re.escape(
        f"the sampler's state resumes epoch {epoch} at batch {b} of {batches}, which needs "
        f"{need}, but the filter's state holds {held}: restore the filter's state from the "
        "same checkpoint (HardSampleFilter.load_state_dict) as the sampler's"
    )


def test_states_of_different_epochs_are_rejected_in_either_load_order() -> None:
    late, early = states_at(2, 2), states_at(1, 3)
    batches = late["sampler"]["batches"]
    error = _pair_error(2, 2, batches, "the snapshot of epoch 2", "the snapshot of epoch 1")
    filt, sampler = build()
    filt.load_state_dict(early["filter"])
    with pytest.raises(ValueError, match=error):
        sampler.load_state_dict(late["sampler"])  # filter first: checked by the sampler
    filt, sampler = build()
    sampler.load_state_dict(late["sampler"])
    with pytest.raises(ValueError, match=error):
        filt.load_state_dict(early["filter"])  # sampler first: checked by the filter
    unchanged(filt)


@pytest.mark.parametrize(
    ("sampler_at", "filter_at", "ours", "theirs"),
    [
        # a snapshot of a later epoch fits only a sampler whose epoch was fully handed out
        ((1, 2), (3, 1), "the snapshot of epoch 1", "the snapshot of epoch 3"),
        # a warm-up sampler with a remix filter state
        ((0, 2), (1, 2), "no snapshot after epoch 0", "the snapshot of epoch 1"),
    ],
)
def test_a_filter_state_of_another_epoch_than_the_samplers_is_rejected(
    sampler_at: tuple[int, int], filter_at: tuple[int, int], ours: str, theirs: str
) -> None:
    mine, other = states_at(*sampler_at), states_at(*filter_at)
    filt, sampler = build()
    sampler.load_state_dict(mine["sampler"])
    batches = mine["sampler"]["batches"]
    with pytest.raises(ValueError, match=_pair_error(*sampler_at, batches, ours, theirs)):
        filt.load_state_dict(other["filter"])


def test_a_resumed_remix_epoch_without_the_filter_state_fails_at_the_snapshot() -> None:
    state = states_at(2, 1)
    batches = state["sampler"]["batches"]
    _, sampler = build()
    sampler.load_state_dict(state["sampler"])
    with pytest.raises(
        ValueError, match=_pair_error(2, 1, batches, "the snapshot of epoch 2", "no snapshot")
    ):
        next(iter(sampler))  # the filter's next snapshot runs the pending check


def test_states_of_the_same_epoch_of_another_run_are_rejected_at_the_first_batch() -> None:
    """Same epochs, other scores (another run): the rebuilt plan differs from the saved one."""
    ours, theirs = states_at(2, 1, run=0), states_at(2, 1, run=3)
    assert ours["sampler"]["samples"] != theirs["sampler"]["samples"]
    filt, sampler = build()
    filt.load_state_dict(theirs["filter"])
    sampler.load_state_dict(ours["sampler"])
    shape = (theirs["sampler"]["batches"], list(theirs["sampler"]["samples"]))
    saved = (ours["sampler"]["batches"], list(ours["sampler"]["samples"]))
    text = (
        f"the resumed epoch 2 plans {shape[0]} batches on this rank from subsets of "
        f"{shape[1]} samples, but its state was saved with {saved[0]} batches from {saved[1]}"
    )
    with pytest.raises(ValueError, match=re.escape(text)):
        next(iter(sampler))


def test_states_of_the_same_point_pair_in_either_order() -> None:
    for filter_first in (True, False):
        state = states_at(2, 2)
        filt, sampler = build()
        if filter_first:
            filt.load_state_dict(state["filter"])
            sampler.load_state_dict(state["sampler"])
        else:
            sampler.load_state_dict(state["sampler"])
            filt.load_state_dict(state["filter"])
        assert len(list(sampler)) == state["sampler"]["batches"] - 2


# --------------------------------------------------------------------------------------
# torch.load(weights_only=True) of a saved state still resumes
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["mid warm-up", "after a snapshot", "mid remix", "epoch end"])
def test_a_state_loaded_with_weights_only_resumes_exactly(where: str) -> None:
    epochs = range(4)
    full_filter, full_sampler = build()
    whole, _ = train(full_filter, full_sampler, epochs)
    last = len(train(*build(), range(3))[0]) - len(train(*build(), range(2))[0])
    stop = {"mid warm-up": (0, 3), "after a snapshot": (1, 0), "mid remix": (1, 4)}.get(
        where, (2, last)
    )
    filt, sampler = build()
    before, state = train(filt, sampler, epochs, stop=stop)
    assert state is not None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    reread = torch.load(buffer, weights_only=True)
    filt, sampler = build()
    filt.load_state_dict(reread["filter"])
    sampler.load_state_dict(reread["sampler"])
    after, _ = train(filt, sampler, range(stop[0], 4))
    assert before + after == whole
    assert filt.history == full_filter.history and len(filt.history) == 3
    torch.testing.assert_close(
        filt.state_dict()["values"], full_filter.state_dict()["values"], equal_nan=True
    )


# --------------------------------------------------------------------------------------
# StreamingRemixer
# --------------------------------------------------------------------------------------
def stream(n: int = N) -> list[dict[str, Any]]:
    return [{"id": i, "audio": torch.ones(2) * i, "video": torch.ones(3) * i} for i in range(n)]


STREAM_BASE: dict[str, Any] = {"batch_size": BATCH, "warmup_epochs": WARMUP, "seed": 3}
STREAM_CONFIG: list[tuple[str, dict[str, Any]]] = [
    ("num_replicas", {"num_replicas": 2, "rank": 0}),
    ("rank", {"num_replicas": 2, "rank": 1}),
    ("batch_size", {"batch_size": 5}),
    ("accumulation_steps", {"accumulation_steps": 2}),
    ("seed", {"seed": 4}),
    ("warmup_epochs", {"warmup_epochs": 0}),
    ("order", {"order": "random"}),
    ("drop_last", {"drop_last": True}),
    ("tail", {"tail": "keep"}),
    ("buffer_size", {"buffer_size": 8}),
]


@pytest.mark.parametrize(("key", "kwargs"), STREAM_CONFIG, ids=[k for k, _ in STREAM_CONFIG])
def test_streaming_state_of_another_configuration_is_rejected(
    key: str, kwargs: dict[str, Any]
) -> None:
    filt = HardSampleFilter(N, NAMES)
    base = {**STREAM_BASE, "num_replicas": 2, "rank": 0} if key == "rank" else STREAM_BASE
    state = StreamingRemixer(stream(), filt, **{**base, **kwargs}).state_dict()
    loading = StreamingRemixer(stream(), filt, **base)
    mine = loading.state_dict()[key]
    with pytest.raises(ValueError, match=message(key, state[key], mine, "remixer")):
        loading.load_state_dict(state)


def test_streaming_state_of_another_dataset_or_modality_list_is_rejected() -> None:
    loading = StreamingRemixer(stream(), HardSampleFilter(N, NAMES), **STREAM_BASE)
    state = StreamingRemixer(stream(), HardSampleFilter(N + 1, NAMES), **STREAM_BASE).state_dict()
    with pytest.raises(ValueError, match=message("num_samples", N + 1, N, "remixer")):
        loading.load_state_dict(state)
    other = HardSampleFilter(N, ("audio", "text"))
    samples = [{"id": s["id"], "audio": s["audio"], "text": s["video"]} for s in stream()]
    state = StreamingRemixer(samples, other, **STREAM_BASE).state_dict()
    with pytest.raises(
        ValueError, match=message("modalities", ["audio", "text"], list(NAMES), "remixer")
    ):
        loading.load_state_dict(state)


def _live_state(n_batches: int = 2) -> tuple[dict[str, Any], HardSampleFilter]:
    filt = HardSampleFilter(N, NAMES)
    remixer = StreamingRemixer(stream(), filt, **STREAM_BASE)
    it = remixer.iterate(0, 1)
    for _ in range(n_batches):
        next(it)
    return remixer.state_dict(), filt


STREAM_POSITION: list[tuple[str, Callable[[dict[str, Any]], Any], type[Exception], str]] = [
    ("no mapping", lambda s: list(s.items()), TypeError, "state should be a mapping, but got list"),
    (
        "without position",
        lambda s: {k: v for k, v in s.items() if k != "position"},
        ValueError,
        "state should contain 'position'; got keys [",
    ),
    (
        "epoch negative",
        lambda s: {**s, "epoch": -1},
        ValueError,
        "state['epoch'] should be a non-negative integer value, but got state['epoch']=-1",
    ),
]


@pytest.mark.parametrize(
    ("change", "error", "text"),
    [t[1:] for t in STREAM_POSITION],
    ids=[t[0] for t in STREAM_POSITION],
)
def test_a_bad_streaming_state_is_rejected_at_load(
    change: Callable[[dict[str, Any]], Any], error: type[Exception], text: str
) -> None:
    state, filt = _live_state()
    loading = StreamingRemixer(stream(), filt, **STREAM_BASE)
    with pytest.raises(error, match=re.escape(text)):
        loading.load_state_dict(change(state))


STREAM_RESUME: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str]] = [
    (
        "another worker",
        lambda s: {**s, "worker": 1, "num_workers": 2},
        "state was saved by worker 1 of 2, but is loaded by worker 0 of 1: resume with the "
        "same number of DataLoader workers",
    ),
    (
        "position past the epoch",
        lambda s: {**s, "position": 99},
        "state['position'] should be at most 6 batches, but got 99",
    ),
    (
        "buffers of three modalities",
        lambda s: {**s, "buffers": [*s["buffers"], []]},
        "state holds 4 buffers, expected 3",  # one per modality and one for joint batches
    ),
    (
        "read past the source",
        lambda s: {**s, "read": N + 5},
        f"the source ended after fewer than the {N + 5} samples the resumed state had read: "
        "it does not replay the same epoch",
    ),
]


@pytest.mark.parametrize(
    ("change", "text"), [t[1:] for t in STREAM_RESUME], ids=[t[0] for t in STREAM_RESUME]
)
def test_a_bad_streaming_state_is_rejected_at_the_next_iteration(
    change: Callable[[dict[str, Any]], dict[str, Any]], text: str
) -> None:
    state, filt = _live_state()
    loading = StreamingRemixer(stream(), filt, **STREAM_BASE)
    loading.load_state_dict(change(state))
    with pytest.raises(ValueError, match=re.escape(text)):
        next(loading.iterate(0, 1))


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
def test_a_worker_state_of_another_epoch_is_rejected_in_the_worker() -> None:
    """A worker cannot prepare the saved epoch itself (the main process must call set_epoch):
    the error raised in the DataLoader worker reaches the loop."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    filt = HardSampleFilter(N, NAMES)
    remixer = StreamingRemixer(stream(), filt, **STREAM_BASE)
    remixer.set_epoch(1)
    loader = StatefulDataLoader(remixer, batch_size=None, num_workers=1)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    del it
    fresh = StatefulDataLoader(
        StreamingRemixer(stream(), filt, **STREAM_BASE), batch_size=None, num_workers=1
    )
    fresh.load_state_dict(state)
    text = (
        "state was saved in epoch 1, but the remixer holds epoch 0: call set_epoch(1) in the "
        "main process before resuming"
    )
    with pytest.raises(ValueError, match=re.escape(text)):
        list(fresh)
