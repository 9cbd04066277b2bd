"""The streaming remixer: properties over simulated ranks and workers, real DataLoader
workers (persistent and not), StatefulDataLoader resume, bad input.

Ranks and workers are simulated in this process by one remixer per (rank, worker),
each iterating its own part of the stream through :meth:`StreamingRemixer.iterate`;
the rank's batches are the workers' outputs taken round-robin, which is what the
DataLoader does (checked against real workers below).
"""

from __future__ import annotations

import gc
import re
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader

from remix_data import ALL, FILTERED, HardSampleFilter
from remix_data.sampler import TAILS, split_batches
from remix_data.streaming import StreamingRemixer, step_schedule
from remix_data.vocabulary import PAD

NAMES = ("audio", "video", "text")


def scored_filter(n: int, modalities: int, seed: int, filtered: float = 0.0) -> HardSampleFilter:
    """A filter whose assignment is random with random shares; some samples unscored."""
    gen = np.random.default_rng(seed)
    filt = HardSampleFilter(n, NAMES[:modalities], score="loss", unscored="filter")
    weights = gen.dirichlet(np.ones(modalities))
    hardest = gen.choice(modalities, size=n, p=weights)
    scored = np.flatnonzero(gen.random(n) >= filtered)
    losses = {
        name: torch.from_numpy((hardest[scored] == m).astype(np.float32))
        for m, name in enumerate(NAMES[:modalities])
    }
    if scored.size:
        filt.update(torch.from_numpy(scored), losses, modality=ALL)
    return filt


def sample(i: int, modalities: int = 2) -> dict[str, Any]:
    """Sample ``i``: every modality holds ``i + 1`` (never zero), of its own length."""
    out: dict[str, Any] = {"id": i}
    for m, name in enumerate(NAMES[:modalities]):
        out[name] = torch.full((m + 1,), float(i + 1))
    return out


def split_stream(n: int, shards: int, parts: int, seed: int) -> list[list[dict[str, Any]]]:
    """Shuffle ids, cut them into ``shards`` shards, deal the shards round-robin to parts."""
    gen = np.random.default_rng(seed)
    order = gen.permutation(n)
    cuts = np.sort(gen.choice(np.arange(1, n), size=shards - 1, replace=False))
    out: list[list[dict[str, Any]]] = [[] for _ in range(parts)]
    for s, shard in enumerate(np.split(order, cuts)):
        out[s % parts] += [sample(int(i), 3) for i in shard]
    return out


def group_of(modality: torch.Tensor) -> int:
    """A batch's modality: its rows' one id, PAD rows aside (PAD if every row is one)."""
    ids = set(modality.tolist()) - {PAD}
    assert len(ids) <= 1, ids
    return ids.pop() if ids else PAD


def follows(batches: list[Any], schedule: np.ndarray) -> bool:
    """Whether each batch's modality is the schedule's (an all-PAD batch fits any)."""
    groups = [group_of(m) for _, _, m in batches]
    return len(groups) == schedule.size and all(
        g in (s, PAD) for g, s in zip(groups, schedule.tolist())
    )


