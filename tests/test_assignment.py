"""The assignment rule as a pure function of (score table, configuration)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from remix_data import FILTERED, HardSampleFilter
from remix_data.assignment import AssignmentRule, hardest
from remix_data.testing import naive_assignment, score_tables

LIMITS = st.none() | st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0, 3, width=32)
RATIOS = st.none() | st.sampled_from([0.25, 1 / 3, 0.5, 0.9, 1.0])


def naive_filtered(
    values: torch.Tensor,
    score: str,
    unscored: str,
    ratios: list[float | None],
    limits: list[float | None],
) -> tuple[list[int], list[float]]:
    """Keep ratio and threshold one sample at a time: (assignment, weights)."""
    base = naive_assignment(values, score, unscored)
    table = values.tolist()
    m_count, n = values.shape
    scored = [any(not math.isnan(table[j][i]) for j in range(m_count)) for i in range(n)]
    loss = score == "loss"
    out, weights = list(base), [1.0] * n
    for m in range(m_count):
        members = [i for i in range(n) if base[i] == m and scored[i]]
        ratio, limit = ratios[m], limits[m]
        if not members or (ratio is None and limit is None):
            continue
        keep = set(members)
        if limit is not None:
            bound = float(np.float32(limit))  # the table's precision
            keep = {i for i in keep if (table[m][i] > bound if loss else table[m][i] < bound)}
        if ratio is not None:
            ranked = sorted(members, key=lambda i: (-table[m][i] if loss else table[m][i], i))
            keep &= set(ranked[: math.ceil(ratio * len(members))])
        for i in members:
            if i not in keep:
                out[i] = FILTERED
            elif keep:
                weights[i] = len(members) / len(keep)
    return out, weights


@given(score_tables(), st.sampled_from(["spread", "filter"]))
def test_pure_rule_equals_the_naive_paper_rule(table: dict, unscored: str) -> None:
    values = table["values"]
    before = values.clone()
    rule = AssignmentRule(
        table["num_samples"], table["modalities"], score=table["score"], unscored=unscored
    )
    result = rule(values)
    assert result.assignment.dtype == torch.int8 and result.weights is None
    assert result.assignment.tolist() == naive_assignment(values, table["score"], unscored)
    assert result.unscored == int(values.isnan().all(0).sum())
    assert torch.equal(values.nan_to_num(-1), before.nan_to_num(-1))  # input untouched
    again = rule(values.numpy(), ~values.isnan().all(0).numpy())  # array input, given mask
    assert torch.equal(again.assignment, result.assignment)


@given(st.data())
def test_pure_rule_filtering_equals_a_naive_reference(data: st.DataObject) -> None:
    table = data.draw(score_tables())
    m = len(table["modalities"])
    ratios = data.draw(st.lists(RATIOS, min_size=m, max_size=m))
    limits = data.draw(st.lists(LIMITS, min_size=m, max_size=m))
    unscored = data.draw(st.sampled_from(["spread", "filter"]))
    rule = AssignmentRule(
        table["num_samples"],
        table["modalities"],
        score=table["score"],
        unscored=unscored,
        keep_ratio=dict(zip(table["modalities"], ratios)),
        threshold=dict(zip(table["modalities"], limits)),
        reweight=True,
    )
    result = rule(table["values"])
    expected, weights = naive_filtered(table["values"], table["score"], unscored, ratios, limits)
    assert result.assignment.tolist() == expected
    if rule.filters:
        assert result.weights is not None
        assert result.weights.tolist() == pytest.approx(weights, rel=1e-6)
    else:
        assert result.weights is None


@given(score_tables(), st.sampled_from([None, 0.5]), st.booleans())
def test_filter_snapshot_is_the_rule_of_its_table(
    table: dict, ratio: float | None, balance: bool
) -> None:
    n = table["num_samples"]
    kwargs: dict[str, Any] = {"score": table["score"], "keep_ratio": ratio, "reweight": True}
    if balance:
        kwargs.update(labels=torch.arange(n) % 3, balance="class")
    filt = HardSampleFilter(n, table["modalities"], **kwargs)
    filt.set_scores(table["values"])
    snapshot = filt.snapshot(0)
    result = AssignmentRule(n, table["modalities"], **kwargs)(table["values"])
    assert torch.equal(snapshot, result.assignment)
    weights = filt.weights(torch.arange(n))
    expected = result.weights if result.weights is not None else torch.ones(n)
    assert torch.equal(weights, expected)
    assert (result.weights is None) == (ratio is None)  # reweighting follows filtering


@given(score_tables(), st.sampled_from([0.1, 0.5, 0.75]), st.integers(2, 4))
def test_a_member_with_no_score_in_its_modality_is_never_kept_over_a_scored_one(
    table: dict, ratio: float, classes: int
) -> None:
    """Class balancing may move a sample to a modality it was not scored in; keep_ratio then
    ranks it as the least hard there, for losses as for confidences (a descending sort of
    losses used to put its NaN first: kept as the hardest)."""
    n, values = table["num_samples"], table["values"]
    rule = AssignmentRule(
        n, table["modalities"], score=table["score"], keep_ratio=ratio,
        labels=torch.arange(n) % classes, balance="class",
    )  # fmt: skip
    balanced = AssignmentRule(
        n, table["modalities"], score=table["score"], labels=torch.arange(n) % classes,
        balance="class",
    )(values).assignment  # fmt: skip
    kept = rule(values).assignment
    for m in range(len(table["modalities"])):
        members = (balanced == m).nonzero().squeeze(1).tolist()
        scored = [i for i in members if not math.isnan(values[m, i])]
        blank = [i for i in members if math.isnan(values[m, i]) and not values[:, i].isnan().all()]
        if any(kept[i] == m for i in blank):
            assert all(kept[i] == m for i in scored), (m, kept.tolist(), balanced.tolist())


def test_keep_ratio_ranks_a_balanced_member_without_a_score_last_for_both_score_kinds() -> None:
    nan = math.nan
    for score, a in (("loss", (5.0, 4.5)), ("confidence", (0.1, 0.15))):
        values = torch.tensor([[a[0], a[1], nan, nan], [nan, nan, 1.0, 1.0]])
        rule = AssignmentRule(
            4, ("a", "b"), score=score, labels=[0, 0, 1, 1], balance="class", keep_ratio=0.5
        )
        got = rule(values).assignment.tolist()
        assert got[0] == 0, (score, got)  # the hardest scored "a" sample is kept
        assert [i for i, m in enumerate(got) if m >= 0 and math.isnan(values[m, i])] == []


def test_hardest_breaks_ties_to_the_last_modality_and_skips_nan() -> None:
    values = np.array([[1.0, 2.0, math.nan, math.nan], [1.0, 1.0, 3.0, math.nan]], np.float32)
    assign, best = hardest(values, "confidence")
    assert assign.tolist() == [1, 1, 1, 0] and best.tolist() == [1.0, 1.0, 3.0, math.inf]
    assign, best = hardest(values, "loss")
    assert assign.tolist() == [1, 0, 1, 0] and best.tolist() == [1.0, 2.0, 3.0, -math.inf]


def test_rule_validates_its_table_and_configuration() -> None:
    rule = AssignmentRule(3, ("a", "b"))
    with pytest.raises(TypeError, match="floating dtype"):
        rule(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(2, 3\), but got \(3, 2\)"):
        rule(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"scored should have shape \(3,\)"):
        rule(torch.zeros(2, 3), np.ones(2, dtype=bool))
    with pytest.raises(TypeError, match="values should be a tensor or an array"):
        rule([[0.0] * 3] * 2)
    with pytest.raises(TypeError, match="keep_ratio='half'"):
        AssignmentRule(3, ("a", "b"), keep_ratio="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"keep_ratio=1\.5"):
        AssignmentRule(3, ("a", "b"), keep_ratio=1.5)
