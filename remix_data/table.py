"""Where the scores live: the host (numpy, the default) or one accelerator device.

:class:`ScoreTable` holds, for ``M`` modalities and ``N`` samples, the float32
scores (``NaN`` = not scored), the bool *fresh* flags (entries written since
the last distributed sync) and the bool *scored* flags (scored in some
modality): 4 + 1 bytes per sample and modality plus 1 per sample.

On the host every write is one numpy scatter. When updates arrive with outputs
on a device (a CUDA training step), the table moves there with asynchronous
copies and is scattered there, so :meth:`write_device` never waits for the
device: masked, duplicate, out-of-range and non-finite entries are redirected
to one spare column (``N``) that is never read, and counted in a small device
tensor. Reading the table (:meth:`host`: snapshot, statistics, state) brings it
back to the host in **one** device-to-host transfer and folds those counts in.

Example:
    >>> import numpy as np
    >>> table = ScoreTable(2, 3)
    >>> table.write(np.array([0, 1]), np.array([2, 0]), np.array([0.5, 1.5], np.float32))
    >>> table.values.tolist()
    [[nan, nan, 0.5], [1.5, nan, nan]]
    >>> table.scored.tolist()
    [True, False, True]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["ScoreTable", "to_device"]

# Device counters, in this order.
NONFINITE, BAD_INDEX, BAD_MODALITY, DUPLICATES = range(4)
_COUNTERS = 4


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device`` without making the host wait for the device.

    A CPU tensor bound for CUDA goes through pinned memory with
    ``non_blocking=True`` (a pageable, blocking copy would synchronise); a
    tensor already there is returned as is.
    """
    if tensor.device == device:
        return tensor
    if tensor.device.type == "cpu" and device.type == "cuda":
        if not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=True)
    return tensor.to(device)


def last_occurrence(idx: torch.Tensor) -> torch.Tensor:
    """Bool ``[B]``: True where ``idx[j]`` does not occur again later, on ``idx``'s device.

    A stable sort and one scatter: no value leaves the device.
    """
    ordered, order = torch.sort(idx, stable=True)
    last_sorted = torch.ones_like(ordered, dtype=torch.bool)
    last_sorted[:-1] = ordered[1:] != ordered[:-1]
    last = torch.empty_like(last_sorted)
    last[order] = last_sorted
    return last


def last_occurrence_numpy(idx: np.ndarray) -> np.ndarray | None:
    """:func:`last_occurrence` in numpy, or ``None`` when no index repeats (the usual case)."""
    ordered = np.sort(idx)
    if idx.size < 2 or bool((ordered[1:] != ordered[:-1]).all()):
        return None
    order = np.argsort(idx, kind="stable")
    ordered = idx[order]
    last = np.ones(idx.size, dtype=bool)
    last[order[:-1]] = ordered[1:] != ordered[:-1]
    return last


