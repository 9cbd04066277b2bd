"""The paper's scoring pass: score every training sample once per epoch.

:func:`scoring_pass` runs a user function (typically the model in eval mode)
over the unmasked training samples under ``torch.no_grad()`` and feeds its
per-modality outputs to a :class:`~remix_data.HardSampleFilter`. It can score a
random fraction of the samples, drawn from its own generator.

The cheaper alternative, *online scoring*, needs no helper: call
``filter.update(index, outputs, modality=modality)`` inside the training step
with the outputs the step already computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader
from tqdm.auto import tqdm

from ._checks import (
    check_bool,
    check_fraction,
    check_int,
    check_nonnegative_int,
    check_positive_int,
)
from .decoupler import ModalityDecoupler
from .distributed import world_info
from .filter import HardSampleFilter
from .seeds import SCORING, epoch_generator
from .vocabulary import ALL

__all__ = ["scoring_pass"]

ScoreFn = Callable[[Any], "Mapping[str, torch.Tensor] | tuple[Mapping[str, torch.Tensor], Any]"]


def scoring_pass(
    fn: ScoreFn,
    data: ModalityDecoupler,
    filter: HardSampleFilter,
    *,
    batch_size: int = 256,
    fraction: float = 1.0,
    seed: int = 0,
    epoch: int = 0,
    progress: bool = True,
    num_replicas: int | None = None,
    rank: int | None = None,
    **loader_kwargs: Any,
) -> int:
    """Score (a fraction of) the training set and write the scores into ``filter``.

    Args:
        fn: called on each collated, unmasked batch; returns ``{modality: output}``
            as accepted by :meth:`HardSampleFilter.update`, or a pair
            ``(outputs, targets)`` when ``score="loss"`` needs targets. It runs under
            ``torch.no_grad()``; put the model in eval mode yourself.
        data: the :class:`ModalityDecoupler` used for training (keys are plain
            indices here, so nothing is masked).
        filter: the filter to update.
        batch_size: samples per scoring batch.
        fraction: score a random ``fraction`` of the samples (drawn per ``seed`` and
            ``epoch``); the others keep their previous scores.
        seed, epoch: choose the random fraction reproducibly.
        progress: show a tqdm progress bar (on rank 0 only).
        num_replicas, rank: under ``torch.distributed`` (the defaults read it), each
            rank scores only every ``num_replicas``-th chosen sample from ``rank``
            on; the filter's next snapshot combines the ranks' scores with its
            one collective, so every rank ends with the whole table.
        **loader_kwargs: passed to the ``DataLoader`` (``num_workers``,
            ``pin_memory``, ``collate_fn`` ...).

    Returns:
        The number of samples scored on this rank.

    Example:
        >>> import torch
        >>> base = [{"a": torch.tensor([float(i)]), "b": torch.tensor([1.0])} for i in range(6)]
        >>> data = ModalityDecoupler(base, modalities=("a", "b"))
        >>> filt = HardSampleFilter(len(base), ("a", "b"))
        >>> def fn(sample):
        ...     a = torch.cat([sample["a"], -sample["a"]], 1)   # confident for large i
        ...     return {"a": a, "b": torch.zeros(len(a), 2) + 0.5 * torch.eye(2)[0]}
        >>> scoring_pass(fn, data, filt, batch_size=4, progress=False)
        6
        >>> filt.assignment().tolist()
        [0, 1, 1, 1, 1, 1]
    """
    if not isinstance(filter, HardSampleFilter):
        raise TypeError(f"filter should be a HardSampleFilter, but got filter={filter!r}")
    check_positive_int("batch_size", batch_size)
    check_fraction("fraction", fraction)
    check_nonnegative_int("epoch", epoch)
    check_int("seed", seed)
    check_bool("progress", progress)
    world, me = world_info(num_replicas, rank, filter.process_group)
    n = len(data)
    if n != filter.num_samples:
        raise ValueError(
            f"data has {n} samples but filter.num_samples={filter.num_samples}; "
            "they must describe the same training set"
        )
    if fraction < 1.0:
        gen = epoch_generator(seed, epoch, SCORING)
        count = max(1, round(fraction * n))
        chosen = torch.randperm(n, generator=gen)[:count].sort().values.tolist()
    else:
        chosen = list(range(n))
    chosen = chosen[me::world]
    batches = BatchSampler(chosen, batch_size=batch_size, drop_last=False)
    loader = DataLoader(data, batch_sampler=batches, **loader_kwargs)
    scored = 0
    with torch.no_grad():
        for sample, index, _ in tqdm(loader, desc="remix scoring", disable=not progress or me != 0):
            result = fn(sample)
            if isinstance(result, tuple):
                outputs, targets = result
                filter.update(index, outputs, targets, modality=ALL)
            else:
                filter.update(index, result, modality=ALL)
            scored += len(index)
    return scored
