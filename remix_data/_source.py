"""One source of truth for modality names: a filter (or any source) or a sequence.

The decoupler, :func:`~remix_data.remix_loss` and :func:`~remix_data.mask_features`
take their modality names either from the :class:`~remix_data.HardSampleFilter`
itself (anything with ``modalities`` and ``num_samples``) or from a plain
sequence of names (the parts used on their own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

import torch

from ._checks import check_modalities
from .vocabulary import PAD, ModalitySource

__all__ = ["is_source", "modality_names", "modality_rows"]


def is_source(value: Any) -> TypeGuard[ModalitySource]:
    """Whether ``value`` knows modality names and a dataset size (e.g. a filter)."""
    return hasattr(value, "modalities") and hasattr(value, "num_samples")


def modality_names(name: str, value: Any) -> tuple[str, ...]:
    """The modality names in id order, from a source or a sequence of names.

    A mapping is rejected: its insertion order, not its values, would define
    the modality ids, which is the mistake this guards against.

    Example:
        >>> from remix_data import HardSampleFilter
        >>> modality_names("modalities", HardSampleFilter(3, ("audio", "video")))
        ('audio', 'video')
        >>> modality_names("modalities", {"video": 1, "audio": 0})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        TypeError: modalities should be the filter or a sequence of names ... \
locations={'video': 1, 'audio': 0}
    """
    if is_source(value):
        return check_modalities(f"{name}.modalities", tuple(value.modalities))
    if isinstance(value, Mapping):
        raise TypeError(
            f"{name} should be the filter or a sequence of names in the filter's order, but "
            f"got the mapping {name}={dict(value)!r}, whose order (not its values) would "
            "define the modality ids; pass the filter (or the names in its order) and give "
            f"positions as locations={dict(value)!r}"
        )
    return check_modalities(name, value)


def modality_rows(
    name: str, modality: Any, rows: int, count: int, device: torch.device
) -> torch.Tensor:
    """``modality`` as a ``[rows]`` id tensor on ``device``; one id is broadcast.

    An ``int`` (or a 0-d tensor) stands for the whole batch, which is what the
    loader's one-modality-per-batch plan makes natural to pass. A Python ``int``
    outside ``[-1, count)`` is rejected (``PAD``, -2, is allowed: a row that only
    fills a batch), and so is a CPU tensor holding one; a device tensor's values
    are not read (that would synchronise the device).

    Example:
        >>> modality_rows("modality", 1, 3, 2, torch.device("cpu")).tolist()
        [1, 1, 1]
    """
    if isinstance(modality, bool) or not isinstance(modality, (int, torch.Tensor)):
        raise TypeError(
            f"{name} should be an integer or an integer tensor, but got {name}={modality!r}"
        )
    if isinstance(modality, int):
        if not PAD <= modality < count:
            raise ValueError(
                f"{name} should be ALL (-1), PAD (-2) or lie in [0, {count}), "
                f"but got {name}={modality}"
            )
        return torch.full((rows,), modality, dtype=torch.int64, device=device)
    if modality.is_floating_point() or modality.is_complex() or modality.dtype == torch.bool:
        raise TypeError(f"{name} should hold integers, but got a tensor of dtype {modality.dtype}")
    if modality.device.type == "cpu" and modality.numel():
        low, high = int(modality.min()), int(modality.max())
        if low < PAD or high >= count:
            raise ValueError(
                f"{name} should hold ALL (-1), PAD (-2) or ids in [0, {count}), but got an id "
                f"{low if low < PAD else high}"
            )
    ids = modality.to(device)
    return ids.expand(rows) if ids.dim() == 0 else ids
