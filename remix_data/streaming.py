"""Data Remixing over streams: unimodal batches built inside an ``IterableDataset``.

A batch sampler cannot serve an ``IterableDataset`` (torch refuses one), so
:class:`StreamingRemixer` batches inside the iterable: it reads full multimodal
samples from any iterable (a WebDataset pipeline, a Hugging Face streaming
``IterableDataset``, a generator), looks each one up in the epoch's assignment by
its stable integer id, keeps it in a bounded buffer of its modality, and yields
collated unimodal batches ``(sample, index, modality)`` (joint batches, modality
:data:`~remix_data.ALL`, during warm-up), exactly what the map-style path yields.
Use it with ``DataLoader(remixer, batch_size=None)``.

Sample ids. Every sample carries an integer id in ``[0, filter.num_samples)``
that is the same every epoch: ``sample_id`` names the key holding it (dict
samples) or is a function of the sample. WebDataset: write the id as the key
(``__key__ = "%09d" % i``) and pass ``sample_id=lambda s: int(s["__key__"])``.
Hugging Face: add the row index as a column before streaming
(``ds.map(lambda _, i: {"id": i}, with_indices=True)`` on the map-style
``Dataset``, then ``to_iterable_dataset``), never an index counted while
streaming, which depends on the shard order and the worker.

Why a schedule, and why it is correct. Under DDP every rank must train the same
modality at every optimiser step and all ranks must yield the same number of
batches, without any rank waiting on another per step. So nothing per step is
decided from the data: every rank (and every DataLoader worker) derives the
same *step schedule* from ``(seed, epoch)`` and the per-modality counts of the
epoch's assignment (:func:`step_schedule`). The counts come from the filter's
:meth:`~remix_data.HardSampleFilter.snapshot`, which is already synced across
ranks, so they agree everywhere. One optimiser step of modality ``m`` takes
``num_replicas * accumulation_steps * batch_size`` samples of ``m`` over all
ranks; on one process without accumulation the batch sizes of each modality
follow the batch tail rule of the map-style sampler instead. Steps of the
modalities are spread evenly over the epoch (``order="interleave"``, step ``j``
of a modality with ``S`` steps at ``(j + 0.5) / S``), or shuffled by a seeded
generator (``order="random"``); a modality-by-modality order would need a whole
modality in memory, so it is not offered.

Workers. The DataLoader takes batch ``t`` of an ``IterableDataset`` from worker
``t % num_workers`` (in order). So worker ``w`` yields the schedule's entries
``w, w + W, w + 2W, ...`` and the rank's batches come out in schedule order.
The rank's schedule does not depend on ``W``: ranks may use different worker
counts. A worker's *quota* of modality ``m`` is the sum of the sizes of its
``m`` entries.

Buffers and their bound. A worker reads its stream only when the entry it must
yield next lacks samples; the samples of other modalities read meanwhile wait
in their modality's buffer, which holds at most ``buffer_size`` samples (plus
the batch being completed). What happens to a sample:

- assigned :data:`~remix_data.FILTERED`: skipped, counted in ``filtered``;
- its modality's quota already met on this worker (the worker's stream holds
  more of that modality than its share of the schedule): not trained, counted in
  ``dropped``;
- its modality's buffer is full: not trained, counted in ``overflow``;
- otherwise buffered, and yielded once in its assigned modality (``samples``).

When the worker's stream ends before its quota of a modality is met, the
remaining entries are completed by repeating that modality's samples from the
worker's last batch of it (counted in ``padded``; if the worker yielded no
sample of that modality, by another sample it read, masked for that modality;
a worker whose whole stream was empty or filtered raises ``RuntimeError``). So
the number of batches is exactly the schedule's, on every worker and rank, and
every sample of the stream is trained once in its assigned modality or counted
in ``filtered``, ``dropped`` or ``overflow``. The buffers stay below the bound
by construction; they are empty at the end of the epoch (the quotas are the
schedule's sizes), and the rest of the stream is read and counted. For a stream
whose modalities arrive in random order, a modality's buffer level is a random
walk of order ``sqrt(n * p * (1 - p))`` over ``n`` samples per worker at share
``p``: choose ``buffer_size`` a few times that; ``stats()["peak"]`` shows the
largest level reached. Padding and dropping are small when every worker's
stream is a random, equally sized part of the data (shards spread evenly over
``num_replicas * num_workers``, e.g. WebDataset's ``split_by_node`` /
``split_by_worker`` or ``datasets.distributed.split_dataset_by_node``) and
grow with the imbalance of the split.

Per-epoch assignment without hidden worker state. The remixer keeps the
assignment in a shared-memory int8 table and the epoch's header (epoch,
warm-up, counts) in a shared int64 tensor, both written by :meth:`set_epoch` in
the main process. A worker reads them when it starts an epoch's iteration. With
``persistent_workers=True`` the workers' copies share these tensors, so the next
epoch's ``iter`` sees the new assignment; with non-persistent workers the
workers are re-created and inherit them. Statistics travel back through a
shared counter table, one row per worker.

Resume. :meth:`StreamingRemixer.state_dict` / ``load_state_dict`` follow the
protocol of torchdata's ``StatefulDataLoader`` (called in each worker): a
worker's state holds its position in the schedule, the samples still in its
buffers (at most ``buffer_size`` per modality; they travel with the state), its
counters and, when the source has ``state_dict`` / ``load_state_dict`` (Hugging
Face ``IterableDataset``, a torchdata ``nodes.Loader``), the source's state:
the resumed loader then yields exactly the batches that were still to come.
A source without them (a WebDataset pipeline, a generator) is replayed from the
epoch's start and the samples already read are skipped: exact when the source
yields the same order each time the epoch is iterated (no unseeded shuffle),
at the cost of reading them again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, default_collate, get_worker_info

from ._checks import check_bool, check_choice, check_int, check_nonnegative_int, check_positive_int
from .distributed import world_info
from .filter import HardSampleFilter
from .masking import Location, Masker
from .sampler import TAILS, arrange_steps, split_batches
from .seeds import epoch_generator
from .states import check_config
from .vocabulary import ALL, FILTERED

__all__ = ["StreamingRemixer", "step_schedule", "MAX_WORKERS"]

#: DataLoader workers per process that a remixer can report statistics for.
MAX_WORKERS = 64

_ORDERS = ("interleave", "random")
# Counter columns per group slot, then per worker.
_BATCHES, _SAMPLES, _PADDED, _DROPPED, _OVERFLOW, _PEAK = range(6)
_PER_SLOT = 6
_CONFIG_KEYS = (
    "num_samples",
    "modalities",
    "num_replicas",
    "rank",
    "batch_size",
    "accumulation_steps",
    "seed",
    "warmup_epochs",
    "order",
    "drop_last",
    "tail",
    "buffer_size",
)

Plan = tuple[int, list[int], list[Any]]
"""One batch before masking: ``(modality, sample ids, samples)``."""


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
        num_replicas, accumulation_steps: one optimiser step of a group takes
            ``num_replicas * accumulation_steps * batch_size`` of its samples; its
            last step is padded (or dropped with ``drop_last``). With both equal
            to 1 the sizes follow the map-style sampler's tail rule,
            :func:`~remix_data.sampler.split_batches` with ``drop_last`` and
            ``tail`` (by default no batch of one).
        order: ``"interleave"`` (steps of each group spread evenly) or
            ``"random"`` (shuffled by a generator seeded from ``(seed, epoch)``).

    Returns ``(modality, size)``, two int64 arrays with one entry per
    micro-batch; the ``accumulation_steps`` micro-batches of one optimiser step
    are consecutive and share the modality. Every rank computes the same arrays.

    Example:
        >>> modality, size = step_schedule([5, 2], batch_size=2)
        >>> modality.tolist(), size.tolist()     # 5 -> 2 + 3: no batch of one
        ([0, 1, 0], [2, 2, 3])
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("num_replicas", num_replicas)
    check_positive_int("accumulation_steps", accumulation_steps)
    check_choice("order", order, _ORDERS)
    check_choice("tail", tail, TAILS)
    ids = list(range(len(counts))) if groups is None else list(groups)
    if len(ids) != len(counts):
        raise ValueError(f"groups should have one id per count, but got {ids} for {counts}")
    k = accumulation_steps
    step = num_replicas * k * batch_size
    sizes: list[list[int]] = []
    for n in counts:
        check_nonnegative_int("counts", n)
        if step == batch_size:
            sizes.append(split_batches(n, batch_size, drop_last=drop_last, tail=tail).sizes())
        else:
            steps = n // step if drop_last else -(-n // step)
            sizes.append([batch_size] * (steps * k))
    owner = arrange_steps([len(s) // k for s in sizes], order, epoch_generator(seed, epoch))
    micro = np.repeat(owner, k)
    out_sizes = np.empty(micro.size, dtype=np.int64)
    for g, group_sizes in enumerate(sizes):
        out_sizes[micro == g] = group_sizes
    return np.asarray(ids, dtype=np.int64)[micro], out_sizes


def _shared(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` moved to shared memory (seen by forked and pickled workers alike)."""
    tensor.share_memory_()  # type: ignore[no-untyped-call]
    return tensor


