"""Behaviours no test pinned before issue 20 (a regression there would have landed), and
their siblings: state round trips and the rounding rules, each drawn at the awkward
cases (non-integer shares, halves, scores on a threshold, key orders)."""

from __future__ import annotations

import io
import math
from fractions import Fraction
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st

from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    remix_loss,
    scoring_pass,
)
from remix_data.presets import Preset

SCORES = st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0]) | st.floats(0, 3, width=32)


def _reread(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` through ``torch.save`` / ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # type: ignore[no-any-return]


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype, key
            assert torch.equal(x.isnan(), y.isnan()) if x.is_floating_point() else True, key
            assert torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0)), key
        else:
            assert x == y, key


# ---------------------------------------------------------------- filter weights
@st.composite
def filtering_filters(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(2, 50))
    m = draw(st.integers(2, 3))
    ratio = draw(st.none() | st.sampled_from([0.3, 1 / 3, 0.5, 0.7, 1.0]))
    threshold = draw(st.none() | st.sampled_from([0.5, 1.0]))  # drawn scores sit on them
    if ratio is None and threshold is None:
        ratio = 0.3
    per_modality = draw(st.booleans())
    names = tuple(f"m{k}" for k in range(m))
    return {
        "n": n,
        "names": names,
        "values": torch.tensor(draw(st.lists(SCORES, min_size=m * n, max_size=m * n))).view(m, n),
        "kwargs": {
            "score": draw(st.sampled_from(["confidence", "loss"])),
            "keep_ratio": {names[0]: ratio} if per_modality and ratio else ratio,
            "threshold": threshold,
            "reweight": True,
            "smoothing": draw(st.sampled_from([0.0, 0.5])),
        },
        "epoch": draw(st.integers(0, 5)),
    }


@given(filtering_filters())
def test_a_reloaded_filter_restores_its_weights_exactly(case: dict[str, Any]) -> None:
    n = case["n"]
    filt = HardSampleFilter(n, case["names"], **case["kwargs"])
    filt.set_scores(case["values"].float())
    snap = filt.snapshot(case["epoch"])
    weights = filt.weights(torch.arange(n))
    kept = snap >= 0
    restored = HardSampleFilter(n, case["names"], **case["kwargs"])
    restored.load_state_dict(_reread(filt.state_dict()))
    assert torch.equal(restored.weights(torch.arange(n)), weights)
    assert torch.equal(restored.snapshot(case["epoch"]), snap)  # the same epoch: no re-plan
    # The weights are what the docstring says: subset size / kept, per modality.
    for m in range(len(case["names"])):
        mine = snap == m
        if bool(mine.any()):
            members = int((filt.assignment() == m).sum() + ((snap == -1) & _was(filt, m)).sum())
            assert bool((weights[mine] == members / int(mine.sum())).all())
    assert bool((weights[~kept] == 1).all())


def _was(filt: HardSampleFilter, m: int) -> torch.Tensor:
    """Samples of modality ``m``'s subset before filtering (the paper's rule alone)."""
    plain = HardSampleFilter(filt.num_samples, filt.modalities, score=filt.score)
    plain.set_scores(filt.state_dict()["values"])
    return plain.assignment() == m


# --------------------------------------------- every state entry round-trips
@st.composite
def filter_runs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(2, 30))
    names = ("a", "b")
    balance = draw(st.sampled_from(["none", "class"]))
    avail = None
    if draw(st.booleans()):
        rows = [[True, draw(st.booleans())] for _ in range(n)]
        rows[0][1] = True
        avail = torch.tensor(rows)
    ops: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["update", "update", "snapshot"]))
        if kind == "snapshot":
            ops.append(("snapshot", draw(st.integers(0, 4))))
            continue
        b = draw(st.integers(1, 8))
        index = draw(st.lists(st.integers(0, n - 1), min_size=b, max_size=b))  # repeats
        losses = draw(st.lists(SCORES | st.just(math.nan), min_size=b, max_size=b))
        modality = draw(st.sampled_from([ALL, 0, 1]))
        ops.append(("update", index, losses, modality))
    return {
        "n": n,
        "names": names,
        "kwargs": {
            "score": "loss",
            "nonfinite": "ignore",  # NaN losses are skipped and counted
            "smoothing": draw(st.sampled_from([0.0, 0.5])),
            "balance": balance,
            "labels": [i % 3 for i in range(n)] if balance == "class" else None,
            "keep_ratio": draw(st.none() | st.just(0.5)),
            "reweight": draw(st.booleans()),
            "available": avail,
        },
        "ops": ops,
        "cut": draw(st.integers(0, 8)),
    }


def _apply(filt: HardSampleFilter, op: tuple[Any, ...]) -> None:
    if op[0] == "snapshot":
        filt.snapshot(op[1])
        return
    _, index, losses, modality = op
    filt.update(index, {filt.modalities[max(modality, 0)]: torch.tensor(losses)},
                modality=modality)  # fmt: skip


@example(
    {
        "n": 5,
        "names": ("a", "b"),
        "kwargs": {
            "score": "loss",
            "nonfinite": "ignore",
            "smoothing": 0.0,
            "balance": "none",
            "labels": None,
            "keep_ratio": 0.5,
            "reweight": True,
            "available": None,
        },
        "ops": [
            ("update", [0, 1, 1, 3], [0.5, math.nan, 2.0, 1.0], ALL),
            ("snapshot", 0),
            ("update", [2, 4], [1.0, 0.1], 1),
        ],
        "cut": 2,
    }
)
@given(filter_runs())
def test_a_restored_filter_is_indistinguishable_from_the_original(run: dict[str, Any]) -> None:
    """Every state entry (table, fresh and scored flags, counters, snapshot, weights,
    history) survives save / load, and both filters then evolve identically."""
    first = HardSampleFilter(run["n"], run["names"], **run["kwargs"])
    ops, cut = run["ops"], min(run["cut"], len(run["ops"]))
    for op in ops[:cut]:
        _apply(first, op)
    second = HardSampleFilter(run["n"], run["names"], **run["kwargs"])
    second.load_state_dict(_reread(first.state_dict()))
    _same_state(first.state_dict(), second.state_dict())
    for op in ops[cut:]:
        _apply(first, op)
        _apply(second, op)
    _same_state(first.state_dict(), second.state_dict())
    assert first.stats() == second.stats()
    every = torch.arange(run["n"])
    assert torch.equal(first.weights(every), second.weights(every))
    assert torch.equal(first.assignment(), second.assignment())


# ---------------------------------------------------------- joint_fraction rounding
def test_the_joint_fraction_rounding_rule_is_documented() -> None:
    doc = " ".join((ReassemblingBatchSampler.__doc__ or "").split())
    assert "round(joint_fraction * size)" in doc and "half to even" in doc


@given(
    sizes=st.lists(st.integers(0, 60), min_size=2, max_size=3),
    fraction=st.sampled_from([0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9]),
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 7),
)
def test_joint_fraction_takes_round_of_each_subsets_share(
    sizes: list[int], fraction: float, seed: int, batch: int
) -> None:
    """E.g. 0.25 x 43 = 10.75 -> 11 joint samples, 0.5 x 5 = 2.5 -> 2 (half to even)."""
    n = sum(sizes)
    if n == 0:
        return
    names = tuple(f"m{k}" for k in range(len(sizes)))
    target = torch.cat([torch.full((s,), k) for k, s in enumerate(sizes)])
    filt = HardSampleFilter(n, names, score="loss")
    filt.set_scores(F.one_hot(target, len(sizes)).T.float())  # loss 1 = hardest: subset k
    sampler = ReassemblingBatchSampler(filt, batch, joint_fraction=fraction, tail="keep",
                                       seed=seed)  # fmt: skip
    sampler.set_epoch(0)
    keys = [key for b in sampler for key in b]
    joint = [i for i, m in keys if m == ALL]
    assert sorted(i for i, _ in keys) == list(range(n)), "each sample once"
    for k, size in enumerate(sizes):
        share = sum(1 for i in joint if int(target[i]) == k)
        assert share == round(fraction * size), (k, size, share)
    stats = sampler.stats()["samples"]
    assert stats["all"] == len(joint) == sum(round(fraction * s) for s in sizes)


# ------------------------------------------------------- remix_loss and head order
@given(
    rows=st.integers(1, 9),
    m=st.integers(2, 4),
    data=st.data(),
)
def test_remix_loss_weighs_the_right_head_whatever_the_heads_key_order(
    rows: int, m: int, data: st.DataObject
) -> None:
    names = tuple(f"m{k}" for k in range(m))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    classes = 3
    fused = torch.randn(rows, classes, generator=gen)
    heads = {name: torch.randn(rows, classes, generator=gen) * (k + 1) for k, name in
             enumerate(names)}  # fmt: skip
    target = torch.randint(0, classes, (rows,), generator=gen)
    ids = data.draw(st.lists(st.integers(ALL, m - 1), min_size=rows, max_size=rows))
    modality = torch.tensor(ids)
    order = data.draw(st.permutations(names))
    shuffled = {name: heads[name] for name in order}
    filt = HardSampleFilter(rows, names)
    expected = []
    for r in range(rows):
        row = F.cross_entropy(fused[r : r + 1], target[r : r + 1])
        for k, name in enumerate(names):
            w = 0.5 if ids[r] == ALL else (1.0 if ids[r] == k else 0.0)
            row = row + w * F.cross_entropy(heads[name][r : r + 1], target[r : r + 1])
        expected.append(row)
    naive = torch.stack(expected).mean()
    for source in (filt, names):
        got = remix_loss(fused, shuffled, target, modality, source)
        torch.testing.assert_close(got, naive, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got, remix_loss(fused, heads, target, modality, source))


# -------------------------------------------------------- sibling rounding rules
@given(n=st.integers(1, 200), fraction=st.floats(0.001, 1.0), epoch=st.integers(0, 3))
def test_scoring_pass_scores_max_1_round_fraction_n_samples(
    n: int, fraction: float, epoch: int
) -> None:
    base = [{"a": torch.ones(1), "b": torch.ones(1)} for _ in range(n)]
    filt = HardSampleFilter(n, ("a", "b"))
    data = ModalityDecoupler(base, filt)

    def fn(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"a": torch.zeros(len(sample["a"]), 2), "b": torch.zeros(len(sample["a"]), 2)}

    count = scoring_pass(fn, data, filt, fraction=fraction, epoch=epoch, progress=False,
                         batch_size=64)  # fmt: skip
    assert count == max(1, round(fraction * n)) == n - filt.stats()["unscored"]
    doc = " ".join((scoring_pass.__doc__ or "").split())
    assert "max(1, round(fraction * len(data)))" in doc


@given(
    warmup=st.sampled_from(["0.25", "0.125", "0.5", "0.1", "0.375", "0.0625", "0.3"]),
    epochs=st.integers(2, 400),
)
def test_a_fractional_warmup_rounds_the_written_decimal_half_to_even(
    warmup: str, epochs: int
) -> None:
    """0.25 of 10 epochs is 2.5 -> 2, of 6 is 1.5 -> 2; 0.1 of 45 is exactly 4.5 -> 4."""
    preset = Preset("p", warmup=float(warmup))
    exact = round(Fraction(warmup) * epochs)  # Python rounds halves to even
    expected = max(1, exact)
    if expected >= epochs:
        with pytest.raises(ValueError, match="leaves no remix epoch"):
            preset.warmup_epochs(epochs)
        return
    assert preset.warmup_epochs(epochs) == expected
    doc = " ".join((Preset.__doc__ or "").split())
    assert "halves to even" in doc
