"""The assignment rule: which modality each sample trains, from a score table.

The rule is a pure function of a score table and a configuration: nothing here
holds scores or state between calls, so it can be tested (and reused) without a
:class:`~remix_data.HardSampleFilter`, which calls it at every snapshot.

Steps, in order (each one opt-in after the first two):

1. :func:`hardest` — the paper's decoupling: every sample goes to the modality
   in which it is least confident (``score="confidence"``) or has the highest
   loss (``score="loss"``); ties go to the modality listed last; ``NaN`` entries
   (not scored) are skipped.
2. ``unscored`` — a sample with no score anywhere is spread (``index % M``) or
   filtered (:data:`~remix_data.FILTERED`).

With ``available`` (missing modalities, :mod:`remix_data.availability`), a
sample is only ever assigned a modality it has: its scores for the others are
ignored (treated as not scored) in every step, spreading cycles through its own
modalities, and class balancing never moves it to a modality it lacks (where a
class quota would need that, the sample keeps its hardest modality instead).
3. :func:`balance_classes` (``balance="class"``) — every class is split between
   the modalities in the overall shares, by relative hardness.
4. :func:`filter_hard` (``keep_ratio`` / ``threshold``) — keep only the hardest
   part of each modality's subset, with optional unbiased loss weights.

Example:
    >>> import torch
    >>> rule = AssignmentRule(3, ("audio", "video"), score="loss", keep_ratio=0.5)
    >>> values = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 0.0]])   # audio is harder
    >>> result = rule(values)
    >>> result.assignment.tolist(), result.unscored         # the harder half of audio's 3
    ([-1, 0, 0], 0)
"""

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from ._checks import (
    check_bool,
    check_choice,
    check_modalities,
    check_positive_int,
)
from .availability import as_available
from .vocabulary import FILTERED

__all__ = [
    "Assignment",
    "AssignmentRule",
    "as_labels",
    "hardest",
    "balance_classes",
    "filter_hard",
    "per_modality",
]

SCORES = ("confidence", "loss")
UNSCORED = ("spread", "filter")
BALANCE = ("none", "class")


class Assignment(NamedTuple):
    """What the rule returns for one table."""

    #: int8 ``[N]``: a modality id per sample, or :data:`~remix_data.FILTERED`.
    assignment: torch.Tensor
    #: float32 ``[N]`` loss weights (``reweight=True`` with filtering), else ``None``.
    weights: torch.Tensor | None
    #: samples with no score in any modality.
    unscored: int


