"""Scaling: ``update`` per batch, planning per epoch, memory, and the paper's loop as anchor.

- ``update`` cost per batch (us) for batch sizes 64..1024: the table cost alone
  (``score="loss"``, precomputed ``[B]`` losses per modality), the full cost
  from ``[B, C]`` logits of both heads (confidence computed), and online
  scoring's call with ``modality=`` of a unimodal batch, given the active head's
  logits only or every head's (as the quick start does: the masked heads are
  validated, not scored);
- planning one epoch (the filter's assignment snapshot + the sampler's batch
  plan) for N = 10^4 .. 10^7 samples, and how it grows with N (goal: 10^7 in
  under 1 s; the JSON records the machine), with the default options and with
  ``RECOMMENDED``'s (class balancing over ``--classes`` classes, smoothing, a
  joint share, the interleaved order, ``tail="fill"``);
- bytes per sample held by the filter (the tensors of its state) and by the
  sampler's plan (what planning an epoch allocates and keeps, traced);
- the same assignment the way the paper's reference code computes it (softmax
  per batch, then a Python loop per sample over numpy copies: clip, log2 KL
  to the uniform, compare, append), against ours (``update`` per batch +
  ``assignment()``), at sizes where the loop finishes, with their agreement.

Run: ``python -m benchmarks.scaling`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    NAMES,
    add_common_args,
    machine_info,
    median,
    print_table,
    realistic_filter,
    setup,
    write_json,
)
from remix_data import HardSampleFilter, ReassemblingBatchSampler
from remix_data.presets import RECOMMENDED


def _plan_bytes(filt: HardSampleFilter, batch_size: int, epoch: int) -> int:
    """Bytes a fresh sampler keeps after planning ``epoch`` (the filter's snapshot of that
    epoch already taken): the memory allocated by ``set_epoch`` and still held, traced by
    :mod:`tracemalloc` (which sees numpy's allocations)."""
    sampler = ReassemblingBatchSampler(filt, batch_size, seed=0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sampler.set_epoch(epoch)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _per_call_us(update: Callable[..., None], indices: list[torch.Tensor], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for idx in indices:
            update(idx)
        times.append((time.perf_counter() - start) / len(indices))
    return median(times) * 1e6


def update_costs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Median microseconds per ``update`` call, per batch size and kind of call."""
    n, classes, calls = args.update_n, args.classes, args.calls
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    for b in args.batch_sizes:
        indices = [torch.randint(n, (b,), generator=gen) for _ in range(calls)]
        losses = {m: torch.rand(b, generator=gen) for m in NAMES}
        logits = {m: torch.randn(b, classes, generator=gen) for m in NAMES}
        table = HardSampleFilter(n, NAMES, score="loss")
        full = HardSampleFilter(n, NAMES)
        ones = torch.ones(b, dtype=torch.long)
        online = partial(full.update, outputs={"video": logits["video"]}, modality=ones)
        online_all = partial(full.update, outputs=logits, modality=ones)
        rows.append(
            {
                "batch": b,
                "table_us": _per_call_us(partial(table.update, outputs=losses), indices, args.reps),
                "logits_us": _per_call_us(partial(full.update, outputs=logits), indices, args.reps),
                "online_us": _per_call_us(online, indices, args.reps),
                "online_all_us": _per_call_us(online_all, indices, args.reps),
            }
        )
    return rows


#: The option sets planning is timed under: the parts' defaults, and ``RECOMMENDED``'s.
PLANNING_OPTIONS = ("default", "recommended")


def planning_costs(args: argparse.Namespace, options: str = "default") -> list[dict[str, Any]]:
    """Median seconds to snapshot the assignment and build the batch plan, per N, under
    ``options`` (:data:`PLANNING_OPTIONS`)."""
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        filter_options: dict[str, Any] = {}
        sampler_options: dict[str, Any] = {}
        if options == "recommended":
            labels = torch.arange(n) % args.classes
            filter_options = {**RECOMMENDED.filter, "labels": labels}
            sampler_options = dict(RECOMMENDED.sampler)
        filt = realistic_filter(n, seed=args.seed, **filter_options)
        sampler = ReassemblingBatchSampler(filt, args.batch_size, seed=args.seed, **sampler_options)
        assign, plan = [], []
        for epoch in range(args.reps):
            start = time.perf_counter()
            filt.snapshot(epoch)  # assignment + statistics, once per epoch
            middle = time.perf_counter()
            sampler.set_epoch(epoch)  # the snapshot is cached: this is the batch plan
            plan.append(time.perf_counter() - middle)
            assign.append(middle - start)
        total = median([a + p for a, p in zip(assign, plan)])
        row = {
            "options": options,
            "n": n,
            "assignment_s": median(assign),
            "plan_s": median(plan),
            "total_s": total,
            "ns_per_sample": total / n * 1e9,
            "growth": None,
            "filter_bytes_per_sample": filt.nbytes / n,
            "sampler_bytes_per_sample": _plan_bytes(filt, args.batch_size, args.reps - 1) / n,
        }
        if rows:  # exponent k of total ~ N^k between this size and the previous one
            prev = rows[-1]
            row["growth"] = math.log(total / prev["total_s"]) / math.log(n / prev["n"])
        rows.append(row)
        del filt, sampler
    return rows


def reference_assignment(logits: dict[str, torch.Tensor], batch: int) -> list[int]:
    """The paper's rule as its reference code runs it: a Python loop per sample.

    Per batch: softmax of each head; per sample: a numpy copy of each
    prediction, KL to the uniform with probabilities clipped to [1e-9, 1] and
    log base 2, and the sample joins the audio list if its audio KL is smaller,
    else the video list.
    """
    audio, video = logits["audio"], logits["video"]
    n, classes = audio.shape
    uniform = np.full(classes, 1.0 / classes)
    audio_list: list[int] = []
    video_list: list[int] = []
    for lo in range(0, n, batch):
        index = torch.arange(lo, min(lo + batch, n))
        pred_a = torch.softmax(audio[lo : lo + batch], dim=1)
        pred_v = torch.softmax(video[lo : lo + batch], dim=1)
        for i in range(len(index)):
            p_a = np.clip(pred_a[i].cpu().numpy(), 1e-9, 1.0)
            p_v = np.clip(pred_v[i].cpu().numpy(), 1e-9, 1.0)
            kl_a = np.sum(p_a * np.log2(p_a / uniform))
            kl_v = np.sum(p_v * np.log2(p_v / uniform))
            (audio_list if kl_a < kl_v else video_list).append(int(index[i]))
    assignment = [1] * n
    for i in audio_list:
        assignment[i] = 0
    return assignment


def reference_costs(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    gen = torch.Generator().manual_seed(args.seed)
    b = args.reference_batch
    for n in args.reference_sizes:
        logits = {m: 2 * torch.randn(n, args.reference_classes, generator=gen) for m in NAMES}
        start = time.perf_counter()
        theirs = reference_assignment(logits, b)
        reference_s = time.perf_counter() - start

        start = time.perf_counter()
        filt = HardSampleFilter(n, NAMES)
        for lo in range(0, n, b):
            batch = {m: v[lo : lo + b] for m, v in logits.items()}
            filt.update(torch.arange(lo, min(lo + b, n)), batch)
        ours = filt.assignment()
        ours_s = time.perf_counter() - start
        agree = float((ours == torch.tensor(theirs)).float().mean())
        rows.append(
            {
                "n": n,
                "reference_us_per_sample": reference_s / n * 1e6,
                "ours_us_per_sample": ours_s / n * 1e6,
                "speedup": reference_s / ours_s,
                "agree": agree,
            }
        )
    return rows


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, "scaling")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size of the plan")
    parser.add_argument(
        "--classes", type=int, default=10, help="classes of the update logits and labels"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.calls, args.update_n = [64, 256, 1024], 5, 10_000
        args.sizes = [1_000, 10_000]
        args.reference_sizes = [200]
    else:
        args.batch_sizes, args.calls, args.update_n = [64, 128, 256, 512, 1024], 100, 1_000_000
        args.sizes = [10_000, 100_000, 1_000_000, 10_000_000]
        args.reference_sizes = [1_000, 10_000, 100_000]
    args.reference_batch, args.reference_classes = 64, 6  # the paper's CREMA-D settings
    if args.reps is None:
        args.reps = 2 if args.quick else 5
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    setup(args)
    update = update_costs(args)
    planning = [row for options in PLANNING_OPTIONS for row in planning_costs(args, options)]
    reference = reference_costs(args)
    largest = max(
        (row for row in planning if row["n"] == args.sizes[-1]), key=lambda row: row["total_s"]
    )
    result: dict[str, Any] = {
        "benchmark": "scaling",
        "machine": machine_info(),
        "config": vars(args),
        "update": update,
        "planning": planning,
        "reference": reference,
        "goal": {  # the slower option set at the largest N
            "plan_n": largest["n"],
            "plan_options": largest["options"],
            "plan_s": largest["total_s"],
            "limit_s": 1.0,
            "met": largest["n"] >= 10_000_000 and largest["total_s"] < 1.0,
        },
    }
    print_table(
        f"update per batch (median us per call; table of {args.update_n:,} samples)",
        update,
        [
            ("batch", "batch", "d"),
            ("[B] losses", "table_us", ".1f"),
            ("[B,C] logits", "logits_us", ".1f"),
            ("online, 1 head", "online_us", ".1f"),
            ("online, all heads", "online_all_us", ".1f"),
        ],
    )
    print_table(
        f"planning one epoch (median of {args.reps}; batch {args.batch_size}, 2 modalities)",
        planning,
        [
            ("options", "options", "s"),
            ("N", "n", ",d"),
            ("assignment s", "assignment_s", ".4f"),
            ("plan s", "plan_s", ".4f"),
            ("total s", "total_s", ".4f"),
            ("ns/sample", "ns_per_sample", ".1f"),
            ("growth N^k", "growth", ".2f"),
            ("filter B/sample", "filter_bytes_per_sample", ".2f"),
            ("sampler B/sample", "sampler_bytes_per_sample", ".2f"),
        ],
    )
    print_table(
        f"assignment: the reference code's per-sample loop vs ours (batch {args.reference_batch}, "
        f"{args.reference_classes} classes)",
        reference,
        [
            ("N", "n", ",d"),
            ("reference us/sample", "reference_us_per_sample", ".2f"),
            ("ours us/sample", "ours_us_per_sample", ".3f"),
            ("speedup", "speedup", ".0f"),
            ("agree", "agree", ".4f"),
        ],
    )
    goal = result["goal"]
    print(
        f"\nplanning {goal['plan_n']:,} samples ({goal['plan_options']} options, the slower):"
        f" {goal['plan_s']:.3f} s "
        f"(goal < 1 s at 10^7: {'met' if goal['met'] else 'NOT met'})"
    )
    print(f"wrote {write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
