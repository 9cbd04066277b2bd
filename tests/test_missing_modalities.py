"""Missing modalities: a sample never trains a modality it lacks, is scored only on the
ones it has, and a missing value is masked the same way whatever ``dataset[0]`` holds."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from remix_data import (
    FILTERED,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    RemixWarning,
    scoring_pass,
)
from remix_data.assignment import AssignmentRule
from remix_data.availability import as_available, scan_available
from remix_data.presets import PAPER, RECOMMENDED, build
from remix_data.testing import check_loader

DTYPES = (torch.float32, torch.int64, torch.uint8, torch.bfloat16)


@st.composite
def gapped_tables(draw: st.DrawFn) -> dict[str, Any]:
    """A score table, an availability with every sample holding >= 1 modality, a config."""
    n = draw(st.integers(1, 40))
    m = draw(st.integers(2, 4))
    cells = st.sampled_from([0.0, 0.1, 0.5, 1.0, math.nan]) | st.floats(0, 3, width=32)
    values = torch.tensor(draw(st.lists(cells, min_size=n * m, max_size=n * m))).view(m, n)
    rows = [draw(st.lists(st.booleans(), min_size=m, max_size=m)) for _ in range(n)]
    rows = [r if any(r) else [k == i % m for k in range(m)] for i, r in enumerate(rows)]
    for k in range(m):  # every modality in some sample (a drawn one gains it)
        if not any(r[k] for r in rows):
            rows[draw(st.integers(0, n - 1))][k] = True
    labels = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    balance = draw(st.sampled_from(["none", "class"]))
    return {
        "num_samples": n,
        "modalities": tuple(f"m{k}" for k in range(m)),
        "values": values.float(),
        "available": torch.tensor(rows, dtype=torch.bool),
        "config": {
            "score": draw(st.sampled_from(["confidence", "loss"])),
            "unscored": draw(st.sampled_from(["spread", "filter"])),
            "balance": balance,
            "labels": labels if balance == "class" else None,
            # 0.5 is a drawn score: some scores sit exactly on the threshold
            "threshold": draw(st.none() | st.sampled_from([0.5, 1.0])),
            "keep_ratio": draw(st.none() | st.sampled_from([0.3, 0.5, 1.0])),
        },
    }


def _rule(table: dict[str, Any], available: Any = "given") -> AssignmentRule:
    avail = table["available"] if isinstance(available, str) else available
    return AssignmentRule(
        table["num_samples"], table["modalities"], available=avail, **table["config"]
    )


@given(gapped_tables())
def test_no_sample_is_assigned_a_modality_it_lacks(table: dict[str, Any]) -> None:
    assign = _rule(table)(table["values"]).assignment
    avail = table["available"]
    for i, m in enumerate(assign.tolist()):
        assert m == FILTERED or bool(avail[i, m]), f"sample {i} sent to missing modality {m}"


@given(gapped_tables(), st.sampled_from([math.nan, 0.0, -5.0, 9.0]))
def test_scores_of_missing_entries_change_nothing(table: dict[str, Any], junk: float) -> None:
    rule = _rule(table)
    before = rule(table["values"])
    other = table["values"].clone()
    other[~table["available"].T] = junk  # what a head says on a missing input
    after = rule(other)
    assert torch.equal(before.assignment, after.assignment)
    assert before.unscored == after.unscored
    if before.weights is not None:
        assert after.weights is not None and torch.equal(before.weights, after.weights)


@given(gapped_tables())
def test_a_table_with_no_gap_is_the_rule_without_availability(table: dict[str, Any]) -> None:
    full = torch.ones_like(table["available"])
    with_gaps_off = _rule(table, available=full)(table["values"])
    plain = _rule(table, available=None)(table["values"])
    assert with_gaps_off.assignment.tolist() == plain.assignment.tolist()
    assert with_gaps_off.unscored == plain.unscored


@given(gapped_tables())
def test_the_paper_rule_with_gaps_is_the_naive_per_sample_choice(table: dict[str, Any]) -> None:
    """argmin (confidence) / argmax (loss) over the sample's own scored modalities, ties to
    the last; an unscored sample takes its (i % k)-th own modality."""
    table["config"].update(balance="none", labels=None, threshold=None, keep_ratio=None)
    table["config"]["unscored"] = "spread"
    result = _rule(table)(table["values"])
    values, avail = table["values"].tolist(), table["available"].tolist()
    loss = table["config"]["score"] == "loss"
    for i in range(table["num_samples"]):
        own = [k for k in range(len(values)) if avail[i][k]]
        scored = [k for k in own if not math.isnan(values[k][i])]
        if not scored:
            expected = own[i % len(own)]
        else:
            best = max(values[k][i] for k in scored) if loss else min(values[k][i] for k in scored)
            expected = [k for k in scored if values[k][i] == best][-1]
        assert result.assignment[i] == expected, (i, own, scored)
    assert result.unscored == sum(
        all(math.isnan(values[k][i]) or not avail[i][k] for k in range(len(values)))
        for i in range(table["num_samples"])
    )


def test_availability_is_validated_naming_the_problem() -> None:
    with pytest.raises(TypeError, match="should hold bools"):
        as_available([[1, 0], [1, 1]], 2, ("a", "b"))
    with pytest.raises(ValueError, match=r"shape \[num_samples, len\(modalities\)\] = \[3, 2\]"):
        HardSampleFilter(3, ("a", "b"), available=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="but sample 1 has none of"):
        HardSampleFilter(2, ("a", "b"), available=[[True, False], [False, False]])
    with pytest.raises(ValueError, match="no sample has 'b' \\(a misspelt name"):
        HardSampleFilter(2, ("a", "b"), available=[[True, False], [True, False]])


def test_a_state_keeps_its_availability() -> None:
    avail = torch.tensor([[True, False], [True, True], [False, True]])
    filt = HardSampleFilter(3, ("a", "b"), available=avail)
    state = filt.state_dict()
    HardSampleFilter(3, ("a", "b"), available=avail.clone()).load_state_dict(state)
    other = avail.clone()
    other[1, 0] = False
    with pytest.raises(ValueError, match="state was saved with available="):
        HardSampleFilter(3, ("a", "b"), available=other).load_state_dict(state)
    with pytest.raises(ValueError, match="available=None"):
        HardSampleFilter(3, ("a", "b")).load_state_dict(state)
    old = {k: v for k, v in HardSampleFilter(3, ("a", "b")).state_dict().items()}
    del old["available"]  # a state saved before the key existed: nothing was missing
    HardSampleFilter(3, ("a", "b")).load_state_dict(old)
    with pytest.raises(ValueError, match="available="):
        HardSampleFilter(3, ("a", "b"), available=avail).load_state_dict(old)


# ------------------------------------------------------------------ masking
def _gapped_data(
    n: int, lacks: list[set[str]], dtype: torch.dtype, style: str
) -> list[dict[str, Any]]:
    """Dict samples whose values never contain zeros; a lacking modality is None or absent."""
    out = []
    for i in range(n):
        sample: dict[str, Any] = {
            "audio": torch.full((3,), i % 100 + 1).to(dtype),
            "video": torch.full((2, 2), i % 100 + 2).to(dtype),
            "label": i % 2,
        }
        for name in lacks[i]:
            if style == "none":
                sample[name] = None
            else:
                del sample[name]
        out.append(sample)
    return out


@given(
    st.integers(2, 12).flatmap(
        lambda n: st.lists(
            st.sampled_from([set(), set(), {"audio"}, {"video"}]), min_size=n, max_size=n
        )
    ),
    st.sampled_from(DTYPES),
    st.sampled_from(["zeros", "drop", "none"]),
    st.sampled_from(["none", "absent"]),
    st.randoms(use_true_random=False),
)
def test_a_missing_value_is_masked_the_same_whatever_dataset0_holds(
    lacks: list[set[str]], dtype: torch.dtype, mask: str, style: str, rng: Any
) -> None:
    names = ("audio", "video")
    n = len(lacks)
    for name in names:  # every modality in some sample, not always after dataset[0]
        if all(name in lack for lack in lacks):
            lacks[rng.randrange(n)] = set()
    data = _gapped_data(n, lacks, dtype, style)
    avail = scan_available(data, names)
    filt = HardSampleFilter(n, names, available=avail)
    decoupler = ModalityDecoupler(data, filt, mask=mask)
    keys = [(i, -1) for i in range(n)]  # joint keys: every modality shown
    keys += [(i, m) for i in range(n) for m in range(2) if bool(avail[i, m])]
    rng.shuffle(keys)
    for start in range(0, len(keys), 3):  # mixed batches too, and single keys
        chunk = keys[start : start + 3]
        for (sample, i, m), key in zip(decoupler.__getitems__(chunk), chunk):
            assert (i, m) == key
            for k, name in enumerate(names):
                value = sample.get(name)
                if bool(avail[i, k]) and (m in (-1, k) or mask == "none"):
                    assert torch.equal(value, data[i][name]), "a visible modality changed"
                    continue
                if mask == "drop" and m >= 0:
                    assert name not in sample, "drop removes every masked modality"
                    continue
                shape = (3,) if name == "audio" else (2, 2)  # never dataset[0]'s guess
                assert isinstance(value, torch.Tensor) and value.dtype == dtype
                assert value.shape == shape and not value.any(), (name, i, m)
    for i in range(n):  # the item path agrees with the batch path
        for m in [-1] + [k for k in range(2) if bool(avail[i, k])]:
            one, _, _ = decoupler[(i, m)]
            (batch, _, _), *_ = decoupler.__getitems__([(i, m)])
            assert one.keys() == batch.keys()
            assert all(torch.equal(one[k], batch[k]) for k in names if k in one)


def test_a_key_that_trains_a_missing_modality_is_refused() -> None:
    data = _gapped_data(4, [set(), {"video"}, set(), set()], torch.float32, "none")
    filt = HardSampleFilter(
        4, ("audio", "video"), available=scan_available(data, ("audio", "video"))
    )
    decoupler = ModalityDecoupler(data, filt)
    with pytest.raises(ValueError, match=r"key \(1, 1\) trains 'video', which sample 1 lacks"):
        decoupler[(1, 1)]
    with pytest.raises(ValueError, match=r"available\[1, 1\] is False"):
        decoupler.__getitems__([(0, 1), (1, 1)])


def test_scan_available_reads_none_and_absent_values_of_any_layout() -> None:
    pairs = [(torch.ones(1), None), (torch.ones(1), torch.ones(2)), (None, torch.ones(2))]
    table = scan_available(pairs, ("audio", "video"), locations={"audio": 0, "video": 1})
    assert table.tolist() == [[True, False], [True, True], [False, True]]
    nested = [{"x": {"a": 1}}, {"x": {"a": 1, "v": 2}}]
    table = scan_available(nested, ("audio", "video"), locations={"audio": "x.a", "video": "x.v"})
    assert table.tolist() == [[True, False], [True, True]]


# ------------------------------------------------------------- whole runs
def _heads(sample: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("audio", "video"):
        if name in sample:
            x = sample[name].float().flatten(1).sum(1, keepdim=True)
            out[name] = torch.cat([torch.sin(x), torch.cos(3 * x), torch.zeros_like(x)], 1)
    return out


@pytest.mark.parametrize(
    ("preset", "masking", "workers"),
    [(RECOMMENDED, "drop", 2), (PAPER, "zeros", 2), (RECOMMENDED, "zeros", 0)],
)
def test_a_run_with_missing_modalities_keeps_every_invariant(
    preset: Any, masking: str, workers: int
) -> None:
    rng = np.random.default_rng(3)
    n = 45
    lacks = [set() if r < 0.6 else {"audio"} if r < 0.75 else {"video"} for r in rng.random(n)]
    lacks[0] = {"video"}  # dataset[0] itself lacks one
    data = _gapped_data(n, lacks, torch.float32, "none")
    labels = [s["label"] for s in data]
    parts = build(preset, data, modalities=("audio", "video"), batch_size=4, epochs=6,
                  labels=labels, masking=masking, available="scan")  # fmt: skip
    avail = parts.filter.available
    assert avail is not None and avail.tolist() == [
        [name not in lack for name in ("audio", "video")] for lack in lacks
    ]
    loader = parts.loader(num_workers=workers, persistent_workers=workers > 0)
    trained: list[tuple[int, int]] = []

    def train(run: Any) -> None:
        for epoch in range(6):
            if preset.scoring == "pass" and not parts.sampler.is_warmup(epoch):
                scoring_pass(_heads, parts.data, parts.filter, epoch=epoch, progress=False)
            parts.sampler.set_epoch(epoch)
            for sample, index, modality in run:
                trained.extend(zip(index.tolist(), modality.tolist()))
                if preset.scoring == "online":
                    parts.filter.update(index, _heads(sample), modality=modality)

    passes = check_loader(loader, data, train=train)
    assert len(passes) == 6
    remix = [(i, m) for i, m in trained if m >= 0]
    assert remix and all(bool(avail[i, m]) for i, m in remix)
    lacking_ones = {i for i, lack in enumerate(lacks) if lack}
    assert lacking_ones & {i for i, _ in remix}, "samples with a gap still train"
    values = parts.filter.state_dict()["values"]
    if preset.scoring == "pass":  # scored only on the modalities it has
        assert bool(torch.isnan(values.T[~avail]).all())
        assert not bool(torch.isnan(values.T[avail]).any())


def test_check_loader_sees_a_gap_that_the_dataset_hid_from_the_filter() -> None:
    """A project's dataset fills missing text with zeros itself: the rule cannot know."""
    raw = _gapped_data(12, [set(), {"video"}] * 6, torch.float32, "none")

    class Filled(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(raw)

        def __getitem__(self, i: int) -> dict[str, Any]:
            sample = dict(raw[i])
            if sample["video"] is None:
                sample["video"] = torch.zeros(2, 2)
            return sample

    filt = HardSampleFilter(len(raw), ("audio", "video"))
    sampler = ReassemblingBatchSampler(filt, 4, warmup_epochs=1)
    loader = DataLoader(ModalityDecoupler(Filled(), filt), batch_sampler=sampler)
    with pytest.raises(AssertionError, match=r"missing modalities declared: dataset\[1\] lacks"):
        check_loader(loader, raw, epochs=2)
    declared = HardSampleFilter(len(raw), ("audio", "video"),
                                available=scan_available(raw, ("audio", "video")))  # fmt: skip
    sampler = ReassemblingBatchSampler(declared, 4, warmup_epochs=1)
    loader = DataLoader(ModalityDecoupler(raw, declared), batch_sampler=sampler, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemixWarning)
        assert len(check_loader(loader, raw, epochs=3)) == 3
