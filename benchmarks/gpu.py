"""GPU training throughput: plain shuffled loading + joint step against the whole remix step.

Plain: ``BatchSampler(RandomSampler)`` + the joint step. Remix: the remix
loader + the unimodal step + ``filter.update(index, heads, modality=...)`` every
step + ``set_epoch`` (the filter's snapshot) every epoch
(:func:`benchmarks.training.compare_training`). Same dataset, workers
(``pin_memory=True``), batch size, bf16 autocast and optimiser on both sides;
one run is one epoch, runs alternate, medians are reported, plus the host
synchronisations per step seen by ``torch.cuda.set_sync_debug_mode("warn")``.

Levels (``--levels``):

- ``tiny`` / ``tiny-skip``: :class:`~benchmarks.training.TinyNet` (two MLP
  encoders on 40 audio features and a 3x16x16 frame, where per-step overheads
  show);
- ``cnn`` / ``cnn-skip``: :class:`~benchmarks.training.AVResNet` (two
  ResNet-18-style encoders on 1x128x128 spectrograms and 3x112x112 frames,
  decoded from uint8 in the workers).

Without ``-skip`` the remix side runs both encoders on masked input
(``mask="zeros"``, method ``remix-online``): the cost of remixing itself.
With ``-skip`` it does not run the masked encoder (``mask="drop"``, method
``remix-skip``, as :data:`remix_data.presets.RECOMMENDED`).

Run: ``bash benchmarks/gpu.sh`` (or ``python -m benchmarks.gpu``) on a machine
with one CUDA GPU; each level's timed runs are capped at ``--level-seconds``
(40), so the whole command stays within about three minutes. ``--quick`` runs
tiny sizes on the CPU (a plumbing check, not a measurement). Writes
``results/gpu.json`` and prints one table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import add_common_args, machine_info, print_table, setup, write_json
from benchmarks.training import AVResNet, SyntheticAV, TinyNet, compare_training

__all__ = ["LEVELS", "main"]

LEVELS = ("tiny", "tiny-skip", "cnn", "cnn-skip")

#: Sizes per mode: samples per epoch, batch size, and the model/input sizes.
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "tiny_n": 65_536, "tiny_batch": 256, "width": 256,
        "cnn_n": 6_144, "cnn_batch": 128, "base": 64,
        "audio_shape": (1, 128, 128), "video_shape": (3, 112, 112),
    },
    "quick": {
        "tiny_n": 512, "tiny_batch": 64, "width": 32,
        "cnn_n": 48, "cnn_batch": 16, "base": 4,
        "audio_shape": (1, 32, 32), "video_shape": (3, 28, 28),
    },
}  # fmt: skip


def run_level(level: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One level: its model and data, then :func:`compare_training`."""
    size = SIZES["quick" if args.quick else "full"]
    skip = level.endswith("-skip")
    if level.startswith("tiny"):
        dataset = SyntheticAV(size["tiny_n"], (40,), (3, 16, 16), seed=args.seed)
        model: torch.nn.Module = TinyNet(width=size["width"])
        batch = size["tiny_batch"]
    else:
        dataset = SyntheticAV(
            size["cnn_n"], size["audio_shape"], size["video_shape"], seed=args.seed
        )
        model = AVResNet(base=size["base"])
        batch = size["cnn_batch"]
    row = compare_training(
        level, model, dataset, method="remix-skip" if skip else "remix-online",
        mask="drop" if skip else "zeros", device=device, batch_size=args.batch_size or batch,
        num_workers=args.workers, amp=args.amp, reps=args.reps, warmup=args.warmup,
        seed=args.seed, level_seconds=args.level_seconds,
    )  # fmt: skip
    row["model"] = type(model).__name__
    return row


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, "gpu")
    parser.add_argument("--levels", default=",".join(LEVELS), help=f"some of {LEVELS}")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --quick)")
    parser.add_argument("--workers", type=int, default=None, help="default 4 (0 with --quick)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per level")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per side first")
    parser.add_argument("--level-seconds", type=float, default=40.0, help="cap on timed runs")
    parser.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None,
        help="bf16 autocast (default: on for cuda, off on the cpu)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cpu" if args.quick else "cuda"
    if args.quick and args.threads is None:
        args.threads = 1  # tiny models: more threads only contend
    if args.amp is None:
        args.amp = args.device.startswith("cuda")
    if args.workers is None:
        args.workers = 0 if args.quick else 4
    if args.reps is None:
        args.reps = 2 if args.quick else 7
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks.gpu needs a CUDA build of torch and a GPU (torch.cuda.is_available() "
            "is False); --quick --device cpu runs the plumbing on the CPU"
        )
    args.levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    unknown = set(args.levels) - set(LEVELS)
    if unknown:
        raise SystemExit(f"--levels: unknown {sorted(unknown)}; known: {LEVELS}")
    return args


COLUMNS = [
    ("level", "level", "s"),
    ("params", "params", ",d"),
    ("batch", "batch_size", "d"),
    ("plain samples/s", "plain", ",.0f"),
    ("remix samples/s", "remix", ",.0f"),
    ("ratio", "ratio", ".3f"),
    ("pair ratio", "pair_ratio", ".3f"),
    ("syncs/step plain", "plain_syncs", ".2f"),
    ("syncs/step remix", "remix_syncs", ".2f"),
    ("goal", "goal", ".2f"),
    ("met", "met", ""),
]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    setup(args)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    rows = [run_level(level, args, device) for level in args.levels]
    result: dict[str, Any] = {
        "benchmark": "gpu",
        "machine": machine_info(),
        "config": vars(args),
        "levels": rows,
        "seconds": time.perf_counter() - start,
    }
    table = [
        {**row, **{f"{side}_syncs": row["syncs"][side]["syncs_per_step"] for side in row["syncs"]}}
        for row in rows
    ]
    title = (
        f"Training throughput on {rows[0]['device'] if rows else args.device}, remix vs plain "
        f"(medians of alternated epochs, {args.workers} workers, amp={args.amp})"
    )
    print_table(title, table, COLUMNS)
    print(f"\nwrote {write_json(args.out, result)} in {result['seconds']:.0f}s")
    return result


if __name__ == "__main__":
    main()
