"""The HAPT task of the jobs: accelerometer strong, gyroscope weak.

Subjects 1-21 train (optionally minus validation subjects), 22-30 test;
per-channel normalisation with the training windows' statistics; the 1-D CNN
of :class:`benchmarks.models.HaptNet`. Shared by the main job
(``benchmarks/hapt.py``) and the study (``benchmarks/study.py``), as
:mod:`benchmarks.mfeat` is for the mfeat views.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from benchmarks.harness import SampleSet, Splits, Task
from benchmarks.models import HaptNet
from remix_data.datasets import (
    HAPT_ACTIVITIES,
    HAPT_NUM_CLASSES,
    HAPT_TEST_USERS,
    HAPT_TRAIN_USERS,
    HaptData,
    load_hapt,
)

__all__ = ["HAPT", "NAMES", "prepare_data"]


def _model(names: tuple[str, ...], width: int, data: Splits) -> HaptNet:
    return HaptNet(names, HAPT_NUM_CLASSES, width=width)


#: The HAPT task: accelerometer strong, gyroscope weak.
HAPT = Task("hapt", strong="acc", weak="gyro", num_classes=HAPT_NUM_CLASSES, make_model=_model)
NAMES = (HAPT.strong, HAPT.weak)  # table and report order


def _windows(data: HaptData, idx: np.ndarray) -> SampleSet:
    return SampleSet(
        {m: torch.from_numpy(np.ascontiguousarray(getattr(data, m)[idx])) for m in NAMES},
        torch.from_numpy(data.label[idx].astype(np.int64)),
    )


def prepare_data(
    hapt: HaptData | None = None,
    *,
    val_users: Iterable[int] = (),
    quick: bool = False,
    quick_sizes: tuple[int, int] = (480, 240),
) -> Splits:
    """Split HAPT by subject and normalise with the training windows' statistics.

    Args:
        hapt: the windows (default: :func:`load_hapt`).
        val_users: training subjects moved to a validation split (never test
            subjects); normalisation then uses the remaining training subjects.
        quick: keep a fixed random subset of ``quick_sizes`` (train, test)
            windows, for smoke runs.
    """
    data = load_hapt() if hapt is None else hapt
    val = sorted({int(u) for u in val_users})
    bad = [u for u in val if u not in HAPT_TRAIN_USERS]
    if bad:
        raise ValueError(f"val_users should be training subjects {HAPT_TRAIN_USERS}: got {bad}")
    train_users = [u for u in HAPT_TRAIN_USERS if u not in val]
    if not train_users:
        raise ValueError("val_users leaves no training subject")
    train_idx, test_idx = data.split(train_users, HAPT_TEST_USERS)
    val_idx = data.split(val, ())[0] if val else np.zeros(0, np.int64)
    if quick:
        rng = np.random.default_rng(0)
        train_idx = np.sort(rng.permutation(train_idx)[: quick_sizes[0]])
        test_idx = np.sort(rng.permutation(test_idx)[: quick_sizes[1]])
        val_idx = np.sort(rng.permutation(val_idx)[: quick_sizes[1]])
    if train_idx.size == 0 or test_idx.size == 0:
        raise ValueError("the split left no training or no test windows")
    normed, _ = data.normalize(train_idx)
    splits = Splits(
        HAPT,
        train=_windows(normed, train_idx),
        test=_windows(normed, test_idx),
        val=_windows(normed, val_idx) if val_idx.size else None,
    )
    splits.info = {
        "train_users": train_users,
        "val_users": val,
        "test_users": list(HAPT_TEST_USERS),
        "n_train": len(splits.train),
        "n_val": 0 if splits.val is None else len(splits.val),
        "n_test": len(splits.test),
        "window": int(data.acc.shape[2]),
        "classes": list(HAPT_ACTIVITIES),
        "train_class_counts": splits.train.class_counts(HAPT_NUM_CLASSES),
        "quick": quick,
    }
    return splits
