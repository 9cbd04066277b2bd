"""Streaming: the streaming remixer against plain streaming of the same shards.

Both sides read the same sharded stream (shards dealt to DataLoader workers, a
decode-like busy cost per item, as a WebDataset ``.decode()`` stage would add)
through the same ``DataLoader`` keyword arguments:

- plain: ``DataLoader(stream, batch_size=B)`` (torch batches the stream);
- remix: ``DataLoader(StreamingRemixer(stream, filter, B), batch_size=None)``
  after warm-up, with a realistic assignment (about 40 % / 60 %).

Reported: samples/s of each side and their ratio (goal >= 0.95 at a
decode-like per-item cost), with 0 and 2 workers; and the buffers: the peak
number of samples any worker held per modality (``stats()["peak"]``), in
samples and in bytes (times the bytes of one sample), against the bound
``buffer_size``.

Run: ``python -m benchmarks.streaming`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    NAMES,
    add_common_args,
    compare,
    machine_info,
    print_table,
    realistic_filter,
    setup,
    spin,
    write_json,
)
from remix_data.streaming import StreamingRemixer


class Shards(IterableDataset[dict[str, Any]]):
    """``shards`` in-memory shards of samples, dealt to workers; ``cost`` s of work per item."""

    def __init__(self, n: int, shards: int, cost: float, dims: tuple[int, int]) -> None:
        self.n, self.shards, self.cost = n, shards, cost
        self.audio = torch.randn(n, dims[0])
        self.video = torch.randn(n, dims[1])
        self.labels = torch.randint(0, 10, (n,))

    def sample_bytes(self) -> int:
        return (self.audio[0].nbytes + self.video[0].nbytes) + 8 + 8  # label, id

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for shard in range(worker, self.shards, workers):
            for i in range(shard, self.n, self.shards):
                if self.cost:
                    spin(self.cost)
                yield {
                    "id": i,
                    "audio": self.audio[i],
                    "video": self.video[i],
                    "label": int(self.labels[i]),
                }


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, "streaming")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cost-us", type=float, default=200.0, help="decode-like cost per item")
    parser.add_argument(
        "--prefetch", type=int, default=None, help="DataLoader prefetch_factor (both sides)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.shards, args.workers, args.dims, args.cost_us = 512, 4, [0, 2], (8, 16), 0.0
    else:
        args.n, args.shards, args.workers, args.dims = 8192, 16, [0, 2], (64, 256)
    if args.reps is None:
        args.reps = 1 if args.quick else 5
    return args


def level(args: argparse.Namespace, workers: int) -> tuple[dict[str, Any], dict[str, Any]]:
    stream = Shards(args.n, args.shards, args.cost_us * 1e-6, tuple(args.dims))
    remixer = StreamingRemixer(stream, realistic_filter(args.n, seed=args.seed), args.batch_size)
    remixer.set_epoch(1)
    kwargs: dict[str, Any] = {"num_workers": workers}
    if workers:
        kwargs["persistent_workers"] = True
        if args.prefetch is not None:
            kwargs["prefetch_factor"] = args.prefetch
    plain = DataLoader(stream, batch_size=args.batch_size, **kwargs)
    remix = DataLoader(remixer, batch_size=None, **kwargs)
    counted: dict[str, int] = {}

    def run_plain() -> None:
        counted["plain"] = sum(len(b["id"]) for b in plain)

    def run_remix() -> None:
        counted["remix"] = sum(len(index) for _, index, _ in remix)

    row = compare(
        f"{args.cost_us:g} us items, {workers} workers",
        run_plain,
        run_remix,
        work=args.n,
        unit="samples/s",
        goal=0.95,
        reps=args.reps,
        warmup=1,
        workers=workers,
    )
    stats = remixer.stats()
    row["plain_samples"], row["remix_samples"] = counted["plain"], counted["remix"]
    size = stream.sample_bytes()
    buffers = {
        "level": row["level"],
        "buffer_size": remixer.buffer_size,
        "sample_bytes": size,
        "peak_samples": stats["peak"],
        "peak_bytes": {m: p * size for m, p in stats["peak"].items()},
        "padded": stats["padded"],
        "dropped": stats["dropped"],
        "overflow": stats["overflow"],
    }
    for m in NAMES:
        buffers[f"peak_{m}"] = stats["peak"][m]
    return row, buffers


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    setup(args)
    levels, buffers = zip(*(level(args, w) for w in args.workers))
    result: dict[str, Any] = {
        "benchmark": "streaming",
        "machine": machine_info(),
        "config": vars(args),
        "levels": list(levels),
        "buffers": list(buffers),
    }
    print_table(
        f"streaming remix vs plain streaming (median of {args.reps}; batch {args.batch_size})",
        levels,
        [
            ("level", "level", "s"),
            ("plain samples/s", "plain", ",.0f"),
            ("remix samples/s", "remix", ",.0f"),
            ("ratio", "ratio", ".3f"),
            ("pair ratio", "pair_ratio", ".3f"),
            ("pair q1", "pair_q1", ".3f"),
            ("pair q3", "pair_q3", ".3f"),
            ("goal", "goal", ".2f"),
            ("met", "met", ""),
        ],
    )
    print_table(
        "peak buffer level per modality (samples any worker held; bound buffer_size)",
        buffers,
        [
            ("level", "level", "s"),
            *((f"peak {m}", f"peak_{m}", "d") for m in NAMES),
            ("bound", "buffer_size", "d"),
            ("bytes/sample", "sample_bytes", "d"),
        ],
    )
    print(f"wrote {write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
