"""Distributed cost of remixing: the per-epoch score sync and the per-step path.

Two real ranks (:func:`remix_data.gloo.run_ranks`: spawn, gloo over a file
store on loopback, one intra-op thread each, so the two ranks share the cores
the way two single-threaded trainers would) measure:

- ``sync``: :meth:`~remix_data.HardSampleFilter.sync`, the one collective per
  remix epoch, for each ``--sizes`` N (two modalities; each rank wrote the scores
  of its own half of the samples, as online scoring does in one epoch). Also
  ``snapshot`` (sync + assignment, what ``set_epoch`` pays before planning) and
  the floor: a bare ``all_reduce`` of a float32 tensor of the same size.
- ``step``: the per-step cost inside the training loop, ``next()`` on the batch
  sampler plus ``filter.update`` with a batch of ``--batch-size`` logits, in
  ``single`` mode (``num_replicas=1``, ``sync="never"``: what one process runs)
  and ``distributed`` mode (world size and rank from ``torch.distributed``,
  ``sync="auto"``). Neither issues a collective per step; the modes alternate
  repetition by repetition and the median is reported.

Run: ``python -m benchmarks.distributed`` (about a minute at the default sizes
1e6 and 1e7), ``--quick`` for a smoke run. Writes JSON to ``--out`` (default
``results/distributed.json``) and prints a table. Timings on a shared machine
are noisy: compare numbers from one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import NAMES, machine_info, median, print_table, write_json
from remix_data import PAD, HardSampleFilter, ReassemblingBatchSampler
from remix_data.gloo import run_ranks

__all__ = ["main", "run"]

WORLD = 2
CLASSES = 10


def _scored_filter(n: int, rank: int, *, sync: str = "auto") -> HardSampleFilter:
    """Every sample scored once, identically on all ranks, then synced: the same table on
    every rank and nothing fresh (a collective: every rank calls this)."""
    filt = HardSampleFilter(n, NAMES, score="loss", sync=sync)
    gen = torch.Generator().manual_seed(0)
    filt.update(
        torch.arange(n),
        {"audio": torch.rand(n, generator=gen), "video": torch.rand(n, generator=gen)},
    )
    filt.sync()
    return filt


def _write_half(filt: HardSampleFilter, rank: int, step: int) -> None:
    """Online scoring of one epoch: this rank's half of the samples, one modality each."""
    n = filt.num_samples
    mine = torch.arange(rank, n, WORLD)
    losses = torch.rand(mine.numel(), generator=torch.Generator().manual_seed(step))
    active = (mine % 2).to(torch.int64)  # which modality each sample trained
    filt.update(mine, {"audio": losses, "video": losses}, modality=active)


def _time_sync(n: int, rank: int, reps: int) -> dict[str, Any]:
    filt = _scored_filter(n, rank)
    sync, snapshot, floor = [], [], []
    bare = torch.zeros(2 * len(NAMES) * n + 3, dtype=torch.float32)
    for r in range(reps + 1):  # the first repetition warms up (page faults, gloo buffers)
        _write_half(filt, rank, r)
        dist.barrier()
        start = time.perf_counter()
        filt.sync()
        sync.append(time.perf_counter() - start)
        _write_half(filt, rank, r + 1000)
        dist.barrier()
        start = time.perf_counter()
        filt.snapshot(r)
        snapshot.append(time.perf_counter() - start)
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(bare)
        floor.append(time.perf_counter() - start)
    sync, snapshot, floor = sync[1:], snapshot[1:], floor[1:]
    return {
        "n": n,
        "modalities": len(NAMES),
        "bytes": bare.numel() * bare.element_size(),
        "sync_s": median(sync),
        "snapshot_s": median(snapshot),
        "all_reduce_s": median(floor),
        "sync_seconds": sync,
        "snapshot_seconds": snapshot,
        "all_reduce_seconds": floor,
    }


def _step_side(
    filt: HardSampleFilter, sampler: ReassemblingBatchSampler, steps: int, epoch: int
) -> tuple[float, float]:
    """Seconds per step of ``next(sampler)`` and of ``filter.update`` (blocks of ``steps``)."""
    sampler.set_epoch(epoch)
    it = iter(sampler)
    start = time.perf_counter()
    batches = [next(it) for _ in range(steps)]
    t_next = (time.perf_counter() - start) / steps
    gen = torch.Generator().manual_seed(epoch)
    inputs = []
    for batch in batches:  # what the decoupler makes of the keys: PAD keys (~i, m) -> i, PAD
        index = torch.tensor([i if i >= 0 else ~i for i, _ in batch])
        modality = torch.tensor([m if i >= 0 else PAD for i, m in batch])
        logits = torch.randn(len(batch), CLASSES, generator=gen)
        inputs.append((index, {NAMES[batch[0][1]]: logits}, modality))
    start = time.perf_counter()
    for index, outputs, modality in inputs:
        filt.update(index, outputs, modality=modality)
    t_update = (time.perf_counter() - start) / steps
    return t_next, t_update


