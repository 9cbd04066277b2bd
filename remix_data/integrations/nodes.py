"""torchdata.nodes: the map-style sampler and the streaming remixer as node graphs.

Both graphs have the shape ``SamplerWrapper -> ParallelMapper``; wrap the root in
``torchdata.nodes.Loader`` to iterate it epoch after epoch and to save and load its
state:

- :func:`batch_node` for map-style data: a
  :class:`~remix_data.ReassemblingBatchSampler` yields key lists, the mapper fetches
  them through the :class:`~remix_data.ModalityDecoupler` (its batch
  ``__getitems__``) and collates;
- :func:`stream_node` for streams: a :class:`~remix_data.streaming.StreamingRemixer`
  yields unmasked batch plans (its buffering runs in the graph's source thread), the
  mapper masks and collates them.

Epochs: ``SamplerWrapper`` calls ``set_epoch(initial_epoch)`` on the first
iteration of the ``Loader`` and ``set_epoch(epoch + 1)`` on each later one, so
the graph drives the epochs (don't call ``set_epoch`` yourself as well; pass
``initial_epoch`` to start elsewhere). After warm-up that call snapshots the
filter, as ``set_epoch`` always does. State: ``Loader.state_dict()`` holds the
sampler's (or remixer's) state of the last batch handed out, and a new graph
given ``Loader.load_state_dict(state)`` resumes with exactly the batches still
to come; restore the filter's state first, as for the DataLoader path.
Under DDP build the sampler or remixer with this process's ``num_replicas`` and
``rank``, as always.

Example:
    >>> import torch
    >>> from torchdata.nodes import Loader
    >>> from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler
    >>> base = [{"audio": torch.ones(2), "video": torch.ones(3)} for _ in range(6)]
    >>> filt = HardSampleFilter(6, ("audio", "video"))
    >>> sampler = ReassemblingBatchSampler(filt, batch_size=3, warmup_epochs=1)
    >>> loader = Loader(batch_node(sampler, ModalityDecoupler(base, filt)))
    >>> [m.tolist() for _, _, m in loader]                 # epoch 0: warm-up
    [[-1, -1, -1], [-1, -1, -1]]
    >>> [m.tolist() for _, _, m in loader], sampler.epoch  # the graph moved to epoch 1
    ([[0, 0, 0], [1, 1, 1]], 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from torch.utils.data import default_collate

from .._checks import check_choice, check_nonnegative_int
from ..decoupler import ModalityDecoupler
from ..sampler import ReassemblingBatchSampler
from ..streaming import Plan, StreamingRemixer

__all__ = ["FetchBatch", "StreamPlans", "batch_node", "stream_node"]


class FetchBatch:
    """``keys -> collate(data.__getitems__(keys))``: one batch of the map-style path.

    A plain callable object, so it pickles for ``method="process"``.
    """

    def __init__(
        self, data: ModalityDecoupler, collate_fn: Callable[[list[Any]], Any] | None = None
    ) -> None:
        self.data = data
        self.collate_fn = default_collate if collate_fn is None else collate_fn

    def __call__(self, keys: list[Any]) -> Any:
        return self.collate_fn(self.data.__getitems__(keys))


class StreamPlans:
    """A remixer seen as a sampler of :data:`~remix_data.streaming.Plan` items.

    Iterating yields the remixer's unmasked plans (this process is its only
    worker); ``set_epoch``, ``state_dict`` and ``load_state_dict`` are the
    remixer's, so ``SamplerWrapper`` drives its epochs and saves its state.
    """

    def __init__(self, remixer: StreamingRemixer) -> None:
        if not isinstance(remixer, StreamingRemixer):
            raise TypeError(f"remixer should be a StreamingRemixer, but got {remixer!r}")
        self.remixer = remixer

    def __iter__(self) -> Iterator[Plan]:
        return self.remixer.iter_plans()

    def __len__(self) -> int:
        return len(self.remixer)

    def set_epoch(self, epoch: int) -> None:
        self.remixer.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.remixer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.remixer.load_state_dict(state)


def _graph(
    sampler: Any,
    map_fn: Callable[[Any], Any],
    initial_epoch: int,
    num_workers: int,
    method: Literal["thread", "process"],
) -> Any:
    from torchdata.nodes import ParallelMapper, SamplerWrapper  # type: ignore[import-untyped]

    check_nonnegative_int("num_workers", num_workers)
    check_choice("method", method, ("thread", "process"))
    source = SamplerWrapper(sampler, initial_epoch=initial_epoch)
    return ParallelMapper(source, map_fn, num_workers=num_workers, in_order=True, method=method)


def batch_node(
    sampler: ReassemblingBatchSampler,
    data: ModalityDecoupler,
    *,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
    method: Literal["thread", "process"] = "thread",
    initial_epoch: int | None = None,
) -> Any:
    """``SamplerWrapper(sampler) -> ParallelMapper(FetchBatch(data))``, in order.

    Args:
        sampler: the batch sampler; its epoch is driven by the graph from
            ``initial_epoch`` (default: the sampler's current epoch).
        data: the dataset wrapper the keys index.
        collate_fn: as the DataLoader's (default ``default_collate``).
        num_workers: threads or processes fetching batches (0: inline).
        method: ``"thread"`` or ``"process"``.

    Returns the root ``BaseNode``; iterate it through ``torchdata.nodes.Loader``.
    """
    if not isinstance(sampler, ReassemblingBatchSampler):
        raise TypeError(f"sampler should be a ReassemblingBatchSampler, but got {sampler!r}")
    if not isinstance(data, ModalityDecoupler):
        raise TypeError(f"data should be a ModalityDecoupler, but got {type(data).__name__}")
    epoch = sampler.epoch if initial_epoch is None else initial_epoch
    return _graph(sampler, FetchBatch(data, collate_fn), epoch, num_workers, method)


def stream_node(
    remixer: StreamingRemixer,
    *,
    num_workers: int = 0,
    method: Literal["thread", "process"] = "thread",
    initial_epoch: int | None = None,
) -> Any:
    """``SamplerWrapper(StreamPlans(remixer)) -> ParallelMapper(remixer.finish)``, in order.

    The remixer reads its whole ``source`` in the graph's source thread (one
    worker in the remixer's sense); put decoding into the source (e.g. a
    ``Loader`` over ``ParallelMapper(IterableWrapper(raw), decode)``, which is
    resumable and so makes the remixer's resume exact) and masking plus
    collation into this graph's ``num_workers``.
    """
    if not isinstance(remixer, StreamingRemixer):
        raise TypeError(f"remixer should be a StreamingRemixer, but got {remixer!r}")
    epoch = remixer.epoch if initial_epoch is None else initial_epoch
    return _graph(StreamPlans(remixer), remixer.finish, epoch, num_workers, method)
