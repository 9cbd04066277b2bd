"""Per-sample scores that say how hard a sample is for one modality.

Two signals, both computed per sample from one unimodal head's output:

- :func:`confidence` — the paper's score, ``KL(softmax(logits) || uniform)``,
  which equals ``log C - H(p)``: 0 for a uniform prediction, ``log C`` for a
  one-hot one. Low confidence means hard.
- :func:`cross_entropy` — the per-sample loss against the targets
  ("loss-driven" scoring). High loss means hard.

Natural logarithms are used; the paper's reference code uses base 2, which
scales every score by the same constant and changes no decision. A binary head
(``[B, 1]``, one sigmoid logit ``x``) is the two-class case with logits
``[0, x]``: its confidence is that of ``sigmoid(x)``, its loss the binary
cross-entropy with targets 0 or 1.

:func:`score_outputs` turns the ``outputs`` of one
:meth:`~remix_data.HardSampleFilter.update` call into a ``[k, B]`` table of
scores, on the host or on the outputs' device: the one place where outputs
become scores.

Example:
    >>> import torch
    >>> confidence(torch.zeros(1, 4)).abs().item() < 1e-6     # uniform: no confidence
    True
    >>> round(confidence(torch.tensor([[100.0, 0.0]])).item(), 4)   # one-hot: log 2
    0.6931
    >>> round(confidence(torch.tensor([[-100.0]])).item(), 4)   # binary head, sure of 0
    0.6931
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "confidence",
    "confidence_numpy",
    "confidence_torch",
    "cross_entropy",
    "looks_like_probabilities",
    "score_outputs",
    "sum_tolerance",
]

_LOWEST = np.finfo(np.float64).min
#: Scores a device batch: ``(heads [k, B, C] or [k, B], targets or None, kind)`` -> ``[k, B]``.
DeviceScorer = Callable[[Sequence[torch.Tensor], "torch.Tensor | None", str], torch.Tensor]


def _check_logits(logits: torch.Tensor, name: str) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} should be a tensor of logits, but got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] < 1:
        raise ValueError(
            f"{name} should have shape [batch, classes] (classes >= 2, or 1 for a binary "
            f"head), but got shape {tuple(logits.shape)}"
        )


def two_class(logits: torch.Tensor) -> torch.Tensor:
    """A binary head's ``[B, 1]`` logits as the two-class ``[B, 2]`` logits ``[0, x]``."""
    if logits.shape[1] != 1:
        return logits
    return torch.cat((torch.zeros_like(logits), logits), dim=1)


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """Return ``KL(softmax(logits) || uniform) = log C - H(p)`` per row, as float32.

    A ``-inf`` logit is a class of probability 0 and counts as such (``0 log 0 =
    0``); a row holding ``NaN`` or ``+inf``, or only ``-inf``, has no
    distribution and gives ``NaN``. On the CPU the work runs in float64 numpy;
    on a device it stays there (:func:`confidence_torch`): nothing is copied
    to the host.

    Args:
        logits: ``[B, C]`` unnormalised scores of one unimodal head (``[B, 1]``:
            a binary head), any device.

    Returns:
        ``[B]`` tensor on the same device, each value in ``[0, log C]``.
    """
    _check_logits(logits, "logits")
    x = logits.detach()
    if x.device.type == "cpu":
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # numpy has no bfloat16
        return torch.from_numpy(confidence_numpy(x.numpy()))
    return confidence_torch(x)


def confidence_torch(logits: torch.Tensor) -> torch.Tensor:
    """:func:`confidence` in torch ops on the logits' device: ``log C + sum p log p``.

    Example:
        >>> round(confidence_torch(torch.tensor([[0.0, float("-inf")]])).item(), 4)
        0.6931
    """
    x = two_class(logits)
    p = torch.softmax(x, dim=1, dtype=torch.float32)
    out: torch.Tensor = torch.special.xlogy(p, p).sum(dim=1).add_(math.log(x.shape[1]))
    return out