def _time_steps(n: int, batch: int, steps: int, reps: int) -> list[dict[str, Any]]:
    sides: dict[str, tuple[HardSampleFilter, ReassemblingBatchSampler, dict[str, list[float]]]] = {}
    for mode in ("single", "distributed"):
        filt = HardSampleFilter(n, NAMES, sync="never" if mode == "single" else "auto")
        gen = torch.Generator().manual_seed(1)
        filt.update(torch.arange(n), {m: torch.randn(n, CLASSES, generator=gen) for m in NAMES})
        replicas = 1 if mode == "single" else None
        rank = 0 if mode == "single" else None
        sampler = ReassemblingBatchSampler(filt, batch, num_replicas=replicas, rank=rank)
        sides[mode] = (filt, sampler, {"next": [], "update": []})
    for r in range(reps + 1):  # alternate the modes; repetition 0 warms up
        order = ("single", "distributed") if r % 2 == 0 else ("distributed", "single")
        for mode in order:
            filt, sampler, times = sides[mode]
            t_next, t_update = _step_side(filt, sampler, steps, epoch=r)
            if r:
                times["next"].append(t_next)
                times["update"].append(t_update)
    rows = []
    for mode, (_, sampler, times) in sides.items():
        t_next, t_update = median(times["next"]), median(times["update"])
        rows.append(
            {
                "mode": mode,
                "n": n,
                "batch_size": batch,
                "num_replicas": sampler.num_replicas,
                "steps": steps,
                "next_us": t_next * 1e6,
                "update_us": t_update * 1e6,
                "step_us": (t_next + t_update) * 1e6,
                "next_seconds": times["next"],
                "update_seconds": times["update"],
            }
        )
    return rows


def _rank(rank: int, config: dict[str, Any]) -> dict[str, Any]:
    steps = _time_steps(config["step_n"], config["batch_size"], config["steps"], config["reps"])
    syncs = [_time_sync(n, rank, config["reps"]) for n in config["sizes"]]
    return {"rank": rank, "step": steps, "sync": syncs}


def run(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Run both ranks with ``config``; return each rank's results."""
    with tempfile.TemporaryDirectory() as tmp:
        return run_ranks(_rank, WORLD, tmp, config, timeout=3600, group_timeout=600)


SYNC_COLUMNS = (
    ("n", ",d"), ("MB", ".1f"), ("all_reduce_s", ".3f"), ("sync_s", ".3f"), ("snapshot_s", ".3f")
)  # fmt: skip
STEP_COLUMNS = (
    ("mode", ""), ("num_replicas", "d"), ("next_us", ".1f"), ("update_us", ".1f"),
    ("step_us", ".1f"),
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for tests")
    parser.add_argument("--out", default="results/distributed.json", help="JSON file to write")
    parser.add_argument(
        "--sizes", default=None, help="comma-separated N for the sync (default 1e6,1e7)"
    )
    parser.add_argument("--step-n", type=float, default=None, help="N for the per-step part")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None, help="steps per timed block")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions")
    args = parser.parse_args(argv)
    default_sizes = "1e4,1e5" if args.quick else "1e6,1e7"
    config = {
        "sizes": [int(float(s)) for s in (args.sizes or default_sizes).split(",")],
        "step_n": int(args.step_n or (2e4 if args.quick else 1e6)),
        "batch_size": args.batch_size,
        "steps": args.steps or (20 if args.quick else 1500),
        "reps": args.reps or (2 if args.quick else 5),
    }
    start = time.perf_counter()
    ranks = run(config)
    payload = {
        "benchmark": "distributed",
        "config": config,
        "world_size": WORLD,
        "backend": "gloo",
        "machine": {**machine_info(), "threads_per_rank": 1},
        "sync": ranks[0]["sync"],
        "step": ranks[0]["step"],
        "ranks": ranks,
        "seconds": time.perf_counter() - start,
    }
    out = write_json(args.out, payload)
    print_table(
        f"Score sync per remix epoch, {WORLD} gloo ranks, {len(NAMES)} modalities (rank 0)",
        [{**r, "MB": r["bytes"] / 1e6} for r in payload["sync"]],
        [(key, key, fmt) for key, fmt in SYNC_COLUMNS],
    )
    print_table(
        f"Per step (rank 0, batch {config['batch_size']}, N={config['step_n']:,})",
        payload["step"],
        [(key, key, fmt) for key, fmt in STEP_COLUMNS],
    )
    print(f"\nwrote {out}")
    return payload


if __name__ == "__main__":
    main()
