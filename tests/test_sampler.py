"""ReassemblingBatchSampler: the epoch invariants as hypothesis properties."""

from __future__ import annotations

import warnings
from itertools import pairwise

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    RemixWarning,
)
from remix_data.sampler import TAILS, split_batches
from remix_data.testing import build_samplers, check_epoch, naive_assignment, sampler_configs

single = sampler_configs(max_replicas=1, max_accumulation=1)


@given(sampler_configs())
def test_epoch_invariants_hold_for_any_configuration(config: dict) -> None:
    check_epoch(build_samplers(config), epoch=config["epoch"])


@given(single)
def test_single_process_each_kept_sample_exactly_once(config: dict) -> None:
    config["drop_last"] = False
    (sampler,) = build_samplers(config)
    (batches,) = check_epoch(sampler, epoch=config["epoch"])
    keys = [i for b in batches for i, _ in b if i >= 0]  # PAD keys (~i) only fill a batch
    assert len(keys) == len(set(keys))
    # only a lone sample of a subset (tail="merge", batch_size > 1) is left out
    lone = sum(sampler.stats()["dropped"].values())
    assert lone <= len(sampler.filter.modalities) + 1
    assert lone == 0 or (config["tail"] == "merge" and config["batch_size"] > 1)
    if sampler.is_warmup():
        kept = list(range(config["num_samples"]))
    else:
        assign = sampler.filter.snapshot(config["epoch"])
        kept = (assign >= 0).nonzero().squeeze(1).tolist()
        plain = config["balance"] == "none" and config["smoothing"] == 0.0
        if config["keep_ratio"] is None and config["threshold"] is None and plain:
            expected = naive_assignment(config["values"], config["score"], config["unscored"])
            assert kept == [i for i, m in enumerate(expected) if m >= 0]
    assert set(keys) <= set(kept) and len(kept) - len(keys) == lone
    assert len(sampler) == len(batches)


@given(single)
def test_same_seed_and_epoch_give_the_same_batches(config: dict) -> None:
    (a,) = build_samplers(config)
    (b,) = build_samplers(config)
    a.set_epoch(config["epoch"])
    b.set_epoch(config["epoch"])
    first = list(a)
    assert first == list(b)
    with pytest.warns(RemixWarning, match="iterated again"):
        assert list(a) == first  # iterating twice replays the epoch, with a warning


def test_seed_and_epoch_change_the_order() -> None:
    filt = HardSampleFilter(200, ("a", "b"))
    s1 = ReassemblingBatchSampler(filt, 8, seed=1)
    s2 = ReassemblingBatchSampler(filt, 8, seed=2)
    first = list(s1)
    assert first != list(s2)
    s1.set_epoch(1)
    assert first != list(s1)


@given(single)
def test_sequential_order_keeps_modalities_in_turn(config: dict) -> None:
    config.update(order="sequential", warmup_epochs=0)
    (sampler,) = build_samplers(config)
    sampler.set_epoch(config["epoch"])
    mods = [b[0][1] for b in sampler]
    assert mods == sorted(mods)


def test_interleave_spreads_each_modality_evenly() -> None:
    filt = HardSampleFilter(400, ("a", "b"), score="loss")
    # 100 samples to a, 300 to b
    filt.update(
        torch.arange(400), {"a": (torch.arange(400) < 100).float(), "b": torch.full((400,), 0.5)}
    )
    sampler = ReassemblingBatchSampler(filt, 10, order="interleave")
    mods = [b[0][1] for b in sampler]
    assert mods.count(0) == 10 and mods.count(1) == 30
    positions = [t for t, m in enumerate(mods) if m == 0]
    assert all(3 <= later - earlier <= 5 for earlier, later in pairwise(positions))


def test_warmup_yields_joint_batches_like_torch_batch_sampler() -> None:
    filt = HardSampleFilter(50, ("a", "b"))
    sampler = ReassemblingBatchSampler(filt, 8, warmup_epochs=2)
    torch_sampler = BatchSampler(RandomSampler(range(50)), 8, drop_last=False)
    ours = list(sampler)
    assert [len(b) for b in ours] == [len(b) for b in torch_sampler]
    assert {m for b in ours for _, m in b} == {ALL}
    sampler.set_epoch(2)
    assert ALL not in {m for b in sampler for _, m in b}


def test_assignment_is_snapshotted_at_set_epoch() -> None:
    filt = HardSampleFilter(6, ("a", "b"), score="loss")
    filt.update(torch.arange(6), {"a": torch.ones(6), "b": torch.zeros(6)})
    sampler = ReassemblingBatchSampler(filt, 2)
    sampler.set_epoch(1)
    filt.update(torch.arange(6), {"a": torch.zeros(6), "b": torch.ones(6)}, modality=ALL)
    assert {m for b in sampler for _, m in b} == {0}
    sampler.set_epoch(2)
    assert {m for b in sampler for _, m in b} == {1}


