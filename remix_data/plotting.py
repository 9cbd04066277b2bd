"""Plots of a remix run: assignment shares, mean scores and accuracies per epoch.

Needs matplotlib, the optional ``plot`` extra (``pip install remix-data[plot]``);
it is imported only when :func:`plot_history` runs, so ``import
remix_data.plotting`` works without it.

Example:
    >>> import tempfile, pathlib
    >>> import torch
    >>> from remix_data import ALL, HardSampleFilter
    >>> filt = HardSampleFilter(4, ("audio", "video"))
    >>> for epoch in range(3):
    ...     logits = {"audio": torch.randn(4, 3), "video": torch.randn(4, 3)}
    ...     filt.update(torch.arange(4), logits, modality=ALL)
    ...     _ = filt.snapshot(epoch)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "remix.png"
    >>> plot_history(filt.history, path, accuracy={"fused": [0.5, 0.6, 0.7]}) == path
    True
    >>> path.read_bytes()[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._checks import check_nonnegative_int, check_positive_int

__all__ = ["plot_history"]

History = Sequence[Mapping[str, Any]]
Accuracy = Mapping[str, Sequence[float]]


def _matplotlib() -> tuple[Any, Any]:
    """``(matplotlib, Figure)``; a figure made without pyplot leaves the backend alone."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "remix_data.plotting needs matplotlib, the optional 'plot' extra: "
            "pip install 'remix-data[plot]' (or pip install matplotlib)"
        ) from err
    return matplotlib, Figure


def _check_history(name: str, history: Any) -> list[Mapping[str, Any]]:
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise TypeError(
            f"history {name!r} should be a list of filter.history records, "
            f"but got {type(history).__name__}"
        )
    records = list(history)
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise TypeError(
                f"history {name!r}[{i}] should be a dict record, but got {type(rec).__name__}"
            )
        counts = rec.get("counts")
        if not isinstance(counts, Mapping) or not counts:
            raise ValueError(
                f"history {name!r}[{i}] should have a non-empty 'counts' mapping "
                f"(a HardSampleFilter.history record), but got keys {sorted(rec)}"
            )
        for modality, count in counts.items():
            check_nonnegative_int(f"history {name!r}[{i}]['counts'][{modality!r}]", count)
        if rec.get("filtered") is not None:
            check_nonnegative_int(f"history {name!r}[{i}]['filtered']", rec["filtered"])
    return records


def _check_accuracy(name: str, accuracy: Any) -> dict[str, list[float]]:
    if not isinstance(accuracy, Mapping):
        raise TypeError(
            f"accuracy for {name!r} should map a label to per-epoch values, "
            f"but got {type(accuracy).__name__}"
        )
    out: dict[str, list[float]] = {}
    for label, values in accuracy.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(
                f"accuracy[{label!r}] for {name!r} should be a sequence of numbers, "
                f"but got {type(values).__name__}"
            )
        series = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(
                    f"accuracy[{label!r}] for {name!r} should hold numbers, but got {v!r}"
                )
            series.append(float(v))
        out[str(label)] = series
    return out


