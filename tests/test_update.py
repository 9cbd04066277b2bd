"""HardSampleFilter.update cannot be fed wrong rows by accident; confidence of -inf logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from remix_data import ALL, HardSampleFilter, confidence, cross_entropy
from remix_data.scores import confidence_numpy, confidence_torch
from remix_data.testing import logits
from remix_data.vocabulary import PAD

NAMES = ("a", "b")


def values(filt: HardSampleFilter) -> list[list[float]]:
    return filt.state_dict()["values"].nan_to_num(-7.0).tolist()


def test_all_heads_without_modality_after_a_remix_snapshot_raise() -> None:
    filt = HardSampleFilter(4, NAMES, score="loss")
    both = {"a": torch.ones(4), "b": torch.zeros(4)}
    filt.update(torch.arange(4), both)  # warm-up: joint batches, no snapshot yet
    filt.snapshot(1)
    before = values(filt)
    with pytest.raises(ValueError, match=r"outputs for \['a', 'b'\] without modality=.*epoch 1"):
        filt.update(torch.arange(4), {"a": torch.zeros(4), "b": torch.ones(4)})
    assert values(filt) == before  # nothing written
    filt.update(torch.arange(4), {"a": torch.full((4,), 3.0)})  # one head: written as given
    filt.update(torch.arange(2), {"a": torch.zeros(2), "b": torch.ones(2)}, modality=ALL)
    filt.update(torch.arange(2, 4), {"a": torch.zeros(2), "b": torch.ones(2)}, modality=1)
    assert values(filt) == [[0.0, 0.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0]]


@pytest.mark.parametrize(
    "one", [1, np.int64(1), torch.tensor(1), torch.tensor(1, dtype=torch.int8)]
)
def test_one_modality_id_for_the_whole_batch(one: object) -> None:
    scalar, full = (HardSampleFilter(3, NAMES, score="loss") for _ in range(2))
    outputs = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([4.0, 5.0, 6.0])}
    scalar.update([0, 1, 2], outputs, modality=one)
    full.update([0, 1, 2], outputs, modality=torch.ones(3, dtype=torch.long))
    assert values(scalar) == values(full) == [[-7.0] * 3, [4.0, 5.0, 6.0]]


@pytest.mark.parametrize(
    ("modality", "error", "match"),
    [
        (torch.full((4,), 5), ValueError, r"ALL \(-1\), PAD \(-2\) or ids in \[0, 2\), .* an id 5"),
        (torch.tensor([0, -3, 1, 0]), ValueError, "an id -3"),  # -2 is PAD: not written
        (2, ValueError, "modality=2"),
        (torch.zeros(4), TypeError, "hold integers, but got a tensor of dtype torch.float32"),
        (torch.zeros(4, dtype=torch.bool), TypeError, "hold integers"),
        ([0.0, 1.0, 0.0, 1.0], TypeError, "hold integers"),
        (True, TypeError, "modality=True"),
        ("a", TypeError, "modality='a'"),
        (torch.zeros(2, 2, dtype=torch.long), ValueError, r"shape of indices \(4,\)"),
    ],
)
def test_bad_modality_ids_are_rejected(modality: object, error: type, match: str) -> None:
    filt = HardSampleFilter(4, NAMES, score="loss")
    with pytest.raises(error, match=match):
        filt.update(torch.arange(4), {"a": torch.ones(4)}, modality=modality)
    assert filt.stats()["unscored"] == 4


@given(
    st.lists(st.integers(0, 5), min_size=0, max_size=12),
    st.sampled_from([0.0, 0.5]),
    st.booleans(),
)
def test_duplicate_indices_are_written_once_from_the_last_and_counted(
    indices: list[int], smoothing: float, with_modality: bool
) -> None:
    filt = HardSampleFilter(6, NAMES, score="loss", smoothing=smoothing)
    filt.update(torch.arange(6), {"a": torch.ones(6)})  # an old score to smooth with
    scores = [float(k) for k in range(len(indices))]
    ids = {"modality": torch.zeros(len(indices), dtype=torch.long)} if with_modality else {}
    filt.update(indices, {"a": torch.tensor(scores)}, **ids)
    last = dict(zip(indices, scores))  # a dict keeps the last value of a repeated key
    expected = [smoothing * 1.0 + (1 - smoothing) * last[i] if i in last else 1.0 for i in range(6)]
    assert values(filt)[0] == pytest.approx(expected)
    assert filt.stats()["duplicates"] == len(indices) - len(set(indices))


@st.composite
def masked_logits(draw: st.DrawFn) -> torch.Tensor:
    """Logits where some classes (never a whole row) are -inf."""
    x = draw(logits())
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=x.numel(), max_size=x.numel())))
    mask = mask.view(x.shape)
    mask[:, 0] = False
    return x.masked_fill(mask, -math.inf)


@given(masked_logits())
def test_confidence_of_minus_inf_logits_treats_them_as_probability_zero(x: torch.Tensor) -> None:
    p = torch.softmax(x.double(), dim=1)
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    expected = math.log(x.shape[1]) + plogp.sum(1)  # log C - H, with 0 log 0 = 0
    for got in (confidence(x), confidence_torch(x), torch.from_numpy(confidence_numpy(x.numpy()))):
        assert bool(torch.isfinite(got).all())
        assert torch.allclose(got.double(), expected, atol=1e-5)
    filt = HardSampleFilter(len(x), NAMES)
    filt.update(torch.arange(len(x)), {"a": x})  # accepted: no non-finite score
    assert filt.stats()["unscored"] == 0


@pytest.mark.parametrize(
    ("row", "cause"),
    [
        ([math.inf, 0.0, 1.0], r"\(nan: row 1's logits hold \+inf\)"),
        ([math.nan, 0.0, 1.0], r"\(nan: row 1's logits hold NaN\)"),
        ([-math.inf] * 3, r"\(nan: row 1's logits are all -inf\)"),
    ],
)
def test_non_finite_scores_name_their_cause(row: list[float], cause: str) -> None:
    filt = HardSampleFilter(2, NAMES)
    x = torch.tensor([[0.0, 1.0, 2.0], row])
    with pytest.raises(ValueError, match=r"outputs\['a'\] gave a non-finite score " + cause):
        filt.update([0, 1], {"a": x})
    assert torch.isnan(confidence_torch(x)[1])


def test_going_back_an_epoch_keeps_one_history_record_per_epoch() -> None:
    filt = HardSampleFilter(4, NAMES, score="loss")
    filt.update(torch.arange(4), {"a": torch.ones(4), "b": torch.zeros(4)})
    first = filt.snapshot(3)
    assert filt.snapshot(3) is first  # the same epoch again: frozen, no record added
    filt.snapshot(2)
    filt.update(torch.arange(4), {"a": torch.zeros(4), "b": torch.ones(4)}, modality=ALL)
    again = filt.snapshot(3)
    assert [h["epoch"] for h in filt.history] == [2, 3]
    assert filt.stats() is filt.history[-1] and filt.stats()["counts"] == {"a": 0, "b": 4}
    assert first.tolist() == [0] * 4 and again.tolist() == [1] * 4


@given(
    indices=st.lists(st.integers(0, 5), min_size=1, max_size=10),
    ids=st.one_of(
        st.sampled_from([ALL, 0, 1]),  # one id for the batch (unimodal, or joint)
        st.lists(st.sampled_from([ALL, 0, 1]), min_size=10, max_size=10),  # mixed rows
    ),
    smoothing=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_logits_update_writes_what_the_per_entry_reference_writes(
    indices: list[int], ids: int | list[int], smoothing: float, seed: int
) -> None:
    """Scoring only the heads a batch writes (one head for a unimodal batch) changes no entry."""
    gen = torch.Generator().manual_seed(seed)
    heads = {m: torch.randn(len(indices), 3, generator=gen) for m in NAMES}
    rows = [ids] * len(indices) if isinstance(ids, int) else ids[: len(indices)]
    filt = HardSampleFilter(6, NAMES, smoothing=smoothing)
    filt.update(torch.arange(6), {m: torch.zeros(6, 3) for m in NAMES}, modality=ALL)
    expected = values(filt)
    filt.update(indices, heads, modality=ids if isinstance(ids, int) else torch.tensor(rows))
    last = {i: j for j, i in enumerate(indices)}  # the last occurrence of each index
    for m, name in enumerate(NAMES):
        score = confidence(heads[name]).tolist()
        for i, j in last.items():
            if rows[j] in (m, ALL):
                old = expected[m][i]
                expected[m][i] = smoothing * old + (1 - smoothing) * score[j]
    assert np.allclose(values(filt), expected, atol=1e-6)


@given(
    rows=st.lists(st.tuples(st.integers(0, 5), st.sampled_from([PAD, ALL, 0, 1])), max_size=10),
    smoothing=st.sampled_from([0.0, 0.5]),
)
def test_pad_rows_are_never_written_nor_counted(
    rows: list[tuple[int, int]], smoothing: float
) -> None:
    """A PAD row repeats a sample to fill a batch: no score, no error, no duplicate, and it
    never hides the real row of its sample, before or after it."""
    filt = HardSampleFilter(6, NAMES, score="loss", smoothing=smoothing)
    index = [i for i, _ in rows]
    ids = [m for _, m in rows]
    scores = {m: torch.arange(len(rows), dtype=torch.float32) + 10 * k for k, m in enumerate(NAMES)}
    filt.update(index, scores, modality=torch.tensor(ids, dtype=torch.long))
    real = [(j, i, m) for j, (i, m) in enumerate(rows) if m != PAD]
    last = {i: (j, m) for j, i, m in real}  # the last real row of each index
    expected = [[-7.0] * 6 for _ in NAMES]
    for i, (j, m) in last.items():
        for k in range(len(NAMES)):
            if m in (k, ALL):
                expected[k][i] = float(scores[NAMES[k]][j])
    assert values(filt) == expected
    assert filt.stats()["duplicates"] == len(real) - len(last)


def test_a_whole_pad_batch_writes_nothing() -> None:
    filt = HardSampleFilter(4, NAMES)
    heads = {m: torch.randn(3, 2) for m in NAMES}
    filt.update([0, 1, 2], heads, modality=PAD)
    filt.update([0, 1, 2], heads, modality=torch.full((3,), PAD))
    assert filt.stats()["unscored"] == 4 and filt.stats()["duplicates"] == 0


@given(st.lists(st.floats(-30, 30, width=32), min_size=1, max_size=8), st.sampled_from([0, 1]))
def test_a_binary_head_is_the_two_class_case(xs: list[float], target: int) -> None:
    x = torch.tensor(xs).unsqueeze(1)
    pair = torch.cat([torch.zeros_like(x), x], dim=1)
    targets = torch.full((len(xs),), target)
    assert torch.allclose(confidence(x), confidence(pair), atol=1e-6)
    assert torch.allclose(confidence_torch(x), confidence(pair), atol=1e-5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        x.squeeze(1), targets.float(), reduction="none"
    )
    assert torch.allclose(cross_entropy(x, targets), bce, atol=1e-5)
    filt = HardSampleFilter(len(xs), NAMES, score="loss")
    filt.update(torch.arange(len(xs)), {"a": x}, targets)  # accepted, scored as BCE
    assert torch.allclose(filt.state_dict()["values"][0], bce, atol=1e-5)


@given(
    st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64]),
    st.integers(4, 40),
    st.integers(2, 12),
    st.floats(0.1, 8.0),
    st.integers(0, 2**16),
)
def test_probabilities_in_every_float_dtype_are_refused_everywhere(
    dtype: torch.dtype, rows: int, classes: int, scale: float, seed: int
) -> None:
    """A softmax cast to a narrow dtype no longer sums to 1 within 1e-3 (bfloat16: about 2e-3
    off): ``update``, ``remix_loss`` and the device path's check all refuse it anyway."""
    from remix_data import remix_loss
    from remix_data.device import probability_rows

    gen = torch.Generator().manual_seed(seed)
    probs = (torch.randn(rows, classes, generator=gen) * scale).softmax(1).to(dtype)
    filt = HardSampleFilter(rows, NAMES)
    with pytest.raises(ValueError, match=r"outputs\['a'\] holds probabilities"):
        filt.update(torch.arange(rows), {"a": probs}, modality=0)
    target = torch.zeros(rows, dtype=torch.long)
    with pytest.raises(ValueError, match="remix_loss got probabilities for a"):
        remix_loss(torch.randn(rows, classes).to(dtype), {"a": probs, "b": probs}, target, 0, NAMES)
    assert probability_rows([probs]).tolist() == [rows]
    # logits are never taken for probabilities: they are not all in [0, 1]
    raw = (torch.randn(rows, classes, generator=gen) * scale).to(dtype)
    raw[0, 0] = -abs(float(raw[0, 0])) - 0.5
    filt.update(torch.arange(rows), {"a": raw}, modality=0)
    assert probability_rows([raw]).tolist() == [0]


def test_probabilities_are_refused_where_logits_belong() -> None:
    probs = torch.softmax(torch.randn(6, 3), dim=1)
    filt = HardSampleFilter(6, NAMES)
    with pytest.raises(ValueError, match=r"outputs\['b'\] holds probabilities .* before softmax"):
        filt.update(torch.arange(6), {"a": torch.randn(6, 3), "b": probs}, modality=ALL)
    filt.update(torch.arange(6), {"a": torch.randn(6, 3), "b": probs}, modality=0)  # b not written
    assert values(filt)[1] == [-7.0] * 6 and filt.stats()["unscored"] == 0
