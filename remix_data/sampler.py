"""The batch sampler that reassembles an epoch into unimodal batches.

:class:`ReassemblingBatchSampler` reads the :class:`~remix_data.HardSampleFilter`'s
assignment once per epoch and yields lists of ``(index, modality)`` keys, every
batch drawn from one modality's subset. During warm-up it yields ordinary
shuffled joint batches whose modality is :data:`ALL`.

Distributed semantics (``num_replicas > 1`` and/or ``accumulation_steps > 1``):
a *global step* is ``num_replicas * accumulation_steps * batch_size`` samples of
one modality. Every rank builds the same global plan from ``(seed, epoch)`` and
the shared assignment, and takes its shard of each step, so at every optimiser
step all ranks and all accumulated micro-batches train the same modality. A
modality's last, incomplete global step is completed by repeating samples of
that modality (at most one step's worth, counted in :meth:`stats` as
``padded``), unless ``drop_last=True`` drops it instead (counted as
``dropped``). On one process without accumulation the last batch of a modality
may be smaller than ``batch_size``, as with torch's ``BatchSampler``, but by
default never a batch of one sample (see :func:`split_batches`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from ._checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_nonnegative_int,
    check_positive_int,
)
from .alerts import RemixWarning
from .distributed import world_info
from .filter import HardSampleFilter
from .seeds import PLAN, epoch_generator
from .states import check_config, snapshot_rule
from .vocabulary import ALL, Batch, KeyBatch

__all__ = ["ALL", "TAILS", "BatchSplit", "ReassemblingBatchSampler", "split_batches"]

_ORDERS = ("sequential", "interleave", "random")
#: How a subset's last batch is cut: see :func:`split_batches`.
TAILS = ("merge", "keep")
# State keys that must match between the saved and the loading sampler.
_CONFIG_KEYS = (
    "num_samples",
    "modalities",
    "num_replicas",
    "batch_size",
    "accumulation_steps",
    "seed",
    "warmup_epochs",
    "order",
    "drop_last",
    "joint_fraction",
    "tail",
)
logger = logging.getLogger("remix_data")
# Batches converted from tensor to Python ints at a time (amortises ``tolist``).
_CHUNK_BATCHES = 64


def _randperm(n: int, gen: torch.Generator) -> torch.Tensor:
    """``randperm`` in int32 where it fits (about 1.5x faster than int64 here)."""
    dtype = torch.int32 if n < 2**31 else torch.int64
    return torch.randperm(n, generator=gen, dtype=dtype)


@dataclass(frozen=True)
class BatchSplit:
    """How one subset of ``n`` samples is cut into consecutive batches.

    Every batch holds ``batch_size`` samples except the last, which holds
    ``last``; the batches cover the first ``kept`` samples of the subset.
    """

    batch_size: int
    batches: int  # batches yielded
    kept: int  # samples yielded: the first ``kept`` of the subset
    dropped: int  # samples left out: drop_last's tail, or a lone sample under tail="merge"
    merged: int  # samples that joined the previous batch instead of forming one alone

    @property
    def last(self) -> int:
        """Samples in the last batch (0 when there is none)."""
        return self.kept - (self.batches - 1) * self.batch_size if self.batches else 0

    def sizes(self) -> list[int]:
        """The size of every batch, in order."""
        if not self.batches:
            return []
        return [self.batch_size] * (self.batches - 1) + [self.last]


def split_batches(
    n: int, batch_size: int, *, drop_last: bool = False, tail: str = "merge"
) -> BatchSplit:
    """The tail rule: cut a subset of ``n`` samples into batches of ``batch_size``.

    ``drop_last=True`` drops the incomplete last batch (its samples are counted
    in ``dropped``). Otherwise the last batch may be short, except that with
    ``tail="merge"`` (the default) no batch of one sample is ever made when
    ``batch_size > 1`` (it would crash BatchNorm in training mode): a lone
    last sample joins the previous batch, which then holds ``batch_size + 1``
    samples (counted in ``merged``); a subset of exactly one sample yields no
    batch and is counted in ``dropped``. ``tail="keep"`` is torch's
    ``BatchSampler`` (and the paper's code): the last batch keeps whatever is
    left, one sample included.

    Example:
        >>> split_batches(9, 4).sizes(), split_batches(9, 4, tail="keep").sizes()
        ([4, 5], [4, 4, 1])
        >>> split_batches(9, 4, drop_last=True).sizes(), split_batches(1, 4).dropped
        ([4, 4], 1)
    """
    check_nonnegative_int("n", n)
    b = check_positive_int("batch_size", batch_size)
    check_choice("tail", tail, TAILS)
    full, rest = divmod(n, b)
    if drop_last:
        return BatchSplit(b, full, full * b, rest, 0)
    if rest == 1 and b > 1 and tail == "merge":
        if full:
            return BatchSplit(b, full, n, 0, 1)
        return BatchSplit(b, 0, 0, 1, 0)
    return BatchSplit(b, full + (rest > 0), n, 0, 0)


def arrange_steps(steps: Sequence[int], order: str, gen: torch.Generator) -> np.ndarray:
    """The group position of every optimiser step, for groups of ``steps[g]`` steps.

    ``"sequential"``: each group's steps in turn; ``"interleave"``: step ``j`` of
    a group with ``S`` steps sits at ``(j + 0.5) / S`` of the epoch (ties in
    group order); ``"random"``: shuffled by ``gen``.

    Example:
        >>> arrange_steps([3, 1], "interleave", torch.Generator()).tolist()
        [0, 0, 1, 0]
    """
    owner = np.repeat(np.arange(len(steps)), steps)
    if order == "random":
        owner = owner[torch.randperm(owner.size, generator=gen).numpy()]
    elif order == "interleave" and owner.size:
        position = np.concatenate([(np.arange(s, dtype=np.float64) + 0.5) / s for s in steps if s])
        owner = owner[np.argsort(position, kind="stable")]
    return owner


@dataclass
class _Group:
    """One modality's (or the joint) batches on this rank for one epoch."""

    modality: int
    indices: np.ndarray  # this rank's samples, batch after batch
    batches: int
    samples: int  # distinct samples of the group on all ranks
    padded: int = 0
    dropped: int = 0
    merged: int = 0


@dataclass
class _Plan:
    epoch: int
    groups: list[_Group]
    order: list[int]  # group position of every step on this rank, in yield order
    filtered: int = 0
    snapshot: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return sum(g.batches for g in self.groups)


class ReassemblingBatchSampler(Sampler[Batch]):
    r"""Yield unimodal batches of ``(index, modality)`` keys from a filter's assignment.

    Args:
        filter: the :class:`~remix_data.HardSampleFilter` whose assignment plans
            each epoch after warm-up.
        batch_size: samples per batch (per rank, per micro-batch).
        warmup_epochs: epochs ``0 .. warmup_epochs-1`` yield shuffled joint batches
            of every sample with modality :data:`ALL`.
        order: how the unimodal batches of an epoch are arranged:
            ``"sequential"`` (the reference code: each modality's subset in turn, in
            the order of ``filter.modalities``), ``"interleave"`` (each modality's
            batches spread evenly over the epoch) or ``"random"``.
        drop_last: drop each modality's incomplete last batch (global step under
            distribution) instead of yielding it short (padding it).
        seed: seed of the sampler's own ``torch.Generator``; the generator is
            re-seeded from ``(seed, epoch)`` so every rank plans the same epoch.
        num_replicas: number of ranks (default: ``torch.distributed``'s world size).
        rank: this rank (default: ``torch.distributed``'s rank).
        accumulation_steps: micro-batches per optimiser step; all of them share
            one modality.
        joint_fraction: opt-in, beyond the paper: in remix epochs, this fraction
            of every modality's subset is trained in joint batches (modality
            :data:`ALL`, all modalities visible) instead, placed like one more
            modality by ``order`` (first, for ``"sequential"``). 0 is the paper.
        tail: the last batch of a subset on one process without accumulation
            (:func:`split_batches`): ``"merge"`` (default) never yields a batch of
            one sample when ``batch_size > 1`` (a lone last sample joins the
            previous batch, counted in ``stats()["merged"]``; a subset of one
            sample is counted in ``dropped``); ``"keep"`` is torch's
            ``BatchSampler`` and the paper's code (a short last batch, one
            sample included). Under distribution or accumulation every batch is
            full (padded or dropped), so the tail rule does not apply.

    The assignment of a remix epoch is the filter's :meth:`~HardSampleFilter.snapshot`,
    taken at :meth:`set_epoch` (or at the first use of an epoch): updates made
    during the epoch shape the next one. Under ``torch.distributed`` that
    snapshot is a collective, so call ``set_epoch`` on every rank.

    Example:
        >>> from remix_data import HardSampleFilter
        >>> filt = HardSampleFilter(num_samples=10, modalities=("audio", "video"))
        >>> sampler = ReassemblingBatchSampler(filt, batch_size=4, warmup_epochs=1)
        >>> [(len(b), {m for _, m in b}) for b in sampler]   # epoch 0: joint warm-up
        [(4, {-1}), (4, {-1}), (2, {-1})]
        >>> sampler.set_epoch(1)      # unscored samples are spread: even -> 0, odd -> 1
        >>> [(len(b), {m for _, m in b}) for b in sampler]   # 4 + 1: no batch of one
        [(5, {0}), (5, {1})]
        >>> sampler.stats()["merged"]
        {'audio': 1, 'video': 1}
    """

    def __init__(
        self,
        filter: HardSampleFilter,
        batch_size: int,
        *,
        warmup_epochs: int = 0,
        order: str = "sequential",
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        accumulation_steps: int = 1,
        joint_fraction: float = 0.0,
        tail: str = "merge",
    ) -> None:
        super().__init__()
        if not isinstance(filter, HardSampleFilter):
            raise TypeError(f"filter should be a HardSampleFilter, but got filter={filter!r}")
        self.filter = filter
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.warmup_epochs = check_nonnegative_int("warmup_epochs", warmup_epochs)
        self.order = check_choice("order", order, _ORDERS)
        self.drop_last = check_bool("drop_last", drop_last)
        self.seed = check_int("seed", seed)
        self.accumulation_steps = check_positive_int("accumulation_steps", accumulation_steps)
        self.joint_fraction = check_fraction("joint_fraction", joint_fraction, allow_zero=True)
        self.tail = check_choice("tail", tail, TAILS)
        self.num_replicas, self.rank = world_info(num_replicas, rank, filter.process_group)
        self.epoch = 0
        self._plan: _Plan | None = None
        # (batches on this rank, distinct samples per group) of ``_plan``.
        self._shape: tuple[int, tuple[int, ...]] = (0, ())
        self._yielded = 0
        self._resume: int | None = None
        # ``_shape`` the resumed epoch had when its state was saved; checked once.
        self._expected: tuple[int, tuple[int, ...]] | None = None
        # Bumped when the epoch changes: an iterator of an older epoch that is
        # still advanced no longer moves this sampler's position.
        self._generation = 0
        # False once an iterator ran through the whole epoch; set_epoch re-arms.
        self._armed = True
        self._warned: set[tuple[str, int]] = set()

    def check_sharding(
        self, num_replicas: int, rank: int, accumulation_steps: int, *, owner: str
    ) -> None:
        """Raise ``ValueError`` unless this sampler shards for a framework's world.

        ``owner`` names who runs the loop ("trainer", "accelerator") in the
        message. An ``accumulation_steps`` of 1 means the framework does not
        accumulate, which any sampler setting serves.
        """
        if (self.num_replicas, self.rank) != (num_replicas, rank):
            raise ValueError(
                f"the sampler should shard for this {owner}: build it with "
                f"num_replicas={num_replicas}, rank={rank}, but got "
                f"num_replicas={self.num_replicas}, rank={self.rank}"
            )
        if accumulation_steps > 1 and self.accumulation_steps != accumulation_steps:
            raise ValueError(
                f"the {owner} accumulates {accumulation_steps} micro-batches per optimizer "
                f"step, so build the sampler with accumulation_steps={accumulation_steps}, "
                f"but got accumulation_steps={self.accumulation_steps}"
            )

    # ------------------------------------------------------------------- epochs
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to plan; after warm-up this snapshots the assignment.

        Calling it again with the same epoch keeps the same plan (also after a
        resume, whose position survives), like ``DistributedSampler``; another
        epoch drops any pending resume position. After warm-up the first call
        for an epoch runs the filter's :meth:`~HardSampleFilter.snapshot`, the
        one collective per epoch under ``torch.distributed``: call it on every
        rank with the same epoch.

        Warns (:class:`~remix_data.RemixWarning`, once per epoch) when ``epoch``
        is below the current epoch outside a resume. Called while an iterator
        of the previous epoch is still running, the new epoch starts from its
        first batch and that iterator no longer moves the saved position.
        """
        check_nonnegative_int("epoch", epoch)
        if epoch < self.epoch and self._resume is None:
            self._warn_once(
                "backwards",
                epoch,
                f"set_epoch({epoch}) goes back from epoch {self.epoch}: the epoch counter "
                "of the loop should only grow (outside a resume through load_state_dict); "
                "replanning an earlier remix epoch takes its snapshot again",
            )
        if epoch != self.epoch:
            self._resume = None
            self._expected = None
            self._yielded = 0
            self._generation += 1
        self.epoch = epoch
        self._armed = True
        self._current_plan()

    def _warn_once(self, kind: str, epoch: int, message: str) -> None:
        if (kind, epoch) not in self._warned:
            self._warned.add((kind, epoch))
            warnings.warn(message, RemixWarning, stacklevel=3)

    def is_warmup(self, epoch: int | None = None) -> bool:
        """Whether ``epoch`` (default: the current one) yields joint batches."""
        return (self.epoch if epoch is None else epoch) < self.warmup_epochs

    @property
    def global_step_size(self) -> int:
        """Samples of one modality per optimiser step over all ranks."""
        return self.num_replicas * self.accumulation_steps * self.batch_size

    def _current_plan(self) -> _Plan:
        epoch = self.epoch
        plan = self._plan
        known = plan is not None and plan.epoch == epoch
        if self.is_warmup(epoch):
            snapshot = None
        elif plan is not None and known and self.filter.snapshot_epoch != epoch:
            # Planned from this epoch's snapshot, which the filter has since
            # replaced by another epoch's: keep the plan, take no new snapshot.
            snapshot = plan.snapshot
        else:
            snapshot = self.filter.snapshot(epoch)  # the cached one once taken
        if plan is None or not known or plan.snapshot is not snapshot:
            plan = self._build_plan(epoch, snapshot)
            self._plan = plan
            self._shape = (len(plan), tuple(g.samples for g in plan.groups))
        if self._expected is not None and self._resume is not None:
            expected, self._expected = self._expected, None
            if expected != self._shape:
                raise ValueError(
                    f"the resumed epoch {epoch} plans {self._shape[0]} batches on this rank "
                    f"from subsets of {list(self._shape[1])} samples, but its state was saved "
                    f"with {expected[0]} batches from {list(expected[1])}: restore the "
                    "filter's state from the same checkpoint (HardSampleFilter.load_state_dict) "
                    "before resuming"
                )
        return plan

    def _build_plan(self, epoch: int, snapshot: torch.Tensor | None) -> _Plan:
        # Only ``randperm`` runs in torch (its stream defines the plan); the rest
        # is numpy: single-threaded. These are small ops, and torch's intra-op
        # threads make them 10-100x slower per op when the cores are shared
        # with other processes (measured against the same ops in numpy).
        gen = epoch_generator(self.seed, epoch, PLAN)
        n = self.filter.num_samples
        filtered = 0
        if snapshot is None:
            sources = [(ALL, _randperm(n, gen).numpy())]
        else:
            assign = snapshot.numpy()
            sources = []
            for m in range(len(self.filter.modalities)):
                members = np.flatnonzero(assign == m)  # ascending, as torch.nonzero
                if members.size < 2**31:
                    members = members.astype(np.int32)  # halves the random gather's traffic
                order = _randperm(members.size, gen).numpy()
                sources.append((m, members.take(order)))
            filtered = n - sum(s.size for _, s in sources)
            if self.joint_fraction:
                sources = self._split_joint(sources, gen)
        groups = [self._shard(m, idx) for m, idx in sources]
        return _Plan(epoch, groups, self._arrange(groups, gen), filtered, snapshot)

    def _split_joint(
        self, sources: list[tuple[int, np.ndarray]], gen: torch.Generator
    ) -> list[tuple[int, np.ndarray]]:
        """Move ``joint_fraction`` of every (shuffled) subset into one joint group.

        The joint group comes first and yields batches of modality ``ALL``; each
        sample still appears once in the epoch.
        """
        cuts = [round(self.joint_fraction * idx.size) for _, idx in sources]
        joint = np.concatenate([idx[:k] for (_, idx), k in zip(sources, cuts)])
        joint = joint.take(_randperm(joint.size, gen).numpy())
        rest = [(m, idx[k:]) for (m, idx), k in zip(sources, cuts)]
        return [(ALL, joint), *rest]

    def _shard(self, modality: int, idx: np.ndarray) -> _Group:
        """Cut one group into this rank's batches (padding or dropping the tail)."""
        n, b = idx.size, self.batch_size
        per_rank_step = self.accumulation_steps * b
        step = self.num_replicas * per_rank_step
        if step == b:  # one process, no accumulation: the tail rule of ``split_batches``
            cut = split_batches(n, b, drop_last=self.drop_last, tail=self.tail)
            return _Group(
                modality, idx[: cut.kept], cut.batches, n, dropped=cut.dropped, merged=cut.merged
            )
        rest = n % step
        padded = dropped = 0
        if rest and self.drop_last:
            idx, dropped = idx[: n - rest], rest
        elif rest:
            padded = step - rest
            idx = np.concatenate((idx, np.tile(idx, -(-padded // n))[:padded]))
        steps = idx.size // step
        mine = idx.reshape(steps, self.num_replicas, per_rank_step)[:, self.rank].reshape(-1)
        return _Group(
            modality, mine, steps * self.accumulation_steps, n, padded=padded, dropped=dropped
        )

    def _arrange(self, groups: list[_Group], gen: torch.Generator) -> list[int]:
        """Order the optimiser steps of all groups; returns a group position per step."""
        a = self.accumulation_steps
        steps = [g.batches // a if a > 1 else g.batches for g in groups]
        return list(arrange_steps(steps, self.order, gen).tolist())

    # ---------------------------------------------------------------- iteration
    def __len__(self) -> int:
        """Batches this rank yields in the current epoch.

        Cheap and free of side effects once the epoch is planned (after
        :meth:`set_epoch`, or any earlier use of the epoch). Before that, the
        first call plans the epoch, which after warm-up takes the filter's
        snapshot: a history record and, under ``torch.distributed``, a
        collective (so call ``set_epoch`` first, on every rank).
        """
        return len(self._current_plan())

    def __iter__(self) -> Iterator[Batch]:
        # The position restarts now; a pending resume offset is consumed only at
        # the first ``next()`` (DataLoader and torchdata call ``iter`` more than
        # once per epoch, and torchdata loads the state in between).
        self._yielded = self._resume or 0
        return self._iterate()

    def _iterate(self) -> Iterator[Batch]:
        plan = self._current_plan()
        resuming = self._resume is not None
        if not self._armed and not resuming:
            self._warn_once(
                "again",
                self.epoch,
                f"epoch {self.epoch} is iterated again although it was fully consumed and "
                "set_epoch was not called since: call sampler.set_epoch(epoch) at the start "
                "of every epoch, or the run repeats this epoch's plan (warm-up forever, or "
                "one assignment reused)",
            )
        generation = self._generation
        start = self._resume or 0
        self._resume = None
        a = self.accumulation_steps
        consumed = [0] * len(plan.groups)
        for t in range(start):
            consumed[plan.order[t // a]] += 1
        streams = [self._batches(g, c) for g, c in zip(plan.groups, consumed)]
        self._yielded = start
        for t in range(start, len(plan.order) * a):
            batch = next(streams[plan.order[t // a]])
            if self._generation == generation:
                self._yielded = t + 1
            yield batch
        if self._generation == generation:
            self._armed = False

    def _batches(self, group: _Group, start: int) -> Iterator[Batch]:
        """This rank's batches of one group from batch ``start`` on, as key lists.

        Each is a :class:`~remix_data.vocabulary.KeyBatch` naming the filter's
        modalities, which the decoupler checks against its own order.
        """
        b, m, idx = self.batch_size, group.modality, group.indices
        names = self.filter.modalities
        if start >= group.batches:
            return
        chunk = _CHUNK_BATCHES * b
        last = (group.batches - 1) * b  # the last batch runs to the end (it may hold b + 1)
        for lo in range(start * b, last, chunk):
            values = idx[lo : min(lo + chunk, last)].tolist()
            for i in range(0, len(values), b):
                part = values[i : i + b]
                yield KeyBatch(part, m, names)
        tail = idx[last:].tolist()
        yield KeyBatch(tail, m, names)

    # -------------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """This epoch's plan on this rank: batches, samples, padding, merges and drops.

        Cheap and free of side effects once the epoch is planned, like ``len``.

        ``samples`` counts distinct samples per modality over all ranks;
        ``padded`` the repeats that complete a modality's last global step;
        ``dropped`` the samples ``drop_last`` (or, with ``tail="merge"``, a
        one-sample subset) left out; ``merged`` the lone last samples that joined
        the previous batch (see :func:`split_batches`); ``filtered`` the samples
        the filter left out. Every sample of the epoch is in exactly one of
        ``samples - dropped`` or ``filtered``, plus ``dropped``.
        """
        plan = self._current_plan()
        names = [
            "all" if g.modality == ALL else self.filter.modalities[g.modality] for g in plan.groups
        ]
        return {
            "epoch": plan.epoch,
            "warmup": self.is_warmup(),
            "batches": {n: g.batches for n, g in zip(names, plan.groups)},
            "samples": {n: g.samples for n, g in zip(names, plan.groups)},
            "padded": {n: g.padded for n, g in zip(names, plan.groups)},
            "dropped": {n: g.dropped for n, g in zip(names, plan.groups)},
            "merged": {n: g.merged for n, g in zip(names, plan.groups)},
            "filtered": plan.filtered,
        }

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The position in the epoch (O(1): no per-sample table is copied).

        Keys: ``epoch``; ``yielded``, the batches this rank handed out in it;
        ``batches`` and ``samples``, the epoch's batch count on this rank and
        the distinct samples per modality (``None`` before the epoch is
        planned), which :meth:`load_state_dict` uses to tell a finished epoch
        and to check the restored plan; and the configuration that shapes the
        plan (``num_samples``, ``modalities``, ``num_replicas``, ``batch_size``,
        ``accumulation_steps``, ``seed``, ``warmup_epochs``, ``order``,
        ``drop_last``, ``joint_fraction``, ``tail``). The plan itself is
        rebuilt from ``(seed, epoch)`` and the filter's epoch snapshot, so save the filter's
        :meth:`~HardSampleFilter.state_dict` alongside (every rank's, under
        ``torch.distributed``).

        With torchdata's ``StatefulDataLoader`` save the *loader's* state: it
        calls this method once per batch, when that batch goes to a worker, and
        keeps the value that matches the batches you received. Called directly
        while workers prefetch, this method runs ahead by the prefetched batches.
        """
        plan = self._plan
        planned = plan is not None and plan.epoch == self.epoch
        return {
            "epoch": self.epoch,
            "yielded": self._yielded,
            "batches": self._shape[0] if planned else None,
            "samples": self._shape[1] if planned else None,
            "num_samples": self.filter.num_samples,
            "modalities": self.filter.modalities,
            "num_replicas": self.num_replicas,
            "batch_size": self.batch_size,
            "accumulation_steps": self.accumulation_steps,
            "seed": self.seed,
            "warmup_epochs": self.warmup_epochs,
            "order": self.order,
            "drop_last": self.drop_last,
            "joint_fraction": self.joint_fraction,
            "tail": self.tail,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at :meth:`state_dict`'s position from the next ``next()`` on.

        The saved epoch becomes the current one and its remaining batches are
        yielded by the next iterator that is advanced (torch and torchdata call
        ``iter`` more than once per epoch, and torchdata calls this method in
        between, so the offset is applied at the first ``next()``, not in
        ``__iter__``). On the first ``next()`` the rebuilt plan is compared with
        the saved ``batches`` / ``samples``; a mismatch (typically a filter
        whose state was not restored) raises ``ValueError``.

        One exception: a state whose epoch was fully handed out, loaded after
        :meth:`set_epoch` already moved to a later epoch, leaves that later
        epoch to start from its first batch. That is the checkpoint taken at the
        end of an epoch followed by the loop's next ``set_epoch``:
        ``StatefulDataLoader`` calls this method lazily, at ``iter(loader)``,
        after the loop's ``set_epoch``.

        Raises ``ValueError`` naming the key and both values when the state was
        saved with another dataset size, modality list, world size
        (``num_replicas``), batch size, accumulation, seed, warm-up, order,
        ``drop_last``, ``joint_fraction`` or ``tail``; and when the filter's
        state comes from another point of the run: a remix epoch resumed after
        its first batch needs the filter's snapshot of that epoch, and a filter
        snapshot of a later epoch is only right after the saved epoch was fully
        handed out (``epoch + 1``). The filter is checked now if it was already
        restored, else when it is restored or, failing that, at its next
        snapshot.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state should be a mapping, but got {type(state).__name__}")
        mine = self.state_dict()
        for key in mine:
            if key not in state:
                raise ValueError(f"state should contain {key!r}; got keys {sorted(state)}")
        check_config(state, mine, _CONFIG_KEYS, "sampler")
        epoch = check_nonnegative_int("state['epoch']", state["epoch"])
        yielded = check_nonnegative_int("state['yielded']", state["yielded"])
        batches, samples = state["batches"], state["samples"]
        expected: tuple[int, tuple[int, ...]] | None = None
        if batches is not None or samples is not None:
            check_nonnegative_int("state['batches']", batches)
            if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence):
                raise ValueError(
                    f"state['samples'] should be a sequence of counts, but got {samples!r}"
                )
            counts = tuple(samples)
            for c in counts:
                check_nonnegative_int("state['samples']", c)
            if yielded > batches:
                raise ValueError(
                    f"state['yielded'] should be at most state['batches']={batches}, "
                    f"but got yielded={yielded}"
                )
            expected = (batches, counts)
        self._pair_with_filter(epoch, yielded, batches)
        finished = expected is not None and yielded == expected[0]
        if finished and self.epoch > epoch:
            self._resume = self._expected = None
            self._yielded = 0
            return
        if self.epoch > epoch:
            logger.warning(
                "resuming epoch %d at batch %d although set_epoch(%d) was called before; "
                "the loop's epoch counter and the loader state disagree",
                epoch,
                yielded,
                self.epoch,
            )
        self.epoch = epoch
        self._yielded = yielded
        self._resume = yielded
        self._expected = expected

    def _pair_with_filter(self, epoch: int, yielded: int, batches: int | None) -> None:
        """Check that the filter's snapshot belongs to the restored position.

        A filter already restored from a state is checked now; otherwise the
        check waits for the filter's ``load_state_dict`` or, if the filter is
        never restored, for its next snapshot (so either load order works).
        """
        check = snapshot_rule(epoch, yielded, batches, self.warmup_epochs)
        self.filter.pairing.expect(check, self.filter.snapshot_epoch)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(filter={self.filter!r}, batch_size={self.batch_size}, "
            f"warmup_epochs={self.warmup_epochs}, order={self.order!r}, "
            f"drop_last={self.drop_last}, seed={self.seed}, num_replicas={self.num_replicas}, "
            f"rank={self.rank}, accumulation_steps={self.accumulation_steps}, "
            f"joint_fraction={self.joint_fraction}, tail={self.tail!r})"
        )
