"""Data Remixing over streams: unimodal batches built inside an ``IterableDataset``.

A batch sampler cannot serve an ``IterableDataset``, so :class:`StreamingRemixer`
batches inside the iterable: it reads full multimodal samples from any iterable
(a WebDataset pipeline, a Hugging Face streaming ``IterableDataset``, a
generator), looks each one up in the epoch's assignment by its stable integer
id, keeps it in a bounded buffer of its modality, and yields collated unimodal
batches ``(sample, index, modality)`` (joint batches during warm-up), as the
map-style path does. Its step schedule is :mod:`remix_data.plan`'s, the batch
sampler's: same settings, seed and epoch, same ``(modality, batch size)`` steps.
Use it with ``DataLoader(remixer, batch_size=None)``. ``docs/streaming.md`` has
the design: sample ids, the schedule, workers, buffers, PAD rows and resume.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from remix_data import HardSampleFilter
    >>> stream = [{"id": i, "audio": torch.ones(2), "video": torch.ones(3)} for i in range(5)]
    >>> filt = HardSampleFilter(5, ("audio", "video"))
    >>> remixer = StreamingRemixer(stream, filt, batch_size=2, tail="fill")
    >>> [(i.tolist(), m.tolist()) for _, i, m in DataLoader(remixer, batch_size=None)]
    [([0, 2], [0, 0]), ([1, 3], [1, 1]), ([4, 4], [0, -2])]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
import torch
from torch.utils.data import IterableDataset, default_collate, get_worker_info

from ._checks import check_choice, check_nonnegative_int, check_positive_int
from .distributed import world_info
from .filter import HardSampleFilter
from .masking import Location, Masker
from .plan import (
    PLAN_KEYS,
    STREAM_ORDERS,
    EpochLayout,
    EpochSettings,
    PlannedBySettings,
    assignment_counts,
    skips_finished_epoch,
)
from .seeds import PLAN, epoch_generator
from .states import check_config
from .vocabulary import ALL, FILTERED, PAD

__all__ = ["StreamingRemixer", "step_schedule", "MAX_WORKERS"]

#: DataLoader workers per process that a remixer can report statistics for.
MAX_WORKERS = 64

# Counter columns per group slot, then per worker.
_BATCHES, _SAMPLES, _PADDED, _DROPPED, _OVERFLOW, _PEAK = range(6)
_PER_SLOT = 6
_CONFIG_KEYS = ("num_samples", "modalities", *PLAN_KEYS, "rank", "buffer_size")

Plan = tuple[int, list[int], list[Any]]
"""One batch before masking: ``(modality, sample ids, samples)``; an id ``~i``
(negative) marks a :data:`~remix_data.vocabulary.PAD` repeat of sample ``i``."""


def step_schedule(
    counts: Sequence[int],
    batch_size: int,
    *,
    groups: Sequence[int] | None = None,
    num_replicas: int = 1,
    accumulation_steps: int = 1,
    drop_last: bool = False,
    tail: str = "merge",
    order: str = "interleave",
    seed: int = 0,
    epoch: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The modality and size of every micro-batch one rank yields in an epoch.

    Args:
        counts: samples per group over all ranks (the epoch's assignment counts).
        batch_size: samples per micro-batch on one rank.
        groups: the modality id of each count (default ``0, 1, ...``; warm-up
            epochs use ``[ALL]``).
        num_replicas, accumulation_steps, drop_last, tail: the tail rule of
            :func:`~remix_data.plan.split_batches`.
        order: ``"interleave"`` (steps of each group spread evenly) or
            ``"random"`` (shuffled by the epoch's generator, as the batch
            sampler shuffles them).

    Returns ``(modality, size)``, two int64 arrays with one entry per
    micro-batch; the ``accumulation_steps`` micro-batches of one optimiser step
    are consecutive and share the modality. Every rank computes the same arrays.

    Example:
        >>> modality, size = step_schedule([5, 2], batch_size=2)
        >>> modality.tolist(), size.tolist()     # 5 -> 2 + 3: no batch of one
        ([0, 1, 0], [2, 2, 3])
    """
    check_choice("order", order, STREAM_ORDERS)
    settings = EpochSettings(
        batch_size,
        order=order,
        drop_last=drop_last,
        seed=seed,
        num_replicas=num_replicas,
        accumulation_steps=accumulation_steps,
        tail=tail,
    )
    ids = tuple(range(len(counts))) if groups is None else tuple(groups)
    if len(ids) != len(counts):
        raise ValueError(f"groups should have one id per count, but got {list(ids)} for {counts}")
    samples = tuple(check_nonnegative_int("counts", n) for n in counts)
    cuts = tuple(settings.cut(n) for n in samples)
    layout = EpochLayout(epoch, order, ids, samples, (), cuts)
    return layout.schedule(epoch_generator(seed, epoch, PLAN))


