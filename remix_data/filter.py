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
import torch.distributed as dist

from ._checks import (
    as_index_array,
    as_index_tensor,
    check_choice,
    check_fraction,
    check_nonnegative_int,
)
from .assignment import AssignmentRule
from .distributed import average_written, is_distributed, world_size
from .scores import _check_logits, confidence, cross_entropy
from .states import PairCheck, check_config, gather_ranks, labels_digest, state_tensor
from .vocabulary import ALL, FILTERED

__all__ = ["HardSampleFilter", "FILTERED"]

logger = logging.getLogger("remix_data")

_NONFINITE = ("raise", "ignore")
_SYNC = ("auto", "never")


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


# The configuration that shapes an assignment: a state records it, and loading
# it into a filter configured otherwise is refused.
_CONFIG_KEYS = (
    "num_samples",
    "modalities",
    "score",
    "unscored",
    "keep_ratio",
    "threshold",
    "reweight",
    "labels",
    "smoothing",
    "balance",
    "world_size",
)
_STATE_KEYS = (
    *_CONFIG_KEYS,
    "values",
    "fresh",
    "scored",
    "ignored",
    "snapshot",
    "snapshot_epoch",
    "weights",
    "history",
    "ranks",
)


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
        self.rule = AssignmentRule(
            num_samples,
            modalities,
            score=score,
            unscored=unscored,
            keep_ratio=keep_ratio,
            threshold=threshold,
            reweight=reweight,
            labels=labels,
            balance=balance,
        )
        self.num_samples = self.rule.num_samples
        self.modalities = self.rule.modalities
        self.nonfinite = check_choice("nonfinite", nonfinite, _NONFINITE)
        self.sync_mode = check_choice("sync", sync, _SYNC)
        self.process_group = process_group
        self.smoothing = check_fraction("smoothing", smoothing, allow_zero=True)
        if self.smoothing == 1.0:
            raise ValueError("smoothing should be below 1 (1 never changes a score), got 1.0")
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

    # The rule's configuration, read-only here: :attr:`rule` holds it.
    @property
    def score(self) -> str:
        """``"confidence"`` or ``"loss"``."""
        return self.rule.score

    @property
    def unscored(self) -> str:
        """The policy for samples with no score: ``"spread"`` or ``"filter"``."""
        return self.rule.unscored

    @property
    def keep_ratio(self) -> list[float | None]:
        """The keep ratio per modality (``None``: keep all)."""
        return self.rule.keep_ratio

    @property
    def threshold(self) -> list[float | None]:
        """The threshold per modality (``None``: none)."""
        return self.rule.threshold

    @property
    def reweight(self) -> bool:
        """Whether filtering reweights the kept samples."""
        return self.rule.reweight

    @property
    def labels(self) -> torch.Tensor | None:
        """The int64 class label per sample, or ``None``."""
        return self.rule.labels

    @property
    def balance(self) -> str:
        """``"none"`` (the paper) or ``"class"``."""
        return self.rule.balance

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

    def set_scores(self, scores: Any, *, modality: str | int | None = None) -> None:
        """Replace the score table, or one modality's row of it, with ``scores``.

        The public way to load scores computed elsewhere (a previous run, an
        offline pass, a test). ``NaN`` means "not scored": such an entry is
        cleared. Smoothing is not applied (the values replace the old ones), the
        current epoch's snapshot stays frozen, and entries set to a number count
        as written since the last :meth:`sync`; under ``torch.distributed`` call
        it on every rank with the same scores.

        Args:
            scores: float ``[M, N]`` (every modality, ``modality=None``) or
                ``[N]`` (one modality): a tensor (any device, any floating dtype)
                or a numpy array, in the score kind of :attr:`score`.
            modality: the name or id of the row to set; ``None`` sets the table.

        Raises ``TypeError`` for anything but a floating tensor or array and for
        a ``modality`` that is neither a name nor an int, ``ValueError`` for a
        wrong shape, an unknown modality and any ``inf`` entry; nothing changes
        then.

        Example:
            >>> import torch
            >>> filt = HardSampleFilter(3, ("audio", "video"))
            >>> filt.set_scores(torch.tensor([[0.1, 0.9, float("nan")], [0.5, 0.5, 0.5]]))
            >>> filt.assignment().tolist()
            [0, 1, 1]
            >>> filt.set_scores(torch.zeros(3), modality="video")
            >>> filt.assignment().tolist()
            [1, 1, 1]
        """
        m, n = len(self.modalities), self.num_samples
        row = None if modality is None else self._modality_id("modality", modality)
        shape = (m, n) if row is None else (n,)
        if isinstance(scores, torch.Tensor):
            if not scores.is_floating_point():
                raise TypeError(f"scores should have a floating dtype, but got {scores.dtype}")
            values = scores.detach().to("cpu", torch.float32)
        elif isinstance(scores, np.ndarray):
            if scores.dtype.kind != "f":
                raise TypeError(f"scores should have a floating dtype, but got {scores.dtype}")
            values = torch.from_numpy(scores.astype(np.float32))
        else:
            raise TypeError(
                f"scores should be a float tensor or array, but got {type(scores).__name__}"
            )
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
        target = self._values if row is None else self._values[row]
        fresh = self._fresh if row is None else self._fresh[row]
        target.copy_(values)
        fresh.copy_(~torch.isnan(values))
        self._scored.copy_(~torch.isnan(self._values).all(0))

    def _modality_id(self, name: str, value: Any) -> int:
        """A modality given by name or id as its id, validated."""
        if isinstance(value, str):
            if value not in self._position:
                raise ValueError(
                    f"{name} should be one of {self.modalities}, but got {name}={value!r}"
                )
            return self._position[value]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} should be a modality name or id, but got {name}={value!r}")
        if not 0 <= value < len(self.modalities):
            raise ValueError(
                f"{name} should lie in [0, {len(self.modalities)}) for modalities="
                f"{self.modalities}, but got {name}={value!r}"
            )
        return int(value)

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

    def _assign(self) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """Return (int8 assignment, optional weights, number of unscored samples)."""
        return self.rule(self._values, self._scored.numpy())

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
        self._confirm_pair()
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
        packed float32 tensor, 4 + 4 bytes per sample and modality, matched by
        position (:func:`remix_data.distributed.average_written`).

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
        seen = average_written(self._values, self._fresh, self.process_group, epoch=epoch)
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
    # Set by a restored sampler until the snapshot epoch it needs is confirmed.
    _pair_check: PairCheck | None = None
    _restored = False

    def state_dict(self, *, gather: bool = True) -> dict[str, Any]:
        """Everything needed to resume: the score table, the epoch snapshot and history.

        Keys: the configuration that shapes the assignment (``num_samples``,
        ``modalities``, ``score``, ``unscored``, ``keep_ratio``, ``threshold``,
        ``reweight``, ``labels`` as a digest, ``smoothing``, ``balance``) and
        ``world_size`` (the ranks of :attr:`process_group`, 1 without
        ``torch.distributed``), which :meth:`load_state_dict` checks;
        ``values`` (float32 ``[M, N]``), ``fresh`` (bool ``[M, N]``, entries
        written since the last :meth:`sync`), ``scored`` (bool ``[N]``),
        ``ignored``, ``snapshot`` (the int8 assignment of ``snapshot_epoch``,
        or ``None``), ``weights``, ``history`` and ``ranks``. All tensors are
        copies on the CPU, so the state can be ``torch.save``-d and loaded with
        ``weights_only=True``.

        Under ``torch.distributed`` (more than one rank, ``sync="auto"``) the
        entries written since the last sync differ between ranks, and
        ``gather=True`` (the default) makes this call a **collective: call it
        on every rank**, at the same point of the loop (Lightning's
        ``Trainer.save_checkpoint`` and Accelerate's ``save_state`` call state
        hooks on every rank). ``ranks`` then holds every rank's ``values``,
        ``fresh`` and ``scored`` (``[W, ...]``, or ``None`` when no rank wrote
        anything since the last sync) and ``ignored`` (int64 ``[W]``), so the
        state of any one rank restores every rank exactly. ``gather=False``
        (and one process, or ``sync="never"``) returns this rank's state alone,
        without a collective (``ranks`` is ``None``): restoring every rank
        exactly from such states needs each rank's own.

        Example:
            >>> filt = HardSampleFilter(3, ("a", "b"), score="loss", smoothing=0.5)
            >>> state = filt.state_dict()
            >>> state["smoothing"], state["ranks"] is None
            (0.5, True)
            >>> HardSampleFilter(3, ("a", "b"), score="loss").load_state_dict(state)
            Traceback (most recent call last):
            ...
            ValueError: state was saved with smoothing=0.5, but this filter has smoothing=0.0
        """
        ranks = None
        if gather and self.sync_mode == "auto" and is_distributed(self.process_group):
            ranks = gather_ranks(
                self._values,
                self._fresh,
                self._scored,
                self._ignored,
                self._snapshot_epoch,
                self.process_group,
            )
        return {
            **self._config(),
            "values": self._values.clone(),
            "fresh": self._fresh.clone(),
            "scored": self._scored.clone(),
            "ignored": self._ignored,
            "snapshot": None if self._snapshot is None else self._snapshot.clone(),
            "snapshot_epoch": self._snapshot_epoch,
            "weights": None if self._weights is None else self._weights.clone(),
            "history": copy.deepcopy(self.history),
            "ranks": ranks,
        }

    def _config(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "modalities": list(self.modalities),
            "score": self.score,
            "unscored": self.unscored,
            "keep_ratio": list(self.keep_ratio),
            "threshold": list(self.threshold),
            "reweight": self.reweight,
            "labels": labels_digest(self.labels),
            "smoothing": self.smoothing,
            "balance": self.balance,
            "world_size": world_size(self.process_group),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (no collective: every rank loads a state).

        A state gathered under ``torch.distributed`` restores this rank's own
        unsynced entries from its ``ranks`` (the rank of :attr:`process_group`),
        so loading rank 0's state on every rank resumes exactly.

        Raises ``ValueError`` naming the key and both values when the state was
        saved with another configuration (dataset size, modalities, score kind,
        ``unscored``, ``keep_ratio``, ``threshold``, ``reweight``, labels,
        ``smoothing``, ``balance``) or world size; when a table has the wrong
        shape, dtype (float32 values and weights, bool flags, int8 snapshot) or
        device, or impossible values; and when a sampler restored from the same
        run resumes an epoch this state's snapshot does not belong to (see
        :meth:`ReassemblingBatchSampler.load_state_dict
        <remix_data.ReassemblingBatchSampler.load_state_dict>`). Nothing changes
        unless every check passes.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state should be a mapping, but got {type(state).__name__}")
        check_config(state, self._config(), _CONFIG_KEYS, "filter")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state should contain {missing[0]!r}; got keys {sorted(state)}")
        m, n = len(self.modalities), self.num_samples
        values = state_tensor(state, "values", (m, n), torch.float32)
        fresh = state_tensor(state, "fresh", (m, n), torch.bool)
        scored = state_tensor(state, "scored", (n,), torch.bool)
        ignored = check_nonnegative_int("state['ignored']", state["ignored"])
        if state["ranks"] is not None:
            values, fresh, scored, ignored = self._own_rank(state["ranks"], values, fresh, scored)
        if bool(torch.isinf(values).any()):
            raise ValueError("state['values'] should hold finite scores or NaN, but holds inf")
        snap = state["snapshot"]
        if snap is not None:
            snap = state_tensor(state, "snapshot", (n,), torch.int8)
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
            weights = state_tensor(state, "weights", (n,), torch.float32)
        history = state["history"]
        if not isinstance(history, list):
            raise TypeError(f"state['history'] should be a list, but got {type(history).__name__}")
        if self._pair_check is not None:
            problem = self._pair_check(snapshot_epoch)
            if problem is not None:
                raise ValueError(problem)
            self._pair_check = None
        self._values = values.clone()
        self._fresh = fresh.clone()
        self._scored = scored.clone()
        self._ignored = ignored
        self._snapshot = None if snap is None else snap.clone()
        self._snapshot_epoch = snapshot_epoch
        self._weights = None if weights is None else weights.clone()
        self.history = copy.deepcopy(history)
        self._restored = True

    def _own_rank(
        self,
        ranks: Any,
        values: torch.Tensor,
        fresh: torch.Tensor,
        scored: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """This rank's ``(values, fresh, scored, ignored)`` from a gathered ``ranks`` entry."""
        if not isinstance(ranks, Mapping):
            raise TypeError(
                f"state['ranks'] should be a mapping or None, but got {type(ranks).__name__}"
            )
        for key in ("ignored", "values", "fresh", "scored"):
            if key not in ranks:
                raise ValueError(f"state['ranks'] should contain {key!r}; got {sorted(ranks)}")
        w = world_size(self.process_group)  # equal to the saved world_size (checked)
        me = dist.get_rank(self.process_group) if is_distributed(self.process_group) else 0
        counts = state_tensor(ranks, "ignored", (w,), torch.int64)
        if bool((counts < 0).any()):
            raise ValueError(f"state['ranks']['ignored'] should be non-negative, got {counts}")
        ignored = int(counts[me])
        if ranks["values"] is None:  # nothing was written since the last sync
            return values, fresh, scored, ignored
        m, n = values.shape
        every = state_tensor(ranks, "values", (w, m, n), torch.float32)
        flags = state_tensor(ranks, "fresh", (w, m, n), torch.bool)
        seen = state_tensor(ranks, "scored", (w, n), torch.bool)
        return every[me], flags[me], seen[me], ignored

    def _confirm_pair(self) -> None:
        """Run a restored sampler's snapshot-epoch check before the next snapshot."""
        if self._pair_check is None:
            return
        problem, self._pair_check = self._pair_check(self._snapshot_epoch), None
        if problem is not None:
            raise ValueError(problem)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, "
            f"modalities={self.modalities}, score={self.score!r})"
        )


def _summary(record: Mapping[str, Any], modalities: tuple[str, ...]) -> str:
    total = sum(record["counts"].values()) + record["filtered"]
    shares = ", ".join(f"{m}={record['counts'][m] / max(total, 1):.2f}" for m in modalities)
    return f"shares {shares}, filtered={record['filtered']}, unscored={record['unscored']}"
