"""One-time checks of the training loop, where a wiring runs but trains the wrong thing.

With ``mask="none"`` (the presets' ``masking="features"``, the reference code's
masking) the decoupler leaves every modality in the sample and the *model*
must zero the inactive modality's features with
:func:`~remix_data.mask_features` before fusion. A model that never calls it
trains every "unimodal" batch on all modalities, and nothing fails. So:

- a :class:`~remix_data.ModalityDecoupler` built with ``mask="none"`` over a
  filter registers that filter here (:func:`expect_feature_masking`);
- :func:`~remix_data.mask_features` counts its calls in this process
  (:func:`feature_masked`);
- :func:`~remix_data.remix_loss` given that filter reports each step
  (:func:`loss_step`). Once the remix epochs have begun (the filter holds a
  snapshot), :data:`STEPS` unimodal steps without a single ``mask_features``
  call since the decoupler was built raise one
  :class:`~remix_data.RemixWarning` naming the fix; the first call seen ends
  the watch, so a model that masks features pays one dictionary lookup per step.

It cannot misfire on a model that calls ``mask_features`` (any call, with any
arguments, counts); a model that zeroes its features some other way is told how
to silence it. Loops that never pass the filter to ``remix_loss`` are not
watched; :func:`remix_data.testing.check_loader` checks the same from a
training function.

Example:
    >>> import warnings
    >>> import torch
    >>> from remix_data import HardSampleFilter, ModalityDecoupler, remix_loss
    >>> filt = HardSampleFilter(4, ("audio", "video"))
    >>> data = ModalityDecoupler([{"audio": torch.ones(1), "video": torch.ones(1)}] * 4,
    ...                          filt, mask="none")
    >>> _ = filt.snapshot(0)                        # a remix epoch began
    >>> heads = {"audio": torch.zeros(2, 2), "video": torch.zeros(2, 2)}
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     for _ in range(STEPS):                  # the model never calls mask_features
    ...         _ = remix_loss(torch.zeros(2, 2), heads, torch.tensor([0, 1]), 0, filt)
    >>> "never called mask_features" in str(caught[0].message)
    True
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch

from .alerts import RemixWarning
from .vocabulary import ALL

__all__ = ["STEPS", "expect_feature_masking", "feature_masked", "loss_step", "masked_calls"]

#: Unimodal remix steps without a ``mask_features`` call before the warning.
STEPS = 4


class _Watch:
    __slots__ = ("baseline", "steps")

    def __init__(self, baseline: int) -> None:
        self.baseline = baseline
        self.steps = 0


_calls = 0
_watched: weakref.WeakKeyDictionary[Any, _Watch] = weakref.WeakKeyDictionary()


def masked_calls() -> int:
    """How many times :func:`~remix_data.mask_features` ran in this process."""
    return _calls


def feature_masked() -> None:
    """Count one :func:`~remix_data.mask_features` call (called by it)."""
    global _calls
    _calls += 1


def expect_feature_masking(filter: Any) -> None:
    """Watch ``filter``'s loss steps for a model that never masks its features."""
    _watched[filter] = _Watch(_calls)


def _unimodal(modality: Any) -> bool:
    """Whether a step trains some row unimodally; a device tensor is not read (no sync)."""
    if isinstance(modality, int):
        return modality > ALL
    if isinstance(modality, torch.Tensor) and modality.device.type == "cpu":
        return bool((modality > ALL).any())
    return True


def loss_step(filter: Any, modality: Any) -> None:
    """One :func:`~remix_data.remix_loss` step with ``filter``; warns once (see module)."""
    if not _watched:
        return
    try:
        watch = _watched.get(filter)
    except TypeError:  # names, not a filter: not watched
        return
    if watch is None:
        return
    if _calls != watch.baseline:  # the model masks features
        del _watched[filter]
        return
    if filter.snapshot_epoch is None or not _unimodal(modality):
        return  # warm-up and joint batches show every modality anyway
    watch.steps += 1
    if watch.steps < STEPS:
        return
    del _watched[filter]
    warnings.warn(
        f"the ModalityDecoupler over this filter keeps every modality in the sample "
        f"(mask='none', a preset's masking='features'), but the model never called "
        f"mask_features in {STEPS} unimodal remix steps: each 'unimodal' batch trains on "
        "all modalities. Zero the inactive features in forward with "
        "mask_features(features, modality, filt) before fusion, or mask the inputs "
        "instead: build(..., masking='zeros') or ModalityDecoupler(..., mask='zeros'). "
        "(A model that masks features its own way: warnings.filterwarnings('ignore', "
        "'.*never called mask_features', RemixWarning).)",
        RemixWarning,
        stacklevel=3,
    )
