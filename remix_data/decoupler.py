"""The dataset wrapper that masks every modality but the active one.

:class:`ModalityDecoupler` turns a key ``(index, modality)`` from the
:class:`~remix_data.ReassemblingBatchSampler` into ``(sample, index, modality)``.
The decision travels in the key, so the wrapper holds no per-epoch state and
works unchanged in ``DataLoader`` workers, persistent or not.

Optional partial loading: if the wrapped dataset defines
``load_modalities(index, names) -> sample`` (returning a sample that holds at
least the modalities in ``names``), the decoupler calls it for unimodal keys, so
a masked modality is never loaded or decoded. With ``mask="zeros"`` the zeros
then take the shape and dtype of that modality in sample 0, loaded once per
process (use ``mask="drop"`` or ``"none"`` for modalities of varying shape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from ._checks import check_choice, check_modalities
from .vocabulary import ALL, Key, ModalitySpec

__all__ = ["ModalityDecoupler", "mask_features", "PARTIAL_LOADER"]

#: Name of the optional dataset method for loading only some modalities.
PARTIAL_LOADER = "load_modalities"

_MASKS = ("zeros", "drop", "none")


def _zeros_like(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, np.ndarray):
        return np.zeros_like(value)
    raise TypeError(
        f"mask='zeros' needs tensors or numpy arrays, but a modality holds "
        f"{type(value).__name__}; use mask='drop' or mask='none'"
    )


class ModalityDecoupler(Dataset[tuple[Any, int, int]]):
    r"""Wrap a multimodal dataset so each key selects which modality stays visible.

    Args:
        dataset: any map-style dataset whose samples are dicts (keyed by modality
            name) or tuples/lists (modalities at fixed positions).
        modalities: for dict samples, the modality names, in the filter's order;
            for tuple/list samples, a mapping ``{name: position}`` in that order.
            Entries that are not modalities (labels, ids) pass through untouched.
        mask: ``"zeros"`` replaces inactive modalities by zeros of the same shape
            and dtype (the paper's figure); ``"drop"`` removes their keys (dict
            samples only; unimodal batches still collate); ``"none"`` leaves the
            sample intact for feature-level masking in the model (the reference
            code), see :func:`mask_features`.

    ``data[(index, m)]`` returns ``(sample, index, m)`` with every modality other
    than ``modalities[m]`` masked; ``data[index]`` and ``data[(index, ALL)]``
    return the full sample with modality :data:`~remix_data.ALL`.

    Example:
        >>> import torch
        >>> base = [{"audio": torch.ones(2), "video": torch.ones(3), "label": 1}]
        >>> data = ModalityDecoupler(base, modalities=("audio", "video"))
        >>> sample, index, modality = data[(0, 1)]
        >>> sample["audio"].tolist(), sample["video"].tolist(), index, modality
        ([0.0, 0.0], [1.0, 1.0, 1.0], 0, 1)
        >>> data[0][0]["audio"].tolist()
        [1.0, 1.0]
    """

    def __init__(
        self,
        dataset: Any,
        modalities: ModalitySpec,
        *,
        mask: str = "zeros",
    ) -> None:
        self.dataset = dataset
        self.mask = check_choice("mask", mask, _MASKS)
        if isinstance(modalities, Mapping):
            self.modalities = check_modalities("modalities", list(modalities))
            slots: list[Any] = []
            for name in self.modalities:
                pos = modalities[name]
                if isinstance(pos, bool) or not isinstance(pos, int):
                    raise TypeError(
                        f"modalities should map names to integer positions, but got "
                        f"{name!r}: {pos!r} in modalities={dict(modalities)!r}"
                    )
                slots.append(pos)
            if len(set(slots)) != len(slots):
                raise ValueError(
                    f"modalities should map names to distinct positions, but got "
                    f"modalities={dict(modalities)!r}"
                )
            self.tuple_samples = True
            if self.mask == "drop":
                raise ValueError(
                    "mask='drop' needs dict samples (a position cannot be removed from a "
                    f"tuple); got positional modalities={dict(modalities)!r}: use 'zeros' or 'none'"
                )
        else:
            self.modalities = check_modalities("modalities", modalities)
            slots = list(self.modalities)
            self.tuple_samples = False
        self._slots: tuple[Any, ...] = tuple(slots)
        loader = getattr(dataset, PARTIAL_LOADER, None)
        self._partial = loader if callable(loader) and self.mask != "none" else None
        self._templates: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def _split_key(self, key: Any) -> tuple[int, int]:
        if isinstance(key, tuple):
            if len(key) != 2:
                raise ValueError(f"key should be (index, modality), but got key={key!r}")
            index, modality = key
        else:
            index, modality = key, ALL
        if isinstance(modality, torch.Tensor):
            modality = int(modality)
        if isinstance(index, torch.Tensor):
            index = int(index)
        if not ALL <= modality < len(self.modalities):
            raise ValueError(
                f"modality should be ALL ({ALL}) or lie in [0, {len(self.modalities)}) "
                f"for modalities={self.modalities}, but got modality={modality!r}"
            )
        return index, modality

    def _split_keys(self, keys: list[Key | int]) -> tuple[list[int], list[int]]:
        """Indices and modalities of a batch of keys, validated like :meth:`_split_key`.

        Fast path for what the sampler yields, ``(int, int)`` tuples: a few
        C-level passes per batch instead of Python work per key.
        """
        pairs = cast(list[tuple[Any, Any]], keys)
        if pairs and set(map(type, pairs)) == {tuple} and set(map(len, pairs)) == {2}:
            indices, modalities = (list(column) for column in zip(*pairs))
            count = len(self.modalities)
            if set(map(type, indices)) == {int} and all(
                type(m) is int and ALL <= m < count for m in set(modalities)
            ):
                return indices, modalities
        split = [self._split_key(k) for k in keys]  # converts tensors, raises on bad keys
        return [i for i, _ in split], [m for _, m in split]

    def __getitem__(self, key: Key | int) -> tuple[Any, int, int]:
        index, modality = self._split_key(key)
        return self._get(index, modality), index, modality

    def _get(self, index: int, modality: int) -> Any:
        if modality == ALL or self.mask == "none":
            return self.dataset[index]
        if self._partial is not None:
            sample = self._partial(index, (self.modalities[modality],))
        else:
            sample = self.dataset[index]
        return self._masked(sample, modality)

    def __getitems__(self, keys: list[Key | int]) -> list[tuple[Any, int, int]]:
        """Batch access (used by the DataLoader's fetcher): one call per batch."""
        if not isinstance(keys, list):
            keys = list(keys)
        indices, modalities = self._split_keys(keys)
        if self._partial is not None:  # loading dominates: item by item
            return [(self._get(i, m), i, m) for i, m in zip(indices, modalities)]
        fetch = getattr(self.dataset, "__getitems__", None)
        if fetch is not None:
            samples = fetch(indices)
        else:
            dataset = self.dataset
            samples = [dataset[i] for i in indices]
        if self.mask != "none":
            samples = self._masked_all(samples, modalities)
        return list(zip(samples, indices, modalities))

    def _masked_all(self, samples: list[Any], modalities: list[int]) -> list[Any]:
        first = modalities[0] if modalities else ALL
        if modalities.count(first) != len(modalities):  # mixed keys: item by item
            return [s if m == ALL else self._masked(s, m) for s, m in zip(samples, modalities)]
        if first == ALL:
            return list(samples)
        return self._masked_batch(samples, first)

    def _masked_batch(self, samples: list[Any], modality: int) -> list[Any]:
        """:meth:`_masked` of samples that share one active modality, a batch at once."""
        kind = tuple if self.tuple_samples else dict
        if len(samples) < 2 or not all(type(s) is kind for s in samples):
            return [self._masked(s, modality) for s in samples]  # lists, mappings, errors
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

    def _masked(self, sample: Any, modality: int) -> Any:
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

    def _zeros(self, m: int, value: Any) -> Any:
        if value is not None:
            return _zeros_like(value)
        template = self._templates.get(m)
        if template is None:  # partial loading left it out: learn its shape once
            full = self.dataset[0]
            template = _zeros_like(full[self._slots[m]])
            self._templates[m] = template
        return _zeros_like(template)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.dataset).__name__}, "
            f"modalities={self.modalities}, mask={self.mask!r})"
        )


