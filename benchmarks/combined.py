"""Model-side balancing (OGM-GE, PMR) alone and combined with remixing, on HAPT and mfeat.

The main job's setup (:mod:`benchmarks.hapt`: Adam 1e-3, weight decay 1e-4, 30
epochs with 5 warm-up, batch 64, lr x0.1 at epoch 15, one torch thread per run,
final-epoch test accuracy) on two tasks:

- ``hapt``: subjects 1-21 train, 22-30 test (the main job's split);
- ``mfeat``: the study's fixed stratified 60/20/20 split (:mod:`benchmarks.mfeat`),
  trained on its training part, reported on its test part.

Methods (:data:`benchmarks.methods.COMBINED_METHODS`): the alone ceilings,
``joint``, ``ogm-ge`` and ``pmr`` (:mod:`benchmarks.balancing`, on joint's
loss), ``remix-skip`` and ``remix-skip+all`` (``RECOMMENDED``), and each
model-side method combined with each remix setting (the balancer acts on joint
batches only: warm-up and ``joint_fraction``). ``--full`` adds ``joint-fused``
and the official scripts' loss, ``ogm-ge-fused`` and ``pmr-fused``.

Printed per task: fused accuracy, every head, the laziness gap per modality
(alone run minus head, same seed), the share of ``joint``'s gap closed, time
against ``joint`` (wall and CPU); then what adding each remix setting to
``joint``, ``ogm-ge`` and ``pmr`` changes, and what adding each model-side
method to each remix setting changes (paired over seeds), and whether the
change is outside the seed spread (the larger seed std of the two methods).

Usage::

    python benchmarks/combined.py --seeds 0 1 2 --jobs 2   # the full table, both tasks
    python benchmarks/combined.py --tasks mfeat --seeds 0 1 2
    python benchmarks/combined.py --quick                  # smoke run (tests)

Writes ``results/combined.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import add_seed_args, machine_info, mean_std, seed_settings, write_json
from benchmarks.hapt_data import prepare_data
from benchmarks.harness import Splits, run_seeds
from benchmarks.methods import BALANCED, COMBINED_METHODS, METHODS, method_config
from benchmarks.mfeat import prepare_mfeat
from benchmarks.report import markdown_table, points, ratio_cell, summarize
from remix_data.datasets import HaptData, MfeatData
from remix_data.gap import share_closed

__all__ = [
    "FULL",
    "REMIXES",
    "SCHEMA",
    "additions",
    "combined_name",
    "format_additions",
    "format_table",
    "main",
    "pairs",
]

SCHEMA = "remix_data.benchmarks.combined/1"
#: The remix settings each model-side method is combined with.
REMIXES = ("remix-skip", "remix-skip+all")
#: ``--full`` adds the fused-only baseline and the official scripts' loss.
FULL = (*COMBINED_METHODS, "joint-fused", "ogm-ge-fused", "pmr-fused")


def combined_name(base: str, remix: str) -> str:
    """The method that adds ``remix`` to ``base`` (``joint`` + remix is the remix alone)."""
    return remix if base == "joint" else f"{remix}+{base}"


def _gap_shares(
    summary: Mapping[str, dict[str, Any]], names: Sequence[str], reference: str = "joint"
) -> None:
    """``share_closed`` per modality: of the reference's mean gap, ``None`` where that
    gap is within the alone run's seed spread (no gap to close)."""
    joint = summary.get(reference, {}).get("gap")
    if not joint:
        return
    alone_std = {
        m: next((s[m]["std"] for s in summary.values() if s.get("alone") == m and m in s), 0.0)
        for m in names
    }
    for s in summary.values():
        gap = s.get("gap")
        s["share_closed"] = (
            None
            if not gap or s.get("alone") or s is summary[reference]
            else {
                m: share_closed({m: joint[m]["mean"]}, {m: gap[m]["mean"]}, min_gap=alone_std[m])[m]
                for m in names
                if m in gap and m in joint
            }
        )


