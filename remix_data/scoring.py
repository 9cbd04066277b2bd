"""The paper's scoring pass: score every training sample once per epoch.

:func:`scoring_pass` runs a user function (typically the model in eval mode)
over the unmasked training samples under ``torch.no_grad()`` and feeds its
per-modality outputs to a :class:`~remix_data.HardSampleFilter`. It can score a
random fraction of the samples, drawn from its own generator. Models without
unimodal heads (a fused head only) are scored with ``fused_only=True``: the
model sees each modality alone, the others masked as the decoupler masks them,
and its fused logits score that modality.

The cheaper alternative, *online scoring*, needs no helper: call
``filter.update(index, outputs, modality=modality)`` inside the training step
with the outputs the step already computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, default_collate
from tqdm.auto import tqdm

from ._checks import (
    check_bool,
    check_fraction,
    check_int,
    check_nonnegative_int,
    check_positive_int,
)
from .alerts import RemixWarning
from .collate import RemixCollate
from .decoupler import ModalityDecoupler
from .distributed import world_info
from .filter import HardSampleFilter
from .masking import Masker
from .seeds import SCORING, epoch_generator
from .vocabulary import ALL

__all__ = ["scoring_pass"]

ScoreFn = Callable[..., Any]


def _describe(value: Any) -> str:
    """A short description of what ``fn`` returned, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, tuple):
        return f"a tuple ({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__name__}"


def _outputs(result: Any, fused_only: bool) -> tuple[Any, Any]:
    """``fn``'s result as ``(outputs, targets)``; ``TypeError`` for anything else."""
    if fused_only:
        if isinstance(result, tuple) and len(result) == 2:
            return result
        if isinstance(result, torch.Tensor):
            return result, None
        raise TypeError(
            "with fused_only=True, fn(sample, modality) should return the fused logits "
            f"[B, C] (or (logits, targets) with score='loss'), but returned {_describe(result)}"
        )
    if isinstance(result, Mapping):
        return result, None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Mapping):
        return result
    hint = ""
    if isinstance(result, tuple) and result and isinstance(result[0], torch.Tensor):
        hint = (
            ": it looks like (fused, heads); return the heads alone, e.g. fn=lambda s: model(s)[1]"
        )
    elif isinstance(result, torch.Tensor):
        hint = ": a model with no unimodal heads is scored with fused_only=True"
    raise TypeError(
        "fn should return {modality: outputs} or ({modality: outputs}, targets), but "
        f"returned {_describe(result)}{hint}"
    )


