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
import warnings
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
from .alerts import RemixWarning
from .assignment import AssignmentRule
from .distributed import average_written, is_distributed, world_size
from .scores import _check_logits, confidence, cross_entropy
from .states import PairCheck, check_config, gather_ranks, labels_digest, state_tensor
from .table import (
    BAD_INDEX,
    BAD_MODALITY,
    DUPLICATES,
    ScoreTable,
    last_occurrence,
    last_occurrence_numpy,
    to_device,
)
from .vocabulary import ALL, FILTERED, PAD

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


def _on_device(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.device.type != "cpu"


def _check_integer_tensor(name: str, value: torch.Tensor) -> None:
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} should hold integers, but got a tensor of dtype {value.dtype}")


def _device_indices(indices: torch.Tensor) -> torch.Tensor:
    """Device indices, checked without reading them (their range is counted on the device)."""
    _check_integer_tensor("indices", indices)
    if indices.dim() != 1:
        raise ValueError(f"indices should be one-dimensional, but got shape {tuple(indices.shape)}")
    return indices.detach()


def _device_modality(modality: torch.Tensor, batch: int) -> torch.Tensor:
    """Device modality ids as int64 ``[batch]`` (a 0-d tensor is one id for the batch)."""
    _check_integer_tensor("modality", modality)
    ids = modality.detach().long()
    if ids.dim() == 0:
        return ids.expand(batch)
    if tuple(ids.shape) != (batch,):
        raise ValueError(
            f"modality should have the shape of indices {(batch,)} or be one id, "
            f"but got {tuple(ids.shape)}"
        )
    return ids


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
    "duplicates",
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
            num_samples,
            modalities,
            score=score,
            unscored=unscored,
            keep_ratio=keep_ratio,
            threshold=threshold,
            reweight=reweight,
            labels=labels,
            balance=balance,
            available=available,
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
        self._table = ScoreTable(m, n, ignore_nonfinite=self.nonfinite == "ignore")
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

    @property
    def available(self) -> torch.Tensor | None:
        """Bool ``[num_samples, M]``: which modalities each sample has (``None``: all)."""
        table = self.rule.available
        return None if table is None else torch.from_numpy(table).T

    # The table's host views (a device table comes back to the host when read).
    @property
    def _values(self) -> torch.Tensor:
        return self._table.values

    @_values.setter
    def _values(self, value: torch.Tensor) -> None:
        self._table.values = value

    @property
    def _fresh(self) -> torch.Tensor:
        return self._table.fresh

    @_fresh.setter
    def _fresh(self, value: torch.Tensor) -> None:
        self._table.fresh = value

    @property
    def _scored(self) -> torch.Tensor:
        return self._table.scored

    @_scored.setter
    def _scored(self, value: torch.Tensor) -> None:
        self._table.scored = value

    @property
    def _ignored(self) -> int:
        return self._table.ignored

    @_ignored.setter
    def _ignored(self, value: int) -> None:
        self._table.ignored = value

    # ------------------------------------------------------------------ updates
    def update(
        self,
        indices: Any,
        outputs: Mapping[str, torch.Tensor],
        targets: torch.Tensor | None = None,
        *,
        modality: Any = None,
    ) -> None:
        """Write the scores of one batch into the table (one index scatter).

        Args:
            indices: ``[B]`` integer sample indices (tensor, array or list).
            outputs: maps a modality name to ``[B, C]`` logits of its unimodal head,
                or (with ``score="loss"``) to ``[B]`` per-sample losses. A call may
                carry only some modalities; only those are updated.
            targets: ``[B]`` class indices; needed for ``[B, C]`` logits when
                ``score="loss"``.
            modality: the active-modality ids as yielded by the loader: ``[B]``,
                or one id for the whole batch (an ``int`` or a 0-d tensor).
                Modality ``m`` is then written only for rows whose id is ``m`` or
                :data:`~remix_data.ALL`, so masked rows never overwrite a score.
                Ids outside ``ALL, 0 .. M-1`` are rejected. **Required** once the
                filter has taken a snapshot (remix epochs, whose batches are
                unimodal) whenever ``outputs`` holds more than one modality: pass
                the loader's ``modality``, or ``ALL`` for rows that saw every
                modality (a scoring pass); otherwise ``ValueError``.

        An index that occurs more than once in one call is written once, from
        its last occurrence; the other occurrences are counted in
        ``stats()["duplicates"]`` (padding under ``torch.distributed`` repeats
        samples legitimately).

        Where the work happens: with CPU outputs the call is numpy work on the
        host table (validation, scores, one scatter). With outputs on a device
        (e.g. CUDA), the table moves to that device (asynchronously, at the
        first such call after a snapshot) and the call only enqueues device
        work: nothing is copied to the host and nothing waits for the device.
        Indices and modality ids given on the host are still validated here;
        checks that need device values (non-finite scores, and the range of
        indices or ids given as device tensors) are counted on the device and
        reported by the next :meth:`snapshot`: a ``ValueError`` naming the
        counts (non-finite scores only with ``nonfinite="raise"``; with
        ``"ignore"`` they are counted in ``stats()["ignored"]``). Such entries
        are never written. The snapshot brings the table back to the host with
        one device-to-host transfer.

        Memory: 4 bytes (score) + 1 byte (fresh flag) per sample and modality,
        plus 1 byte per sample (scored in some modality), on the host or on the
        device; one spare column on the device.
        """
        device = self._device_of(outputs) if isinstance(outputs, Mapping) else None
        if device is not None:
            self._update_device(device, indices, outputs, targets, modality)
            return
        idx = as_index_array("indices", indices, self.num_samples)
        if not isinstance(outputs, Mapping):
            raise TypeError(
                f"outputs should map modality names to tensors, but got {type(outputs).__name__}"
            )
        if not outputs:
            return
        pos = self._positions(outputs, modality)
        keep, duplicates = self._host_keep(idx, self._host_modality(modality, idx.size), pos)
        # Small per-batch work runs in numpy: torch's per-op overhead would dominate.
        live: np.ndarray | None = None if keep is None else np.asarray(keep.any(axis=1))
        values = self._scores(outputs, targets, idx.size, live=live)  # float32 [k, B]
        finite = np.isfinite(values)
        ignored = 0
        if not finite.all():
            bad = ~finite if keep is None else ~finite & keep
            if bad.any() and self.nonfinite == "raise":
                self._raise_nonfinite(outputs, values, bad)
            ignored = int(bad.sum())
            keep = finite if keep is None else keep & finite
        if keep is None:
            table_rows, where = pos[:, None], idx[None, :]
        elif live is not None and live.sum() == 1 and keep[one := int(np.argmax(live))].all():
            # a unimodal batch: one whole row, no gather
            table_rows, where, values = pos[one : one + 1], idx, values[one]
        else:
            r, c = np.nonzero(keep)
            table_rows, where, values = pos[r], idx[c], values[r, c]
        # One scatter for all modalities of the call.
        self._table.write(table_rows, where, values, self.smoothing)
        self._table.ignored += ignored
        self._table.add_duplicates(duplicates)

    def _update_device(
        self,
        device: torch.device,
        indices: Any,
        outputs: Mapping[str, torch.Tensor],
        targets: Any,
        modality: Any,
    ) -> None:
        """:meth:`update` for outputs on ``device``: device work only, no host transfer."""
        n = self.num_samples
        # Values already on the table's device are never read on the host.
        resident_idx = isinstance(indices, torch.Tensor) and indices.device == device
        resident_ids = isinstance(modality, torch.Tensor) and modality.device == device
        if resident_idx:
            idx = _device_indices(indices)
            batch = idx.shape[0]
            idx_host = None
        else:
            idx_host = as_index_array("indices", indices, n)
            batch = idx_host.size
        pos = self._positions(outputs, modality)
        values = self._scores(outputs, targets, batch, device)  # float32 [k, B] on device
        rows_host = None if resident_ids else self._host_modality(modality, batch)
        table = self._table
        table.on_device(device)
        if idx_host is not None and not resident_ids:
            keep, duplicates = self._host_keep(idx_host, rows_host, pos)
            table.add_duplicates(duplicates)
            cols = idx_host[None, :] if keep is None else np.where(keep, idx_host[None, :], n)
            cols_t = to_device(torch.from_numpy(np.ascontiguousarray(cols)), device)
        else:
            if idx_host is not None:
                idx = to_device(torch.from_numpy(idx_host), device)
            ids = None
            if rows_host is not None:
                ids = to_device(torch.from_numpy(rows_host), device)
            elif modality is not None:
                ids = _device_modality(modality, batch)
            cols_t = self._device_cols(idx.to(device).long(), ids, pos)
        if batch == 0:
            return
        cols_t = cols_t.expand(len(pos), batch)
        rows_t = to_device(torch.from_numpy(pos.astype(np.int64)[:, None]), device)
        table.write_device(rows_t, cols_t, values, smoothing=self.smoothing)

    def _device_cols(
        self, idx: torch.Tensor, ids: torch.Tensor | None, pos: np.ndarray
    ) -> torch.Tensor:
        """Target columns ``[k, B]`` on the device; ``N`` marks an entry not to write.

        Out-of-range indices and ids and repeated indices are counted on the device.
        """
        n, m = self.num_samples, len(self.modalities)
        table = self._table
        valid = (idx >= 0) & (idx < n)
        table.count(BAD_INDEX, (~valid).sum())
        pad = None if ids is None else ids == PAD  # PAD rows are never written nor duplicates
        last = last_occurrence(
            idx
            if pad is None
            else torch.where(pad, -1 - torch.arange(idx.shape[0], device=idx.device), idx)
        )
        table.count(DUPLICATES, (valid & ~last).sum())
        keep = valid & last
        if ids is None:
            return torch.where(keep, idx, n).unsqueeze(0)
        ok = (ids >= PAD) & (ids < m)
        table.count(BAD_MODALITY, (~ok).sum())
        keep &= ok
        joint = ids == ALL
        per_row = torch.stack([keep & ((ids == int(p)) | joint) for p in pos])
        return torch.where(per_row, idx.unsqueeze(0), n)

    def _device_of(self, outputs: Mapping[str, Any]) -> torch.device | None:
        """The device of a call's outputs, or ``None`` for the host path."""
        devices = {
            t.device
            for t in outputs.values()
            if isinstance(t, torch.Tensor) and t.device.type != "cpu"
        }
        if self._table.device is not None:
            devices.add(self._table.device)
        if len(devices) > 1:
            raise ValueError(
                f"outputs should live on one device (the score table's, if it moved to one), "
                f"but got tensors on {sorted(map(str, devices))}"
            )
        return devices.pop() if devices else None

    def _positions(self, outputs: Mapping[str, Any], modality: Any) -> np.ndarray:
        """Table rows of the modalities named by ``outputs``; checks ``modality`` is given."""
        positions = []
        for name in outputs:
            if name not in self._position:
                raise ValueError(
                    f"outputs names unknown modality {name!r}; known: {self.modalities}"
                )
            positions.append(self._position[name])
        if modality is None and len(positions) > 1 and self._snapshot_epoch is not None:
            raise ValueError(
                f"update got outputs for {list(outputs)} without modality= after the snapshot "
                f"of remix epoch {self._snapshot_epoch}: remix batches are unimodal, so every "
                "other head saw masked inputs. Pass the loader's ids "
                "(update(index, outputs, modality=modality)), or modality=ALL for rows that "
                "saw every modality (a scoring pass)"
            )
        return np.asarray(positions)

    def _host_modality(self, modality: Any, batch: int) -> np.ndarray | None:
        """Host ``modality`` as validated int64 ``[batch]`` ids; ``None`` if not given."""
        if modality is None:
            return None
        m = len(self.modalities)
        if isinstance(modality, torch.Tensor):
            shape, dtype = tuple(modality.shape), str(modality.dtype)
            integer = not (
                modality.is_floating_point()
                or modality.is_complex()
                or modality.dtype == torch.bool
            )
            ids = modality.detach().numpy() if integer else None
        elif isinstance(modality, (int, np.integer)) and not isinstance(modality, bool):
            ids = np.asarray(modality)
            shape, dtype, integer = (), str(ids.dtype), True
        elif isinstance(modality, (np.ndarray, Sequence)) and not isinstance(modality, str):
            ids = np.asarray(modality)
            shape, dtype = ids.shape, str(ids.dtype)
            integer = ids.dtype.kind in "iu" or not ids.size
        else:
            raise TypeError(
                f"modality should be an id, or ids as a tensor, array or sequence, "
                f"but got modality={modality!r}"
            )
        if shape not in ((), (batch,)):
            raise ValueError(
                f"modality should have the shape of indices {(batch,)} or be one id, "
                f"but got {shape}"
            )
        if not integer or ids is None:
            raise TypeError(f"modality should hold integer ids, but got dtype {dtype}")
        ids = ids.astype(np.int64, copy=False)
        if ids.ndim == 0:
            ids = np.full(batch, int(ids), dtype=np.int64)
        if ids.size:
            low, high = int(ids.min()), int(ids.max())
            if low < PAD or high >= m:
                raise ValueError(
                    f"modality should hold ALL ({ALL}), PAD ({PAD}) or ids in [0, {m}) for "
                    f"modalities={self.modalities}, but got modality id "
                    f"{low if low < PAD else high}"
                )
        return ids

    @staticmethod
    def _host_keep(
        idx: np.ndarray, ids: np.ndarray | None, pos: np.ndarray
    ) -> tuple[np.ndarray | None, int]:
        """Entries ``[k, B]`` to write (``None``: all) and the number of repeated indices."""
        keep = None if ids is None else (ids[None, :] == pos[:, None]) | (ids == ALL)[None, :]
        if ids is not None and (ids == PAD).any():  # PAD rows are never written nor duplicates
            idx = np.where(ids == PAD, -1 - np.arange(idx.size), idx)
        last = last_occurrence_numpy(idx)
        if last is None:
            return keep, 0
        if keep is None:
            keep = np.broadcast_to(last, (pos.size, idx.size))
        return keep & last[None, :], int(idx.size - np.count_nonzero(last))

    @staticmethod
    def _raise_nonfinite(outputs: Mapping[str, Any], values: np.ndarray, bad: np.ndarray) -> None:
        k = int(np.flatnonzero(bad.any(1))[0])
        j = int(np.flatnonzero(bad[k])[0])
        name = list(outputs)[k]
        output = outputs[name]
        cause = ""
        if isinstance(output, torch.Tensor) and output.dim() == 2:
            row = output[j].detach().float()
            if bool(row.isnan().any()):
                cause = f": row {j}'s logits hold NaN"
            elif bool(row.isposinf().any()):
                cause = f": row {j}'s logits hold +inf"
            elif bool(row.isneginf().all()):
                cause = f": row {j}'s logits are all -inf"
        raise ValueError(
            f"outputs[{name!r}] gave a non-finite score ({values[k][j]}{cause}); "
            "pass nonfinite='ignore' to skip such entries"
        )

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
        self,
        outputs: Mapping[str, Any],
        targets: torch.Tensor | None,
        batch: int,
        device: torch.device | None = None,
        *,
        live: np.ndarray | None = None,
    ) -> Any:
        """Scores of every output as float32 ``[k, B]``: numpy on the host, else on ``device``.

        ``live`` (``[k]`` bools, host path): the outputs of which some entry is
        written. Same-shaped logits are all validated but only the live ones
        scored (a unimodal batch scores one head, not every head); the rows of
        the others hold 0 and must not be written.
        """
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
            if device is None and live is not None and not live.all():
                out = np.zeros((len(tensors), batch), dtype=np.float32)
                if live.any():
                    scored = np.flatnonzero(live)
                    chosen = torch.cat([tensors[r] for r in scored])
                    out[scored] = _as_numpy(confidence(chosen)).reshape(len(scored), batch)
                return out
            # One computation for all modalities instead of one per modality.
            scores = confidence(torch.cat(tensors)).view(len(tensors), batch)
            if device is not None:
                return to_device(scores, device)
            return _as_numpy(scores).astype(np.float32, copy=False)
        rows = [self._scores_of(n, o, targets, batch) for n, o in outputs.items()]
        if device is not None:
            return torch.stack([to_device(r.float(), device) for r in rows])
        return np.stack([_as_numpy(r) for r in rows]).astype(np.float32, copy=False)

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
        (the snapshot is part of :meth:`state_dict`). Snapshotting an epoch
        again after another one (``set_epoch`` going back) computes a new
        assignment from the current table and replaces that epoch's record in
        :attr:`history` (one record per epoch, the latest last).

        Errors that :meth:`update` counted on a device since the last snapshot
        (non-finite scores with ``nonfinite="raise"``, indices or modality ids
        out of range) raise a ``ValueError`` here, naming the counts; they are
        reported once.
        """
        self._confirm_pair()
        if self._snapshot is not None and self._snapshot_epoch == epoch:
            return self._snapshot
        self._table.host()  # a device table: one transfer
        self.sync(epoch=epoch)
        self._raise_pending()  # after the collective, so that no rank is left waiting
        assign, weights, unscored = self._assign()
        self._snapshot, self._snapshot_epoch, self._weights = assign, epoch, weights
        record = self._describe(assign, unscored, epoch)
        # One record per epoch: an epoch planned again (set_epoch going back) replaces its own.
        self.history = [r for r in self.history if r["epoch"] != epoch]
        self.history.append(record)
        logger.info("remix epoch %d: %s", epoch, _summary(record, self.modalities))
        return assign

    def _raise_pending(self) -> None:
        pending = self._table.pending
        found = {k: v for k, v in pending.items() if v}
        if not found:
            return
        for key in pending:
            pending[key] = 0
        parts = []
        if "nonfinite" in found:
            parts.append(f"{found['nonfinite']} non-finite scores (nonfinite='raise')")
        if "index" in found:
            parts.append(f"{found['index']} indices outside [0, {self.num_samples})")
        if "modality" in found:
            parts.append(
                f"{found['modality']} modality ids outside ALL ({ALL}) and "
                f"[0, {len(self.modalities)})"
            )
        raise ValueError(
            "since the last snapshot, update received on the device "
            + ", ".join(parts)
            + "; those entries were not written (pass nonfinite='ignore' to skip non-finite "
            "scores silently, counted in stats()['ignored'])"
        )

    @property
    def nbytes(self) -> int:
        """Bytes of the filter's per-sample state: score table, snapshot, weights, labels.

        About ``5 * M + 2`` bytes per sample for ``M`` modalities (``+ 4`` with
        reweighting, ``+ 8`` with labels), on the host or, for the table, on
        the device it moved to.
        """
        extra = (self._snapshot, self._weights, self.labels)
        return self._table.nbytes + sum(
            t.numel() * t.element_size() for t in extra if t is not None
        )

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
        self._synced(seen)

    def _synced(self, seen: torch.Tensor) -> None:
        """After a sync that wrote the ``seen`` entries: mark them scored, clear ``fresh``."""
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
            "duplicates": self._table.duplicates,
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
        (non-finite entries skipped), ``duplicates`` (repeated indices of one
        :meth:`update` call, written once), ``mean_score`` per modality over scored
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
        ``reweight``, ``labels`` and ``available`` as digests, ``smoothing``,
        ``balance``) and ``world_size`` (the ranks of :attr:`process_group`, 1
        without ``torch.distributed``), which :meth:`load_state_dict` checks (a
        state without ``available`` was saved before missing modalities: none);
        ``values`` (float32 ``[M, N]``), ``fresh`` (bool ``[M, N]``, entries
        written since the last :meth:`sync`), ``scored`` (bool ``[N]``),
        ``ignored`` and ``duplicates`` (the counters of :meth:`stats`),
        ``snapshot`` (the int8 assignment of ``snapshot_epoch``, or ``None``),
        ``weights``, ``history`` and ``ranks``. All tensors are
        copies on the CPU, so the state can be ``torch.save``-d and loaded with
        ``weights_only=True``.

        Under ``torch.distributed`` (more than one rank, ``sync="auto"``) the
        entries written since the last sync differ between ranks, and
        ``gather=True`` (the default) makes this call a **collective: call it
        on every rank**, at the same point of the loop (Lightning's
        ``Trainer.save_checkpoint`` and Accelerate's ``save_state`` call state
        hooks on every rank). ``ranks`` then holds every rank's ``values``,
        ``fresh`` and ``scored`` (``[W, ...]``, or ``None`` when no rank wrote
        anything since the last sync), ``ignored`` and ``duplicates`` (int64
        ``[W]``), so the
        state of any one rank restores every rank exactly. ``gather=False``
        (and one process, or ``sync="never"``) returns this rank's state alone,
        without a collective (``ranks`` is ``None``): restoring every rank
        exactly from such states needs each rank's own. Under
        ``torch.distributed`` it warns (:class:`~remix_data.RemixWarning`) when
        this rank holds entries written since the last sync, which the other
        ranks' states lack (a collective would be needed to know whether the
        other ranks hold some).

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
        if self.sync_mode == "auto" and is_distributed(self.process_group):
            if gather:
                ranks = gather_ranks(
                    self._values,
                    self._fresh,
                    self._scored,
                    self._ignored,
                    self._snapshot_epoch,
                    self.process_group,
                    self._table.duplicates,
                )
            else:
                self._warn_local("state_dict(gather=False)")
        return self._state(ranks)

    def _warn_local(self, where: str) -> None:
        """Warn that a state of this rank alone leaves out unsynced entries (DDP)."""
        unsynced = int(self._fresh.sum())
        if not unsynced:
            return
        rank = dist.get_rank(self.process_group)
        warnings.warn(
            f"HardSampleFilter: {where} on rank {rank} of {world_size(self.process_group)} "
            f"holds only this rank's scores: {unsynced} entries written since the last sync "
            "are in it, the other ranks' are not, so loading this state on every rank does "
            "not resume exactly (the next snapshot differs from the uninterrupted run). Call "
            "state_dict() on every rank at the same point (a collective that gathers them), "
            "or save every rank's own state and load each on its rank",
            RemixWarning,
            stacklevel=3,
        )

    def _state(self, ranks: dict[str, Any] | None) -> dict[str, Any]:
        """The state with the gathered ``ranks`` entry (``None``: this rank's alone)."""
        return {
            **self._config(),
            "values": self._values.clone(),
            "fresh": self._fresh.clone(),
            "scored": self._scored.clone(),
            "ignored": self._ignored,
            "duplicates": self._table.duplicates,
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
            "available": labels_digest(self.rule.available),
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
        # Missing modalities (a state saved before the key existed: none missing).
        check_config({"available": None, **state}, self._config(), ("available",), "filter")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state should contain {missing[0]!r}; got keys {sorted(state)}")
        m, n = len(self.modalities), self.num_samples
        values = state_tensor(state, "values", (m, n), torch.float32)
        fresh = state_tensor(state, "fresh", (m, n), torch.bool)
        scored = state_tensor(state, "scored", (n,), torch.bool)
        ignored = check_nonnegative_int("state['ignored']", state["ignored"])
        duplicates = check_nonnegative_int("state['duplicates']", state["duplicates"])
        if state["ranks"] is not None:
            values, fresh, scored, ignored, duplicates = self._own_rank(
                state["ranks"], values, fresh, scored
            )
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
        self._table.duplicates = duplicates
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
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
        """This rank's ``(values, fresh, scored, ignored, duplicates)`` from ``ranks``."""
        if not isinstance(ranks, Mapping):
            raise TypeError(
                f"state['ranks'] should be a mapping or None, but got {type(ranks).__name__}"
            )
        for key in ("ignored", "duplicates", "values", "fresh", "scored"):
            if key not in ranks:
                raise ValueError(f"state['ranks'] should contain {key!r}; got {sorted(ranks)}")
        w = world_size(self.process_group)  # equal to the saved world_size (checked)
        me = dist.get_rank(self.process_group) if is_distributed(self.process_group) else 0
        counters = []
        for key in ("ignored", "duplicates"):
            counts = state_tensor(ranks, key, (w,), torch.int64)
            if bool((counts < 0).any()):
                raise ValueError(f"state['ranks'][{key!r}] should be non-negative, got {counts}")
            counters.append(int(counts[me]))
        ignored, duplicates = counters
        if ranks["values"] is None:  # nothing was written since the last sync
            return values, fresh, scored, ignored, duplicates
        m, n = values.shape
        every = state_tensor(ranks, "values", (w, m, n), torch.float32)
        flags = state_tensor(ranks, "fresh", (w, m, n), torch.bool)
        seen = state_tensor(ranks, "scored", (w, n), torch.bool)
        return every[me], flags[me], seen[me], ignored, duplicates

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
