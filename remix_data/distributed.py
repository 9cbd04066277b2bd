"""Thin helpers over ``torch.distributed`` used by the filter and the sampler.

Nothing here patches torch; every function only reads the default (or given)
process group, so single-process use never touches ``torch.distributed``
beyond asking whether it is initialised.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from ._checks import check_nonnegative_int, check_positive_int

__all__ = [
    "is_distributed",
    "world_info",
    "world_size",
    "all_reduce_sum",
    "average_written",
]


def _initialised() -> bool:
    return bool(dist.is_available() and dist.is_initialized())


def is_distributed(group: Any = None) -> bool:
    """Whether a process group with more than one rank is initialised."""
    return _initialised() and dist.get_world_size(group) > 1


def world_size(group: Any = None) -> int:
    """Ranks in ``group`` (default: the world), or 1 when ``torch.distributed`` is idle."""
    return int(dist.get_world_size(group)) if _initialised() else 1


def world_info(num_replicas: int | None, rank: int | None, group: Any = None) -> tuple[int, int]:
    """Validate and resolve ``(num_replicas, rank)``; given values win over the group's.

    Without an initialised process group the defaults are one replica, rank 0.
    Raises ``TypeError`` for a non-int and ``ValueError`` for ``num_replicas <
    1``, ``rank < 0`` or ``rank >= num_replicas``, naming the argument.
    """
    if num_replicas is not None:
        check_positive_int("num_replicas", num_replicas)
    if rank is not None:
        check_nonnegative_int("rank", rank)
    initialised = _initialised()
    if num_replicas is None:
        num_replicas = dist.get_world_size(group) if initialised else 1
    if rank is None:
        rank = dist.get_rank(group) if initialised else 0
    if rank >= num_replicas:
        raise ValueError(
            f"rank should lie in [0, num_replicas={num_replicas}), but got rank={rank}"
        )
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


def pack_written(
    values: torch.Tensor, written: torch.Tensor, *, epoch: int | None = None
) -> torch.Tensor:
    """This rank's share of :func:`average_written`: one float32 tensor to sum over ranks.

    ``[sum of written values (NaN -> 0), 1 per written entry, 1, code, code**2]``
    with ``code`` derived from ``epoch``; summed over the ranks, it is what
    :func:`average_packed` turns into the averaged table.
    """
    size = values.numel()
    packed = torch.empty(2 * size + 3, dtype=torch.float32)
    total = packed[:size].view(values.shape)
    count = packed[size : 2 * size].view(values.shape)
    count.copy_(written)
    # Branch-free masking (much faster than ``where`` on a random mask): the
    # table holds only finite values or NaN, NaN -> 0, then keep written entries.
    torch.nan_to_num(values, nan=0.0, out=total).mul_(count)
    code = 0 if epoch is None else epoch % 64 + 1
    packed[2 * size :] = torch.tensor([1.0, code, code * code], dtype=torch.float32)
    return packed


def average_packed(
    packed: torch.Tensor, values: torch.Tensor, *, epoch: int | None = None
) -> torch.Tensor:
    """Apply the ranks' summed :func:`pack_written` tensors to ``values`` (in place).

    Checks that every rank packed the same ``epoch`` (``RuntimeError``
    otherwise); every entry written on some rank becomes the mean of the
    written values, every other entry keeps its value. ``packed`` is consumed.
    Returns the bool mask of entries written on some rank.
    """
    size = values.numel()
    total = packed[:size].view(values.shape)
    count = packed[size : 2 * size].view(values.shape)
    ranks, codes, squares = packed[2 * size :].tolist()
    # All codes are equal iff ranks * sum(c^2) == sum(c)^2 (Cauchy-Schwarz); the
    # sums are exact in float32 for any realistic world size.
    if ranks * squares != codes * codes:
        raise RuntimeError(
            f"HardSampleFilter.sync: the ranks synced different epochs (this rank: "
            f"epoch={epoch}); call set_epoch / snapshot with the same epoch on every rank"
        )
    seen = count > 0
    total.div_(count.clamp_(min=1))
    torch.where(seen, total, values, out=values)
    return seen


def average_written(
    values: torch.Tensor, written: torch.Tensor, group: Any = None, *, epoch: int | None = None
) -> torch.Tensor:
    """Average, over the ranks that wrote it, every entry of ``values`` written on some rank.

    ``values`` (float32, finite or ``NaN``) and ``written`` (bool, same shape)
    are this rank's table and the entries it wrote since the last call. One
    ``all_reduce`` of a packed float32 tensor (4 + 4 bytes per entry,
    :func:`pack_written`): the sum of the values the ranks wrote and the number
    of ranks that wrote each entry (a small count, exact in float32), plus a
    three-number header checking that every rank passed the same ``epoch``. No
    index travels: entries are matched by position. An entry written on some
    rank becomes the mean of the written values, in place; every other entry
    keeps its value (:func:`average_packed`). Returns the bool mask of entries
    written on some rank.

    If the ranks pass different epochs (compared modulo 64), every rank raises
    a ``RuntimeError`` after the collective, so none is left waiting.
    """
    packed = pack_written(values, written, epoch=epoch)
    all_reduce_sum(packed, group)
    return average_packed(packed, values, epoch=epoch)