class _EachModality:
    """The collate of a fused-only pass: one batch per modality, the others masked.

    Called on the decoupler's ``(sample, index, ALL)`` triples, it returns
    ``(index, [(rows, collated batch) per modality])``: ``rows`` are the batch
    rows that have the modality (all of them without missing modalities), and
    the batch holds those samples with every other modality masked as
    ``masker`` masks it. It runs where the loader collates (in the workers).
    """

    def __init__(
        self, masker: Masker, gaps: np.ndarray | None, collate: Callable[[list[Any]], Any]
    ) -> None:
        self.masker, self.gaps, self.collate = masker, gaps, collate

    def __call__(self, batch: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        samples = [s for s, _, _ in batch]
        index = torch.tensor([i for _, i, _ in batch], dtype=torch.int64)
        per_modality = []
        for m in range(len(self.masker.modalities)):
            rows = list(range(len(samples)))
            if self.gaps is not None:
                rows = np.flatnonzero(~self.gaps[m, index.numpy()]).tolist()
            masked = self.masker.mask_batch([samples[r] for r in rows], m) if rows else []
            per_modality.append((rows, self.collate(masked) if rows else None))
        return index, per_modality


def _check_order(filter: HardSampleFilter, epoch: int | None) -> None:
    """Warn when the pass for ``epoch`` runs after that epoch's snapshot."""
    snapped = filter.snapshot_epoch
    if epoch is None or snapped is None or snapped < epoch:
        return
    warnings.warn(
        f"scoring_pass(epoch={epoch}) runs after the filter's snapshot of epoch {snapped} "
        f"(sampler.set_epoch({snapped})): epoch {snapped}'s assignment is frozen, so these "
        f"scores only shape epoch {snapped + 1} and every remix epoch lags one pass behind. "
        "Call scoring_pass(..., epoch=e) before sampler.set_epoch(e)",
        RemixWarning,
        stacklevel=3,
    )


def scoring_pass(
    fn: ScoreFn,
    data: ModalityDecoupler,
    filter: HardSampleFilter,
    *,
    batch_size: int = 256,
    fraction: float = 1.0,
    seed: int = 0,
    epoch: int | None = None,
    progress: bool = True,
    num_replicas: int | None = None,
    rank: int | None = None,
    fused_only: bool = False,
    **loader_kwargs: Any,
) -> int:
    """Score (a fraction of) the training set and write the scores into ``filter``.

    Args:
        fn: called on each collated, unmasked batch; returns ``{modality: output}``
            as accepted by :meth:`HardSampleFilter.update`, or a pair
            ``({modality: output}, targets)`` when ``score="loss"`` needs targets
            (a model returning ``(fused, heads)``: ``fn=lambda s: model(s)[1]``).
            It runs under ``torch.no_grad()``; put the model in eval mode
            yourself. With ``fused_only=True`` it is called as ``fn(sample,
            modality)`` instead (see below) and returns fused logits ``[B, C]``.
        data: the :class:`ModalityDecoupler` used for training (keys are plain
            indices here, so nothing is masked), not the raw dataset.
        filter: the filter to update.
        batch_size: samples per scoring batch.
        fraction: score a random ``fraction`` of the samples (drawn per ``seed`` and
            ``epoch``): ``max(1, round(fraction * len(data)))`` of them (halves
            to even), split over the ranks; the others keep their previous
            scores.
        seed, epoch: choose the random fraction reproducibly. ``epoch`` is the
            epoch these scores decide: run the pass **before**
            ``sampler.set_epoch(epoch)``, whose snapshot freezes that epoch's
            assignment; a pass given the epoch of a snapshot already taken warns
            (:class:`~remix_data.RemixWarning`). ``None`` (the default) draws
            as epoch 0 and checks nothing.
        progress: show a tqdm progress bar (on rank 0 only).
        num_replicas, rank: under ``torch.distributed`` (the defaults read it), each
            rank scores only every ``num_replicas``-th chosen sample from ``rank``
            on; the filter's next snapshot combines the ranks' scores with its
            one collective, so every rank ends with the whole table.
        fused_only: for models with no unimodal heads. Each batch is loaded once
            and shown to ``fn`` once per modality ``m``, with every other
            modality masked as ``data`` masks it (zeros, dropped, or left for
            the model with ``mask="none"``: ``fn`` receives ``modality``, an
            int64 ``[B]`` tensor of ``m``, for :func:`~remix_data.mask_features`);
            the fused logits it returns score modality ``m``. ``M`` forward
            passes per batch instead of one.
        **loader_kwargs: passed to the ``DataLoader`` (``num_workers``,
            ``pin_memory`` ...). A ``collate_fn`` is your collate of *samples*,
            as in training: it is wrapped in :class:`~remix_data.RemixCollate`.

    With missing modalities (the filter's ``available``), a sample is scored
    only on the modalities it has.

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
        >>> def fused(sample, modality):    # a fused head only: both inputs summed
        ...     x = sample["a"] + 4 * sample["b"]
        ...     return torch.cat([x, -x], 1)
        >>> scoring_pass(fused, data, filt, batch_size=4, progress=False, fused_only=True)
        6
        >>> filt.assignment().tolist()      # a alone is less sure than b alone (4) below 4
        [0, 0, 0, 0, 1, 1]
    """
    if not isinstance(filter, HardSampleFilter):
        raise TypeError(f"filter should be a HardSampleFilter, but got filter={filter!r}")
    if not isinstance(data, ModalityDecoupler):
        raise TypeError(
            "data should be the ModalityDecoupler of training (parts.data, or "
            "ModalityDecoupler(dataset, filt)), not the raw dataset, but got "
            f"data={type(data).__name__} of {len(data) if hasattr(data, '__len__') else '?'} "
            "items"
        )
    check_positive_int("batch_size", batch_size)
    check_fraction("fraction", fraction)
    if epoch is not None:
        check_nonnegative_int("epoch", epoch)
    check_int("seed", seed)
    check_bool("progress", progress)
    check_bool("fused_only", fused_only)
    world, me = world_info(num_replicas, rank, filter.process_group)
    n = len(data)
    if n != filter.num_samples:
        raise ValueError(
            f"data has {n} samples but filter.num_samples={filter.num_samples}; "
            "they must describe the same training set"
        )
    if data.modalities != filter.modalities:
        raise ValueError(
            f"data should mask the filter's modalities in its order, but got "
            f"data.modalities={data.modalities} and filter.modalities={filter.modalities}"
        )
    _check_order(filter, epoch)
    if fraction < 1.0:
        gen = epoch_generator(seed, epoch or 0, SCORING)
        count = max(1, round(fraction * n))
        chosen = torch.randperm(n, generator=gen)[:count].sort().values.tolist()
    else:
        chosen = list(range(n))
    chosen = chosen[me::world]
    batches = BatchSampler(chosen, batch_size=batch_size, drop_last=False)
    available = filter.available
    gaps = None if available is None else ~available.T.numpy()
    collate = loader_kwargs.pop("collate_fn", None)
    if isinstance(collate, RemixCollate):
        collate = collate.collate_fn
    if collate is not None and not callable(collate):
        raise TypeError(f"collate_fn should be callable, but got collate_fn={collate!r}")
    if fused_only:
        wrapped: Callable[[list[Any]], Any] = _EachModality(
            data.masker, gaps, collate if collate is not None else default_collate
        )
    else:
        wrapped = RemixCollate(collate)
    loader = DataLoader(data, batch_sampler=batches, collate_fn=wrapped, **loader_kwargs)
    scored = 0
    bar = tqdm(loader, desc="remix scoring", disable=not progress or me != 0)
    with torch.no_grad():
        if fused_only:
            for index, per_modality in bar:
                _write_fused(fn, filter, index, per_modality)
                scored += len(index)
            return scored
        for sample, index, _ in bar:
            outputs, targets = _outputs(fn(sample), fused_only=False)
            _write(filter, index, outputs, targets, gaps)
            scored += len(index)
    return scored


def _write(
    filter: HardSampleFilter,
    index: torch.Tensor,
    outputs: Mapping[str, Any],
    targets: Any,
    gaps: np.ndarray | None,
) -> None:
    """Write one batch's scores; with missing modalities, each head only where it is."""
    if gaps is None:
        filter.update(index, outputs, targets, modality=ALL)
        return
    names = filter.modalities
    for name, output in outputs.items():
        if name not in names:  # update raises, naming the unknown modality
            filter.update(index, {name: output}, targets, modality=ALL)
        rows = torch.from_numpy(np.flatnonzero(~gaps[names.index(name), index.numpy()]))
        if len(rows) == len(index):
            filter.update(index, {name: output}, targets, modality=ALL)
        elif len(rows):
            picked = None if targets is None else torch.as_tensor(targets)[rows]
            filter.update(index[rows], {name: output[rows.to(output.device)]}, picked, modality=ALL)


def _write_fused(
    fn: ScoreFn, filter: HardSampleFilter, index: torch.Tensor, per_modality: list[Any]
) -> None:
    """Score each modality of one batch from the fused logits of ``fn`` on it alone."""
    for name, (rows, batch) in zip(filter.modalities, per_modality):
        if not rows:
            continue
        picked = index[rows]
        result = fn(batch, torch.full((len(rows),), filter.modalities.index(name)))
        logits, targets = _outputs(result, fused_only=True)
        filter.update(picked, {name: logits}, targets, modality=ALL)
