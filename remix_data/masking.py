"""Masking: hide every modality of a sample but the active one.

:class:`Masker` is the one implementation of the three masking modes, shared by
:class:`~remix_data.ModalityDecoupler` (map-style datasets) and the streaming
remixer: ``"zeros"`` replaces an inactive modality by zeros of its shape and
dtype, ``"drop"`` removes it, ``"none"`` leaves the sample as it is (the model
masks features, see :func:`~remix_data.mask_features`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ._checks import check_choice, check_modalities
from .sampler import ALL

__all__ = ["MASKS", "Masker"]

#: The masking modes.
MASKS = ("zeros", "drop", "none")


def _zeros_like(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, np.ndarray):
        return np.zeros_like(value)
    raise TypeError(
        f"mask='zeros' needs tensors or numpy arrays, but a modality holds "
        f"{type(value).__name__}; use mask='drop' or mask='none'"
    )


class Masker:
    r"""Mask the inactive modalities of one sample or of a batch sharing one modality.

    Args:
        modalities: the modality names, in id order.
        mask: ``"zeros"``, ``"drop"`` or ``"none"``.
        positions: for tuple/list samples, the position of each modality
            (``{name: position}``); ``None`` for dict samples keyed by name.
        template: a zero-argument callable returning a full sample; called once
            per modality, the first time a sample lacks a modality that
            ``mask="zeros"`` must fill (partial loading), to learn its shape.

    Example:
        >>> import torch
        >>> masker = Masker(("audio", "video"))
        >>> out = masker.mask_one({"audio": torch.ones(2), "video": torch.ones(1)}, 1)
        >>> out["audio"].tolist(), out["video"].tolist()
        ([0.0, 0.0], [1.0])
    """

    def __init__(
        self,
        modalities: Sequence[str],
        mask: str = "zeros",
        *,
        positions: Mapping[str, int] | None = None,
        template: Callable[[], Any] | None = None,
    ) -> None:
        self.modalities = check_modalities("modalities", modalities)
        self.mask = check_choice("mask", mask, MASKS)
        self.tuple_samples = positions is not None
        if positions is None:
            self._slots: tuple[Any, ...] = self.modalities
        else:
            self._slots = tuple(positions[name] for name in self.modalities)
            if self.mask == "drop":
                raise ValueError(
                    "mask='drop' needs dict samples (a position cannot be removed from a "
                    f"tuple); got positional modalities={dict(positions)!r}: use 'zeros' or 'none'"
                )
        self._template = template
        self._templates: dict[int, Any] = {}

    # ------------------------------------------------------------------ one sample
    def mask_one(self, sample: Any, modality: int) -> Any:
        """``sample`` with every modality but ``modalities[modality]`` masked.

        ``modality == ALL`` and ``mask="none"`` return the sample unchanged.
        """
        if modality == ALL or self.mask == "none":
            return sample
        if self.tuple_samples:
            if not isinstance(sample, (tuple, list)):
                raise TypeError(
                    f"positional modalities need tuple or list samples, but got "
                    f"{type(sample).__name__}"
                )
            out = list(sample)
            for m, pos in enumerate(self._slots):
                if m != modality:
                    out[pos] = self._zeros(m, out[pos])
            return type(sample)(out) if isinstance(sample, tuple) else out
        if not isinstance(sample, Mapping):
            raise TypeError(
                f"named modalities need dict samples, but got {type(sample).__name__}; "
                "pass modalities as {name: position} for tuple samples"
            )
        active = self._slots[modality]
        if self.mask == "drop":
            return {k: v for k, v in sample.items() if k == active or k not in self._slots}
        out_dict = dict(sample)
        for m, name in enumerate(self._slots):
            if m != modality:
                out_dict[name] = self._zeros(m, sample.get(name))
        return out_dict

    # ---------------------------------------------------------------- one batch
    def mask_batch(self, samples: list[Any], modality: int) -> list[Any]:
        """:meth:`mask_one` of samples that share one active modality, a batch at once."""
        if modality == ALL or self.mask == "none":
            return list(samples)
        kind = tuple if self.tuple_samples else dict
        if len(samples) < 2 or not all(type(s) is kind for s in samples):
            return [self.mask_one(s, modality) for s in samples]  # lists, mappings, errors
        others = [(m, slot) for m, slot in enumerate(self._slots) if m != modality]
        if self.mask == "drop":  # dict samples only
            dropped = [dict(s) for s in samples]
            for _, name in others:
                for d in dropped:
                    d.pop(name, None)
            return dropped
        copy = list if kind is tuple else dict
        outs: list[Any] = [copy(s) for s in samples]
        for m, slot in others:
            values = [o[slot] for o in outs] if kind is tuple else [o.get(slot) for o in outs]
            for o, zero in zip(outs, self._zeros_many(m, values)):
                o[slot] = zero
        return [tuple(o) for o in outs] if kind is tuple else outs

    def mask_mixed(self, samples: list[Any], modalities: list[int]) -> list[Any]:
        """Mask each sample for its own modality (one batch call when they share one)."""
        first = modalities[0] if modalities else ALL
        if modalities.count(first) != len(modalities):  # mixed keys: item by item
            return [self.mask_one(s, m) for s, m in zip(samples, modalities)]
        return self.mask_batch(samples, first)

    # ------------------------------------------------------------------- zeros
    def _zeros_many(self, m: int, values: list[Any]) -> list[Any]:
        """:meth:`_zeros` of each value of one batch, cheaply for tensors of one kind.

        Plain strided tensors of one shape, dtype and device all get the same
        zero-stride view of one zero element, made per batch (never cached
        across batches): collated, it gives exactly what fresh zeros would, at
        no allocation per item (``zeros_like`` is ~2.5 us, most of a tiny
        item's cost). Arithmetic in-place writes to it (``add_``, ``x[i] = v``,
        ``copy_``) raise, as for any expanded tensor, rather than leak into the
        other samples of the batch. Anything else gets ``zeros_like``.
        """
        first = values[0]
        if type(first) is torch.Tensor and first.layout is torch.strided:
            shape, dtype, device = first.shape, first.dtype, first.device
            # Type, shape and dtype per item (each tensor attribute read costs ~0.1 us);
            # layout and device are checked on the first item only: a stray sparse
            # or other-device tensor in one batch makes ``collate`` fail loudly anyway.
            if all(
                type(v) is torch.Tensor and v.shape == shape and v.dtype is dtype for v in values
            ):
                zero = torch.zeros((), dtype=dtype, device=device).expand(shape)
                return [zero] * len(values)
        return [self._zeros(m, v) for v in values]

    def _zeros(self, m: int, value: Any) -> Any:
        if value is not None:
            return _zeros_like(value)
        template = self._templates.get(m)
        if template is None:  # partial loading left it out: learn its shape once
            if self._template is None:
                raise KeyError(
                    f"the sample holds no modality {self.modalities[m]!r} to mask "
                    f"(modalities={self.modalities})"
                )
            template = _zeros_like(self._template()[self._slots[m]])
            self._templates[m] = template
        return _zeros_like(template)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(modalities={self.modalities}, mask={self.mask!r})"
