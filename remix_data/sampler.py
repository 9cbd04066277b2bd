"""The batch sampler that reassembles an epoch into unimodal batches.

:class:`ReassemblingBatchSampler` reads the :class:`~remix_data.HardSampleFilter`'s
assignment once per epoch and yields batches of ``(index, modality)`` keys, every
batch drawn from one modality's subset (ordinary shuffled joint batches, modality
:data:`ALL`, during warm-up). The batch, step and tail rules are
:mod:`remix_data.plan`'s, shared with the streaming remixer; ``docs/architecture.md``
describes the plan and its distributed semantics.

A key ``(~index, m)`` (a negative index) is a :data:`~remix_data.vocabulary.PAD`
row: a repeat of sample ``index`` that only completes a batch (``tail="fill"``,
or the last global step under distribution or accumulation). The decoupler
yields it with modality ``PAD``: no loss, no score.
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

from ._checks import check_nonnegative_int, check_positive_int
from .alerts import RemixWarning
from .distributed import world_info
from .filter import HardSampleFilter
from .plan import (
    PLAN_KEYS,
    TAILS,
    BatchSplit,
    EpochLayout,
    EpochSettings,
    PlannedBySettings,
    arrange_steps,
    skips_finished_epoch,
    split_batches,
)
from .seeds import PLAN, epoch_generator
from .states import check_config, snapshot_rule
from .vocabulary import ALL, KeyBatch

__all__ = [
    "ALL",
    "TAILS",
    "BatchSplit",
    "ReassemblingBatchSampler",
    "arrange_steps",
    "split_batches",
]

# State keys that must match between the saved and the loading sampler.
_CONFIG_KEYS = ("num_samples", "modalities", *PLAN_KEYS, "joint_fraction")
#: The plan a state's ``plan_version`` names: 2 draws a random step order before
#: the subsets' shuffles (as the stream does); states without the key drew it after.
PLAN_VERSION = 2
logger = logging.getLogger("remix_data")
# Batches converted from tensor to Python ints at a time (amortises ``tolist``).
_CHUNK_BATCHES = 64


def _randperm(n: int, gen: torch.Generator) -> torch.Tensor:
    """``randperm`` in int32 where it fits (faster than int64; the same draws)."""
    dtype = torch.int32 if n < 2**31 else torch.int64
    return torch.randperm(n, generator=gen, dtype=dtype)


@dataclass
class _Group:
    """One group's rows on this rank for one epoch: sample indices, PAD rows as ``~index``."""

    modality: int
    rows: np.ndarray
    cut: BatchSplit
    samples: int  # distinct samples of the group on all ranks


@dataclass
class _Plan:
    epoch: int
    groups: list[_Group]
    order: list[int]  # group position of every optimiser step on this rank, in yield order
    filtered: int = 0
    snapshot: Any = field(default=None, repr=False)
    sizes: set[int] = field(default_factory=set)  # the distinct batch sizes on this rank

    def __len__(self) -> int:
        return sum(g.cut.batches for g in self.groups)