def _epochs(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """Each record's epoch, or its position when the record has none."""
    return [r["epoch"] if isinstance(r.get("epoch"), int) else i for i, r in enumerate(records)]


def plot_history(
    history: History | Mapping[str, History],
    path: str | Path,
    *,
    accuracy: Accuracy | Mapping[str, Accuracy] | None = None,
    modalities: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Draw a filter's history (or several runs side by side) to a PNG file.

    One column per run; rows: the share of samples assigned to each modality,
    the mean score per modality (both from :attr:`HardSampleFilter.history`,
    one point per snapshotted epoch), and, when ``accuracy`` is given, the
    accuracies per epoch (epoch ``i`` is the ``i``-th value).

    Args:
        history: one run's ``filter.history`` (a list of records), or
            ``{run name: history}`` for several runs; a run's history may be
            empty (e.g. a joint-training baseline) if accuracies are given for it.
        path: the PNG file to write (parent folders are created).
        accuracy: ``{label: [value per epoch]}`` for one run, or
            ``{run name: {label: [...]}}`` matching ``history``'s runs.
        modalities: which modalities to draw, in this order (default: those in
            the records' ``counts``, in order of first appearance).
        title: the figure's title.
        dpi: resolution of the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError / ValueError: malformed history or accuracy, unknown modality,
            runs that do not match, or nothing to draw.
        ImportError: matplotlib is not installed (the ``plot`` extra).
    """
    many = isinstance(history, Mapping)
    raw: Mapping[str, Any] = history if isinstance(history, Mapping) else {"": history}
    if not raw:
        raise ValueError("history should hold at least one run, but got an empty mapping")
    runs = {str(name): _check_history(str(name), h) for name, h in raw.items()}

    accs: dict[str, dict[str, list[float]]] = {}
    if accuracy is not None:
        if not isinstance(accuracy, Mapping):
            raise TypeError(f"accuracy should be a mapping, but got {type(accuracy).__name__}")
        if many:
            extra_runs = set(map(str, accuracy)) - set(runs)
            if extra_runs:
                raise ValueError(
                    f"accuracy names runs {sorted(extra_runs)} that history lacks; "
                    f"runs: {sorted(runs)}"
                )
            accs = {str(k): _check_accuracy(str(k), v) for k, v in accuracy.items()}
        else:
            accs = {"": _check_accuracy("", accuracy)}
    for name, records in runs.items():
        if not records and not any(accs.get(name, {}).values()):
            raise ValueError(f"run {name!r} has neither history records nor accuracies to plot")

    seen: dict[str, None] = {}
    for records in runs.values():
        for rec in records:
            seen.update(dict.fromkeys(map(str, rec["counts"])))
    names = list(seen) if modalities is None else [str(m) for m in modalities]
    if modalities is not None:
        unknown = [m for m in seen if m not in names]
        missing = [m for m in names if m not in seen]
        if seen and (missing or unknown):
            raise ValueError(
                f"modalities={list(modalities)!r} does not match the history's "
                f"modalities {list(seen)}"
            )
    check_positive_int("dpi", dpi)

    mpl, figure_class = _matplotlib()
    out = Path(path)
    n_rows = 3 if accs else 2
    n_cols = len(runs)
    fig = figure_class(figsize=(3.2 * n_cols + 0.8, 2.3 * n_rows + 0.6))
    axes = fig.subplots(n_rows, n_cols, sharex="col", sharey="row", squeeze=False)
    colors = list(mpl.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"]))
    extra = ["black", *colors[len(names) :]]  # accuracy series that name no modality
    for col, (name, records) in enumerate(runs.items()):
        epochs = _epochs(records)
        share_ax, score_ax = axes[0][col], axes[1][col]
        for k, m in enumerate(names):
            color = colors[k % len(colors)]
            shares, scores = [], []
            for rec in records:
                counts = rec["counts"]
                total = sum(counts.values()) + (rec.get("filtered") or 0)
                shares.append(counts.get(m, 0) / total if total else math.nan)
                value = (rec.get("mean_score") or {}).get(m)
                scores.append(math.nan if value is None else float(value))
            share_ax.plot(epochs, shares, marker=".", color=color, label=m)
            score_ax.plot(epochs, scores, marker=".", color=color, label=m)
        if not records:
            share_ax.text(0.5, 0.5, "no remix epochs", ha="center", va="center",
                          transform=share_ax.transAxes, color="gray")  # fmt: skip
        share_ax.set_title(name or "remix", fontsize=10)
        share_ax.set_ylim(0, 1)
        share_ax.grid(alpha=0.3)
        score_ax.grid(alpha=0.3)
        if accs:
            acc_ax = axes[2][col]
            others = 0
            for label, values in accs.get(name, {}).items():
                # A label naming a modality ("acc head") takes that modality's color.
                owner = next((k for k, m in enumerate(names) if label.startswith(m)), None)
                if owner is None:
                    color = extra[others % len(extra)]
                    others += 1
                else:
                    color = colors[owner % len(colors)]
                acc_ax.plot(range(len(values)), values, color=color, label=label)
            acc_ax.grid(alpha=0.3)
            acc_ax.set_xlabel("epoch")
        else:
            score_ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("assignment share")
    axes[1][0].set_ylabel("mean score")
    axes[0][-1].legend(fontsize=8, loc="best")
    if accs:
        axes[2][0].set_ylabel("accuracy")
        for col in range(n_cols):
            if axes[2][col].get_legend_handles_labels()[0]:
                axes[2][col].legend(fontsize=7, loc="lower right")
                break
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    return out
