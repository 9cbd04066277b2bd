"""Robust remixing variants, chosen on validation data, reported on test.

Two tasks, each with a strong and a weak modality:

- ``hapt``: UCI HAPT (:func:`benchmarks.hapt.prepare_data`), accelerometer
  (strong) and gyroscope (weak); subjects 1-16 train, 17-21 validation, 22-30 test;
- ``mfeat``: UCI mfeat (:mod:`benchmarks.mfeat`), views ``fac`` (strong) and
  ``mor`` (weak); a fixed stratified 60/20/20 train / validation / test split.

Every run trains on the training part and records the *final* epoch's
accuracy (fused head, each unimodal head) on validation and test, in the same
run. The methods of one seed train epoch by epoch in turns
(:func:`train_seed`), so that a drifting machine load slows all alike; the
time ratio divides a run's training time by the ``joint`` run of the same seed
and stage.

Two stages, the second built on the first's validation numbers only:

1. ``joint``, ``remix`` (the paper's recipe: scoring pass), and the two online
   bases ``remix-skip`` (masked encoder skipped) and ``remix-online-evalbn``
   (masked encoder in eval mode); :func:`choose` picks the better base.
2. The base ``+ class`` (class-aware decoupling), ``+ ema`` (score smoothing
   0.5), ``+ joint25`` (a quarter of every subset in joint batches),
   ``+ interleave`` and ``+ all`` (:data:`benchmarks.methods.VARIANTS`), with
   ``joint`` again as the time reference.

Selection rule, fixed before any run (:data:`CRITERION`): among the remix
candidates whose mean time ratio is at most ``--budget`` (1.05), maximise
``min(fused gain, weak-head gain)`` over ``joint`` on *validation* (means over
seeds, rounded to 0.1 point); ties go to the faster. Only
:func:`validation_table` feeds :func:`choose`, and it reads no test number.
The goal (:func:`goal_check`, on test): the chosen setting beats ``joint`` in
fused and weak-head accuracy by more than the seed-to-seed spread (the larger
of the two standard deviations) at a mean time ratio of at most the budget.

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
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine_info, mean_std, write_json
from benchmarks.hapt import prepare_data
from benchmarks.harness import Splits, run_interleaved
from benchmarks.methods import VARIANTS
from benchmarks.mfeat import prepare_mfeat
from remix_data.datasets import HaptData, MfeatData

__all__ = [
    "BASES",
    "CRITERION",
    "SCHEMA",
    "STAGE1",
    "choose",
    "goal_check",
    "main",
    "stage2_methods",
    "summarize",
    "train_seed",
    "validation_table",
]

SCHEMA = "remix_data.benchmarks.study/1"
REFERENCE = "joint"
PAPER = "remix"
BASES = ("remix-skip", "remix-online-evalbn")
STAGE1 = (REFERENCE, PAPER, *BASES)
KEYS = ("fused", "strong", "weak")
TIME_BUDGET = 1.05
VAL_USERS = (17, 18, 19, 20, 21)
CRITERION = (
    "Among remix candidates with mean time ratio vs joint <= budget, maximise "
    "min(fused gain, weak-head gain) over joint on the validation split (final epoch, "
    "means over seeds, rounded to 0.1 point); ties go to the lower time ratio. "
    "Stage 1 picks the base among remix-skip and remix-online-evalbn the same way."
)


def stage2_methods(base: str) -> list[str]:
    """``joint`` (time reference) and the variants of ``base`` (:data:`VARIANTS`)."""
    return [REFERENCE, *(f"{base}+{suffix}" for suffix in VARIANTS)]


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


def train_seed(
    data: Splits, methods: Sequence[str], seed: int, stage: int, options: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Train ``methods`` for one seed, epoch by epoch in turns, one torch thread."""
    results = run_interleaved(methods, seed, data, threads=1, **options)
    return [_normalize(result, data, stage) for result in results]


_WORKER_TASK: Splits | None = None  # inherited by forked workers


