"""Summaries, tables and plots of job results (:meth:`benchmarks.harness.Job.result`).

:func:`summarize` gives per method mean ± std over seeds of the final
accuracies and of the time against ``joint``; :func:`format_table` prints it
as Markdown (:func:`markdown_table`, cells by :func:`points` and
:func:`ratio_cell`, which the study's tables use too), :func:`plot_runs` draws
the per-epoch curves. A new metric is a
key of the runs' ``final`` records passed in ``keys``.

The laziness gap of a modality (:func:`remix_data.gap.laziness_gap`) is the
accuracy of the same modality trained alone (an ``alone`` run of the same
seed) minus the run's head on it; :func:`summarize` adds it per method where
the alone runs exist, and :func:`format_gap_table` prints it.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import mean_std
from benchmarks.harness import Task
from remix_data.gap import laziness_gap

__all__ = [
    "format_gap_table",
    "format_shares",
    "format_table",
    "gaps",
    "markdown_table",
    "per_epoch",
    "plot_runs",
    "points",
    "ratio_cell",
    "summarize",
]


def gaps(
    runs: Sequence[Mapping[str, Any]], split: str = "final"
) -> dict[tuple[str, int], dict[str, float]]:
    """Per ``(method name, seed)``, the laziness gap of every modality with an alone
    run of that seed, on ``split`` (``"final"``: test, ``"final_val"``: validation)."""
    ceiling = {
        (r["seed"], r["method"]["alone"]): r[split][r["method"]["alone"]]
        for r in runs
        if r["method"].get("alone") and r.get(split)
    }
    out: dict[tuple[str, int], dict[str, float]] = {}
    for r in runs:
        if not r.get(split):
            continue
        alone = {m: acc for (seed, m), acc in ceiling.items() if seed == r["seed"]}
        heads = {m: r[split][m] for m in alone}
        out[(r["method"]["name"], r["seed"])] = laziness_gap(alone, heads)
    return out


def _gap_summary(
    mine: Sequence[Mapping[str, Any]], per_run: Mapping[tuple[str, int], Mapping[str, float]]
) -> dict[str, Any] | None:
    found = [per_run.get((r["method"]["name"], r["seed"])) for r in mine]
    present = [g for g in found if g]
    if not found or len(present) < len(found):
        return None
    common = set.intersection(*(set(g) for g in present))
    return {m: mean_std([g[m] for g in present]) for m in sorted(common)}


def summarize(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method: mean ± std over seeds of the final accuracies ``keys``, of the
    time and of the time ratio to the ``joint`` run of the same seed (``None``
    without one), the validation accuracies when every run has them, the laziness
    gap per modality (``gap``, ``val_gap``: mean ± std over seeds of :func:`gaps`;
    ``None`` without alone runs), ``alone`` (the modality an alone run trains),
    ``final_epoch`` (the epoch reported), the seeds and :func:`per_epoch` curves."""
    joint = {r["seed"]: r for r in runs if r["method"]["name"] == "joint"}
    test_gaps, val_gaps = gaps(runs), gaps(runs, "final_val")
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["method"]["name"] for r in runs):
        mine = [r for r in runs if r["method"]["name"] == name]
        entry: dict[str, Any] = {key: mean_std([r["final"][key] for r in mine]) for key in keys}
        for key, ratio in (("train_time_s", "time_vs_joint"), ("train_cpu_s", "cpu_vs_joint")):
            entry[key] = mean_std([r[key] for r in mine])
            ratios = [r[key] / joint[r["seed"]][key] for r in mine if r["seed"] in joint]
            entry[ratio] = mean_std(ratios) if ratios else None
        with_val = [r["final_val"] for r in mine if r.get("final_val")]
        entry["val"] = (
            {key: mean_std([v[key] for v in with_val]) for key in keys}
            if len(with_val) == len(mine)
            else None
        )
        entry["alone"] = mine[0]["method"].get("alone")
        entry["gap"] = _gap_summary(mine, test_gaps)
        entry["val_gap"] = _gap_summary(mine, val_gaps) if entry["val"] is not None else None
        entry["final_epoch"] = min(len(r["epochs"]) for r in mine)
        entry["seeds"] = [r["seed"] for r in mine]
        entry["per_epoch"] = per_epoch(mine, keys)
        out[name] = entry
    return out


