"""Per-sample scores that say how hard a sample is for one modality.

Two signals, both computed per sample from one unimodal head's output:

- :func:`confidence` — the paper's score, ``KL(softmax(logits) || uniform)``,
  which equals ``log C - H(p)``: 0 for a uniform prediction, ``log C`` for a
  one-hot one. Low confidence means hard.
- :func:`cross_entropy` — the per-sample loss against the targets
  ("loss-driven" scoring). High loss means hard.

Natural logarithms are used; the paper's reference code uses base 2, which
scales every score by the same constant and changes no decision.

Example:
    >>> import torch
    >>> confidence(torch.zeros(1, 4)).abs().item() < 1e-6     # uniform: no confidence
    True
    >>> round(confidence(torch.tensor([[100.0, 0.0]])).item(), 4)   # one-hot: log 2
    0.6931
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .table import to_device

__all__ = ["confidence", "confidence_numpy", "confidence_torch", "cross_entropy"]

_LOWEST = np.finfo(np.float64).min


def _check_logits(logits: torch.Tensor, name: str) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} should be a tensor of logits, but got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"{name} should have shape [batch, classes] with classes >= 2, "
            f"but got shape {tuple(logits.shape)}"
        )


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """Return ``KL(softmax(logits) || uniform) = log C - H(p)`` per row, as float32.

    Computed as ``sum(e * z) / sum(e) - log(sum(e)) + log C`` with ``z = x - max(x)``
    and ``e = exp(z)``: stable, and on CPU done in float64 numpy (a few
    microseconds for a batch, where torch's small-op overhead costs tens). A
    ``-inf`` logit is a class of probability 0 and counts as such (``0 log 0 =
    0``); a row holding ``NaN`` or ``+inf``, or only ``-inf``, has no
    distribution and gives ``NaN``. On a device the result stays there: nothing
    is copied to the host.

    Args:
        logits: ``[B, C]`` unnormalised scores of one unimodal head, any device.

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
    """:func:`confidence` in torch ops, on the logits' device (the path for accelerators)."""
    x = logits.detach().float()
    # ``-inf`` logits (probability 0) become the lowest finite value, so that e * z = 0.
    z = (x - x.amax(dim=1, keepdim=True)).clamp(min=torch.finfo(torch.float32).min)
    e = z.exp()
    total = e.sum(dim=1)
    return (e * z).sum(dim=1) / total - total.log() + math.log(x.shape[1])


def confidence_numpy(logits: np.ndarray) -> np.ndarray:
    """:func:`confidence` of a ``[B, C]`` numpy array, as float32 ``[B]``."""
    x = np.asarray(logits, dtype=np.float64)
    z = np.maximum(x - x.max(axis=1, keepdims=True), _LOWEST)  # -inf logits: e * z = 0
    e = np.exp(z)
    total = e.sum(axis=1)
    out: np.ndarray = np.einsum("bc,bc->b", e, z) / total - np.log(total) + math.log(x.shape[1])
    return out.astype(np.float32)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Return the per-sample cross-entropy of ``logits`` against ``targets``, as float32.

    Example:
        >>> import torch
        >>> loss = cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
        >>> round(loss.item(), 4)
        0.1269
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
    return F.cross_entropy(
        logits.detach().float(), to_device(targets.detach(), logits.device), reduction="none"
    )