def _worker(args: tuple[Sequence[str], int, int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    assert _WORKER_TASK is not None
    return train_seed(_WORKER_TASK, *args)


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
    global _WORKER_TASK
    t0 = time.perf_counter()
    work = [(list(methods), seed, stage, dict(options)) for seed in seeds]
    if jobs <= 1 or len(seeds) <= 1:
        per_seed = [train_seed(data, *w) for w in work]
    else:
        _WORKER_TASK = data
        try:
            ctx = get_context("fork")
            with ProcessPoolExecutor(max_workers=min(jobs, len(seeds)), mp_context=ctx) as pool:
                per_seed = list(pool.map(_worker, work))
        finally:
            _WORKER_TASK = None
    runs = [r for rs in per_seed for r in rs]
    _add_time_ratios(runs)
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

    ``chosen`` is the first of ``ranking``; ``over_budget`` says that no
    candidate met the time budget (the best one is chosen anyway, flagged).
    """
    ref = table[REFERENCE]
    ranking: list[dict[str, Any]] = []
    for name in candidates:
        row = table[name]
        fused_gain, weak_gain = row["fused"] - ref["fused"], row["weak"] - ref["weak"]
        ranking.append(
            {
                "name": name,
                "fused_gain": fused_gain,
                "weak_gain": weak_gain,
                "score": min(fused_gain, weak_gain),
                "time_vs_joint": row["time_vs_joint"],
                "eligible": row["time_vs_joint"] <= budget,
            }
        )
    ranking.sort(key=lambda e: (not e["eligible"], -round(e["score"], 3), e["time_vs_joint"]))
    best = ranking[0]
    return {
        "chosen": best["name"],
        "over_budget": not best["eligible"],
        "beats_joint_on_val": best["score"] > 0,
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
            **{
                key: mean_std([r[key] for r in mine])
                for key in ("train_time_s", "time_vs_joint", "cpu_vs_joint")
            },
        }
    return out


def goal_check(
    runs: Sequence[Mapping[str, Any]], chosen: str, *, budget: float = TIME_BUDGET
) -> dict[str, Any]:
    """On test: does ``chosen`` beat joint in fused and weak accuracy by more than the
    spread (the larger seed std of the two), at a mean time ratio <= ``budget``?"""
    groups = _accuracy_runs(runs)
    ref = {r["seed"]: r for r in groups[REFERENCE]}
    mine = groups[chosen]
    out: dict[str, Any] = {"method": chosen, "budget": budget}
    met = True
    for key in ("fused", "weak"):
        a = mean_std([r["test"][key] for r in mine])
        b = mean_std([ref[r["seed"]]["test"][key] for r in mine])
        paired = mean_std([r["test"][key] - ref[r["seed"]]["test"][key] for r in mine])
        spread = max(a["std"], b["std"])
        beats = a["mean"] - b["mean"] > spread
        out[key] = {
            "gain": a["mean"] - b["mean"],
            "spread": spread,
            "paired": paired,
            "beats": beats,
        }
        met = met and beats
    ratio = statistics.fmean(r["time_vs_joint"] for r in mine)
    out["time_vs_joint"] = ratio
    out["met"] = bool(met and ratio <= budget)
    return out


def _pct(s: Mapping[str, float]) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def format_validation(
    table: Mapping[str, Mapping[str, float]], selection: Mapping[str, Any], strong: str, weak: str
) -> str:
    """Markdown: every method's validation accuracies, gains over joint, time ratio."""
    rank = {e["name"]: e for e in selection["ranking"]}
    lines = [
        f"| method | fused | {strong} head | {weak} head (weak) | fused gain "
        "| weak gain | min gain | time vs joint |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        e = rank.get(name)

        def cell(k: str, row: Mapping[str, float] = row) -> str:
            return f"{100 * row[k]:.1f} ± {100 * row[k + '_std']:.1f}"

        gains = (
            f"{100 * e['fused_gain']:+.1f} | {100 * e['weak_gain']:+.1f} | {100 * e['score']:+.1f}"
            if e
            else "— | — | —"
        )
        mark = " **(chosen)**" if name == selection["chosen"] else ""
        lines.append(
            f"| {name}{mark} | {cell('fused')} | {cell('strong')} | {cell('weak')} | {gains} "
            f"| {row['time_vs_joint']:.2f}x |"
        )
    return "\n".join(lines)


def format_test(
    summary: Mapping[str, Mapping[str, Any]], names: Sequence[str], strong: str, weak: str
) -> str:
    """Markdown: test accuracies (mean ± std over seeds) and time ratios of ``names``."""
    lines = [
        f"| method | fused | {strong} head | {weak} head (weak) | time (s) "
        "| time vs joint | CPU time vs joint |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(names):
        s = summary[name]
        t, r, c = s["train_time_s"], s["time_vs_joint"], s["cpu_vs_joint"]
        lines.append(
            f"| {name} | {_pct(s['test']['fused'])} | {_pct(s['test']['strong'])} "
            f"| {_pct(s['test']['weak'])} | {t['mean']:.1f} ± {t['std']:.1f} "
            f"| {r['mean']:.2f}x ± {r['std']:.2f} | {c['mean']:.2f}x ± {c['std']:.2f} |"
        )
    return "\n".join(lines)


def study_task(
    data: Splits,
    seeds: Sequence[int],
    options: Mapping[str, Any],
    *,
    jobs: int = 1,
    budget: float = TIME_BUDGET,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both stages on one task; the JSON-ready section of the report."""
    t0 = time.perf_counter()
    runs = _train_stage(data, STAGE1, seeds, 1, options, jobs, log)
    base_selection = choose(validation_table(runs), BASES, budget=budget)
    base = base_selection["chosen"]
    log(f"  {data.task.name}: base chosen on validation: {base}")
    second = stage2_methods(base)
    runs += _train_stage(data, second, seeds, 2, options, jobs, log)
    table = validation_table(runs)
    candidates = [PAPER, *BASES, *second[1:]]
    selection = choose(table, candidates, budget=budget)
    summary = summarize(runs)
    chosen = selection["chosen"]
    stage1_joint = {
        r["seed"]: r["test"] for r in runs if r["name"] == REFERENCE and r["stage"] == 1
    }
    rerun_same = all(
        r["test"] == stage1_joint[r["seed"]]
        for r in runs
        if r["name"] == REFERENCE and r["stage"] == 2
    )
    return {
        "data": dict(data.info),
        "strong": data.task.strong,
        "weak": data.task.weak,
        "stages": {"1": list(STAGE1), "2": second},
        "base_selection": base_selection,
        "selection": selection,
        "validation_table": table,
        "test_names": [REFERENCE, PAPER, chosen],
        "summary": summary,
        "goal": goal_check(runs, chosen, budget=budget),
        "joint_rerun_identical": rerun_same,
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
        rank = sorted(sec["selection"]["ranking"], key=lambda e: -e["score"])
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
                    f"{e['time_vs_joint']:.2f}x",
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
        left.set_title(
            f"{name}: validation gains (green: chosen; label: over time budget)", fontsize=9
        )
        left.legend(fontsize=7)
        names = sec["test_names"]
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
    p.add_argument("--tasks", nargs="+", default=["hapt", "mfeat"], choices=["hapt", "mfeat"])
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (0 quick)")
    p.add_argument("--epochs", type=int, default=None, help="default 30 (2 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="default 5 (1 with --quick)")
    p.add_argument("--val-users", nargs="+", type=int, default=list(VAL_USERS))
    p.add_argument("--budget", type=float, default=TIME_BUDGET, help="max time vs joint")
    p.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    p.add_argument("--out", type=Path, default=Path("results/study.json"))
    p.add_argument("--plot", type=Path, default=None, help="default: --out with .png")
    p.add_argument("--small-plot", type=Path, default=None, help="also a small copy here")
    p.add_argument("--quick", action="store_true", help="tiny subsets, 2 epochs, seed 0")
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
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
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
        "goal": "chosen beats joint on test in fused and weak-head accuracy by more than the "
        "larger seed std, at mean time ratio <= budget",
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
            f"\nbase: {sec['base_selection']['chosen']}; chosen: {sel['chosen']}"
            + (" (over the time budget)" if sel["over_budget"] else "")
            + ("" if sel["beats_joint_on_val"] else " (does not beat joint on validation)")
        )
        print(f"\n## {name}: test")
        print(format_test(sec["summary"], sec["test_names"], sec["strong"], sec["weak"]))
        g = sec["goal"]
        print(
            f"\ngoal met: {g['met']} (fused gain {100 * g['fused']['gain']:+.1f} vs spread "
            f"{100 * g['fused']['spread']:.1f}, weak gain {100 * g['weak']['gain']:+.1f} vs "
            f"spread {100 * g['weak']['spread']:.1f}, time {g['time_vs_joint']:.2f}x)"
        )
    print(f"\nwrote {out}" + "".join(f", {p}" for p in plots))
    print(f"total wall time {report['total_time_s']:.0f}s")
    return report


if __name__ == "__main__":
    main()
