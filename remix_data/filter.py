"""The score table: per-sample, per-modality hardness, and the assignment built from it.

:class:`HardSampleFilter` holds one float32 score per sample and modality
(``NaN`` until the sample is first scored for that modality). The training loop
(or a scoring pass) feeds unimodal outputs back with :meth:`HardSampleFilter.update`;
each call is one index scatter per modality. :meth:`HardSampleFilter.assignment`
turns the table into the paper's decoupling: every sample trains the modality
in which it is *least* confident (or has the *highest* loss).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ._checks import (
    as_index_array,
    as_index_tensor,
    check_choice,
    check_fraction,
    check_modalities,
    check_nonnegative_int,
    check_positive_int,
)
from .distributed import all_reduce_sum, is_distributed, world_size
from .scores import _check_logits, confidence, cross_entropy
from .vocabulary import ALL, FILTERED

__all__ = ["HardSampleFilter", "FILTERED"]

logger = logging.getLogger("remix_data")

_SCORES = ("confidence", "loss")
_UNSCORED = ("spread", "filter")
_NONFINITE = ("raise", "ignore")
_SYNC = ("auto", "never")
_BALANCE = ("none", "class")


def _as_numpy(value: Any) -> np.ndarray:
    """A CPU numpy view (or copy) of a tensor, array or sequence."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return np.asarray(value.numpy())
    return np.asarray(value)


def _per_modality(
    name: str, value: Any, modalities: tuple[str, ...], *, ratio: bool
) -> list[float | None]:
    """Expand a number or a ``{modality: number}`` mapping to one value per modality."""
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
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} should hold finite numbers, but got {name}={value!r}")
        if ratio and not 0 < v <= 1:
            raise ValueError(f"{name} should lie in (0, 1], but got {name}={value!r}")
    return [None if v is None else float(v) for v in values]


_STATE_KEYS = (
    "num_samples",
    "modalities",
    "score",
    "world_size",
    "values",
    "fresh",
    "scored",
    "ignored",
    "snapshot",
    "snapshot_epoch",
    "weights",
    "history",
)


def _state_tensor(
    state: Mapping[str, Any], key: str, shape: tuple[int, ...], *, floating: bool
) -> torch.Tensor:
    """``state[key]`` as a CPU tensor of ``shape``; floating iff ``floating``."""
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"state[{key!r}] should be a tensor, but got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(
            f"state[{key!r}] should have shape {shape}, but got shape {tuple(value.shape)}"
        )
    if value.is_floating_point() != floating or value.is_complex():
        kind = "a floating" if floating else "an integer or bool"
        raise ValueError(f"state[{key!r}] should have {kind} dtype, but got {value.dtype}")
    return value.detach().cpu()