def mask_features(
    features: Mapping[str, torch.Tensor],
    modality: torch.Tensor,
    modalities: Sequence[str],
) -> dict[str, torch.Tensor]:
    """Zero each modality's features on the rows whose active modality is another.

    The feature-level masking of the reference code: encoders run on the full
    sample (``mask="none"``), and this zeroes the pooled features of inactive
    modalities before fusion. Rows with modality ``ALL`` keep everything.
    Differentiable (a multiplication), on the features' device.

    Args:
        features: ``{name: [B, ...] tensor}`` per modality.
        modality: ``[B]`` active-modality ids as yielded by the loader.
        modalities: the names in the filter's order.

    Example:
        >>> import torch
        >>> feats = {"audio": torch.ones(2, 3), "video": torch.ones(2, 3)}
        >>> out = mask_features(feats, torch.tensor([0, -1]), ("audio", "video"))
        >>> out["video"].sum(dim=1).tolist()
        [0.0, 3.0]
    """
    names = tuple(modalities)
    unknown = set(features) - set(names)
    if unknown:
        raise ValueError(f"features names unknown modalities {sorted(unknown)}; known: {names}")
    out: dict[str, torch.Tensor] = {}
    for name, value in features.items():
        m = names.index(name)
        ids = modality.to(value.device)
        if ids.shape != value.shape[:1]:
            raise ValueError(
                f"modality should have shape [{value.shape[0]}] like features[{name!r}], "
                f"but got {tuple(ids.shape)}"
            )
        keep = ((ids == m) | (ids == ALL)).to(value.dtype)
        out[name] = value * keep.view(-1, *([1] * (value.dim() - 1)))
    return out
