"""The words every part of remix_data shares: modality ids, keys and modality specs.

This module sits at the bottom of the package: it imports nothing from it, and
every other module takes these names from here.

- A *modality id* is an ``int``: ``m`` in ``[0, M)`` means ``modalities[m]``;
  :data:`ALL` marks a joint batch (every modality visible: warm-up epochs and
  unmasked keys).
- An *assignment* holds one modality id per sample, or :data:`FILTERED` for a
  sample that trains no modality this epoch.
- A :data:`Key` is what the batch sampler yields and the decoupler receives:
  ``(index, modality id)``, two plain Python ints. A :data:`Batch` is a list of them;
  the batch sampler yields a :class:`KeyBatch`, a list that also names the
  modalities its ids refer to (in the filter's order), so that the decoupler can
  check that its own order is the same.
- A :data:`ModalitySpec` is what a user may pass as ``modalities``: a sequence of
  names (dict samples) or a ``{name: position}`` mapping (tuple samples), whose
  order defines the ids.

Example:
    >>> from remix_data.vocabulary import ALL, FILTERED, Key
    >>> key: Key = (7, ALL)
    >>> key, FILTERED
    ((7, -1), -1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

__all__ = ["ALL", "FILTERED", "Key", "Batch", "KeyBatch", "ModalitySpec", "ModalitySource"]

#: Modality id of a joint (all-modality) batch: warm-up epochs and unmasked keys.
ALL = -1

#: Assignment value of a sample that trains no modality this epoch.
FILTERED = -1

#: ``(sample index, modality id)``: one key of a batch.
Key = tuple[int, int]

#: One batch of keys, as the batch sampler yields it.
Batch = list[Key]


class KeyBatch(list[Key]):
    """A batch of keys that names the modalities its ids refer to.

    A plain ``list`` of ``(index, modality id)`` keys (it compares, collates and
    pickles like one) with one more attribute, ``modalities``: the names in id
    order of the filter the keys were planned from. The
    :class:`~remix_data.ReassemblingBatchSampler` yields these; the
    :class:`~remix_data.ModalityDecoupler` compares ``modalities`` with its own
    names at every batch, so that names given in another order than the
    filter's fail at the first batch instead of masking the wrong modality.

    Example:
        >>> import pickle
        >>> batch = KeyBatch([(4, 1), (7, 1)], ("audio", "video"))
        >>> batch == [(4, 1), (7, 1)], batch.modalities
        (True, ('audio', 'video'))
        >>> pickle.loads(pickle.dumps(batch)).modalities
        ('audio', 'video')
    """

    __slots__ = ("modalities",)

    def __init__(self, keys: Iterable[Key] = (), modalities: tuple[str, ...] = ()) -> None:
        super().__init__(keys)
        self.modalities = modalities


#: What a user may pass as ``modalities``: names in id order, or ``{name: position}``.
ModalitySpec = Sequence[str] | Mapping[str, int]


class ModalitySource(Protocol):
    """Anything that knows the modality names (in id order) and the dataset size.

    :class:`~remix_data.HardSampleFilter` is one; the parts that need both facts
    can take such an object instead of repeating them.
    """

    @property
    def modalities(self) -> tuple[str, ...]: ...

    @property
    def num_samples(self) -> int: ...
