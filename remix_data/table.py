"""The score table on the host, and the one rule that decides what a call writes into it.

:class:`ScoreTable` holds, for ``M`` modalities and ``N`` samples, the float32
scores (``NaN`` = not scored), the bool *fresh* flags (entries written since the
last distributed sync), the bool *scored* flags (scored in some modality) and
the counters of what was not written: 4 + 1 bytes per sample and modality plus
1 per sample. It always lives on the host; outputs computed on a device reach
it through a :class:`~remix_data.device.DeviceQueue` (scored there, written here).

:func:`keep_rule` is the write rule, the one place it exists:

- head ``r`` of a call is written for row ``j`` when the row's modality id is
  ``rows[r]`` or :data:`~remix_data.ALL` (every head when no ids are given);
- a :data:`~remix_data.vocabulary.PAD` row (a repeat that only fills a batch)
  is never written, is no error and no duplicate;
- an index outside ``[0, N)`` or an id outside ``PAD, ALL, 0 .. M-1`` is not
  written and counted (calls checked on the host raise before this);
- an index repeated among a call's other rows is written once, from its last
  occurrence; the earlier ones are counted as duplicates.

Then, per entry: a non-finite score is refused (``nonfinite="raise"``) or
skipped and counted (``"ignore"``); with ``smoothing`` an entry that holds a
score becomes ``smoothing * old + (1 - smoothing) * new``.

Example:
    >>> import numpy as np
    >>> table = ScoreTable(2, 3)
    >>> table.write(np.array([0, 1]), np.array([2, 0]), np.array([-1, -2]), np.ones((2, 2)))
    >>> table.values.tolist()    # row 0 (ALL) writes both heads, row 1 (PAD) none
    [[nan, nan, 1.0], [nan, nan, 1.0]]
"""

from typing import Any, NamedTuple

import numpy as np
import torch

from ._checks import check_nonnegative_int, state_tensor
from .vocabulary import ALL, PAD

__all__ = ["Keep", "NonFiniteScore", "ScoreTable", "keep_rule", "last_occurrence", "to_device"]

