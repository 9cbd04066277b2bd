"""One :meth:`~remix_data.HardSampleFilter.update` call, checked before anything is written.

:func:`check_call` reads what a call gives (indices, outputs, modality ids) and
returns a :class:`Call`: the table rows of the heads it writes, its indices and
ids (host arrays, or device tensors that are not read), and the device its
outputs live on. Everything given on the host is checked here, at the call;
values that live on a device are not read (that would wait for the device) and
are checked when the scores reach the host.

Example:
    >>> import torch
    >>> call = check_call(
    ...     [0, 2], {"b": torch.zeros(2, 3), "a": torch.zeros(2, 3)}, 1, ("a", "b"), 4,
    ...     snapshot_epoch=None, score="confidence",
    ... )
    >>> call.rows.tolist(), call.names, call.ids   # modality 1: head "b" only, every row
    ([1], ('b',), None)
"""

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import torch

from ._checks import as_index_array, check_integer_dtype, check_modality_id, check_modality_ids
from .scores import check_outputs
from .vocabulary import ALL, PAD

__all__ = ["Call", "check_call"]


class Call(NamedTuple):
    """A checked update call."""

    #: int ``[k]``: the table rows of the heads the call writes (in ``outputs`` order).
    rows: np.ndarray
    #: their names (keys of ``outputs``).
    names: tuple[str, ...]
    #: int64 ``[B]`` host indices (checked), or a device tensor (not read).
    indices: np.ndarray | torch.Tensor
    #: int64 ``[B]`` host ids (checked), a device tensor (not read), or ``None``.
    ids: np.ndarray | torch.Tensor | None
    #: the outputs' device, or ``None`` for CPU outputs.
    device: torch.device | None


def _device_of(outputs: Mapping[str, Any]) -> torch.device | None:
    device = None
    for t in outputs.values():
        if isinstance(t, torch.Tensor) and t.device.type != "cpu":
            if device is None:
                device = t.device
            elif t.device != device:
                devices = {str(t.device) for t in outputs.values() if isinstance(t, torch.Tensor)}
                devices.discard("cpu")
                raise ValueError(
                    f"outputs should live on one device, but got tensors on {sorted(devices)}"
                )
    return device


def _indices(indices: Any, device: torch.device | None, n: int) -> np.ndarray | torch.Tensor:
    if isinstance(indices, torch.Tensor) and device is not None and indices.device == device:
        check_integer_dtype("indices", indices)
        if indices.dim() != 1:
            raise ValueError(
                f"indices should be one-dimensional, but got shape {tuple(indices.shape)}"
            )
        return indices  # on the device: its range is checked on the host later
    return as_index_array("indices", indices, n)


def _ids(
    modality: Any, batch: int, count: int, device: torch.device | None
) -> np.ndarray | torch.Tensor | int | None:
    """``modality`` as one ``int`` id, int64 ``[B]`` host ids, or as given on its device."""
    if modality is None:
        return None
    if isinstance(modality, torch.Tensor) and device is not None and modality.device == device:
        check_integer_dtype("modality", modality)
        if modality.dim() > 1 or (modality.dim() == 1 and modality.shape[0] != batch):
            raise ValueError(
                f"modality should have the shape of indices {(batch,)} or be one id, "
                f"but got {tuple(modality.shape)}"
            )
        return modality  # not read: its range is checked on the host later
    if isinstance(modality, torch.Tensor):
        shape = tuple(modality.shape)
    elif isinstance(modality, (np.ndarray, Sequence)) and not isinstance(modality, str):
        modality = np.asarray(modality)
        shape = modality.shape
        if not modality.size:
            modality = modality.astype(np.int64)
    else:
        return check_modality_id("modality", modality, count)
    if shape not in ((), (batch,)):
        raise ValueError(
            f"modality should have the shape of indices {(batch,)} or be one id, but got {shape}"
        )
    if isinstance(modality, torch.Tensor):
        if modality.device.type != "cpu":
            check_integer_dtype("modality", modality)  # its values are not read
            return modality
        check_integer_dtype("modality", modality)
        modality = modality.numpy()  # read once, in numpy: no torch op on the host
    span = check_modality_ids("modality", modality, count)
    if span is not None and span[0] == span[1]:
        return span[0]  # one id for the batch
    return np.asarray(modality).astype(np.int64, copy=False)


@lru_cache(maxsize=256)
def _head_rows(modalities: tuple[str, ...], names: tuple[str, ...]) -> np.ndarray:
    """The table rows of the heads ``names`` (read-only; made once per pair)."""
    positions = {name: i for i, name in enumerate(modalities)}
    unknown = [name for name in names if name not in positions]
    if unknown:
        raise ValueError(f"outputs names unknown modality {unknown[0]!r}; known: {modalities}")
    rows = np.array([positions[name] for name in names], dtype=np.int64)
    rows.flags.writeable = False
    return rows


@lru_cache(maxsize=256)
def _heads_of(
    modalities: tuple[str, ...], names: tuple[str, ...], m: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The rows and names of the heads among ``names`` that rows of id ``m`` (not ALL) write."""
    rows = _head_rows(modalities, names)
    live = rows == m
    kept = rows[live]
    kept.flags.writeable = False
    return kept, tuple(n for n, keep in zip(names, live) if keep)


def _live(rows: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
    """Which heads (table ``rows``) some row of the call writes (``ids`` checked); ``None``: all."""
    present = np.bincount(ids - PAD, minlength=1 - PAD + int(rows.max(initial=0)))  # by id
    if present[ALL - PAD]:
        return None
    live: np.ndarray = present[rows - PAD] > 0
    return None if live.all() else live


def check_call(
    indices: Any,
    outputs: Any,
    modality: Any,
    modalities: tuple[str, ...],
    num_samples: int,
    *,
    snapshot_epoch: int | None,
    score: str,
    device_path: bool = False,
) -> Call:
    """Check an update call (see the module); ``device_path`` routes CPU outputs as a device's."""
    if type(outputs) is not dict and not isinstance(outputs, Mapping):
        raise TypeError(
            f"outputs should map modality names to tensors, but got {type(outputs).__name__}"
        )
    device = _device_of(outputs)
    if device is None and device_path:
        device = torch.device("cpu")
    index = _indices(indices, device, num_samples)
    batch = int(index.shape[0])
    names = tuple(outputs)
    rows = _head_rows(modalities, names)
    if modality is None and len(outputs) > 1 and snapshot_epoch is not None:
        raise ValueError(
            f"update got outputs for {list(outputs)} without modality= after the snapshot "
            f"of remix epoch {snapshot_epoch}: remix batches are unimodal, so every "
            "other head saw masked inputs. Pass the loader's ids "
            "(update(index, outputs, modality=modality)), or modality=ALL for rows that "
            "saw every modality (a scoring pass)"
        )
    ids = _ids(modality, batch, len(modalities), device)
    if isinstance(ids, int):  # write only the heads some row trains
        if ids != ALL:
            rows, names = _heads_of(modalities, names, ids)
    elif isinstance(ids, np.ndarray) and names:
        live = _live(rows, ids)
        if live is not None:
            rows, names = rows[live], tuple(n for n, keep in zip(names, live) if keep)
    check_outputs(outputs, score, batch, names if device is None else ())  # device: not read
    if isinstance(ids, int):  # one id for the batch: every head left is written for every row
        ids = None if ids != PAD else np.full(batch, PAD, dtype=np.int64)
    return Call(rows, names, index, ids, device)
