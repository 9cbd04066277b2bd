"""The main job: Data Remixing against joint training on real HAPT data.

Accelerometer (strong) and gyroscope (weak) windows of UCI HAPT, subjects 1-21
train / 22-30 test (:func:`remix_data.datasets.load_hapt`), one small 1-D CNN
per modality (:class:`benchmarks.models.HaptNet`), the methods of
:mod:`benchmarks.methods` with the same optimiser, learning rate, epochs and
batch size, trained by :class:`benchmarks.harness.Job`:

- ``joint``: the paper's baseline, ``CE(fused) + 0.5 * CE(each unimodal head)``
  on shuffled multimodal batches;
- ``remix``: the paper's recipe (:data:`remix_data.presets.PAPER`), warm-up
  with the joint loss, then a scoring pass before every epoch, sequential
  unimodal batches (gyro first, then acc: the weak modality first, as the
  reference code's video-then-audio order), feature-level masking,
  ``CE(fused) + CE(active head)``;
- ``remix-online``: as ``remix``, but scores come from the training step's own
  outputs (``filter.update(..., modality=...)``), no extra pass;
- ``remix-skip``: as ``remix-online``, and the masked modality's encoder is not
  run at all on unimodal batches (its features are zeros).

Every number reported is the *final* epoch's test accuracy. The methods train
epoch by epoch in turns in one process with the same thread count.

Usage::

    python benchmarks/hapt.py                      # one seed, the main methods
    python benchmarks/hapt.py --seeds 0 1 2        # the full table
    python benchmarks/hapt.py --methods joint remix-online --epochs 10 --warmup 2
    python benchmarks/hapt.py --quick              # tiny smoke run (tests)

Writes ``results/hapt.json`` and ``results/hapt.png`` (``--out`` moves both).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine_info, write_json
from benchmarks.hapt_data import HAPT, prepare_data
from benchmarks.harness import run, run_interleaved
from benchmarks.methods import FULL_METHODS, MAIN_METHODS, METHODS, method_config
from benchmarks.report import format_gap_table, format_shares, format_table, plot_runs, summarize
from remix_data.datasets import HaptData

__all__ = ["SCHEMA", "main"]

SCHEMA = "remix_data.benchmarks.hapt/1"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Data Remixing vs joint training on HAPT (acc = strong, gyro = weak).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=list(METHODS),
        help=f"default: {' '.join(MAIN_METHODS)}",
    )
    p.add_argument("--full", action="store_true",
                   help=f"--methods {' '.join(FULL_METHODS)}")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=None, help="default 30 (2 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="default 5 (1 with --quick)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--decay-epoch", type=int, default=None, help="lr x0.1 here; epochs//2")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--val-users", nargs="*", type=int, default=[], help="e.g. 17 18 19 20 21")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="train the methods one after another (default: epoch by epoch in turns, "
        "so that a drifting machine load slows every method alike)",
    )
    p.add_argument("--out", type=Path, default=Path("results/hapt.json"))
    p.add_argument("--plot", type=Path, default=None, help="default: --out with .png")
    p.add_argument("--dpi", type=int, default=100, help="resolution of the plot")
    p.add_argument("--quick", action="store_true", help="tiny subset, 2 epochs (smoke test)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, hapt: HaptData | None = None) -> dict[str, Any]:
    """Run the benchmark from command-line arguments; return the written report."""
    args = parse_args(argv)
    if args.methods is None:
        args.methods = list(FULL_METHODS if args.full else MAIN_METHODS)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    decay = args.decay_epoch if args.decay_epoch is not None else epochs // 2
    t_start = time.perf_counter()
    data = prepare_data(hapt, val_users=args.val_users, quick=args.quick)
    info = data.info
    val_users = info["val_users"]
    print(
        f"HAPT: {info['n_train']} train / {info['n_val']} val / {info['n_test']} test windows; "
        f"{epochs} epochs ({warmup} warm-up), batch {args.batch_size}, Adam lr {args.lr} "
        f"wd {args.weight_decay}, lr x0.1 at epoch {decay}, {args.threads} thread(s)",
        flush=True,
    )
    log = None if args.quiet else (lambda line: print(line, flush=True))
    runs = []
    options: dict[str, Any] = {
        "epochs": epochs, "warmup": warmup, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "decay_epoch": decay, "width": args.width,
        "threads": args.threads, "log": log,
    }  # fmt: skip
    for seed in args.seeds:
        if args.sequential:
            results = [run(name, seed, data, **options) for name in args.methods]
        else:
            results = run_interleaved(args.methods, seed, data, **options)
        for r in results:
            final = r["final"]
            print(
                f"{r['method']['name']} seed {seed}: fused {final['fused']:.3f} "
                f"acc {final['acc']:.3f} gyro {final['gyro']:.3f}, "
                f"train {r['train_time_s']:.1f}s",
                flush=True,
            )
        runs.extend(results)
    summary = summarize(runs, HAPT.keys)
    report = {
        "schema": SCHEMA,
        "command": " ".join(["python", "benchmarks/hapt.py", *(argv or sys.argv[1:])]),
        "config": {
            "methods": {name: method_config(name, HAPT.modalities) for name in args.methods},
            "seeds": args.seeds,
            "epochs": epochs,
            "warmup": warmup,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "decay_epoch": decay,
            "decay_gamma": 0.1,
            "width": args.width,
            "threads": args.threads,
            "schedule": "sequential" if args.sequential else "interleaved",
        },
        "data": info,
        "environment": {**machine_info(), "torch_threads": args.threads},
        "summary": summary,
        "runs": runs,
        "total_time_s": time.perf_counter() - t_start,
    }
    out = write_json(args.out, report)
    title = f"HAPT: assignment shares, mean confidence and test accuracy (seed {args.seeds[0]})"
    plot_path = plot_runs(runs, args.plot or out.with_suffix(".png"), HAPT, title, args.dpi)
    print()
    print("Final-epoch test accuracy (%), mean ± std over seeds", args.seeds)
    print(format_table(summary, HAPT))
    print("\nLaziness gap (alone - head, points; alone: each modality trained alone), final epoch")
    print(format_gap_table(summary, HAPT))
    if val_users:
        print(f"\nFinal-epoch validation accuracy (%), users {val_users}")
        print(format_table(summary, HAPT, split="val"))
        print(format_gap_table(summary, HAPT, split="val"))
    shares = format_shares(summary, HAPT.weak)
    if shares:
        print("\nShare of training samples assigned to gyro, per remix epoch (mean over seeds)")
        print(shares)
    print(f"\nwrote {out}" + (f" and {plot_path}" if plot_path else ""))
    print(f"total wall time {report['total_time_s']:.0f}s")
    return report


if __name__ == "__main__":
    main()
