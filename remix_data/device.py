"""Scores computed on a device, on their way to the host table without a synchronisation.

A :meth:`~remix_data.HardSampleFilter.update` whose outputs live on an
accelerator scores them there (one fused Triton kernel on CUDA where Triton
imports, a few torch ops elsewhere) and hands the result to a
:class:`DeviceQueue`. The queue keeps the device tensors of the calls; once
they hold ``limit`` scores it starts one asynchronous copy of all of them to
pinned host memory (two copies: the scores, and the indices and ids that were
on the device), and the calls are written into the
:class:`~remix_data.table.ScoreTable` by the host's write rule once the copy
has landed (checked without waiting at later calls) or when the filter needs
its table (:meth:`DeviceQueue.drain`: a snapshot, ``stats()``,
``state_dict()``). So a training step never waits for the device and launches
no copy of its own; the table, its rule and its counters stay on the host.

Indices and ids given on the host (the loader's pinned ``index`` and
``modality`` tensors) stay there: they were checked at the call, and only the
scores travel. On devices other than CUDA the copy is an ordinary (waiting)
one, made when the queue is full or drained.
"""

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from . import kernels
from .alerts import RemixWarning
from .scores import PROBABILITY_ROWS, checked_targets, score_torch, sum_tolerance

__all__ = ["DeviceQueue", "Landed", "Queued"]

#: Scores held on the device before one copy to the host starts (4 bytes each).
LIMIT = 1 << 20


class Queued(NamedTuple):
    """One call waiting on the device."""

    rows: np.ndarray  # table rows of the scored heads
    indices: np.ndarray | torch.Tensor  # host indices, or a device copy
    ids: np.ndarray | torch.Tensor | None  # host ids, a device copy, or None
    scores: torch.Tensor  # float32 [k, B] on the device
    probabilities: torch.Tensor | None  # int [k]: probability-like rows per head, if checked
    names: tuple[str, ...]  # the heads' names, for messages


class Landed(NamedTuple):
    """One call back on the host, ready for :meth:`~remix_data.table.ScoreTable.write`."""

    rows: np.ndarray
    indices: np.ndarray
    ids: np.ndarray | None
    scores: np.ndarray
    probabilities: str | None  # the first head whose rows looked like probabilities


class _Transfer(NamedTuple):
    calls: list[Queued]
    floats: torch.Tensor  # pinned host copy of every call's scores (and probability counts)
    ints: torch.Tensor | None  # pinned host copy of the device-resident indices and ids
    done: Any  # a CUDA event, or None when the copy has already landed


def _flat(call: Queued) -> list[torch.Tensor]:
    parts = [call.scores.reshape(-1)]
    if call.probabilities is not None:
        parts.append(call.probabilities.float())
    return parts


def _device_ints(call: Queued) -> list[torch.Tensor]:
    return [t for t in (call.indices, call.ids) if isinstance(t, torch.Tensor)]