def pairs(methods: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(base, what is added, combined method)`` for every comparison whose two
    methods are in ``methods``: each remix setting added to ``joint`` and to each
    model-side method, then each model-side method added to each remix setting.

    Example:
        >>> pairs(["joint", "pmr", "remix-skip", "remix-skip+pmr"])
        [('joint', 'remix-skip', 'remix-skip'), ('pmr', 'remix-skip', 'remix-skip+pmr'), \
('remix-skip', 'pmr', 'remix-skip+pmr')]
    """
    found = [
        (base, remix, combined_name(base, remix))
        for base in ("joint", *BALANCED)
        for remix in REMIXES
    ]
    found += [(remix, kind, combined_name(kind, remix)) for remix in REMIXES for kind in BALANCED]
    return [(a, b, c) for a, b, c in found if a in methods and c in methods]


def additions(
    runs: Sequence[Mapping[str, Any]], weak: str, methods: Sequence[str]
) -> list[dict[str, Any]]:
    """What each remix setting adds to ``joint`` and to each model-side method, and
    what each model-side method adds to each remix setting (:func:`pairs`).

    Per pair (base, combined) with both runs present: the paired per-seed
    differences (combined minus base) of fused accuracy and of the weak
    modality's gap, and whether each mean difference is outside the seed spread
    (``|mean| >`` the larger seed std of the two methods' values).
    """
    by = {(r["method"]["name"], r["seed"]): r for r in runs}
    alone = {r["seed"]: r["final"][weak] for r in runs if r["method"].get("alone") == weak}
    out = []
    for base, added, name in pairs(methods):
        seeds = sorted(s for (n, s) in by if n == base and (name, s) in by)
        row: dict[str, Any] = {"base": base, "added": added, "method": name, "seeds": seeds}
        metrics: dict[str, Callable[[Mapping[str, Any]], float]] = {
            "fused": lambda r: float(r["final"]["fused"])
        }
        if alone and all(s in alone for s in seeds):
            metrics["weak_gap"] = lambda r: float(alone[r["seed"]] - r["final"][weak])
        for key, value in metrics.items():
            a = [value(by[(base, s)]) for s in seeds]
            b = [value(by[(name, s)]) for s in seeds]
            spread = max(mean_std(a)["std"], mean_std(b)["std"])
            row[key] = {
                "base": mean_std(a),
                "combined": mean_std(b),
                "paired": mean_std([y - x for x, y in zip(a, b)]),
                "spread": spread,
                "outside_spread": abs(statistics.fmean(b) - statistics.fmean(a)) > spread,
            }
        out.append(row)
    return out


def format_table(
    summary: Mapping[str, Mapping[str, Any]], strong: str, weak: str, reference: str = "joint"
) -> str:
    """Markdown: fused, every head, the gap per modality, the share of the reference's
    weak gap closed, wall and CPU time against joint (mean ± std over seeds)."""
    header = [
        "method", "fused", f"{strong} head", f"{weak} head (weak)", f"{strong} gap",
        f"{weak} gap", f"share of {reference}'s {weak} gap closed", "time vs joint",
        "CPU time vs joint",
    ]  # fmt: skip
    rows = []
    for name, s in summary.items():
        alone, gap = s.get("alone"), s.get("gap") or {}
        closed = (s.get("share_closed") or {}).get(weak)
        rows.append(
            [
                name,
                points(None if alone else s["fused"]),
                *(points(s[m] if alone in (None, m) else None) for m in (strong, weak)),
                *(points(None if alone else gap.get(m), signed=True) for m in (strong, weak)),
                "—" if closed is None else f"{round(100 * closed) + 0:.0f} %",
                ratio_cell(s["time_vs_joint"]),
                ratio_cell(s["cpu_vs_joint"]),
            ]
        )
    return markdown_table(header, rows)


def format_additions(rows: Sequence[Mapping[str, Any]], weak: str) -> str:
    """Markdown: per pair of :func:`additions`, the fused and weak-gap change and
    whether it is outside the seed spread."""

    def cell(entry: Mapping[str, Any] | None) -> str:
        if entry is None:
            return "—"
        d = entry["paired"]
        change = f"{100 * d['mean']:+.1f} ± {100 * d['std']:.1f}"
        if d["n"] < 2:
            return f"{change} (one seed: no spread)"
        verdict = "outside" if entry["outside_spread"] else "within"
        return f"{change} ({verdict} the spread {100 * entry['spread']:.1f})"

    header = [
        "method", "+ added", "fused change (paired)",
        f"{weak} gap change (paired; negative closes)",
    ]  # fmt: skip
    return markdown_table(
        header,
        [[r["base"], r["added"], cell(r.get("fused")), cell(r.get("weak_gap"))] for r in rows],
    )


def run_task(
    data: Splits,
    methods: Sequence[str],
    seeds: Sequence[int],
    options: Mapping[str, Any],
    jobs: int,
    reference: str = "joint",
) -> dict[str, Any]:
    """Train every method for every seed on one task; the JSON-ready section."""
    t0 = time.perf_counter()
    per_seed = run_seeds(methods, seeds, data, jobs=jobs, threads=1, **options)
    runs = [r for results in per_seed for r in results]
    for r in runs:
        print(
            f"  {data.task.name} {r['method']['name']:<24} seed {r['seed']}: "
            + " ".join(f"{k} {v:.3f}" for k, v in r["final"].items())
            + f", train {r['train_time_s']:.1f}s",
            flush=True,
        )
    summary = summarize(runs, data.task.keys)
    _gap_shares(summary, data.task.keys[1:], reference)
    for s in summary.values():
        s.pop("per_epoch", None)
    return {
        "data": dict(data.info),
        "strong": data.task.strong,
        "weak": data.task.weak,
        "methods": {name: method_config(name, data.task.modalities) for name in methods},
        "summary": summary,
        "additions": additions(runs, data.task.weak, methods),
        "runs": runs,
        "wall_time_s": time.perf_counter() - t0,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="OGM-GE and PMR alone and combined with remixing, on HAPT and mfeat.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_seed_args(p)
    p.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                   help=f"default: {' '.join(COMBINED_METHODS)}")  # fmt: skip
    p.add_argument("--full", action="store_true", help="adds joint-fused, ogm-ge-fused, pmr-fused")
    p.add_argument("--reference", default="joint", help="whose weak gap the shares refer to")
    p.add_argument("--out", type=Path, default=Path("results/combined.json"))
    return p.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    *,
    hapt_data: HaptData | None = None,
    mfeat_data: MfeatData | None = None,
) -> dict[str, Any]:
    """Run the comparison from command-line arguments; return the written report."""
    args = parse_args(argv)
    methods = list(args.methods or (FULL if args.full else COMBINED_METHODS))
    for needed in dict.fromkeys(("joint", args.reference)):
        if needed not in methods:
            raise ValueError(
                f"--methods should include {needed} (time ratios refer to joint, the shares "
                f"to --reference {args.reference})"
            )
    seeds, epochs, warmup = seed_settings(args)
    options: dict[str, Any] = {"epochs": epochs, "warmup": warmup}
    command = " ".join(["python", "benchmarks/combined.py", *(argv or sys.argv[1:])])
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "command": command,
        "config": {
            "methods": methods,
            "seeds": seeds,
            "epochs": epochs,
            "warmup": warmup,
            "batch_size": 64,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "decay_epoch": epochs // 2,
            "threads_per_run": 1,
            "jobs": args.jobs,
            "reference": args.reference,
        },
        "environment": {**machine_info(), "torch_threads": 1},
        "tasks": {},
    }
    for name in args.tasks:
        if name == "hapt":
            data = prepare_data(hapt_data, quick=args.quick)
        else:
            data = prepare_mfeat(mfeat_data, quick=args.quick)
        print(
            f"{name}: {data.info['n_train']} train / {data.info['n_test']} test; seeds {seeds}, "
            f"{epochs} epochs ({warmup} warm-up), {len(methods)} methods",
            flush=True,
        )
        report["tasks"][name] = run_task(data, methods, seeds, options, args.jobs, args.reference)
    report["total_time_s"] = time.perf_counter() - t0
    out = write_json(args.out, report)
    for name, sec in report["tasks"].items():
        strong, weak = sec["strong"], sec["weak"]
        print(f"\n## {name}: final-epoch test accuracy (%), mean ± std over seeds {seeds}")
        print(f"`{command}` ({sec['wall_time_s']:.0f} s wall for {name})\n")
        print(format_table(sec["summary"], strong, weak, args.reference))
        if sec["additions"]:
            print(
                f"\n## {name}: what remixing adds (points, combined minus alone, paired by seed)\n"
            )
            print(format_additions(sec["additions"], weak))
    print(f"\nwrote {out}")
    print(f"total wall time {report['total_time_s']:.0f}s")
    return report


if __name__ == "__main__":
    main()
