"""Masking: hide every modality of a sample but the active one.

:class:`Masker` is the one implementation of the three masking modes, shared by
:class:`~remix_data.ModalityDecoupler` (map-style datasets) and the streaming
remixer: ``"zeros"`` replaces an inactive modality by zeros of its shape and
dtype, ``"drop"`` removes it, ``"none"`` leaves the sample as it is (the model
masks features, see :func:`~remix_data.mask_features`).

Where a modality lives in a sample is its *location* (one mechanism for every
kind of sample):

- a name (the default: the modality's own name): a key of a dict sample, or an
  attribute of a dataclass, named tuple or other object;
- an ``int``: a position in a tuple or list sample;
- a dotted key path such as ``"inputs.audio"``: one step per dot, each a key
  (mappings), a position (digits, in tuples and lists) or an attribute
  (anything else), e.g. ``{"inputs": {"audio": ...}}`` or ``batch.inputs.audio``.

Masking never changes the wrapped sample: every container on the path to a
masked modality is copied (dicts, lists and tuples rebuilt, named tuples
``_replace``-d, other objects ``copy.copy``-ed before the attribute is set).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import torch

from ._checks import check_choice, check_modalities
from .vocabulary import ALL

__all__ = ["MASKS", "DroppedSample", "Location", "Masker", "locate", "describe", "is_missing"]

#: The masking modes.
MASKS = ("zeros", "drop", "none")

#: Where a modality lives in a sample: a name, a position or a dotted key path.
Location = str | int

_MISSING = object()


def _zeros_like(value: Any, name: str = "") -> Any:
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, np.ndarray):
        return np.zeros_like(value)
    where = f"modality {name!r}" if name else "a modality"
    raise TypeError(
        f"mask='zeros' needs tensors or numpy arrays, but {where} holds "
        f"{type(value).__name__}; use mask='drop' (the model skips an absent modality), or "
        "mask='none' with mask_features(features, modality, filt) in the model"
    )


def _parts(location: Location) -> tuple[str | int, ...]:
    if isinstance(location, int):
        return (location,)
    return tuple(int(p) if p.isdigit() else p for p in location.split("."))


def _is_plain_sequence(obj: Any) -> bool:
    return isinstance(obj, (tuple, list)) and not hasattr(obj, "_fields")


def _child(obj: Any, part: str | int) -> Any:
    """One step of a path, or ``_MISSING``."""
    if isinstance(obj, Mapping):
        return obj.get(part, _MISSING)
    if isinstance(part, int):
        if isinstance(obj, (tuple, list)) and -len(obj) <= part < len(obj):
            return obj[part]
        return _MISSING
    return getattr(obj, part, _MISSING)


def _replaced(obj: Any, part: str | int, value: Any) -> Any:
    """A copy of ``obj`` whose ``part`` is ``value`` (removed if ``value`` is ``_MISSING``)."""
    if isinstance(obj, Mapping):
        out = dict(obj)
        if value is _MISSING:
            out.pop(part, None)
        else:
            out[part] = value
        return out
    if isinstance(part, int) and isinstance(obj, (tuple, list)):
        items = list(obj)
        items[part] = value
        if isinstance(obj, list):
            return items
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if hasattr(obj, "_fields") and isinstance(obj, tuple):
        return obj._replace(**{str(part): value})  # type: ignore[attr-defined]
    out = copy.copy(obj)
    object.__setattr__(out, str(part), value)
    return out


def _with(obj: Any, parts: tuple[str | int, ...], value: Any) -> Any:
    head, rest = parts[0], parts[1:]
    if rest:
        inner = _child(obj, head)
        if inner is _MISSING:
            return obj  # the path is absent (partial loading): nothing to mask
        value = _with(inner, rest, value)
    return _replaced(obj, head, value)


def locate(sample: Any, location: Location) -> Any:
    """The value at ``location`` in ``sample``; ``KeyError`` naming the path if absent.

    Example:
        >>> locate({"inputs": {"audio": 1}}, "inputs.audio"), locate((5, 6), 1)
        (1, 6)
    """
    value = sample
    for part in _parts(location):
        value = _child(value, part)
        if value is _MISSING:
            raise KeyError(location)
    return value


_NONE_TYPE = type(None)

#: What every error about a missing modality says to do.
UNDECLARED = (
    "If some samples lack a modality, declare it: HardSampleFilter(..., available=...) "
    "(remix_data.availability.scan_available builds the table), then the "
    "ModalityDecoupler built over that filter fills missing values and no sample trains "
    "a modality it lacks"
)


def is_missing(sample: Any, location: Location) -> bool:
    """Whether ``sample`` lacks the modality at ``location``: absent, or ``None``.

    Example:
        >>> is_missing({"a": None}, "a"), is_missing({"a": 1}, "b"), is_missing((1, 2), 1)
        (True, True, False)
    """
    value = sample
    for part in _parts(location):
        value = _child(value, part)
        if value is _MISSING:
            return True
    return value is None


def describe(sample: Any) -> str:
    """What a sample holds, for error messages: its keys, fields or length.

    Example:
        >>> describe({"inputs": {"audio": 1}, "label": 0})
        "a dict with keys ['inputs', 'label'] (inputs: a dict with keys ['audio'])"
    """
    kind = type(sample).__name__
    if isinstance(sample, Mapping):
        nested = [f"{k}: {describe(v)}" for k, v in sample.items() if isinstance(v, Mapping)]
        inner = f" ({'; '.join(nested)})" if nested else ""
        return f"a {kind} with keys {list(sample)}{inner}"
    if hasattr(sample, "_fields"):
        return f"a named tuple {kind} with fields {list(sample._fields)}"
    if isinstance(sample, (tuple, list)):
        return f"a {kind} of {len(sample)} items"
    fields = getattr(sample, "__dataclass_fields__", None)
    if fields is not None:
        return f"a dataclass {kind} with fields {list(fields)}"
    names = [n for n in getattr(sample, "__dict__", {}) if not n.startswith("_")]
    return f"a {kind} with attributes {names}"


class DroppedSample(dict):  # type: ignore[type-arg]
    """A dict sample (or batch) from which ``mask="drop"`` removed the inactive modalities.

    A plain ``dict`` in every respect but one: reading a key it lacks raises a
    ``KeyError`` that says why, since a model written for full samples
    (``model(x["audio"], x["video"])``) meets it at the first unimodal batch,
    after the warm-up. ``default_collate`` keeps the type of the batch's first
    sample, which :class:`Masker` makes a ``DroppedSample``; a ``collate_fn``
    that builds its own dict returns a plain one.

    Example:
        >>> batch = DroppedSample({"video": 1, "label": 0})
        >>> batch["audio"]  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        KeyError: "'audio' is not in this batch. With mask='drop' (e.g. RECOMMENDED) a ...
    """

    __slots__ = ()

    def __missing__(self, key: Any) -> Any:
        raise KeyError(
            f"{key!r} is not in this batch. With mask='drop' (e.g. RECOMMENDED) a unimodal "
            f"batch holds only the modality it trains: if {key!r} is a modality, skip its "
            f"encoder when absent ({key!r} in batch), or mask with zeros "
            "(build(..., masking='zeros'))"
        )


class Masker:
    r"""Mask the inactive modalities of one sample or of a batch sharing one modality.

    Args:
        modalities: the modality names, in id order.
        mask: ``"zeros"``, ``"drop"`` or ``"none"``.
        locations: ``{name: location}`` for modalities that do not sit under
            their own name (see the module docstring): an ``int`` position for
            tuple/list samples, a dotted key path for nested samples. Missing
            names default to the name itself.
        template: a zero-argument callable returning a full sample; called once
            per modality, the first time a sample lacks a modality that
            ``mask="zeros"`` must fill (partial loading), to learn its shape
            (see also :meth:`learn_template`). Without it (and without a
            learnt template) a masked value that is ``None`` or absent raises
            a ``ValueError``.

    Example:
        >>> import torch
        >>> masker = Masker(("audio", "video"))
        >>> out = masker.mask_one({"audio": torch.ones(2), "video": torch.ones(1)}, 1)
        >>> out["audio"].tolist(), out["video"].tolist()
        ([0.0, 0.0], [1.0])
        >>> nested = Masker(("audio", "video"), locations={"audio": "x.a", "video": "x.v"})
        >>> nested.mask_one({"x": {"a": torch.ones(1), "v": torch.ones(1)}}, 0)["x"]["v"]
        tensor([0.])
    """

    def __init__(
        self,
        modalities: Sequence[str],
        mask: str = "zeros",
        *,
        locations: Mapping[str, Location] | None = None,
        template: Callable[[], Any] | None = None,
    ) -> None:
        self.modalities = check_modalities("modalities", modalities)
        self.mask = check_choice("mask", mask, MASKS)
        given = dict(locations or {})
        unknown = sorted(set(given) - set(self.modalities))
        if unknown:
            raise ValueError(
                f"locations names unknown modalities {unknown}; known: {self.modalities} "
                f"(locations={given!r})"
            )
        for name, where in given.items():
            if isinstance(where, bool) or not isinstance(where, (str, int)) or where == "":
                raise TypeError(
                    f"locations should map a modality to a key path (str) or a position "
                    f"(int), but got {name!r}: {where!r} in locations={given!r}"
                )
        self.locations: dict[str, Location] = {n: given.get(n, n) for n in self.modalities}
        slots = tuple(self.locations[n] for n in self.modalities)
        if len(set(slots)) != len(slots):
            raise ValueError(
                f"locations should give every modality its own place, but got "
                f"locations={self.locations!r}"
            )
        self._slots: tuple[Any, ...] = slots
        self._paths = tuple(_parts(s) for s in slots)
        # Fast paths: every modality a top-level dict key, or a tuple position.
        flat_keys = all(isinstance(s, str) and "." not in s for s in slots)
        self._kind: type | None = dict if flat_keys else None
        if all(isinstance(s, int) for s in slots):
            self._kind = tuple
        if self.mask == "drop" and self._kind is tuple:
            raise ValueError(
                "mask='drop' needs dict samples (a position cannot be removed from a "
                f"tuple); got positional locations={self.locations!r}: use 'zeros' or 'none'"
            )
        self._template = template
        self._templates: dict[int, Any] = {}

    # ------------------------------------------------------------------- checks
    def check_sample(
        self, sample: Any, what: str = "the sample", names: Sequence[str] | None = None
    ) -> None:
        """Raise unless every modality of ``sample`` (or of ``names``) can be masked.

        ``ValueError`` names the modality, its location and what ``sample``
        holds when a location is absent or holds ``None``, or when
        ``mask="drop"`` would have to remove something that is not a mapping
        entry; ``TypeError`` when ``mask="zeros"`` finds a value that is not a
        tensor or an array.
        """
        for name, slot, path in zip(self.modalities, self._slots, self._paths):
            if names is not None and name not in names:
                continue
            try:
                value = locate(sample, slot)
            except KeyError:
                hint = (
                    "; give its place with locations={name: 'outer.inner'} (nested), "
                    "{name: position} (tuples) or an attribute name (build(..., "
                    "locations=...) takes the same). "
                )
                raise ValueError(
                    f"modality {name!r} is not in {what}: looked for "
                    f"{'position' if isinstance(slot, int) else 'key path'} {slot!r}, but "
                    f"{what} is {describe(sample)}{hint}{UNDECLARED}"
                ) from None
            if value is None:
                raise ValueError(f"modality {name!r} is None in {what}. {UNDECLARED}")
            if self.mask == "zeros":
                _zeros_like(value, name)
            if self.mask == "drop":
                parent = sample
                for part in path[:-1]:
                    parent = _child(parent, part)
                if not isinstance(parent, Mapping):
                    raise ValueError(
                        f"mask='drop' removes modality {name!r} from a mapping, but it sits in "
                        f"{describe(parent)} at {slot!r}: use mask='zeros' or mask='none'"
                    )

    # ------------------------------------------------------------------ one sample
    def mask_one(self, sample: Any, modality: int) -> Any:
        """``sample`` with every modality but ``modalities[modality]`` masked.

        ``modality == ALL`` and ``mask="none"`` return the sample unchanged.
        """
        if modality == ALL or self.mask == "none":
            return sample
        if self._kind is tuple and _is_plain_sequence(sample):
            out = list(sample)
            for m, pos in enumerate(self._slots):
                if m != modality:
                    out[pos] = self._zeros(m, out[pos])
            return type(sample)(out) if isinstance(sample, tuple) else out
        if self._kind is dict and isinstance(sample, Mapping):
            active = self._slots[modality]
            if self.mask == "drop":
                self._check_active(sample, modality)
                kept = {k: v for k, v in sample.items() if k == active or k not in self._slots}
                return DroppedSample(kept)
            out_dict = dict(sample)
            for m, name in enumerate(self._slots):
                if m != modality:
                    out_dict[name] = self._zeros(m, sample.get(name, _MISSING))
            return out_dict
        return self._mask_paths(sample, modality)

    def _mask_paths(self, sample: Any, modality: int) -> Any:
        """The general case: follow each modality's path (nested, attributes)."""
        if self.mask == "drop":
            self._check_active(sample, modality)
        out = sample
        for m, path in enumerate(self._paths):
            if m == modality:
                continue
            if self.mask == "drop":
                out = _with(out, path, _MISSING)
                continue
            try:
                value = locate(out, self._slots[m])
            except KeyError:
                value = _MISSING
            out = _with(out, path, self._zeros(m, value))
        return out

    def _check_active(self, sample: Any, modality: int) -> None:
        if is_missing(sample, self._slots[modality]):
            raise ValueError(
                f"mask='drop' would leave no modality: the sample has no "
                f"{self.modalities[modality]!r} at {self._slots[modality]!r}; "
                f"the sample is {describe(sample)}. {UNDECLARED}"
            )

    # ---------------------------------------------------------------- one batch
    def mask_batch(self, samples: list[Any], modality: int, *, in_place: bool = False) -> list[Any]:
        """:meth:`mask_one` of samples that share one active modality, a batch at once.

        ``in_place=True`` says that the caller owns the sample containers (a
        dataset that builds a new one per access, see
        :data:`~remix_data.decoupler.FRESH_SAMPLES`): dict samples are then
        masked in place instead of copied. By default every sample is copied
        and never changed.
        """
        if modality == ALL or self.mask == "none":
            return list(samples)
        kind = self._kind
        if kind is None or len(samples) < 2 or not all(type(s) is kind for s in samples):
            return [self.mask_one(s, modality) for s in samples]  # lists, mappings, errors
        others = [(m, slot) for m, slot in enumerate(self._slots) if m != modality]
        if self.mask == "drop":  # dict samples only
            self._check_active(samples[0], modality)
            dropped = list(samples) if in_place else list(map(dict, samples))
            for _, name in others:
                for d in dropped:
                    d.pop(name, None)
            # default_collate gives the batch the first sample's mapping type: the
            # model's ``batch["audio"]`` then says why "audio" is absent.
            dropped[0] = DroppedSample(dropped[0])
            return dropped
        if kind is tuple:
            outs: list[Any] = list(map(list, samples))
        else:
            outs = list(samples) if in_place else list(map(dict, samples))
        for m, slot in others:
            if kind is tuple:
                values = [o[slot] for o in outs]
            else:
                values = [o.get(slot, _MISSING) for o in outs]
            for o, zero in zip(outs, self._zeros_many(m, values)):
                o[slot] = zero
        return [tuple(o) for o in outs] if kind is tuple else outs

    def mask_mixed(
        self, samples: list[Any], modalities: list[int], *, in_place: bool = False
    ) -> list[Any]:
        """Mask each sample for its own modality (one batch call when they share one);
        ``in_place`` as in :meth:`mask_batch`."""
        first = modalities[0] if modalities else ALL
        if modalities.count(first) != len(modalities):  # mixed keys: item by item
            return [self.mask_one(s, m) for s, m in zip(samples, modalities)]
        return self.mask_batch(samples, first, in_place=in_place)

    # ------------------------------------------------------------------- zeros
    def _zeros_many(self, m: int, values: list[Any]) -> list[Any]:
        """:meth:`_zeros` of each value of one batch, cheaply for tensors of one kind.

        Plain strided tensors of one shape, dtype and device all get the same
        zero-stride view of one zero element, made per batch (never cached
        across batches): collated, it gives exactly what fresh zeros would, at
        no allocation per item (docs/architecture.md, "Hot paths"). Arithmetic
        in-place writes to it (``add_``, ``x[i] = v``, ``copy_``) raise, as for
        any expanded tensor, rather than leak into the other samples of the
        batch. Anything else gets ``zeros_like``.
        """
        first = values[0]
        if type(first) is torch.Tensor and first.layout is torch.strided:
            shape, dtype, device = first.shape, first.dtype, first.device
            # Type, shape and dtype per item; layout and device on the first item only:
            # a stray sparse or other-device tensor in one batch makes ``collate`` fail
            # loudly anyway.
            if all(
                type(v) is torch.Tensor and v.shape == shape and v.dtype is dtype for v in values
            ):
                zero = torch.zeros((), dtype=dtype, device=device).expand(shape)
                return [zero] * len(values)
        return [self._zeros(m, v) for v in values]

    def _zeros(self, m: int, value: Any) -> Any:
        if value is not None and value is not _MISSING:
            return _zeros_like(value, self.modalities[m])
        if m not in self._templates:  # partial loading left it out: learn its shape once
            if self._template is None:  # nothing says a value may be missing
                raise ValueError(
                    f"a sample holds no modality {self.modalities[m]!r} at {self._slots[m]!r} "
                    f"(None or absent) to mask (modalities={self.modalities}). {UNDECLARED}"
                )
            self.learn_template(m, self._template())
        return _zeros_like(self._templates[m], self.modalities[m])

    # ------------------------------------------------------- missing modalities
    def lacking(self, samples: Sequence[Any], m: int) -> list[int]:
        """The positions of the samples that lack modality ``m`` (``None`` or absent).

        Example:
            >>> Masker(("a", "b")).lacking([{"a": 1, "b": 2}, {"a": None, "b": 2}, {"b": 1}], 0)
            [1, 2]
        """
        slot = self._slots[m]
        get = {dict: dict.get, tuple: tuple.__getitem__}.get(self._kind)  # type: ignore[call-overload]
        if get is not None:
            try:  # C-level passes; raise for a sample of another kind
                if _NONE_TYPE not in set(map(type, map(get, samples, repeat(slot)))):
                    return []
            except (TypeError, IndexError):
                pass
        return [r for r, s in enumerate(samples) if is_missing(s, slot)]

    def learn_template(self, m: int, sample: Any) -> None:
        """Fill absent values of modality ``m`` with zeros shaped like ``sample``'s.

        Partial loading and missing modalities need a value to stand for a
        modality a sample does not hold; it is zeros of that modality's value
        in ``sample`` (a tensor or an array; anything else stands as ``None``).
        """
        value = locate(sample, self._slots[m])
        if isinstance(value, (torch.Tensor, np.ndarray)):
            self._templates[m] = _zeros_like(value)
        else:
            self._templates[m] = None

    def filled(self, sample: Any, m: int) -> Any:
        """``sample`` with modality ``m`` (missing from it) set to its template's zeros.

        Containers on the path are copied as for masking; the value is ``None``
        when the template is not a tensor or an array, or none was learnt.

        Example:
            >>> import torch
            >>> masker = Masker(("audio", "text"))
            >>> masker.learn_template(1, {"audio": torch.ones(1), "text": torch.ones(2)})
            >>> masker.filled({"audio": torch.ones(1), "text": None}, 1)["text"]
            tensor([0., 0.])
        """
        template = self._templates.get(m)
        value = None if template is None else _zeros_like(template)
        return _with(sample, self._paths[m], value)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(modalities={self.modalities}, mask={self.mask!r}, "
            f"locations={self.locations!r})"
        )
