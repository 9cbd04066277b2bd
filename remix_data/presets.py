"""Named settings: the paper's recipe and the one our measurements recommend.

A :class:`Preset` holds keyword arguments for the filter and the sampler, plus
two settings that live in your loop and model, which the library cannot apply
for you: how scores are fed back (``scoring``) and what happens to the masked
modality's encoder (``masked_encoder``). :func:`build` makes the filter and the
sampler from a preset.

- :data:`PAPER` — the reference: scoring pass every epoch, sequential order,
  every sample trains exactly one modality, the masked encoder still runs
  (feature masking). The library's defaults *are* this preset.
- :data:`RECOMMENDED` — chosen on validation subjects of UCI HAPT (and checked
  on the mfeat views): online scoring, class-aware decoupling, a quarter of each
  subset in joint batches, score smoothing, the interleaved order, and the masked
  encoder skipped. On the HAPT test subjects it stayed within about one point of
  joint training's fused accuracy (94.4 ± 0.5 vs 95.0 ± 0.2) at 0.81x its time,
  where the paper's recipe fell to 83.8 ± 9.2 at 1.22x; it did *not* beat joint
  training (README, "When remixing helps and when it hurts").

Example:
    >>> from remix_data.presets import RECOMMENDED, build
    >>> filt, sampler = build(RECOMMENDED, 100, ("audio", "video"), 8, labels=[0, 1] * 50)
    >>> filt.balance, sampler.joint_fraction, sampler.order, RECOMMENDED.masked_encoder
    ('class', 0.25, 'interleave', 'skip')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .filter import HardSampleFilter
from .sampler import ReassemblingBatchSampler

__all__ = ["Preset", "PAPER", "RECOMMENDED", "build"]


@dataclass(frozen=True)
class Preset:
    """A named remix setting.

    Attributes:
        name: short name.
        filter: keyword arguments for :class:`HardSampleFilter`.
        sampler: keyword arguments for :class:`ReassemblingBatchSampler`.
        scoring: ``"pass"`` (call :func:`~remix_data.scoring_pass` before each
            remix epoch) or ``"online"`` (``filter.update(..., modality=...)`` in
            the training step).
        masked_encoder: ``"run"`` (run it, zero its features: the reference code)
            or ``"skip"`` (do not run it on unimodal batches: its features are
            zeros, and its BatchNorm statistics never see the other modality's
            subset; use ``mask="drop"`` or skip it in ``forward``).
    """

    name: str
    filter: Mapping[str, Any] = field(default_factory=dict)
    sampler: Mapping[str, Any] = field(default_factory=dict)
    scoring: str = "pass"
    masked_encoder: str = "run"


PAPER = Preset(
    name="paper",
    filter=MappingProxyType({}),
    sampler=MappingProxyType({"order": "sequential"}),
    scoring="pass",
    masked_encoder="run",
)

RECOMMENDED = Preset(
    name="recommended",
    filter=MappingProxyType({"balance": "class", "smoothing": 0.5}),
    sampler=MappingProxyType({"joint_fraction": 0.25, "order": "interleave"}),
    scoring="online",
    masked_encoder="skip",
)


def build(
    preset: Preset,
    num_samples: int,
    modalities: Sequence[str],
    batch_size: int,
    *,
    labels: Any = None,
    **sampler_kwargs: Any,
) -> tuple[HardSampleFilter, ReassemblingBatchSampler]:
    """Make the filter and the sampler of ``preset``.

    Args:
        preset: :data:`PAPER`, :data:`RECOMMENDED` or your own :class:`Preset`.
        num_samples, modalities, batch_size: as for the filter and sampler.
        labels: class labels per sample (needed by ``balance="class"``; adds
            per-class counts to the history otherwise).
        **sampler_kwargs: further sampler arguments (``warmup_epochs``, ``seed``,
            ``num_replicas``, ...), overriding the preset's.
    """
    if not isinstance(preset, Preset):
        raise TypeError(f"preset should be a Preset, but got preset={preset!r}")
    filter_kwargs = dict(preset.filter)
    if filter_kwargs.get("balance") == "class" and labels is None:
        raise ValueError(
            f"preset {preset.name!r} decouples per class: pass labels=..., but got labels=None"
        )
    filt = HardSampleFilter(num_samples, modalities, labels=labels, **filter_kwargs)
    sampler = ReassemblingBatchSampler(filt, batch_size, **{**preset.sampler, **sampler_kwargs})
    return filt, sampler
