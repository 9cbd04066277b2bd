"""The paper's training loss for joint and unimodal batches, written per row.

Warm-up (joint) rows: ``CE(fused) + joint_weight * sum_m CE(head m)`` (the paper:
0.5 each). Remix rows of modality ``m``: ``CE(fused) + gamma * CE(head m)``
(the paper: ``gamma = 1``). :data:`~remix_data.vocabulary.PAD` rows (repeats that
only fill a batch) weigh 0 in every term, and the sum is still divided by the
batch size ``B``, so every real row weighs ``1 / B`` as in a full batch. Every
head stays in the autograd graph with weight 0 on rows of another modality, so
DDP sees the same parameters used at every step and needs no
``find_unused_parameters=True``.

The fused and head logits are stacked and go through one cross-entropy; the
per-row weights come from one gather in a small table (on the host for host
ids), so the loss costs about what the joint loss ``CE(fused) + sum CE(head)``
costs, and never synchronises. A binary head (``[B, 1]`` logits with targets 0
or 1) is trained with the binary cross-entropy of its sigmoid, the two-class case.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_modality_id, check_modality_ids
from ._source import modality_names
from .scores import looks_like_probabilities
from .vocabulary import ALL, PAD
from .watch import loss_step

__all__ = ["remix_loss", "row_weights"]


def row_weights(count: int, joint_weight: float, gamma: float) -> np.ndarray:
    """float64 ``[1 + count, count + 3]``: the weight of each logits row (fused, then heads)
    for a row of each modality id, indexed by the id (negative ids from the end).

    Columns ``0 .. count-1``: a unimodal row; ``count``: an invalid id (NaN: the
    loss shows it); ``count + 1``: :data:`PAD`; ``count + 2``: :data:`ALL`.

    Example:
        >>> row_weights(2, 0.5, 1.0)[:, [0, PAD, ALL]].tolist()
        [[1.0, 0.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 0.5]]
    """
    table = np.zeros((1 + count, count + 3))
    table[0, :count] = table[0, ALL] = 1.0
    table[1:, ALL] = joint_weight
    table[1 + np.arange(count), np.arange(count)] = gamma
    table[:, count] = np.nan
    table[:, PAD] = 0.0  # a repeat that only fills a batch weighs 0 in every term
    return table


@lru_cache(maxsize=64)
def _table(
    count: int, jw: float, gamma: float, batch: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """:func:`row_weights` divided by ``batch``, on ``device`` (made once per configuration).

    The copy to a CUDA device goes through pinned memory without waiting for the device.
    """
    table = torch.as_tensor(row_weights(count, jw, gamma) / batch, dtype=dtype)
    if device.type == "cuda":
        table = table.pin_memory()
    return table.to(device, non_blocking=True)


def _weights(
    modality: torch.Tensor | int,
    batch: int,
    count: int,
    jw: float,
    gamma: float,
    like: torch.Tensor,
) -> torch.Tensor:
    """The ``[1 + count, B]`` (or ``[1 + count, 1]``) weights of the rows, divided by ``B``."""
    if isinstance(modality, bool) or not isinstance(modality, (int, torch.Tensor)):
        raise TypeError(
            f"modality should be an integer or an integer tensor, but got modality={modality!r}"
        )
    table = _table(count, jw, gamma, batch, like.device, like.dtype)
    if isinstance(modality, int):
        m = check_modality_id("modality", modality, count) % (count + 3)
        return table[:, m : m + 1]
    if tuple(modality.shape) not in ((), (batch,)):
        raise ValueError(
            f"modality should have shape [{batch}] like the logits or be one id, "
            f"but got {tuple(modality.shape)}"
        )
    check_modality_ids("modality", modality, count)  # a device tensor is not read
    ids = modality.view(-1)
    if modality.device.type != "cpu":
        ids = ids.clamp(-3, count)  # not read: an invalid id lands on the NaN column
    elif like.device.type != "cpu":
        ids = ids.to(like.device, non_blocking=True)
    return table.index_select(1, ids % (count + 3))


def _refuse_probabilities(logits: list[torch.Tensor], names: tuple[str, ...]) -> None:
    """Refuse host logits that hold probabilities (values are read: on the CPU only)."""
    for name, x in zip(names, logits):
        if looks_like_probabilities(x):
            raise ValueError(
                f"remix_loss got probabilities for {name} (every row in [0, 1], summing to "
                "1), not logits: pass the outputs before softmax"
            )


def _row_losses(logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``[K, B]`` per-row losses of same-shaped ``[B, C]`` logits (BCE for ``C == 1``)."""
    k, (batch, classes) = len(logits), logits[0].shape
    if classes == 1:
        x = torch.cat(logits, dim=1)
        expanded = target[:, None].expand(batch, k).to(x.dtype)
        return F.binary_cross_entropy_with_logits(x, expanded, reduction="none").T
    if logits[0].device.type == "cpu":  # the CPU's softmax is fastest over a strided class dim
        stacked = torch.stack(logits, dim=2)
        return F.cross_entropy(stacked, target[:, None].expand(batch, k), reduction="none").T
    flat = torch.stack(logits).view(k * batch, classes)
    return F.cross_entropy(flat, target.repeat(k), reduction="none").view(k, batch)