def test_empty_modality_subset_still_runs_the_epoch() -> None:
    filt = HardSampleFilter(9, ("a", "b", "c"), score="loss")
    filt.update(torch.arange(9), {"a": torch.ones(9), "b": torch.zeros(9), "c": torch.zeros(9)})
    for order in ("sequential", "interleave", "random"):
        sampler = ReassemblingBatchSampler(filt, 4, order=order, num_replicas=2, rank=0)
        stats = sampler.stats()
        assert stats["samples"] == {"a": 9, "b": 0, "c": 0}
        assert len(list(sampler)) == len(sampler) == 2


def test_distributed_padding_is_counted_and_bounded() -> None:
    filt = HardSampleFilter(11, ("a", "b"), score="loss")
    filt.update(
        torch.arange(11), {"a": (torch.arange(11) < 3).float(), "b": torch.full((11,), 0.5)}
    )
    samplers = [
        ReassemblingBatchSampler(filt, 2, num_replicas=2, rank=r, accumulation_steps=2)
        for r in range(2)
    ]
    batches = check_epoch(samplers, epoch=0)
    stats = samplers[0].stats()
    # a: 3 samples -> one global step of 8, 5 repeats; b: 8 samples -> exactly one step
    assert stats["padded"] == {"a": 5, "b": 0}
    assert len(batches[0]) == len(batches[1]) == 4
    dropping = ReassemblingBatchSampler(
        filt, 2, num_replicas=2, rank=0, accumulation_steps=2, drop_last=True
    )
    assert dropping.stats()["dropped"] == {"a": 3, "b": 0}
    assert len(dropping) == 2


def test_len_and_attributes_like_torch() -> None:
    filt = HardSampleFilter(10, ("a", "b"))
    sampler = ReassemblingBatchSampler(filt, 3, drop_last=True)
    assert sampler.batch_size == 3 and sampler.drop_last is True
    assert len(sampler) == len(list(sampler))


@given(single, st.integers(0, 30))
def test_resume_from_state_dict_yields_the_rest(config: dict, stop: int) -> None:
    (sampler,) = build_samplers(config)
    sampler.set_epoch(config["epoch"])
    full = list(sampler)
    stop = min(stop, len(full))
    sampler.set_epoch(config["epoch"])  # a second pass over the epoch, on purpose
    it = iter(sampler)
    for _ in range(stop):
        next(it)
    state = sampler.state_dict()
    filter_state = sampler.filter.state_dict()
    (fresh,) = build_samplers(config)
    fresh.filter.load_state_dict(filter_state)
    fresh.load_state_dict(state)
    fresh.set_epoch(config["epoch"])  # a loop that calls set_epoch again must not reset
    assert list(fresh) == full[stop:]
    fresh.set_epoch(config["epoch"])
    assert list(fresh) == full  # the next pass over the same epoch starts afresh


# ------------------------------------------------------------------ tail rule
@given(st.integers(0, 200), st.integers(1, 17), st.booleans(), st.sampled_from(TAILS))
def test_split_batches_covers_the_subset_and_never_makes_a_batch_of_one(
    n: int, b: int, drop_last: bool, tail: str
) -> None:
    cut = split_batches(n, b, drop_last=drop_last, tail=tail)
    sizes = cut.sizes()
    assert sum(sizes) == cut.kept + cut.padded and cut.kept + cut.dropped == n
    assert len(sizes) == cut.batches
    torch_sizes = [len(x) for x in BatchSampler(range(n), b, drop_last)]
    if tail == "fill":  # static shapes: torch's batches, the last completed by PAD rows
        assert sizes == [b] * len(torch_sizes) and cut.merged == cut.dropped * (not drop_last)
        assert cut.padded == sum(b - s for s in torch_sizes) and cut.padded < b
    elif tail == "keep" or drop_last or b == 1:
        assert sizes == torch_sizes and cut.merged == 0
    else:
        assert 1 not in sizes
        assert all(s == b for s in sizes[:-1]) and all(2 <= s <= b + 1 for s in sizes)
        # it differs from torch only where torch's last batch holds one sample
        assert (sizes != torch_sizes) == (torch_sizes[-1:] == [1])
        assert cut.merged + cut.dropped == (torch_sizes[-1:] == [1])