def rank_batches(outputs: list[list[Any]]) -> list[Any]:
    """The DataLoader's in-order round-robin over worker outputs."""
    merged, t = [], 0
    while True:
        worker = outputs[t % len(outputs)]
        if t // len(outputs) >= len(worker):
            break
        merged.append(worker[t // len(outputs)])
        t += 1
    assert sum(map(len, outputs)) == len(merged)
    return merged


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    world = draw(st.integers(1, 8))
    workers = draw(st.integers(1, 4))
    parts = world * workers
    n = draw(st.integers(parts, 160))
    return {
        "world": world,
        "workers": workers,
        "n": n,
        "shards": draw(st.integers(parts, min(n, parts + 6))),
        "modalities": draw(st.integers(2, 3)),
        "batch": draw(st.integers(1, 7)),
        "accumulation": draw(st.sampled_from([1, 1, 2])),
        "warmup": draw(st.integers(0, 1)),
        "epoch": draw(st.integers(0, 2)),
        "drop_last": draw(st.booleans()),
        "order": draw(st.sampled_from(["interleave", "random"])),
        "buffer": draw(st.sampled_from([None, 1, 3])),
        "filtered": draw(st.sampled_from([0.0, 0.2])),
        "seed": draw(st.integers(0, 2**16)),
    }


def run_world(c: dict[str, Any]) -> tuple[list[list[Any]], list[StreamingRemixer], Any]:
    """Every rank's batches (as plans) and the remixers, for one epoch."""
    filt = scored_filter(c["n"], c["modalities"], c["seed"], c["filtered"])
    parts = split_stream(c["n"], c["shards"], c["world"] * c["workers"], c["seed"])
    if c["epoch"] >= c["warmup"]:  # a part of only filtered samples cannot pad (tested below)
        assign = filt.snapshot(c["epoch"])
        assume(all(any(assign[s["id"]] != FILTERED for s in part) for part in parts))
    buffer = None if c["buffer"] is None else c["buffer"] * c["batch"]
    remixers, ranks = [], []
    for r in range(c["world"]):
        outputs = []
        for w in range(c["workers"]):
            remixer = StreamingRemixer(
                parts[r * c["workers"] + w],
                filt,
                c["batch"],
                warmup_epochs=c["warmup"],
                order=c["order"],
                drop_last=c["drop_last"],
                seed=c["seed"],
                num_replicas=c["world"],
                rank=r,
                accumulation_steps=c["accumulation"],
                buffer_size=buffer,
            )
            remixer.set_epoch(c["epoch"])
            outputs.append(list(remixer.iter_plans(w, c["workers"])))
            remixers.append(remixer)
        ranks.append(rank_batches(outputs))
    return ranks, remixers, filt


@given(worlds())
def test_every_rank_follows_one_schedule_and_every_sample_is_counted(c: dict[str, Any]) -> None:
    ranks, remixers, filt = run_world(c)
    warm = c["epoch"] < c["warmup"]
    assign = None if warm else filt.snapshot(c["epoch"]).tolist()
    schedule, sizes = remixers[0].schedule()
    # same modality at every step on every rank, equal batch counts, unimodal batches
    for batches in ranks:
        assert [g for g, _, _ in batches] == schedule.tolist()
        assert [len(ids) for _, ids, _ in batches] == sizes.tolist()
    a = c["accumulation"]
    assert all(len(set(schedule[i : i + a].tolist())) == 1 for i in range(0, schedule.size, a))
    if warm:
        assert set(schedule.tolist()) <= {ALL}
    # each yielded sample in its assigned modality; distinct ones are the `samples`
    stats = [r.stats() for r in remixers]
    total = {k: sum(sum(s[k].values()) for s in stats) for k in ("samples", "padded")}
    lost = {k: sum(sum(s[k].values()) for s in stats) for k in ("dropped", "overflow")}
    filtered = sum(s["filtered"] for s in stats)
    items = [(i, g) for batches in ranks for g, ids, _ in batches for i in ids]
    real = [(i, g) for i, g in items if i >= 0]  # PAD rows carry ~id
    correct = {(i, g) for i, g in real if g == (ALL if warm else assign[i])}  # type: ignore[index]
    assert len(correct) == len(real) == total["samples"]  # each once, in its modality
    assert len(items) - len(real) == total["padded"]
    assert total["samples"] + lost["dropped"] + lost["overflow"] + filtered == c["n"]
    assert sum(s["read"] for s in stats) == c["n"]
    if not warm:
        assert filtered == sum(1 for x in assign if x == FILTERED)  # type: ignore[union-attr]
    # bounded buffers
    limit = remixers[0].buffer_size
    assert all(
        p <= max(limit, int(sizes.max(initial=0))) for s in stats for p in s["peak"].values()
    )
    # every sample's own data travels with its id
    for batches in ranks:
        for _, ids, samples in batches:
            assert all(s["id"] == (i if i >= 0 else ~i) for i, s in zip(ids, samples))
            assert all(i < 0 for i in ids[ids.index(min(ids)) :]) or min(ids) >= 0  # PAD last


@given(worlds())
def test_a_world_is_deterministic_per_seed_and_epoch(c: dict[str, Any]) -> None:
    first, _, _ = run_world(c)
    again, _, _ = run_world(c)
    assert [[(g, ids) for g, ids, _ in b] for b in first] == [
        [(g, ids) for g, ids, _ in b] for b in again
    ]


@given(
    n=st.integers(1, 120),
    batch=st.integers(1, 9),
    modalities=st.integers(2, 3),
    drop_last=st.booleans(),
    tail=st.sampled_from(TAILS),
    seed=st.integers(0, 2**16),
)
def test_one_process_trains_every_kept_sample_once_in_its_modality(
    n: int, batch: int, modalities: int, drop_last: bool, tail: str, seed: int
) -> None:
    filt = scored_filter(n, modalities, seed, filtered=0.1)
    stream = [sample(int(i), 3) for i in np.random.default_rng(seed).permutation(n)]
    remixer = StreamingRemixer(
        stream, filt, batch, buffer_size=max(n, batch), drop_last=drop_last, tail=tail
    )
    remixer.set_epoch(1)
    assign = filt.snapshot(1).tolist()
    batches = list(DataLoader(remixer, batch_size=None))
    stats = remixer.stats()
    ids = [i for _, index, m in batches for i, g in zip(index.tolist(), m.tolist()) if g != PAD]
    assert len(ids) == len(set(ids))
    assert sum(stats["overflow"].values()) == 0
    for m in range(modalities):
        subset = sum(1 for x in assign if x == m)
        sizes = [len(i) for _, i, g in batches if group_of(g) == m]
        split = split_batches(subset, batch, drop_last=drop_last, tail=tail)  # the tail rule
        assert sizes == split.sizes()
        assert stats["dropped"][NAMES[m]] == split.dropped
        assert stats["padded"][NAMES[m]] == split.padded  # tail="fill" only
        assert tail == "keep" or batch == 1 or 1 not in sizes  # no batch of one by default
    for _, index, modality in batches:
        m = group_of(modality)
        assert set(modality.tolist()) <= {m, PAD}
        assert all(assign[i] == m for i in index.tolist())  # PAD rows repeat their group's
    assert stats["batch_sizes"] == sorted({len(i) for _, i, _ in batches})
    assert len(stats["batch_sizes"]) <= 1 or (tail != "fill" and not drop_last)


def test_masking_is_the_decouplers_for_every_dtype() -> None:
    dtypes = (torch.int64, torch.uint8, torch.bfloat16)
    stream = [
        {"id": i, "audio": torch.full((2,), i + 1, dtype=d), "video": torch.full((3,), i + 1)}
        for i, d in enumerate(dtypes * 2)
    ]
    filt = HardSampleFilter(6, ("audio", "video"))
    remixer = StreamingRemixer(stream, filt, batch_size=1, collate_fn=lambda xs: xs[0])
    for batch, index, modality in DataLoader(remixer, batch_size=None):
        i, m = int(index), int(modality)
        active, masked = ("audio", "video") if m == 0 else ("video", "audio")
        assert batch[active].dtype == stream[i][active].dtype
        assert torch.equal(batch[active], stream[i][active])
        assert batch[masked].dtype == stream[i][masked].dtype and not batch[masked].any()
    dropped = StreamingRemixer(stream, filt, batch_size=2, mask="drop")
    for batch, _, modality in DataLoader(dropped, batch_size=None):
        assert set(batch) == {"id", NAMES[int(modality[0])]}


def test_tuple_samples_with_positions() -> None:
    stream = [(torch.ones(2) * (i + 1), torch.ones(1) * (i + 1), i) for i in range(4)]
    filt = HardSampleFilter(4, ("audio", "video"))
    remixer = StreamingRemixer(
        stream, filt, 2, sample_id=lambda s: s[2], locations={"audio": 0, "video": 1}
    )
    out = [(b, int(m[0])) for b, _, m in DataLoader(remixer, batch_size=None)]
    assert [m for _, m in out] == [0, 1]
    (a0, v0, _), (a1, v1, _) = out[0][0], out[1][0]
    assert a0.all() and not v0.any() and not a1.any() and v1.all()


def test_overflow_keeps_the_bound_and_is_counted() -> None:
    # sorted stream: every audio sample first, then every video sample
    n, batch = 40, 2
    filt = HardSampleFilter(n, ("audio", "video"), score="loss")
    filt.update(
        torch.arange(n),
        {"audio": (torch.arange(n) < 20).float(), "video": torch.zeros(n)},
        modality=ALL,
    )
    assign = filt.snapshot(1)
    stream = [sample(i) for i in assign.argsort(stable=True).tolist()[::-1]]  # audio first
    remixer = StreamingRemixer(stream, filt, batch, buffer_size=4)
    remixer.set_epoch(1)
    batches = list(DataLoader(remixer, batch_size=None))
    stats = remixer.stats()
    assert stats["peak"]["audio"] == 4 and stats["overflow"]["audio"] > 0
    assert follows(batches, remixer.schedule()[0])
    assert sum(stats["samples"].values()) + sum(stats["overflow"].values()) == n
    assert sum(len(i) for _, i, _ in batches) == n  # padded to the schedule


# --------------------------------------------------------------------------------------
# Real DataLoader workers
# --------------------------------------------------------------------------------------
class WorkerShards(IterableDataset[dict[str, Any]]):
    """Sample ids split over DataLoader workers (``i % num_workers``), 2 modalities."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Any:
        info = get_worker_info()
        w, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return (sample(i) for i in range(w, self.n, workers))


def first_error(loader: DataLoader[Any]) -> str:
    """Iterate ``loader`` to its end and return the ValueError it raises ("" if none); its
    workers are shut down before this returns (a live worker pool left behind can break the
    next test's fork)."""
    it = iter(loader)
    try:
        for _ in it:
            pass
    except ValueError as err:
        return str(err)
    finally:
        del it
        gc.collect()
    return ""


@pytest.mark.parametrize("persistent", [False, True])
def test_a_source_every_worker_reads_whole_is_refused_naming_both_workers(
    persistent: bool,
) -> None:
    """A plain list (or any iterable that ignores get_worker_info) is read whole by each
    worker: without the check, half the ids trained twice and half never, counted as
    dropped. Each epoch is checked anew; a source split by worker passes every epoch."""
    n = 40
    filt = HardSampleFilter(n, ("audio", "video"))
    whole = StreamingRemixer([sample(i) for i in range(n)], filt, batch_size=4, warmup_epochs=1)
    loader = DataLoader(whole, batch_size=None, num_workers=2, persistent_workers=persistent)
    for epoch in range(2):
        whole.set_epoch(epoch)
        message = first_error(loader)
        assert re.search(rf"read by worker [01] and by worker [01] of 2 in epoch {epoch}", message)
        assert "split_by_worker" in message
    split = StreamingRemixer(WorkerShards(n), filt, batch_size=4, warmup_epochs=1)
    loader = DataLoader(split, batch_size=None, num_workers=2, persistent_workers=persistent)
    for epoch in range(2):
        split.set_epoch(epoch)
        ids = [i for _, index, modality in loader for i, m in zip(index, modality) if m != PAD]
        assert sorted(ids) == list(range(n))
    one = StreamingRemixer([sample(i) for i in range(n)], filt, batch_size=4, warmup_epochs=1)
    ids = [i for _, index, _ in DataLoader(one, batch_size=None, num_workers=1) for i in index]
    assert sorted(ids) == list(range(n))  # one worker reads the whole stream: nothing to check


def rescore(filt: HardSampleFilter, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = filt.num_samples
    filt.update(
        torch.arange(n),
        {"audio": torch.rand(n, generator=gen), "video": torch.rand(n, generator=gen)},
        modality=ALL,
    )


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_follow_each_epochs_new_assignment(persistent: bool) -> None:
    n = 60
    filt = HardSampleFilter(n, ("audio", "video"), score="loss")
    remixer = StreamingRemixer(WorkerShards(n), filt, batch_size=4, warmup_epochs=1)
    loader = DataLoader(remixer, batch_size=None, num_workers=2, persistent_workers=persistent)
    for epoch in range(3):
        rescore(filt, epoch)  # a new assignment every epoch: a stale table would show
        remixer.set_epoch(epoch)
        assign = None if epoch == 0 else filt.snapshot(epoch).tolist()
        assert len(loader) == len(remixer)  # torch keeps the length it read last
        batches = list(loader)
        assert follows(batches, remixer.schedule()[0])
        assert len(batches) == len(remixer)
        for batch, index, modality in batches:
            m = group_of(modality)
            assert ((modality == m) | (modality == PAD)).all()
            real = index[modality != PAD].tolist()
            assert m == ALL if epoch == 0 else all(assign[i] == m for i in real)  # type: ignore[index]
            assert torch.equal(batch["id"], index)
        stats = remixer.stats()
        assert stats["epoch"] == epoch and stats["read"] == n
        assert sum(stats["batches"].values()) == len(batches)


def test_spawned_persistent_workers_share_the_table() -> None:
    n = 24
    filt = HardSampleFilter(n, ("audio", "video"), score="loss")
    remixer = StreamingRemixer(WorkerShards(n), filt, batch_size=3)
    loader = DataLoader(
        remixer,
        batch_size=None,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context="spawn",
    )
    for epoch in (1, 2):
        rescore(filt, epoch)
        remixer.set_epoch(epoch)
        assign = filt.snapshot(epoch).tolist()
        batches = list(loader)
        assert follows(batches, remixer.schedule()[0])
        assert all(
            assign[i] == group_of(m)
            for _, idx, m in batches
            for i, g in zip(idx.tolist(), m.tolist())
            if g != PAD
        )
        assert remixer.stats()["read"] == n


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_exactly(workers: int) -> None:
    n, batch, cut = 50, 3, 5

    def build() -> tuple[StreamingRemixer, StatefulDataLoader]:
        filt = HardSampleFilter(n, ("audio", "video"), score="loss")
        rescore(filt, 7)
        remixer = StreamingRemixer(WorkerShards(n), filt, batch, buffer_size=6)
        remixer.set_epoch(1)
        return remixer, StatefulDataLoader(remixer, batch_size=None, num_workers=workers)

    remixer, loader = build()
    full = [(i.tolist(), int(m[0])) for _, i, m in loader]
    remixer, loader = build()
    it = iter(loader)
    head = [(i.tolist(), int(m[0])) for _, (_, i, m) in zip(range(cut), it)]
    state = loader.state_dict()
    del it
    remixer, loader = build()
    loader.load_state_dict(state)
    tail = [(i.tolist(), int(m[0])) for _, i, m in loader]
    assert head + tail == full
    assert remixer.stats()["read"] == n or workers > 0  # worker counters are their own


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
def test_bad_arguments_name_the_argument() -> None:
    filt = HardSampleFilter(4, ("audio", "video"))
    stream = [sample(i) for i in range(4)]
    with pytest.raises(TypeError, match="filter"):
        StreamingRemixer(stream, object(), 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size=0"):
        StreamingRemixer(stream, filt, 0)
    with pytest.raises(ValueError, match="buffer_size"):
        StreamingRemixer(stream, filt, 4, buffer_size=2)
    with pytest.raises(ValueError, match="order"):
        StreamingRemixer(stream, filt, 2, order="sequential")
    with pytest.raises(ValueError, match="rank"):
        StreamingRemixer(stream, filt, 2, num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="source"):
        StreamingRemixer(3, filt, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ({"audio": torch.ones(2), "video": torch.ones(3)}, ValueError, "sample_id='id'"),
        ({"id": 4, "audio": torch.ones(2), "video": torch.ones(3)}, ValueError, r"\[0, 4\)"),
        ({"id": 1.0, "audio": torch.ones(2), "video": torch.ones(3)}, TypeError, "integer"),
    ],
)
def test_bad_sample_ids_raise_at_the_sample(bad: Any, error: type, match: str) -> None:
    filt = HardSampleFilter(4, ("audio", "video"))
    remixer = StreamingRemixer([sample(0), bad], filt, 2)
    with pytest.raises(error, match=match):
        list(remixer)


def test_a_worker_without_samples_fails_loudly() -> None:
    filt = HardSampleFilter(4, ("audio", "video"))
    remixer = StreamingRemixer([], filt, 2)
    with pytest.raises(RuntimeError, match="held no sample"):
        list(remixer)


def test_state_of_another_configuration_or_worker_is_rejected() -> None:
    filt = HardSampleFilter(8, ("audio", "video"))
    remixer = StreamingRemixer([sample(i) for i in range(8)], filt, 2)
    it = remixer.iterate(0, 1)
    next(it)
    state = remixer.state_dict()
    other = StreamingRemixer([sample(i) for i in range(8)], filt, 4)
    with pytest.raises(ValueError, match="batch_size=2"):
        other.load_state_dict(state)
    for key, value in (("modalities", ["audio", "text"]), ("seed", True), ("tail", "keep")):
        with pytest.raises(ValueError, match=f"this remixer has {key}="):
            remixer.load_state_dict({**state, key: value})
    remixer.load_state_dict({**state, "modalities": tuple(state["modalities"])})  # same names
    again = StreamingRemixer([sample(i) for i in range(8)], filt, 2)
    again.load_state_dict(state)
    with pytest.raises(ValueError, match="worker 0 of 1"):
        next(again.iterate(1, 2))


def test_counts_of_the_schedule() -> None:
    modality, size = step_schedule([7, 0, 3], 2, num_replicas=2, accumulation_steps=2)
    # a step takes 2 ranks * 2 micro-batches * 2 = 8 samples: 7 -> 1 step, 3 -> 1 step
    assert Counter(modality.tolist()) == {0: 2, 2: 2} and set(size.tolist()) == {2}
    assert (modality[::2] == modality[1::2]).all()  # accumulated micro-batches share it
    m, s = step_schedule([7, 3], 2, num_replicas=2, drop_last=True)
    assert Counter(m.tolist()) == {0: 1} and s.tolist() == [2]