def per_modality(
    name: str, value: Any, modalities: tuple[str, ...], *, ratio: bool
) -> list[float | None]:
    """Expand a number or a ``{modality: number}`` mapping to one value per modality.

    ``None`` (or a modality the mapping leaves out) means "no limit". Raises
    ``ValueError`` for unknown modalities, non-finite numbers and, with
    ``ratio``, values outside ``(0, 1]``; ``TypeError`` for a non-number.
    """
    if value is None:
        return [None] * len(modalities)
    if isinstance(value, Mapping):
        unknown = set(value) - set(modalities)
        if unknown:
            raise ValueError(
                f"{name} names unknown modalities {sorted(unknown)}; known: {modalities}"
            )
        values = [value.get(m) for m in modalities]
    else:
        values = [value] * len(modalities)
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} should hold numbers, but got {name}={value!r}")
        if not math.isfinite(v):
            raise ValueError(f"{name} should hold finite numbers, but got {name}={value!r}")
        if ratio and not 0 < v <= 1:
            raise ValueError(f"{name} should lie in (0, 1], but got {name}={value!r}")
    return [None if v is None else float(v) for v in values]


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_labels(labels: Any, num_samples: int) -> torch.Tensor:
    """Class labels as an int64 ``[num_samples]`` tensor of ids ``>= 0``.

    Messages name the first offending label and stay on one line whatever the
    size of ``labels``.

    Example:
        >>> as_labels([0, 2, 1], 3).tolist()
        [0, 2, 1]
        >>> as_labels([0, -1, 1], 3)
        Traceback (most recent call last):
        ...
        ValueError: labels should hold class ids >= 0, but got labels[1]=-1 (of 3 labels)
    """
    if isinstance(labels, torch.Tensor):
        array = labels.detach().cpu().numpy()
    elif isinstance(labels, np.ndarray):
        array = labels
    elif isinstance(labels, Sequence) and not isinstance(labels, (str, bytes)):
        array = np.asarray(list(labels), dtype=object)
        kinds = [not isinstance(v, (int, np.integer)) or isinstance(v, bool) for v in array]
        if any(kinds):
            i = kinds.index(True)
            raise TypeError(
                f"labels should hold integer class ids, but got labels[{i}]="
                f"{_shown(array[i])} ({type(array[i]).__name__}, of {len(array)} labels): "
                "map class names to ids first, e.g. ids = {c: i for i, c in "
                "enumerate(sorted(set(labels)))}"
            )
        array = array.astype(np.int64) if array.size else np.zeros(0, np.int64)
    else:
        raise TypeError(
            f"labels should be a sequence, array or tensor of class ids, but got "
            f"labels={_shown(labels)}"
        )
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"labels should hold integer class ids, but got dtype {array.dtype} "
            f"(of {array.size} labels)"
        )
    if array.ndim != 1:
        raise ValueError(f"labels should be one-dimensional, but got shape {list(array.shape)}")
    if array.size != num_samples:
        raise ValueError(
            f"labels should hold one label per sample ({num_samples}), but got {array.size} labels"
        )
    array = array.astype(np.int64, copy=False)
    negative = np.flatnonzero(array < 0)
    if negative.size:
        i = int(negative[0])
        raise ValueError(
            f"labels should hold class ids >= 0, but got labels[{i}]={int(array[i])} "
            f"(of {array.size} labels)"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def hardest(values: np.ndarray, score: str, *, exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the hardest modality (int8 ``[N]``) and its score (``[N]``).

    ``values`` is a ``[M, N]`` float array, ``NaN`` where a sample is not
    scored. Ties go to the modality listed last; a sample with no score gets
    0 (the caller applies its ``unscored`` policy) and a score of
    ``+inf`` (confidence) or ``-inf`` (loss). With ``exact=False`` the returned
    score is not needed and skips the last comparison's ``where`` (planning is
    a hot path: about 0.1 s for 10^7 samples and two modalities).
    """
    loss = score == "loss"
    row = values[0]
    best = np.where(np.isnan(row), -math.inf if loss else math.inf, row)
    assign = np.zeros(values.shape[1], dtype=np.int8)
    last = values.shape[0] - 1
    for m in range(1, last + 1):
        row = values[m]
        # ``>=`` / ``<=`` send ties to the later modality; NaN never compares true.
        take = row >= best if loss else row <= best
        if m < last or exact:
            best = np.where(take, row, best)
        assign = take.astype(np.int8) if m == 1 else np.where(take, np.int8(m), assign)
    return assign, best


def _by_class(labels: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The ``scored`` samples grouped by class (classes ascending, index order within one)
    and the boundaries of the groups: ``grouped[bounds[j]:bounds[j + 1]]`` is the ``j``-th
    class present. One stable sort of the labels (a radix sort for up to 65,536 classes),
    instead of one pass over every sample per class."""
    members = None if scored.all() else np.flatnonzero(scored)
    own = labels if members is None else labels[members]
    top = int(own.max()) if own.size else 0
    narrow = own.astype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int64)
    order = np.argsort(narrow, kind="stable")
    counts = np.bincount(own, minlength=top + 1)
    bounds = np.concatenate([[0], np.cumsum(counts[counts > 0])]).tolist()
    return (order if members is None else members[order]), bounds