class ScoreTable:
    """Scores, fresh and scored flags of ``m`` modalities and ``n`` samples (see the module).

    ``ignore_nonfinite``: non-finite entries found on the device count as
    :attr:`ignored` (else as a pending error).
    """

    def __init__(self, m: int, n: int, *, ignore_nonfinite: bool = False) -> None:
        self.m, self.n = m, n
        self.ignore_nonfinite = ignore_nonfinite
        self._values = torch.full((m, n), np.nan, dtype=torch.float32)
        self._fresh = torch.zeros((m, n), dtype=torch.bool)
        self._scored = torch.zeros(n, dtype=torch.bool)
        self._ignored = 0
        self._duplicates = 0
        # Errors found on the device, reported by the filter's next snapshot.
        self.pending = {"nonfinite": 0, "index": 0, "modality": 0}
        self.device: torch.device | None = None  # None: the table lives on the host
        self._device_state: tuple[torch.Tensor, ...] = ()

    # ------------------------------------------------------------- host views
    @property
    def values(self) -> torch.Tensor:
        """float32 ``[M, N]`` on the host (brings a device table back first)."""
        return self.host()._values

    @values.setter
    def values(self, value: torch.Tensor) -> None:
        self.host()._values = value

    @property
    def fresh(self) -> torch.Tensor:
        """bool ``[M, N]`` on the host."""
        return self.host()._fresh

    @fresh.setter
    def fresh(self, value: torch.Tensor) -> None:
        self.host()._fresh = value

    @property
    def scored(self) -> torch.Tensor:
        """bool ``[N]`` on the host."""
        return self.host()._scored

    @scored.setter
    def scored(self, value: torch.Tensor) -> None:
        self.host()._scored = value

    @property
    def ignored(self) -> int:
        """Non-finite entries skipped (``nonfinite="ignore"``)."""
        return self.host()._ignored

    @ignored.setter
    def ignored(self, value: int) -> None:
        self.host()._ignored = value

    @property
    def duplicates(self) -> int:
        """Repeated indices of one call that were not written (an earlier occurrence)."""
        return self.host()._duplicates

    @duplicates.setter
    def duplicates(self, value: int) -> None:
        self.host()._duplicates = value

    @property
    def nbytes(self) -> int:
        """Bytes of the per-sample state, wherever it lives (no transfer)."""
        tensors = (
            self._device_state[:3]
            if self.device is not None
            else (
                self._values,
                self._fresh,
                self._scored,
            )
        )
        return sum(t.numel() * t.element_size() for t in tensors)

    # -------------------------------------------------------------- host path
    def write(
        self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, smoothing: float = 0.0
    ) -> None:
        """Scatter ``values`` at ``(rows, cols)`` on the host (one numpy scatter).

        With ``smoothing``, an entry that already holds a score becomes
        ``smoothing * old + (1 - smoothing) * new``.
        """
        table = self.values.numpy()
        if smoothing:
            old = table[rows, cols]
            blended = smoothing * old + (1.0 - smoothing) * values
            values = np.where(np.isnan(old), values, blended)
        table[rows, cols] = values
        self._fresh.numpy()[rows, cols] = True
        self._scored.numpy()[cols] = True

    # ------------------------------------------------------------ device path
    def on_device(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Move the table to ``device`` (asynchronously) and return its device tensors.

        Returns ``(values [M, N+1], fresh [M, N+1], scored [N+1], counters [4])``;
        column ``N`` is the spare column of redirected entries.
        """
        if self.device == device:
            return self._device_state
        if self.device is not None:
            raise ValueError(
                f"the score table lives on {self.device}; outputs on {device} cannot update it "
                "before the next snapshot brings it back to the host"
            )
        m, n = self.m, self.n
        values = torch.full((m, n + 1), np.nan, dtype=torch.float32, device=device)
        fresh = torch.zeros((m, n + 1), dtype=torch.bool, device=device)
        scored = torch.zeros(n + 1, dtype=torch.bool, device=device)
        if bool(self._scored.any()):  # host state to carry over (a host-side check)
            for r in range(m):  # row by row: contiguous copies on both sides
                values[r, :n].copy_(to_device(self._values[r], device), non_blocking=True)
                fresh[r, :n].copy_(to_device(self._fresh[r], device), non_blocking=True)
            scored[:n].copy_(to_device(self._scored, device), non_blocking=True)
        counters = torch.zeros(_COUNTERS, dtype=torch.int64, device=device)
        self._device_state = (values, fresh, scored, counters)
        self.device = device
        return self._device_state

    def write_device(
        self,
        rows: torch.Tensor,
        cols: torch.Tensor,
        values: torch.Tensor,
        *,
        smoothing: float = 0.0,
    ) -> None:
        """Scatter on the device; ``cols == N`` marks an entry not to write.

        ``rows``, ``cols`` (int64) and ``values`` (float32) have one shape and
        live on the table's device. Entries whose value is not finite are
        redirected to the spare column too and counted as ``nonfinite``.
        """
        table, fresh, scored, counters = self._device_state
        n = self.n
        finite = torch.isfinite(values)
        counters[NONFINITE] += ((cols < n) & ~finite).sum()
        cols = torch.where(finite, cols, n)
        if smoothing:
            old = table[rows, cols]
            blended = smoothing * old + (1.0 - smoothing) * values
            values = torch.where(torch.isnan(old), values, blended)
        table.index_put_((rows, cols), values)
        flag = torch.ones((), dtype=torch.bool, device=table.device)
        fresh.index_put_((rows, cols), flag)
        scored.index_put_((cols.reshape(-1),), flag)

    def add_duplicates(self, count: int) -> None:
        """Count repeated indices found on the host (wherever the table lives)."""
        self._duplicates += count

    def count(self, counter: int, amount: Any) -> None:
        """Add ``amount`` (a device tensor or an int) to a device counter."""
        self._device_state[3][counter] += amount

    def host(self) -> ScoreTable:
        """Bring a device table back to the host: one device-to-host transfer.

        Folds the device counters in: duplicates and ignored entries into the
        totals, errors into :attr:`pending`.
        """
        if self.device is None:
            return self
        values, fresh, scored, counters = self._device_state
        m, n = self.m, self.n
        parts = [
            counters.view(torch.uint8),
            values[:, :n].contiguous().view(-1).view(torch.uint8),
            fresh[:, :n].contiguous().view(-1).view(torch.uint8),
            scored[:n].view(torch.uint8),
        ]
        packed = torch.cat(parts).cpu()
        sizes = [p.numel() for p in parts]
        counts, v, f, s = torch.split(packed, sizes)
        self._values = v.view(torch.float32).view(m, n)
        self._fresh = f.view(torch.bool).view(m, n)
        self._scored = s.view(torch.bool)
        nonfinite, bad_index, bad_modality, duplicates = counts.view(torch.int64).tolist()
        if self.ignore_nonfinite:
            self._ignored += nonfinite
        else:
            self.pending["nonfinite"] += nonfinite
        self.pending["index"] += bad_index
        self.pending["modality"] += bad_modality
        self._duplicates += duplicates
        self.device, self._device_state = None, ()
        return self
