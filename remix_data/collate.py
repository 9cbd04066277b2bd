"""Collating what the remix loader yields, with the project's own ``collate_fn``.

:class:`~remix_data.ModalityDecoupler` turns every key into a triple
``(sample, index, modality)``. With the default collate the loader yields
``(batch, index, modality)``: the samples collated as torch would collate them,
and two ``int64`` tensors of shape ``[B]`` (``modality`` holds
:data:`~remix_data.vocabulary.PAD` on rows that only fill a batch). A project's
existing ``collate_fn`` expects a list of *samples*, not of triples;
:class:`RemixCollate` runs it on the samples alone and collates index and
modality alongside.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from .decoupler import RemixItem
from .vocabulary import PAD

__all__ = ["RemixCollate"]

#: What the decoupler's items are: tuples, the first of a batch a ``RemixItem``.
_TRIPLES = {tuple, RemixItem}


def _int64(values: tuple[Any, ...]) -> torch.Tensor:
    """``torch.tensor(values, dtype=torch.int64)`` for a batch of ints, without its
    per-element type dispatch (the costs are in docs/architecture.md, "Hot paths").

    One repeated value (a unimodal batch's modality) is a ``torch.full``; one
    value followed by :data:`~remix_data.vocabulary.PAD` rows (a batch completed
    by the sampler) two slice fills; other plain ints go through an ``array``
    buffer (which refuses floats and other types: those take ``torch.tensor``'s
    path, with its own checks). The result owns torch memory, so it can move to
    shared memory from a ``DataLoader`` worker.
    """
    first, n = values[0], len(values)
    if type(first) is int:
        real = values.count(first)
        if real == n:
            return torch.full((n,), first, dtype=torch.int64)
        if values[-1] == PAD and values.count(PAD) == n - real and values.index(PAD) == real:
            out = torch.empty(n, dtype=torch.int64)
            column = out.numpy()
            column[:real], column[real:] = first, PAD
            return out
    try:
        buffer = array("q", values)
    except (TypeError, OverflowError):
        return torch.tensor(values, dtype=torch.int64)
    return torch.frombuffer(buffer, dtype=torch.int64).clone()


class RemixCollate:
    r"""``collate_fn`` for a remix loader that runs your collate on the samples only.

    Args:
        collate_fn: your collate function, called with the list of samples
            exactly as it is without remixing (masked modalities zeroed or
            dropped as the decoupler was asked). ``None`` uses torch's
            ``default_collate``.

    Calling it on a list of ``(sample, index, modality)`` triples returns
    ``(collate_fn(samples), index, modality)`` with ``index`` and ``modality``
    as ``int64`` tensors of shape ``[B]``. Picklable when ``collate_fn`` is, so
    it works in ``DataLoader`` workers. Your ``collate_fn`` must keep the
    samples' order (row ``r`` is the sample of ``index[r]``): one that sorts
    them gives rows another sample's index and modality.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader
        >>> from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler
        >>> def pad(samples):                       # a project's own collate_fn
        ...     audio = [s["audio"] for s in samples]
        ...     return torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
        >>> base = [{"audio": torch.ones(i + 1), "video": torch.ones(2)} for i in range(4)]
        >>> filt = HardSampleFilter(len(base), ("audio", "video"))
        >>> data = ModalityDecoupler(base, filt, mask="none")
        >>> sampler = ReassemblingBatchSampler(filt, batch_size=2)
        >>> loader = DataLoader(data, batch_sampler=sampler, collate_fn=RemixCollate(pad))
        >>> audio, index, modality = next(iter(loader))
        >>> audio.shape, index.tolist(), modality.tolist()
        (torch.Size([2, 3]), [0, 2], [0, 0])
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any] | None = None) -> None:
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn should be callable, but got collate_fn={collate_fn!r}")
        self.collate_fn = collate_fn

    def __call__(self, batch: Sequence[Any]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        if not batch or not set(map(type, batch)) <= _TRIPLES or set(map(len, batch)) != {3}:
            first = batch[0] if batch else None
            raise TypeError(
                "RemixCollate should receive the (sample, index, modality) triples of a "
                f"ModalityDecoupler, but got a batch of {len(batch)} items whose first is "
                f"{type(first).__name__}: use it as the collate_fn of a loader over the decoupler"
            )
        samples, index, modality = zip(*batch)
        collate = self.collate_fn if self.collate_fn is not None else default_collate
        return collate(list(samples)), _int64(index), _int64(modality)

    def __repr__(self) -> str:
        name = getattr(self.collate_fn, "__name__", repr(self.collate_fn))
        return f"{type(self).__name__}({'default_collate' if self.collate_fn is None else name})"
