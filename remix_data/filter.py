"""The score table's owner: per-sample, per-modality hardness, and the assignment built from it.

:class:`HardSampleFilter` holds one float32 score per sample and modality
(``NaN`` until the sample is first scored for that modality). The training loop
(or a scoring pass) feeds unimodal outputs back with :meth:`HardSampleFilter.update`;
each call is one index scatter. :meth:`HardSampleFilter.assignment` turns the
table into the paper's decoupling: every sample trains the modality in which it
is *least* confident (or has the *highest* loss). The parts it delegates to are
named in ``docs/architecture.md``: :mod:`~remix_data.calls` (a checked call),
:mod:`~remix_data.scores`, :mod:`~remix_data.table` (the write rule),
:mod:`~remix_data.device` (outputs on an accelerator),
:mod:`~remix_data.assignment` (the rule) and :mod:`~remix_data.states`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from . import _source
from ._checks import as_index_tensor, check_choice, check_fraction, check_modality_row
from .alerts import RemixWarning
from .assignment import AssignmentRule
from .calls import Call, check_call
from .device import DeviceQueue, Landed
from .distributed import average_written, is_distributed
from .scores import describe_nonfinite, score_outputs
from .staging import HostStage
from .states import FilterState, Pairing, Snapshots
from .table import NONFINITE, NonFiniteScore, ScoreTable
from .vocabulary import FILTERED

__all__ = ["HardSampleFilter", "FILTERED"]

logger = logging.getLogger("remix_data")

_SYNC = ("auto", "never")


class HardSampleFilter:
    r"""Per-sample, per-modality hardness table and the paper's assignment rule.

    Args:
        num_samples: size of the training set; indices are ``0 .. num_samples-1``.
        modalities: two or more modality names; an assignment value ``m`` means
            ``modalities[m]``.
        score: ``"confidence"`` (the paper: ``KL(softmax || uniform)`` of each
            unimodal head; low = hard) or ``"loss"`` (per-sample cross-entropy or
            any per-sample loss; high = hard).
        unscored: a sample with no score trains ``modalities[index % M]``
            (``"spread"``, default) or is left out of the epoch (``"filter"``);
            one scored in only some modalities is compared over those.
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
        smoothing: opt-in, beyond the paper: ``new = smoothing * old + (1 -
            smoothing) * fresh`` across updates (0, the default: the latest score).
        balance: opt-in, beyond the paper: ``"class"`` splits every class between
            the modalities in the shares of the whole assignment, each sample to
            where it is relatively hardest. ``"none"`` (default) is the paper's rule.
        process_group: group whose ranks share one assignment under
            ``torch.distributed`` (default: the world).
        sync: ``"auto"`` (default) combines the ranks' updates with one
            ``all_reduce`` at every snapshot; ``"never"`` leaves each rank's table alone.
        available: missing modalities: a bool ``[num_samples, M]`` table,
            ``True`` where the sample has the modality (see
            :mod:`remix_data.availability`; ``None``: every sample has every
            modality). A sample is never assigned a modality it lacks and its
            scores there are ignored; the decoupler built over this filter
            fills the missing values.

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
        available: Any = None,
    ) -> None:
        self.rule = AssignmentRule(
            num_samples, modalities, score=score, unscored=unscored, keep_ratio=keep_ratio,
            threshold=threshold, reweight=reweight, labels=labels, balance=balance,
            available=available,
        )  # fmt: skip
        self.num_samples = self.rule.num_samples
        self.modalities = self.rule.modalities
        self.sync_mode = check_choice("sync", sync, _SYNC)
        self.process_group = process_group
        smoothing = check_fraction("smoothing", smoothing, allow_zero=True)
        if smoothing == 1.0:
            raise ValueError("smoothing should be below 1 (1 never changes a score), got 1.0")
        self._table = ScoreTable(
            len(self.modalities),
            self.num_samples,
            nonfinite=check_choice("nonfinite", nonfinite, NONFINITE),
            smoothing=smoothing,
        )
        #: Scores computed on a device, on their way to :attr:`table` (made by the
        #: first update with outputs on an accelerator).
        self.queue: DeviceQueue | None = None
        #: Host calls checked at the call, waiting to be scored and written together
        #: (:mod:`~remix_data.staging`); :meth:`flush` writes them into :attr:`table`.
        self.stage = HostStage()
        #: The frozen assignment of the current epoch, its weights and the history.
        self.snapshots = Snapshots(self.num_samples, len(self.modalities))
        #: A restored sampler's check on this filter's snapshot epoch.
        self.pairing = Pairing()
        self._warned_unmarked = False  # one head updated without modality= after a snapshot
        #: What :meth:`state_dict` saves and :meth:`load_state_dict` restores.
        self.checkpoint = FilterState(self)
        _source.register(self)

    # The configuration, read-only here: :attr:`rule` and :attr:`table` hold it.
    score = property(lambda self: self.rule.score, doc='``"confidence"`` or ``"loss"``.')
    unscored = property(lambda self: self.rule.unscored, doc="Samples with no score: policy.")
    keep_ratio = property(lambda self: self.rule.keep_ratio, doc="Keep ratio per modality.")
    threshold = property(lambda self: self.rule.threshold, doc="Threshold per modality.")
    reweight = property(lambda self: self.rule.reweight, doc="Reweighting kept samples.")
    labels = property(lambda self: self.rule.labels, doc="int64 label per sample, or None.")
    balance = property(lambda self: self.rule.balance, doc='``"none"`` or ``"class"``.')
    nonfinite = property(lambda self: self._table.nonfinite, doc='``"raise"`` or ``"ignore"``.')
    smoothing = property(lambda self: self._table.smoothing, doc="The score smoothing factor.")

    @property
    def available(self) -> torch.Tensor | None:
        """Bool ``[num_samples, M]``: which modalities each sample has (``None``: all)."""
        table = self.rule.available
        return None if table is None else torch.from_numpy(table).T

    @property
    def history(self) -> list[dict[str, Any]]:
        """One :meth:`stats` record per snapshotted epoch, the latest last."""
        return self.snapshots.history

    @property
    def table(self) -> ScoreTable:
        """The score table (host): values, flags, counters and the write rule.

        Reading it writes the staged host updates first, so it holds every CPU
        call made so far; scores still on a device land at :meth:`flush`.
        """
        self._write_staged()
        return self._table

    @property
    def snapshot_epoch(self) -> int | None:
        """The epoch of the last snapshot, or ``None`` before the first."""
        return self.snapshots.epoch

    # ------------------------------------------------------------------ updates
    def update(
        self,
        indices: Any,
        outputs: Mapping[str, torch.Tensor],
        targets: torch.Tensor | None = None,
        *,
        modality: Any = None,
    ) -> None:
        """Score one batch's outputs into the table.

        Args:
            indices: ``[B]`` integer sample indices (tensor, array or list).
            outputs: maps a modality name to ``[B, C]`` logits of its unimodal head
                (``[B, 1]``: a binary head), or (with ``score="loss"``) to ``[B]``
                per-sample losses. A call may carry only some modalities; only those
                are updated. Probabilities (a softmax applied) are refused.
            targets: ``[B]`` class indices; needed for logits when ``score="loss"``.
            modality: the active-modality ids as yielded by the loader: ``[B]``,
                or one id for the whole batch (an ``int`` or a 0-d tensor).
                Modality ``m`` is then written only for rows whose id is ``m`` or
                :data:`~remix_data.ALL`, so masked rows never overwrite a score;
                rows marked :data:`~remix_data.vocabulary.PAD` are not written.
                **Required** after the first snapshot whenever ``outputs`` holds
                more than one modality (remix batches are unimodal); one head
                without it then warns once (:class:`~remix_data.RemixWarning`).

        An index repeated in one call is written once, from its last occurrence
        (counted in ``stats()["duplicates"]``). Every argument is checked at the
        call. Outputs on the CPU are staged (:mod:`~remix_data.staging`) and
        scored and written together with later calls, before anything reads the
        table; a call whose logits hold NaN or ``inf`` is written at once, so it
        raises here (``nonfinite="raise"``). Outputs on an accelerator are
        scored there without waiting for it and reach the table later; what only
        their values show raises at the next :meth:`snapshot` (``docs/architecture.md``).
        """
        call = check_call(
            indices, outputs, modality, self.modalities, self.num_samples,
            snapshot_epoch=self.snapshot_epoch, score=self.score,
            device_path=self.queue is not None,
        )  # fmt: skip
        if not call.names:
            return
        if modality is None and not self._warned_unmarked and self.snapshot_epoch is not None:
            self._warn_unmarked(call.names)
        heads = [outputs[name] for name in call.names]
        if call.device is None:
            self._write_landed()  # keep the order of earlier device calls
            if self.score == "confidence":
                assert isinstance(call.indices, np.ndarray)  # host outputs: host indices
                assert not isinstance(call.ids, torch.Tensor)
                if self.stage.push(call.rows, heads, call.indices, call.ids):
                    if self.stage.full:
                        self._write_staged()
                    return
            self._write_staged()  # not staged (some logit is not finite): written now
            self._write_host(call, heads, score_outputs(heads, self.score, targets))
            return
        self._write_staged()  # keep the order of earlier host calls
        if self.queue is None:
            self.queue = DeviceQueue(call.device)
        elif self.queue.device != call.device:
            raise ValueError(
                f"outputs should live on {self.queue.device}, where this filter's earlier "
                f"updates were scored, but got outputs on {call.device}"
            )
        self._write_landed(
            self.queue.push(
                call.rows, call.names, heads, targets, self.score, call.indices, call.ids
            )
        )

    def _warn_unmarked(self, names: tuple[str, ...]) -> None:
        self._warned_unmarked = True
        warnings.warn(
            f"update got outputs for {list(names)} without modality= after the snapshot of "
            f"remix epoch {self.snapshot_epoch}: every row is written, also the rows of a "
            f"batch that trained another modality, where {names[0]!r} was masked. Pass the "
            "loader's ids (update(index, outputs, modality=modality)), or modality=ALL for "
            "rows that saw every modality (a scoring pass); warned once per filter",
            RemixWarning,
            stacklevel=3,
        )

    def _write_host(self, call: Call, heads: list[torch.Tensor], scores: torch.Tensor) -> None:
        assert isinstance(call.indices, np.ndarray) and not isinstance(call.ids, torch.Tensor)
        try:
            self._table.write(call.rows, call.indices, call.ids, scores.numpy())
        except NonFiniteScore as bad:
            message = describe_nonfinite(call.names[bad.head], heads[bad.head], bad.row, bad.value)
            raise ValueError(message) from None

    def _write_landed(self, landed: list[Landed] | None = None) -> None:
        """Write calls back from the device (``None``: drain the device queue first)."""
        if landed is None:
            if self.queue is None or not len(self.queue):
                return
            landed = self.queue.drain()
        for call in landed:
            if call.probabilities is not None:
                self._table.pending["probabilities"] = call.probabilities
            self._table.write(call.rows, call.indices, call.ids, call.scores, checked=False)

    def _write_staged(self) -> None:
        """Score and write the staged host calls (checked at their calls), in order."""
        if len(self.stage):
            for call in self.stage.drain():
                self._table.write(call.rows, call.indices, call.ids, call.scores)

    def flush(self) -> None:
        """Write the scores still on a device or staged on the host into :attr:`table`.

        Called by every method that reads the table (waiting for a device);
        reading :attr:`table` writes the host stage by itself, so call it
        yourself only to see, there, scores computed on a device.
        """
        self._write_landed()
        self._write_staged()

    def set_scores(self, scores: Any, *, modality: str | int | None = None) -> None:
        """Replace the score table, or one modality's row of it, with ``scores``.

        Scores computed elsewhere (a previous run, an offline pass, a test):
        float ``[M, N]`` (``modality=None``) or ``[N]`` for the row ``modality``
        (a name or id), a tensor or numpy array in the score kind of :attr:`score`.
        ``NaN`` clears an entry; no smoothing; the epoch's snapshot stays
        frozen; set entries count as written since the last :meth:`sync` (under
        ``torch.distributed`` call it on every rank with the same scores).
        ``TypeError`` for a non-float input or a bad ``modality`` type,
        ``ValueError`` for a wrong shape, an unknown modality or an ``inf``;
        nothing changes then.

        Example:
            >>> import torch
            >>> filt = HardSampleFilter(3, ("audio", "video"))
            >>> filt.set_scores(torch.tensor([[0.1, 0.9, float("nan")], [0.5, 0.5, 0.5]]))
            >>> filt.set_scores(torch.zeros(3), modality="video")
            >>> filt.assignment().tolist()
            [1, 1, 1]
        """
        row = None if modality is None else check_modality_row(modality, self.modalities)
        values = self._table.checked_scores(scores, row)
        self.flush()
        self._table.set(values, row)

    # --------------------------------------------------------------- assignment
    def assignment(self) -> torch.Tensor:
        """Return the assignment of the current table: int64 ``[num_samples]``.

        Value ``m`` means the sample trains ``modalities[m]``; ``FILTERED`` means it is
        filtered out. Computed from this process's table (no collective).
        """
        self.flush()
        return self.rule(self._table.values, self._table.scored.numpy()).assignment.to(torch.int64)

    def snapshot(self, epoch: int) -> torch.Tensor:
        """Return the int8 assignment for ``epoch``, computing it once per epoch.

        The first call for an epoch runs :meth:`sync` (a collective under
        ``torch.distributed``: call it on every rank, for the same epoch),
        freezes the assignment and records the epoch's :meth:`stats` in
        :attr:`history` (an epoch snapshotted again after another replaces its
        record). Later calls return the frozen tensor (part of :meth:`state_dict`,
        so a resumed epoch replays its plan). Errors found in updates scored on
        a device since the last snapshot raise a ``ValueError`` here, once.
        """
        self.pairing.confirm(self.snapshot_epoch)
        frozen = self.snapshots.assignment
        if frozen is not None and self.snapshots.epoch == epoch:
            return frozen
        self.flush()
        self.sync(epoch=epoch)
        self._table.raise_pending()  # after the collective, so that no rank is left waiting
        assign, weights, unscored = self.rule(self._table.values, self._table.scored.numpy())
        record = self._table.describe(assign, unscored, epoch, self.modalities, self.labels)
        self.snapshots.freeze(epoch, assign, weights, record)
        logger.info("remix epoch %d: %s", epoch, _summary(record, self.modalities))
        return assign

    @property
    def nbytes(self) -> int:
        """Bytes of the filter's per-sample state: score table, snapshot, weights, labels.

        About ``5 * M + 2`` bytes per sample for ``M`` modalities (``+ 4`` with
        reweighting, ``+ 8`` with labels).
        """
        extra = (self.snapshots.assignment, self.snapshots.weights, self.labels)
        return self._table.nbytes + sum(
            t.numel() * t.element_size() for t in extra if t is not None
        )

    def weights(self, indices: Any) -> torch.Tensor:
        """Loss weights of ``indices`` under the last snapshot (all 1 without reweighting)."""
        idx = as_index_tensor("indices", indices, self.num_samples)
        if self.snapshots.weights is None:
            return torch.ones(idx.numel(), dtype=torch.float32)
        return self.snapshots.weights[idx]

    def sync(self, *, epoch: int | None = None) -> None:
        """Combine the scores that different ranks updated since the last sync.

        Called by :meth:`snapshot` once per epoch (call it on every rank to sync
        more often): one ``all_reduce`` (:func:`remix_data.distributed.average_written`).
        An entry written on several ranks becomes the mean of their values, on
        one rank that rank's value; the others keep theirs. ``epoch``: the
        snapshotted epoch; ranks passing different ones all raise a
        ``RuntimeError`` naming them. A no-op on one process or with ``sync="never"``.
        """
        if self.sync_mode == "never" or not is_distributed(self.process_group):
            return
        self.flush()
        table = self._table
        table.mark_synced(
            average_written(table.values, table.fresh, self.process_group, epoch=epoch)
        )

    # --------------------------------------------------------------- statistics
    def stats(self) -> dict[str, Any]:
        """Statistics of the last snapshot, or of the current table before any.

        Keys: ``epoch``, ``counts`` (samples per modality), ``filtered``,
        ``unscored`` (samples with no score in any modality), ``ignored``
        (non-finite entries skipped), ``duplicates`` (repeated indices of one
        :meth:`update` call, written once), ``mean_score`` per modality over scored
        samples, and ``class_counts`` when labels were given. Before the first
        snapshot, scores still on a device are written first (waiting for it).
        """
        if self.snapshots.assignment is not None:
            return self.history[-1]
        self.flush()
        assign, _, unscored = self.rule(self._table.values, self._table.scored.numpy())
        return self._table.describe(assign, unscored, None, self.modalities, self.labels)

    # -------------------------------------------------------------------- state
    def state_dict(self, *, gather: bool = True) -> dict[str, Any]:
        """Everything needed to resume: the score table, the epoch snapshot and history.

        Keys (:class:`~remix_data.states.FilterState`): the configuration that
        shapes the assignment (``labels`` and ``available`` as digests; a state
        without ``available`` was saved before missing modalities existed) and
        ``world_size``, which :meth:`load_state_dict` checks; ``values``
        (float32 ``[M, N]``), ``fresh`` (bool ``[M, N]``: written since the last
        :meth:`sync`), ``scored`` (bool ``[N]``),
        ``ignored``, ``duplicates``, ``snapshot`` (int8 ``[N]`` or ``None``),
        ``snapshot_epoch``, ``weights``, ``history`` and ``ranks``. Tensors are
        CPU copies (``torch.load(..., weights_only=True)`` reads the state).
        Scores still on a device are written first (waiting for it).

        Under ``torch.distributed`` (``sync="auto"``) ``gather=True`` makes this
        call a **collective: call it on every rank** at the same point of the
        loop (Lightning's and Accelerate's checkpoint hooks do): ``ranks`` then
        holds every rank's unsynced entries, so any one rank's state restores
        every rank exactly. ``gather=False`` is :meth:`local_state_dict`.

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
        return self.checkpoint.state_dict(gather=gather)

    def local_state_dict(self, where: str = "state_dict(gather=False)") -> dict[str, Any]:
        """This rank's :meth:`state_dict` alone, without a collective (``ranks`` is ``None``).

        Under ``torch.distributed`` it warns (:class:`~remix_data.RemixWarning`,
        naming ``where``) when this rank holds entries written since the last
        sync, which the other ranks' states lack.
        """
        return self.checkpoint.state_dict(gather=False, where=where)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (no collective: every rank loads a state).

        A gathered state restores this rank's own unsynced entries from its
        ``ranks``. Raises ``ValueError`` naming the key and both values when the
        state was saved with another configuration or world size, when a table
        has the wrong shape, device or values (``TypeError``: dtype), and when a
        sampler restored from the same run resumes an epoch this state's
        snapshot does not belong to. Nothing changes unless every check passes;
        scores still on a device are dropped.
        """
        self.checkpoint.load_state_dict(state)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, "
            f"modalities={self.modalities}, score={self.score!r})"
        )


def _summary(record: Mapping[str, Any], modalities: tuple[str, ...]) -> str:
    total = sum(record["counts"].values()) + record["filtered"]
    shares = ", ".join(f"{m}={record['counts'][m] / max(total, 1):.2f}" for m in modalities)
    return f"shares {shares}, filtered={record['filtered']}, unscored={record['unscored']}"