@dataclass(frozen=True)
class _SavedPosition:
    """A sampler state's position, checked before anything changes."""

    epoch: int
    yielded: int
    shape: tuple[int, tuple[int, ...]] | None  # (batches on the rank, samples per group)
    version: int

    @property
    def batches(self) -> int | None:
        return None if self.shape is None else self.shape[0]

    @property
    def finished(self) -> bool:
        return self.shape is not None and self.yielded == self.shape[0]

    @classmethod
    def read(cls, state: Any, mine: Mapping[str, Any]) -> _SavedPosition:
        """``state``'s position; ``ValueError`` unless it matches ``mine``'s configuration."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state should be a mapping, but got {type(state).__name__}")
        for key in mine:
            if key not in state and key != "plan_version":  # older states lack it
                raise ValueError(f"state should contain {key!r}; got keys {sorted(state)}")
        check_config(state, mine, _CONFIG_KEYS, "sampler")
        epoch = check_nonnegative_int("state['epoch']", state["epoch"])
        yielded = check_nonnegative_int("state['yielded']", state["yielded"])
        version = check_positive_int("state['plan_version']", state.get("plan_version", 1))
        batches, samples = state["batches"], state["samples"]
        if batches is None and samples is None:
            return cls(epoch, yielded, None, version)
        check_nonnegative_int("state['batches']", batches)
        if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence):
            raise ValueError(
                f"state['samples'] should be a sequence of counts, but got {samples!r}"
            )
        counts = tuple(check_nonnegative_int("state['samples']", c) for c in samples)
        if yielded > batches:
            raise ValueError(
                f"state['yielded'] should be at most state['batches']={batches}, "
                f"but got yielded={yielded}"
            )
        return cls(epoch, yielded, (batches, counts), version)


def _permuted(rows: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """``rows`` in the order of one ``randperm`` draw (torch's gather: it takes the int32
    permutation as it is, where numpy's ``take`` first widens it), into a numpy array."""
    out = np.empty_like(rows)
    torch.index_select(
        torch.from_numpy(rows), 0, _randperm(rows.size, gen), out=torch.from_numpy(out)
    )
    return out


def _shuffle(
    layout: EpochLayout, members: list[np.ndarray] | None, n: int, gen: torch.Generator
) -> list[np.ndarray]:
    """Each group's samples in random order; ``layout.joint`` of every subset go joint."""
    if members is None:
        return [_randperm(n, gen).numpy()]
    shuffled = [_permuted(m, gen) for m in members]
    if not layout.joint:
        return shuffled
    joint = _permuted(np.concatenate([idx[:k] for idx, k in zip(shuffled, layout.joint)]), gen)
    return [joint, *(idx[k:] for idx, k in zip(shuffled, layout.joint))]


def _shard(settings: EpochSettings, idx: np.ndarray, cut: BatchSplit) -> np.ndarray:
    """This rank's rows of one group: its kept samples, then PAD repeats as ``~index``."""
    rows = idx[: cut.kept]
    if cut.padded:
        repeats = np.tile(rows, -(-cut.padded // rows.size))[: cut.padded]
        rows = np.concatenate((rows, ~repeats))
    replicas, per_rank = settings.num_replicas, settings.accumulation_steps * settings.batch_size
    if replicas * settings.accumulation_steps > 1:
        rows = rows.reshape(cut.steps, replicas, per_rank)[:, settings.rank].reshape(-1)
    return rows


def _key_batches(
    group: _Group, start: int, batch_size: int, names: tuple[str, ...], size: int
) -> Iterator[KeyBatch]:
    """One rank's batches of one group from batch ``start`` on.

    Each is a :class:`~remix_data.vocabulary.KeyBatch` naming the filter's
    modalities and size, which the decoupler checks against its own.
    """
    b, m, rows = batch_size, group.modality, group.rows
    batches = group.cut.batches
    if start >= batches:
        return
    chunk = _CHUNK_BATCHES * b
    last = (batches - 1) * b  # the last batch runs to the end (it may hold b + 1)
    for lo in range(start * b, last, chunk):
        values = rows[lo : min(lo + chunk, last)].tolist()
        for i in range(0, len(values), b):
            yield KeyBatch(values[i : i + b], m, names, size)
    yield KeyBatch(rows[last:].tolist(), m, names, size)


class ReassemblingBatchSampler(PlannedBySettings, Sampler[KeyBatch]):
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
            distribution) instead of yielding it short (completing it).
        seed: seed of the sampler's own ``torch.Generator``; the generator is
            re-seeded from ``(seed, epoch)`` so every rank plans the same epoch.
        num_replicas: number of ranks (default: ``torch.distributed``'s world size).
        rank: this rank (default: ``torch.distributed``'s rank).
        accumulation_steps: micro-batches per optimiser step; all of them share
            one modality.
        joint_fraction: opt-in, beyond the paper: in remix epochs,
            ``round(joint_fraction * size)`` samples of every modality's subset
            of ``size`` (Python's ``round``: half to even, e.g. 0.25 x 43 -> 11,
            0.5 x 5 -> 2) train in joint batches (modality
            :data:`ALL`, all modalities visible) instead, placed like one more
            modality by ``order`` (first, for ``"sequential"``). 0 is the paper.
        tail: the last batch of a subset (:func:`split_batches`): ``"merge"``
            (default) never yields a batch of one sample when ``batch_size > 1``;
            ``"keep"`` is torch's ``BatchSampler`` and the paper's code;
            ``"fill"`` gives static shapes: every batch holds ``batch_size``
            keys, a short last batch completed by :data:`~remix_data.vocabulary.PAD`
            repeats of its own group. Under distribution or accumulation every
            batch is full in every mode (PAD rows complete the last global step).
        epochs: the run's length in epochs, if known: a warm-up that fills it
            raises ``ValueError`` here, and ``set_epoch`` past it warns once.

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
        >>> sampler.stats()["merged"], sampler.stats()["batch_sizes"]
        ({'audio': 1, 'video': 1}, [2, 4, 5])
        >>> static = ReassemblingBatchSampler(filt, batch_size=4, tail="fill")
        >>> static.set_epoch(1)       # static shapes: PAD keys (~i = -i - 1) fill a batch
        >>> [[i for i, _ in b] for b in static]
        [[8, 4, 0, 2], [6, -9, -5, -1], [5, 1, 9, 3], [7, -6, -2, -10]]
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
        epochs: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(filter, HardSampleFilter):
            raise TypeError(f"filter should be a HardSampleFilter, but got filter={filter!r}")
        self.filter = filter
        replicas, this_rank = world_info(num_replicas, rank, filter.process_group)
        self.settings = EpochSettings(
            batch_size,
            warmup_epochs=warmup_epochs,
            order=order,
            drop_last=drop_last,
            seed=seed,
            num_replicas=replicas,
            rank=this_rank,
            accumulation_steps=accumulation_steps,
            joint_fraction=joint_fraction,
            tail=tail,
            epochs=epochs,
        )
        self.epoch = 0
        self._plan: _Plan | None = None
        # (batches on this rank, distinct samples per group) of ``_plan``.
        self._shape: tuple[int, tuple[int, ...]] = (0, ())
        self._yielded = 0
        self._resume: int | None = None
        # ``_shape`` the resumed epoch had when its state was saved; checked once.
        self._expected: tuple[int, tuple[int, ...]] | None = None
        # The resumed epoch of a state saved before ``PLAN_VERSION`` (its old step order).
        self._legacy: int | None = None
        # Bumped when the epoch changes: an iterator of an older epoch that is
        # still advanced no longer moves this sampler's position.
        self._generation = 0
        # False once an iterator ran through the whole epoch; set_epoch re-arms.
        self._armed = True
        self._warned: set[tuple[str, int]] = set()
        self._sizes: set[int] = set()  # batch sizes of the epochs iterated in this run

    # ----------------------------------------------------------------- settings
    @property
    def joint_fraction(self) -> float:
        """The joint share of every subset in remix epochs."""
        return self.settings.joint_fraction

    # ------------------------------------------------------------------- epochs
    def is_warmup(self, epoch: int | None = None) -> bool:
        """Whether ``epoch`` (default: the current one) yields joint batches."""
        return self.settings.is_warmup(self.epoch if epoch is None else epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to plan; after warm-up this snapshots the assignment.

        Calling it again with the same epoch keeps the same plan (also after a
        resume, whose position survives), like ``DistributedSampler``; another
        epoch drops any pending resume position. After warm-up the first call
        for an epoch runs the filter's :meth:`~HardSampleFilter.snapshot`, the
        one collective per epoch under ``torch.distributed``: call it on every
        rank with the same epoch.

        Warns (:class:`~remix_data.RemixWarning`, once per epoch) when ``epoch``
        is below the current epoch outside a resume, and when it lies past the
        run's ``epochs``. Called while an iterator of the previous epoch is
        still running, the new epoch starts from its first batch and that
        iterator no longer moves the saved position.
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
        if self.epochs is not None and epoch >= self.epochs:
            self._warn_once(
                "beyond",
                epoch,
                f"set_epoch({epoch}) lies past the run of epochs={self.epochs} the sampler was "
                "built with: build it with the run's real length",
            )
        if epoch != self.epoch:
            self._resume = None
            self._expected = None
            self._legacy = None
            self._yielded = 0
            self._generation += 1
        self.epoch = epoch
        self._armed = True
        self._current_plan()

    def _warn_once(self, kind: str, epoch: int, message: str) -> None:
        if (kind, epoch) not in self._warned:
            self._warned.add((kind, epoch))
            warnings.warn(message, RemixWarning, stacklevel=3)

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
        # is numpy, single-threaded (see docs/architecture.md, "The plan").
        gen = epoch_generator(self.seed, epoch, PLAN)
        n = self.filter.num_samples
        members = None
        if snapshot is not None:
            assign = snapshot.numpy()
            members = [np.flatnonzero(assign == m) for m in range(len(self.filter.modalities))]
            members = [m.astype(np.int32) if m.size < 2**31 else m for m in members]
        layout = self.settings.layout(
            None if members is None else [m.size for m in members], epoch, n
        )
        legacy = self._legacy == epoch
        order = None if legacy else layout.arrange(gen)  # drawn first, as the stream draws it
        sources = _shuffle(layout, members, n, gen)
        if order is None:
            order = layout.arrange(gen)
        groups = [
            _Group(group, _shard(self.settings, idx, cut), cut, samples)
            for group, idx, cut, samples in zip(layout.groups, sources, layout.cuts, layout.samples)
        ]
        filtered = 0 if members is None else n - sum(m.size for m in members)
        return _Plan(epoch, groups, order.tolist(), filtered, snapshot, layout.batch_sizes())

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

    def __iter__(self) -> Iterator[KeyBatch]:
        # The position restarts now; a pending resume offset is consumed only at
        # the first ``next()`` (DataLoader and torchdata call ``iter`` more than
        # once per epoch, and torchdata loads the state in between).
        self._yielded = self._resume or 0
        return self._iterate()

    def _iterate(self) -> Iterator[KeyBatch]:
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
        names, size = self.filter.modalities, self.filter.num_samples
        streams = [
            _key_batches(g, c, self.batch_size, names, size) for g, c in zip(plan.groups, consumed)
        ]
        self._yielded = start
        if start < len(plan.order) * a:
            self._sizes |= plan.sizes
        for t in range(start, len(plan.order) * a):
            batch = next(streams[plan.order[t // a]])
            if self._generation == generation:
                self._yielded = t + 1
            yield batch
        if self._generation == generation:
            self._armed = False

    # -------------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """This epoch's plan on this rank: batches, samples, padding, merges and drops.

        Cheap and free of side effects once the epoch is planned, like ``len``.

        ``samples`` counts distinct samples per modality over all ranks;
        ``padded`` the :data:`~remix_data.vocabulary.PAD` rows (over all ranks)
        that complete a modality's last batch or global step; ``dropped`` the
        samples ``drop_last`` (or, with ``tail="merge"``, a one-sample subset)
        left out; ``merged`` the lone last samples that joined the previous
        batch (see :func:`split_batches`); ``filtered`` the samples the filter
        left out. Every sample of the epoch is in exactly one of
        ``samples - dropped``, ``dropped`` or ``filtered``. ``batch_sizes``:
        the distinct sizes of this rank's batches in the *run*: every epoch
        whose iteration yielded a batch since the sampler was built or last
        restored (``load_state_dict``), sorted.
        """
        plan = self._current_plan()
        names = [
            "all" if g.modality == ALL else self.filter.modalities[g.modality] for g in plan.groups
        ]
        return {
            "epoch": plan.epoch,
            "warmup": self.is_warmup(),
            "batches": {n: g.cut.batches for n, g in zip(names, plan.groups)},
            "samples": {n: g.samples for n, g in zip(names, plan.groups)},
            "padded": {n: g.cut.padded for n, g in zip(names, plan.groups)},
            "dropped": {n: g.cut.dropped for n, g in zip(names, plan.groups)},
            "merged": {n: g.cut.merged for n, g in zip(names, plan.groups)},
            "filtered": plan.filtered,
            "batch_sizes": sorted(self._sizes),
        }

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The position in the epoch (O(1): no per-sample table is copied).

        Keys: ``epoch``; ``yielded``, the batches this rank handed out in it;
        ``batches`` and ``samples``, the epoch's batch count on this rank and
        the distinct samples per group (``None`` before the epoch is planned);
        ``plan_version``; and the configuration that shapes the plan. The plan
        is rebuilt from ``(seed, epoch)`` and the filter's epoch snapshot: save
        the filter's :meth:`~HardSampleFilter.state_dict` alongside (every
        rank's, under ``torch.distributed``). With torchdata's
        ``StatefulDataLoader`` save the *loader's* state: it calls this method
        when each batch goes to a worker; called directly while workers
        prefetch, this method runs ahead by the prefetched batches.
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
            **self.settings.config(),
            "joint_fraction": self.joint_fraction,
            "plan_version": PLAN_VERSION,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at :meth:`state_dict`'s position from the next ``next()`` on.

        The saved epoch becomes the current one; its remaining batches are
        yielded by the next iterator that is advanced (the offset applies at
        the first ``next()``: torch and torchdata call ``iter`` more than once
        per epoch). A state of a fully handed-out epoch loaded after
        :meth:`set_epoch` moved on leaves the new epoch alone
        (:func:`~remix_data.plan.skips_finished_epoch`). A state saved before
        ``plan_version`` 2 resumes its epoch with the step order it was planned
        with. The batch sizes of ``stats()`` start afresh.

        Raises ``ValueError`` naming the key and both values when the state was
        saved with another configuration (dataset size, modalities, world,
        batch size, accumulation, seed, warm-up, order, ``drop_last``,
        ``joint_fraction``, ``tail``); when the filter's state comes from
        another point of the run (checked now if the filter was restored, else
        when it is, or at its next snapshot); and at the first ``next()`` when
        the rebuilt plan differs from the saved one (typically a filter whose
        state was not restored). ``docs/architecture.md`` ("The plan") has the rule.
        """
        saved = _SavedPosition.read(state, self.state_dict())
        self._pair_with_filter(saved.epoch, saved.yielded, saved.batches)
        self._sizes = set()
        if skips_finished_epoch(saved.epoch, saved.finished, self.epoch):
            self._resume = self._expected = None
            self._yielded = 0
            return
        if self.epoch > saved.epoch:
            logger.warning(
                "resuming epoch %d at batch %d although set_epoch(%d) was called before; "
                "the loop's epoch counter and the loader state disagree",
                saved.epoch,
                saved.yielded,
                self.epoch,
            )
        legacy = saved.epoch if saved.version < PLAN_VERSION else None
        if legacy != self._legacy:  # replan with the saved step order
            self._legacy, self._plan = legacy, None
        self.epoch = saved.epoch
        self._yielded = self._resume = saved.yielded
        self._expected = saved.shape

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
            f"joint_fraction={self.joint_fraction}, tail={self.tail!r}, epochs={self.epochs})"
        )