def _first_of_stable_sort(key: np.ndarray, q: int) -> np.ndarray:
    """bool ``[n]``: the ``q`` entries a stable ascending sort of ``key`` puts first
    (``NaN`` after ``+inf``, ties by position), found by one selection instead of a sort."""
    n = key.size
    if q <= 0 or q >= n:
        return np.full(n, q > 0)
    nan = np.isnan(key)
    filled = np.where(nan, np.inf, key)
    bound = np.partition(filled, q - 1)[q - 1]
    chosen: np.ndarray = filled < bound
    need = q - int(np.count_nonzero(chosen))
    for tied in (~nan & (filled == bound), nan):  # at the bound: numbers, then NaN (+inf only)
        if need <= 0:
            break
        taken = tied & (np.cumsum(tied) <= need)
        chosen |= taken
        need -= int(np.count_nonzero(taken))
    return chosen


def balance_classes(
    assign: torch.Tensor,
    values: torch.Tensor,
    labels: torch.Tensor,
    scored: torch.Tensor,
    score: str,
) -> None:
    """Re-split every class in the overall modality shares, by relative hardness.

    Works in place on the int8 ``assign``; only ``scored`` samples (bool
    ``[N]``) move. Quotas per class follow the shares of ``assign`` over all
    scored samples (largest remainder rounding). Within a class, modality ``m``
    (in order, the last takes the rest) gets the samples where it is hardest
    relative to the best remaining alternative: the first ones of a stable sort
    of that margin (ties by index for the first modality, by the previous
    margin's order after it).

    The members are grouped by class with one stable sort (not one pass over
    every sample per class: a thousand classes cost about what ten do), and the
    last split of each class is a selection, not a sort (with two modalities
    the only split); numpy throughout, whose calls cost little on the small
    classes of a small data set. ``benchmarks/scaling.py`` times it within an
    epoch's plan.

    Example:
        >>> assign = torch.tensor([0, 0, 1, 1], dtype=torch.int8)   # shares 1/2, 1/2
        >>> values = torch.tensor([[0.1, 0.2, 0.8, 0.9], [0.5, 0.5, 0.5, 0.5]])
        >>> labels = torch.tensor([0, 0, 1, 1])     # each class wholly in one modality
        >>> balance_classes(assign, values, labels, torch.ones(4, dtype=torch.bool), "confidence")
        >>> assign.tolist()    # each class split 1:1, its least confident in 0 going to 0
        [0, 1, 0, 1]
    """
    m_count = values.shape[0]
    table, out, seen = values.numpy(), assign.numpy(), scored.numpy()  # ``out`` shares memory
    # ``hard``: lower is harder for every score kind; a missing score is never hard.
    hard = np.where(np.isnan(table), np.float32(np.inf), -table if score == "loss" else table)
    shares = np.bincount(out[seen].view(np.uint8), minlength=m_count).astype(np.float64)
    if shares.sum() == 0:
        return
    shares /= shares.sum()
    grouped, bounds = _by_class(labels.numpy(), seen)
    # the first split's margins, for every member at once (sliced per class below)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, sorted last
        first_margin = (hard[0] - hard[1:].min(0))[grouped]
    codes = np.empty(grouped.size, dtype=np.int8)  # per grouped member
    for start, end in itertools.pairwise(bounds):
        exact = shares * (end - start)
        quota = np.floor(exact).astype(np.int64)
        short = end - start - int(quota.sum())
        if short:  # largest remainders first, ties to the earlier modality
            quota[np.argsort(quota - exact, kind="stable")[:short]] += 1
        # positions in ``grouped`` still unassigned, in the order that breaks the next ties
        remaining: np.ndarray | None = None  # None: the whole class, in index order
        alternatives = list(range(m_count))
        for m in range(m_count - 1):
            alternatives.remove(m)
            if remaining is None:
                margin = first_margin[start:end]
            else:
                sub = hard[:, grouped[remaining]]
                with np.errstate(invalid="ignore"):  # inf - inf: NaN, sorted last
                    margin = sub[m] - sub[alternatives].min(0)
            q = int(quota[m])
            if m < m_count - 2:
                order = np.argsort(margin, kind="stable")
                ranked = order + start if remaining is None else remaining[order]
                codes[ranked[:q]] = m
                remaining = ranked[q:]
                continue
            # the last split: a selection; the last modality takes the rest
            part = np.where(_first_of_stable_sort(margin, q), np.int8(m), np.int8(m_count - 1))
            if remaining is None:
                codes[start:end] = part
            else:
                codes[remaining] = part
    out[grouped] = codes


