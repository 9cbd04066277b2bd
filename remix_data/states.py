"""Saved states that cannot be loaded wrongly: checks, digests and the rank gather.

:class:`~remix_data.HardSampleFilter` and :class:`~remix_data.ReassemblingBatchSampler`
keep their ``state_dict`` / ``load_state_dict`` methods; what those share lives
here:

- :func:`check_config`: a state records the configuration that shapes the plan;
  loading it into an object configured otherwise raises a ``ValueError`` naming
  the key and both values.
- :func:`state_tensor`: a saved table must have the exact dtype, shape and
  device it was saved with (a truncated or retyped table is rejected before
  anything changes, not met as a crash later).
- :func:`gather_ranks`: under ``torch.distributed`` the entries written since
  the last score sync differ between ranks; one ``all_gather`` puts every
  rank's table into the state, so the one checkpoint a framework writes from
  rank 0 restores every rank exactly.
- :func:`snapshot_rule`: a sampler state and a filter state restored together
  must come from the same point of the run (their epochs must agree).

Every state holds only tensors, numbers, strings, lists, dicts and ``None``,
so ``torch.load(..., weights_only=True)`` reads it.

Example:
    >>> import torch
    >>> labels_digest(torch.tensor([0, 1, 1])) == labels_digest([0, 1, 1])
    True
    >>> check_config({"smoothing": 0.5}, {"smoothing": 0.0}, ("smoothing",), "filter")
    Traceback (most recent call last):
    ...
    ValueError: state was saved with smoothing=0.5, but this filter has smoothing=0.0
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["check_config", "gather_ranks", "labels_digest", "snapshot_rule", "state_tensor"]

#: Checks a filter's ``snapshot_epoch`` against a restored sampler position;
#: returns an error message, or ``None`` when the two agree.
PairCheck = Callable[[int | None], str | None]


def labels_digest(labels: Any) -> str | None:
    """A short, stable digest of per-sample class labels (``None`` for no labels)."""
    if labels is None:
        return None
    values = torch.as_tensor(labels).to(torch.int64).contiguous()
    return "sha256:" + hashlib.sha256(values.numpy().tobytes()).hexdigest()[:16]


def check_config(
    state: Mapping[str, Any], mine: Mapping[str, Any], keys: Sequence[str], owner: str
) -> None:
    """Raise ``ValueError`` unless ``state`` has every key of ``keys`` with ``mine``'s value.

    Sequences compare element by element (a list saved for a tuple matches);
    ``True`` never matches ``1``. ``owner`` names the object in the message.
    """
    for key in keys:
        if key not in state:
            raise ValueError(
                f"state should contain {key!r} (states saved before remix_data recorded it "
                f"cannot be checked); got keys {sorted(state)}"
            )
        theirs, ours = state[key], mine[key]
        if isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)):
            same = len(theirs) == len(ours) and all(
                _same(a, b) for a, b in zip(theirs, ours, strict=True)
            )
        else:
            same = _same(theirs, ours)
        if not same:
            raise ValueError(
                f"state was saved with {key}={theirs!r}, but this {owner} has {key}={ours!r}"
            )


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and (isinstance(a, bool) == isinstance(b, bool))


def state_tensor(
    state: Mapping[str, Any], key: str, shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """``state[key]``, checked to be a CPU tensor of exactly ``shape`` and ``dtype``."""
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"state[{key!r}] should be a tensor, but got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(
            f"state[{key!r}] should have shape {shape}, but got shape {tuple(value.shape)} "
            "(a truncated or foreign table)"
        )
    if value.dtype != dtype:
        raise ValueError(f"state[{key!r}] should have dtype {dtype}, but got {value.dtype}")
    if value.device.type != "cpu":
        raise ValueError(
            f"state[{key!r}] should be on the CPU, but is on {value.device} "
            "(load the checkpoint with torch.load(..., map_location='cpu'))"
        )
    return value.detach()


# ------------------------------------------------------------------ gathering
def _all_gather(tensor: torch.Tensor, group: Any) -> torch.Tensor:
    """``[world, *tensor.shape]``: every rank's ``tensor`` (one ``all_gather``)."""
    world = dist.get_world_size(group)
    device = tensor.device
    if dist.get_backend(group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    local = tensor.to(device)
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local, group=group)
    return torch.stack(parts).to(tensor.device)


