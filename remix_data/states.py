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
- :class:`Snapshots`: a filter's frozen epoch assignment, its loss weights and
  its history, with their own ``state_dict``;
- :func:`snapshot_rule` and :class:`Pairing`: a sampler state and a filter state
  restored together must come from the same point of the run (their epochs
  must agree); the sampler hands its check to the filter's ``pairing``.

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

import copy
import hashlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from ._checks import check_nonnegative_int, state_tensor
from .alerts import RemixWarning
from .distributed import is_distributed, world_size
from .vocabulary import FILTERED

__all__ = [
    "FILTER_CONFIG",
    "FILTER_KEYS",
    "FilterState",
    "Pairing",
    "own_rank",
    "Snapshots",
    "check_config",
    "gather_ranks",
    "labels_digest",
    "snapshot_rule",
    "state_tensor",
]

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


def own_rank(ranks: Any, rank: int, world: int, shape: Sequence[int]) -> dict[str, Any]:
    """Rank ``rank``'s entries of a gathered ``state['ranks']`` (see :func:`gather_ranks`), checked.

    Returns ``ignored`` and ``duplicates`` and, unless nothing was written
    since the last sync (``ranks["values"] is None``), ``values``, ``fresh``
    and ``scored`` of ``shape`` ``(M, N)``.
    """
    if not isinstance(ranks, Mapping):
        raise TypeError(
            f"state['ranks'] should be a mapping or None, but got {type(ranks).__name__}"
        )
    for key in ("ignored", "duplicates", "values", "fresh", "scored"):
        if key not in ranks:
            raise ValueError(f"state['ranks'] should contain {key!r}; got {sorted(ranks)}")
    out: dict[str, Any] = {}
    for key in ("ignored", "duplicates"):
        counts = state_tensor(ranks, key, (world,), torch.int64)
        if bool((counts < 0).any()):
            raise ValueError(f"state['ranks'][{key!r}] should be non-negative, got {counts}")
        out[key] = int(counts[rank])
    if ranks["values"] is None:  # nothing was written since the last sync
        return out
    m, n = shape
    out["values"] = state_tensor(ranks, "values", (world, m, n), torch.float32)[rank]
    out["fresh"] = state_tensor(ranks, "fresh", (world, m, n), torch.bool)[rank]
    out["scored"] = state_tensor(ranks, "scored", (world, n), torch.bool)[rank]
    return out


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


class Pairing:
    """The check a restored sampler leaves on its filter until the filter's snapshot is known.

    The sampler's ``load_state_dict`` calls :meth:`expect`; the filter calls
    :meth:`check` in its ``load_state_dict`` (and then :meth:`restored_now`) and
    :meth:`confirm` at its next snapshot, so the two states can be loaded in
    either order, and a filter never restored is checked at its snapshot.

    Example:
        >>> pairing = Pairing()
        >>> pairing.expect(snapshot_rule(3, 2, 5, warmup_epochs=0), None)
        >>> pairing.confirm(None)
        Traceback (most recent call last):
        ...
        ValueError: the sampler's state resumes epoch 3 at batch 2 of 5, which needs the \
snapshot of epoch 3, but the filter's state holds no snapshot: restore the filter's state \
from the same checkpoint (HardSampleFilter.load_state_dict) as the sampler's
    """

    def __init__(self) -> None:
        self.pending: PairCheck | None = None
        #: Whether the filter was restored from a state (the sampler then checks at once).
        self.restored = False

    def expect(self, check: PairCheck, snapshot_epoch: int | None) -> None:
        """A sampler was restored: run ``check`` now if the filter was, else keep it."""
        if self.restored:
            _raise(check(snapshot_epoch))
        else:
            self.pending = check

    def check(self, snapshot_epoch: int | None) -> None:
        """Raise ``ValueError`` if a waiting check refuses ``snapshot_epoch`` (it keeps waiting)."""
        if self.pending is not None:
            _raise(self.pending(snapshot_epoch))

    def restored_now(self) -> None:
        """The filter loaded a state that passed :meth:`check`."""
        self.pending, self.restored = None, True

    def confirm(self, snapshot_epoch: int | None) -> None:
        """At a snapshot: run the waiting check once."""
        check, self.pending = self.pending, None
        if check is not None:
            _raise(check(snapshot_epoch))


