"""Opt-in variants beyond the paper: score smoothing and class-aware decoupling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from remix_data import HardSampleFilter
from remix_data.assignment import _first_of_stable_sort, balance_classes
from remix_data.testing import naive_assignment, score_tables


@given(
    st.floats(0.0, 0.95),
    st.lists(st.lists(st.floats(0, 5, width=32), min_size=4, max_size=4), min_size=1, max_size=5),
)
def test_smoothing_is_an_exponential_moving_average(smoothing: float, rounds: list) -> None:
    filt = HardSampleFilter(4, ("a", "b"), score="loss", smoothing=smoothing)
    expected = [math.nan] * 4
    for scores in rounds:
        filt.update(torch.arange(4), {"a": torch.tensor(scores)})
        expected = [
            s if math.isnan(e) else smoothing * e + (1 - smoothing) * s
            for e, s in zip(expected, scores)
        ]
    got = filt.state_dict()["values"][0].tolist()
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_smoothing_damps_a_flip() -> None:
    plain = HardSampleFilter(1, ("a", "b"), score="loss")
    smooth = HardSampleFilter(1, ("a", "b"), score="loss", smoothing=0.8)
    for filt in (plain, smooth):
        filt.update([0], {"a": torch.tensor([2.0]), "b": torch.tensor([1.0])})
        filt.update([0], {"a": torch.tensor([0.5]), "b": torch.tensor([1.0])})
    assert plain.assignment().tolist() == [1]
    assert smooth.assignment().tolist() == [0]  # 0.8 * 2 + 0.2 * 0.5 = 1.7 > 1


@st.composite
def labelled_tables(draw: st.DrawFn) -> dict:
    table = draw(score_tables(max_samples=80, max_modalities=3))
    n = table["num_samples"]
    table["labels"] = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    return table


def _balanced(table: dict) -> HardSampleFilter:
    filt = HardSampleFilter(
        table["num_samples"],
        table["modalities"],
        score=table["score"],
        labels=table["labels"],
        balance="class",
    )
    filt.set_scores(table["values"])
    return filt


@given(labelled_tables())
def test_class_balance_splits_every_class_in_the_overall_shares(table: dict) -> None:
    filt = _balanced(table)
    got = filt.assignment()
    paper = torch.tensor(naive_assignment(table["values"], table["score"]))
    scored = ~torch.isnan(table["values"]).all(0)
    m = len(table["modalities"])
    assert bool((got[~scored] == paper[~scored]).all())  # unscored keep their policy
    shares = torch.bincount(paper[scored], minlength=m).double()
    if shares.sum() == 0:
        return
    shares /= shares.sum()
    labels = table["labels"]
    for c in labels[scored].unique().tolist():
        members = scored & (labels == c)
        counts = torch.bincount(got[members], minlength=m)
        exact = shares * int(members.sum())
        # largest-remainder rounding: every count is the floor or the ceiling of its quota
        assert bool(((counts - exact).abs() < 1 + 1e-9).all()), (counts, exact)
        assert int(counts.sum()) == int(members.sum())


@given(labelled_tables())
def test_class_balance_sends_the_relatively_hardest_samples(table: dict) -> None:
    table["values"] = table["values"][:2]
    table["modalities"] = table["modalities"][:2]
    filt = _balanced(table)
    got = filt.assignment()
    values = table["values"]
    hard = -values if table["score"] == "loss" else values
    hard = torch.nan_to_num(hard, nan=math.inf)
    margin = hard[0] - hard[1]
    scored = ~torch.isnan(values).all(0)
    for c in table["labels"].unique().tolist():
        members = scored & (table["labels"] == c)
        to_first, to_second = margin[members & (got == 0)], margin[members & (got == 1)]
        if to_first.numel() and to_second.numel():
            assert float(to_first.max()) <= float(to_second.min())


def test_class_balance_fixes_a_skewed_subset() -> None:
    # class 0 is always hard for modality a, class 1 always hard for b
    labels = torch.tensor([0] * 10 + [1] * 10)
    a = torch.cat([torch.zeros(10), torch.ones(10)]) + torch.linspace(0, 0.1, 20)
    filt = HardSampleFilter(20, ("a", "b"), score="confidence", labels=labels, balance="class")
    filt.set_scores(torch.stack([a, torch.full((20,), 0.5)]))
    filt.snapshot(0)
    counts = filt.stats()["class_counts"]
    assert counts == {"a": [5, 5], "b": [5, 5]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"smoothing": 1.0}, "smoothing should be below 1"),
        ({"smoothing": -0.1}, "smoothing=-0.1"),
        ({"balance": "class"}, "balance='class' needs labels"),
        ({"balance": "classes", "labels": [0, 1]}, "balance='classes'"),
    ],
)
def test_variant_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HardSampleFilter(2, ("a", "b"), **kwargs)


def test_joint_fraction_moves_a_share_of_each_subset_into_joint_batches() -> None:
    from remix_data import ALL, ReassemblingBatchSampler
    from remix_data.testing import check_epoch

    filt = HardSampleFilter(100, ("a", "b"), score="loss")
    filt.update(
        torch.arange(100), {"a": (torch.arange(100) < 40).float(), "b": torch.full((100,), 0.5)}
    )
    sampler = ReassemblingBatchSampler(filt, 10, joint_fraction=0.25, warmup_epochs=1)
    (warm,) = check_epoch(sampler, epoch=0)
    assert {b[0][1] for b in warm} == {ALL}
    (batches,) = check_epoch(sampler, epoch=1)
    stats = sampler.stats()
    assert stats["samples"] == {"all": 25, "a": 30, "b": 45}  # 10 of a's 40, 15 of b's 60
    joint = [i for b in batches if b[0][1] == ALL for i, _ in b]
    assert len(joint) == 25 and batches[0][0][1] == ALL  # sequential: joint batches first
    assignment = filt.snapshot(1)
    assert int((assignment[joint] == 0).sum()) == 10
    with pytest.raises(ValueError, match=r"joint_fraction=1\.5"):
        ReassemblingBatchSampler(filt, 10, joint_fraction=1.5)


def _balanced_by_hand(
    assign: list[int], values: np.ndarray, labels: list[int], scored: list[bool], score: str
) -> list[int]:
    """The class balancing rule written out per class with Python's stable ``sorted``:
    quotas by largest remainder, then modality by modality the members with the lowest
    margin (float32, as the table holds; NaN after +inf; ties by the current order)."""
    out = list(assign)
    m_count = values.shape[0]
    with np.errstate(invalid="ignore"):
        hard = np.nan_to_num(-values if score == "loss" else values, nan=np.inf)
    hard = hard.astype(np.float32)
    members_all = [i for i, s in enumerate(scored) if s]
    counts = [sum(1 for i in members_all if assign[i] == m) for m in range(m_count)]
    total = sum(counts)
    if not total:
        return out
    shares = [c / total for c in counts]
    for c in sorted({labels[i] for i in members_all}):
        remaining = [i for i in members_all if labels[i] == c]
        exact = [s * len(remaining) for s in shares]
        quota = [math.floor(e) for e in exact]
        extra = sorted(range(m_count), key=lambda m: -(exact[m] - quota[m]))
        for m in extra[: len(remaining) - sum(quota)]:
            quota[m] += 1
        for m in range(m_count - 1):
            rest = [a for a in range(m_count) if a > m]
            with np.errstate(invalid="ignore"):
                margin = {i: hard[m, i] - min(hard[a, i] for a in rest) for i in remaining}
            ranked = sorted(
                remaining, key=lambda i: (bool(np.isnan(margin[i])), np.nan_to_num(margin[i]))
            )
            for i in ranked[: quota[m]]:
                out[i] = m
            remaining = ranked[quota[m] :]
        for i in remaining:
            out[i] = m_count - 1
    return out


@st.composite
def balancing_inputs(draw: st.DrawFn) -> tuple:
    m_count = draw(st.integers(2, 4))
    n = draw(st.integers(1, 40))
    # few distinct values: ties everywhere, missing scores and infinite margins included
    cell = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, math.nan])
    values = np.array(draw(st.lists(cell, min_size=m_count * n, max_size=m_count * n)))
    values = values.reshape(m_count, n).astype(np.float32)
    scored = (~np.isnan(values).all(0)).tolist()
    assign = [
        draw(st.integers(0, m_count - 1)) if s else draw(st.sampled_from([-1, 0])) for s in scored
    ]
    # sparse class ids, past one byte too (the grouping's 16-bit path)
    labels = draw(st.lists(st.sampled_from([0, 1, 3, 7, 300]), min_size=n, max_size=n))
    return assign, values, labels, scored, draw(st.sampled_from(["confidence", "loss"]))


@given(balancing_inputs())
def test_class_balance_is_the_per_class_rule_written_out(inputs: tuple) -> None:
    """One grouping sort and a selection for the last split give, sample for sample, what
    sorting each class's margins gives (ties, NaN margins, 2-4 modalities, sparse ids)."""
    assign, values, labels, scored, score = inputs
    got = torch.tensor(assign, dtype=torch.int8)
    balance_classes(
        got, torch.from_numpy(values), torch.tensor(labels), torch.tensor(scored), score
    )
    assert got.tolist() == _balanced_by_hand(assign, values, labels, scored, score)


@given(
    st.lists(st.sampled_from([0.0, 1.0, -2.0, math.inf, -math.inf, math.nan]), max_size=30),
    st.integers(-1, 31),
)
def test_first_of_stable_sort_selects_what_a_stable_sort_puts_first(
    key: list[float], q: int
) -> None:
    array = np.array(key, dtype=np.float32)
    expected = np.zeros(len(key), dtype=bool)
    expected[np.argsort(array, kind="stable")[: max(q, 0)]] = True
    assert _first_of_stable_sort(array, q).tolist() == expected.tolist()
