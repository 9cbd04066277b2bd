"""Measure the laziness gap: is there anything for remixing to close?

Data Remixing targets *modality laziness*: under joint training a modality's
encoder learns less than it would alone. Whether your data has that gap is an
empirical question, and where there is none remixing has nothing to win. The
check takes three kinds of run of your own model, with the same budget:

1. **alone** -- for each modality, its encoder and head trained alone (loss
   ``CE(head m)``, the other encoders never run);
2. **joint** -- your multimodal training; to see the gap of the classic fused
   baseline, train with ``CE(fused)`` only and fit the unimodal heads as probes
   on *detached* features (``head_m(features_m.detach())``), so that the heads
   measure what the encoders learnt without shaping them;
3. the remix run you are considering.

Evaluate every run's heads on held-out data with :func:`evaluate_heads`; the
gap of a modality is ``alone - head`` (:func:`laziness_gap`); the share of a
gap that a method closes is :func:`share_closed`. A gap within the seed spread
of the alone runs is no gap.

Example:
    >>> alone = {"audio": 0.91, "video": 0.78}
    >>> joint = {"fused": 0.95, "audio": 0.90, "video": 0.70}
    >>> remix = {"fused": 0.95, "audio": 0.89, "video": 0.76}
    >>> {m: round(g, 3) for m, g in laziness_gap(alone, joint).items()}
    {'audio': 0.01, 'video': 0.08}
    >>> closed = share_closed(laziness_gap(alone, joint), laziness_gap(alone, remix), min_gap=0.02)
    >>> closed["audio"], round(closed["video"], 2)
    (None, 0.75)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

__all__ = ["FUSED", "evaluate_heads", "laziness_gap", "share_closed"]

#: Key of the fused head's accuracy in :func:`evaluate_heads`' result.
FUSED = "fused"

Heads = Mapping[str, torch.Tensor]
#: What :func:`evaluate_heads` calls: a batch in, ``heads`` or ``(fused, heads)`` out.
Forward = Callable[[Any], Heads | tuple[torch.Tensor | None, Heads]]


def _check_accuracies(name: str, values: Any) -> Mapping[str, float]:
    if not isinstance(values, Mapping):
        raise TypeError(
            f"{name} should map modality names to accuracies, but got {name}={values!r}"
        )
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name}[{key!r}] should be a number, but got {value!r}")
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name}[{key!r}] should be an accuracy in [0, 1], but got {value!r}")
    return values


def _target(batch: Any, target: str | int | Callable[[Any], torch.Tensor]) -> torch.Tensor:
    y = target(batch) if callable(target) else batch[target]
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"target should select a [B] tensor of class indices from each batch, but got {y!r}"
        )
    if y.dim() != 1:
        raise ValueError(
            f"target should select a [B] tensor of class indices from each batch, but got {y!r}"
        )
    return y


def evaluate_heads(
    forward: Forward,
    batches: Iterable[Any],
    *,
    target: str | int | Callable[[Any], torch.Tensor] = "label",
) -> dict[str, float]:
    """Accuracy of the fused head and of every unimodal head over ``batches``.

    Args:
        forward: called on each batch under ``torch.no_grad()``; returns
            ``(fused_logits, {modality: logits})`` or just ``{modality: logits}``
            (a model trained alone has no fused head; ``fused_logits`` may also
            be ``None``). Put the model in eval mode yourself.
        batches: held-out batches (a ``DataLoader`` over your validation set).
        target: the key or position of the ``[B]`` labels in a batch, or a
            callable returning them.

    Returns:
        ``{"fused": acc, modality: acc, ...}`` as fractions in ``[0, 1]``
        (``"fused"`` only when ``forward`` returned fused logits).

    Example:
        >>> import torch
        >>> batch = {"x": torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "label": torch.tensor([0, 0])}
        >>> evaluate_heads(lambda b: (b["x"], {"a": b["x"], "b": -b["x"]}), [batch])
        {'fused': 0.5, 'a': 0.5, 'b': 0.5}
    """
    correct: dict[str, int] = {}
    total = 0
    with torch.no_grad():
        for batch in batches:
            y = _target(batch, target)
            out = forward(batch)
            if isinstance(out, Mapping):
                fused, heads = None, out
            elif isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
                fused, heads = out
            else:
                raise TypeError(
                    "forward should return {modality: logits} or (fused, {modality: logits}), "
                    f"but got {type(out).__name__}"
                )
            named = dict(heads) if fused is None else {FUSED: fused, **heads}
            if total and set(named) != set(correct):
                raise ValueError(
                    f"forward returned heads {sorted(named)} after {sorted(correct)} on earlier "
                    "batches"
                )
            for key, logits in named.items():
                if logits.dim() != 2 or logits.shape[0] != y.shape[0]:
                    raise ValueError(
                        f"logits of {key!r} should have shape [{y.shape[0]}, C], but got "
                        f"{tuple(logits.shape)}"
                    )
                hits = int((logits.argmax(1) == y.to(logits.device)).sum())
                correct[key] = correct.get(key, 0) + hits
            total += int(y.shape[0])
    if total == 0:
        raise ValueError("batches should hold at least one sample, but were empty")
    return {key: hits / total for key, hits in correct.items()}


def laziness_gap(alone: Mapping[str, float], heads: Mapping[str, float]) -> dict[str, float]:
    """Per modality, ``alone[m] - heads[m]``: how much less the head learnt in the joint run.

    Args:
        alone: accuracy of each modality trained alone (fractions in ``[0, 1]``).
        heads: accuracies of a multimodal run (e.g. :func:`evaluate_heads`'
            result; its ``"fused"`` entry is ignored). Must hold every modality
            of ``alone``.

    Example:
        >>> laziness_gap({"a": 0.9, "b": 0.8}, {"fused": 0.95, "a": 0.9, "b": 0.75})["b"]
        0.05...
    """
    _check_accuracies("alone", alone)
    _check_accuracies("heads", heads)
    missing = [m for m in alone if m not in heads]
    if missing:
        raise ValueError(f"heads should hold every modality of alone; missing {missing}")
    return {m: alone[m] - heads[m] for m in alone}


def share_closed(
    reference: Mapping[str, float],
    gap: Mapping[str, float],
    *,
    min_gap: float = 0.0,
) -> dict[str, float | None]:
    """Per modality, the share of the reference run's gap that another run closes.

    ``(reference[m] - gap[m]) / reference[m]``: 1 closes it fully, 0 leaves it,
    a negative share widens it, above 1 the head beats the alone ceiling.
    ``None`` where the reference gap is at most ``min_gap`` (nothing to close:
    pass the seed spread of the alone runs).

    Example:
        >>> share_closed({"a": 0.0, "b": 0.04}, {"a": 0.01, "b": 0.01})
        {'a': None, 'b': 0.75}
    """
    if isinstance(min_gap, bool) or not isinstance(min_gap, (int, float)):
        raise TypeError(f"min_gap should be a number >= 0, but got min_gap={min_gap!r}")
    if not min_gap >= 0:  # also rejects NaN
        raise ValueError(f"min_gap should be a number >= 0, but got min_gap={min_gap!r}")
    for name, values in (("reference", reference), ("gap", gap)):
        if not isinstance(values, Mapping):
            raise TypeError(f"{name} should map modality names to gaps, but got {name}={values!r}")
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"{name} should hold finite gaps, but got {bad}")
    missing = [m for m in reference if m not in gap]
    if missing:
        raise ValueError(f"gap should hold every modality of reference; missing {missing}")
    out: dict[str, float | None] = {}
    for m, before in reference.items():
        out[m] = None if before <= min_gap else (before - gap[m]) / before
    return out
