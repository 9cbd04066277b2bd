"""The words every part of remix_data shares: modality ids and keys.

This module sits at the bottom of the package: it imports nothing from it, and
every other module takes these names from here.

- A *modality id* is an ``int``: ``m`` in ``[0, M)`` means ``modalities[m]``;
  :data:`ALL` marks a joint batch (every modality visible: warm-up epochs and
  unmasked keys).
- An *assignment* holds one modality id per sample, or :data:`FILTERED` for a
  sample that trains no modality this epoch. ``ALL == FILTERED == -1``: the two
  never meet, ``ALL`` lives in the loader's ``modality`` column (a row that saw
  every modality) and ``FILTERED`` in an assignment (a sample left out), so
  compare each only with the column it belongs to.
- A :data:`Key` is what the batch sampler yields and the decoupler receives:
  ``(index, modality id)``, two plain Python ints. A :data:`Batch` is a list of them;
  the sampler yields each as a :class:`KeyBatch`, a list that also holds its
  indices, its one modality id and the filter's modality names (so the
  decoupler need not split the keys again, and can check that its own order is
  the filter's).

Example:
    >>> from remix_data.vocabulary import ALL, FILTERED, Key
    >>> key: Key = (7, ALL)
    >>> key, FILTERED
    ((7, -1), -1)
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, Protocol

__all__ = ["ALL", "FILTERED", "PAD", "Key", "Batch", "KeyBatch", "ModalitySource"]

#: Modality id of a joint (all-modality) batch: warm-up epochs and unmasked keys.
ALL = -1

#: Assignment value of a sample that trains no modality this epoch.
FILTERED = -1

#: Modality id, in the loader's ``modality`` column, of a row that only repeats a
#: sample to fill a batch (a static batch shape, or the padding that gives every
#: rank and micro-batch a full step): its loss weight is 0 and its scores are not
#: written, so no sample is trained twice in an epoch's loss.
PAD = -2

#: ``(sample index, modality id)``: one key of a batch.
Key = tuple[int, int]

#: One batch of keys, as the batch sampler yields it.
Batch = list[Key]


class KeyBatch(list[Key]):
    """A batch of keys that share one modality id: ``[(index, modality), ...]``.

    A plain list of keys in every respect (equal to one, iterated, indexed,
    sliced and edited like one) with three more attributes:

    - ``modalities``: the names, in id order, of the filter the keys were
      planned from (``None`` if not given). The
      :class:`~remix_data.ModalityDecoupler` compares them with its own names,
      so that names given in another order than the filter's fail at the first
      batch instead of masking the wrong modality.
    - ``indices`` (the sample indices, a list of ``int``) and ``modality`` (the
      one id), which the decoupler reads instead of splitting every key again.
      Any edit through the list's methods (a framework completing a batch in
      place, ``batch += more``) sets both to ``None``, and the decoupler then
      reads the keys themselves.

    It pickles as the indices, the id and the names while unedited (half the
    bytes of the keys).

    Example:
        >>> import pickle
        >>> batch = KeyBatch([4, 9], 1, ("audio", "video"))
        >>> batch == [(4, 1), (9, 1)], batch.indices, batch.modality, batch.modalities
        (True, [4, 9], 1, ('audio', 'video'))
        >>> pickle.loads(pickle.dumps(batch)).modalities
        ('audio', 'video')
        >>> batch += [(5, 0)]
        >>> batch, batch.indices, batch.modality, batch.modalities
        ([(4, 1), (9, 1), (5, 0)], None, None, ('audio', 'video'))
    """

    __slots__ = ("indices", "modalities", "modality")

    indices: list[int] | None
    modality: int | None

    def __init__(
        self, indices: list[int], modality: int, modalities: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(zip(indices, repeat(modality, len(indices))))
        self.indices = indices
        self.modality = modality
        self.modalities = modalities

    def __reduce__(self) -> tuple[Any, ...]:
        if self.indices is None or self.modality is None:  # edited: as the list it is
            return type(self)._edited, (list(self), self.modalities)
        return type(self), (self.indices, self.modality, self.modalities)

    @classmethod
    def _edited(cls, keys: list[Key], modalities: tuple[str, ...] | None) -> KeyBatch:
        batch = cls([], ALL, modalities)
        batch += keys
        return batch

    def _forget(self) -> None:
        self.indices = self.modality = None


def _editing(name: str) -> Any:
    edit = getattr(list, name)

    def method(self: KeyBatch, *args: Any, **kwargs: Any) -> Any:
        self._forget()
        return edit(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = edit.__doc__
    return method


for _name in (
    "__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend",
    "insert", "pop", "remove", "sort", "reverse", "clear",
):  # fmt: skip
    setattr(KeyBatch, _name, _editing(_name))
del _name


class ModalitySource(Protocol):
    """Anything that knows the modality names (in id order) and the dataset size.

    :class:`~remix_data.HardSampleFilter` is one; the parts that need both facts
    can take such an object instead of repeating them.
    """

    @property
    def modalities(self) -> tuple[str, ...]: ...

    @property
    def num_samples(self) -> int: ...