class HardSampleFilter:
    r"""Per-sample, per-modality hardness table and the paper's assignment rule.

    Args:
        num_samples: size of the training set; indices are ``0 .. num_samples-1``.
        modalities: two or more modality names; an assignment value ``m`` means
            ``modalities[m]``.
        score: ``"confidence"`` (the paper: ``KL(softmax || uniform)`` of each
            unimodal head; low = hard) or ``"loss"`` (per-sample cross-entropy or
            any per-sample loss; high = hard).
        unscored: what a sample with no score in any modality trains:
            ``"spread"`` (default) sends it to ``modalities[index % M]``, so unscored
            samples are spread evenly and still trained; ``"filter"`` leaves it out
            of the epoch (counted as filtered). A sample scored in only some
            modalities is compared over those only.
        nonfinite: ``"raise"`` (default) rejects NaN/inf scores with a
            ``ValueError``; ``"ignore"`` skips those entries (the table keeps its
            old value) and counts them in ``stats()["ignored"]``.
        keep_ratio: opt-in filtering beyond the paper: keep only the hardest
            fraction of each modality's subset (a number, or ``{modality: number}``).
        threshold: opt-in filtering: keep only samples harder than this score in
            their modality (confidence below it, or loss above it).
        reweight: with filtering, give each kept sample the weight
            ``subset size / kept`` of its modality (see :meth:`weights`), so the
            expected loss of a modality keeps its scale. Ignored without filtering.
        labels: optional class label per sample; adds per-class counts to the
            statistics of every epoch. Needed by ``balance="class"``.
        smoothing: opt-in, beyond the paper: exponential moving average of each
            sample's scores across updates, ``new = smoothing * old + (1 -
            smoothing) * fresh`` (0, the default, keeps only the latest score), so
            the assignment does not flip wholesale from one epoch to the next.
        balance: opt-in, beyond the paper: ``"class"`` decides hardness within
            each class: every class is split between the modalities in the same
            proportions as the whole assignment, each sample going to the modality
            where it is relatively hardest, so no modality's subset is skewed
            towards some classes. ``"none"`` (default) is the paper's rule.
        process_group: group whose ranks share one assignment under
            ``torch.distributed`` (default: the world).
        sync: ``"auto"`` (default) combines the ranks' updates with one
            ``all_reduce`` whenever an epoch's assignment is snapshotted and more
            than one rank exists; ``"never"`` leaves each rank's table alone.

    Ties (equal scores) go to the modality listed *last*; the reference code lists
    audio before video and sends ties to video.

    Example:
        >>> import torch
        >>> filt = HardSampleFilter(num_samples=4, modalities=("audio", "video"))
        >>> logits_audio = torch.tensor([[5.0, 0.0], [0.0, 0.0], [5.0, 0.0], [0.1, 0.0]])
        >>> logits_video = torch.tensor([[0.0, 0.0], [5.0, 0.0], [5.0, 0.0], [5.0, 0.0]])
        >>> filt.update(torch.arange(4), {"audio": logits_audio, "video": logits_video})
        >>> filt.assignment().tolist()    # 0 = audio, 1 = video; ties go to video
        [1, 0, 1, 0]
    """

    def __init__(
        self,
        num_samples: int,
        modalities: Sequence[str],
        *,
        score: str = "confidence",
        unscored: str = "spread",
        nonfinite: str = "raise",
        keep_ratio: float | Mapping[str, float] | None = None,
        threshold: float | Mapping[str, float] | None = None,
        reweight: bool = False,
        labels: Any = None,
        smoothing: float = 0.0,
        balance: str = "none",
        process_group: Any = None,
        sync: str = "auto",
    ) -> None:
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.modalities = check_modalities("modalities", modalities)
        self.score = check_choice("score", score, _SCORES)
        self.unscored = check_choice("unscored", unscored, _UNSCORED)
        self.nonfinite = check_choice("nonfinite", nonfinite, _NONFINITE)
        self.sync_mode = check_choice("sync", sync, _SYNC)
        self.keep_ratio = _per_modality("keep_ratio", keep_ratio, self.modalities, ratio=True)
        self.threshold = _per_modality("threshold", threshold, self.modalities, ratio=False)
        if not isinstance(reweight, bool):
            raise TypeError(f"reweight should be a bool, but got reweight={reweight!r}")
        self.reweight = reweight
        self.process_group = process_group
        self.labels: torch.Tensor | None = None
        if labels is not None:
            self.labels = as_index_tensor("labels", labels, 2**62)
            if self.labels.numel() != num_samples:
                raise ValueError(
                    f"labels should hold one label per sample ({num_samples}), "
                    f"but got {self.labels.numel()} labels"
                )
        self.smoothing = check_fraction("smoothing", smoothing, allow_zero=True)
        if self.smoothing == 1.0:
            raise ValueError("smoothing should be below 1 (1 never changes a score), got 1.0")
        self.balance = check_choice("balance", balance, _BALANCE)
        if self.balance == "class" and self.labels is None:
            raise ValueError("balance='class' needs labels=..., but got labels=None")
        m, n = len(self.modalities), num_samples
        self._position = {name: i for i, name in enumerate(self.modalities)}
        self._values = torch.full((m, n), math.nan, dtype=torch.float32)
        self._fresh = torch.zeros((m, n), dtype=torch.bool)
        self._scored = torch.zeros(n, dtype=torch.bool)  # scored in any modality
        self._ignored = 0
        self._snapshot: torch.Tensor | None = None
        self._snapshot_epoch: int | None = None
        self._weights: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ updates
    def update(
        self,
        indices: Any,
        outputs: Mapping[str, torch.Tensor],
        targets: torch.Tensor | None = None,
        *,
        modality: torch.Tensor | None = None,
    ) -> None:
        """Write the scores of one batch into the table (one index scatter).

        Args:
            indices: ``[B]`` integer sample indices (tensor, array or list).
            outputs: maps a modality name to ``[B, C]`` logits of its unimodal head,
                or (with ``score="loss"``) to ``[B]`` per-sample losses. A call may
                carry only some modalities; only those are updated.
            targets: ``[B]`` class indices; needed for ``[B, C]`` logits when
                ``score="loss"``.
            modality: optional ``[B]`` active-modality ids as yielded by the
                loader; when given, modality ``m`` is written only for rows whose
                id is ``m`` or ``ALL``, so masked rows never overwrite a score.

        Tensors may live on any device; they are detached and copied to the CPU.
        """
        idx = as_index_array("indices", indices, self.num_samples)
        if not isinstance(outputs, Mapping):
            raise TypeError(
                f"outputs should map modality names to tensors, but got {type(outputs).__name__}"
            )
        if not outputs:
            return
        positions = []
        for name in outputs:
            if name not in self._position:
                raise ValueError(
                    f"outputs names unknown modality {name!r}; known: {self.modalities}"
                )
            positions.append(self._position[name])
        # Small per-batch work runs in numpy: torch's per-op overhead would dominate.
        values = self._scores(outputs, targets, idx.size)  # float32 [k, B]
        pos = np.asarray(positions)
        keep: np.ndarray | None = None
        if modality is not None:
            rows = _as_numpy(modality).astype(np.int64, copy=False)
            if rows.shape != idx.shape:
                raise ValueError(
                    f"modality should have the shape of indices {tuple(idx.shape)}, "
                    f"but got {tuple(rows.shape)}"
                )
            keep = (rows[None, :] == pos[:, None]) | (rows == ALL)[None, :]
        finite = np.isfinite(values)
        if not finite.all():
            bad = ~finite if keep is None else ~finite & keep
            if bad.any() and self.nonfinite == "raise":
                k = int(np.flatnonzero(bad.any(1))[0])
                raise ValueError(
                    f"outputs[{list(outputs)[k]!r}] gave a non-finite score "
                    f"({values[k][bad[k]][0]}); pass nonfinite='ignore' to skip such entries"
                )
            self._ignored += int(bad.sum())
            keep = finite if keep is None else keep & finite
        if keep is None:
            table_rows, where = pos[:, None], idx[None, :]
        else:
            r, c = np.nonzero(keep)
            table_rows, where, values = pos[r], idx[c], values[r, c]
        table = self._values.numpy()
        if self.smoothing:
            old = table[table_rows, where]
            blended = self.smoothing * old + (1.0 - self.smoothing) * values
            values = np.where(np.isnan(old), values, blended)
        # One scatter for all modalities of the call.
        table[table_rows, where] = values
        self._fresh.numpy()[table_rows, where] = True
        self._scored.numpy()[where] = True

    def _scores(
        self, outputs: Mapping[str, Any], targets: torch.Tensor | None, batch: int
    ) -> np.ndarray:
        """Scores of every output as one float32 ``[k, B]`` numpy array."""
        tensors = list(outputs.values())
        same = all(
            isinstance(t, torch.Tensor)
            and t.dim() == 2
            and t.shape == tensors[0].shape
            and t.device == tensors[0].device
            for t in tensors
        )
        if same and self.score == "confidence" and tensors[0].shape[0] == batch:
            _check_logits(tensors[0], f"outputs[{next(iter(outputs))!r}]")
            # One computation for all modalities instead of one per modality.
            scores = confidence(torch.cat(tensors))
            return _as_numpy(scores).astype(np.float32, copy=False).reshape(len(tensors), batch)
        rows = [_as_numpy(self._scores_of(n, o, targets, batch)) for n, o in outputs.items()]
        return np.stack(rows).astype(np.float32, copy=False)

    def _scores_of(
        self, name: str, output: Any, targets: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"outputs[{name!r}] should be a tensor, but got {type(output).__name__}"
            )
        if output.dim() == 2 and output.shape[0] == batch:
            if self.score == "confidence":
                return confidence(output)
            if targets is None:
                raise ValueError(
                    f"targets are needed to score logits outputs[{name!r}] with score='loss'"
                )
            return cross_entropy(output, torch.as_tensor(targets))
        if output.dim() == 1 and output.shape[0] == batch and self.score == "loss":
            return output.detach().float()
        expected = "[B, C] logits or [B] losses" if self.score == "loss" else "[B, C] logits"
        raise ValueError(
            f"outputs[{name!r}] should have shape {expected} with B={batch}, "
            f"but got shape {tuple(output.shape)}"
        )

    # --------------------------------------------------------------- assignment
    def assignment(self) -> torch.Tensor:
        """Return the assignment of the current table: int64 ``[num_samples]``.

        Value ``m`` means the sample trains ``modalities[m]``; ``FILTERED`` means it is
        filtered out. Computed from this process's table (no collective).
        """
        return self._assign()[0].to(torch.int64)

    def _hardest(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: the hardest modality (int8) and its score.

        Samples with no score anywhere get an arbitrary value here; the caller
        applies the ``unscored`` policy. The score is only exact when filtering
        needs it: the last comparison skips it, as planning is a hot path. Runs in
        numpy (single-threaded, no per-op stalls on a busy machine).
        """
        values = self._values.numpy()
        loss = self.score == "loss"
        row = values[0]
        best = np.where(np.isnan(row), -math.inf if loss else math.inf, row)
        assign = np.zeros(self.num_samples, dtype=np.int8)
        last = len(self.modalities) - 1
        need_best = self._filters()
        for m in range(1, last + 1):
            row = values[m]
            # ``>=`` / ``<=`` send ties to the later modality; NaN never compares true.
            take = row >= best if loss else row <= best
            if m < last or need_best:
                best = np.where(take, row, best)
            assign = take.astype(np.int8) if m == 1 else np.where(take, np.int8(m), assign)
        return torch.from_numpy(assign), torch.from_numpy(best)

    def _assign(self) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """Return (int8 assignment, optional weights, number of unscored samples)."""
        assign, best = self._hardest()
        scored = self._scored.numpy()
        unscored = self.num_samples - int(np.count_nonzero(scored))
        unscored_mask = torch.from_numpy(~scored) if unscored else torch.zeros(0, dtype=torch.bool)
        if unscored:
            if self.unscored == "spread":
                spread = (np.arange(self.num_samples) % len(self.modalities)).astype(np.int8)
                assign = torch.from_numpy(np.where(~scored, spread, assign.numpy()))
            else:
                assign.masked_fill_(unscored_mask, FILTERED)
        if self.balance == "class":
            self._balance_classes(assign, unscored_mask if unscored else None)
            best = self._values.gather(0, assign.clamp(min=0).long().unsqueeze(0)).squeeze(0)
        weights = None
        if self._filters():
            weights = self._filter_hard(assign, best, unscored_mask if unscored else None)
        return assign, weights, unscored

    def _balance_classes(self, assign: torch.Tensor, unscored: torch.Tensor | None) -> None:
        """Re-split every class in the overall modality shares, by relative hardness.

        Quotas per class follow the shares of the paper's rule over all scored
        samples (largest remainder rounding). Within a class, modality ``m`` (in
        order, the last takes the rest) gets the samples where it is hardest
        relative to the best remaining alternative. Unscored samples keep their
        ``unscored`` policy. Works in place on ``assign``.
        """
        assert self.labels is not None
        m_count = len(self.modalities)
        # ``hard``: lower is harder for every score kind; a missing score is never hard.
        hard = -self._values if self.score == "loss" else self._values.clone()
        hard = torch.nan_to_num(hard, nan=math.inf)
        scored = self._scored if unscored is None else ~unscored
        shares = torch.bincount(assign[scored].long(), minlength=m_count).double()
        if shares.sum() == 0:
            return
        shares /= shares.sum()
        for c in torch.unique(self.labels[scored]).tolist():
            members = ((self.labels == c) & scored).nonzero().squeeze(1)
            exact = shares * members.numel()
            quota = exact.floor().long()
            short = members.numel() - int(quota.sum())
            if short:
                quota[torch.argsort(exact - quota, descending=True, stable=True)[:short]] += 1
            remaining, alternatives = members, list(range(m_count))
            for m in range(m_count - 1):
                alternatives.remove(m)
                sub = hard[:, remaining]
                margin = sub[m] - sub[alternatives].amin(0)
                order = torch.argsort(margin, stable=True)
                q = int(quota[m])
                assign[remaining[order[:q]]] = m
                remaining = remaining[order[q:]]
            assign[remaining] = m_count - 1

    def _filters(self) -> bool:
        return any(r is not None for r in self.keep_ratio) or any(
            t is not None for t in self.threshold
        )

    def _filter_hard(
        self, assign: torch.Tensor, best: torch.Tensor, unscored: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Apply keep ratio / threshold in place on ``assign``; return weights if asked."""
        loss = self.score == "loss"
        weights = torch.ones(self.num_samples, dtype=torch.float32) if self.reweight else None
        for m in range(len(self.modalities)):
            ratio, limit = self.keep_ratio[m], self.threshold[m]
            if ratio is None and limit is None:
                continue
            mine = assign == m
            if unscored is not None:
                mine &= ~unscored
            members = mine.nonzero().squeeze(1)
            if members.numel() == 0:
                continue
            scores = best[members]
            keep = torch.ones(members.numel(), dtype=torch.bool)
            if limit is not None:
                keep &= scores > limit if loss else scores < limit
            if ratio is not None:
                k = math.ceil(ratio * members.numel())
                order = torch.sort(scores, descending=loss, stable=True).indices
                ranked = torch.zeros_like(keep)
                ranked[order[:k]] = True
                keep &= ranked
            assign[members[~keep]] = FILTERED
            kept = int(keep.sum())
            if weights is not None and kept:
                weights[members[keep]] = members.numel() / kept
        return weights

    # ---------------------------------------------------------------- snapshots
    def snapshot(self, epoch: int) -> torch.Tensor:
        """Return the int8 assignment for ``epoch``, computing it once per epoch.

        The first call for an epoch combines the ranks' updates with
        :meth:`sync` (one collective under ``torch.distributed`` unless
        ``sync="never"``: call it on every rank, for the same epoch), freezes
        the assignment, and appends the epoch's statistics to :attr:`history`.
        Later calls for the same epoch return the same tensor without a
        collective, which is what makes a resumed epoch replay the same plan
        (the snapshot is part of :meth:`state_dict`).
        """
        if self._snapshot is not None and self._snapshot_epoch == epoch:
            return self._snapshot
        self.sync(epoch=epoch)
        assign, weights, unscored = self._assign()
        self._snapshot, self._snapshot_epoch, self._weights = assign, epoch, weights
        record = self._describe(assign, unscored, epoch)
        self.history.append(record)
        logger.info("remix epoch %d: %s", epoch, _summary(record, self.modalities))
        return assign

    @property
    def snapshot_epoch(self) -> int | None:
        """The epoch of the last snapshot, or ``None`` before the first."""
        return self._snapshot_epoch

    def weights(self, indices: Any) -> torch.Tensor:
        """Loss weights of ``indices`` under the last snapshot (all 1 without reweighting)."""
        idx = as_index_tensor("indices", indices, self.num_samples)
        if self._weights is None:
            return torch.ones(idx.numel(), dtype=torch.float32)
        return self._weights[idx]

    def sync(self, *, epoch: int | None = None) -> None:
        """Combine the scores that different ranks updated since the last sync.

        Called by :meth:`snapshot` once per epoch; call it yourself only to sync
        more often (every rank must then call it too). One ``all_reduce`` of a
        packed float32 tensor (4 + 4 bytes per sample and modality): for every
        table entry, the sum of the values that ranks wrote since the last sync
        and the number of ranks that wrote it (a small count, exact in float32),
        plus a three-number header checking that every rank passed the same
        ``epoch``. No sample index travels: entries are matched by position.

        An entry written on several ranks becomes the mean of their values, one
        written on a single rank takes that rank's value, and every other entry
        keeps its value, which is the same on all ranks because each sync leaves
        them with the same table. A no-op on one process or with
        ``sync="never"``.

        Args:
            epoch: the epoch being snapshotted (:meth:`snapshot` passes it). If
                the ranks pass different epochs (compared modulo 64), every rank
                raises a ``RuntimeError`` (after the collective, so none is left
                waiting) instead of planning different epochs.
        """
        if self.sync_mode == "never" or not is_distributed(self.process_group):
            return
        m, n = self._values.shape
        size = m * n
        packed = torch.empty(2 * size + 3, dtype=torch.float32)
        total, count = packed[:size].view(m, n), packed[size : 2 * size].view(m, n)
        count.copy_(self._fresh)
        # Branch-free masking (much faster than ``where`` on a random mask): the
        # table holds only finite values or NaN, NaN -> 0, then keep fresh entries.
        torch.nan_to_num(self._values, nan=0.0, out=total).mul_(count)
        code = 0 if epoch is None else epoch % 64 + 1
        packed[2 * size :] = torch.tensor([1.0, code, code * code], dtype=torch.float32)
        all_reduce_sum(packed, self.process_group)
        ranks, codes, squares = packed[2 * size :].tolist()
        # All codes are equal iff ranks * sum(c^2) == sum(c)^2 (Cauchy-Schwarz); the
        # sums are exact in float32 for any realistic world size.
        if ranks * squares != codes * codes:
            raise RuntimeError(
                f"HardSampleFilter.sync: the ranks synced different epochs (this rank: "
                f"epoch={epoch}); call set_epoch / snapshot with the same epoch on every rank"
            )
        seen = count > 0
        total.div_(count.clamp_(min=1))
        torch.where(seen, total, self._values, out=self._values)
        for row in seen:  # row by row: ``seen.any(0)`` is ~50x slower on [M, N]
            self._scored |= row
        self._fresh.zero_()

    # --------------------------------------------------------------- statistics
    def _describe(self, assign: torch.Tensor, unscored: int, epoch: int | None) -> dict[str, Any]:
        m = len(self.modalities)
        codes = assign.numpy()
        counts = [int(np.count_nonzero(codes == i)) for i in range(m)]
        record: dict[str, Any] = {
            "epoch": epoch,
            "counts": dict(zip(self.modalities, counts)),
            "filtered": self.num_samples - sum(counts),
            "unscored": unscored,
            "ignored": self._ignored,
            "mean_score": {},
        }
        values = self._values.numpy()
        for i, name in enumerate(self.modalities):
            row = values[i]
            present = ~np.isnan(row)
            scored = int(np.count_nonzero(present))
            total = float(np.add.reduce(row, where=present, dtype=np.float64))
            record["mean_score"][name] = total / scored if scored else None
        if self.labels is not None:
            classes = int(self.labels.max()) + 1 if self.labels.numel() else 0
            key = (assign.to(torch.int64) + 1) * classes + self.labels
            table = torch.bincount(key, minlength=(m + 1) * classes).view(m + 1, classes)
            record["class_counts"] = {
                name: table[i + 1].tolist() for i, name in enumerate(self.modalities)
            }
        return record

    def stats(self) -> dict[str, Any]:
        """Statistics of the last snapshot, or of the current table before any.

        Keys: ``epoch``, ``counts`` (samples per modality), ``filtered``,
        ``unscored`` (samples with no score in any modality), ``ignored``
        (non-finite entries skipped), ``mean_score`` per modality over scored
        samples, and ``class_counts`` when labels were given.
        """
        if self._snapshot is not None:
            return self.history[-1]
        assign, _, unscored = self._assign()
        return self._describe(assign, unscored, None)

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the score table, the epoch snapshot and history.

        Keys: ``num_samples``, ``modalities``, ``score`` and ``world_size`` (the
        ranks of :attr:`process_group`, 1 without ``torch.distributed``), which
        :meth:`load_state_dict` checks; ``values`` (float32 ``[M, N]``),
        ``fresh`` (bool ``[M, N]``, entries written since the last :meth:`sync`),
        ``scored`` (bool ``[N]``), ``ignored``, ``snapshot`` (the int8 assignment
        of ``snapshot_epoch``, or ``None``), ``weights`` and ``history``. All
        tensors are copies on the CPU, so the state can be ``torch.save``-d and
        loaded with ``weights_only=True``.

        Under ``torch.distributed`` the entries written since the last sync
        differ between ranks: save every rank's state for an exact resume.
        Loading one rank's state on every rank still keeps the ranks consistent
        (they all hold the same table and snapshot), but forgets the other
        ranks' unsynced updates.
        """
        return {
            "num_samples": self.num_samples,
            "modalities": list(self.modalities),
            "score": self.score,
            "world_size": world_size(self.process_group),
            "values": self._values.clone(),
            "fresh": self._fresh.clone(),
            "scored": self._scored.clone(),
            "ignored": self._ignored,
            "snapshot": None if self._snapshot is None else self._snapshot.clone(),
            "snapshot_epoch": self._snapshot_epoch,
            "weights": None if self._weights is None else self._weights.clone(),
            "history": copy.deepcopy(self.history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Raises ``ValueError`` naming the key and both values when the state was
        saved for another dataset size, modality list, score kind or world size,
        and when a table has the wrong shape, dtype or values (so a damaged state
        never yields a silent wrong plan). Nothing changes unless every check
        passes. No collective: every rank loads its own state.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state should be a mapping, but got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state should contain {missing[0]!r}; got keys {sorted(state)}")
        for key, mine in (
            ("num_samples", self.num_samples),
            ("modalities", list(self.modalities)),
            ("score", self.score),
            ("world_size", world_size(self.process_group)),
        ):
            theirs = list(state[key]) if key == "modalities" else state[key]
            if theirs != mine:
                raise ValueError(
                    f"state was saved with {key}={state[key]!r}, but this filter has {key}={mine!r}"
                )
        m, n = len(self.modalities), self.num_samples
        values = _state_tensor(state, "values", (m, n), floating=True)
        if bool(torch.isinf(values).any()):
            raise ValueError("state['values'] should hold finite scores or NaN, but holds inf")
        fresh = _state_tensor(state, "fresh", (m, n), floating=False)
        scored = _state_tensor(state, "scored", (n,), floating=False)
        snap = state["snapshot"]
        if snap is not None:
            snap = _state_tensor(state, "snapshot", (n,), floating=False)
            if snap.numel() and (int(snap.min()) < FILTERED or int(snap.max()) >= m):
                raise ValueError(
                    f"state['snapshot'] should hold modality ids in [{FILTERED}, {m}), "
                    f"but got values in [{int(snap.min())}, {int(snap.max())}]"
                )
        snapshot_epoch = state["snapshot_epoch"]
        if (snap is None) != (snapshot_epoch is None):
            raise ValueError(
                "state should hold both a snapshot and its snapshot_epoch or neither, but got "
                f"snapshot_epoch={snapshot_epoch!r} with snapshot "
                f"{'None' if snap is None else 'set'}"
            )
        if snapshot_epoch is not None:
            check_nonnegative_int("state['snapshot_epoch']", snapshot_epoch)
        weights = state["weights"]
        if weights is not None:
            weights = _state_tensor(state, "weights", (n,), floating=True)
        ignored = check_nonnegative_int("state['ignored']", state["ignored"])
        self._values = values.to(torch.float32, copy=True)
        self._fresh = fresh.to(torch.bool, copy=True)
        self._scored = scored.to(torch.bool, copy=True)
        self._ignored = ignored
        self._snapshot = None if snap is None else snap.to(torch.int8, copy=True)
        self._snapshot_epoch = snapshot_epoch
        self._weights = None if weights is None else weights.to(torch.float32, copy=True)
        self.history = copy.deepcopy(list(state["history"]))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, "
            f"modalities={self.modalities}, score={self.score!r})"
        )


def _summary(record: Mapping[str, Any], modalities: tuple[str, ...]) -> str:
    total = sum(record["counts"].values()) + record["filtered"]
    shares = ", ".join(f"{m}={record['counts'][m] / max(total, 1):.2f}" for m in modalities)
    return f"shares {shares}, filtered={record['filtered']}, unscored={record['unscored']}"