def per_epoch(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Means over seeds, epoch by epoch: test accuracies ``keys``, and shares / class
    skew of the remix epochs per modality (``None`` where an epoch had none)."""

    def mean(values: list[Any]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else None

    epochs = min(len(r["epochs"]) for r in runs)
    rows = [[r["epochs"][e] for r in runs] for e in range(epochs)]
    out: dict[str, Any] = {
        "test": {k: [mean([x["test"][k] for x in row]) for row in rows] for k in keys}
    }
    for key in ("shares", "class_tv"):
        out[key] = {
            m: [mean([x[key][m] if key in x else None for x in row]) for row in rows]
            for m in keys[1:]
        }
    return out


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table: ``header`` cells, a rule, one line per row of cells.

    Example:
        >>> print(markdown_table(["method", "fused"], [["joint", "90.0 ± 1.0"]]))
        | method | fused |
        |---|---|
        | joint | 90.0 ± 1.0 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def points(stat: Mapping[str, float] | None, *, signed: bool = False) -> str:
    """A :func:`mean_std` of fractions as ``"mean ± std"`` in points (``"—"`` for ``None``).

    Example:
        >>> points({"mean": 0.9123, "std": 0.01}), points({"mean": -0.02, "std": 0.0}, signed=True)
        ('91.2 ± 1.0', '-2.0 ± 0.0')
    """
    if stat is None:
        return "—"
    mean = format(100 * stat["mean"], "+.1f" if signed else ".1f")
    return f"{mean} ± {100 * stat['std']:.1f}"


def ratio_cell(stat: Mapping[str, float] | None) -> str:
    """A :func:`mean_std` of ratios as ``"meanx ± std"`` (``"—"`` for ``None``).

    Example:
        >>> ratio_cell({"mean": 1.234, "std": 0.05})
        '1.23x ± 0.05'
    """
    return "—" if stat is None else f"{stat['mean']:.2f}x ± {stat['std']:.2f}"


def format_shares(summary: Mapping[str, Mapping[str, Any]], modality: str) -> str:
    """Per remix method, the share of ``modality`` in each remix epoch (mean over seeds)."""
    lines = []
    for name, s in summary.items():
        shares = [v for v in s["per_epoch"]["shares"][modality] if v is not None]
        if shares:
            lines.append(f"{name:<20} " + " ".join(f"{v:.2f}" for v in shares))
    return "\n".join(lines)


def _columns(task: Task, *more: str) -> list[str]:
    """The header: method, fused and the two heads of ``task``, then ``more``."""
    _, strong, weak = task.keys
    return ["method", "fused", f"{strong} head", f"{weak} head", *more]


def _accuracies(
    summary: Mapping[str, Mapping[str, Any]], split: str
) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """``(method, its summary, its accuracies on split)`` for each method that has them."""
    for name, s in summary.items():
        acc = s if split == "test" else s["val"]
        if acc is not None:
            yield name, s, acc


def format_table(summary: Mapping[str, Mapping[str, Any]], task: Task, split: str = "test") -> str:
    """Markdown: method | fused | strong head | weak head | time (s) | time vs joint.

    A last column gives the CPU-time ratio, steadier than wall time on a shared
    machine. ``split="val"`` shows the validation accuracies instead.
    """
    rows = []
    for name, s, acc in _accuracies(summary, split):
        t = s["train_time_s"]
        rows.append(
            [
                name,
                *(points(acc[k]) for k in task.keys),
                f"{t['mean']:.1f} ± {t['std']:.1f}",
                ratio_cell(s["time_vs_joint"]),
                ratio_cell(s["cpu_vs_joint"]),
            ]
        )
    return markdown_table(_columns(task, "time (s)", "time vs joint", "CPU time vs joint"), rows)


def format_gap_table(
    summary: Mapping[str, Mapping[str, Any]], task: Task, split: str = "test"
) -> str:
    """Markdown: method | fused | strong head | weak head | strong gap | weak gap |
    time vs joint, accuracies and gaps in points (an alone run shows its own head
    only; a gap is ``alone - head``, positive where the head learnt less)."""
    _, strong, weak = task.keys
    rows = []
    for name, s, acc in _accuracies(summary, split):
        gap = s["gap"] if split == "test" else s["val_gap"]
        alone = s.get("alone")
        rows.append(
            [
                name,
                points(None if alone else acc["fused"]),
                *(points(acc[m] if alone in (None, m) else None) for m in (strong, weak)),
                *(
                    points(None if gap is None or alone else gap.get(m), signed=True)
                    for m in (strong, weak)
                ),
                ratio_cell(s["time_vs_joint"]),
            ]
        )
    return markdown_table(_columns(task, f"{strong} gap", f"{weak} gap", "time vs joint"), rows)


def plot_runs(
    runs: Sequence[Mapping[str, Any]], path: Path, task: Task, title: str, dpi: int = 100
) -> Path | None:
    """Shares and unimodal test accuracy per epoch, one column per method (first seed);
    ``None`` without matplotlib."""
    try:
        from remix_data.plotting import plot_history
    except ImportError:  # pragma: no cover - plotting is optional
        return None
    names = task.keys[1:]
    histories: dict[str, list[dict[str, Any]]] = {}
    accuracy: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        name = r["method"]["name"]
        if name in histories:
            continue  # first seed only
        histories[name] = list(r["filter_history"])
        accuracy[name] = {
            f"{key} head" if key in names else key: [e["test"][key] for e in r["epochs"]]
            for key in task.keys
        }
    try:
        return plot_history(
            histories, path, accuracy=accuracy, modalities=names, dpi=dpi, title=title
        )
    except ImportError as err:  # matplotlib missing
        print(f"no plot: {err}", file=sys.stderr)
        return None