def remix_loss(
    fused: torch.Tensor,
    heads: Mapping[str, torch.Tensor],
    target: torch.Tensor,
    modality: torch.Tensor | int,
    modalities: Any,
    *,
    joint_weight: float = 0.5,
    gamma: float = 1.0,
) -> torch.Tensor:
    """Mean over the batch of the paper's per-row loss.

    Args:
        fused: ``[B, C]`` logits of the fused head (``[B, 1]``: binary).
        heads: ``{name: [B, C] logits}`` of the unimodal heads, in any order.
        target: ``[B]`` class indices (0 or 1 for binary logits).
        modality: ``[B]`` active-modality ids from the loader (``ALL`` for joint
            rows, ``PAD`` for repeats that fill a batch), or one id for the
            whole batch (an ``int`` or a 0-d tensor).
        modalities: the :class:`~remix_data.HardSampleFilter` (its names and
            order), or the names in the filter's order.
        joint_weight: weight of every head on joint rows (paper: 0.5).
        gamma: weight of the active head on unimodal rows (paper: 1).

    Logits on the host that hold probabilities (a softmax applied: every row
    in ``[0, 1]`` summing to 1) are refused; on a device they are not read
    (:meth:`~remix_data.HardSampleFilter.update` reports them at the snapshot).

    Example:
        >>> import torch
        >>> fused = torch.zeros(2, 3)
        >>> heads = {"a": torch.zeros(2, 3), "b": torch.zeros(2, 3)}
        >>> loss = remix_loss(fused, heads, torch.tensor([0, 1]), torch.tensor([-1, 0]), ("a", "b"))
        >>> round(loss.item() / torch.log(torch.tensor(3.0)).item(), 4)   # (2 + 2) / 2 CEs
        2.0
        >>> round(remix_loss(fused, heads, torch.tensor([0, 1]), 0, ("a", "b")).item(), 4)
        2.1972
    """
    names = modality_names("modalities", modalities, check_order=True)
    loss_step(modalities, modality)  # warns once if mask='none' features are never masked
    missing = [name for name in names if name not in heads]
    if missing:
        raise ValueError(
            f"heads should hold every modality of modalities={names}; missing {missing}"
        )
    logits = [fused, *(heads[name] for name in names)]
    _refuse_probabilities(logits, ("fused", *names))
    if all(x.shape == fused.shape for x in logits):
        per_row = _row_losses(logits, target)
    else:
        per_row = torch.cat([_row_losses([x], target) for x in logits])
    weights = _weights(modality, fused.shape[0], len(names), joint_weight, gamma, per_row)
    return (per_row * weights).sum()
