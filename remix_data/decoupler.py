"""The dataset wrapper that masks every modality but the active one.

:class:`ModalityDecoupler` turns a key ``(index, modality)`` from the
:class:`~remix_data.ReassemblingBatchSampler` into ``(sample, index, modality)``.
The decision travels in the key, so the wrapper holds no per-epoch state and
works unchanged in ``DataLoader`` workers, persistent or not. Masking itself is
:class:`~remix_data.masking.Masker`'s (locations of nested and attribute
modalities included).

Optional partial loading: if the wrapped dataset defines
``load_modalities(index, names) -> sample`` (returning a sample that holds at
least the modalities in ``names``), the decoupler calls it for unimodal keys, so
a masked modality is never loaded or decoded. With ``mask="zeros"`` a masked
modality that ``load_modalities`` returns (e.g. a cheap ``torch.empty`` of the
sample's own shape) becomes zeros of that shape; one it leaves out becomes zeros
of that modality's shape in sample 0. So for modalities of varying shape, return
such placeholders or use ``mask="drop"`` / ``"none"``: the construction check
raises when ``dataset[0]`` and ``dataset[-1]`` differ in shape and the loader
returns no placeholder.

Optional in-place masking: masking copies every sample container it changes
(the dataset's own samples are never edited). A dataset whose every access
builds new containers may say so with a class attribute ``fresh_samples = True``
(:data:`FRESH_SAMPLES`); the decoupler then masks dict samples in place.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from ._checks import check_choice, check_modality_id, check_modality_ids
from ._source import is_source, modality_names, modality_rows
from .masking import MASKS, UNDECLARED, Location, Masker, describe, locate
from .table import to_device
from .vocabulary import ALL, PAD, Key, KeyBatch, ModalitySource
from .watch import expect_feature_masking, feature_masked

__all__ = ["ModalityDecoupler", "mask_features", "PARTIAL_LOADER", "FRESH_SAMPLES"]

#: Name of the optional dataset method for loading only some modalities.
PARTIAL_LOADER = "load_modalities"

SIZE_FIX = (
    "the sampler's filter must be built with num_samples=len(dataset) (a smaller filter "
    "trains the same subset every epoch, a larger one indexes past the dataset); pass the "
    "filter itself, ModalityDecoupler(dataset, filt), to have this checked at construction"
)


_TRIPLE = (
    "a DataLoader over a ModalityDecoupler hands its collate_fn (sample, index, modality) "
    "triples, not samples: wrap your collate, collate_fn=RemixCollate(my_collate) (the "
    "loader then yields (batch, index, modality)), or use parts.loader(collate_fn=my_collate)"
)


class RemixItem(tuple):  # type: ignore[type-arg]
    """The ``(sample, index, modality)`` triple that opens each batch of the decoupler.

    A plain tuple, except that indexing it with anything but an integer or a
    slice, or reading an attribute it lacks, raises an error that says what it
    is: a project's own ``collate_fn`` written for samples (``s["audio"]``,
    ``s.audio``) meets the triple first and is told to use
    :class:`~remix_data.RemixCollate`.

    Example:
        >>> item = RemixItem(({"audio": 1}, 0, -1))
        >>> item[0], item[1:]
        ({'audio': 1}, (0, -1))
        >>> item["audio"]  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: item['audio'] of a (sample, index, modality) triple: a DataLoader over ...
    """

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return tuple.__getitem__(self, key)
        raise TypeError(f"item[{key!r}] of a (sample, index, modality) triple: {_TRIPLE}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"item.{name} of a (sample, index, modality) triple: {_TRIPLE}")


#: Name of the optional dataset attribute that, set to ``True``, says that every
#: access (``__getitem__`` / ``__getitems__``) builds new sample containers, so
#: the decoupler may mask them in place instead of copying them.
FRESH_SAMPLES = "fresh_samples"


def _shape(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return tuple(value.shape)
    return None


class ModalityDecoupler(Dataset[tuple[Any, int, int]]):
    r"""Wrap a multimodal dataset so each key selects which modality stays visible.

    Args:
        dataset: any map-style dataset. Its samples hold one entry per modality:
            dict keys (the default), positions of tuples/lists, attributes of
            dataclasses or named tuples, or entries of nested dicts, as given by
            ``locations``. Entries that are not modalities (labels, ids) pass
            through untouched.
        modalities: the :class:`~remix_data.HardSampleFilter` (the one source of
            truth: its names and order define the modality ids, and
            ``len(dataset)`` must equal its ``num_samples``), or the names in the
            filter's order when the decoupler is used on its own. A mapping is
            rejected (its order, not its values, would define the ids): give
            positions as ``locations``.
        mask: ``"zeros"`` replaces inactive modalities by zeros of the same shape
            and dtype (the paper's figure); ``"drop"`` removes their entries
            (mapping entries only; unimodal batches still collate); ``"none"``
            leaves the sample intact for feature-level masking in the model (the
            reference code), see :func:`mask_features`.
        locations: where each modality sits in a sample when not under its own
            name: ``{"audio": 0, "video": 1}`` for tuples, ``{"audio":
            "inputs.audio"}`` for nested dicts (one step per dot: a key, a
            position or an attribute); see :mod:`remix_data.masking`.

    At construction the decoupler reads ``dataset[0]`` and raises, naming the
    modality and what the sample holds, if a modality is not where ``locations``
    says, if ``mask="zeros"`` finds something that is not a tensor or an array,
    or if ``mask="drop"`` would have to remove something that is not a mapping
    entry (with ``load_modalities``: also ``load_modalities(0, (name,))`` for
    every modality, and ``dataset[-1]``, see the module docstring). An empty
    dataset is not checked.

    Names given in another order than the filter's cannot be noticed here, so
    the batches carry the order: the sampler yields
    :class:`~remix_data.vocabulary.KeyBatch` lists naming its filter's
    modalities, and a batch whose names differ from the decoupler's (another
    order, other names) raises a ``ValueError`` naming both, at the first batch.
    Plain lists of keys (the decoupler used on its own) are not checked.

    ``data[(index, m)]`` returns ``(sample, index, m)`` with every modality other
    than ``modalities[m]`` masked; ``data[index]`` and ``data[(index, ALL)]``
    return the full sample with modality :data:`~remix_data.ALL`. The sampler's
    PAD key ``(~index, m)`` (a negative index) returns ``(sample, index, PAD)``:
    sample ``index`` masked as for ``m``, with modality
    :data:`~remix_data.vocabulary.PAD` (it only fills a batch). A list of keys
    (the sampler passed to ``DataLoader`` as ``sampler=`` instead of
    ``batch_sampler=``) raises a ``TypeError`` saying so. A batch from a
    sampler whose filter has another size than ``dataset`` (the names form
    cannot check it at construction) or a key past the end raises a
    ``ValueError`` at the first batch.

    Missing modalities: over a filter built with ``available=`` (see
    :mod:`remix_data.availability`), a modality a sample lacks (``None`` or
    absent) becomes zeros shaped like that modality in the first sample that
    has it (read once at construction; ``None`` for a modality that is not a
    tensor or an array), in every mask mode (``"drop"`` still removes it from
    unimodal batches); the construction check reads that first sample per
    modality instead of ``dataset[0]``. Without a declaration, a ``None`` or
    absent modality raises a ``ValueError`` naming the sample and the fix, at
    construction for ``dataset[0]``, else at the first batch that holds it.

    In each batch (``__getitems__``) the first item is a :class:`RemixItem` and,
    with ``mask="drop"``, the first sample a
    :class:`~remix_data.masking.DroppedSample`: plain tuples and dicts whose
    error messages explain a ``collate_fn`` that expects samples and a model
    that reads a dropped key.

    Example:
        >>> import torch
        >>> from remix_data import HardSampleFilter
        >>> base = [{"audio": torch.ones(2), "video": torch.ones(3), "label": 1}]
        >>> filt = HardSampleFilter(len(base), ("audio", "video"))
        >>> data = ModalityDecoupler(base, filt)
        >>> sample, index, modality = data[(0, 1)]
        >>> sample["audio"].tolist(), sample["video"].tolist(), index, modality
        ([0.0, 0.0], [1.0, 1.0, 1.0], 0, 1)
        >>> data[0][0]["audio"].tolist()
        [1.0, 1.0]
        >>> nested = [{"inputs": {"a": torch.ones(1), "v": torch.ones(1)}, "label": 0}]
        >>> paths = {"audio": "inputs.a", "video": "inputs.v"}
        >>> ModalityDecoupler(nested, filt, locations=paths)[(0, 0)][0]["inputs"]["v"]
        tensor([0.])
    """

    def __init__(
        self,
        dataset: Any,
        modalities: Sequence[str] | ModalitySource,
        *,
        mask: str = "zeros",
        locations: Mapping[str, Location] | None = None,
    ) -> None:
        self.dataset = dataset
        self.mask = check_choice("mask", mask, MASKS)
        self.modalities = modality_names("modalities", modalities)
        if is_source(modalities):
            size, expected = len(dataset), modalities.num_samples
            if size != expected:
                raise ValueError(
                    f"len(dataset) should equal the filter's num_samples, but got "
                    f"len(dataset)={size} and num_samples={expected}: build the filter with "
                    "num_samples=len(dataset) (a smaller filter trains a subset, a larger "
                    "one indexes past the dataset)"
                )
        if locations is not None and not isinstance(locations, Mapping):
            raise TypeError(
                f"locations should map modality names to places, but got locations={locations!r}"
            )
        loader = getattr(dataset, PARTIAL_LOADER, None)
        self._partial = loader if callable(loader) and self.mask != "none" else None
        self.masker = Masker(
            self.modalities,
            self.mask,
            locations=locations,
            # Only partial loading may leave a masked modality out of a sample.
            template=(
                None if self._partial is None else functools.partial(operator.getitem, dataset, 0)
            ),
        )
        # Missing modalities: bool [M, N], True where a sample lacks a modality (the
        # filter's availability, inverted), or None when none lacks any.
        available = getattr(modalities, "available", None) if is_source(modalities) else None
        self._gaps = None if available is None else ~available.T.numpy().astype(bool)
        if self.mask == "none" and is_source(modalities):
            expect_feature_masking(modalities)  # the model must call mask_features
        self._in_place = getattr(dataset, FRESH_SAMPLES, False) is True
        # The names of the last KeyBatch found in this order (identity: one check per group).
        self._checked: object = None
        if len(dataset):
            if self._gaps is None:
                self._check_samples()
            else:
                self._check_gapped_samples()

    def _check_samples(self) -> None:
        """Look at ``dataset[0]`` (and the partial loader) once, before any training."""
        first = self.dataset[0]
        self.masker.check_sample(first, "dataset[0]")
        if self._partial is None:
            return
        placeholders = True
        for name in self.modalities:
            call = f"{PARTIAL_LOADER}(0, ({name!r},))"
            part = self._partial(0, (name,))
            try:
                locate(part, self.masker.locations[name])
            except KeyError:
                raise ValueError(
                    f"{call} should return a sample holding {name!r}, but it returned "
                    f"{describe(part)}"
                ) from None
            others = [n for n in self.modalities if n != name]
            for other in others:
                try:
                    locate(part, self.masker.locations[other])
                except KeyError:
                    placeholders = False
        if self.mask != "zeros" or placeholders or len(self.dataset) < 2:
            return
        last = self.dataset[len(self.dataset) - 1]
        for name in self.modalities:
            where = self.masker.locations[name]
            a, b = _shape(locate(first, where)), _shape(locate(last, where))
            if a != b:
                raise ValueError(
                    f"mask='zeros' with {PARTIAL_LOADER} fills a masked modality with zeros "
                    f"of its shape in sample 0, but modality {name!r} varies in shape "
                    f"(dataset[0]: {a}, dataset[{len(self.dataset) - 1}]: {b}): let "
                    f"{PARTIAL_LOADER} return placeholders of each sample's own shape for "
                    "the masked modalities, or use mask='drop' or mask='none'"
                )

    def _check_gapped_samples(self) -> None:
        """With missing modalities: check each modality on the first sample that has it,
        and learn there the zeros that stand for it where it is missing."""
        assert self._gaps is not None
        for m, name in enumerate(self.modalities):
            first = int(np.argmin(self._gaps[m]))  # the filter checked every column has one
            sample = self.dataset[first]
            self.masker.check_sample(sample, f"dataset[{first}]", names=(name,))
            self.masker.learn_template(m, sample)

    def __len__(self) -> int:
        return len(self.dataset)

    def _fill_gaps(self, samples: list[Any], indices: list[int], modalities: list[int]) -> None:
        """Put template zeros where a sample lacks a modality (in place in ``samples``).

        A masked modality that ``mask="drop"`` removes anyway is left as it is; a
        key whose own modality is missing (built by hand: the filter never
        assigns it) raises.
        """
        gaps = self._gaps
        assert gaps is not None
        rows = gaps[:, indices]  # [M, B]
        if not rows.any():
            return
        for m, r in zip(*np.nonzero(rows)):
            m, r = int(m), int(r)
            active = modalities[r]
            if active == m:
                raise ValueError(
                    f"key ({indices[r]}, {m}) trains {self.modalities[m]!r}, which sample "
                    f"{indices[r]} lacks (the filter's available[{indices[r]}, {m}] is False): "
                    "the filter never assigns it; a key built by hand must not either"
                )
            if self.mask == "drop" and active != ALL:
                continue
            samples[r] = self.masker.filled(samples[r], m)

    def _check_present(self, samples: list[Any], indices: list[int], modality: int) -> None:
        """Raise unless every sample holds the modalities its key shows (after gap filling):
        the trained one of a unimodal key, every one of a joint key."""
        shown = range(len(self.modalities)) if modality == ALL else (modality,)
        for m in shown:
            lacking = self.masker.lacking(samples, m)
            if lacking and self._gaps is not None:  # declared gaps (filled) are fine
                lacking = [r for r in lacking if not self._gaps[m, indices[r]]]
            if not lacking:
                continue
            missing, name = lacking[0], self.modalities[m]
            raise ValueError(
                f"sample {indices[missing]} trains {name!r} but holds no {name!r} "
                f"(None or absent at {self.masker.locations[name]!r}; the sample is "
                f"{describe(samples[missing])}). {UNDECLARED}"
            )

    def _check_size(self, keys: Any, indices: list[int]) -> None:
        """Raise unless the keys index this dataset (a filter of another size)."""
        size = len(self.dataset)
        planned = getattr(keys, "num_samples", None)
        if planned == size and getattr(keys, "indices", None) is indices:
            return  # the sampler's own indices, planned for a filter of this size
        if planned is not None and planned != size:
            raise ValueError(
                f"the batch comes from a sampler whose filter has num_samples={planned}, but "
                f"len(dataset)={size}: {SIZE_FIX}"
            )
        if indices and max(indices) >= size:
            raise ValueError(
                f"key index {max(indices)} is outside the dataset (len(dataset)={size}): {SIZE_FIX}"
            )

    def _split_key(self, key: Any) -> tuple[int, int]:
        if isinstance(key, list):
            raise TypeError(
                f"key should be (index, modality) or an index, but got a list of {len(key)} "
                "keys: pass the ReassemblingBatchSampler to the DataLoader as "
                "batch_sampler=sampler, not sampler=sampler"
            )
        if isinstance(key, tuple):
            if len(key) != 2:
                raise ValueError(f"key should be (index, modality), but got key={key!r}")
            index, modality = key
        else:
            index, modality = key, ALL
            if isinstance(index, (int, np.integer)) and index < 0:
                raise ValueError(
                    f"key's index should be >= 0, but got key={key!r} (a negative index marks "
                    "the sampler's PAD key (~index, modality))"
                )
        if isinstance(modality, torch.Tensor):
            modality = int(modality)
        if isinstance(index, torch.Tensor):
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"key's index should be an integer, but got key={key!r}")
        if isinstance(modality, bool) or not isinstance(modality, (int, np.integer)):
            raise TypeError(f"key's modality should be an integer, but got key={key!r}")
        if not ALL <= modality < len(self.modalities):
            raise ValueError(
                f"modality should be ALL ({ALL}) or lie in [0, {len(self.modalities)}) "
                f"for modalities={self.modalities}, but got modality={modality!r}"
            )
        return int(index), int(modality)

    def _split_keys(self, keys: list[Key | int]) -> tuple[list[int], list[int]]:
        """Indices and modalities of a batch of keys, validated like :meth:`_split_key`.

        Fast paths for what the sampler yields: a :class:`~remix_data.vocabulary.KeyBatch`
        carries its indices and modality (no pass over the keys); other lists of
        ``(int, int)`` tuples take a few C-level passes instead of Python work per key.
        The indices are the keys' own: negative for the sampler's PAD keys.
        """
        if type(keys) is KeyBatch:  # the sampler's: its indices and modality are ints
            indices, modality = keys.indices, keys.modality
            if ALL <= modality < len(self.modalities):
                return indices, [modality] * len(indices)
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

    def _check_order(self, names: Any) -> None:
        """Raise unless a batch's modality names (its ids' meaning) are the decoupler's."""
        ours = self.modalities
        if tuple(names) != ours:
            m = next((i for i, (a, b) in enumerate(zip(ours, names)) if a != b), 0)
            shown = (
                f"modality id {m} would keep {ours[m]!r} visible while the filter trains "
                f"{names[m]!r}"
                if m < min(len(ours), len(names))
                else "the modality ids would not mean the same modalities"
            )
            raise ValueError(
                f"modalities should be the names in the sampler's filter order, but got "
                f"modalities={ours} and a batch from a sampler whose filter has "
                f"modalities={tuple(names)}: {shown}; pass the filter itself, "
                "ModalityDecoupler(dataset, filt), to take names and order from it"
            )
        self._checked = names

    def __getitem__(self, key: Key | int) -> tuple[Any, int, int]:
        index, modality = self._split_key(key)
        if index < 0:  # the sampler's PAD key (~index, m)
            index, shown = ~index, PAD
        else:
            shown = modality
        if not 0 <= index < len(self.dataset):
            self._check_size(None, [index])
        return self._get(index, modality), index, shown

    def _get(self, index: int, modality: int) -> Any:
        if self._partial is not None and modality != ALL:
            sample = self._partial(index, (self.modalities[modality],))
        else:
            sample = self.dataset[index]
        if self._gaps is not None:
            one = [sample]
            self._fill_gaps(one, [index], [modality])
            sample = one[0]
        self._check_present([sample], [index], modality)
        return self.masker.mask_one(sample, modality)

    def __getitems__(self, keys: list[Key | int]) -> list[tuple[Any, int, int]]:
        """Batch access (used by the DataLoader's fetcher): one call per batch."""
        names = getattr(keys, "modalities", None)
        if names is not None and names is not self._checked:
            self._check_order(names)
        if not isinstance(keys, list):
            keys = list(keys)
        indices, modalities = self._split_keys(keys)
        shown = modalities  # the loader's modality column: PAD for the sampler's repeats
        if keys and (keys.padded if type(keys) is KeyBatch else min(indices) < 0):
            shown = [PAD if i < 0 else m for i, m in zip(indices, modalities)]
            indices = [~i if i < 0 else i for i in indices]
        self._check_size(keys, indices)
        if self._partial is not None:  # loading dominates: item by item
            return [(self._get(i, m), i, s) for i, m, s in zip(indices, modalities, shown)]
        fetch = getattr(self.dataset, "__getitems__", None)
        if fetch is not None:
            samples = list(fetch(indices))  # our own list, whatever fetch returned
            if len(samples) != len(indices):  # zip would pair samples with other indices
                raise ValueError(
                    f"{type(self.dataset).__name__}.__getitems__ should return one sample per "
                    f"index, in order, but got {len(samples)} samples for {len(indices)} "
                    f"indices {indices[:8]}{'...' if len(indices) > 8 else ''}: a sample it "
                    "skips or merges would leave the others paired with the wrong index"
                )
        else:
            dataset = self.dataset
            samples = [dataset[i] for i in indices]
        if self._gaps is not None:
            self._fill_gaps(samples, indices, modalities)
        first = modalities[0] if modalities else ALL
        if modalities.count(first) == len(modalities):
            self._check_present(samples, indices, first)
        else:
            for r, m in enumerate(modalities):
                self._check_present(samples[r : r + 1], indices[r : r + 1], m)
        if self.mask != "none":
            samples = self.masker.mask_mixed(samples, modalities, in_place=self._in_place)
        items = list(zip(samples, indices, shown))
        if items:  # explains itself to a collate_fn written for samples
            items[0] = RemixItem(items[0])
        return items

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.dataset).__name__}, "
            f"modalities={self.modalities}, mask={self.mask!r}, "
            f"locations={self.masker.locations!r})"
        )


