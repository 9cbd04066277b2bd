"""Argument validation shared by the public parts.

Every check raises at the call that received the bad value, with a message that
names the argument and shows the value, in the style of torch's own
``BatchSampler`` ("batch_size should be a positive integer value, but got
batch_size=0").

One rule decides the error type everywhere in the package:

- ``TypeError`` when the value has the wrong *type*: a float or a bool where an
  int is needed (``batch_size=2.0``), a non-bool flag (``drop_last="yes"``), a
  non-string choice, a float index tensor;
- ``ValueError`` when the type is right but the *value* is not: ``batch_size=0``,
  an unknown choice (``order="video_first"``), a fraction above 1, an index out
  of range, a wrong shape.

Example:
    >>> check_positive_int("batch_size", 0)
    Traceback (most recent call last):
    ValueError: batch_size should be a positive integer value, but got batch_size=0
    >>> check_positive_int("batch_size", 2.0)
    Traceback (most recent call last):
    TypeError: batch_size should be a positive integer value, but got batch_size=2.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .vocabulary import ALL, PAD

__all__ = [
    "as_index_array",
    "check_integer_dtype",
    "check_modality_id",
    "check_modality_ids",
    "check_modality_row",
    "state_tensor",
    "as_index_tensor",
    "check_bool",
    "check_int",
    "check_modalities",
    "check_positive_int",
    "check_nonnegative_int",
    "check_choice",
    "check_fraction",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, what: str = "an integer") -> int:
    """Return ``value`` if it is an ``int`` (not a bool), else raise ``TypeError``."""
    if not _is_int(value):
        raise TypeError(f"{name} should be {what}, but got {name}={value!r}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an ``int`` > 0 (``TypeError`` / ``ValueError`` otherwise)."""
    what = "a positive integer value"
    if check_int(name, value, what=what) <= 0:
        raise ValueError(f"{name} should be {what}, but got {name}={value!r}")
    return int(value)


def check_nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an ``int`` >= 0 (``TypeError`` / ``ValueError`` otherwise)."""
    what = "a non-negative integer value"
    if check_int(name, value, what=what) < 0:
        raise ValueError(f"{name} should be {what}, but got {name}={value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a ``bool``, else raise ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be a boolean value, but got {name}={value!r}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices`` (``TypeError`` for a non-string)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} should be one of {tuple(choices)}, but got {name}={value!r}")
    if value not in choices:
        raise ValueError(f"{name} should be one of {tuple(choices)}, but got {name}={value!r}")
    return value


def check_fraction(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float in (0, 1] (or [0, 1] with ``allow_zero``)."""
    interval = "[0, 1]" if allow_zero else "(0, 1]"
    message = f"{name} should be a number in {interval}, but got {name}={value!r}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(message)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):  # also rejects NaN
        raise ValueError(message)
    return float(value)


def check_modalities(name: str, modalities: Any) -> tuple[str, ...]:
    """Return ``modalities`` as a tuple of >= 2 distinct, non-empty strings."""
    if isinstance(modalities, str) or not isinstance(modalities, Sequence):
        raise TypeError(
            f"{name} should be a sequence of modality names, but got {name}={modalities!r}"
        )
    names = tuple(modalities)
    if len(names) < 2:
        raise ValueError(f"{name} should name at least two modalities, but got {name}={names!r}")
    for item in names:
        if not isinstance(item, str) or not item:
            raise TypeError(
                f"{name} should hold non-empty strings, but got {item!r} in {name}={names!r}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"{name} should not repeat a modality, but got {name}={names!r}")
    return names


#: The usual integer tensor dtypes, accepted by :func:`check_integer_dtype` at a glance.
_INTEGER_DTYPES = frozenset({torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8})


def check_integer_dtype(name: str, value: torch.Tensor | np.ndarray) -> None:
    """Raise ``TypeError`` unless the tensor or array ``value`` holds integers.

    Floats (an index must never be rounded), bools and complex numbers are refused.

    Example:
        >>> check_integer_dtype("indices", torch.zeros(2))
        Traceback (most recent call last):
        TypeError: indices should hold integers, but got a tensor of dtype torch.float32
    """
    if isinstance(value, torch.Tensor):
        if value.dtype in _INTEGER_DTYPES:
            return
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} should hold integers, but got a tensor of dtype {value.dtype}")
    elif value.dtype.kind not in "iu":
        raise TypeError(f"{name} should hold integers, but got an array of dtype {value.dtype}")


def _id_range(count: int, pad: bool) -> str:
    return f"ALL ({ALL}){f', PAD ({PAD})' if pad else ''} or lie in [0, {count})"


