"""Shared pieces of the benchmarks: fair A/B timing, statistics, machine info, tables, JSON.

Every benchmark takes its median, mean ± std, table printing, machine
description and JSON writer from here.

Fairness rules every benchmark follows: the same dataset object and the same
``DataLoader`` keyword arguments on both sides, warm-up runs of each side
first, then the two sides alternated run after run (the order flips every
repetition so neither always goes first), timed with ``time.perf_counter``,
and the *median* of the repetitions reported.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from remix_data import HardSampleFilter

__all__ = [
    "NAMES",
    "add_common_args",
    "add_seed_args",
    "alternate",
    "compare",
    "cpu_model",
    "finite",
    "machine_info",
    "mean_std",
    "median",
    "num_threads",
    "print_table",
    "quartiles",
    "realistic_filter",
    "seed_settings",
    "setup",
    "spin",
    "write_json",
]

#: Modality names used by every benchmark.
NAMES = ("audio", "video")


def add_common_args(parser: argparse.ArgumentParser, name: str) -> None:
    """``--quick``, ``--out``, ``--reps``, ``--threads`` and ``--seed``."""
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for tests")
    parser.add_argument("--out", default=f"results/{name}.json", help="JSON file to write")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per side")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument("--seed", type=int, default=0)


def add_seed_args(parser: argparse.ArgumentParser) -> None:
    """The arguments of the multi-seed jobs (the study, the balancing comparison):
    ``--tasks``, ``--seeds``, ``--epochs``, ``--warmup``, ``--jobs`` and ``--quick``
    (read back by :func:`seed_settings`)."""
    parser.add_argument("--tasks", nargs="+", default=["hapt", "mfeat"], choices=["hapt", "mfeat"])
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (0 quick)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (2 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="default 5 (1 with --quick)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    parser.add_argument("--quick", action="store_true", help="tiny subsets, 2 epochs, seed 0")


def seed_settings(args: argparse.Namespace) -> tuple[list[int], int, int]:
    """Seeds, epochs and warm-up epochs of :func:`add_seed_args`, defaults filled in.

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_seed_args(p)
        >>> seed_settings(p.parse_args([])), seed_settings(p.parse_args(["--quick"]))
        (([0, 1, 2], 30, 5), ([0], 2, 1))
    """
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    return list(seeds), epochs, warmup


def setup(args: argparse.Namespace) -> None:
    """Apply ``--threads`` and seed the global RNGs (data generation only)."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The CPU's model name as the kernel reports it (Linux), else :func:`platform.processor`."""
    try:
        with open(cpuinfo, encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on.

    Trained accuracies reproduce bit for bit only where torch runs the same CPU
    kernels: ``cpu_capability`` (torch's vector instruction set, e.g. ``AVX512``)
    and ``cpu`` say which (docs/results.md, "Reproducing these numbers").
    """
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name() if cuda else None,
        "argv": sys.argv,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def spin(seconds: float) -> None:
    """Busy-wait: a stand-in for decoding cost that holds the CPU like real work."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def median(values: Sequence[float]) -> float:
    """The median, as a float."""
    return float(statistics.median(values))


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles (``statistics.quantiles``, inclusive method):
    where the middle half of ``values`` lies.

    Example:
        >>> quartiles([0.90, 0.95, 0.96, 0.97, 1.00])
        (0.95, 0.97)
    """
    if len(values) < 2:
        return float(values[0]), float(values[0])
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return float(q1), float(q3)


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for a single value) and count.

    Example:
        >>> mean_std([1.0, 3.0])
        {'mean': 2.0, 'std': 1.4142135623730951, 'n': 2}
    """
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


@contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block (``None``: unchanged)."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def alternate(
    plain: Callable[[], object], remix: Callable[[], object], *, reps: int, warmup: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seconds per run of each side: warm-up runs first, then A B, B A, A B, ...

    Returns wall-clock seconds (``perf_counter``) of plain and remix, then this
    process's CPU seconds (``process_time``, workers not included) of each.

    Every timed run starts from a full ``gc.collect()``: the garbage collector
    stays on (a side's own collections are its cost), but a full collection of
    what earlier runs left (0.2-0.5 s in this process) no longer lands on
    whichever side happens to cross its threshold.
    """
    for _ in range(warmup):
        plain()
        remix()
    wall: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    for r in range(reps):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for side in order:
            fn = plain if side == 0 else remix
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[side].append(time.perf_counter() - start)
            cpu[side].append(time.process_time() - start_cpu)
    return wall[0], wall[1], cpu[0], cpu[1]


def compare(
    level: str,
    plain: Callable[[], object],
    remix: Callable[[], object],
    *,
    work: int,
    unit: str,
    goal: float | None,
    reps: int,
    warmup: int,
    **extra: Any,
) -> dict[str, Any]:
    """Time both sides with :func:`alternate`; rates are ``work / median seconds``.

    ``pair_q1`` and ``pair_q3`` are the :func:`quartiles` of the per-pair ratios:
    how far identical runs spread on this machine, to judge a goal near ``ratio`` by.
    """
    tp, tr, cp, cr = alternate(plain, remix, reps=reps, warmup=warmup)
    rate_plain, rate_remix = work / median(tp), work / median(tr)
    ratio = rate_remix / rate_plain
    pairs = [p / r for p, r in zip(tp, tr)]
    q1, q3 = quartiles(pairs)
    return {
        "level": level,
        "unit": unit,
        "work": work,
        "plain": rate_plain,
        "remix": rate_remix,
        "ratio": ratio,
        # the median of the per-pair ratios: robust to drift in machine load
        "pair_ratio": median(pairs),
        "pair_q1": q1,
        "pair_q3": q3,
        # the same from CPU time of this process: less sensitive to other jobs on
        # the machine, meaningless with workers (their CPU time is not counted)
        "cpu_ratio": median(cp) / median(cr),
        "goal": goal,
        "met": None if goal is None else ratio >= goal,
        "plain_seconds": tp,
        "remix_seconds": tr,
        "plain_cpu_seconds": cp,
        "remix_cpu_seconds": cr,
        **extra,
    }


def realistic_filter(
    n: int, *, seed: int = 0, process_group: Any = None, **options: Any
) -> HardSampleFilter:
    """A filter scored like a real run: every sample scored, about 40% audio / 60% video.

    Per-sample losses as ``[N]`` tensors (``score="loss"``), video a bit harder on
    average, as with CREMA-D where audio dominates. ``options`` go to
    :class:`~remix_data.HardSampleFilter` (``labels``, ``balance``, ``smoothing``...).
    """
    gen = torch.Generator().manual_seed(seed)
    filt = HardSampleFilter(n, NAMES, score="loss", process_group=process_group, **options)
    losses = {
        "audio": torch.rand(n, generator=gen),
        "video": torch.rand(n, generator=gen) + 0.1,
    }
    filt.update(torch.arange(n), losses)
    return filt


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, fmt)


def print_table(
    title: str, rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]
) -> None:
    """Print ``rows`` as a plain-text table; ``columns`` are ``(header, key, format)``."""
    cells = [[_cell(row.get(key), fmt) for _, key, fmt in columns] for row in rows]
    widths = [
        max([len(header)] + [len(c[i]) for c in cells]) for i, (header, _, _) in enumerate(columns)
    ]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, ((h, _, _), w) in enumerate(zip(columns, widths))
    )
    print(f"\n{title}\n{line}\n{'-' * len(line)}")
    for c in cells:
        print(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))
            )
        )


def finite(obj: Any) -> Any:
    """``obj`` with every NaN / inf float replaced by ``None`` (tuples become lists).

    Example:
        >>> finite({"a": [1.0, float("nan")], "b": (float("inf"),)})
        {'a': [1.0, None], 'b': [None]}
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike[str], payload: dict[str, Any], *, indent: int = 1) -> Path:
    """Write ``payload`` as strict JSON (NaN / inf become ``null``), creating parent folders."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite(payload), indent=indent, allow_nan=False) + "\n")
    return out
