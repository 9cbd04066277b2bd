"""The paper's training loss for joint and unimodal batches, written per row.

Warm-up (joint) rows: ``CE(fused) + joint_weight * sum_m CE(head m)`` (the paper:
0.5 each). Remix rows of modality ``m``: ``CE(fused) + gamma * CE(head m)``
(the paper: ``gamma = 1``). Every head stays in the autograd graph with weight
0 on rows of another modality, so DDP sees the same parameters used at every
step and needs no ``find_unused_parameters=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ._source import modality_names, modality_rows
from .vocabulary import ALL, PAD
from .watch import loss_step

__all__ = ["remix_loss"]


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
        fused: ``[B, C]`` logits of the fused head.
        heads: ``{name: [B, C] logits}`` of the unimodal heads.
        target: ``[B]`` class indices.
        modality: ``[B]`` active-modality ids from the loader (``ALL`` for joint
            rows), or one id for the whole batch (an ``int`` or a 0-d tensor).
        modalities: the :class:`~remix_data.HardSampleFilter` (its names and
            order), or the names in the filter's order.
        joint_weight: weight of every head on joint rows (paper: 0.5).
        gamma: weight of the active head on unimodal rows (paper: 1).

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
    names = modality_names("modalities", modalities)
    loss_step(modalities, modality)  # warns once if mask='none' features are never masked
    missing = [name for name in names if name not in heads]
    if missing:
        raise ValueError(
            f"heads should hold every modality of modalities={names}; missing {missing}"
        )
    modality = modality_rows("modality", modality, fused.shape[0], len(names), fused.device)
    loss = F.cross_entropy(fused, target, reduction="none")
    joint = (modality == ALL).to(fused.dtype)
    for m, name in enumerate(names):
        weight = joint_weight * joint + gamma * (modality == m).to(fused.dtype)
        loss = loss + weight * F.cross_entropy(heads[name], target, reduction="none")
    return (loss * (modality != PAD).to(fused.dtype)).mean()  # PAD rows weigh 0