def confidence_numpy(logits: np.ndarray) -> np.ndarray:
    """:func:`confidence` of a ``[B, C]`` numpy array, as float32 ``[B]``.

    Computed as ``sum(e * z) / sum(e) - log(sum(e)) + log C`` with ``z = x - max(x)``
    and ``e = exp(z)``, in float64, on the transposed ``[C, B]`` array: every
    reduction then runs across rows, vectorised over the batch (reducing the few
    classes of each row one row at a time costs several times more).
    """
    x = np.asarray(logits, dtype=np.float64)
    if x.shape[1] == 1:
        x = np.concatenate((np.zeros_like(x), x), axis=1)
    xt = np.ascontiguousarray(x.T)
    z = np.maximum(xt - xt.max(axis=0), _LOWEST)  # -inf logits: e * z = 0
    e = np.exp(z)
    total = e.sum(axis=0)
    out: np.ndarray = (e * z).sum(axis=0) / total - np.log(total) + math.log(x.shape[1])
    return out.astype(np.float32)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Return the per-sample cross-entropy of ``logits`` against ``targets``, as float32.

    A binary head (``[B, 1]``) takes targets 0 or 1: the binary cross-entropy
    of its sigmoid.

    Example:
        >>> import torch
        >>> loss = cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
        >>> binary = cross_entropy(torch.tensor([[-2.0]]), torch.tensor([0]))  # sigmoid(-2) vs 0
        >>> round(loss.item(), 4), round(binary.item(), 4)
        (0.1269, 0.1269)
    """
    _check_logits(logits, "logits")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(
            f"targets should be a tensor of shape [{logits.shape[0]}] matching the logits, "
            f"but got {type(targets).__name__}"
        )
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"targets should be a tensor of shape [{logits.shape[0]}] matching the logits, "
            f"but got {tuple(targets.shape)!r}"
        )
    x = two_class(logits.detach())
    if targets.device != x.device:
        targets = targets.to(x.device, non_blocking=True)
    return F.cross_entropy(x.float(), targets.detach(), reduction="none")


#: Fewest rows of a batch judged by :func:`looks_like_probabilities` (a row or two of
#: small logits can sum to 1 by chance).
PROBABILITY_ROWS = 4


def looks_like_probabilities(output: torch.Tensor | np.ndarray) -> bool:
    """Whether host ``output`` (``[B, C]``, ``B >= 4``, ``C >= 2``) holds probability rows.

    Probability rows lie in ``[0, 1]`` and sum to 1. Logits never do (a softmax
    applied in the model does): scoring or training on probabilities gives a
    wrong score and a wrong loss. Reads the values: for host tensors only.

    Example:
        >>> looks_like_probabilities(torch.softmax(torch.randn(4, 3), 1))
        True
    """
    if isinstance(output, torch.Tensor):
        if output.dim() != 2 or output.device.type != "cpu":
            return False
        x = output.detach()
        tolerance = sum_tolerance(x.dtype)
        values = (x if x.dtype in (torch.float32, torch.float64) else x.float()).numpy()
    else:
        values = output
        tolerance = 1e-3  # numpy has no bfloat16, and float16's epsilon is below 1e-3
    if values.ndim != 2 or values.shape[1] < 2 or values.shape[0] < PROBABILITY_ROWS:
        return False
    if values.min() < 0.0 or values.max() > 1.0:  # the usual case ends here
        return False
    return bool(np.abs(values.sum(axis=1) - 1.0).max() <= tolerance)


def sum_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a row of probabilities stored in ``dtype`` may sum: ``1e-3``, or the
    dtype's epsilon where that is larger (bfloat16 keeps 8 bits: rows sum up to about 2e-3
    off).

    Example:
        >>> sum_tolerance(torch.float32), sum_tolerance(torch.bfloat16)
        (0.001, 0.0078125)
    """
    return max(1e-3, torch.finfo(dtype).eps) if dtype.is_floating_point else 1e-3


def describe_nonfinite(name: str, output: torch.Tensor, row: int, value: float) -> str:
    """The message of a non-finite score of ``outputs[name]``, naming what its logits hold."""
    cause = ""
    if output.dim() == 2:
        logits = output[row].detach().float()
        if bool(logits.isnan().any()):
            cause = f": row {row}'s logits hold NaN"
        elif bool(logits.isposinf().any()):
            cause = f": row {row}'s logits hold +inf"
        elif bool(logits.isneginf().all()):
            cause = f": row {row}'s logits are all -inf"
    return (
        f"outputs[{name!r}] gave a non-finite score ({value}{cause}); "
        "pass nonfinite='ignore' to skip such entries"
    )