def _as_id(value: Any, num_samples: int) -> int:
    tensor_int = isinstance(value, torch.Tensor) and not value.is_floating_point()
    if (tensor_int and value.numel() == 1) or isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"sample id should be an integer, but got {value!r}")
    if not 0 <= value < num_samples:
        raise ValueError(f"sample id should lie in [0, {num_samples}), but got {value}")
    return value


class StreamingRemixer(IterableDataset[tuple[Any, torch.Tensor, torch.Tensor]]):
    r"""Remix a stream of full multimodal samples into unimodal batches.

    Args:
        source: an iterable of samples; ``iter(source)`` starts one epoch of
            this process's (this worker's) part of the stream.
        filter: the :class:`~remix_data.HardSampleFilter` holding the scores;
            its :meth:`~remix_data.HardSampleFilter.snapshot` gives each epoch's
            assignment, its ``modalities`` and ``num_samples`` the vocabulary.
        batch_size: samples per batch (per rank, per micro-batch).
        sample_id: the key of the integer sample id in dict samples, or a
            function ``sample -> int`` (see the module notes for WebDataset and
            Hugging Face).
        locations: where modalities sit that are not top-level keys named
            after them: ``{name: position}`` for tuple samples, ``{name:
            "outer.inner"}`` for nested ones (as for the decoupler).
        mask: ``"zeros"``, ``"drop"`` or ``"none"``, as
            :class:`~remix_data.ModalityDecoupler` (the same
            :class:`~remix_data.masking.Masker`).
        warmup_epochs: epochs ``0 .. warmup_epochs-1`` yield joint batches.
        order: ``"interleave"`` or ``"random"`` (see :func:`step_schedule`).
        drop_last: drop each modality's incomplete last step instead of padding it.
        tail: on one process without accumulation, the tail rule of
            :func:`~remix_data.sampler.split_batches`: ``"merge"`` (default, no
            batch of one) or ``"keep"`` (torch's and the paper's).
        seed: seeds ``order="random"``; the schedule depends on ``(seed, epoch)``.
        num_replicas, rank: the world (default: ``torch.distributed``'s).
        accumulation_steps: micro-batches per optimiser step, sharing a modality.
        buffer_size: most samples a modality's buffer holds per worker
            (default ``32 * batch_size``); at least ``batch_size``.
        collate_fn: turns a list of masked samples into a batch
            (default ``default_collate``).

    Iterating yields ``(batch, index, modality)``: the collated masked samples,
    their int64 ids and an int64 tensor holding the batch's one modality.
    Call :meth:`set_epoch` on every rank before each epoch (after warm-up it
    snapshots the filter, the one collective per epoch under DDP); epoch 0 is
    prepared at construction.

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
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.sample_id = sample_id
        self.masker = Masker(self.modalities, mask, locations=locations)
        self.warmup_epochs = check_nonnegative_int("warmup_epochs", warmup_epochs)
        self.order = check_choice("order", order, _ORDERS)
        self.drop_last = check_bool("drop_last", drop_last)
        self.tail = check_choice("tail", tail, TAILS)
        self.seed = check_int("seed", seed)
        self.num_replicas, self.rank = world_info(num_replicas, rank, filter.process_group)
        self.accumulation_steps = check_positive_int("accumulation_steps", accumulation_steps)
        if buffer_size is None:
            buffer_size = 32 * self.batch_size
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        if self.buffer_size < self.batch_size:
            raise ValueError(
                f"buffer_size should be at least batch_size={self.batch_size}, "
                f"but got buffer_size={self.buffer_size}"
            )
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        m = len(self.modalities)
        # Shared with DataLoader workers (forked or pickled): the assignment, the
        # epoch header [epoch, warm-up, count per modality] and the counters.
        self._table = _shared(torch.full((self.num_samples,), FILTERED, dtype=torch.int8))
        self._header = _shared(torch.zeros(2 + m, dtype=torch.int64))
        width = _PER_SLOT * (m + 1) + 2
        self._counters = _shared(torch.zeros((MAX_WORKERS, width), dtype=torch.int64))
        self._live: _WorkerEpoch | None = None
        self._pending: dict[str, Any] | None = None
        self.set_epoch(0)

    # ------------------------------------------------------------------- epochs
    @property
    def epoch(self) -> int:
        """The epoch :meth:`set_epoch` prepared last."""
        return int(self._header[0])

    def is_warmup(self, epoch: int | None = None) -> bool:
        """Whether ``epoch`` (default: the current one) yields joint batches."""
        return (self.epoch if epoch is None else epoch) < self.warmup_epochs

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
            codes = snapshot.numpy()
            counts = [int(np.count_nonzero(codes == i)) for i in range(m)]
        self._counters.zero_()
        self._header.copy_(torch.tensor([epoch, int(self.is_warmup(epoch)), *counts]))

    def schedule(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This rank's ``(modality, size)`` per batch of the prepared epoch."""
        header = self._header.tolist()
        if epoch is not None and epoch != header[0]:
            raise ValueError(
                f"epoch {epoch} is not prepared (the remixer holds epoch {header[0]}): "
                "call set_epoch first"
            )
        warm = bool(header[1])
        counts = [self.num_samples] if warm else header[2:]
        groups = [ALL] if warm else None
        return step_schedule(
            counts,
            self.batch_size,
            groups=groups,
            num_replicas=self.num_replicas,
            accumulation_steps=self.accumulation_steps,
            drop_last=self.drop_last,
            tail=self.tail,
            order=self.order,
            seed=self.seed,
            epoch=header[0],
        )

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
        live = _WorkerEpoch(self, worker, num_workers, pending)
        self._live = live
        return live

    def finish(self, plan: Plan) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Mask and collate one :data:`Plan` into ``(batch, index, modality)``."""
        modality, ids, samples = plan
        batch = self.collate_fn(self.masker.mask_batch(samples, modality))
        index = torch.tensor(ids, dtype=torch.int64)
        return batch, index, torch.full((len(ids),), modality, dtype=torch.int64)

    def _sample_id(self, sample: Any) -> int:
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
        ``padded`` (repeats completing a batch), ``dropped`` (samples beyond
        this worker's quota), ``overflow`` (samples that met a full buffer) and
        ``peak`` (largest buffer level of any worker; at most ``buffer_size``);
        then ``filtered`` and ``read`` (samples read from the source). Every
        sample read is in exactly one of ``samples``, ``dropped``, ``overflow``
        and ``filtered``.
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
        }

    # -------------------------------------------------------------------- state
    def _config(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "modalities": list(self.modalities),
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "batch_size": self.batch_size,
            "accumulation_steps": self.accumulation_steps,
            "seed": self.seed,
            "warmup_epochs": self.warmup_epochs,
            "order": self.order,
            "drop_last": self.drop_last,
            "tail": self.tail,
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
        a finished epoch loaded after :meth:`set_epoch` moved on is ignored). In
        a DataLoader worker the saved epoch must be the prepared one. Raises
        ``ValueError`` naming the key when the state was saved with another
        configuration, and at the next iteration when it belongs to another
        worker numbering.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state should be a mapping, but got {type(state).__name__}")
        mine = self._config()
        for key in (*_CONFIG_KEYS, "epoch", "position", "worker"):
            if key not in state:
                raise ValueError(f"state should contain {key!r}; got keys {sorted(state)}")
        check_config(state, mine, _CONFIG_KEYS, "remixer")
        epoch = check_nonnegative_int("state['epoch']", state["epoch"])
        if state["worker"] is None:  # saved before any iteration: the epoch's start
            self._pending = None
            if epoch != self.epoch and get_worker_info() is None:
                self.set_epoch(epoch)
            return
        if epoch != self.epoch:
            if state.get("finished") and self.epoch > epoch:
                self._pending = None
                return
            if get_worker_info() is not None:
                raise ValueError(
                    f"state was saved in epoch {epoch}, but the remixer holds epoch "
                    f"{self.epoch}: call set_epoch({epoch}) in the main process before resuming"
                )
            self.set_epoch(epoch)
        self._pending = dict(state)

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
        self.table = remixer._table.numpy()
        self.counters = remixer._counters.numpy()[worker]
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
            if next(self.it, _END) is _END:  # type: ignore[arg-type]
                raise ValueError(
                    f"the source ended after fewer than the {skip} samples the resumed "
                    "state had read: it does not replay the same epoch"
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
        counters = self.counters
        while len(buffers[slot]) < need:
            sample = next(it, _END)
            if sample is _END:
                self.it = None
                return
            self.read += 1
            counters[-1] += 1
            sid = remixer._sample_id(sample)
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
        """``short`` repeats completing a batch of ``slot`` at the end of the stream."""
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
        return [pool[i % len(pool)] for i in range(short)]

    def _drain(self) -> None:
        """Read and count the stream's rest once every batch of the epoch is out."""
        self.finished = True
        it, remixer, counters = self.it, self.remixer, self.counters
        joint = self.slots - 1
        for slot, buffer in enumerate(self.buffers):  # empty unless quotas changed
            self._count(slot, _DROPPED, len(buffer))
            buffer.clear()
        if it is None:
            return
        for sample in it:
            self.read += 1
            counters[-1] += 1
            a = joint if self.warm else int(self.table[remixer._sample_id(sample)])
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
