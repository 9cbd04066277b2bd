"""Distributed semantics: one modality per optimiser step on every rank, disjoint shards
with bounded, counted padding, one score sync per epoch.

Two layers:

- hypothesis over world sizes 1-8 and accumulation 1-4, every rank simulated in
  this process (the plan is a pure function of the seed, the epoch and the
  synced assignment, so simulated ranks plan exactly what real ranks plan);
- real ``torch.distributed`` runs: 2 processes started by
  :func:`remix_data.gloo.run_ranks` (spawn, gloo over a file store on loopback), real
  ``DataLoader``/``ModalityDecoupler`` pipelines and a real DDP model. The ranks
  write what they saw to files; the tests below read them.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from remix_data import (
    ALL,
    FILTERED,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    remix_loss,
)
from remix_data.gloo import run_ranks
from remix_data.testing import build_samplers, check_epoch, check_step_modalities, sampler_configs
from remix_data.vocabulary import PAD

Batch = list[tuple[int, int]]


# --------------------------------------------------------------------------------------
# Invariants beyond remix_data.testing.check_epoch
# --------------------------------------------------------------------------------------
def check_shards(samplers: list[ReassemblingBatchSampler], batches: list[list[Batch]]) -> None:
    """Padding and dropping rules, per modality, and identical plans on every rank.

    - every rank reports the same statistics (same plan, same padding);
    - a modality's PAD keys ``(~i, m)``, over all ranks, are exactly its
      ``padded`` count and repeat its own samples; its other keys are disjoint
      over the ranks' shards;
    - padding completes the modality's last global step (or, with
      ``tail="fill"``, its last batch) and never exceeds one global step
      (``num_replicas * accumulation_steps * batch_size``); without
      ``drop_last`` nothing is dropped, with it exactly the incomplete step is;
    - every rank's batch count is ``accumulation_steps`` times the number of
      global steps.
    """
    first = samplers[0]
    stats = [s.stats() for s in samplers]
    assert all(s == stats[0] for s in stats), "ranks disagree on the epoch's plan"
    a = first.accumulation_steps
    step = first.global_step_size
    distributed = first.num_replicas * a > 1
    names = list(stats[0]["samples"])
    ids = [ALL if name == "all" else first.filter.modalities.index(name) for name in names]
    steps = 0
    for name, mod in zip(names, ids):
        n = stats[0]["samples"][name]
        padded, dropped = stats[0]["padded"][name], stats[0]["dropped"][name]
        unit = step if distributed else first.batch_size
        tail = n % unit
        if first.drop_last:
            assert (padded, dropped) == (0, tail), (name, n, unit)
        else:
            # tail='merge' on one process: a subset of exactly one sample makes no
            # batch of one; it is dropped and counted.
            lone = not distributed and first.tail == "merge" and n == 1 < first.batch_size
            assert dropped == int(lone)
            filled = distributed or first.tail == "fill"
            assert padded == (unit - tail if tail and filled else 0)
        assert padded < step
        keys = [i for rank in batches for b in rank for i, m in b if m == mod]
        counts = Counter(i for i in keys if i >= 0)
        pads = [~i for i in keys if i < 0]
        assert set(counts.values()) <= {1} and len(pads) == padded
        assert set(pads) <= set(counts)  # a PAD key repeats a sample of its own modality
        assert len(counts) == n - dropped
        if distributed:
            assert (n - dropped + padded) % step == 0
            steps += (n - dropped + padded) // step
    if distributed:
        assert all(len(rank) == steps * a for rank in batches)


def step_modalities(rank_batches: list[Batch], accumulation: int) -> list[int]:
    """The modality of each optimiser step of one rank (asserting micro-batches agree)."""
    mods = [b[0][1] for b in rank_batches]
    steps = [mods[i : i + accumulation] for i in range(0, len(mods), accumulation)]
    assert all(len(set(s)) == 1 for s in steps)
    return [s[0] for s in steps]


# --------------------------------------------------------------------------------------
# Simulated ranks (hypothesis)
# --------------------------------------------------------------------------------------
@given(sampler_configs(max_samples=90, max_replicas=8, max_accumulation=4))
def test_shards_are_disjoint_except_counted_bounded_padding(config: dict[str, Any]) -> None:
    samplers = build_samplers(config)
    batches = check_epoch(samplers, epoch=config["epoch"])
    check_shards(samplers, batches)


@given(
    st.integers(2, 8),
    st.integers(1, 4),
    st.integers(1, 9),
    st.data(),
)
def test_tiny_datasets_and_empty_subsets_give_every_rank_a_valid_epoch(
    world: int, accumulation: int, batch: int, data: st.DataObject
) -> None:
    n = data.draw(st.integers(1, max(1, world * batch - 1)), label="num_samples")
    modalities = ("a", "b", "c")
    # every sample is hardest in "a": "b" and "c" get empty subsets
    values = torch.stack((torch.ones(n), torch.zeros(n), torch.zeros(n)))
    config = {
        "num_samples": n,
        "modalities": modalities,
        "values": values,
        "score": "loss",
        "batch_size": batch,
        "order": data.draw(st.sampled_from(["sequential", "interleave", "random"])),
        "drop_last": data.draw(st.booleans(), label="drop_last"),
        "seed": data.draw(st.integers(0, 99)),
        "warmup_epochs": 1,
        "num_replicas": world,
        "accumulation_steps": accumulation,
    }
    samplers = build_samplers(config)
    for epoch in (0, 1):  # a joint warm-up epoch, then a remix epoch
        batches = check_epoch(samplers, epoch=epoch)
        check_shards(samplers, batches)
        if not config["drop_last"]:
            # fewer samples than one global step: exactly one padded step per rank
            assert [len(rank) for rank in batches] == [accumulation] * world
            assert {i for rank in batches for b in rank for i, _ in b if i >= 0} == set(range(n))
        else:
            assert [len(rank) for rank in batches] == [0] * world
        if epoch == 1:
            stats = samplers[0].stats()
            assert stats["samples"] == {"a": n, "b": 0, "c": 0}


@given(sampler_configs(max_samples=60, max_replicas=8, max_accumulation=4))
def test_ranks_with_their_own_filters_plan_one_consistent_global_epoch(
    config: dict[str, Any],
) -> None:
    """Real ranks hold separate filters: same state -> the shared-filter plan, shard by shard."""
    shared = build_samplers(config)
    reference = check_epoch(shared, epoch=config["epoch"])
    state = shared[0].filter.state_dict()
    own = []
    for rank in range(config["num_replicas"]):
        (sampler, *_) = build_samplers({**config, "num_replicas": 1})
        sampler.filter.load_state_dict(state)
        own.append(
            ReassemblingBatchSampler(
                sampler.filter,
                config["batch_size"],
                warmup_epochs=config["warmup_epochs"],
                order=config["order"],
                drop_last=config["drop_last"],
                seed=config["seed"],
                num_replicas=config["num_replicas"],
                rank=rank,
                accumulation_steps=config["accumulation_steps"],
                joint_fraction=config["joint_fraction"],
                tail=config["tail"],
            )
        )
    for rank, sampler in enumerate(own):
        sampler.set_epoch(config["epoch"])
        assert list(sampler) == reference[rank]
        assert len(sampler) == len(reference[0])
    a = config["accumulation_steps"]
    plans = {tuple(step_modalities(rank, a)) for rank in reference}
    assert len(plans) == 1


def test_padding_repeats_the_modality_own_samples_only() -> None:
    filt = HardSampleFilter(10, ("a", "b"), score="loss")
    filt.update(torch.arange(10), {"a": (torch.arange(10) < 3).float(), "b": torch.ones(10) / 2})
    samplers = [
        ReassemblingBatchSampler(filt, 2, num_replicas=4, rank=r, accumulation_steps=1)
        for r in range(4)
    ]
    batches = check_epoch(samplers, epoch=0)
    check_shards(samplers, batches)
    # a: 3 samples -> one global step of 8 (5 repeats); b: 7 -> one step of 8 (1 repeat)
    assert samplers[0].stats()["padded"] == {"a": 5, "b": 1}
    for rank in batches:
        for batch in rank:
            mod = batch[0][1]
            assert all(((i if i >= 0 else ~i) < 3) == (mod == 0) for i, _ in batch)


# --------------------------------------------------------------------------------------
# Real processes: 2 ranks, gloo
# --------------------------------------------------------------------------------------
WORLD = 2
N, CLASSES, BATCH, ACCUMULATION, WARMUP, EPOCHS = 101, 4, 3, 2, 1, 4
MODALITIES = ("audio", "video", "text")
TINY = 3  # fewer samples than ranks x batch size
DDP_SAMPLES = 40


def score_table(epoch: int) -> torch.Tensor:
    """``[M, N, C]`` logits the 'model' produces in ``epoch`` (same on every rank)."""
    gen = torch.Generator().manual_seed(1000 + epoch)
    return torch.randn(len(MODALITIES), N, CLASSES, generator=gen) * 3


class Features(Dataset[dict[str, Any]]):
    """Dict samples: one feature vector per modality, and a label."""

    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(5)
        self.x = {m: torch.randn(n, 4 + k, generator=gen) for k, m in enumerate(MODALITIES)}
        self.y = torch.arange(n) % CLASSES

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**{m: self.x[m][i] for m in MODALITIES}, "label": self.y[i]}


class Net(torch.nn.Module):
    """One encoder and head per modality, a fused head (late fusion)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoders = torch.nn.ModuleList(
            torch.nn.Linear(4 + k, 8) for k in range(len(MODALITIES))
        )
        self.heads = torch.nn.ModuleList(torch.nn.Linear(8, CLASSES) for _ in MODALITIES)
        self.fused = torch.nn.Linear(8 * len(MODALITIES), CLASSES)

    def forward(self, sample: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = [enc(sample[m]).relu() for enc, m in zip(self.encoders, MODALITIES)]
        return self.fused(torch.cat(feats, 1)), [h(f) for h, f in zip(self.heads, feats)]


def _collectives_so_far() -> int:
    """Collectives issued on the default group: c10d numbers every one of them."""
    group = dist.group.WORLD
    assert isinstance(group, dist.ProcessGroup)
    return int(group._get_sequence_number_for_group())


def _pipeline_run(rank: int) -> dict[str, Any]:
    """Sampler + filter + loader under torch.distributed, collectives counted per epoch."""
    filt = HardSampleFilter(N, MODALITIES)
    sampler = ReassemblingBatchSampler(
        filt, BATCH, warmup_epochs=WARMUP, order="interleave", accumulation_steps=ACCUMULATION
    )
    loader = DataLoader(ModalityDecoupler(Features(N), MODALITIES), batch_sampler=sampler)
    out: dict[str, Any] = {
        "num_replicas": sampler.num_replicas,
        "rank": sampler.rank,
        "batches": [],
        "lengths": [],
        "stats": [],
        "snapshots": [],
        "collectives": [],
    }
    for epoch in range(EPOCHS):
        table = score_table(epoch)
        epoch_batches: list[Batch] = []
        before = _collectives_so_far()
        sampler.set_epoch(epoch)
        for sample, index, modality in loader:
            assert sample["label"].shape == index.shape
            epoch_batches.append(list(zip(index.tolist(), modality.tolist())))
            logits = {m: table[k, index] for k, m in enumerate(MODALITIES)}
            filt.update(index, logits, modality=modality)
        out["collectives"].append(_collectives_so_far() - before)
        out["batches"].append(epoch_batches)
        out["lengths"].append(len(sampler))
        out["stats"].append(sampler.stats())
        snap = None if sampler.is_warmup() else filt.snapshot(epoch).clone()
        out["snapshots"].append(snap)
    out["filter_state"] = filt.state_dict()
    out["sampler_state"] = sampler.state_dict()
    out["filter_history"] = filt.history
    return out


def _ddp_run(rank: int) -> dict[str, Any]:
    """A real DDP model trained on the remix batches, with gradient accumulation."""
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    model = DistributedDataParallel(Net())
    filt = HardSampleFilter(DDP_SAMPLES, MODALITIES)
    sampler = ReassemblingBatchSampler(
        filt, BATCH, warmup_epochs=1, order="random", accumulation_steps=ACCUMULATION, seed=3
    )
    data = ModalityDecoupler(Features(DDP_SAMPLES), MODALITIES)
    loader = DataLoader(data, batch_sampler=sampler)
    received: list[list[int]] = []  # every micro-batch's modality column
    for epoch in range(2):
        sampler.set_epoch(epoch)
        micro: list[int] = []
        for t, (sample, index, modality) in enumerate(loader):
            received.append(modality.tolist())
            micro.extend(set(modality.tolist()) - {PAD})  # PAD rows only fill a last step
            last = (t + 1) % ACCUMULATION == 0
            fused, heads = model(sample)
            outputs = dict(zip(MODALITIES, heads))
            loss = remix_loss(fused, outputs, sample["label"], modality, MODALITIES)
            if last:
                (loss / ACCUMULATION).backward()  # DDP averages the gradients here
                with torch.no_grad():  # plain SGD (torch.optim's first import is slow)
                    for p in model.parameters():
                        p -= 0.05 * p.grad
                        p.grad = None
                assert len(set(micro)) <= 1  # none: this rank's share of the step is all PAD
                micro = []
            else:
                with model.no_sync():
                    (loss / ACCUMULATION).backward()
            with torch.no_grad():
                filt.update(index, {m: h for m, h in zip(MODALITIES, heads)}, modality=modality)
        assert not micro
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {"received": received, "params": params, "snapshot": filt.snapshot(1)}


def _edge_run(rank: int) -> dict[str, Any]:
    """A tiny dataset with an empty modality subset, and ranks that disagree on the epoch."""
    filt = HardSampleFilter(TINY, MODALITIES, score="loss")
    sampler = ReassemblingBatchSampler(filt, 4, accumulation_steps=2)
    # each rank scores only its own sample (hardest in "audio"); sample 2 stays unscored
    mine = torch.tensor([rank])
    filt.update(
        mine,
        {"audio": torch.ones(1), "video": torch.zeros(1), "text": torch.zeros(1)},
        modality=ALL,
    )
    sampler.set_epoch(1)
    out: dict[str, Any] = {
        "tiny_batches": list(sampler),
        "tiny_len": len(sampler),
        "tiny_stats": sampler.stats(),
        "tiny_snapshot": filt.snapshot(1).clone(),
    }
    try:
        filt.snapshot(2 + rank)  # rank 0 plans epoch 2, rank 1 epoch 3
    except RuntimeError as err:
        out["mismatch_error"] = str(err)
    try:
        filt.snapshot(4 + 64 * rank)  # epochs 4 and 68: no aliasing of epochs 64 apart
    except RuntimeError as err:
        out["aliased_error"] = str(err)
    return out


GATHER_N = 12


def _gather_phase(filt: HardSampleFilter, rank: int, phase: int) -> None:
    """Overlapping writes: before the checkpoint (phase 0) rows 4-7 are written on both
    ranks; after it (phase 1) rank 0 rewrites rows 6-9 and rank 1 rows 0-1 (written on
    rank 0 before), so same-rank rewrites (smoothed) and cross-rank merges both occur."""
    rows = [[range(0, 8), range(4, 12)], [range(6, 10), range(0, 2)]][phase][rank]
    index = torch.tensor(list(rows))
    base = index.float() * (1 + rank) + 10 * phase
    filt.update(index, {"audio": base % 5, "video": (base * 3) % 7}, modality=ALL)


def _gather_run(rank: int, out_dir: str) -> dict[str, Any]:
    """One checkpoint from rank 0, loaded on every rank, versus the uninterrupted filter."""

    def make() -> HardSampleFilter:
        return HardSampleFilter(GATHER_N, ("audio", "video"), score="loss", smoothing=0.5)

    whole = make()
    whole.update(
        torch.arange(GATHER_N),
        {"audio": torch.ones(GATHER_N), "video": torch.ones(GATHER_N)},
        modality=ALL,
    )
    whole.snapshot(0)  # a synced base table, so smoothing blends with it
    _gather_phase(whole, rank, 0)
    gathered, local = whole.state_dict(), whole.state_dict(gather=False)
    path = Path(out_dir) / "gathered.pt"
    if rank == 0:
        torch.save({"gathered": gathered, "local": local}, path)
    dist.barrier()
    _gather_phase(whole, rank, 1)
    whole.snapshot(1)
    out: dict[str, Any] = {"whole": whole.state_dict(gather=False)}
    saved = torch.load(path, weights_only=True)  # rank 0's checkpoint on every rank
    for kind in ("gathered", "local"):
        resumed = make()
        resumed.load_state_dict(saved[kind])
        _gather_phase(resumed, rank, 1)
        resumed.snapshot(1)
        out[kind] = resumed.state_dict(gather=False)
    out["state"] = gathered
    # ranks at different snapshot epochs: every rank raises instead of saving
    skewed = make()
    other = HardSampleFilter(
        GATHER_N, ("audio", "video"), score="loss", smoothing=0.5, sync="never"
    )
    other.snapshot(1 + rank)
    skewed.load_state_dict(other.state_dict())
    try:
        skewed.state_dict()
    except RuntimeError as err:
        out["skew_error"] = str(err)
    return out


def _rank_main(rank: int, out_dir: str) -> dict[str, Any]:
    return {
        "pipeline": _pipeline_run(rank),
        "ddp": _ddp_run(rank),
        "edge": _edge_run(rank),
        "gather": _gather_run(rank, out_dir),
    }


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("gloo")
    return run_ranks(_rank_main, WORLD, tmp, str(tmp), timeout=120)


def test_ranks_take_world_size_and_rank_from_torch_distributed(ranks: list[dict[str, Any]]) -> None:
    assert [(r["pipeline"]["num_replicas"], r["pipeline"]["rank"]) for r in ranks] == [
        (2, 0),
        (2, 1),
    ]


def test_both_ranks_train_one_modality_per_step_and_yield_the_same_count(
    ranks: list[dict[str, Any]],
) -> None:
    p0, p1 = (r["pipeline"] for r in ranks)
    for epoch in range(EPOCHS):
        b0, b1 = p0["batches"][epoch], p1["batches"][epoch]
        assert len(b0) == len(b1) == p0["lengths"][epoch] == p1["lengths"][epoch] > 0
        assert all(len(b) == BATCH for b in b0 + b1)  # padded, never short
        s0 = check_step_modalities(
            [[[m for _, m in b] for b in rank] for rank in (b0, b1)], ACCUMULATION
        )  # the same modality on both ranks at every step, PAD rows aside
        if epoch < WARMUP:
            assert set(s0) == {ALL}
        else:
            assert ALL not in s0 and len(set(s0)) > 1
        assert p0["stats"][epoch] == p1["stats"][epoch]


def test_shards_are_disjoint_and_cover_the_kept_samples(ranks: list[dict[str, Any]]) -> None:
    p0, p1 = (r["pipeline"] for r in ranks)
    step = WORLD * ACCUMULATION * BATCH
    for epoch in range(EPOCHS):
        stats = p0["stats"][epoch]
        snap = p0["snapshots"][epoch]
        rows = [(i, m) for r in (p0, p1) for b in r["batches"][epoch] for i, m in b]
        both = Counter(i for i, m in rows if m != PAD)
        kept = (
            set(range(N)) if snap is None else set((snap != FILTERED).nonzero().flatten().tolist())
        )
        assert set(both) == kept  # nothing is trimmed
        for name, padded in stats["padded"].items():
            assert padded < step and stats["dropped"][name] == 0
        # the shards are disjoint; PAD rows (repeats) are the counted padding
        assert set(both.values()) == {1}
        assert sum(1 for _, m in rows if m == PAD) == sum(stats["padded"].values())
        if snap is not None:
            for rank_batches in (p0["batches"][epoch], p1["batches"][epoch]):
                for b in rank_batches:
                    group = {m for _, m in b} - {PAD}
                    assert all(int(snap[i]) in group for i, _ in b if group)


def test_synced_assignment_equals_the_single_process_one(ranks: list[dict[str, Any]]) -> None:
    p0, p1 = (r["pipeline"] for r in ranks)
    reference = HardSampleFilter(N, MODALITIES)
    for epoch in range(EPOCHS):
        if epoch >= WARMUP:
            expected = reference.snapshot(epoch)
            assert torch.equal(p0["snapshots"][epoch], expected)
            assert torch.equal(p1["snapshots"][epoch], expected)
        table = score_table(epoch)
        for rank_batches in (p0["batches"][epoch], p1["batches"][epoch]):
            for batch in rank_batches:
                index = torch.tensor([i for i, _ in batch])
                modality = torch.tensor([m for _, m in batch])
                logits = {m: table[k, index] for k, m in enumerate(MODALITIES)}
                reference.update(index, logits, modality=modality)
    # after the last sync the tables agree too (the last epoch's updates are unsynced)
    assert p0["filter_history"] == p1["filter_history"]
    assert [h["counts"] for h in p0["filter_history"]] == [h["counts"] for h in reference.history]


def test_one_collective_per_remix_epoch_none_per_step(ranks: list[dict[str, Any]]) -> None:
    for r in ranks:
        assert r["pipeline"]["collectives"] == [0] * WARMUP + [1] * (EPOCHS - WARMUP)


def test_ddp_steps_share_the_modality_and_the_models_stay_equal(
    ranks: list[dict[str, Any]],
) -> None:
    d0, d1 = (r["ddp"] for r in ranks)
    steps = check_step_modalities([d0["received"], d1["received"]], ACCUMULATION)
    assert ALL in steps and len(set(steps) - {PAD}) > 2
    torch.testing.assert_close(d0["params"], d1["params"])
    assert torch.equal(d0["snapshot"], d1["snapshot"])


def test_tiny_dataset_with_an_empty_modality_runs_on_both_ranks(
    ranks: list[dict[str, Any]],
) -> None:
    e0, e1 = (r["edge"] for r in ranks)
    # rank 1's update of sample 1 reached rank 0 through the sync, and vice versa
    # sample 2 is unscored: spread to modality 2 % 3 = "text"; "video" is empty
    assert e0["tiny_snapshot"].tolist() == e1["tiny_snapshot"].tolist() == [0, 0, 2]
    assert e0["tiny_stats"] == e1["tiny_stats"]
    assert e0["tiny_len"] == e1["tiny_len"] == len(e0["tiny_batches"]) == len(e1["tiny_batches"])
    keys = [i for r in (e0, e1) for b in r["tiny_batches"] for i, _ in b]
    assert {i for i in keys if i >= 0} == {0, 1, 2} and {~i for i in keys if i < 0} <= {0, 1, 2}
    assert all(len(b) == 4 for r in (e0, e1) for b in r["tiny_batches"])
    assert e0["tiny_stats"]["samples"] == {"audio": 2, "video": 0, "text": 1}


def test_ranks_that_snapshot_different_epochs_all_raise(ranks: list[dict[str, Any]]) -> None:
    for r in ranks:
        assert "synced different epochs" in r["edge"]["mismatch_error"]
        assert "synced different epochs ([4, 68], by rank" in r["edge"]["aliased_error"]


def test_states_saved_on_two_ranks_are_rejected_by_one_process(ranks: list[dict[str, Any]]) -> None:
    state = ranks[0]["pipeline"]["filter_state"]
    assert state["world_size"] == 2
    with pytest.raises(ValueError, match="world_size=2"):
        HardSampleFilter(N, MODALITIES).load_state_dict(state)
    sampler_state = ranks[0]["pipeline"]["sampler_state"]
    single = ReassemblingBatchSampler(
        HardSampleFilter(N, MODALITIES),
        BATCH,
        warmup_epochs=WARMUP,
        order="interleave",
        accumulation_steps=ACCUMULATION,
    )
    with pytest.raises(ValueError, match="num_replicas=2"):
        single.load_state_dict(sampler_state)


def test_one_gathered_checkpoint_restores_every_rank_exactly(ranks: list[dict[str, Any]]) -> None:
    """Rank 0's state, loaded on both ranks, continues exactly: rows written on both
    ranks since the sync, rows a rank rewrites (smoothed) after the restart."""
    for r in ranks:
        whole, resumed = r["gather"]["whole"], r["gather"]["gathered"]
        assert torch.equal(whole["values"].isnan(), resumed["values"].isnan())
        torch.testing.assert_close(
            resumed["values"], whole["values"], equal_nan=True, rtol=0, atol=0
        )
        assert torch.equal(resumed["snapshot"], whole["snapshot"])
        assert resumed["history"] == whole["history"]
        # rank 0's local state alone forgets rank 1's writes: the check above can fail
        assert not torch.equal(
            r["gather"]["local"]["values"].nan_to_num(-1), whole["values"].nan_to_num(-1)
        )
    state = ranks[0]["gather"]["state"]
    assert state["ranks"]["values"].shape == (WORLD, 2, GATHER_N)
    assert state["ranks"]["fresh"][:, :, 4:8].all()  # the rows written on both ranks
    reread = torch.load(_saved(state), weights_only=True)
    assert torch.equal(reread["ranks"]["fresh"], state["ranks"]["fresh"])


def _saved(state: dict[str, Any]) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_ranks_at_different_snapshot_epochs_refuse_to_save(ranks: list[dict[str, Any]]) -> None:
    for r in ranks:
        assert "snapshots of different epochs ([1, 2])" in r["gather"]["skew_error"]