def _shared(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` moved to shared memory (seen by forked and pickled workers alike)."""
    tensor.share_memory_()  # type: ignore[no-untyped-call]
    return tensor


def _shared_tables(n: int, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The assignment, the epoch header, the per-worker counters and the id readers (the
    worker that read each id this epoch, plus one; 0: none), in shared memory."""
    table = _shared(torch.full((n,), FILTERED, dtype=torch.int8))
    header = _shared(torch.zeros(2 + m, dtype=torch.int64))
    width = _PER_SLOT * (m + 1) + 2
    counters = _shared(torch.zeros((MAX_WORKERS, width), dtype=torch.int64))
    return table, header, counters, _shared(torch.zeros(n, dtype=torch.uint8))


def _as_id(value: Any, num_samples: int) -> int:
    tensor_int = isinstance(value, torch.Tensor) and not value.is_floating_point()
    if (tensor_int and value.numel() == 1) or isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"sample id should be an integer, but got {value!r}")
    if not 0 <= value < num_samples:
        raise ValueError(f"sample id should lie in [0, {num_samples}), but got {value}")
    return value


class StreamingRemixer(PlannedBySettings, IterableDataset[tuple[Any, torch.Tensor, torch.Tensor]]):
    r"""Remix a stream of full multimodal samples into unimodal batches.

    Args:
        source: an iterable of samples; ``iter(source)`` starts one epoch of
            this process's (this worker's) part of the stream.
        filter: the :class:`~remix_data.HardSampleFilter` holding the scores;
            its :meth:`~remix_data.HardSampleFilter.snapshot` gives each epoch's
            assignment, its ``modalities`` and ``num_samples`` the vocabulary.
        batch_size: samples per batch (per rank, per micro-batch).
        sample_id: the key of the integer sample id in dict samples, or a
            function ``sample -> int``. Ids are unique over the whole stream and
            stable across epochs (``docs/streaming.md``: WebDataset, Hugging
            Face); a worker that reads one id twice in an epoch raises
            ``ValueError``.
        locations: where modalities sit that are not top-level keys named
            after them: ``{name: position}`` for tuple samples, ``{name:
            "outer.inner"}`` for nested ones (as for the decoupler).
        mask: ``"zeros"``, ``"drop"`` or ``"none"``, as
            :class:`~remix_data.ModalityDecoupler` (the same
            :class:`~remix_data.masking.Masker`).
        warmup_epochs: epochs ``0 .. warmup_epochs-1`` yield joint batches.
        order: ``"interleave"`` or ``"random"`` (the batch sampler's step orders).
        drop_last: drop each modality's incomplete last step instead of completing it.
        tail: the tail rule of :func:`~remix_data.plan.split_batches`:
            ``"merge"`` (default, no batch of one), ``"keep"`` (torch's and the
            paper's) or ``"fill"`` (every batch holds ``batch_size`` rows).
        seed: seeds ``order="random"``; the schedule depends on ``(seed, epoch)``.
        num_replicas, rank: the world (default: ``torch.distributed``'s).
        accumulation_steps: micro-batches per optimiser step, sharing a modality.
        buffer_size: most samples a modality's buffer holds per worker
            (default ``32 * batch_size``); at least ``batch_size``.
        collate_fn: turns a list of masked samples into a batch
            (default ``default_collate``).
        epochs: the run's length in epochs, if known (a warm-up that fills it
            raises ``ValueError``).

    Iterating yields ``(batch, index, modality)``: the collated masked samples,
    their int64 ids and int64 modality ids: the batch's one modality, and
    :data:`~remix_data.vocabulary.PAD` on rows that repeat a sample only to
    complete a batch (the schedule's sizes). Call :meth:`set_epoch` on every
    rank before each epoch (after warm-up it snapshots the filter, the one
    collective per epoch under DDP); epoch 0 is prepared at construction.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader
        >>> from remix_data import HardSampleFilter
        >>> stream = [{"id": i, "audio": torch.ones(2), "video": torch.ones(3)} for i in range(6)]
        >>> filt = HardSampleFilter(6, ("audio", "video"))
        >>> remixer = StreamingRemixer(stream, filt, batch_size=2, warmup_epochs=1)
        >>> [m.tolist() for _, _, m in DataLoader(remixer, batch_size=None)]
        [[-1, -1], [-1, -1], [-1, -1]]
        >>> remixer.set_epoch(1)       # unscored samples are spread: even -> audio
        >>> [(i.tolist(), m[0].item()) for _, i, m in DataLoader(remixer, batch_size=None)]
        [([0, 2, 4], 0), ([1, 3, 5], 1)]
    """

    def __init__(
        self,
        source: Iterable[Any],
        filter: HardSampleFilter,
        batch_size: int,
        *,
        sample_id: str | Callable[[Any], Any] = "id",
        locations: Mapping[str, Location] | None = None,
        mask: str = "zeros",
        warmup_epochs: int = 0,
        order: str = "interleave",
        drop_last: bool = False,
        tail: str = "merge",
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        accumulation_steps: int = 1,
        buffer_size: int | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        epochs: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(filter, HardSampleFilter):
            raise TypeError(f"filter should be a HardSampleFilter, but got filter={filter!r}")
        if not hasattr(source, "__iter__"):
            raise TypeError(f"source should be an iterable, but got {type(source).__name__}")
        if not (callable(sample_id) or isinstance(sample_id, str)):
            raise TypeError(
                f"sample_id should be a key (str) or a function, but got sample_id={sample_id!r}"
            )
        self.source = source
        self.filter = filter
        self.modalities = filter.modalities
        self.num_samples = filter.num_samples
        self.sample_id = sample_id
        self.masker = Masker(self.modalities, mask, locations=locations)
        check_choice("order", order, STREAM_ORDERS)
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
            tail=tail,
            epochs=epochs,
        )
        if buffer_size is None:
            buffer_size = 32 * self.batch_size
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        if self.buffer_size < self.batch_size:
            raise ValueError(
                f"buffer_size should be at least batch_size={self.batch_size}, "
                f"but got buffer_size={self.buffer_size}"
            )
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        # Shared with DataLoader workers (forked or pickled): the assignment, the
        # epoch header [epoch, warm-up, count per modality] and the counters.
        self._table, self._header, self._counters, self._readers = _shared_tables(
            self.num_samples, len(self.modalities)
        )
        self._live: _WorkerEpoch | None = None
        self._pending: dict[str, Any] | None = None
        self._sizes: set[int] = set()  # batch sizes of the earlier epochs iterated in this run
        self.set_epoch(0)

    # ------------------------------------------------------------------- epochs
    @property
    def epoch(self) -> int:
        """The epoch :meth:`set_epoch` prepared last."""
        return int(self._header[0])

    def is_warmup(self, epoch: int | None = None) -> bool:
        """Whether ``epoch`` (default: the current one) yields joint batches."""
        return self.settings.is_warmup(self.epoch if epoch is None else epoch)

    def set_epoch(self, epoch: int) -> None:
        """Prepare ``epoch``: publish its assignment and counts to the workers.

        After warm-up this takes the filter's snapshot of ``epoch`` (a
        collective under ``torch.distributed``: call it on every rank). Call it
        in the main process before ``iter(loader)``; it resets the statistics.
        ``len(remixer)`` follows the epoch: if you use ``len(loader)``, read it
        after this call (torch keeps the length it read last and warns when an
        epoch yields more).
        """
        check_nonnegative_int("epoch", epoch)
        m = len(self.modalities)
        if self.is_warmup(epoch):
            counts = [0] * m
        else:
            snapshot = self.filter.snapshot(epoch)
            self._table.copy_(snapshot)
            counts = assignment_counts(snapshot, m)
        self._sizes |= self._iterated_sizes()  # the outgoing epoch's
        self._counters.zero_()
        self._readers.zero_()
        self._header.copy_(torch.tensor([epoch, int(self.is_warmup(epoch)), *counts]))

    def _iterated_sizes(self) -> set[int]:
        """The prepared epoch's batch sizes, if a worker yielded one of its batches."""
        slots = len(self.modalities) + 1
        columns = [s * _PER_SLOT + _BATCHES for s in range(slots)]
        if self._counters.numpy()[:, columns].any():
            return self._layout().batch_sizes()
        return set()

    def _layout(self) -> EpochLayout:
        header = self._header.tolist()
        counts = None if header[1] else header[2:]
        return self.settings.layout(counts, header[0], self.num_samples)

    def schedule(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This rank's ``(modality, size)`` per batch of the prepared epoch.

        The same steps, in the same order, as a
        :class:`~remix_data.ReassemblingBatchSampler` with these settings plans
        from the same filter snapshot.
        """
        if epoch is not None and epoch != self.epoch:
            raise ValueError(
                f"epoch {epoch} is not prepared (the remixer holds epoch {self.epoch}): "
                "call set_epoch first"
            )
        return self._layout().schedule(epoch_generator(self.seed, self.epoch, PLAN))

    def __len__(self) -> int:
        """Batches this rank yields in the prepared epoch (all workers together)."""
        return int(self.schedule()[0].size)

    # ---------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.iterate(worker, workers)

    def iterate(
        self, worker: int = 0, num_workers: int = 1
    ) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
        """What worker ``worker`` of ``num_workers`` yields this epoch, collated.

        ``__iter__`` calls it with the DataLoader worker's id and count (0 and 1
        in the main process); ``source`` must then be that worker's part of the
        stream. Other engines call it with their own worker numbering.
        """
        return map(self.finish, self.iter_plans(worker, num_workers))

    def iter_plans(self, worker: int = 0, num_workers: int = 1) -> Iterator[Plan]:
        """Like :meth:`iterate`, but yield :data:`Plan` tuples before masking."""
        check_positive_int("num_workers", num_workers)
        if num_workers > MAX_WORKERS:
            raise ValueError(
                f"num_workers should be at most {MAX_WORKERS}, but got num_workers={num_workers}"
            )
        if not 0 <= worker < num_workers:
            raise ValueError(f"worker should lie in [0, {num_workers}), but got worker={worker}")
        pending, self._pending = self._pending, None
        readers = memoryview(self._readers.numpy()) if num_workers > 1 else None  # type: ignore[arg-type]
        live = _WorkerEpoch(
            self, worker, num_workers, pending, self._table.numpy(), self._counters.numpy()[worker],
            readers,
        )  # fmt: skip
        self._live = live
        return live

    def finish(self, plan: Plan) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Mask and collate one :data:`Plan` into ``(batch, index, modality)``.

        Every row is masked for the batch's modality; PAD rows (ids ``~i``) get
        sample id ``i`` and modality :data:`~remix_data.vocabulary.PAD`.
        """
        modality, ids, samples = plan
        batch = self.collate_fn(self.masker.mask_batch(samples, modality))
        shown = torch.full((len(ids),), modality, dtype=torch.int64)
        if ids and ids[-1] < 0:  # PAD rows come last
            real = next(p for p, i in enumerate(ids) if i < 0)
            shown[real:] = PAD
            ids = [*ids[:real], *(~i for i in ids[real:])]
        return batch, torch.tensor(ids, dtype=torch.int64), shown

    def id_of(self, sample: Any) -> int:
        """The sample's integer id, checked to lie in ``[0, num_samples)``."""
        key = self.sample_id
        if callable(key):
            value = key(sample)
        else:
            try:
                value = sample[key]
            except (KeyError, TypeError, IndexError):
                raise ValueError(
                    f"sample_id={key!r} should name the id in every sample, but a sample "
                    f"of type {type(sample).__name__} has none"
                    + (f" (keys: {sorted(map(str, sample))})" if isinstance(sample, dict) else "")
                ) from None
        return _as_id(value, self.num_samples)

    # -------------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """This rank's epoch so far, summed over its workers.

        Keys: ``epoch``, ``warmup``, ``planned`` (batches per modality in the
        schedule), and per modality (``"all"`` in warm-up): ``batches`` yielded,
        ``samples`` (distinct samples yielded in their assigned modality),
        ``padded`` (:data:`~remix_data.vocabulary.PAD` rows completing a
        batch), ``dropped`` (samples beyond this worker's quota), ``overflow``
        (samples that met a full buffer) and ``peak`` (largest buffer level of
        any worker; at most ``buffer_size``); then ``filtered`` and ``read``
        (samples read from the source), and ``batch_sizes``: the distinct batch
        sizes of the *run*: every epoch of which a batch was yielded since
        construction or the last ``load_state_dict`` in the main process,
        sorted. Every sample read is in
        exactly one of ``samples``, ``dropped``, ``overflow`` and ``filtered``.
        """
        header = self._header.tolist()
        warm = bool(header[1])
        table = self._counters.numpy()
        m = len(self.modalities)
        names = ["all"] if warm else list(self.modalities)
        slots = [m] if warm else list(range(m))
        modality, _ = self.schedule()
        planned = [ALL] if warm else list(range(m))

        def column(c: int, reduce: Callable[[np.ndarray], Any]) -> dict[str, int]:
            return {n: int(reduce(table[:, s * _PER_SLOT + c])) for n, s in zip(names, slots)}

        return {
            "epoch": header[0],
            "warmup": warm,
            "planned": {n: int(np.count_nonzero(modality == g)) for n, g in zip(names, planned)},
            "batches": column(_BATCHES, np.sum),
            "samples": column(_SAMPLES, np.sum),
            "padded": column(_PADDED, np.sum),
            "dropped": column(_DROPPED, np.sum),
            "overflow": column(_OVERFLOW, np.sum),
            "peak": column(_PEAK, np.max),
            "filtered": int(table[:, -2].sum()),
            "read": int(table[:, -1].sum()),
            "batch_sizes": sorted(self._sizes | self._iterated_sizes()),
        }

    # -------------------------------------------------------------------- state
    def _config(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "modalities": list(self.modalities),
            **self.settings.config(),
            "rank": self.rank,
            "buffer_size": self.buffer_size,
        }

    def state_dict(self) -> dict[str, Any]:
        """The position of this process's (worker's) iteration in the epoch.

        ``StatefulDataLoader`` calls it in every worker after each batch.
        Holds the configuration, ``epoch``, ``worker`` / ``num_workers``,
        ``position`` (batches this worker yielded), ``read``, ``finished``,
        the buffered samples (references, at most ``buffer_size`` per
        modality), the samples kept for padding, this worker's counters, and
        ``source``: the source's ``state_dict()`` when it has one, else
        ``None`` (resume then replays the source and skips ``read`` samples).
        Before an iteration started: the start of the prepared epoch.
        """
        live = self._live
        if live is not None and live.epoch == self.epoch:
            return {**self._config(), **live.state()}
        return {**self._config(), "epoch": self.epoch, "position": 0, "worker": None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` at the next iteration.

        In the main process a state of another epoch than the prepared one
        prepares the saved epoch (restore the filter's state first; a state of
        a finished epoch loaded after :meth:`set_epoch` moved on is ignored:
        :func:`~remix_data.plan.skips_finished_epoch`). In a DataLoader worker
        the saved epoch must be the prepared one. Raises ``ValueError`` naming
        the key when the state was saved with another configuration, and at the
        next iteration when it belongs to another worker numbering.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state should be a mapping, but got {type(state).__name__}")
        mine = self._config()
        for key in (*_CONFIG_KEYS, "epoch", "position", "worker"):
            if key not in state:
                raise ValueError(f"state should contain {key!r}; got keys {sorted(state)}")
        check_config(state, mine, _CONFIG_KEYS, "remixer")
        epoch = check_nonnegative_int("state['epoch']", state["epoch"])
        self._pending = None
        if state["worker"] is not None and skips_finished_epoch(
            epoch, bool(state.get("finished")), self.epoch
        ):
            pass
        elif epoch != self.epoch and get_worker_info() is None:
            self.set_epoch(epoch)
        elif epoch != self.epoch and state["worker"] is not None:
            raise ValueError(
                f"state was saved in epoch {epoch}, but the remixer holds epoch "
                f"{self.epoch}: call set_epoch({epoch}) in the main process before resuming"
            )
        if state["worker"] is not None and epoch == self.epoch:
            self._pending = dict(state)
        self._sizes = set()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.source).__name__}, filter={self.filter!r}, "
            f"batch_size={self.batch_size}, mask={self.masker.mask!r}, "
            f"warmup_epochs={self.warmup_epochs}, order={self.order!r}, "
            f"drop_last={self.drop_last}, tail={self.tail!r}, "
            f"num_replicas={self.num_replicas}, rank={self.rank}, "
            f"accumulation_steps={self.accumulation_steps}, buffer_size={self.buffer_size})"
        )


