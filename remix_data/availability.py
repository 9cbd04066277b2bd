"""Which modalities each sample has: the availability table of missing-modality data.

Audio, video and text corpora routinely lack a modality in some samples (a clip
without a transcript, a silent video). Such a sample must never be sent to the
modality it lacks (it would train on nothing), and its head's output on the
missing input says nothing about its hardness. The *availability* of a data
set is a bool ``[N, M]`` table: ``available[i, m]`` is ``True`` when sample
``i`` holds ``modalities[m]``. Give it to :class:`~remix_data.HardSampleFilter`
(``available=``), the one place that decides assignments; the
:class:`~remix_data.ModalityDecoupler` built over that filter reads it from
there.

- :func:`as_available` validates a table given by the user (any bool tensor,
  array or nested list; one row per sample).
- :func:`scan_available` builds it by reading every sample once (a value that
  is ``None`` or absent is missing). That is a full pass over the data set:
  build the table from your metadata instead when reading samples is costly
  (a column of your index file, the lengths of your transcripts ...).

Example:
    >>> import torch
    >>> data = [{"audio": torch.ones(2), "text": None},
    ...         {"audio": torch.ones(2), "text": torch.ones(3)}]
    >>> scan_available(data, ("audio", "text")).tolist()
    [[True, False], [True, True]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ._checks import check_modalities
from .masking import Location, locate

__all__ = ["as_available", "is_missing", "scan_available"]


def is_missing(sample: Any, location: Location) -> bool:
    """Whether ``sample`` lacks the modality at ``location``: absent, or ``None``.

    Example:
        >>> is_missing({"a": None}, "a"), is_missing({"a": 1}, "b"), is_missing((1, 2), 1)
        (True, True, False)
    """
    try:
        return locate(sample, location) is None
    except KeyError:
        return True


def as_available(value: Any, num_samples: int, modalities: Sequence[str]) -> np.ndarray | None:
    """``value`` as a bool ``[M, N]`` numpy table (modality-major), or ``None`` if all true.

    ``value`` is ``[N, M]``: one row per sample, one column per modality, in
    the order of ``modalities``. Raises ``TypeError`` for a non-bool table and
    ``ValueError`` for a wrong shape, for a sample with no modality at all (it
    could train nothing) and for a modality no sample has, naming the first.

    Example:
        >>> as_available([[True, False], [True, True]], 2, ("a", "b")).tolist()
        [[True, True], [False, True]]
        >>> as_available([[True, True]], 1, ("a", "b")) is None
        True
        >>> as_available([[False, False]], 1, ("a", "b"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: available should give every sample at least one modality, but sample 0 ...
    """
    names = check_modalities("modalities", modalities)
    if isinstance(value, torch.Tensor):
        if value.dtype != torch.bool:
            raise TypeError(
                f"available should be a bool table [num_samples, {len(names)}], but got a "
                f"tensor of dtype {value.dtype}"
            )
        array = value.detach().cpu().numpy()
    elif isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        array = np.asarray(value)
    else:
        raise TypeError(
            f"available should be a bool table [num_samples, {len(names)}] (tensor, array or "
            f"nested list), but got {type(value).__name__}"
        )
    if array.dtype != np.bool_:
        raise TypeError(
            f"available should hold bools (True: the sample has the modality), but got "
            f"dtype {array.dtype}"
        )
    expected = (num_samples, len(names))
    if array.shape != expected:
        raise ValueError(
            f"available should have shape [num_samples, len(modalities)] = {list(expected)} "
            f"for modalities={names}, but got {list(array.shape)}"
        )
    if array.all():
        return None
    empty = np.flatnonzero(~array.any(1))
    if empty.size:
        raise ValueError(
            f"available should give every sample at least one modality, but sample "
            f"{int(empty[0])} has none of {names}"
        )
    unused = np.flatnonzero(~array.any(0))
    if unused.size:
        raise ValueError(
            f"available should give every modality at least one sample, but no sample has "
            f"{names[int(unused[0])]!r} (a misspelt name or location?)"
        )
    return np.ascontiguousarray(array.T)


def scan_available(
    dataset: Any,
    modalities: Sequence[str],
    *,
    locations: Mapping[str, Location] | None = None,
) -> torch.Tensor:
    """Read every sample once and return its availability, bool ``[N, M]``.

    A modality is missing from a sample when its value is ``None`` or its key,
    position or attribute is absent (``locations`` as for
    :class:`~remix_data.ModalityDecoupler`). This reads (and decodes) the whole
    data set once, in this process: for large data sets build the table from
    metadata instead.
    """
    names = check_modalities("modalities", modalities)
    where = [dict(locations or {}).get(n, n) for n in names]
    table = torch.ones(len(dataset), len(names), dtype=torch.bool)
    for i in range(len(dataset)):
        sample = dataset[i]
        for m, location in enumerate(where):
            if is_missing(sample, location):
                table[i, m] = False
    return table
