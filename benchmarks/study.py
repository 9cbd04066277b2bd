"""Which remixing settings close the laziness gap: chosen on validation, reported on test.

Two tasks, each with a strong and a weak modality:

- ``hapt``: UCI HAPT (:func:`benchmarks.hapt_data.prepare_data`), accelerometer
  (strong) and gyroscope (weak); subjects 1-16 train, 17-21 validation, 22-30 test;
- ``mfeat``: UCI mfeat (:mod:`benchmarks.mfeat`), views ``fac`` (strong) and
  ``mor`` (weak); a fixed stratified 60/20/20 train / validation / test split.

Every run trains on the training part and records the *final* epoch's
accuracy (fused head, each unimodal head) on validation and test, in the same
run. The methods of one seed train epoch by epoch in turns
(:func:`train_seed`), so that a drifting machine load slows all alike; the
time ratio divides a run's training time by the ``joint`` run of the same seed.

One stage: the references :data:`REFERENCES` (each modality alone, the fused
baseline ``joint-fused``, ``joint`` with auxiliary heads) and the candidates
:data:`CANDIDATES`: the remix settings (the paper's recipe, the two
BatchNorm-safe online bases, and the skip base with class-aware decoupling,
with a quarter of joint batches, and with everything
:data:`~remix_data.presets.RECOMMENDED` adds), and the model-side balancing
methods OGM-GE and PMR (:mod:`benchmarks.balancing`) alone and combined with
``remix-skip`` and with ``RECOMMENDED``. The laziness gap of a modality is its
alone run's accuracy minus the run's head (same seed).

Selection rule, fixed before any run (:data:`CRITERION`): among the
candidates whose validation fused accuracy is within the seed spread of
``joint``'s (mean >= joint mean - joint std) and whose mean time ratio is at
most ``--budget`` (1.0), take the one that closes the largest share of
``joint``'s weak-modality gap on *validation* (means over seeds, gaps rounded
to 0.1 point); ties go to the faster. Only :func:`validation_table` feeds
:func:`choose`, and it reads no test number. The goal (:func:`goal_check`, on
test): the chosen setting shrinks ``joint``'s weak gap by more than the
seed-to-seed spread, keeps fused accuracy within joint's spread, within the
time budget.

Usage::

    python benchmarks/study.py --jobs 2            # both tasks, seeds 0 1 2
    python benchmarks/study.py --tasks mfeat
    python benchmarks/study.py --quick             # smoke run (tests)

Writes ``results/study.json`` and ``results/study.png`` (``--out``, ``--plot``),
and with ``--small-plot docs/study.png`` a small copy of the figure.
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
from benchmarks.harness import Splits, run_interleaved, run_seeds
from benchmarks.methods import VARIANTS
from benchmarks.mfeat import prepare_mfeat
from benchmarks.report import markdown_table, points, ratio_cell
from remix_data.datasets import HaptData, MfeatData

__all__ = [
    "CANDIDATES",
    "CRITERION",
    "METHODS",
    "REFERENCES",
    "SCHEMA",
    "choose",
    "goal_check",
    "main",
    "summarize",
    "train_seed",
    "validation_table",
]

SCHEMA = "remix_data.benchmarks.study/2"
REFERENCE = "joint"
PAPER = "remix"
REFERENCES = ("alone-strong", "alone-weak", "joint-fused", REFERENCE)
CANDIDATES = (
    PAPER,
    "remix-skip",
    "remix-online-evalbn",
    "remix-skip+class",
    "remix-skip+joint25",
    "remix-skip+all",
    # Model-side balancing (benchmarks.balancing) alone and combined with remixing.
    "ogm-ge",
    "pmr",
    "remix-skip+ogm-ge",
    "remix-skip+pmr",
    "remix-skip+all+ogm-ge",
    "remix-skip+all+pmr",
)
METHODS = (*REFERENCES, *CANDIDATES)
KEYS = ("fused", "strong", "weak")
GAPS = ("strong", "weak")
TIME_BUDGET = 1.0
VAL_USERS = (17, 18, 19, 20, 21)
CRITERION = (
    "Among the candidates (remix settings; OGM-GE and PMR alone or combined with one) "
    "whose validation fused accuracy is within joint's seed spread "
    "(mean >= joint mean - joint std) and whose mean time ratio vs joint is <= budget, take "
    "the largest share of joint's weak-modality laziness gap closed on the validation split "
    "(gap = alone-weak accuracy - weak head, same seed; final epoch; means over seeds, "
    "rounded to 0.1 point); ties go to the lower time ratio."
)


# --------------------------------------------------------------------------- #
# Tasks and training                                                           #
# --------------------------------------------------------------------------- #


def _generic(acc: Mapping[str, float], data: Splits) -> dict[str, float]:
    fused, strong, weak = data.task.keys
    return {"fused": acc[fused], "strong": acc[strong], "weak": acc[weak]}


def _normalize(result: Mapping[str, Any], data: Splits, stage: int) -> dict[str, Any]:
    """A run in task-independent terms: ``val`` / ``test`` hold fused, strong, weak."""
    epochs = result["epochs"]
    return {
        "name": result["method"]["name"],
        "seed": result["seed"],
        "stage": stage,
        "method": result["method"],
        "val": _generic(result["final_val"], data),
        "test": _generic(result["final"], data),
        "train_time_s": result["train_time_s"],
        "train_cpu_s": result["train_cpu_s"],
        "curves": {
            split: {k: [_generic(e[split], data)[k] for e in epochs] for k in KEYS}
            for split in ("val", "test")
        },
        "weak_share": [e["shares"][data.task.weak] if "shares" in e else None for e in epochs],
    }


def _add_gaps(runs: list[dict[str, Any]]) -> None:
    """``gap[split][role]``: alone run's accuracy minus the run's head, same seed."""
    roles = {"strong": "alone-strong", "weak": "alone-weak"}
    by_name = {(r["name"], r["seed"]): r for r in runs}
    for r in runs:
        r["gap"] = {}
        for split in ("val", "test"):
            ceilings = {g: by_name.get((roles[g], r["seed"])) for g in GAPS}
            r["gap"][split] = {
                g: c[split][g] - r[split][g] for g, c in ceilings.items() if c is not None
            }


def train_seed(
    data: Splits, methods: Sequence[str], seed: int, stage: int, options: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Train ``methods`` for one seed, epoch by epoch in turns, one torch thread."""
    results = run_interleaved(methods, seed, data, threads=1, **options)
    return [_normalize(result, data, stage) for result in results]