def check_modality_id(name: str, value: Any, count: int, *, pad: bool = True) -> int:
    """Return one modality id (a Python or numpy int) as an ``int``, checked.

    Valid: :data:`~remix_data.ALL`, an id in ``[0, count)`` and, with ``pad``,
    :data:`~remix_data.vocabulary.PAD`. ``TypeError`` for a non-int (a bool
    too), ``ValueError`` for an int out of range.

    Example:
        >>> check_modality_id("modality", 2, 2)
        Traceback (most recent call last):
        ValueError: modality should be ALL (-1), PAD (-2) or lie in [0, 2), but got modality=2
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} should be a modality id (an int), but got {name}={value!r}")
    if not (PAD if pad else ALL) <= value < count:
        raise ValueError(f"{name} should be {_id_range(count, pad)}, but got {name}={value}")
    return int(value)


def check_modality_ids(
    name: str, ids: torch.Tensor | np.ndarray, count: int, *, pad: bool = True
) -> tuple[int, int] | None:
    """Check an integer tensor or array of modality ids; a device tensor's values are not read.

    Reading values on an accelerator would wait for it, so only their dtype is
    checked there; host values are checked against :func:`check_modality_id`'s
    range. Returns the smallest and largest host id (``None``: not read, or no id).

    Example:
        >>> check_modality_ids("modality", np.array([0, 5, 1]), 2)
        Traceback (most recent call last):
        ValueError: modality should hold ALL (-1), PAD (-2) or ids in [0, 2), but got an id 5
    """
    check_integer_dtype(name, ids)
    if isinstance(ids, torch.Tensor):
        if ids.device.type != "cpu":
            return None
        ids = ids.numpy()  # an integer tensor never requires grad
    if not ids.size:
        return None
    low, high = int(ids.min()), int(ids.max())
    if low < (PAD if pad else ALL) or high >= count:
        allowed = _id_range(count, pad).replace("or lie in", "or ids in")
        bad = high if high >= count else low
        raise ValueError(f"{name} should hold {allowed}, but got an id {bad}")
    return low, high


def check_modality_row(value: Any, names: tuple[str, ...], name: str = "modality") -> int:
    """A modality given by name or by id in ``[0, M)`` as its id, checked.

    Example:
        >>> check_modality_row("video", ("audio", "video"))
        1
    """
    if isinstance(value, str):
        if value not in names:
            raise ValueError(f"{name} should be one of {names}, but got {name}={value!r}")
        return names.index(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} should be a modality name or id, but got {name}={value!r}")
    if not 0 <= value < len(names):
        raise ValueError(
            f"{name} should lie in [0, {len(names)}) for modalities={names}, but got "
            f"{name}={value!r}"
        )
    return int(value)


def state_tensor(
    state: Mapping[str, Any], key: str, shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """``state[key]``, checked to be a CPU tensor of exactly ``shape`` and ``dtype``."""
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"state[{key!r}] should be a tensor, but got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(
            f"state[{key!r}] should have shape {shape}, but got shape {tuple(value.shape)} "
            "(a truncated or foreign table)"
        )
    if value.dtype != dtype:
        raise TypeError(f"state[{key!r}] should have dtype {dtype}, but got {value.dtype}")
    if value.device.type != "cpu":
        raise ValueError(
            f"state[{key!r}] should be on the CPU, but is on {value.device} "
            "(load the checkpoint with torch.load(..., map_location='cpu'))"
        )
    return value.detach()


def as_index_array(name: str, indices: Any, num_samples: int) -> np.ndarray:
    """Return ``indices`` as a 1-D int64 numpy array with values in ``[0, num_samples)``.

    Accepts tensors (any device), numpy arrays and sequences of ints. Float or
    bool dtypes are rejected rather than cast, so that an index can never be
    silently rounded. Validation runs in numpy: a few microseconds per batch.
    """
    if isinstance(indices, torch.Tensor):
        check_integer_dtype(name, indices)
        on_host = indices.device.type == "cpu"  # read as numpy: no torch op on the host
        array = (indices if on_host else indices.cpu()).numpy()  # an integer: never requires grad
    elif isinstance(indices, np.ndarray):
        array = indices
        check_integer_dtype(name, array)
    elif isinstance(indices, Sequence) and not isinstance(indices, (str, bytes)):
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in indices):
            raise TypeError(f"{name} should hold integers, but got {name}={list(indices)!r}")
        array = np.asarray(list(indices), dtype=np.int64)
    else:
        raise TypeError(
            f"{name} should be an integer tensor, array or sequence, but got {name}={indices!r}"
        )
    if array.ndim != 1:
        raise ValueError(f"{name} should be one-dimensional, but got shape {tuple(array.shape)}")
    array = array.astype(np.int64, copy=False)
    if array.size and int(array.view(np.uint64).max()) >= num_samples:  # a negative: huge
        low = int(array.min())
        bad = low if low < 0 else int(array.max())
        raise ValueError(
            f"{name} should lie in [0, {num_samples}) (num_samples={num_samples}), "
            f"but got an index {bad}"
        )
    return array


def as_index_tensor(name: str, indices: Any, num_samples: int) -> torch.Tensor:
    """:func:`as_index_array` as a 1-D int64 CPU tensor."""
    return torch.from_numpy(np.ascontiguousarray(as_index_array(name, indices, num_samples)))
