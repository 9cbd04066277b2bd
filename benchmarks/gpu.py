"""GPU training throughput: plain loading + joint step against the whole remix step, in one command.

Levels (``--levels``; all by default):

- ``tiny`` / ``tiny-skip``, ``cnn`` / ``cnn-skip``: plain shuffled loading +
  the joint step against the remix loader + the unimodal step +
  ``filter.update`` every step (:func:`benchmarks.training.compare_training`):
  :class:`~benchmarks.training.TinyNet` (two MLP encoders, where per-step
  overheads show) and :class:`~benchmarks.training.AVResNet` (two
  ResNet-18-style encoders); ``-skip`` does not run the masked encoder
  (``mask="drop"``, method ``remix-skip``).
- ``quickstart``: the README's quick start as printed (``build(RECOMMENDED,
  ...)``, ``set_epoch``, ``remix_loss``, ``filt.update`` every step) on a conv
  net against a user's plain loop (``DataLoader(shuffle=True)``, the joint
  loss), ``torch.backends.cudnn.benchmark = True`` on both sides
  (:mod:`benchmarks.quickstart`).
- ``compile``: the same loops with the MLP model under ``torch.compile`` on both sides.
- ``micro``: host microseconds and device launches per call of ``update`` and
  of ``remix_loss`` against the joint loss (:mod:`benchmarks.step_costs`).

Same dataset, workers (``pin_memory=True``), batch size, bf16 autocast and
optimiser on both sides; one run is one epoch, runs alternate, medians are
reported; host synchronisations per step are counted on the first four levels
(``torch.cuda.set_sync_debug_mode("warn")``), and every level but ``micro``
splits each side's host milliseconds per step into the wait for data, the step
and ``update``, and reports its steps per epoch and per epoch the milliseconds
of ``set_epoch`` and of the final wait for the device.

Run: ``bash benchmarks/gpu.sh`` (or ``python -m benchmarks.gpu``) on a machine
with one CUDA GPU and torch, numpy, tqdm and Triton (torch's CUDA wheels bring
it) — none of the project's other dependencies. Each level's timed runs are
capped at ``--level-seconds`` (12), so the whole command took 96-104 s on one
H200 (three runs). ``--quick`` runs tiny sizes on the CPU
(a plumbing check, not a measurement). Writes ``results/gpu.json`` and prints
one table.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import add_common_args, machine_info, print_table, setup, write_json
from benchmarks.quickstart import QuickNet, compare_loop
from benchmarks.step_costs import measure
from benchmarks.training import AVResNet, SyntheticAV, TinyNet, compare_training

__all__ = ["LEVELS", "main"]

LEVELS = ("tiny", "tiny-skip", "cnn", "cnn-skip", "quickstart", "compile", "micro")

#: Sizes per mode: samples per epoch, batch size, and the model/input sizes.
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "tiny_n": 65_536, "tiny_batch": 256, "width": 256,
        "cnn_n": 6_144, "cnn_batch": 128, "base": 64,
        "audio_shape": (1, 128, 128), "video_shape": (3, 112, 112),
        "quick_n": 4_096, "quick_base": 32, "quick_shape": 64, "calls": 300,
    },
    "quick": {
        "tiny_n": 512, "tiny_batch": 64, "width": 32,
        "cnn_n": 48, "cnn_batch": 16, "base": 4,
        "audio_shape": (1, 32, 32), "video_shape": (3, 28, 28),
        "quick_n": 96, "quick_base": 4, "quick_shape": 32, "calls": 20,
    },
}  # fmt: skip


def run_level(level: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """One level's rows (the micro level gives one per case)."""
    size = SIZES["quick" if args.quick else "full"]
    if level == "micro":
        return [{"level": row.pop("case"), "kind": "micro", **row} for row in
                measure(device, calls=size["calls"])]  # fmt: skip
    if level in ("quickstart", "compile"):
        conv = level == "quickstart"
        side = size["quick_shape"]
        audio, video = ((1, side, side), (3, side, side)) if conv else ((40,), (3, 16, 16))
        dataset = SyntheticAV(size["quick_n"], audio, video, seed=args.seed)
        model = QuickNet(conv=conv, width=size["quick_base"] if conv else size["width"])
        batch = args.batch_size or (size["cnn_batch"] if conv else size["tiny_batch"])
        row = compare_loop(
            level, model, dataset, dataset.labels, device=device, batch_size=batch,
            num_workers=args.workers, amp=args.amp, reps=args.reps, compiled=not conv,
            seed=args.seed, level_seconds=args.level_seconds,
        )  # fmt: skip
        return [{**row, "kind": "loop", "model": "QuickNet"}]
    skip = level.endswith("-skip")
    if level.startswith("tiny"):
        dataset = SyntheticAV(size["tiny_n"], (40,), (3, 16, 16), seed=args.seed)
        net: torch.nn.Module = TinyNet(width=size["width"])
        batch = size["tiny_batch"]
    else:
        dataset = SyntheticAV(
            size["cnn_n"], size["audio_shape"], size["video_shape"], seed=args.seed
        )
        net = AVResNet(base=size["base"])
        batch = size["cnn_batch"]
    row = compare_training(
        level, net, dataset, method="remix-skip" if skip else "remix-online",
        mask="drop" if skip else "zeros", device=device, batch_size=args.batch_size or batch,
        num_workers=args.workers, amp=args.amp, reps=args.reps, warmup=args.warmup,
        seed=args.seed, level_seconds=args.level_seconds,
    )  # fmt: skip
    row["model"] = type(net).__name__
    row["kind"] = "training"
    return [row]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, "gpu")
    parser.add_argument("--levels", default=",".join(LEVELS), help=f"some of {LEVELS}")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --quick)")
    parser.add_argument("--workers", type=int, default=None, help="default 4 (0 with --quick)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per level")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per side first")
    parser.add_argument("--level-seconds", type=float, default=12.0, help="cap on timed runs")
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


