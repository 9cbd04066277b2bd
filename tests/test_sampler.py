"""ReassemblingBatchSampler: the epoch invariants as hypothesis properties."""

from __future__ import annotations

from itertools import pairwise

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import BatchSampler, RandomSampler

from remix_data import ALL, HardSampleFilter, ReassemblingBatchSampler
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
    keys = [i for b in batches for i, _ in b]
    assert len(keys) == len(set(keys))
    if sampler.is_warmup():
        assert sorted(keys) == list(range(config["num_samples"]))
    else:
        assign = sampler.filter.snapshot(config["epoch"])
        assert sorted(keys) == (assign >= 0).nonzero().squeeze(1).tolist()
        if config["keep_ratio"] is None:
            expected = naive_assignment(config["values"], config["score"])
            assert sorted(keys) == [i for i, m in enumerate(expected) if m >= 0]
    assert len(sampler) == len(batches)


@given(single)
def test_same_seed_and_epoch_give_the_same_batches(config: dict) -> None:
    (a,) = build_samplers(config)
    (b,) = build_samplers(config)
    a.set_epoch(config["epoch"])
    b.set_epoch(config["epoch"])
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice replays the epoch


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
    assert list(fresh) == full  # the next pass over the same epoch starts afresh
