"""Tiny synthetic stand-ins for the benchmark tasks, so the benchmark tests never skip.

``synthetic_hapt``: windows of subjects 1..30 whose acc channels carry the label and
gyro a bit of it; ``synthetic_mfeat``: 10 classes, ``fac`` carries the label strongly,
``mor`` weakly.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from remix_data.datasets import HaptData, MfeatData


def synthetic_hapt(per_user: int = 4, window: int = 32, seed: int = 0) -> HaptData:
    """``per_user`` windows of ``window`` steps for each of the 30 subjects."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, 31), per_user).astype(np.int64)
    label = rng.integers(0, 6, users.size)
    acc = rng.normal(size=(users.size, 3, window)).astype(np.float32)
    gyro = rng.normal(size=(users.size, 3, window)).astype(np.float32)
    acc[:, 0] += label[:, None]
    gyro[:, 1] += 0.3 * label[:, None]
    return HaptData(
        acc=acc, gyro=gyro, label=label.astype(np.int64), user=users,
        experiment=users, start=np.zeros(users.size, np.int64),
    )  # fmt: skip


def synthetic_mfeat(per_class: int = 40, seed: int = 0) -> MfeatData:
    """``per_class`` digits of each of the 10 classes."""
    rng = np.random.default_rng(seed)
    label = np.repeat(np.arange(10), per_class).astype(np.int64)
    fac = rng.normal(size=(label.size, 12)).astype(np.float32)
    mor = rng.normal(size=(label.size, 3)).astype(np.float32)
    fac[np.arange(label.size), label] += 3.0
    mor[:, 0] += 0.3 * label
    return MfeatData(views=MappingProxyType({"fac": fac, "mor": mor}), label=label)