def check_outputs(outputs: Any, score: str, batch: int, written: Sequence[str] = ()) -> None:
    """Check that ``outputs`` maps names to ``[B, C]`` logits (or ``[B]`` losses).

    The ``written`` heads (those a call writes) must not hold probabilities.
    """
    if not isinstance(outputs, Mapping):
        raise TypeError(
            f"outputs should map modality names to tensors, but got {type(outputs).__name__}"
        )
    for name, output in outputs.items():
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"outputs[{name!r}] should be a tensor, but got {type(output).__name__}"
            )
        logits = output.dim() == 2 and output.shape[0] == batch and output.shape[1] >= 1
        if not (logits or (output.dim() == 1 and output.shape[0] == batch and score == "loss")):
            expected = "[B, C] logits or [B] losses" if score == "loss" else "[B, C] logits"
            raise ValueError(
                f"outputs[{name!r}] should have shape {expected} with B={batch}, "
                f"but got shape {tuple(output.shape)}"
            )
        if name in written and looks_like_probabilities(output):
            raise ValueError(
                f"outputs[{name!r}] holds probabilities (every row in [0, 1], summing to 1), "
                "not logits: pass the head's output before softmax"
            )


def checked_targets(
    outputs: Sequence[torch.Tensor], score: str, targets: Any
) -> torch.Tensor | None:
    """``targets`` as a tensor; ``ValueError`` when logits are scored by their loss without them."""
    if score == "loss" and targets is None and any(o.dim() == 2 for o in outputs):
        raise ValueError("targets are needed to score logits with score='loss'")
    return None if targets is None else torch.as_tensor(targets)


def score_outputs(
    outputs: Sequence[torch.Tensor],
    score: str,
    targets: Any = None,
    *,
    scorer: DeviceScorer | None = None,
) -> torch.Tensor:
    """Scores of same-batch ``outputs`` (checked by :func:`check_outputs`) as float32 ``[k, B]``.

    On the CPU the result is computed in numpy; on a device it stays on the
    outputs' device (``scorer``, e.g. the fused Triton kernel, or torch ops).

    Args:
        outputs: ``[B, C]`` logits (``[B, 1]``: binary) or, with ``score="loss"``,
            ``[B]`` per-sample losses, all on one device.
        score: ``"confidence"`` or ``"loss"``.
        targets: ``[B]`` class indices, needed for logits when ``score="loss"``.
        scorer: the device scorer (default :func:`score_torch`).
    """
    targets = checked_targets(outputs, score, targets)
    device = outputs[0].device
    with torch.no_grad():
        if device.type != "cpu" or scorer is not None:
            return (scorer or score_torch)(outputs, targets, score)
        first = outputs[0]
        same = all(o.shape == first.shape and o.dtype == first.dtype for o in outputs)
        if len(outputs) > 1 and score == "confidence" and first.dim() == 2 and same:
            return confidence(torch.cat(list(outputs))).view(len(outputs), -1)
        return torch.stack([_score_host(o, score, targets) for o in outputs])


def _score_host(output: torch.Tensor, score: str, targets: torch.Tensor | None) -> torch.Tensor:
    if output.dim() == 1:
        return output.detach().float()
    if score == "confidence":
        return confidence(output)
    assert targets is not None
    return cross_entropy(output, targets)


def score_torch(
    outputs: Sequence[torch.Tensor], targets: torch.Tensor | None, score: str
) -> torch.Tensor:
    """:func:`score_outputs` on a device in torch ops: one batched computation for all heads.

    Same-shaped heads are concatenated (one op) and scored together; heads of
    different shapes are scored one by one. Call it under ``torch.no_grad()``.
    """
    first = outputs[0]
    if any(o.shape != first.shape or o.dtype != first.dtype for o in outputs):
        return torch.stack([score_torch([o], targets, score)[0] for o in outputs])
    k, batch = len(outputs), first.shape[0]
    x = outputs[0] if k == 1 else torch.cat(list(outputs))
    if x.dim() == 1:
        return x.float().view(k, batch)
    if score == "confidence":
        return confidence_torch(x).view(k, batch)
    assert targets is not None
    if targets.device != x.device:
        targets = targets.to(x.device, non_blocking=True)
    repeated = targets if k == 1 else targets.repeat(k)
    x = two_class(x)
    return F.cross_entropy(x.float(), repeated, reduction="none").view(k, batch)
