"""Loader throughput: plain shuffled loading against remixing, side by side.

Plain is what a user has today: ``DataLoader(dataset, batch_sampler=
BatchSampler(RandomSampler(dataset), B, drop_last=False))``. Remix is the same
``dataset`` object wrapped in a :class:`~remix_data.ModalityDecoupler`, with a
:class:`~remix_data.ReassemblingBatchSampler` after warm-up over a realistic
assignment (every sample scored, about 40% audio / 60% video). Same batch size,
same ``DataLoader`` keyword arguments; each remix run plans a fresh epoch
(``set_epoch`` is timed, as plain's ``randperm`` is). Both sides yield every
sample once per epoch.

Levels (``--levels``, comma-separated):

- ``sampler``: one epoch of keys, no data (goal >= 1.0x);
- ``zeros`` / ``drop``: in-memory tensors, ``num_workers=0`` (items of a few
  microseconds: the worst case), ``mask="zeros"`` (goal >= 0.90x) and
  ``mask="drop"`` (goal >= 0.98x), the remix loader collating with
  :class:`~remix_data.RemixCollate` as ``RemixParts.loader`` does (every remix
  loader here does);
- ``default``: the same two with torch's ``default_collate`` (a bare
  ``DataLoader(data, batch_sampler=sampler)``: it builds the ``index`` and
  ``modality`` tensors value by value; no goal);
- ``decode``: a decode-like cost per item (``--decode-us``), without and with
  workers (goal >= 0.99x); ``partial`` adds the same dataset with
  ``load_modalities``, so remixing skips the masked modality's decode (no goal);
- ``train``: load + host-to-device copy + a small two-encoder training step on
  ``--device``, the remix side with ``filter.update`` every step (goal >= 0.99x;
  ``benchmarks/gpu.py`` is the full GPU benchmark).

Run: ``python -m benchmarks.throughput`` (``--quick`` for a smoke run,
``--device cuda --levels train`` for the GPU level alone).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

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
from benchmarks.training import TinyNet, compare_training
from remix_data import ModalityDecoupler, ReassemblingBatchSampler, RemixCollate

LEVELS = ("sampler", "zeros", "drop", "default", "decode", "partial", "train")


class Pairs(Dataset[dict[str, Any]]):
    """In-memory audio/video/label samples; optional busy-wait "decode" per modality.

    ``decode_us`` is the cost of one full item (both modalities, half each).
    """

    def __init__(self, n: int, *, decode_us: float = 0.0, classes: int = 10, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.audio = torch.randn(n, 40, generator=gen)  # e.g. MFCC features
        self.video = torch.randn(n, 3, 16, 16, generator=gen)  # a small frame
        self.labels = torch.randint(classes, (n,), generator=gen).tolist()
        self.per_modality = decode_us * 1e-6 / 2

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.per_modality:
            spin(2 * self.per_modality)
        return {"audio": self.audio[i], "video": self.video[i], "label": self.labels[i]}


class PartialPairs(Pairs):
    """:class:`Pairs` that can load (and "decode") one modality alone."""

    def load_modalities(self, i: int, names: Sequence[str]) -> dict[str, Any]:
        spin(len(names) * self.per_modality)
        out: dict[str, Any] = {"label": self.labels[i]}
        for name in names:
            out[name] = self.audio[i] if name == "audio" else self.video[i]
        return out


def _epochs(
    run: Callable[[], None], sampler: ReassemblingBatchSampler | None
) -> Callable[[], None]:
    """Wrap ``run`` so every call is a fresh remix epoch (planning timed with it)."""
    if sampler is None:
        return run
    epochs = itertools.count(sampler.warmup_epochs)

    def planned() -> None:
        sampler.set_epoch(next(epochs))
        run()

    return planned


def loaders(
    dataset: Pairs, mask: str, batch_size: int, seed: int, *, collate: str = "remix", **kwargs: Any
) -> tuple[DataLoader[Any], DataLoader[Any], ReassemblingBatchSampler]:
    """The plain and the remix loader over one dataset, with the same keyword arguments.

    ``collate="remix"``: the remix loader collates with :class:`~remix_data.RemixCollate`
    (what :meth:`RemixParts.loader <remix_data.presets.RemixParts.loader>` builds);
    ``"default"``: with torch's ``default_collate``, as a bare ``DataLoader(data,
    batch_sampler=sampler)`` does.
    """
    n = len(dataset)
    plain = DataLoader(
        dataset, batch_sampler=BatchSampler(RandomSampler(dataset), batch_size, False), **kwargs
    )
    sampler = ReassemblingBatchSampler(realistic_filter(n, seed=seed), batch_size, warmup_epochs=1)
    if collate == "remix":
        kwargs = {**kwargs, "collate_fn": RemixCollate()}
    remix = DataLoader(
        ModalityDecoupler(dataset, NAMES, mask=mask), batch_sampler=sampler, **kwargs
    )
    return plain, remix, sampler


def drain(loader: DataLoader[Any]) -> Callable[[], None]:
    def run() -> None:
        for _ in loader:
            pass

    return run


def loader_level(
    name: str,
    dataset: Pairs,
    mask: str,
    goal: float | None,
    args: argparse.Namespace,
    workers: int,
    collate: str = "remix",
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_workers": workers, "persistent_workers": workers > 0}
    plain, remix, sampler = loaders(
        dataset, mask, args.batch_size, args.seed, collate=collate, **kwargs
    )
    return compare(
        name,
        drain(plain),
        _epochs(drain(remix), sampler),
        work=len(dataset),
        unit="samples/s",
        goal=goal,
        reps=args.reps,
        warmup=args.warmup,
        mask=mask,
        num_workers=workers,
        collate=collate,
    )


def train_level(args: argparse.Namespace) -> dict[str, Any]:
    """Load + host-to-device copy + the training step, with online scoring on the remix
    side (:func:`benchmarks.training.compare_training`, masked input zeros, both
    encoders run)."""
    device = torch.device(args.device)
    return compare_training(
        "train step", TinyNet(width=args.width), Pairs(args.train_n, seed=args.seed),
        method="remix-online", mask="zeros", device=device, batch_size=args.batch_size,
        num_workers=args.train_workers, amp=device.type == "cuda", reps=args.reps,
        warmup=args.warmup, seed=args.seed, goal=0.99,
    )  # fmt: skip


def sampler_level(args: argparse.Namespace) -> dict[str, Any]:
    n = args.sampler_n
    plain = BatchSampler(RandomSampler(range(n)), args.batch_size, drop_last=False)
    remix = ReassemblingBatchSampler(
        realistic_filter(n, seed=args.seed), args.batch_size, warmup_epochs=1
    )

    def keys(sampler: Any) -> Callable[[], None]:
        def run() -> None:
            for _ in sampler:
                pass

        return run

    return compare(
        "sampler alone",
        keys(plain),
        _epochs(keys(remix), remix),
        work=n,
        unit="keys/s",
        goal=1.0,
        reps=args.reps,
        warmup=args.warmup,
    )


def run_levels(args: argparse.Namespace) -> list[dict[str, Any]]:
    chosen = [level.strip() for level in args.levels.split(",") if level.strip()]
    unknown = set(chosen) - set(LEVELS)
    if unknown:
        raise SystemExit(f"--levels: unknown {sorted(unknown)}; known: {LEVELS}")
    rows = []
    if "sampler" in chosen:
        rows.append(sampler_level(args))
    memory = Pairs(args.memory_n, seed=args.seed)
    for mask, goal in (("zeros", 0.90), ("drop", 0.98)):
        if mask in chosen:
            rows.append(loader_level(f"in-memory, mask={mask}", memory, mask, goal, args, 0))
    if "default" in chosen:  # the bare DataLoader: torch's default_collate (no goal)
        for mask in ("zeros", "drop"):
            label = f"in-memory, mask={mask}, default_collate"
            rows.append(loader_level(label, memory, mask, None, args, 0, collate="default"))
    for workers in (0, args.workers):
        us = f"{args.decode_us:g} us/item"
        if "decode" in chosen:
            data = Pairs(args.decode_n, decode_us=args.decode_us, seed=args.seed)
            label = f"decode {us}, workers={workers}"
            rows.append(loader_level(label, data, "zeros", 0.99, args, workers))
        if "partial" in chosen:
            part = PartialPairs(args.decode_n, decode_us=args.decode_us, seed=args.seed)
            label = f"decode {us}, partial load, workers={workers}"
            rows.append(loader_level(label, part, "zeros", None, args, workers))
    if "train" in chosen:
        rows.append(train_level(args))
    return rows


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, "throughput")
    parser.add_argument("--levels", default=",".join(LEVELS), help=f"some of {LEVELS}")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side first")
    parser.add_argument("--sampler-n", type=int, default=None)
    parser.add_argument("--memory-n", type=int, default=None)
    parser.add_argument("--decode-n", type=int, default=None)
    parser.add_argument("--decode-us", type=float, default=None, help="decode cost per item")
    parser.add_argument("--workers", type=int, default=2, help="workers of the decode levels")
    parser.add_argument("--train-n", type=int, default=None)
    parser.add_argument("--train-workers", type=int, default=0)
    parser.add_argument("--width", type=int, default=None, help="encoder width of the train level")
    parser.add_argument("--device", default="cpu", help="device of the train level")
    args = parser.parse_args(argv)
    sizes = (
        {
            "sampler_n": 2000,
            "memory_n": 1000,
            "decode_n": 128,
            "decode_us": 50.0,
            "train_n": 512,
            "width": 32,
        }
        if args.quick
        else {
            "sampler_n": 1_000_000,
            "memory_n": 50_000,
            "decode_n": 4096,
            "decode_us": 200.0,
            "train_n": 20_000,
            "width": 256,
        }
    )
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reps is None:
        args.reps = 2 if args.quick else 7
    if args.quick:
        args.batch_size = min(args.batch_size, 64)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda was given but torch.cuda.is_available() is False")
    return args


COLUMNS = [
    ("level", "level", "s"),
    ("unit", "unit", "s"),
    ("plain", "plain", ",.0f"),
    ("remix", "remix", ",.0f"),
    ("ratio", "ratio", ".3f"),
    ("pair ratio", "pair_ratio", ".3f"),
    ("pair q1", "pair_q1", ".3f"),
    ("pair q3", "pair_q3", ".3f"),
    ("cpu ratio", "cpu_ratio", ".3f"),
    ("goal", "goal", ".2f"),
    ("met", "met", ""),
]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    setup(args)
    rows = run_levels(args)
    result: dict[str, Any] = {
        "benchmark": "throughput",
        "machine": machine_info(),
        "config": vars(args),
        "levels": rows,
    }
    title = (
        f"Throughput, remix vs plain (median of {args.reps} alternated runs, "
        f"batch {args.batch_size}, train device {args.device})"
    )
    print_table(title, rows, COLUMNS)
    print(f"\nwrote {write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