def filter_hard(
    assign: torch.Tensor,
    best: torch.Tensor,
    scored: torch.Tensor | None,
    keep_ratio: Sequence[float | None],
    threshold: Sequence[float | None],
    score: str,
    *,
    reweight: bool = False,
) -> torch.Tensor | None:
    """Apply keep ratio / threshold per modality in place on ``assign``.

    ``best`` holds each sample's score in its assigned modality. Within
    modality ``m``'s scored members, a sample is kept if it is harder than
    ``threshold[m]`` (confidence below it, loss above it) and among the
    ``ceil(keep_ratio[m] * members)`` hardest (stable order: on equal scores
    the lower index wins); the rest become :data:`~remix_data.FILTERED`.
    Unscored samples (``scored`` False; ``None``: all scored) are never
    filtered here; a scored member whose score in ``m`` is NaN (moved there by
    class balancing) is the least hard of ``m``. Returns the weights
    ``members / kept`` of each kept sample (1 elsewhere) with ``reweight``, else
    ``None``.
    """
    loss = score == "loss"
    weights = torch.ones(assign.numel(), dtype=torch.float32) if reweight else None
    for m, (ratio, limit) in enumerate(zip(keep_ratio, threshold)):
        if ratio is None and limit is None:
            continue
        mine = assign == m
        if scored is not None:
            mine &= scored
        members = mine.nonzero().squeeze(1)
        if members.numel() == 0:
            continue
        scores = best[members]
        keep = torch.ones(members.numel(), dtype=torch.bool)
        if limit is not None:
            keep &= scores > limit if loss else scores < limit
        if ratio is not None:
            k = math.ceil(ratio * members.numel())
            # A member with no score here (class balancing can move one to a modality it
            # was not scored in) is the least hard, as in balance_classes: ranked last.
            ranked_by = torch.nan_to_num(scores, nan=-math.inf if loss else math.inf)
            order = torch.sort(ranked_by, descending=loss, stable=True).indices
            ranked = torch.zeros_like(keep)
            ranked[order[:k]] = True
            keep &= ranked
        assign[members[~keep]] = FILTERED
        kept = int(keep.sum())
        if weights is not None and kept:
            weights[members[keep]] = members.numel() / kept
    return weights


class AssignmentRule:
    r"""The configuration of the assignment rule, validated, callable on a table.

    Args:
        num_samples: samples in the table (its second dimension).
        modalities: two or more modality names (the table's rows, in order).
        score, unscored, keep_ratio, threshold, reweight, labels, balance,
            available: as in :class:`~remix_data.HardSampleFilter`, which
            builds its rule from these arguments and documents them.

    Calling the rule on a ``[M, N]`` table (tensor or array, ``NaN`` = not
    scored) returns an :class:`Assignment`. It holds no state: the same table
    always gives the same result.
    """

    def __init__(
        self,
        num_samples: int,
        modalities: Sequence[str],
        *,
        score: str = "confidence",
        unscored: str = "spread",
        keep_ratio: float | Mapping[str, float] | None = None,
        threshold: float | Mapping[str, float] | None = None,
        reweight: bool = False,
        labels: Any = None,
        balance: str = "none",
        available: Any = None,
    ) -> None:
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.modalities = check_modalities("modalities", modalities)
        self.score = check_choice("score", score, SCORES)
        self.unscored = check_choice("unscored", unscored, UNSCORED)
        self.keep_ratio = per_modality("keep_ratio", keep_ratio, self.modalities, ratio=True)
        self.threshold = per_modality("threshold", threshold, self.modalities, ratio=False)
        self.reweight = check_bool("reweight", reweight)
        self.labels = None if labels is None else as_labels(labels, num_samples)
        #: bool ``[M, N]`` (modality-major): which modalities each sample has;
        #: ``None`` when every sample has every modality.
        self.available = None
        if available is not None:
            self.available = as_available(available, num_samples, self.modalities)
        self.balance = check_choice("balance", balance, BALANCE)
        if self.balance == "class" and self.labels is None:
            raise ValueError("balance='class' needs labels=..., but got labels=None")

    @property
    def filters(self) -> bool:
        """Whether a keep ratio or a threshold is set for some modality."""
        return any(r is not None for r in self.keep_ratio) or any(
            t is not None for t in self.threshold
        )

    def __call__(self, values: Any, scored: Any = None) -> Assignment:
        """The assignment of ``values`` (float ``[M, N]``, ``NaN`` = not scored).

        ``scored`` (bool ``[N]``: scored in some modality) may be passed when
        the caller tracks it; by default it is computed from ``values``.
        """
        table = _table(values, (len(self.modalities), self.num_samples))
        available = self.available
        if available is not None:  # a missing modality's scores say nothing: not scored
            table = torch.from_numpy(np.where(available, table.numpy(), np.float32(np.nan)))
        array = table.numpy()
        if scored is None or available is not None:
            seen = ~np.isnan(array).all(0)
        if scored is not None:
            given = np.asarray(scored, dtype=bool)
            if given.shape != (self.num_samples,):
                raise ValueError(
                    f"scored should have shape ({self.num_samples},), but got {given.shape}"
                )
            seen = given if available is None else seen & given
        codes, best_array = hardest(array, self.score, exact=self.filters)
        assign, best = torch.from_numpy(codes), torch.from_numpy(best_array)
        unscored = self.num_samples - int(np.count_nonzero(seen))
        scored_mask = torch.from_numpy(seen) if unscored else None
        if unscored:
            if self.unscored == "spread":
                assign = torch.from_numpy(np.where(seen, codes, self._spread()))
            else:
                assign.masked_fill_(torch.from_numpy(~seen), FILTERED)
        if self.balance == "class":
            assert self.labels is not None
            mask = torch.from_numpy(seen) if scored_mask is None else scored_mask
            plain = None if available is None else assign.clone()
            balance_classes(assign, table, self.labels, mask, self.score)
            if plain is not None:  # a class quota never sends a sample to a gap
                lacking = ~torch.from_numpy(available).gather(
                    0, assign.clamp(min=0).long().unsqueeze(0)
                ).squeeze(0)
                assign = torch.where(lacking & (assign >= 0), plain, assign)
            if self.filters:  # the score in the modality each sample now trains
                best = table.gather(0, assign.clamp(min=0).long().unsqueeze(0)).squeeze(0)
        weights = None
        if self.filters:
            weights = filter_hard(
                assign,
                best,
                scored_mask,
                self.keep_ratio,
                self.threshold,
                self.score,
                reweight=self.reweight,
            )
        return Assignment(assign, weights, unscored)

    def _spread(self) -> np.ndarray:
        """int8 ``[N]``: sample ``i``'s ``(i % k)``-th own modality, of its ``k``.

        Without gaps that is ``i % M``; with ``available``, each sample cycles
        through the modalities it has.
        """
        n, m = self.num_samples, len(self.modalities)
        if self.available is None:
            return (np.arange(n) % m).astype(np.int8)
        counts = self.available.sum(0)
        turn = np.arange(n) % counts  # which of its own modalities, 0-based
        ranks = np.cumsum(self.available, axis=0, dtype=np.int64)  # [M, N]
        first: np.ndarray = np.argmax(ranks > turn, axis=0).astype(np.int8)
        return first

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, "
            f"modalities={self.modalities}, score={self.score!r}, unscored={self.unscored!r}, "
            f"keep_ratio={self.keep_ratio}, threshold={self.threshold}, "
            f"reweight={self.reweight}, balance={self.balance!r})"
        )


def _table(values: Any, shape: tuple[int, int]) -> torch.Tensor:
    """``values`` as a float32 CPU tensor of ``shape`` (no copy when it already is one)."""
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values should be a tensor or an array, but got {type(values).__name__}")
    if not values.is_floating_point():
        raise TypeError(f"values should have a floating dtype, but got {values.dtype}")
    if tuple(values.shape) != shape:
        raise ValueError(f"values should have shape {shape}, but got {tuple(values.shape)}")
    return values.detach().to("cpu", torch.float32).contiguous()
