"""Named recipes: the paper's and the one our measurements recommend.

A :class:`Preset` states the whole recipe: keyword arguments of the filter and
of the sampler, the warm-up, how the masked modality is hidden (``masking``),
how scores are fed back (``scoring``) and what happens to a modality's short
last batch (``drop_last``). :func:`build` turns a preset and your dataset into
the three parts, wired to each other: ``parts.filter``, ``parts.sampler`` and
``parts.data`` (the :class:`~remix_data.ModalityDecoupler`).

- :data:`PAPER` -- the reference: a sixth of the run as joint warm-up (10 of 60
  epochs in the reference code), a scoring pass before every remix epoch,
  sequential order, every sample trains exactly one modality, feature masking
  (the masked encoder still runs; its pooled features are zeroed). Filter and
  sampler keep the library's defaults.
- :data:`RECOMMENDED` -- chosen on validation subjects of UCI HAPT by an earlier
  selection rule (README "When remixing helps and when it hurts" has what it
  does on HAPT and on the mfeat views): the same warm-up, online scoring,
  class-aware decoupling, a quarter of each subset in joint batches, score
  smoothing, the interleaved order, static batch shapes (``tail="fill"``: every
  batch holds ``batch_size`` rows, for ``cudnn.benchmark``, ``torch.compile`` and
  CUDA graphs) and the masked modality dropped from the sample so that the model
  skips its encoder. It is a "do little harm" setting
  (within about one fused point of joint training there; faster only where the
  encoders are most of a step), not an accuracy gain over joint training.

What the loop does per mode (the parts cannot do it for you):

- ``masking="zeros"``: nothing; the decoupler zeroes the other modalities' inputs.
- ``masking="drop"``: ``forward`` skips the encoder of a modality missing from
  the batch (its features are zeros).
- ``masking="features"``: run every encoder, then
  ``mask_features(feats, modality, parts.modalities)`` before the fused head.
- ``scoring="online"``: ``parts.filter.update(index, heads, modality=modality)``
  after each step.
- ``scoring="pass"``: ``scoring_pass(fn, parts.data, parts.filter, epoch=e)``
  before ``parts.sampler.set_epoch(e)`` of every remix epoch.

Example:
    >>> import torch
    >>> from remix_data.presets import RECOMMENDED, build
    >>> train_set = [{"audio": torch.randn(3), "video": torch.randn(2), "label": i % 2}
    ...              for i in range(100)]
    >>> parts = build(RECOMMENDED, train_set, modalities=("audio", "video"),
    ...               batch_size=8, epochs=30, labels=[i % 2 for i in range(100)])
    >>> parts.warmup_epochs, parts.sampler.warmup_epochs, parts.data.mask
    (5, 5, 'drop')
    >>> parts.filter.balance, parts.sampler.joint_fraction, parts.scoring
    ('class', 0.25, 'online')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from torch.utils.data import DataLoader

from ._checks import check_bool, check_choice, check_modalities, check_positive_int
from .availability import scan_available
from .collate import RemixCollate
from .decoupler import ModalityDecoupler
from .filter import HardSampleFilter
from .masking import Location
from .sampler import ReassemblingBatchSampler

__all__ = ["MASKINGS", "PAPER", "RECOMMENDED", "SCORINGS", "Preset", "RemixParts", "build"]

#: ``Preset.masking`` values and the :class:`ModalityDecoupler` ``mask`` each uses.
MASKINGS: Mapping[str, str] = MappingProxyType(
    {"zeros": "zeros", "drop": "drop", "features": "none"}
)
#: ``Preset.scoring`` values.
SCORINGS = ("pass", "online")

_FILTER_KEYS = frozenset(inspect.signature(HardSampleFilter).parameters) - {
    "num_samples",
    "modalities",
    "labels",
    "available",
}
_SAMPLER_KEYS = frozenset(inspect.signature(ReassemblingBatchSampler).parameters) - {
    "filter",
    "batch_size",
}
# Fields of the preset itself, or arguments of build: never in ``Preset.sampler``.
_OWN_SAMPLER_KEYS = frozenset({"warmup_epochs", "drop_last", "seed", "epochs"})
# build's own keyword arguments (the rest go to the sampler).
_BUILD_KEYS = (
    "modalities", "batch_size", "epochs", "labels", "seed", "locations", "masking",
    "available", "filter_kwargs",
)  # fmt: skip


def _check_kwargs(what: str, value: Any, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{what} should be a mapping of keyword arguments, but got {what}={value!r}"
        )
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(
            f"{what} has unknown keys {unknown} (allowed: {sorted(allowed)}), "
            f"got {what}={dict(value)!r}"
        )
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class Preset:
    """A named remix recipe; every field is checked at construction.

    Attributes:
        name: short name (a non-empty string).
        warmup: joint warm-up before remixing, either an ``int`` number of
            epochs (``0`` only if you mean it: epoch 0 is then a remix epoch of
            unscored samples) or a ``float`` fraction of the run in ``(0, 1)``,
            which :func:`build` turns into ``max(1, round(warmup * epochs))``
            epochs (``warmup`` taken as the decimal you wrote, so ``0.1 * 45``
            is exactly 4.5, and Python's ``round`` takes halves to even: 4),
            for which it therefore needs ``epochs``.
        masking: ``"zeros"`` (the decoupler zeroes the other modalities' inputs),
            ``"drop"`` (it removes them from the sample; the model skips their
            encoders) or ``"features"`` (the sample stays whole; the model zeroes
            the masked encoders' features with :func:`~remix_data.mask_features`,
            as the reference code does).
        scoring: ``"pass"`` (:func:`~remix_data.scoring_pass` before every remix
            epoch) or ``"online"`` (``filter.update(..., modality=...)`` in the
            training step).
        drop_last: batch tail policy of each modality's subset: ``False`` keeps
            the short last batch (padded to a full global step under DDP),
            ``True`` drops it (counted in ``sampler.stats()["dropped"]``).
        filter: extra keyword arguments of :class:`HardSampleFilter`.
        sampler: extra keyword arguments of :class:`ReassemblingBatchSampler`
            (not ``warmup_epochs``, ``drop_last``, ``seed`` or ``epochs``, which
            have their own field or :func:`build` argument).

    Example:
        >>> Preset("mine", warmup=0.25, masking="zeros").warmup
        0.25
        >>> Preset("mine", warmup=0.25, masking="input")
        Traceback (most recent call last):
        ...
        ValueError: masking should be one of ('zeros', 'drop', 'features'), but got masking='input'
    """

    name: str
    warmup: int | float
    masking: str = "features"
    scoring: str = "pass"
    drop_last: bool = False
    filter: Mapping[str, Any] = field(default_factory=dict)
    sampler: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name should be a non-empty string, but got name={self.name!r}")
        if not self.name:
            raise ValueError(f"name should be a non-empty string, but got name={self.name!r}")
        w = self.warmup
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise TypeError(
                f"warmup should be an int (epochs) or a float (fraction of the run), "
                f"but got warmup={w!r}"
            )
        if isinstance(w, int) and w < 0:
            raise ValueError(f"warmup should be >= 0 epochs, but got warmup={w!r}")
        if isinstance(w, float) and not 0.0 < w < 1.0:
            raise ValueError(
                f"warmup as a fraction of the run should lie in (0, 1), but got warmup={w!r} "
                "(use an int for a number of epochs)"
            )
        check_choice("masking", self.masking, tuple(MASKINGS))
        check_choice("scoring", self.scoring, SCORINGS)
        check_bool("drop_last", self.drop_last)
        filt = _check_kwargs("filter", self.filter, _FILTER_KEYS)
        sampler = _check_kwargs("sampler", self.sampler, _SAMPLER_KEYS - _OWN_SAMPLER_KEYS)
        object.__setattr__(self, "filter", filt)
        object.__setattr__(self, "sampler", sampler)

    def warmup_epochs(self, epochs: int | None = None) -> int:
        """The number of joint warm-up epochs in a run of ``epochs`` epochs.

        Example:
            >>> PAPER.warmup_epochs(60), PAPER.warmup_epochs(30), PAPER.warmup_epochs(3)
            (10, 5, 1)
        """
        if epochs is not None:
            check_positive_int("epochs", epochs)
        if isinstance(self.warmup, int):
            warmup = self.warmup
        elif epochs is None:
            raise ValueError(
                f"preset {self.name!r} states its warm-up as a fraction of the run "
                f"(warmup={self.warmup!r}): pass epochs=..., but got epochs=None"
            )
        else:
            # The decimal the user wrote, exactly: 1/6 of 30 epochs is 5.
            exact = Fraction(repr(self.warmup)) * epochs
            warmup = max(1, round(exact))
        if epochs is not None and warmup >= epochs:
            raise ValueError(
                f"preset {self.name!r} (warmup={self.warmup!r}) leaves no remix epoch in a run "
                f"of epochs={epochs}"
            )
        return warmup


PAPER = Preset(
    name="paper",
    warmup=1 / 6,
    masking="features",
    scoring="pass",
    sampler={"order": "sequential"},
)

RECOMMENDED = Preset(
    name="recommended",
    warmup=1 / 6,
    masking="drop",
    scoring="online",
    filter={"balance": "class", "smoothing": 0.5},
    sampler={"joint_fraction": 0.25, "order": "interleave", "tail": "fill"},
)


@dataclass(frozen=True)
class RemixParts:
    """What :func:`build` returns: the three parts of one preset, wired together.

    Attributes:
        preset: the recipe.
        filter: the score table.
        sampler: the batch sampler reading ``filter``.
        data: the dataset wrapper masking as ``preset.masking`` says.
        warmup_epochs: joint epochs before the first remix epoch.
    """

    preset: Preset
    filter: HardSampleFilter
    sampler: ReassemblingBatchSampler
    data: ModalityDecoupler
    warmup_epochs: int

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality names, in the filter's order."""
        return self.filter.modalities

    @property
    def masking(self) -> str:
        """``preset.masking``: what the model does on a unimodal batch."""
        return self.preset.masking

    @property
    def scoring(self) -> str:
        """``preset.scoring``: how scores reach the filter."""
        return self.preset.scoring

    def loader(
        self, *, collate_fn: Callable[[list[Any]], Any] | None = None, **kwargs: Any
    ) -> DataLoader[Any]:
        """The remix loader: ``DataLoader(self.data, batch_sampler=self.sampler,
        collate_fn=RemixCollate(collate_fn), **kwargs)``.

        It yields ``(batch, index, modality)``: ``collate_fn`` (your collate,
        torch's ``default_collate`` if ``None``) runs on the samples alone, and
        :class:`~remix_data.RemixCollate` builds the two ``int64`` columns
        without ``default_collate``'s per-value cost.
        """
        for key in ("batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"):
            if key in kwargs:
                raise ValueError(f"{key} is set by the preset's sampler; got {key}={kwargs[key]!r}")
        return DataLoader(
            self.data,
            batch_sampler=self.sampler,
            collate_fn=RemixCollate(collate_fn),
            **kwargs,
        )


def build(
    preset: Preset,
    dataset: Any,
    *,
    modalities: Sequence[str] | Mapping[str, int],
    batch_size: int,
    epochs: int | None = None,
    labels: Any = None,
    seed: int = 0,
    locations: Mapping[str, Location] | None = None,
    masking: str | None = None,
    available: Any = None,
    filter_kwargs: Mapping[str, Any] | None = None,
    **sampler_kwargs: Any,
) -> RemixParts:
    """Make the filter, the sampler and the dataset wrapper of ``preset``.

    Args:
        preset: :data:`PAPER`, :data:`RECOMMENDED` or your own :class:`Preset`.
        dataset: your map-style multimodal dataset.
        modalities: the modality names, in the order that defines their ids.
            (``{name: position}`` is still accepted for tuple samples, as the
            names plus ``locations``.)
        batch_size: samples per batch (per rank, per micro-batch).
        epochs: length of the run; needed when ``preset.warmup`` is a fraction.
        labels: class labels per sample (needed by ``balance="class"``; adds
            per-class counts to the history otherwise).
        seed: the sampler's seed.
        locations: where each modality sits in a sample when not under its own
            name, as for :class:`ModalityDecoupler`: ``{"audio": 0, "video": 1}``
            for tuple samples, ``{"audio": "inputs.audio"}`` for nested ones.
        masking: overrides ``preset.masking``: ``"zeros"``, ``"drop"`` or
            ``"features"`` (what your model does on a unimodal batch; see the
            module docstring). ``parts.preset`` holds the preset so changed.
        available: missing modalities: a bool ``[len(dataset), M]`` table (see
            :mod:`remix_data.availability`), or ``"scan"`` to read every sample
            once now and take ``None`` / absent values as missing.
        filter_kwargs: further filter arguments (``process_group``, ...),
            overriding the preset's.
        **sampler_kwargs: further sampler arguments (``num_replicas``, ``rank``,
            ``accumulation_steps``, ``order``, ...), overriding the preset's.
            The warm-up and tail policy belong to the preset: change them with
            ``dataclasses.replace(preset, warmup=..., drop_last=...)``.

    Example:
        >>> import torch
        >>> pairs = [(torch.ones(2), torch.ones(3), i % 2) for i in range(8)]   # tuples
        >>> parts = build(PAPER, pairs, modalities=("audio", "video"), batch_size=4,
        ...               epochs=6, locations={"audio": 0, "video": 1}, masking="zeros")
        >>> parts.masking, parts.data.mask, parts.data.masker.locations
        ('zeros', 'zeros', {'audio': 0, 'video': 1})
    """
    if not isinstance(preset, Preset):
        raise TypeError(f"preset should be a Preset, but got preset={preset!r}")
    own = sorted(set(sampler_kwargs) & {"warmup_epochs", "drop_last"})
    if own:
        raise ValueError(
            f"{own[0]} is part of the preset: use dataclasses.replace(preset, "
            f"{'warmup' if own[0] == 'warmup_epochs' else own[0]}=...), "
            f"but got {own[0]}={sampler_kwargs[own[0]]!r}"
        )
    unknown = sorted(set(sampler_kwargs) - (_SAMPLER_KEYS - _OWN_SAMPLER_KEYS))
    if unknown:
        raise TypeError(
            f"build got an unexpected keyword argument {unknown[0]!r}: its own keywords are "
            f"{list(_BUILD_KEYS)}, and the others go to ReassemblingBatchSampler "
            f"({sorted(_SAMPLER_KEYS - _OWN_SAMPLER_KEYS)})"
        )
    if masking is not None:
        check_choice("masking", masking, tuple(MASKINGS))
        preset = replace(preset, masking=masking)
    warmup = preset.warmup_epochs(epochs)
    extra_filter = _check_kwargs("filter_kwargs", filter_kwargs or {}, _FILTER_KEYS)
    filter_options = {**preset.filter, **extra_filter}
    if filter_options.get("balance") == "class" and labels is None:
        raise ValueError(
            f"preset {preset.name!r} decouples per class: pass labels=..., but got labels=None"
        )
    names, places = _names_and_locations(modalities, locations)
    if isinstance(available, str):
        check_choice("available", available, ("scan",))
        available = scan_available(dataset, names, locations=places)
    filt = HardSampleFilter(
        len(dataset), names, labels=labels, available=available, **filter_options
    )
    data = ModalityDecoupler(dataset, filt, mask=MASKINGS[preset.masking], locations=places)
    sampler = ReassemblingBatchSampler(
        filt,
        batch_size,
        warmup_epochs=warmup,
        drop_last=preset.drop_last,
        seed=seed,
        epochs=epochs,
        **{**preset.sampler, **sampler_kwargs},
    )
    return RemixParts(preset, filt, sampler, data, warmup)


def _names_and_locations(
    modalities: Any, locations: Mapping[str, Location] | None
) -> tuple[list[str], Mapping[str, Location] | None]:
    """The names and the locations of :func:`build`'s ``modalities`` and ``locations``."""
    if locations is not None and not isinstance(locations, Mapping):
        raise TypeError(
            f"locations should map modality names to places, but got locations={locations!r}"
        )
    if not isinstance(modalities, Mapping):
        return list(check_modalities("modalities", modalities)), locations
    if locations is not None:
        raise ValueError(
            f"modalities={dict(modalities)!r} already gives places: pass the names, "
            f"modalities={list(modalities)!r}, with locations={dict(locations)!r}"
        )
    return list(modalities), dict(modalities)
