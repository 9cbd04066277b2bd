"""HardSampleFilter: scoring, the paper's assignment rule, filtering, state."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from remix_data import ALL, FILTERED, HardSampleFilter, RemixWarning, confidence, cross_entropy
from remix_data.testing import logits, naive_assignment, score_tables


def _filter_with(table: dict, **kwargs) -> HardSampleFilter:
    filt = HardSampleFilter(
        table["num_samples"], table["modalities"], score=table["score"], **kwargs
    )
    values = table["values"]
    for m, name in enumerate(table["modalities"]):
        ok = ~torch.isnan(values[m])
        idx = ok.nonzero().squeeze(1)
        if idx.numel():
            filt.update(idx, {name: values[m][ok]} if table["score"] == "loss" else {})
    if table["score"] == "confidence":  # confidence needs logits: write the table directly
        filt.set_scores(values)
    return filt


@given(logits())
def test_confidence_is_log_c_minus_entropy(x: torch.Tensor) -> None:
    p = torch.softmax(x.double(), dim=1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1)
    expected = math.log(x.shape[1]) - entropy
    assert torch.allclose(confidence(x).double(), expected, atol=1e-5)
    assert bool((confidence(x) >= -1e-6).all())
    assert bool((confidence(x) <= math.log(x.shape[1]) + 1e-6).all())


def test_confidence_matches_reference_kl_in_base_two_up_to_scale() -> None:
    x = torch.tensor([[2.0, 0.0, -1.0], [0.3, 0.2, 0.1]])
    p = torch.softmax(x, 1).clamp(1e-9, 1)
    kl2 = (p * torch.log2(p * 3)).sum(1)  # the reference code's formula
    assert torch.allclose(confidence(x), kl2 * math.log(2), atol=1e-6)


@given(score_tables(), st.sampled_from(["spread", "filter"]))
def test_assignment_equals_naive_paper_rule(table: dict, unscored: str) -> None:
    filt = _filter_with(table, unscored=unscored)
    expected = naive_assignment(table["values"], table["score"], unscored)
    got = filt.assignment()
    assert got.dtype == torch.int64 and got.shape == (table["num_samples"],)
    assert got.tolist() == expected
    stats = filt.stats()
    assert sum(stats["counts"].values()) + stats["filtered"] == table["num_samples"]
    assert stats["unscored"] == int(torch.isnan(table["values"]).all(0).sum())


@given(st.data())
def test_update_from_logits_scores_confidence_per_modality(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 40))
    b = data.draw(st.integers(1, n))
    idx = data.draw(st.permutations(range(n)))[:b]
    la = data.draw(logits(batch=b, classes=3))
    lv = data.draw(logits(batch=b, classes=5))
    filt = HardSampleFilter(n, ("audio", "video"))
    filt.update(torch.tensor(idx), {"audio": la, "video": lv})
    got = filt.assignment()[torch.tensor(idx)]
    ca, cv = confidence(la), confidence(lv)
    assert got.tolist() == [0 if a < v else 1 for a, v in zip(ca.tolist(), cv.tolist())]


def test_loss_score_uses_targets_and_high_loss_is_hard() -> None:
    filt = HardSampleFilter(2, ("a", "b"), score="loss")
    good = torch.tensor([[4.0, 0.0], [4.0, 0.0]])
    bad = torch.tensor([[0.0, 4.0], [4.0, 0.0]])
    targets = torch.tensor([0, 0])
    filt.update([0, 1], {"a": good, "b": bad}, targets)
    # sample 0: b has the high loss -> b; sample 1: equal loss -> tie to the last (b)
    assert filt.assignment().tolist() == [1, 1]
    filt.update([0], {"a": torch.tensor([9.0])})
    assert filt.assignment().tolist() == [0, 1]
    assert torch.allclose(cross_entropy(bad, targets)[0], torch.tensor(4.0181), atol=1e-4)


def test_partial_update_keeps_other_modalities_and_mask_by_active_modality() -> None:
    filt = HardSampleFilter(3, ("a", "b"), score="loss")
    filt.update([0, 1, 2], {"a": torch.tensor([1.0, 1.0, 1.0]), "b": torch.tensor([2.0, 0.0, 2.0])})
    assert filt.assignment().tolist() == [1, 0, 1]
    # batch of modality a: only a's score is written; b's rows stay as they were
    filt.update(
        [0, 1, 2],
        {"a": torch.tensor([5.0, 5.0, 5.0]), "b": torch.tensor([0.0, 0.0, 0.0])},
        modality=torch.tensor([0, 0, -1]),
    )
    assert filt.assignment().tolist() == [0, 0, 0]
    assert filt.state_dict()["values"][1].tolist() == [2.0, 0.0, 0.0]


def test_unscored_policy_is_counted() -> None:
    filt = HardSampleFilter(5, ("a", "b", "c"), score="loss")
    filt.update([1], {"a": torch.tensor([1.0])})
    assert filt.assignment().tolist() == [0, 0, 2, 0, 1]  # index % 3 except the scored one
    assert filt.stats()["unscored"] == 4
    filt2 = HardSampleFilter(5, ("a", "b"), score="loss", unscored="filter")
    filt2.update([1], {"b": torch.tensor([1.0])})
    assert filt2.assignment().tolist() == [FILTERED, 1, FILTERED, FILTERED, FILTERED]
    assert filt2.stats()["filtered"] == 4


@given(score_tables(), st.sampled_from([0.25, 0.5, 1.0]), st.booleans())
def test_keep_ratio_keeps_the_hardest_fraction_of_each_subset(
    table: dict, ratio: float, reweight: bool
) -> None:
    base = torch.tensor(naive_assignment(table["values"], table["score"]))
    filt = _filter_with(table, keep_ratio=ratio, reweight=reweight)
    filt.snapshot(0)
    got = filt.assignment()
    unscored = torch.isnan(table["values"]).all(0)
    for m in range(len(table["modalities"])):
        members = ((base == m) & ~unscored).nonzero().squeeze(1)
        kept = members[got[members] == m]
        assert kept.numel() == math.ceil(ratio * members.numel())
        dropped = members[got[members] == FILTERED]
        scores = table["values"][m]
        if kept.numel() and dropped.numel():
            if table["score"] == "loss":
                assert scores[kept].min() >= scores[dropped].max()
            else:
                assert scores[kept].max() <= scores[dropped].min()
        if reweight and kept.numel():
            w = filt.weights(kept)
            assert torch.allclose(w, torch.full_like(w, members.numel() / kept.numel()))
    # unscored samples are never filtered by the ratio
    assert bool((got[unscored] == base[unscored]).all())
    assert filt.stats()["filtered"] == int((got == FILTERED).sum())


def test_threshold_filters_per_modality() -> None:
    filt = HardSampleFilter(4, ("a", "b"), score="loss", threshold={"a": 1.5})
    filt.update([0, 1, 2, 3], {"a": torch.tensor([1.0, 2.0, 3.0, 0.0]), "b": torch.zeros(4)})
    assert filt.assignment().tolist() == [FILTERED, 0, 0, 1]


def test_nonfinite_policies() -> None:
    filt = HardSampleFilter(3, ("a", "b"), score="loss")
    with pytest.raises(ValueError, match="non-finite"):
        filt.update([0, 1], {"a": torch.tensor([1.0, math.nan])})
    assert filt.stats()["unscored"] == 3  # nothing written by the failed call
    ignore = HardSampleFilter(3, ("a", "b"), score="loss", nonfinite="ignore")
    ignore.update([0, 1], {"a": torch.tensor([1.0, math.inf])})
    stats = ignore.stats()
    assert stats["ignored"] == 1 and stats["unscored"] == 2
    # an inf on a row masked out by `modality` is never looked at
    filt.update([0, 1], {"a": torch.tensor([1.0, math.inf])}, modality=torch.tensor([0, 1]))
    assert filt.stats()["unscored"] == 2


def test_snapshot_is_frozen_per_epoch_and_history_records_it() -> None:
    filt = HardSampleFilter(2, ("a", "b"), score="loss", labels=[0, 1])
    filt.update([0, 1], {"a": torch.tensor([2.0, 0.0]), "b": torch.tensor([1.0, 1.0])})
    first = filt.snapshot(3).tolist()
    filt.update([0, 1], {"a": torch.tensor([0.0, 2.0])})
    assert filt.snapshot(3).tolist() == first == [0, 1]
    assert filt.snapshot(4).tolist() == [1, 0]
    assert [h["epoch"] for h in filt.history] == [3, 4]
    assert filt.history[0]["class_counts"] == {"a": [1, 0], "b": [0, 1]}
    assert filt.history[1]["mean_score"] == {"a": 1.0, "b": 1.0}


def test_one_head_without_modality_after_a_snapshot_warns_once() -> None:
    """After the first snapshot batches are unimodal: a head given without the loader's ids
    is written on every row, also where its modality was masked."""
    filt = HardSampleFilter(4, ("a", "b"))
    logits = torch.randn(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemixWarning)
        filt.update([0, 1, 2, 3], {"b": logits})  # before any snapshot: a scoring pass
        filt.snapshot(0)
        filt.update([0, 1, 2, 3], {"b": logits}, modality=1)
        filt.update([0, 1, 2, 3], {"b": logits}, modality=torch.tensor([0, 1, 1, ALL]))
        filt.update([0, 1, 2, 3], {"b": logits}, modality=ALL)
    with pytest.warns(RemixWarning, match=r"outputs for \['b'\] without modality= after the "
                      r"snapshot of remix epoch 0: every row is written"):  # fmt: skip
        filt.update([0, 1, 2, 3], {"b": logits})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemixWarning)
        filt.update([0, 1, 2, 3], {"b": logits})  # once per filter


def test_state_dict_round_trip_restores_scores_and_snapshot() -> None:
    filt = HardSampleFilter(4, ("a", "b"), score="loss")
    filt.update([0, 1, 2, 3], {"a": torch.arange(4.0), "b": torch.full((4,), 1.5)})
    filt.snapshot(1)
    other = HardSampleFilter(4, ("a", "b"), score="loss")
    other.load_state_dict(filt.state_dict())
    assert other.assignment().tolist() == filt.assignment().tolist()
    assert other.snapshot_epoch == 1 and other.history == filt.history
    with pytest.raises(ValueError, match="num_samples=4"):
        HardSampleFilter(5, ("a", "b"), score="loss").load_state_dict(filt.state_dict())
    with pytest.raises(ValueError, match="modalities"):
        HardSampleFilter(4, ("a", "c"), score="loss").load_state_dict(filt.state_dict())


def test_update_accepts_other_devices_dtypes_and_detaches() -> None:
    filt = HardSampleFilter(4, ("a", "b"))
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    filt.update(torch.tensor([1, 3], dtype=torch.int32), {"a": x, "b": x.detach().half()})
    values = filt.state_dict()["values"]
    assert values.dtype == torch.float32 and not values.requires_grad
    assert torch.allclose(values[0, [1, 3]], confidence(x).float())


def test_set_scores_replaces_the_table_or_one_row_and_validates() -> None:
    filt = HardSampleFilter(3, ("a", "b"), score="loss", smoothing=0.5)
    filt.update([0, 1, 2], {"a": torch.tensor([1.0, 1.0, 1.0])})
    table = torch.tensor([[0.0, 2.0, math.nan], [1.0, 1.0, math.nan]], dtype=torch.float64)
    filt.set_scores(table)
    values = filt.state_dict()["values"]
    assert values.dtype == torch.float32
    assert torch.equal(values.isnan(), table.isnan())  # NaN clears: no smoothing with the old 1.0
    assert values[~values.isnan()].tolist() == [0.0, 2.0, 1.0, 1.0]
    assert filt.stats()["unscored"] == 1 and filt.assignment().tolist() == [1, 0, 2 % 2]
    assert filt.state_dict()["fresh"].tolist() == [[True, True, False], [True, True, False]]
    filt.set_scores(np.array([5.0, 0.0, 3.0]), modality=1)
    assert filt.assignment().tolist() == [1, 0, 1]
    filt.set_scores(torch.full((3,), math.nan), modality="b")
    assert filt.assignment().tolist() == [0, 0, 0] and filt.stats()["unscored"] == 1
    before = filt.state_dict()
    for kwargs, error, match in (
        ({"scores": torch.zeros(3, dtype=torch.long)}, TypeError, "floating dtype"),
        ({"scores": np.zeros((2, 3), dtype=np.int32)}, TypeError, "floating dtype"),
        ({"scores": [[0.0] * 3] * 2}, TypeError, "float tensor or array"),
        ({"scores": torch.zeros(3)}, ValueError, r"\[M, N\] = \(2, 3\).*\(3,\)"),
        ({"scores": torch.zeros(2, 3), "modality": "a"}, ValueError, r"\[N\] = \(3,\)"),
        ({"scores": torch.zeros(3), "modality": "c"}, ValueError, "modality='c'"),
        ({"scores": torch.zeros(3), "modality": 2}, ValueError, "modality=2"),
        ({"scores": torch.zeros(3), "modality": 1.0}, TypeError, "modality=1.0"),
        ({"scores": torch.tensor([0.0, -math.inf, 1.0]), "modality": 0}, ValueError, "1 inf"),
    ):
        with pytest.raises(error, match=match):
            filt.set_scores(**kwargs)
    after = filt.state_dict()
    assert torch.equal(after["values"].nan_to_num(-7), before["values"].nan_to_num(-7))
    assert torch.equal(after["fresh"], before["fresh"])