NONFINITE = ("raise", "ignore")


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; a CPU tensor bound for CUDA is copied without waiting."""
    if tensor.device == device:
        return tensor
    if tensor.device.type == "cpu" and device.type == "cuda" and not tensor.is_pinned():
        tensor = tensor.pin_memory()  # a pageable copy would synchronise
    return tensor.to(device, non_blocking=True)


class Keep(NamedTuple):
    """What :func:`keep_rule` decided for one call."""

    #: bool ``[k, B]``: the entries to write, or ``None`` for all of them.
    mask: np.ndarray | None
    #: rows not written because a later row repeats their index.
    duplicates: int
    #: rows whose index lies outside ``[0, N)``.
    bad_index: int
    #: rows whose id is none of ``PAD``, ``ALL``, ``0 .. M-1``.
    bad_modality: int


def last_occurrence(idx: np.ndarray, part: np.ndarray | None = None) -> np.ndarray | None:
    """Bool ``[B]``: False where a later row taking ``part`` repeats the index; ``None``: no repeat.

    Rows outside ``part`` (default: all take part) never repeat and are never repeated.
    """
    keys = idx if part is None else np.where(part, idx, -1 - np.arange(idx.size))
    ordered = np.sort(keys)
    if keys.size < 2 or bool((ordered[1:] != ordered[:-1]).all()):
        return None  # the usual case: no index repeats
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    last = np.ones(keys.size, dtype=bool)
    last[order[:-1]] = ordered[1:] != ordered[:-1]
    return last


def keep_rule(
    rows: np.ndarray,
    idx: np.ndarray,
    ids: np.ndarray | None,
    num_samples: int,
    count: int,
    *,
    checked: bool = False,
) -> Keep:
    """The entries ``(rows[r], idx[j])`` of one call to write (the module's rule).

    Args:
        rows: int ``[k]``: the table row of each of the call's heads.
        idx: int64 ``[B]``: the sample index of each row.
        ids: int64 ``[B]`` modality ids, or ``None`` (every head is written).
        num_samples, count: ``N`` and ``M``.
        checked: the indices and ids are known to be valid (checked by the caller).
    """
    bad_index = bad_modality = 0
    part: np.ndarray | None = None  # rows that take part (None: all)
    if not checked:
        part = (idx >= 0) & (idx < num_samples)
        bad_index = idx.size - int(np.count_nonzero(part))
        if ids is not None:
            known = (ids >= PAD) & (ids < count)
            bad_modality = idx.size - int(np.count_nonzero(known))
            part &= known
    if ids is not None and (ids == PAD).any():
        part = ids != PAD if part is None else part & (ids != PAD)
    last = last_occurrence(idx, part)
    duplicates = 0 if last is None else idx.size - int(np.count_nonzero(last))
    rows_ok = part if last is None else (last if part is None else part & last)
    mask = None if ids is None else (ids[None, :] == rows[:, None]) | (ids == ALL)[None, :]
    if rows_ok is not None and not rows_ok.all():
        mask = np.broadcast_to(rows_ok, (rows.size, idx.size)) if mask is None else mask & rows_ok
    if mask is not None and mask.all():
        mask = None
    return Keep(mask, duplicates, bad_index, bad_modality)


class NonFiniteScore(ValueError):
    """A non-finite score that ``nonfinite="raise"`` refuses: head ``head``, row ``row``."""

    def __init__(self, head: int, row: int, value: float) -> None:
        super().__init__(f"non-finite score {value} for head {head}, row {row}")
        self.head, self.row, self.value = head, row, value


class ScoreTable:
    """Scores, fresh and scored flags and counters of ``m`` modalities and ``n`` samples.

    ``nonfinite`` and ``smoothing`` are the filter's options of those names
    (stored here only). See the module for the write rule.
    """

    def __init__(self, m: int, n: int, *, nonfinite: str = "raise", smoothing: float = 0.0) -> None:
        self.m, self.n = m, n
        self.nonfinite, self.smoothing = nonfinite, smoothing
        self.values = torch.full((m, n), np.nan, dtype=torch.float32)
        self.fresh = torch.zeros((m, n), dtype=torch.bool)
        self.scored = torch.zeros(n, dtype=torch.bool)
        #: Non-finite entries skipped (``nonfinite="ignore"``).
        self.ignored = 0
        #: Repeated indices of one call that were not written (an earlier occurrence).
        self.duplicates = 0
        #: Errors found in calls written after the fact (scores computed on a device),
        #: reported by the filter's next snapshot: ``nonfinite``, ``index``,
        #: ``modality``, ``probabilities`` (the name of a head, or ``None``).
        self.pending: dict[str, Any] = {
            "nonfinite": 0,
            "index": 0,
            "modality": 0,
            "probabilities": None,
        }

    @property
    def nbytes(self) -> int:
        """Bytes of the per-sample state."""
        return sum(t.numel() * t.element_size() for t in (self.values, self.fresh, self.scored))

    def write(
        self,
        rows: np.ndarray,
        idx: np.ndarray,
        ids: np.ndarray | None,
        scores: np.ndarray,
        *,
        checked: bool = True,
    ) -> None:
        """Write float ``scores [k, B]`` of one call by the rule of the module.

        ``checked``: the call was validated on the host at the call, so a
        non-finite score with ``nonfinite="raise"`` raises :class:`NonFiniteScore`
        at once (nothing is written). Otherwise (scores computed on a device and
        written later) invalid indices, ids and non-finite scores are counted in
        :attr:`pending` and skipped.
        """
        keep = keep_rule(rows, idx, ids, self.n, self.m, checked=checked)
        mask = keep.mask
        values = np.asarray(scores, dtype=np.float32)
        finite = np.isfinite(values)
        ignored = 0
        if not finite.all():
            bad = ~finite if mask is None else ~finite & mask
            ignored = int(np.count_nonzero(bad))
            if ignored and self.nonfinite == "raise" and checked:
                head, row = (int(a[0]) for a in np.nonzero(bad))
                raise NonFiniteScore(head, row, float(values[head, row]))
            mask = finite if mask is None else mask & finite
        if mask is None and rows.size == 1:  # the usual unimodal batch: one whole row
            self._scatter(rows, idx, values[0])
        elif mask is None:
            self._scatter(rows[:, None], idx[None, :], values)
        else:
            r, c = np.nonzero(mask)
            self._scatter(rows[r], idx[c], values[r, c])
        if self.nonfinite == "ignore" or checked:
            self.ignored += ignored
        else:
            self.pending["nonfinite"] += ignored
        self.duplicates += keep.duplicates
        self.pending["index"] += keep.bad_index
        self.pending["modality"] += keep.bad_modality

    def _scatter(self, rows: Any, cols: Any, values: np.ndarray) -> None:
        table = self.values.numpy()
        if self.smoothing:
            old = table[rows, cols]
            blended = self.smoothing * old + (1.0 - self.smoothing) * values
            values = np.where(np.isnan(old), values, blended)
        table[rows, cols] = values
        self.fresh.numpy()[rows, cols] = True
        self.scored.numpy()[cols] = True

    def checked_scores(self, scores: Any, row: int | None) -> torch.Tensor:
        """``scores`` for :meth:`set` as float32 on the host, checked (type, shape, no inf)."""
        if isinstance(scores, np.ndarray) and scores.dtype.kind == "f":
            scores = torch.from_numpy(scores)
        if not isinstance(scores, (torch.Tensor, np.ndarray)):
            raise TypeError(
                f"scores should be a float tensor or array, but got {type(scores).__name__}"
            )
        if not (isinstance(scores, torch.Tensor) and scores.is_floating_point()):
            raise TypeError(f"scores should have a floating dtype, but got {scores.dtype}")
        values = scores.detach().to("cpu", torch.float32)
        shape = (self.m, self.n) if row is None else (self.n,)
        if tuple(values.shape) != shape:
            what = "[M, N]" if row is None else "[N]"
            raise ValueError(
                f"scores should have shape {what} = {shape}, but got {tuple(values.shape)}"
            )
        infinite = int(torch.isinf(values).sum())
        if infinite:
            raise ValueError(
                f"scores should be finite or NaN (not scored), but got {infinite} inf entries"
            )
        return values

    def set(self, values: torch.Tensor, row: int | None = None) -> None:
        """Replace the table (``row=None``) or one row with finite-or-NaN float32 ``values``.

        NaN clears an entry; set entries count as fresh; no smoothing.
        """
        target = self.values if row is None else self.values[row]
        fresh = self.fresh if row is None else self.fresh[row]
        target.copy_(values)
        fresh.copy_(~torch.isnan(values))
        self.scored.copy_(~torch.isnan(self.values).all(0))

    def mark_synced(self, seen: torch.Tensor) -> None:
        """After a sync that wrote the ``seen`` entries (bool ``[M, N]``): scored, not fresh."""
        for row in seen:  # row by row: contiguous ORs, no [M, N] temporary
            self.scored |= row
        self.fresh.zero_()

    def raise_pending(self) -> None:
        """Raise the errors of :attr:`pending` in one ``ValueError`` (each is reported once)."""
        found = {k: v for k, v in self.pending.items() if v}
        self.pending = {"nonfinite": 0, "index": 0, "modality": 0, "probabilities": None}
        if not found:
            return
        parts = []
        if "nonfinite" in found:
            parts.append(f"{found['nonfinite']} non-finite scores (nonfinite='raise')")
        if "index" in found:
            parts.append(f"{found['index']} indices outside [0, {self.n})")
        if "modality" in found:
            parts.append(f"{found['modality']} modality ids outside ALL ({ALL}) and [0, {self.m})")
        if "probabilities" in found:
            parts.append(
                f"probabilities instead of logits in outputs[{found['probabilities']!r}] "
                "(rows in [0, 1] summing to 1: pass the head's output before softmax)"
            )
        raise ValueError(
            "since the last snapshot, update received on the device "
            + ", ".join(parts)
            + "; those entries were not written (pass nonfinite='ignore' to skip non-finite "
            "scores silently, counted in stats()['ignored'])"
        )

    def describe(
        self,
        assign: torch.Tensor,
        unscored: int,
        epoch: int | None,
        names: tuple[str, ...],
        labels: torch.Tensor | None,
    ) -> dict[str, Any]:
        """The statistics record of an assignment of this table (see the filter's ``stats``)."""
        codes = assign.numpy()
        counts = [int(np.count_nonzero(codes == i)) for i in range(self.m)]
        values = self.values.numpy()
        means: dict[str, float | None] = {}
        for i, name in enumerate(names):
            present = ~np.isnan(values[i])
            scored = int(np.count_nonzero(present))
            total = float(np.add.reduce(values[i], where=present, dtype=np.float64))
            means[name] = total / scored if scored else None
        record: dict[str, Any] = {
            "epoch": epoch, "counts": dict(zip(names, counts)), "filtered": self.n - sum(counts),
            "unscored": unscored, "ignored": self.ignored, "duplicates": self.duplicates,
            "mean_score": means,
        }  # fmt: skip
        if labels is not None:
            classes = int(labels.max()) + 1 if labels.numel() else 0
            key = (assign.to(torch.int64) + 1) * classes + labels
            table = torch.bincount(key, minlength=(self.m + 1) * classes).view(self.m + 1, classes)
            record["class_counts"] = {name: table[i + 1].tolist() for i, name in enumerate(names)}
        return record

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """``values``, ``fresh``, ``scored`` (CPU copies), ``ignored`` and ``duplicates``."""
        return {
            "values": self.values.clone(),
            "fresh": self.fresh.clone(),
            "scored": self.scored.clone(),
            "ignored": self.ignored,
            "duplicates": self.duplicates,
        }

    def checked_state(self, state: Any) -> dict[str, Any]:
        """The entries of :meth:`state_dict` in ``state``, checked (shapes, dtypes, values)."""
        values = state_tensor(state, "values", (self.m, self.n), torch.float32)
        if bool(torch.isinf(values).any()):
            raise ValueError("state['values'] should hold finite scores or NaN, but holds inf")
        return {
            "values": values,
            "fresh": state_tensor(state, "fresh", (self.m, self.n), torch.bool),
            "scored": state_tensor(state, "scored", (self.n,), torch.bool),
            "ignored": check_nonnegative_int("state['ignored']", state["ignored"]),
            "duplicates": check_nonnegative_int("state['duplicates']", state["duplicates"]),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`checked_state` (copies)."""
        self.values = state["values"].clone()
        self.fresh = state["fresh"].clone()
        self.scored = state["scored"].clone()
        self.ignored, self.duplicates = state["ignored"], state["duplicates"]
