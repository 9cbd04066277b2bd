"""Host updates staged, then scored and written together.

A :meth:`~remix_data.HardSampleFilter.update` whose outputs live on the CPU is
checked at the call (:func:`~remix_data.calls.check_call`: indices, ids, shapes,
probabilities) and, when its logits are finite, handed to a :class:`HostStage`:
the stage keeps host copies of the written heads' logits, the indices and the
ids. Once it holds ``limit`` logits, or when the table is read (every method
that reads it calls :meth:`~remix_data.HardSampleFilter.flush`, and reading
:attr:`~remix_data.HardSampleFilter.table` writes the stage too), the
staged calls are scored in one pass over their concatenated logits and written
one call after another through the table's write rule, in call order. So a
call costs its checks and three copies; the scoring and the writes run once
per many calls, while their code and data are warm. The table ends exactly as
if every call had been written at once: the confidence score is computed row
by row, so scoring rows together gives the same bits (``tests/test_staging.py``).

What only the logits' values show is still found at the call: a call whose
logits are not all finite (NaN, ``inf``, or ``-inf`` classes) is not staged;
the filter writes the stage and then that call at once, so it raises or is
counted exactly as without staging. Calls scored by their loss
(``score="loss"``) are written at once too.

Example:
    >>> import numpy as np, torch
    >>> stage = HostStage(limit=100)
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> stage.push(np.array([0]), [logits], np.array([3, 1]), None), stage.full
    (True, False)
    >>> stage.push(np.array([0]), [logits / 0], np.array([3, 1]), None)   # NaN: not staged
    False
    >>> [call.rows.tolist() for call in stage.drain()], len(stage)
    ([[0]], 0)
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .scores import confidence_numpy

__all__ = ["HostStage", "Scored", "Staged"]

#: Logits held before the staged calls are scored (8 bytes each: float64 copies).
LIMIT = 1 << 15


class Staged(NamedTuple):
    """One host call, checked, waiting to be scored and written."""

    rows: np.ndarray  # int [k]: the table rows of its heads
    indices: np.ndarray  # int64 [B], a copy
    ids: np.ndarray | None  # int64 [B], a copy, or None (every head on every row)
    logits: list[np.ndarray]  # float64 [B, C] copies, one per head


class Scored(NamedTuple):
    """A staged call with its scores, ready for :meth:`~remix_data.table.ScoreTable.write`."""

    rows: np.ndarray
    indices: np.ndarray
    ids: np.ndarray | None
    scores: np.ndarray  # float32 [k, B]


def _copy(head: torch.Tensor) -> np.ndarray:
    x = head.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # numpy has no bfloat16
    return np.array(x.numpy(), dtype=np.float64)  # what the confidence score computes in


class HostStage:
    """Host update calls waiting to be scored (confidence) and written together.

    Args:
        limit: staged logits (rows times classes, over all heads) that start a
            scoring pass.
    """

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.calls: list[Staged] = []
        self.size = 0

    def __len__(self) -> int:
        """Calls staged."""
        return len(self.calls)

    def push(
        self,
        rows: np.ndarray,
        heads: Sequence[torch.Tensor],
        indices: np.ndarray,
        ids: np.ndarray | None,
    ) -> bool:
        """Stage one call (``[B, C]`` logits of the heads ``rows``) if its logits are finite.

        Returns whether it was staged: ``False`` (nothing kept) when some logit
        is NaN or infinite. A float64 sum of float32 values is finite exactly
        when every value is; a sum that overflows only sends the call to the
        unstaged path.
        """
        logits = [_copy(h) for h in heads]
        if not all(math.isfinite(x.sum()) for x in logits):
            return False
        copied = None if ids is None else ids.copy()
        self.calls.append(Staged(rows, np.array(indices, dtype=np.int64), copied, logits))
        self.size += sum(x.size for x in logits)
        return True

    @property
    def full(self) -> bool:
        """Whether the staged logits reach :attr:`limit` (:meth:`drain` them then)."""
        return self.size >= self.limit

    def drain(self) -> list[Scored]:
        """Every staged call with its float32 ``[k, B]`` confidence scores, in call order."""
        calls, self.calls, self.size = self.calls, [], 0
        if not calls:
            return []
        heads = [x for call in calls for x in call.logits]
        classes = {x.shape[1] for x in heads}
        if len(classes) == 1:  # one pass over every row
            flat = confidence_numpy(np.concatenate(heads) if len(heads) > 1 else heads[0])
            parts = np.split(flat, np.cumsum([x.shape[0] for x in heads])[:-1])
        else:  # heads of different class counts: one pass per head
            parts = [confidence_numpy(x) for x in heads]
        out, at = [], 0
        for call in calls:
            k = len(call.logits)
            scores = np.stack(parts[at : at + k]) if k > 1 else parts[at][None, :]
            at += k
            out.append(Scored(call.rows, call.indices, call.ids, scores))
        return out
