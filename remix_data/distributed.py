"""Thin helpers over ``torch.distributed`` used by the filter and the sampler.

Nothing here patches torch; every function only reads the default (or given)
process group, so single-process use never touches ``torch.distributed``
beyond asking whether it is initialised.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "world_info", "world_size", "all_reduce_sum"]


def _initialised() -> bool:
    return bool(dist.is_available() and dist.is_initialized())


def is_distributed(group: Any = None) -> bool:
    """Whether a process group with more than one rank is initialised."""
    return _initialised() and dist.get_world_size(group) > 1


def world_size(group: Any = None) -> int:
    """Ranks in ``group`` (default: the world), or 1 when ``torch.distributed`` is idle."""
    return int(dist.get_world_size(group)) if _initialised() else 1


def world_info(num_replicas: int | None, rank: int | None, group: Any = None) -> tuple[int, int]:
    """Resolve ``(num_replicas, rank)``: given values win, else ``torch.distributed``'s.

    Without an initialised process group the defaults are one replica, rank 0.
    """
    initialised = _initialised()
    if num_replicas is None:
        num_replicas = dist.get_world_size(group) if initialised else 1
    if rank is None:
        rank = dist.get_rank(group) if initialised else 0
    return num_replicas, rank


def all_reduce_sum(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Sum ``tensor`` in place over the ranks of ``group``; a no-op on one process.

    One ``all_reduce`` call. The tensor is moved to the backend's device (the
    current CUDA device for NCCL) and back; gloo reduces CPU tensors directly.
    """
    if not is_distributed(group):
        return tensor
    if dist.get_backend(group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
        moved = tensor.to(device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM, group=group)
        tensor.copy_(moved.cpu())
    else:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor
