"""The epoch plan's rules, written once for the batch sampler and the streaming remixer.

:class:`~remix_data.ReassemblingBatchSampler` (map-style data) and
:class:`~remix_data.streaming.StreamingRemixer` (streams) plan an epoch from the
same facts: the settings (:class:`EpochSettings`: batch size, world, accumulation,
warm-up, order, tail, seed), the epoch, and how many samples each modality's
subset holds. From those alone this module derives:

- the *groups* of the epoch (:meth:`EpochSettings.layout`): one joint group
  (:data:`~remix_data.ALL`) in warm-up; one per modality after it, plus a joint
  group when ``joint_fraction`` moves a share of every subset into joint batches;
- how each group is cut into batches (:func:`split_batches`, the tail rule):
  its batch count per rank, the size of its last batch, and the samples it
  drops, merges or completes with :data:`~remix_data.vocabulary.PAD` rows;
- the order of the optimiser steps (:func:`arrange_steps`), drawn first from the
  epoch's generator (``seeds.epoch_generator(seed, epoch)``), so that the sampler
  and the stream, given the same settings and counts, yield the same sequence of
  ``(modality, batch size)`` steps for every order both support.

Which samples fill a group's batches is the caller's: the sampler shuffles each
subset with the same generator after the step order is drawn; the stream takes
samples in the order they arrive.

Example:
    >>> settings = EpochSettings(batch_size=4, order="interleave", tail="fill")
    >>> layout = settings.layout([9, 3], epoch=0)
    >>> [(c.batches, c.padded) for c in layout.cuts]     # 9 -> 4, 4, 1 + 3 PAD; 3 -> 3 + 1 PAD
    [(3, 3), (1, 1)]
    >>> modality, size = layout.schedule(torch.Generator())
    >>> modality.tolist(), size.tolist()
    ([0, 0, 1, 0], [4, 4, 4, 4])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_nonnegative_int,
    check_positive_int,
)
from .vocabulary import ALL

__all__ = [
    "ORDERS",
    "STREAM_ORDERS",
    "TAILS",
    "PLAN_KEYS",
    "BatchSplit",
    "EpochLayout",
    "EpochSettings",
    "PlannedBySettings",
    "arrange_steps",
    "assignment_counts",
    "split_batches",
    "skips_finished_epoch",
]

#: How the optimiser steps of an epoch are arranged (see :func:`arrange_steps`).
ORDERS = ("sequential", "interleave", "random")
#: The orders a stream can follow (``"sequential"`` would hold a whole modality in memory).
STREAM_ORDERS = ("interleave", "random")
#: How a subset's last batch is cut (see :func:`split_batches`).
TAILS = ("merge", "keep", "fill")
#: State keys that shape the plan, shared by the sampler's and the stream's states.
PLAN_KEYS = (
    "num_replicas",
    "batch_size",
    "accumulation_steps",
    "seed",
    "warmup_epochs",
    "order",
    "drop_last",
    "tail",
)


@dataclass(frozen=True)
class BatchSplit:
    """How one subset of samples is cut into batches, on each rank.

    The subset's first ``kept`` samples, followed by ``padded``
    :data:`~remix_data.vocabulary.PAD` repeats, are cut into global steps;
    each rank yields ``batches`` micro-batches of ``batch_size`` samples
    except its last, which holds ``last``. On one process without accumulation
    (``replicas == accumulation == 1``) a step is one batch.
    """

    batch_size: int
    batches: int  # micro-batches yielded by each rank
    kept: int  # distinct samples yielded: the first ``kept`` of the subset
    dropped: int  # samples left out: drop_last's tail, or a lone sample under tail="merge"
    merged: int  # samples that joined the previous batch instead of forming one alone
    padded: int = 0  # PAD rows completing the last step (over all ranks)
    replicas: int = 1
    accumulation: int = 1

    @property
    def steps(self) -> int:
        """Optimiser steps of the subset (each rank's ``accumulation`` micro-batches)."""
        return self.batches // self.accumulation

    @property
    def last(self) -> int:
        """Samples in each rank's last batch (0 when there is none)."""
        if not self.batches:
            return 0
        return self.kept + self.padded - (self.batches * self.replicas - 1) * self.batch_size

    def sizes(self) -> list[int]:
        """The size of every batch one rank yields, in order."""
        if not self.batches:
            return []
        return [self.batch_size] * (self.batches - 1) + [self.last]


def split_batches(
    n: int,
    batch_size: int,
    *,
    drop_last: bool = False,
    tail: str = "merge",
    num_replicas: int = 1,
    accumulation_steps: int = 1,
) -> BatchSplit:
    """The tail rule: cut a subset of ``n`` samples into batches of ``batch_size``.

    On one process without accumulation, ``drop_last=True`` drops the
    incomplete last batch (its samples are counted in ``dropped``). Otherwise
    the last batch follows ``tail``:

    - ``"merge"`` (the default): the last batch may be short, but no batch of
      one sample is made when ``batch_size > 1`` (it would crash BatchNorm in
      training mode): a lone last sample joins the previous batch, which then
      holds ``batch_size + 1`` samples (counted in ``merged``); a subset of
      exactly one sample yields no batch and is counted in ``dropped``;
    - ``"keep"``: torch's ``BatchSampler`` (and the paper's code): the last
      batch keeps whatever is left, one sample included;
    - ``"fill"``: static shapes: the last batch is completed to ``batch_size``
      by :data:`~remix_data.vocabulary.PAD` rows (counted in ``padded``),
      repeats of the subset's own samples that carry no loss and write no score.

    Under distribution or accumulation a *global step* of ``num_replicas *
    accumulation_steps * batch_size`` samples is the unit instead: the last
    incomplete step is completed by PAD rows (every tail mode), or dropped
    with ``drop_last=True``, so every batch holds ``batch_size`` samples.

    Example:
        >>> split_batches(9, 4).sizes(), split_batches(9, 4, tail="keep").sizes()
        ([4, 5], [4, 4, 1])
        >>> split_batches(9, 4, drop_last=True).sizes(), split_batches(1, 4).dropped
        ([4, 4], 1)
        >>> cut = split_batches(9, 4, tail="fill")
        >>> cut.sizes(), cut.padded
        ([4, 4, 4], 3)
        >>> cut = split_batches(9, 2, num_replicas=2, accumulation_steps=2)
        >>> cut.sizes(), cut.steps, cut.padded      # per rank; 9 -> two steps of 8
        ([2, 2, 2, 2], 2, 7)
    """
    check_nonnegative_int("n", n)
    b = check_positive_int("batch_size", batch_size)
    check_choice("tail", tail, TAILS)
    r = check_positive_int("num_replicas", num_replicas)
    a = check_positive_int("accumulation_steps", accumulation_steps)
    step = r * a * b
    full, rest = divmod(n, step)
    if drop_last or not rest:
        return BatchSplit(b, full * a, full * step, rest, 0, 0, r, a)
    if step == b and tail != "fill":  # one process: a short last batch
        if tail == "keep" or rest > 1:
            return BatchSplit(b, full + 1, n, 0, 0)
        return BatchSplit(b, full, n, 0, 1) if full else BatchSplit(b, 0, 0, 1, 0)  # lone sample
    return BatchSplit(b, (full + 1) * a, n, 0, 0, step - rest, r, a)


def arrange_steps(steps: Sequence[int], order: str, gen: torch.Generator) -> np.ndarray:
    """The group position of every optimiser step, for groups of ``steps[g]`` steps.

    ``"sequential"``: each group's steps in turn; ``"interleave"``: step ``j`` of
    a group with ``S`` steps sits at ``(j + 0.5) / S`` of the epoch (ties in
    group order); ``"random"``: shuffled by ``gen`` (one ``randperm`` over all
    steps, drawn only when two or more groups have steps).

    Example:
        >>> arrange_steps([3, 1], "interleave", torch.Generator()).tolist()
        [0, 0, 1, 0]
    """
    check_choice("order", order, ORDERS)
    owner = np.repeat(np.arange(len(steps)), steps)
    if order == "random" and sum(1 for s in steps if s) > 1:
        owner = owner[torch.randperm(owner.size, generator=gen).numpy()]
    elif order == "interleave" and owner.size:
        position = np.concatenate([(np.arange(s, dtype=np.float64) + 0.5) / s for s in steps if s])
        owner = owner[np.argsort(position, kind="stable")]
    return owner


def assignment_counts(assignment: torch.Tensor | np.ndarray, modalities: int) -> list[int]:
    """Samples assigned to each modality id ``0 .. modalities-1`` (filtered ones not counted).

    Example:
        >>> assignment_counts(torch.tensor([1, -1, 0, 1], dtype=torch.int8), 3)
        [1, 2, 0]
    """
    codes = assignment.numpy() if isinstance(assignment, torch.Tensor) else assignment
    counts = np.bincount(codes[codes >= 0].astype(np.int64), minlength=modalities)
    return [int(c) for c in counts[:modalities]]


def skips_finished_epoch(saved_epoch: int, finished: bool, current_epoch: int) -> bool:
    """The finished-epoch resume rule: a state of a fully handed-out epoch, loaded
    after ``set_epoch`` already moved to a later epoch, leaves the later epoch alone.

    That is a checkpoint taken at the end of an epoch followed by the loop's next
    ``set_epoch`` (torchdata's ``StatefulDataLoader`` loads its state lazily, at
    ``iter(loader)``, after the loop's ``set_epoch``).

    Example:
        >>> skips_finished_epoch(2, True, 3), skips_finished_epoch(2, False, 3)
        (True, False)
    """
    return finished and current_epoch > saved_epoch


@dataclass(frozen=True)
class EpochLayout:
    """The groups of one epoch, their cuts into batches and the order of their steps.

    Attributes:
        epoch: the epoch.
        order: the step order of the settings.
        groups: the modality id of each group (:data:`~remix_data.ALL` for a joint one).
        samples: the distinct samples of each group, over all ranks.
        joint: per modality, the samples of its subset that train in the joint
            group instead (empty when there is no joint share).
        cuts: each group's :class:`BatchSplit`.
    """

    epoch: int
    order: str
    groups: tuple[int, ...]
    samples: tuple[int, ...]
    joint: tuple[int, ...]
    cuts: tuple[BatchSplit, ...]

    def arrange(self, gen: torch.Generator) -> np.ndarray:
        """The group position of every optimiser step (:func:`arrange_steps`)."""
        return arrange_steps([c.steps for c in self.cuts], self.order, gen)

    def schedule(self, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(modality, size)``: two int64 arrays with one entry per micro-batch of a rank.

        The micro-batches of one optimiser step are consecutive and share the
        modality; ``gen`` draws the order as :meth:`arrange` does.
        """
        a = self.cuts[0].accumulation if self.cuts else 1
        micro = np.repeat(self.arrange(gen), a)
        sizes = np.empty(micro.size, dtype=np.int64)
        for g, cut in enumerate(self.cuts):
            sizes[micro == g] = cut.sizes()
        return np.asarray(self.groups, dtype=np.int64)[micro], sizes

    def batch_sizes(self) -> set[int]:
        """The distinct sizes of the batches one rank yields in the epoch."""
        full = {c.batch_size for c in self.cuts if c.batches > 1}
        return full | {c.last for c in self.cuts if c.batches}


@dataclass(frozen=True)
class EpochSettings:
    """What shapes an epoch's plan, checked once for the sampler and the stream.

    Attributes:
        batch_size: samples per batch (per rank, per micro-batch).
        warmup_epochs: epochs ``0 .. warmup_epochs-1`` yield joint batches.
        order: ``"sequential"``, ``"interleave"`` or ``"random"`` (:func:`arrange_steps`).
        drop_last: drop a group's incomplete last batch (global step) instead
            of completing it.
        seed: seeds the epoch's generator (:func:`~remix_data.seeds.epoch_generator`).
        num_replicas, rank: the world.
        accumulation_steps: micro-batches per optimiser step, sharing a modality.
        joint_fraction: the share of every modality's subset trained in joint
            batches in remix epochs (``round(joint_fraction * n)`` samples of a
            subset of ``n``, Python's rounding: halves to even).
        tail: the last batch of a group (:func:`split_batches`).
        epochs: the run's length in epochs, when known: a warm-up as long as the
            run is rejected.

    Example:
        >>> EpochSettings(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: batch_size should be a positive integer value, but got batch_size=0
        >>> EpochSettings(4, warmup_epochs=5, epochs=5)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: warmup_epochs=5 leaves no remix epoch in a run of epochs=5: ...
    """

    batch_size: int
    warmup_epochs: int = 0
    order: str = "sequential"
    drop_last: bool = False
    seed: int = 0
    num_replicas: int = 1
    rank: int = 0
    accumulation_steps: int = 1
    joint_fraction: float = 0.0
    tail: str = "merge"
    epochs: int | None = None

    def __post_init__(self) -> None:
        check_positive_int("batch_size", self.batch_size)
        check_nonnegative_int("warmup_epochs", self.warmup_epochs)
        check_choice("order", self.order, ORDERS)
        check_bool("drop_last", self.drop_last)
        check_int("seed", self.seed)
        check_positive_int("accumulation_steps", self.accumulation_steps)
        fraction = check_fraction("joint_fraction", self.joint_fraction, allow_zero=True)
        object.__setattr__(self, "joint_fraction", fraction)
        check_choice("tail", self.tail, TAILS)
        check_positive_int("num_replicas", self.num_replicas)
        check_nonnegative_int("rank", self.rank)
        if self.rank >= self.num_replicas:
            raise ValueError(
                f"rank should lie in [0, num_replicas={self.num_replicas}), "
                f"but got rank={self.rank}"
            )
        if self.epochs is not None:
            check_positive_int("epochs", self.epochs)
            if self.warmup_epochs >= self.epochs:
                raise ValueError(
                    f"warmup_epochs={self.warmup_epochs} leaves no remix epoch in a run of "
                    f"epochs={self.epochs}: every epoch would train joint batches; lower "
                    "warmup_epochs (or drop epochs= for a joint-only run)"
                )

    def is_warmup(self, epoch: int) -> bool:
        """Whether ``epoch`` yields joint batches."""
        return epoch < self.warmup_epochs

    def check_run_length(self, epochs: int, *, owner: str, setting: str) -> None:
        """Raise ``ValueError`` when a framework's run of ``epochs`` never leaves warm-up.

        ``owner`` names who runs the loop and ``setting`` its argument that
        holds the run length (``"trainer"``, ``"max_epochs"``), for the message.
        """
        if self.warmup_epochs >= epochs:
            raise ValueError(
                f"the {owner} runs {setting}={epochs} epochs, but the sampler's "
                f"warmup_epochs={self.warmup_epochs} fills them: no remix epoch would train; "
                f"lower warmup_epochs below {epochs} (or train longer)"
            )

    @property
    def global_step(self) -> int:
        """Samples of one group per optimiser step over all ranks."""
        return self.num_replicas * self.accumulation_steps * self.batch_size

    def config(self) -> dict[str, Any]:
        """The values of :data:`PLAN_KEYS`, as a state records them."""
        return {key: getattr(self, key) for key in PLAN_KEYS}

    def check_sharding(
        self, num_replicas: int, rank: int, accumulation_steps: int, *, owner: str
    ) -> None:
        """Raise ``ValueError`` unless these settings shard for a framework's world.

        ``owner`` names who runs the loop ("trainer", "accelerator") in the
        message. An ``accumulation_steps`` of 1 means the framework does not
        accumulate, which any setting serves.
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

    def cut(self, n: int) -> BatchSplit:
        """:func:`split_batches` of a group of ``n`` samples under these settings."""
        return split_batches(
            n,
            self.batch_size,
            drop_last=self.drop_last,
            tail=self.tail,
            num_replicas=self.num_replicas,
            accumulation_steps=self.accumulation_steps,
        )

    def layout(self, counts: Sequence[int] | None, epoch: int, num_samples: int = 0) -> EpochLayout:
        """The epoch's groups and cuts from the subset sizes ``counts`` (one per modality).

        ``counts=None`` (or a warm-up ``epoch``) plans one joint group of
        ``num_samples`` samples.
        """
        check_nonnegative_int("epoch", epoch)
        groups: tuple[int, ...] = (ALL,)
        samples: tuple[int, ...] = (num_samples,)
        joint: tuple[int, ...] = ()
        if counts is not None and not self.is_warmup(epoch):
            samples = tuple(check_nonnegative_int("counts", c) for c in counts)
            groups = tuple(range(len(samples)))
            if self.joint_fraction:
                joint = tuple(round(self.joint_fraction * c) for c in samples)
                groups = (ALL, *groups)
                samples = (sum(joint), *(c - k for c, k in zip(samples, joint)))
        cuts = tuple(self.cut(c) for c in samples)
        return EpochLayout(epoch, self.order, groups, samples, joint, cuts)


class PlannedBySettings:
    """The settings of an :class:`EpochSettings` as read-only attributes of their owner.

    The sampler and the streaming remixer both hold ``self.settings`` and expose
    its values under the names of their constructor arguments.
    """

    settings: EpochSettings

    @property
    def batch_size(self) -> int:
        """Samples per batch (per rank, per micro-batch)."""
        return self.settings.batch_size

    @property
    def warmup_epochs(self) -> int:
        """Joint epochs before the first remix epoch."""
        return self.settings.warmup_epochs

    @property
    def order(self) -> str:
        """The step order."""
        return self.settings.order

    @property
    def drop_last(self) -> bool:
        """Whether an incomplete last batch (global step) is dropped."""
        return self.settings.drop_last

    @property
    def seed(self) -> int:
        """The seed of the epoch generators."""
        return self.settings.seed

    @property
    def num_replicas(self) -> int:
        """The number of ranks."""
        return self.settings.num_replicas

    @property
    def rank(self) -> int:
        """This rank."""
        return self.settings.rank

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per optimiser step."""
        return self.settings.accumulation_steps

    @property
    def tail(self) -> str:
        """The tail rule of a group's last batch."""
        return self.settings.tail

    @property
    def epochs(self) -> int | None:
        """The run's length in epochs, if given."""
        return self.settings.epochs

    @property
    def global_step_size(self) -> int:
        """Samples of one group per optimiser step over all ranks."""
        return self.settings.global_step

    def check_sharding(
        self, num_replicas: int, rank: int, accumulation_steps: int, *, owner: str
    ) -> None:
        """:meth:`EpochSettings.check_sharding` of these settings."""
        self.settings.check_sharding(num_replicas, rank, accumulation_steps, owner=owner)

    def check_run_length(self, epochs: int, *, owner: str, setting: str) -> None:
        """:meth:`EpochSettings.check_run_length` of these settings."""
        self.settings.check_run_length(epochs, owner=owner, setting=setting)
