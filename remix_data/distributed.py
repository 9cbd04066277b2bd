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


#: Epochs the sync check carries exactly (float32 integers).
_MAX_EPOCH = 2**24 - 2


def pack_written(
    values: torch.Tensor,
    written: torch.Tensor,
    *,
    epoch: int | None = None,
    rank: int = 0,
    world: int = 1,
) -> torch.Tensor:
    """This rank's share of :func:`average_written`: one float32 tensor to sum over ranks.

    ``[sum of written values (NaN -> 0), 1 per written entry, epochs]``: the
    last ``world`` numbers hold ``epoch + 1`` in slot ``rank`` (0 for no epoch)
    and 0 elsewhere, so the sum over the ranks holds every rank's epoch. Summed
    over the ranks, it is what :func:`average_packed` turns into the averaged table.
    """
    if epoch is not None and not 0 <= epoch <= _MAX_EPOCH:
        raise ValueError(f"epoch should lie in [0, {_MAX_EPOCH}], but got epoch={epoch}")
    size = values.numel()
    packed = torch.zeros(2 * size + world, dtype=torch.float32)
    total = packed[:size].view(values.shape)
    count = packed[size : 2 * size].view(values.shape)
    count.copy_(written)
    # Branch-free masking (much faster than ``where`` on a random mask): the
    # table holds only finite values or NaN, NaN -> 0, then keep written entries.
    torch.nan_to_num(values, nan=0.0, out=total).mul_(count)
    packed[2 * size + rank] = 0 if epoch is None else epoch + 1
    return packed


def average_packed(
    packed: torch.Tensor, values: torch.Tensor, *, epoch: int | None = None
) -> torch.Tensor:
    """Apply the ranks' summed :func:`pack_written` tensors to ``values`` (in place).

    Checks that every rank packed the same epoch (``RuntimeError`` naming each
    rank's epoch otherwise); every entry written on some rank becomes the mean
    of the written values, every other entry keeps its value. ``packed`` is
    consumed. Returns the bool mask of entries written on some rank.
    """
    size = values.numel()
    total = packed[:size].view(values.shape)
    count = packed[size : 2 * size].view(values.shape)
    epochs = [None if e == 0 else int(e) - 1 for e in packed[2 * size :].tolist()]
    if len(set(epochs)) > 1:
        raise RuntimeError(
            f"HardSampleFilter.sync: the ranks synced different epochs ({epochs}, by rank; "
            f"this rank: epoch={epoch}); call set_epoch / snapshot with the same epoch on "
            "every rank"
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
    of ranks that wrote each entry (a small count, exact in float32), plus one
    slot per rank holding that rank's ``epoch``. No index travels: entries are
    matched by position. An entry written on some rank becomes the mean of the
    written values, in place; every other entry keeps its value
    (:func:`average_packed`). Returns the bool mask of entries written on some
    rank.

    If the ranks pass different epochs, every rank raises a ``RuntimeError``
    naming them after the collective, so none is left waiting.
    """
    rank = dist.get_rank(group) if is_distributed(group) else 0
    packed = pack_written(values, written, epoch=epoch, rank=rank, world=world_size(group))
    all_reduce_sum(packed, group)
    return average_packed(packed, values, epoch=epoch)
