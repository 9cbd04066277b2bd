"""One source of truth for modality names: a filter (or any source) or a sequence.

The decoupler, :func:`~remix_data.remix_loss` and :func:`~remix_data.mask_features`
take their modality names either from the :class:`~remix_data.HardSampleFilter`
itself (anything with ``modalities`` and ``num_samples``) or from a plain
sequence of names (the parts used on their own).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, TypeGuard

import torch

from ._checks import check_modalities, check_modality_id, check_modality_ids
from .vocabulary import ModalitySource

__all__ = ["is_source", "modality_names", "modality_rows", "register"]

#: The filters alive in this process, whose name orders a plain tuple is checked against.
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()
#: Registrations so far: a verdict of :func:`_check_order` holds until the next one.
_registered = 0
#: Name tuples checked (valid names), and the registration count when each passed the order check.
_VALID: set[tuple[str, ...]] = set()
_PASSED: dict[tuple[str, ...], int] = {}


def is_source(value: Any) -> TypeGuard[ModalitySource]:
    """Whether ``value`` knows modality names and a dataset size (e.g. a filter)."""
    return hasattr(value, "modalities") and hasattr(value, "num_samples")


def register(source: ModalitySource) -> None:
    """Remember ``source`` (weakly): a filter alive in this process (see :func:`modality_names`)."""
    global _registered
    _LIVE.add(source)
    _registered += 1  # a new filter may hold another order: checks are made again


def _check_order(name: str, names: tuple[str, ...]) -> None:
    """Refuse ``names`` if live filters hold the same modalities, none in this order."""
    orders = {tuple(f.modalities) for f in list(_LIVE) if set(f.modalities) == set(names)}
    if orders and names not in orders:
        raise ValueError(
            f"{name}={names!r} lists the modalities of the filter in another order (the "
            f"filter's: {sorted(orders)[0]!r}), so modality id m would mean another modality "
            f"here than in the filter; pass the filter itself as {name}"
        )


def modality_names(name: str, value: Any, *, check_order: bool = False) -> tuple[str, ...]:
    """The modality names in id order, from a source or a sequence of names.

    A mapping is rejected: its insertion order, not its values, would define
    the modality ids, which is the mistake this guards against. With
    ``check_order`` so is a sequence that lists the modalities of a filter alive
    in this process in another order (and of no such filter in this order):
    :func:`~remix_data.remix_loss` and :func:`~remix_data.mask_features`, which
    see no key that names the filter, check this way.

    Example:
        >>> from remix_data import HardSampleFilter
        >>> filt = HardSampleFilter(3, ("audio", "video"))
        >>> modality_names("modalities", filt)
        ('audio', 'video')
        >>> modality_names("modalities", ("video", "audio"), check_order=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: modalities=('video', 'audio') lists the modalities of the filter in \
another order ...
        >>> modality_names("modalities", {"video": 1, "audio": 0})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        TypeError: modalities should be the filter or a sequence of names ... \
locations={'video': 1, 'audio': 0}
    """
    if is_source(value):
        held = value.modalities
        if _known(held, False):
            return held
        return _valid(check_modalities(f"{name}.modalities", tuple(held)))
    if _known(value, check_order):
        return value  # type: ignore[no-any-return]
    if isinstance(value, Mapping):
        raise TypeError(
            f"{name} should be the filter or a sequence of names in the filter's order, but "
            f"got the mapping {name}={dict(value)!r}, whose order (not its values) would "
            "define the modality ids; pass the filter (or the names in its order) and give "
            f"positions as locations={dict(value)!r}"
        )
    names = _valid(check_modalities(name, value))
    if check_order:
        _check_order(name, names)
        if len(_PASSED) >= 64:
            _PASSED.clear()
        _PASSED[names] = _registered
    return names


def _known(value: Any, check_order: bool) -> bool:
    """Whether the tuple ``value`` passed these checks before (with no filter made since, for
    the order: a filter that died since cannot make it wrong)."""
    if type(value) is not tuple:
        return False
    try:
        return _PASSED.get(value) == _registered if check_order else value in _VALID
    except TypeError:  # an unhashable item: check_modalities names it
        return False


def _valid(names: tuple[str, ...]) -> tuple[str, ...]:
    """Remember ``names``, which :func:`check_modalities` accepted."""
    if len(_VALID) >= 64:
        _VALID.clear()
    _VALID.add(names)
    return names


def modality_rows(
    name: str, modality: Any, rows: int, count: int, device: torch.device
) -> torch.Tensor:
    """``modality`` as a ``[rows]`` id tensor on ``device``; one id is broadcast.

    An ``int`` (or a 0-d tensor) stands for the whole batch, which is what the
    loader's one-modality-per-batch plan makes natural to pass. Ids are checked
    by :func:`~remix_data._checks.check_modality_id` (``ALL``, ``PAD`` or
    ``[0, count)``); a device tensor's values are not read (that would
    synchronise the device).

    Example:
        >>> modality_rows("modality", 1, 3, 2, torch.device("cpu")).tolist()
        [1, 1, 1]
    """
    if isinstance(modality, bool) or not isinstance(modality, (int, torch.Tensor)):
        raise TypeError(
            f"{name} should be an integer or an integer tensor, but got {name}={modality!r}"
        )
    if isinstance(modality, int):
        value = check_modality_id(name, modality, count)
        return torch.full((rows,), value, dtype=torch.int64, device=device)
    check_modality_ids(name, modality, count)
    ids = modality.to(device, non_blocking=True)
    return ids.expand(rows) if ids.dim() == 0 else ids