def _ms(host: dict[str, Any] | None) -> str | None:
    """``data / step / update`` host ms per step."""
    if not host:
        return None
    update = host.get("update_ms")
    last = "-" if update is None else f"{update:.3f}"
    return f"{host['data_ms']:.2f} / {host['step_ms']:.2f} / {last}"


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    if row["kind"] == "micro":
        joint = row.get("joint_us_per_call")
        return {
            "level": row["level"], "unit": "host us/call", "plain": joint,
            "remix": row["us_per_call"], "ratio": row.get("ratio"),
            "launches": row["launches_per_call"],
            "plain_launches": row.get("joint_launches_per_call"),
        }  # fmt: skip
    if "error" in row:
        return {"level": row["level"], "unit": f"failed: {row['error']}"}
    out = {key: row.get(key) for key in ("level", "unit", "plain", "remix", "ratio", "goal", "met")}
    syncs = row.get("syncs", {})
    out["syncs"] = syncs.get("remix", {}).get("syncs_per_step")
    out["plain_syncs"] = syncs.get("plain", {}).get("syncs_per_step")
    host = row.get("host_ms")
    if host:
        out["plain_ms"], out["remix_ms"] = _ms(host["plain"]), _ms(host["remix"])
        out["sizes"] = f"{host['plain']['batch_sizes']} / {host['remix']['batch_sizes']}"
        # PAD rows that complete a short batch (tail="fill") cost whole steps: seen here
        out["steps"] = " / ".join(
            f"{host[side]['steps_per_epoch']:g}" for side in ("plain", "remix")
        )
        out["epoch_ms"] = " / ".join(_epoch_ms(host[side]) for side in ("plain", "remix"))
    return out


def _epoch_ms(host: dict[str, Any]) -> str:
    """``set_epoch + device wait`` ms per epoch (keys absent in results written before them)."""
    parts = [host.get(k) for k in ("set_epoch_ms_per_epoch", "device_wait_ms_per_epoch")]
    return "+".join("-" if v is None else f"{v:.1f}" for v in parts)


COLUMNS = [
    ("level", "level", "s"),
    ("unit", "unit", "s"),
    ("plain", "plain", ",.1f"),
    ("remix", "remix", ",.1f"),
    ("ratio", "ratio", ".3f"),
    ("goal", "goal", ".2f"),
    ("met", "met", ""),
    ("syncs/step plain", "plain_syncs", ".2f"),
    ("syncs/step remix", "syncs", ".2f"),
    ("launches plain", "plain_launches", ".1f"),
    ("launches", "launches", ".1f"),
    ("host ms/step plain data/step/update", "plain_ms", "s"),
    ("remix", "remix_ms", "s"),
    ("batch sizes", "sizes", "s"),
    ("steps/epoch", "steps", "s"),
    ("ms/epoch set_epoch+device wait (plain / remix)", "epoch_ms", "s"),
]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    setup(args)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for level in args.levels:
        began = time.perf_counter()
        try:
            found = run_level(level, args, device)
        except Exception as err:  # one level failing (e.g. a compiler missing) keeps the rest
            traceback.print_exc()
            found = [{"level": level, "kind": "failed", "error": f"{type(err).__name__}: {err}"}]
        for row in found:
            row["level_seconds"] = time.perf_counter() - began
        rows.extend(found)
        print(f"{level}: {time.perf_counter() - began:.0f}s", flush=True)
    result: dict[str, Any] = {
        "benchmark": "gpu",
        "machine": machine_info(),
        "config": vars(args),
        "levels": rows,
        "seconds": time.perf_counter() - start,
    }
    title = (
        f"Training throughput on {rows[0].get('device', args.device) if rows else args.device}, "
        f"remix vs plain (medians of alternated epochs, {args.workers} workers, amp={args.amp}; "
        "micro: host us per call, plain = joint loss)"
    )
    print_table(title, [_table_row(row) for row in rows], COLUMNS)
    print(f"\nwrote {write_json(args.out, result)} in {result['seconds']:.0f}s")
    return result


if __name__ == "__main__":
    main()
