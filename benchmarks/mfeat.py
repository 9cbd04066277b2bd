"""The mfeat counterpart of the HAPT job: two digit views, one small MLP per view.

The strong view ``fac`` (216 profile correlations) and the weak view ``mor``
(6 morphological features) of UCI mfeat (:func:`remix_data.datasets.load_mfeat`),
a fixed stratified 60/20/20 train / validation / test split, and per view an
MLP encoder with its own linear head plus a fused linear head
(:class:`benchmarks.models.MfeatNet`). The methods are those of
:mod:`benchmarks.methods`, trained by :class:`benchmarks.harness.Job` with the
weak view playing the gyroscope and the strong one the accelerometer. A batch
of a single row (a subset's tail) is skipped, since BatchNorm1d cannot train
on one row.

Example:
    >>> import numpy as np
    >>> from types import MappingProxyType
    >>> from remix_data.datasets import MfeatData
    >>> rng = np.random.default_rng(0)
    >>> views = {"fac": rng.normal(size=(100, 4)).astype(np.float32),
    ...          "mor": rng.normal(size=(100, 2)).astype(np.float32)}
    >>> data = prepare_mfeat(MfeatData(MappingProxyType(views), np.repeat(np.arange(10), 10)))
    >>> data.info["n_train"], data.info["n_val"], data.info["n_test"], data.task.modalities
    (60, 20, 20, ('mor', 'fac'))
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.harness import SampleSet, Splits, Task
from benchmarks.models import MfeatNet
from remix_data.datasets import (
    MFEAT_NUM_CLASSES,
    MFEAT_STRONG_VIEW,
    MFEAT_WEAK_VIEW,
    MfeatData,
    load_mfeat,
    stratified_split,
)

__all__ = ["prepare_mfeat"]


def _model(names: tuple[str, ...], width: int, data: Splits) -> MfeatNet:
    dims = {m: int(data.train.inputs[m].shape[1]) for m in names}
    return MfeatNet(dims, MFEAT_NUM_CLASSES, width=width)


def _rows(data: MfeatData, idx: np.ndarray) -> SampleSet:
    views = {m: torch.from_numpy(np.ascontiguousarray(x[idx])) for m, x in data.views.items()}
    return SampleSet(views, torch.from_numpy(data.label[idx].astype(np.int64)))


def prepare_mfeat(
    data: MfeatData | None = None,
    *,
    strong: str = MFEAT_STRONG_VIEW,
    weak: str = MFEAT_WEAK_VIEW,
    split_seed: int = 0,
    quick: bool = False,
) -> Splits:
    """Stratified 60/20/20 split: 20 % test, then a quarter of the rest for validation.

    Features are standardised with the training rows' statistics. ``quick``
    keeps a fixed random quarter of every split (smoke runs).
    """
    data = load_mfeat((strong, weak)) if data is None else data
    label = np.asarray(data.label)
    rest, test_idx = stratified_split(label, test_fraction=0.2, seed=split_seed)
    tr, va = stratified_split(label[rest], test_fraction=0.25, seed=split_seed)
    train_idx, val_idx = rest[tr], rest[va]
    if quick:
        rng = np.random.default_rng(0)
        train_idx, val_idx, test_idx = (
            np.sort(rng.permutation(i)[: max(1, i.size // 4)])
            for i in (train_idx, val_idx, test_idx)
        )
    normed = data.normalize(train_idx)
    task = Task(
        "mfeat", strong=strong, weak=weak, num_classes=MFEAT_NUM_CLASSES, make_model=_model,
        min_batch=2,
    )  # fmt: skip
    splits = Splits(
        task,
        train=_rows(normed, train_idx),
        test=_rows(normed, test_idx),
        val=_rows(normed, val_idx),
    )
    splits.info = {
        "strong": strong, "weak": weak, "split_seed": split_seed, "split": "60/20/20 stratified",
        "n_train": int(train_idx.size), "n_val": int(val_idx.size), "n_test": int(test_idx.size),
        "dims": {m: int(x.shape[1]) for m, x in data.views.items()}, "quick": quick,
    }  # fmt: skip
    return splits