def _raise(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


class Snapshots:
    """A filter's frozen assignment of one epoch, its loss weights and one record per epoch.

    Example:
        >>> snaps = Snapshots(3, 2)
        >>> snaps.freeze(4, torch.tensor([0, 1, -1], dtype=torch.int8), None, {"epoch": 4})
        >>> sorted(snaps.state_dict()), snaps.epoch, len(snaps.history)
        (['history', 'snapshot', 'snapshot_epoch', 'weights'], 4, 1)
    """

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m
        self.assignment: torch.Tensor | None = None  # int8 [N]
        self.epoch: int | None = None
        self.weights: torch.Tensor | None = None  # float32 [N]
        self.history: list[dict[str, Any]] = []

    def freeze(
        self,
        epoch: int,
        assignment: torch.Tensor,
        weights: torch.Tensor | None,
        record: dict[str, Any],
    ) -> None:
        """Hold ``epoch``'s assignment; its record replaces any earlier one of that epoch."""
        self.assignment, self.epoch, self.weights = assignment, epoch, weights
        self.history = [r for r in self.history if r["epoch"] != epoch]
        self.history.append(record)

    def state_dict(self) -> dict[str, Any]:
        """``snapshot`` (int8 ``[N]`` or ``None``), ``snapshot_epoch``, ``weights``, ``history``."""
        return {
            "snapshot": None if self.assignment is None else self.assignment.clone(),
            "snapshot_epoch": self.epoch,
            "weights": None if self.weights is None else self.weights.clone(),
            "history": copy.deepcopy(self.history),
        }

    def checked_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of :meth:`state_dict` in ``state``, checked."""
        snap = state["snapshot"]
        if snap is not None:
            snap = state_tensor(state, "snapshot", (self.n,), torch.int8)
            if snap.numel() and (int(snap.min()) < FILTERED or int(snap.max()) >= self.m):
                raise ValueError(
                    f"state['snapshot'] should hold modality ids in [{FILTERED}, {self.m}), "
                    f"but got values in [{int(snap.min())}, {int(snap.max())}]"
                )
        epoch = state["snapshot_epoch"]
        if (snap is None) != (epoch is None):
            raise ValueError(
                "state should hold both a snapshot and its snapshot_epoch or neither, but got "
                f"snapshot_epoch={epoch!r} with snapshot {'None' if snap is None else 'set'}"
            )
        if epoch is not None:
            check_nonnegative_int("state['snapshot_epoch']", epoch)
        weights = state["weights"]
        if weights is not None:
            weights = state_tensor(state, "weights", (self.n,), torch.float32)
        history = state["history"]
        if not isinstance(history, list):
            raise TypeError(f"state['history'] should be a list, but got {type(history).__name__}")
        return {"snapshot": snap, "snapshot_epoch": epoch, "weights": weights, "history": history}

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`checked_state` (copies)."""
        snap, weights = state["snapshot"], state["weights"]
        self.assignment = None if snap is None else snap.clone()
        self.epoch = state["snapshot_epoch"]
        self.weights = None if weights is None else weights.clone()
        self.history = copy.deepcopy(state["history"])


#: The configuration that shapes a filter's assignment: a state records it, and
#: loading it into a filter configured otherwise is refused.
FILTER_CONFIG = (
    "num_samples", "modalities", "score", "unscored", "keep_ratio", "threshold", "reweight",
    "labels", "smoothing", "balance", "world_size",
)  # fmt: skip
#: Every key of a filter's state.
FILTER_KEYS = (
    *FILTER_CONFIG, "values", "fresh", "scored", "ignored", "duplicates", "snapshot",
    "snapshot_epoch", "weights", "history", "ranks",
)  # fmt: skip


class FilterState:
    """What a :class:`~remix_data.HardSampleFilter` saves and restores (its ``checkpoint``).

    Built over the filter's public parts: its configuration, its ``table``
    (:class:`~remix_data.table.ScoreTable`), its ``snapshots``
    (:class:`Snapshots`), its ``pairing`` (:class:`Pairing`) and its
    ``process_group``. Keys: :data:`FILTER_KEYS`; under ``torch.distributed``
    ``ranks`` holds every rank's unsynced entries (:func:`gather_ranks`).
    """

    def __init__(self, filt: Any) -> None:
        self.filt = filt

    def config(self) -> dict[str, Any]:
        """The filter's :data:`FILTER_CONFIG` values, as a state records them."""
        f = self.filt
        return {
            "num_samples": f.num_samples, "modalities": list(f.modalities), "score": f.score,
            "unscored": f.unscored, "keep_ratio": list(f.keep_ratio),
            "threshold": list(f.threshold), "reweight": f.reweight,
            "labels": labels_digest(f.labels), "smoothing": f.smoothing, "balance": f.balance,
            "world_size": world_size(f.process_group),
            "available": labels_digest(f.rule.available),
        }  # fmt: skip

    def _shared(self) -> bool:
        group = self.filt.process_group
        return bool(self.filt.sync_mode == "auto" and is_distributed(group))

    def state_dict(
        self, *, gather: bool, where: str = "state_dict(gather=False)"
    ) -> dict[str, Any]:
        """The state; gathered from every rank (a collective) when ``gather`` and shared."""
        f = self.filt
        f.flush()
        table, ranks = f.table, None
        if self._shared() and gather:
            ranks = gather_ranks(
                table.values, table.fresh, table.scored, table.ignored,
                f.snapshot_epoch, f.process_group, table.duplicates,
            )  # fmt: skip
        elif self._shared():
            _warn_local(where, int(table.fresh.sum()), f.process_group)
        return {**self.config(), **table.state_dict(), **f.snapshots.state_dict(), "ranks": ranks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Check ``state`` entirely, then restore it (see the filter's ``load_state_dict``)."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state should be a mapping, but got {type(state).__name__}")
        f = self.filt
        check_config(state, self.config(), FILTER_CONFIG, "filter")
        # Missing modalities (a state saved before the key existed: none missing).
        check_config({"available": None, **state}, self.config(), ("available",), "filter")
        missing = [k for k in FILTER_KEYS if k not in state]
        if missing:
            raise ValueError(f"state should contain {missing[0]!r}; got keys {sorted(state)}")
        table = f.table.checked_state(state)
        if state["ranks"] is not None:
            group = f.process_group
            rank = dist.get_rank(group) if is_distributed(group) else 0
            table.update(own_rank(state["ranks"], rank, world_size(group), table["values"].shape))
            table = f.table.checked_state(table)
        epochs = f.snapshots.checked_state(state)
        f.pairing.check(epochs["snapshot_epoch"])
        if f.queue is not None:
            f.queue.clear()
        f.table.load(table)
        f.snapshots.load(epochs)
        f.pairing.restored_now()


def _warn_local(where: str, unsynced: int, group: Any) -> None:
    """Warn that a state of this rank alone leaves out the other ranks' unsynced entries."""
    if not unsynced:
        return
    warnings.warn(
        f"HardSampleFilter: {where} on rank {dist.get_rank(group)} of {world_size(group)} holds "
        f"only this rank's scores: {unsynced} entries written since the last sync are in it, "
        "the other ranks' are not, so loading this state on every rank does not resume "
        "exactly (the next snapshot differs from the uninterrupted run). Call state_dict() on "
        "every rank at the same point (a collective that gathers them), or save every rank's "
        "own state and load each on its rank",
        RemixWarning,
        stacklevel=4,
    )
