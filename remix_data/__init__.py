"""Data Remixing (Ma, Chen & Deng, ICML 2025) as drop-in PyTorch data-loading parts.

- :class:`HardSampleFilter` keeps per-sample, per-modality scores and decides
  which modality each sample trains this epoch;
- :class:`ReassemblingBatchSampler` turns that decision into unimodal batches
  of ``(index, modality)`` keys for ``DataLoader(batch_sampler=...)``;
- :class:`ModalityDecoupler` wraps the dataset and masks the other modalities.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler
    >>> base = [{"audio": torch.randn(3), "video": torch.randn(5)} for _ in range(8)]
    >>> filt = HardSampleFilter(len(base), ("audio", "video"))
    >>> sampler = ReassemblingBatchSampler(filt, batch_size=4)
    >>> loader = DataLoader(ModalityDecoupler(base, ("audio", "video")), batch_sampler=sampler)
    >>> for sample, index, modality in loader:
    ...     assert len(set(modality.tolist())) == 1     # one modality per batch
"""

from .alerts import RemixWarning
from .collate import RemixCollate
from .decoupler import PARTIAL_LOADER, ModalityDecoupler, mask_features
from .filter import HardSampleFilter
from .losses import remix_loss
from .sampler import ReassemblingBatchSampler
from .scores import confidence, cross_entropy
from .scoring import scoring_pass
from .vocabulary import ALL, FILTERED, PAD

__all__ = [
    "ALL",
    "FILTERED",
    "PAD",
    "PARTIAL_LOADER",
    "HardSampleFilter",
    "ModalityDecoupler",
    "ReassemblingBatchSampler",
    "RemixCollate",
    "RemixWarning",
    "confidence",
    "cross_entropy",
    "mask_features",
    "remix_loss",
    "scoring_pass",
]

__version__ = "0.2.0"