class _WorkerEpoch(Iterator[Plan]):
    """One worker's iteration of one epoch: buffers, quotas, counters, position."""

    def __init__(
        self,
        remixer: StreamingRemixer,
        worker: int,
        num_workers: int,
        state: Mapping[str, Any] | None,
        table: np.ndarray,
        counters: np.ndarray,
        readers: memoryview | None = None,
    ) -> None:
        self.remixer = remixer
        self.worker, self.num_workers = worker, num_workers
        self.epoch = remixer.epoch
        self.warm = remixer.is_warmup()
        modality, size = remixer.schedule()
        self.modality = modality[worker::num_workers].tolist()
        self.size = size[worker::num_workers].tolist()
        m = len(remixer.modalities)
        self.slots = m + 1
        # A group's slot: its modality id, or ``m`` for the joint group.
        self.quota = [0] * self.slots
        for g, s in zip(self.modality, self.size):
            self.quota[g if g >= 0 else m] += s
        self.buffers: list[deque[tuple[int, Any]]] = [deque() for _ in range(self.slots)]
        self.taken = [0] * self.slots  # distinct samples yielded per slot
        self.recent: list[list[tuple[int, Any]]] = [[] for _ in range(self.slots)]
        self.spare: list[tuple[int, Any]] = []  # the last sample read but not buffered
        self.position = 0
        self.read = 0
        self.finished = False
        self.table = table  # the epoch's assignment, shared with the main process
        self.counters = counters  # this worker's row of the shared counters
        # The ids read this epoch, one bit each: a repeated id is a broken stream.
        self.seen = bytearray((remixer.num_samples + 7) // 8)
        # Which worker read each id, shared by the workers of this process: an id that two
        # read is a source that is not split between workers. Not kept with one worker.
        self.readers = readers
        source = remixer.source
        self.resumable = callable(getattr(source, "state_dict", None)) and callable(
            getattr(source, "load_state_dict", None)
        )
        skip = 0
        if state is not None:
            self._restore(state)
            if self.resumable and state["source"] is not None:
                source.load_state_dict(state["source"])  # type: ignore[attr-defined]
            else:
                skip = self.read
        else:
            self.counters[:] = 0
        self.it: Iterator[Any] | None = None if self.finished else iter(source)
        # Replay a source that cannot restore its position.
        for _ in range(skip if self.it is not None else 0):
            sample = next(self.it, _END)  # type: ignore[arg-type]
            if sample is _END:
                raise ValueError(
                    f"the source ended after fewer than the {skip} samples the resumed "
                    "state had read: it does not replay the same epoch"
                )
            self._read_id(sample)

    def _read_id(self, sample: Any) -> int:
        """The id of a sample just read; ``ValueError`` if this epoch read it before."""
        sid = self.remixer.id_of(sample)
        byte, bit = sid >> 3, 1 << (sid & 7)
        if self.seen[byte] & bit:
            self._repeated(sid)
        self.seen[byte] |= bit
        readers = self.readers
        if readers is not None:
            if readers[sid] not in (0, self.worker + 1):
                self._read_by_another(sid, readers[sid] - 1)
            readers[sid] = self.worker + 1
        return sid

    def _read_by_another(self, sid: int, other: int) -> NoReturn:
        raise ValueError(
            f"sample id {sid} was read by worker {other} and by worker {self.worker} "
            f"of {self.num_workers} in epoch {self.epoch} (rank {self.remixer.rank}): every "
            "DataLoader worker reads the whole source, so samples train twice; give each "
            "worker its own part (WebDataset: wds.split_by_worker; your own iterable: "
            "torch.utils.data.get_worker_info(); docs/streaming.md, 'Sample ids')"
        )

    def _repeated(self, sid: int) -> NoReturn:
        raise ValueError(
            f"sample id {sid} was read twice in epoch {self.epoch} by worker {self.worker} "
            f"of {self.num_workers} (rank {self.remixer.rank}): sample ids should be unique "
            "over the whole stream and the same every epoch (ids that restart at 0 in "
            "every shard make samples share a score slot); number the samples once, "
            "e.g. with a global row index (docs/streaming.md, 'Sample ids')"
        )

    def _slot(self, group: int) -> int:
        return group if group >= 0 else self.slots - 1

    def _count(self, slot: int, column: int, value: int = 1) -> None:
        self.counters[slot * _PER_SLOT + column] += value

    def __next__(self) -> Plan:
        if self.position >= len(self.modality):
            if not self.finished:
                self._drain()
            raise StopIteration
        group, size = self.modality[self.position], self.size[self.position]
        slot = self._slot(group)
        buffer = self.buffers[slot]
        self._fill(slot, size)
        items = [buffer.popleft() for _ in range(min(size, len(buffer)))]
        self.taken[slot] += len(items)
        self._count(slot, _SAMPLES, len(items))
        short = size - len(items)
        if short:
            items += self._padding(slot, items, short)
            self._count(slot, _PADDED, short)
        self.recent[slot] = items
        self.position += 1
        self._count(slot, _BATCHES)
        if self.position == len(self.modality):
            self._drain()
        return group, [i for i, _ in items], [s for _, s in items]

    def _fill(self, slot: int, need: int) -> None:
        """Read the stream until ``slot``'s buffer holds ``need`` samples or it ends."""
        buffers, it = self.buffers, self.it
        if it is None or len(buffers[slot]) >= need:
            return
        remixer, table, quota, taken = self.remixer, self.table, self.quota, self.taken
        limit, joint = remixer.buffer_size, self.slots - 1
        counters, seen, id_of, readers = self.counters, self.seen, remixer.id_of, self.readers
        mark = self.worker + 1
        while len(buffers[slot]) < need:
            sample = next(it, _END)
            if sample is _END:
                self.it = None
                return
            self.read += 1
            counters[-1] += 1
            sid = id_of(sample)  # _read_id, inline: this loop runs once per sample
            byte, bit = sid >> 3, 1 << (sid & 7)
            if seen[byte] & bit:
                self._repeated(sid)
            seen[byte] |= bit
            if readers is not None:
                if readers[sid] not in (0, mark):
                    self._read_by_another(sid, readers[sid] - 1)
                readers[sid] = mark
            a = joint if self.warm else int(table[sid])
            if a == FILTERED:
                counters[-2] += 1
                continue
            buffer = buffers[a]
            if taken[a] + len(buffer) >= quota[a]:
                self._count(a, _DROPPED)
                self.spare = [(sid, sample)]
            elif len(buffer) >= (limit if a != slot else max(limit, need)):
                self._count(a, _OVERFLOW)
                self.spare = [(sid, sample)]
            else:
                buffer.append((sid, sample))
                peak = a * _PER_SLOT + _PEAK
                if len(buffer) > counters[peak]:
                    counters[peak] = len(buffer)

    def _padding(self, slot: int, items: list[tuple[int, Any]], short: int) -> list[Any]:
        """``short`` PAD rows (ids ``~i``) completing a batch of ``slot``: repeats of the
        slot's samples in this batch or its last one, else of any sample this worker
        read (the stream ended before the worker's quota was met)."""
        others = [*self.recent, *(list(b) for b in self.buffers)]
        pool = items or self.recent[slot] or next((r for r in others if r), self.spare)
        if not pool:
            raise RuntimeError(
                f"worker {self.worker} of {self.num_workers} (rank {self.remixer.rank}) must "
                f"yield {len(self.modality)} batches this epoch but its stream held no sample "
                "that is not filtered: "
                "give every rank and worker a part of the stream (at least "
                "num_replicas * num_workers shards)"
            )
        rows = [pool[i % len(pool)] for i in range(short)]
        return [(i if i < 0 else ~i, sample) for i, sample in rows]

    def _drain(self) -> None:
        """Read and count the stream's rest once every batch of the epoch is out."""
        self.finished = True
        it, counters = self.it, self.counters
        joint = self.slots - 1
        for slot, buffer in enumerate(self.buffers):  # empty unless quotas changed
            self._count(slot, _DROPPED, len(buffer))
            buffer.clear()
        if it is None:
            return
        for sample in it:
            self.read += 1
            counters[-1] += 1
            sid = self._read_id(sample)
            a = joint if self.warm else int(self.table[sid])
            if a == FILTERED:
                counters[-2] += 1
            else:
                self._count(a, _DROPPED)
        self.it = None

    # -------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        source = self.remixer.source
        return {
            "epoch": self.epoch,
            "worker": self.worker,
            "num_workers": self.num_workers,
            "position": self.position,
            "read": self.read,
            "finished": self.finished,
            "taken": list(self.taken),
            "buffers": [list(b) for b in self.buffers],
            "recent": [list(r) for r in self.recent],
            "spare": list(self.spare),
            "counters": self.counters.tolist(),
            "source": source.state_dict() if self.resumable else None,  # type: ignore[attr-defined]
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        if (state["worker"], state.get("num_workers")) != (self.worker, self.num_workers):
            raise ValueError(
                f"state was saved by worker {state['worker']} of {state.get('num_workers')}, "
                f"but is loaded by worker {self.worker} of {self.num_workers}: resume with "
                "the same number of DataLoader workers"
            )
        position = check_nonnegative_int("state['position']", state["position"])
        if position > len(self.modality):
            raise ValueError(
                f"state['position'] should be at most {len(self.modality)} batches, "
                f"but got {position}"
            )
        self.position = position
        self.read = check_nonnegative_int("state['read']", state["read"])
        self.finished = bool(state["finished"])
        self.taken = [int(t) for t in state["taken"]]
        self.buffers = [deque((int(i), s) for i, s in b) for b in state["buffers"]]
        self.recent = [[(int(i), s) for i, s in r] for r in state["recent"]]
        self.spare = [(int(i), s) for i, s in state["spare"]]
        if len(self.taken) != self.slots or len(self.buffers) != self.slots:
            raise ValueError(f"state holds {len(self.buffers)} buffers, expected {self.slots}")
        self.counters[:] = state["counters"]


_END: Any = object()