def test_split_batches_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tail='last'"):
        split_batches(3, 2, tail="last")
    with pytest.raises(ValueError, match="batch_size=0"):
        split_batches(3, 0)
    with pytest.raises(ValueError, match="n=-1"):
        split_batches(-1, 2)
    with pytest.raises(ValueError, match="tail='x'"):
        ReassemblingBatchSampler(HardSampleFilter(4, ("a", "b")), 2, tail="x")


@pytest.mark.parametrize("tail", ["merge", "keep"])
def test_batchnorm_trains_on_every_default_batch(tail: str) -> None:
    """A subset of ``k * batch_size + 1`` samples: the paper's tail crashes BatchNorm."""
    n, names = 18, ("a", "b")  # spread: 9 samples per modality, batch 4 -> 4, 4, 1
    filt = HardSampleFilter(n, names)
    sampler = ReassemblingBatchSampler(filt, 4, tail=tail)
    data = ModalityDecoupler([{"a": torch.randn(3), "b": torch.randn(3)} for _ in range(n)], names)
    norm = torch.nn.BatchNorm1d(3).train()

    sizes: list[int] = []

    def run() -> int:
        for sample, index, _ in DataLoader(data, batch_sampler=sampler):
            sizes.append(len(index))
            norm(sample["a"])
        return sum(sizes)

    if tail == "keep":
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            run()
        assert sizes[-1] == 1 and all(s == 4 for s in sizes[:-1])  # it was the batch of one
    else:
        assert run() == n and min(sizes) > 1
        assert sorted(sizes) == [4, 4, 5, 5]  # each subset's 4, 4, 1 -> 4, 5
        assert sampler.stats()["merged"] == {"a": 1, "b": 1}


# ------------------------------------------------------------ epoch wiring
def test_iterating_a_consumed_epoch_again_without_set_epoch_warns_once() -> None:
    sampler = ReassemblingBatchSampler(HardSampleFilter(10, ("a", "b")), 3, warmup_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemixWarning)
        list(sampler)  # epoch 0, first time: fine
        iter(sampler)  # DataLoader calls iter more than once: only a consumed epoch counts
        sampler.set_epoch(0)
        list(sampler)  # re-armed by set_epoch (same epoch, like DistributedSampler)
    with pytest.warns(RemixWarning, match=r"epoch 0 is iterated again .* set_epoch") as caught:
        list(sampler)
        list(sampler)
    assert len([w for w in caught if w.category is RemixWarning]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemixWarning)
        sampler.set_epoch(1)
        list(sampler)


def test_set_epoch_going_backwards_warns_outside_a_resume() -> None:
    # Warm-up epochs only: no snapshot, so the filter's state pairs with any of them.
    filt = HardSampleFilter(10, ("a", "b"))
    sampler = ReassemblingBatchSampler(filt, 3, warmup_epochs=10)
    sampler.set_epoch(3)
    with pytest.warns(RemixWarning, match=r"set_epoch\(1\) goes back from epoch 3"):
        sampler.set_epoch(1)
    resumed = ReassemblingBatchSampler(filt, 3, warmup_epochs=10)
    resumed.set_epoch(5)
    state = sampler.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemixWarning)
        resumed.load_state_dict(state)  # a resume to epoch 1
        resumed.set_epoch(1)
        list(resumed)


def test_set_epoch_while_the_previous_epoch_runs_resumes_to_the_whole_new_epoch() -> None:
    filt = HardSampleFilter(20, ("a", "b"))
    sampler = ReassemblingBatchSampler(filt, 3)
    sampler.set_epoch(1)
    running = iter(sampler)
    next(running)
    sampler.set_epoch(2)
    rest = list(running)  # the old iterator finishes epoch 1 ...
    assert len(rest) == len(sampler) - 1
    state = sampler.state_dict()  # ... without moving epoch 2's position
    assert (state["epoch"], state["yielded"]) == (2, 0)
    again = ReassemblingBatchSampler(filt, 3)
    again.load_state_dict(state)
    expected = ReassemblingBatchSampler(filt, 3)
    expected.set_epoch(2)
    planned = list(expected)
    assert list(again) == planned and len(planned) > 0


def test_len_and_stats_of_a_planned_epoch_take_no_snapshot() -> None:
    filt = HardSampleFilter(20, ("a", "b"))
    sampler = ReassemblingBatchSampler(filt, 3)
    sampler.set_epoch(1)
    other = ReassemblingBatchSampler(filt, 4)
    other.set_epoch(2)  # the filter's snapshot moves on to epoch 2
    records = len(filt.history)
    assert len(sampler) == len(list(sampler))
    assert sampler.stats()["epoch"] == 1
    assert len(filt.history) == records and filt.snapshot_epoch == 2