def gather_ranks(
    values: torch.Tensor,
    fresh: torch.Tensor,
    scored: torch.Tensor,
    ignored: int,
    snapshot_epoch: int | None,
    group: Any,
    duplicates: int = 0,
) -> dict[str, Any]:
    """Every rank's per-rank table, gathered on every rank (a collective).

    Returns ``{"ignored": int64 [W], "duplicates": int64 [W], "values":
    float32 [W, M, N] | None, "fresh": bool [W, M, N] | None, "scored": bool
    [W, N] | None}``. A first,
    small ``all_gather`` compares the ranks' snapshot epochs (every rank raises
    ``RuntimeError`` if they differ, so none is left waiting) and counts the
    entries written since the last sync; when no rank holds one, every rank's
    table is the same and the tables are left out (``None``). Otherwise one
    more ``all_gather`` carries each rank's values, fresh and scored flags
    packed into one byte tensor (5 bytes per sample and modality, plus one per
    sample).
    """
    code = -1 if snapshot_epoch is None else snapshot_epoch
    header = torch.tensor([int(fresh.sum()), ignored, code, duplicates], dtype=torch.int64)
    heads = _all_gather(header, group)
    codes = heads[:, 2].tolist()
    if len(set(codes)) > 1:
        epochs = [None if c < 0 else c for c in codes]
        raise RuntimeError(
            "HardSampleFilter.state_dict: the ranks hold snapshots of different epochs "
            f"({epochs}); take the state on every rank at the same point of the loop"
        )
    out: dict[str, Any] = {"ignored": heads[:, 1].clone(), "duplicates": heads[:, 3].clone()}
    if int(heads[:, 0].sum()) == 0:
        return {**out, "values": None, "fresh": None, "scored": None}
    m, n = values.shape
    packed = torch.cat(
        (
            values.contiguous().view(torch.uint8).reshape(-1),
            fresh.to(torch.uint8).reshape(-1),
            scored.to(torch.uint8),
        )
    )
    rows = _all_gather(packed, group)
    w, size = rows.shape[0], m * n
    return {
        **out,
        "values": rows[:, : 4 * size].contiguous().view(torch.float32).reshape(w, m, n),
        "fresh": rows[:, 4 * size : 5 * size].to(torch.bool).reshape(w, m, n),
        "scored": rows[:, 5 * size :].to(torch.bool),
    }


# --------------------------------------------------------------------- pairing
def snapshot_rule(epoch: int, yielded: int, batches: int | None, warmup_epochs: int) -> PairCheck:
    """The filter snapshot epochs that agree with a sampler resumed at ``(epoch, yielded)``.

    A remix epoch that already handed out batches was planned from that epoch's
    snapshot, so the filter must hold it. A filter snapshot of a later epoch is
    only right when the sampler's epoch was fully handed out and the loop then
    snapshotted the next one (``epoch + 1``). Anything else pairs states from
    different points of the run.
    """
    remix = epoch >= warmup_epochs
    started = yielded > 0
    finished = batches is not None and yielded == batches
    where = f"epoch {epoch} at batch {yielded}" + ("" if batches is None else f" of {batches}")

    def check(snapshot_epoch: int | None) -> str | None:
        if snapshot_epoch is None:
            ok = not (remix and started)
        elif snapshot_epoch > epoch:
            ok = finished and snapshot_epoch == epoch + 1
        else:
            ok = not (remix and started) or snapshot_epoch == epoch
        if ok:
            return None
        held = "no snapshot"
        if snapshot_epoch is not None:
            held = f"the snapshot of epoch {snapshot_epoch}"
        if remix and started:
            need = f"the snapshot of epoch {epoch}" + (f" or {epoch + 1}" if finished else "")
        else:
            need = f"no snapshot after epoch {epoch + 1 if finished else epoch}"
        return (
            f"the sampler's state resumes {where}, which needs {need}, but the filter's "
            f"state holds {held}: restore the filter's state from the same checkpoint "
            "(HardSampleFilter.load_state_dict) as the sampler's"
        )

    return check
