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
  ``(index, modality id)``, two plain Python ints; a negative index ``~i``
  marks a :data:`PAD` repeat of sample ``i`` (the sampler's only; keys built by
  hand have ``index >= 0``). A :data:`Batch` is a list of keys; the sampler
  yields each as a :class:`KeyBatch`, a read-only list of its keys that
  also holds its indices, its one modality id and the filter's modality names
  (so the decoupler need not split the keys again, and can check that its own
  order is the filter's).

Example:
    >>> from remix_data.vocabulary import ALL, FILTERED, Key
    >>> key: Key = (7, ALL)
    >>> key, FILTERED
    ((7, -1), -1)
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, NoReturn, Protocol, SupportsIndex

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
    """A read-only batch of keys that share one modality id: ``[(index, modality), ...]``.

    The sampler's batches: a list of ``(index, modality)`` tuples in every way
    that reads it (compared, iterated, indexed, sliced, pickled), which cannot be
    changed in place: ``batch += more`` and ``batch + more`` make a new plain
    list (as Accelerate completes a batch), and the other in-place edits
    (``append``, ``batch[i] = key``, ...) raise ``TypeError``. So what it holds
    besides its keys stays true:

    - ``indices``: the first element of every key, as a list of ``int``
      (a negative value ``~i`` marks a :data:`PAD` repeat of sample ``i``;
      PAD keys come last), and ``modality``, the one id; the decoupler reads
      these instead of splitting every key again;
    - ``modalities``: the names, in id order, of the filter the keys were
      planned from (``None`` if not given). The
      :class:`~remix_data.ModalityDecoupler` compares them with its own names,
      so that names given in another order than the filter's fail at the first
      batch instead of masking the wrong modality;
    - ``num_samples``: that filter's size (``None`` if not given), which the
      decoupler compares with ``len(dataset)`` at the first batch;
    - ``padded``: how many keys at its end are PAD repeats.

    It pickles as the indices, the id, the names and the size (half the bytes of
    the keys).

    Example:
        >>> import pickle
        >>> batch = KeyBatch([4, 9, ~4], 1, ("audio", "video"))
        >>> batch == [(4, 1), (9, 1), (-5, 1)], batch.padded
        (True, 1)
        >>> pickle.loads(pickle.dumps(batch)).modalities
        ('audio', 'video')
        >>> more = batch[:2]
        >>> more += [(5, 0)]
        >>> more, type(more).__name__
        ([(4, 1), (9, 1), (5, 0)], 'list')
    """

    __slots__ = ("indices", "modalities", "modality", "num_samples", "padded")

    def __init__(
        self,
        indices: list[int],
        modality: int,
        modalities: tuple[str, ...] | None = None,
        num_samples: int | None = None,
    ) -> None:
        super().__init__(zip(indices, repeat(modality, len(indices))))
        self.indices = indices
        self.modality = modality
        self.modalities = modalities
        self.num_samples = num_samples
        padded = 0
        if indices and indices[-1] < 0:  # the sampler puts PAD keys last
            padded = len(indices) - next(p for p in range(len(indices)) if indices[p] < 0)
        self.padded = padded

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.indices, self.modality, self.modalities, self.num_samples)

    # In-place edits: ``+=`` and ``*=`` fall back to ``+`` and ``*`` (new plain lists).
    def __iadd__(self, other: list[Key]) -> list[Key]:  # type: ignore[override,misc]
        return NotImplemented

    def __imul__(self, other: SupportsIndex) -> list[Key]:  # type: ignore[override]
        return NotImplemented

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            "a KeyBatch (the sampler's batch) cannot be changed in place; "
            "make a new list instead, e.g. list(batch) or batch + more"
        )

    __setitem__ = __delitem__ = append = extend = insert = _read_only
    pop = remove = sort = reverse = clear = _read_only


class ModalitySource(Protocol):
    """Anything that knows the modality names (in id order) and the dataset size.

    :class:`~remix_data.HardSampleFilter` is one; the parts that need both facts
    can take such an object instead of repeating them.
    """

    @property
    def modalities(self) -> tuple[str, ...]: ...

    @property
    def num_samples(self) -> int: ...