def mask_features(
    features: Mapping[str, torch.Tensor],
    modality: torch.Tensor | int,
    modalities: Any,
) -> dict[str, torch.Tensor]:
    """Zero each modality's features on the rows whose active modality is another.

    The feature-level masking of the reference code: encoders run on the full
    sample (``mask="none"``), and this zeroes the pooled features of inactive
    modalities before fusion. Rows with modality ``ALL`` keep everything.
    Differentiable (a multiplication), on the features' device. With one id
    known on the host (an ``int``, or the loader's host ``modality`` column of a
    unimodal batch) the active modality's features come back as they are and
    each masked one costs one multiplication; ids on a device are not read
    (one gather of a cached keep table, then one multiplication per modality).

    Args:
        features: ``{name: [B, ...] tensor}`` per modality.
        modality: ``[B]`` active-modality ids as yielded by the loader, or one
            id for the whole batch (an ``int`` or a 0-d tensor).
        modalities: the :class:`~remix_data.HardSampleFilter` (its names and
            order), or the names in the filter's order.

    Example:
        >>> import torch
        >>> feats = {"audio": torch.ones(2, 3), "video": torch.ones(2, 3)}
        >>> out = mask_features(feats, torch.tensor([0, -1]), ("audio", "video"))
        >>> out["video"].sum(dim=1).tolist()
        [0.0, 3.0]
        >>> mask_features(feats, 1, ("audio", "video"))["audio"].sum().item()
        0.0
    """
    names = modality_names("modalities", modalities, check_order=True)
    feature_masked()  # remix_data.watch: the model does mask its features
    unknown = set(features) - set(names)
    if unknown:
        raise ValueError(f"features names unknown modalities {sorted(unknown)}; known: {names}")
    one = _one_id(modality, len(names))
    # ids per row must match the rows of every feature tensor; one id fits any
    shape = tuple(modality.shape) if isinstance(modality, torch.Tensor) and modality.dim() else None
    out: dict[str, torch.Tensor] = {}
    kept: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}  # [B, M] per device, dtype
    for name, value in features.items():
        m = names.index(name)
        if shape is not None and shape != tuple(value.shape[:1]):
            raise ValueError(
                f"modality should have shape [{value.shape[0]}] like features[{name!r}], "
                f"but got {shape}"
            )
        if one is not None:  # read on the host: no operation where nothing is masked
            if one in (m, ALL):
                out[name] = value
            elif value.is_floating_point() or value.is_complex():
                out[name] = value * 0.0  # differentiable, as the per-row product
            else:  # integer and bool features keep their dtype (no gradient to keep)
                out[name] = torch.zeros_like(value)
            continue
        keep = kept.get((value.device, value.dtype))
        if keep is None:  # one gather of the table per device and dtype
            ids = modality_rows("modality", modality, value.shape[0], len(names), value.device)
            keep = kept[value.device, value.dtype] = _keep_table(
                len(names), value.device, value.dtype
            )[ids]
        out[name] = value * keep[:, m].view(-1, *([1] * (value.dim() - 1)))
    return out


def _one_id(modality: Any, count: int) -> int | None:
    """The batch's one modality id when it is known on the host (an ``int``, or host ids
    that are all equal), checked; ``None`` for per-row or device ids (not read)."""
    if isinstance(modality, bool) or not isinstance(modality, (int, torch.Tensor)):
        raise TypeError(
            f"modality should be an integer or an integer tensor, but got modality={modality!r}"
        )
    if isinstance(modality, int):
        return check_modality_id("modality", modality, count)
    span = check_modality_ids("modality", modality, count)
    return span[0] if span is not None and span[0] == span[1] else None


@functools.lru_cache(maxsize=64)
def _keep_table(count: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[count + 2, count]``: which modalities rows of each id keep (1) or zero (0).

    Row ``k`` is id ``k``'s one-hot; the last two rows are read through negative
    ids: ``PAD`` (-2) keeps nothing, ``ALL`` (-1) everything. Made once per
    configuration, so that per-row ids take one gather on their device.
    """
    table = torch.zeros(count + 2, count)
    table[:count] = torch.eye(count)
    table[ALL] = 1.0
    table[PAD] = 0.0
    return to_device(table.to(dtype), device)