def _rows_tensor(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` if the kernel can copy it (one contiguous value per row), else ``None``."""
    return t if t is not None and t.dim() == 1 and t.is_contiguous() else None


def probability_rows(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per head, the rows of ``[B, C]`` logits that lie in ``[0, 1]`` and sum to 1 (device ops)."""
    counts = []
    for x in outputs:
        if x.dim() != 2 or x.shape[1] < 2 or x.shape[0] < PROBABILITY_ROWS:
            counts.append(torch.zeros((), dtype=torch.int64, device=x.device))
            continue
        tolerance = sum_tolerance(x.dtype)
        x = x.float()
        inside = ((x >= 0) & (x <= 1)).all(dim=1)
        counts.append((inside & ((x.sum(dim=1) - 1).abs() <= tolerance)).sum())
    return torch.stack(counts)


class DeviceQueue:
    """Calls scored on ``device``, waiting for one asynchronous copy to the host.

    Args:
        device: where the outputs live.
        scorer: ``"auto"`` (the Triton kernel for CUDA tensors where Triton
            imports, torch ops otherwise), ``"torch"`` or ``"triton"``.
        limit: scores held before a copy starts.
    """

    def __init__(self, device: torch.device, *, scorer: str = "auto", limit: int = LIMIT) -> None:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # as a tensor's .device names it
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        if scorer == "auto":
            scorer = "triton" if device.type == "cuda" and kernels.available() else "torch"
        self.scorer = scorer
        self.limit = limit
        self.waiting: list[Queued] = []
        self.size = 0
        self.transfers: list[_Transfer] = []
        self.checked = False  # probability-like outputs looked for (first call only)

    def __len__(self) -> int:
        """Calls not yet back on the host."""
        return len(self.waiting) + sum(len(t.calls) for t in self.transfers)

    @torch.no_grad()
    def push(
        self,
        rows: np.ndarray,
        names: tuple[str, ...],
        outputs: Sequence[torch.Tensor],
        targets: Any,
        score: str,
        index: np.ndarray | torch.Tensor,
        ids: np.ndarray | torch.Tensor | None,
    ) -> list[Landed]:
        """Score one call on the device and queue it; returns the calls that have landed."""
        dev_index = index if isinstance(index, torch.Tensor) else None
        dev_ids = ids if isinstance(ids, torch.Tensor) else None
        targets = checked_targets(outputs, score, targets)
        scored = self._triton(outputs, targets, score, dev_index, dev_ids)
        if scored is not None:
            scores, dev_index, dev_ids = scored
        else:
            scores = score_torch(outputs, targets, score)  # targets checked above; no grad
            dev_index = None if dev_index is None else dev_index.clone()
            dev_ids = None if dev_ids is None else dev_ids.clone()
        check = None
        if not self.checked:
            self.checked, check = True, probability_rows(outputs)
        # host arrays may view the caller's tensors, which a loop may reuse: keep copies
        host_ids = ids.copy() if isinstance(ids, np.ndarray) else ids
        queued_index = np.array(index) if dev_index is None else dev_index
        queued_ids = host_ids if dev_ids is None else dev_ids
        self.waiting.append(Queued(rows, queued_index, queued_ids, scores, check, names))
        self.size += scores.numel()
        if self.size >= self.limit:
            self._start()
        return self._landed(wait=False)

    def _triton(
        self,
        outputs: Sequence[torch.Tensor],
        targets: torch.Tensor | None,
        score: str,
        index: torch.Tensor | None,
        ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None:
        """The fused kernel's scores and copies, or ``None`` where it does not apply.

        A kernel that fails to compile or launch switches this queue to torch ops
        with a :class:`~remix_data.RemixWarning` instead of stopping the training.
        """
        if self.scorer != "triton" or not kernels.supports(outputs):
            return None
        try:
            if index is None and ids is None:  # the usual call: host index and ids
                return kernels.score_triton(outputs, targets, score)
            copied = [_rows_tensor(t) for t in (index, ids)]  # the kernel copies these
            scores, *copies = kernels.score_triton(outputs, targets, score, *copied)
        except Exception as err:  # a Triton or driver version this kernel does not fit
            warnings.warn(
                f"the fused Triton update kernel failed ({type(err).__name__}: {err}); "
                "scoring with torch ops instead",
                RemixWarning,
                stacklevel=5,
            )
            self.scorer = "torch"
            return None
        index, ids = (
            c if t is None or c is not None else t.clone() for t, c in zip((index, ids), copies)
        )
        return scores, index, ids

    def drain(self) -> list[Landed]:
        """Every queued call, back on the host (waits for the device)."""
        self._start()
        return self._landed(wait=True)

    def clear(self) -> None:
        """Forget every queued call (a state loaded over them replaces what they wrote)."""
        self.waiting, self.transfers, self.size = [], [], 0

    def _start(self) -> None:
        """One copy of the waiting calls to the host: asynchronous on CUDA."""
        calls, self.waiting, self.size = self.waiting, [], 0
        if not calls:
            return
        floats = torch.cat([p for call in calls for p in _flat(call)])
        ints_parts = [t.reshape(-1).long() for call in calls for t in _device_ints(call)]
        ints = torch.cat(ints_parts) if ints_parts else None
        if self.device.type != "cuda":
            self.transfers.append(
                _Transfer(calls, floats.cpu(), None if ints is None else ints.cpu(), None)
            )
            return
        host_floats = torch.empty(floats.shape, dtype=floats.dtype, pin_memory=True)
        host_floats.copy_(floats, non_blocking=True)
        host_ints = None
        if ints is not None:
            host_ints = torch.empty(ints.shape, dtype=ints.dtype, pin_memory=True)
            host_ints.copy_(ints, non_blocking=True)
        done = torch.cuda.Event()  # type: ignore[no-untyped-call]
        done.record()
        self.transfers.append(_Transfer(calls, host_floats, host_ints, done))

    def _landed(self, *, wait: bool) -> list[Landed]:
        out: list[Landed] = []
        while self.transfers:
            transfer = self.transfers[0]
            if transfer.done is not None:
                if not wait and not transfer.done.query():
                    break
                transfer.done.synchronize()
            self.transfers.pop(0)
            out.extend(_unpack(transfer))
        return out


def _unpack(transfer: _Transfer) -> list[Landed]:
    floats = transfer.floats.numpy()
    ints = None if transfer.ints is None else transfer.ints.numpy()
    f = i = 0
    landed = []
    for call in transfer.calls:
        k, batch = call.scores.shape
        scores = floats[f : f + k * batch].reshape(k, batch)
        f += k * batch
        found = None
        if call.probabilities is not None:
            counts = floats[f : f + k]
            f += k
            hits = np.flatnonzero(counts > 0)
            found = call.names[int(hits[0])] if hits.size else None
        index, ids = call.indices, call.ids
        if isinstance(index, torch.Tensor):
            assert ints is not None
            index, i = ints[i : i + batch], i + batch
        if isinstance(ids, torch.Tensor):
            assert ints is not None
            size = ids.numel()  # one id for the batch, or one per row
            ids, i = np.broadcast_to(ints[i : i + size], (batch,)), i + size
        landed.append(Landed(call.rows, np.asarray(index), ids, scores, found))
    return landed