def _train_stage(
    data: Splits,
    methods: Sequence[str],
    seeds: Sequence[int],
    stage: int,
    options: Mapping[str, Any],
    jobs: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """All seeds of one stage, in ``jobs`` forked processes (1: in this process)."""
    t0 = time.perf_counter()
    per_seed = run_seeds(methods, seeds, data, jobs=jobs, threads=1, **options)
    runs = [_normalize(result, data, stage) for results in per_seed for result in results]
    _add_time_ratios(runs)
    _add_gaps(runs)
    for r in runs:
        log(
            f"  {data.task.name} stage {stage} {r['name']:<26} seed {r['seed']}: val fused "
            f"{r['val']['fused']:.3f} weak {r['val']['weak']:.3f} | train {r['train_time_s']:.1f}s "
            f"({r['time_vs_joint']:.2f}x)"
        )
    log(f"  {data.task.name} stage {stage}: {time.perf_counter() - t0:.0f}s wall")
    return runs


def _add_time_ratios(runs: list[dict[str, Any]]) -> None:
    ref = {(r["stage"], r["seed"]): r for r in runs if r["name"] == REFERENCE}
    for r in runs:
        joint = ref[(r["stage"], r["seed"])]
        r["time_vs_joint"] = r["train_time_s"] / joint["train_time_s"]
        r["cpu_vs_joint"] = r["train_cpu_s"] / joint["train_cpu_s"]


# --------------------------------------------------------------------------- #
# Selection (validation only) and report                                       #
# --------------------------------------------------------------------------- #


def _accuracy_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Runs per method; ``joint`` counts its stage-1 runs only (later ones are timing
    references with the same seeds)."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    first_stage = min(r["stage"] for r in runs)
    for r in runs:
        if r["name"] == REFERENCE and r["stage"] != first_stage:
            continue
        by_name.setdefault(r["name"], []).append(r)
    return by_name


def validation_table(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per method, mean and std over seeds of the *validation* accuracies and the time
    ratio. The only input of :func:`choose`; it reads no test number."""
    table: dict[str, dict[str, float]] = {}
    for name, mine in _accuracy_runs(runs).items():
        row: dict[str, float] = {}
        for key in KEYS:
            stats = mean_std([r["val"][key] for r in mine])
            row[key], row[f"{key}_std"] = stats["mean"], stats["std"]
        for g in GAPS:
            values = [r["gap"]["val"][g] for r in mine if g in r.get("gap", {}).get("val", {})]
            if len(values) == len(mine):
                stats = mean_std(values)
                row[f"{g}_gap"], row[f"{g}_gap_std"] = stats["mean"], stats["std"]
        row["time_vs_joint"] = statistics.fmean(r["time_vs_joint"] for r in mine)
        row["n"] = len(mine)
        table[name] = row
    return table


def choose(
    table: Mapping[str, Mapping[str, float]],
    candidates: Sequence[str],
    *,
    budget: float = TIME_BUDGET,
) -> dict[str, Any]:
    """Apply :data:`CRITERION` to a :func:`validation_table`; return the ranking.

    ``chosen`` is the first of ``ranking``; ``none_eligible`` says that no
    candidate met the fused and time conditions (the best one is chosen anyway,
    flagged); ``joint_gap`` is the weak gap the shares refer to.
    """
    ref = table[REFERENCE]
    joint_gap = round(ref["weak_gap"], 3)
    floor = ref["fused"] - ref["fused_std"]
    ranking: list[dict[str, Any]] = []
    for name in candidates:
        row = table[name]
        gap = round(row["weak_gap"], 3)
        fused_ok = row["fused"] >= floor
        time_ok = row["time_vs_joint"] <= budget
        ranking.append(
            {
                "name": name,
                "fused_gain": row["fused"] - ref["fused"],
                "weak_gain": row["weak"] - ref["weak"],
                "weak_gap": row["weak_gap"],
                "gap_closed": (joint_gap - gap) / joint_gap if joint_gap > 0 else None,
                "fused_within_spread": fused_ok,
                "time_vs_joint": row["time_vs_joint"],
                "eligible": fused_ok and time_ok,
            }
        )
    ranking.sort(key=lambda e: (not e["eligible"], round(e["weak_gap"], 3), e["time_vs_joint"]))
    best = ranking[0]
    return {
        "chosen": best["name"],
        "none_eligible": not best["eligible"],
        "joint_gap": ref["weak_gap"],
        "joint_has_gap": joint_gap > round(table["alone-weak"]["weak_std"], 3),
        "budget": budget,
        "ranking": ranking,
    }


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: validation and test accuracies, time and time ratios (mean ± std)."""
    out: dict[str, dict[str, Any]] = {}
    for name, mine in _accuracy_runs(runs).items():
        out[name] = {
            "method": mine[0]["method"],
            "seeds": [r["seed"] for r in mine],
            "stage": mine[0]["stage"],
            **{
                split: {k: mean_std([r[split][k] for r in mine]) for k in KEYS}
                for split in ("val", "test")
            },
            "gap": {
                split: {
                    g: mean_std([r["gap"][split][g] for r in mine])
                    for g in GAPS
                    if all(g in r["gap"][split] for r in mine)
                }
                for split in ("val", "test")
            },
            **{
                key: mean_std([r[key] for r in mine])
                for key in ("train_time_s", "time_vs_joint", "cpu_vs_joint")
            },
        }
    return out


def goal_check(
    runs: Sequence[Mapping[str, Any]], chosen: str, *, budget: float = TIME_BUDGET
) -> dict[str, Any]:
    """On test: does ``chosen`` shrink joint's weak gap by more than the spread (the
    larger seed std of the two gaps), with fused accuracy within joint's spread
    (mean >= joint mean - joint std), at a mean time ratio <= ``budget``?"""
    groups = _accuracy_runs(runs)
    ref = {r["seed"]: r for r in groups[REFERENCE]}
    mine = groups[chosen]
    a = mean_std([r["gap"]["test"]["weak"] for r in mine])
    b = mean_std([ref[r["seed"]]["gap"]["test"]["weak"] for r in mine])
    spread = max(a["std"], b["std"])
    fused = mean_std([r["test"]["fused"] for r in mine])
    joint_fused = mean_std([ref[r["seed"]]["test"]["fused"] for r in mine])
    ratio = statistics.fmean(r["time_vs_joint"] for r in mine)
    closes = b["mean"] - a["mean"] > spread
    fused_ok = fused["mean"] >= joint_fused["mean"] - joint_fused["std"]
    return {
        "method": chosen,
        "budget": budget,
        "weak_gap": {
            "joint": b,
            "chosen": a,
            "spread": spread,
            "share_closed": (b["mean"] - a["mean"]) / b["mean"] if b["mean"] > 0 else None,
            "paired": mean_std(
                [ref[r["seed"]]["gap"]["test"]["weak"] - r["gap"]["test"]["weak"] for r in mine]
            ),
            "closes": closes,
        },
        "fused": {"chosen": fused, "joint": joint_fused, "within_spread": fused_ok},
        "time_vs_joint": ratio,
        "met": bool(closes and fused_ok and ratio <= budget),
    }


def _shown(name: str, key: str, *, gap: bool = False) -> bool:
    """Whether a table shows ``key`` (fused, strong, weak) of method ``name``: an alone
    run shows its own head only, and no gap."""
    own = {"alone-strong": "strong", "alone-weak": "weak"}.get(name)
    return own is None or (key == own and not gap)


def format_validation(
    table: Mapping[str, Mapping[str, float]], selection: Mapping[str, Any], strong: str, weak: str
) -> str:
    """Markdown: every method's validation accuracies, gaps, share closed, time ratio (an
    alone run shows its own head only)."""
    rank = {e["name"]: e for e in selection["ranking"]}
    header = [
        "method",
        "fused",
        f"{strong} head",
        f"{weak} head (weak)",
        f"{strong} gap",
        f"{weak} gap",
        "share of joint's weak gap closed",
        "time vs joint",
    ]
    rows = []
    for name, row in table.items():
        e = rank.get(name)

        def cell(
            k: str, row: Mapping[str, float] = row, signed: bool = False, name: str = name
        ) -> str:
            shown = k in row and _shown(name, k.removesuffix("_gap"), gap=k.endswith("_gap"))
            stat = {"mean": row[k], "std": row[k + "_std"]} if shown else None
            return points(stat, signed=signed)

        closed = "—" if e is None or e["gap_closed"] is None else f"{100 * e['gap_closed']:.0f} %"
        if e is not None and not e["eligible"]:
            closed += " (not eligible)"
        mark = " **(chosen)**" if name == selection["chosen"] else ""
        rows.append(
            [
                f"{name}{mark}",
                cell("fused"),
                cell("strong"),
                cell("weak"),
                cell("strong_gap", signed=True),
                cell("weak_gap", signed=True),
                closed,
                f"{row['time_vs_joint']:.2f}x",
            ]
        )
    return markdown_table(header, rows)


def format_test(
    summary: Mapping[str, Mapping[str, Any]], names: Sequence[str], strong: str, weak: str
) -> str:
    """Markdown: test accuracies and gaps (mean ± std over seeds) and time ratios (an
    alone run shows its own head only)."""
    header = [
        "method",
        "fused",
        f"{strong} head",
        f"{weak} head (weak)",
        f"{strong} gap",
        f"{weak} gap",
        "time (s)",
        "time vs joint",
        "CPU time vs joint",
    ]
    rows = []
    for name in dict.fromkeys(names):
        s = summary[name]
        t = s["train_time_s"]
        rows.append(
            [
                name,
                *(points(s["test"][k] if _shown(name, k) else None) for k in KEYS),
                *(
                    points(
                        s["gap"]["test"].get(g) if _shown(name, g, gap=True) else None, signed=True
                    )
                    for g in GAPS
                ),
                f"{t['mean']:.1f} ± {t['std']:.1f}",
                ratio_cell(s["time_vs_joint"]),
                ratio_cell(s["cpu_vs_joint"]),
            ]
        )
    return markdown_table(header, rows)


def study_task(
    data: Splits,
    seeds: Sequence[int],
    options: Mapping[str, Any],
    *,
    jobs: int = 1,
    budget: float = TIME_BUDGET,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every method of :data:`METHODS` on one task, choose on validation,
    report on test; the JSON-ready section of the report."""
    t0 = time.perf_counter()
    runs = _train_stage(data, METHODS, seeds, 1, options, jobs, log)
    table = validation_table(runs)
    selection = choose(table, CANDIDATES, budget=budget)
    chosen = selection["chosen"]
    return {
        "data": dict(data.info),
        "strong": data.task.strong,
        "weak": data.task.weak,
        "methods": list(METHODS),
        "selection": selection,
        "validation_table": table,
        "test_names": list(dict.fromkeys(["alone-weak", "joint-fused", REFERENCE, PAPER, chosen])),
        "summary": summarize(runs),
        "goal": goal_check(runs, chosen, budget=budget),
        "runs": runs,
        "wall_time_s": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- #
# Plot                                                                         #
# --------------------------------------------------------------------------- #


def plot(report: Mapping[str, Any], path: Path, *, dpi: int = 100, scale: float = 1.0) -> Path:
    """Per task: validation gains over joint of every candidate (left), and test
    accuracies of joint, the paper recipe and the chosen setting (right)."""
    from matplotlib.figure import Figure

    tasks = report["tasks"]
    fig = Figure(figsize=(12 * scale, 3.6 * scale * len(tasks)), layout="constrained")
    axes = fig.subplots(len(tasks), 2, squeeze=False, width_ratios=(1.6, 1))
    for row, (name, sec) in zip(axes, tasks.items()):
        left, right = row
        rank = sorted(sec["selection"]["ranking"], key=lambda e: e["weak_gap"])
        labels = [e["name"].replace("remix-online-evalbn", "r-o-evalbn") for e in rank]
        x = range(len(rank))
        w = 0.4
        left.bar(
            [i - w / 2 for i in x],
            [100 * e["fused_gain"] for e in rank],
            w,
            label="fused gain",
            color="tab:blue",
        )
        left.bar(
            [i + w / 2 for i in x],
            [100 * e["weak_gain"] for e in rank],
            w,
            label=f"{sec['weak']} (weak) head gain",
            color="tab:orange",
        )
        for i, e in enumerate(rank):
            if not e["eligible"]:
                left.text(
                    i,
                    0,
                    "not eligible",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
            if e["name"] == sec["selection"]["chosen"]:
                left.axvspan(i - 0.5, i + 0.5, color="tab:green", alpha=0.15)
        left.axhline(0, color="black", lw=0.8)
        left.set_xticks(list(x), labels, rotation=35, ha="right", fontsize=7)
        left.set_ylabel("points vs joint")
        left.set_title(f"{name}: validation gains over joint (green: chosen)", fontsize=9)
        left.legend(fontsize=7)
        names = [n for n in sec["test_names"] if not sec["summary"][n]["method"].get("alone")]
        summ = sec["summary"]
        for j, key in enumerate(("fused", "weak")):
            means = [100 * summ[n]["test"][key]["mean"] for n in names]
            stds = [100 * summ[n]["test"][key]["std"] for n in names]
            right.bar(
                [i + (j - 0.5) * w for i in range(len(names))],
                means,
                w,
                yerr=stds,
                capsize=3,
                label="fused" if key == "fused" else f"{sec['weak']} head",
                color="tab:blue" if key == "fused" else "tab:orange",
            )
        lo = min(100 * summ[n]["test"]["weak"]["mean"] for n in names)
        right.set_ylim(max(0.0, lo - 15), 100)
        right.set_xticks(
            range(len(names)),
            [n.replace("remix-online-evalbn", "r-o-evalbn") for n in names],
            fontsize=7,
        )
        right.set_ylabel("test accuracy (%)")
        right.set_title(f"{name}: test, mean ± std over seeds", fontsize=9)
        right.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# --------------------------------------------------------------------------- #
# Command line                                                                 #
# --------------------------------------------------------------------------- #


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Robust remixing variants chosen on validation, reported on test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_seed_args(p)
    p.add_argument("--val-users", nargs="+", type=int, default=list(VAL_USERS))
    p.add_argument("--budget", type=float, default=TIME_BUDGET, help="max time vs joint")
    p.add_argument("--out", type=Path, default=Path("results/study.json"))
    p.add_argument("--plot", type=Path, default=None, help="default: --out with .png")
    p.add_argument("--small-plot", type=Path, default=None, help="also a small copy here")
    p.add_argument("--verbose", action="store_true", help="one line per epoch")
    return p.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    *,
    hapt_data: HaptData | None = None,
    mfeat_data: MfeatData | None = None,
) -> dict[str, Any]:
    """Run the study from command-line arguments; return the written report."""
    args = parse_args(argv)
    seeds, epochs, warmup = seed_settings(args)
    options: dict[str, Any] = {"epochs": epochs, "warmup": warmup}
    if args.verbose:
        options["log"] = lambda line: print(line, flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "command": " ".join(["python", "benchmarks/study.py", *(argv or sys.argv[1:])]),
        "criterion": CRITERION,
        "goal": "chosen shrinks joint's weak gap on test by more than the larger seed std, "
        "fused within joint's seed spread, mean time ratio <= budget",
        "config": {
            "seeds": seeds,
            "epochs": epochs,
            "warmup": warmup,
            "budget": args.budget,
            "jobs": args.jobs,
            "batch_size": 64,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "decay_epoch": epochs // 2,
            "threads_per_run": 1,
            "variants": VARIANTS,
        },
        "environment": {**machine_info(), "torch_threads": 1},
        "tasks": {},
    }
    for name in args.tasks:
        if name == "hapt":
            data = prepare_data(hapt_data, val_users=args.val_users, quick=args.quick)
        else:
            data = prepare_mfeat(mfeat_data, quick=args.quick)
        log(
            f"{name}: {data.info['n_train']} train / {data.info['n_val']} val / "
            f"{data.info['n_test']} test; seeds {seeds}, {epochs} epochs ({warmup} warm-up)"
        )
        report["tasks"][name] = study_task(
            data, seeds, options, jobs=args.jobs, budget=args.budget, log=log
        )
    report["total_time_s"] = time.perf_counter() - t0
    out = write_json(args.out, report)
    plots = []
    try:
        plots.append(plot(report, args.plot or out.with_suffix(".png")))
        if args.small_plot is not None:
            plots.append(plot(report, args.small_plot, dpi=64))
    except ImportError as err:  # matplotlib missing
        print(f"no plot: {err}", file=sys.stderr)
    for name, sec in report["tasks"].items():
        sel = sec["selection"]
        print(f"\n## {name}: validation (final epoch, mean ± std over seeds {seeds})")
        print(format_validation(sec["validation_table"], sel, sec["strong"], sec["weak"]))
        print(
            f"\nchosen: {sel['chosen']}"
            + (" (no candidate eligible)" if sel["none_eligible"] else "")
            + f"; joint's weak gap on validation {100 * sel['joint_gap']:+.1f} points"
            + ("" if sel["joint_has_gap"] else " (within the alone runs' spread: no gap)")
        )
        print(f"\n## {name}: test")
        print(format_test(sec["summary"], sec["test_names"], sec["strong"], sec["weak"]))
        g = sec["goal"]
        w = g["weak_gap"]
        print(
            f"\ngoal met: {g['met']} (weak gap {100 * w['joint']['mean']:+.1f} -> "
            f"{100 * w['chosen']['mean']:+.1f}, spread {100 * w['spread']:.1f}; fused "
            f"{100 * g['fused']['chosen']['mean']:.1f} vs joint "
            f"{100 * g['fused']['joint']['mean']:.1f} ± {100 * g['fused']['joint']['std']:.1f}; "
            f"time {g['time_vs_joint']:.2f}x)"
        )
    print(f"\nwrote {out}" + "".join(f", {p}" for p in plots))
    print(f"total wall time {report['total_time_s']:.0f}s")
    return report


if __name__ == "__main__":
    main()
