"""The paper's training loss for joint and unimodal batches, written per row.

Warm-up (joint) rows: ``CE(fused) + joint_weight * sum_m CE(head m)`` (the paper:
0.5 each). Remix rows of modality ``m``: ``CE(fused) + gamma * CE(head m)``
(the paper: ``gamma = 1``). :data:`~remix_data.vocabulary.PAD` rows (repeats that
only fill a batch) weigh 0 in every term, and the sum is still divided by the
batch size ``B``, so every real row weighs ``1 / B`` as in a full batch. Every
head stays in the autograd graph with weight 0 on rows of another modality, so
DDP sees the same parameters used at every step and needs no
``find_unused_parameters=True``.

The fused and head logits are stacked and go through one cross-entropy (on a
device: one ``log_softmax`` and a gather of the targets, the sign folded into
the weights). The per-row weights of a batch of one id are a cached column of
a small table; other host ids are gathered in numpy and sent in one copy,
device ids gathered there. So the loss costs at most what the joint loss
``CE(fused) + sum CE(head)`` costs, and never synchronises. A binary head
(``[B, 1]`` logits with targets 0 or 1) is trained with the binary
cross-entropy of its sigmoid, the two-class case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_integer_dtype, check_modality_id, check_modality_ids
from ._source import modality_names
from .scores import looks_like_probabilities
from .vocabulary import ALL, PAD
from .watch import loss_step

__all__ = ["remix_loss", "row_weights"]


def row_weights(count: int, joint_weight: float, gamma: float) -> np.ndarray:
    """float64 ``[1 + count, count + 3]``: the weight of each logits row (fused, then heads)
    for a row of each modality id, indexed by the id (negative ids from the end).

    Columns ``0 .. count-1``: a unimodal row; ``count``: an invalid id (NaN: the
    loss shows it); ``count + 1``: :data:`PAD`; ``count + 2``: :data:`ALL`.

    Example:
        >>> row_weights(2, 0.5, 1.0)[:, [0, PAD, ALL]].tolist()
        [[1.0, 0.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 0.5]]
    """
    table = np.zeros((1 + count, count + 3))
    table[0, :count] = table[0, ALL] = 1.0
    table[1:, ALL] = joint_weight
    table[1 + np.arange(count), np.arange(count)] = gamma
    table[:, count] = np.nan
    table[:, PAD] = 0.0  # a repeat that only fills a batch weighs 0 in every term
    return table


#: Integer dtypes of each element size: a table's bits, gathered exactly in numpy (bf16 too).
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
#: Float dtypes that numpy holds as they are.
_NUMPY_DTYPES = frozenset({torch.float16, torch.float32, torch.float64})


class _Table:
    """``sign * row_weights / batch`` on a device: its columns, and its bits on the host.

    :meth:`column` is the ``[1 + count, 1]`` weights of a batch whose every row
    has id ``m``, a view made once; :meth:`rows` gathers per-row weights on the
    host and sends them in one copy (through pinned memory to a CUDA device,
    without waiting for it). ``dims == 3`` gives every weight tensor a trailing
    dimension of 1.
    """

    __slots__ = ("bits", "columns", "device", "dims", "host", "shaped", "table")

    def __init__(
        self, count: int, jw: float, gamma: float, batch: int, sign: float,
        device: torch.device, dtype: torch.dtype, dims: int,
    ) -> None:  # fmt: skip
        self.host = torch.as_tensor(sign * (row_weights(count, jw, gamma) / batch), dtype=dtype)
        self.device, self.dims = device, dims
        table = self.host.pin_memory() if device.type == "cuda" else self.host
        self.table = table.to(device, non_blocking=True)
        #: the table with the weights' trailing dimensions: ``[1 + count, count + 3(, 1)]``
        self.shaped = self.table if dims == 2 else self.table.unsqueeze(2)
        self.columns: dict[int, torch.Tensor] = {}
        self.bits: np.ndarray | None = None

    def column(self, m: int) -> torch.Tensor:
        """The weights of a batch of rows of one (checked) id ``m``."""
        weights = self.columns.get(m)
        if weights is None:
            c = m % self.table.shape[1]
            weights = self.columns[m] = self.shaped[:, c : c + 1]
        return weights

    def rows(self, ids: np.ndarray) -> torch.Tensor:
        """The weights of a batch of (checked) host ``ids``: ``[1 + count, B]`` (or ``[.., 1]``)."""
        dtype = self.host.dtype
        exact = dtype if dtype in _NUMPY_DTYPES else _BITS[self.host.element_size()]
        if self.bits is None:  # bf16 has no numpy dtype: its bits are gathered
            self.bits = (self.host if exact == dtype else self.host.view(exact)).numpy()
        shape = (self.bits.shape[0], ids.shape[0])
        cuda = self.device.type == "cuda"
        buffer = torch.empty(shape + (1,) * (self.dims - 2), dtype=exact, pin_memory=cuda)
        np.take(self.bits, ids, axis=1, out=buffer.numpy().reshape(shape), mode="wrap")
        weights = buffer if exact == dtype else buffer.view(dtype)
        if self.device.type == "cpu":
            return weights
        return weights.to(self.device, non_blocking=True)


@lru_cache(maxsize=64)
def _table(
    count: int, jw: float, gamma: float, batch: int, sign: float,
    device: torch.device, dtype: torch.dtype, dims: int,
) -> _Table:  # fmt: skip
    """The :class:`_Table` of one configuration (made once)."""
    return _Table(count, jw, gamma, batch, sign, device, dtype, dims)


def _weights(
    modality: torch.Tensor | int,
    batch: int,
    count: int,
    jw: float,
    gamma: float,
    like: torch.Tensor,
    sign: float = 1.0,
) -> torch.Tensor:
    """The ``[1 + count, B]`` (or ``[1 + count, 1]``) weights of the rows, divided by ``B``,
    times ``sign``; with a trailing dimension of 1 if ``like`` has three dimensions.

    One id for the batch (an ``int``, or host ids that are all equal: a
    unimodal batch) takes a cached column (no operation); other host ids are
    gathered on the host and sent in one copy; device ids are gathered there.
    """
    if isinstance(modality, bool) or not isinstance(modality, (int, torch.Tensor)):
        raise TypeError(
            f"modality should be an integer or an integer tensor, but got modality={modality!r}"
        )
    dims = like.dim()
    table = _table(count, jw, gamma, batch, sign, like.device, like.dtype, dims)
    if isinstance(modality, int):
        return table.column(check_modality_id("modality", modality, count))
    if tuple(modality.shape) not in ((), (batch,)):
        raise ValueError(
            f"modality should have shape [{batch}] like the logits or be one id, "
            f"but got {tuple(modality.shape)}"
        )
    if modality.device.type == "cpu":
        check_integer_dtype("modality", modality)
        ids = modality.numpy().reshape(-1)  # read once, in numpy: no torch op on the host
        span = check_modality_ids("modality", ids, count)
        if span is not None and span[0] == span[1]:  # one id for the batch: a unimodal batch
            return table.column(span[0])
        return table.rows(ids)
    check_modality_ids("modality", modality, count)  # a device tensor: its dtype only
    ids_row = modality if modality.dim() == 1 else modality.view(1)
    on_device = ids_row.clamp(-3, count)  # not read: an invalid id lands on the NaN column
    return table.shaped.index_select(1, on_device % (count + 3))


def _check_shapes(logits: list[torch.Tensor], labels: Sequence[str], target: Any) -> None:
    """``[B, C]`` logits (``C >= 1``) of one batch, and ``[B]`` targets: shapes only, no op."""
    batch = None
    for label, x in zip(labels, logits):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{label} should be a tensor of logits, but got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] < 1 or (batch is not None and x.shape[0] != batch):
            rows = "B" if batch is None else f"B={batch} (the rows of fused)"
            raise ValueError(
                f"{label} should be [B, C] logits with {rows}, but got shape {tuple(x.shape)}"
            )
        batch = x.shape[0]
    if not isinstance(target, torch.Tensor):
        raise TypeError(
            f"target should be a tensor of class indices, but got {type(target).__name__}"
        )
    if tuple(target.shape) != (batch,):
        soft = " (soft or one-hot targets are not supported: pass class indices)"
        raise ValueError(
            f"target should have shape [B] = ({batch},) with one class index per row, but got "
            f"shape {tuple(target.shape)}{soft if target.dim() == 2 else ''}"
        )


def _refuse_probabilities(logits: list[torch.Tensor], names: tuple[str, ...]) -> None:
    """Refuse host logits that hold probabilities (values are read: on the CPU only)."""
    for name, x in zip(names, logits):
        if looks_like_probabilities(x):
            raise ValueError(
                f"remix_loss got probabilities for {name} (every row in [0, 1], summing to "
                "1), not logits: pass the outputs before softmax"
            )


def _row_losses(logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``[K, B]`` per-row losses of same-shaped ``[B, C]`` logits (BCE for ``C == 1``)."""
    k, (batch, classes) = len(logits), logits[0].shape
    if classes == 1:
        x = torch.cat(logits, dim=1)
        expanded = target[:, None].expand(batch, k).to(x.dtype)
        return F.binary_cross_entropy_with_logits(x, expanded, reduction="none").T
    stacked = torch.stack(logits, dim=2)  # the CPU's softmax is fastest over a strided class dim
    return F.cross_entropy(stacked, target[:, None].expand(batch, k), reduction="none").T


def _picked_log_probabilities(logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``[K, B, 1]`` log-probabilities of the targets: minus the cross-entropy of each row.

    The device formulation of :func:`_row_losses` for ``C > 1``: the same
    ``log_softmax`` over the stacked logits, and a gather of the targets (what
    ``nll_loss`` reads) with the sign folded into the weights, in fewer operations.
    """
    k, batch = len(logits), logits[0].shape[0]
    log_probabilities = F.log_softmax(torch.stack(logits), dim=2)
    return log_probabilities.gather(2, target.view(1, batch, 1).expand(k, batch, 1))


def remix_loss(
    fused: torch.Tensor,
    heads: Mapping[str, torch.Tensor],
    target: torch.Tensor,
    modality: torch.Tensor | int,
    modalities: Any,
    *,
    joint_weight: float = 0.5,
    gamma: float = 1.0,
) -> torch.Tensor:
    """Mean over the batch of the paper's per-row loss.

    Args:
        fused: ``[B, C]`` logits of the fused head (``[B, 1]``: binary).
        heads: ``{name: [B, C] logits}`` of the unimodal heads, in any order.
        target: ``[B]`` class indices (0 or 1 for binary logits).
        modality: ``[B]`` active-modality ids from the loader (``ALL`` for joint
            rows, ``PAD`` for repeats that fill a batch), or one id for the
            whole batch (an ``int`` or a 0-d tensor).
        modalities: the :class:`~remix_data.HardSampleFilter` (its names and
            order), or the names in the filter's order.
        joint_weight: weight of every head on joint rows (paper: 0.5).
        gamma: weight of the active head on unimodal rows (paper: 1).

    Logits on the host that hold probabilities (a softmax applied: every row
    in ``[0, 1]`` summing to 1) are refused; on a device they are not read
    (:meth:`~remix_data.HardSampleFilter.update` reports them at the snapshot).

    Example:
        >>> import torch
        >>> fused = torch.zeros(2, 3)
        >>> heads = {"a": torch.zeros(2, 3), "b": torch.zeros(2, 3)}
        >>> loss = remix_loss(fused, heads, torch.tensor([0, 1]), torch.tensor([-1, 0]), ("a", "b"))
        >>> round(loss.item() / torch.log(torch.tensor(3.0)).item(), 4)   # (2 + 2) / 2 CEs
        2.0
        >>> round(remix_loss(fused, heads, torch.tensor([0, 1]), 0, ("a", "b")).item(), 4)
        2.1972
    """
    names = modality_names("modalities", modalities, check_order=True)
    loss_step(modalities, modality)  # warns once if mask='none' features are never masked
    missing = [name for name in names if name not in heads]
    if missing:
        raise ValueError(
            f"heads should hold every modality of modalities={names}; missing {missing}"
        )
    logits = [fused, *(heads[name] for name in names)]
    _check_shapes(logits, ("fused", *(f"heads[{name!r}]" for name in names)), target)
    if fused.device.type == "cpu":  # values on a device are not read
        _refuse_probabilities(logits, ("fused", *names))
    gather = fused.device.type != "cpu"
    return _weighted_sum(logits, target, modality, len(names), joint_weight, gamma, gather)


def _weighted_sum(
    logits: list[torch.Tensor], target: torch.Tensor, modality: torch.Tensor | int,
    count: int, jw: float, gamma: float, gather: bool,
) -> torch.Tensor:  # fmt: skip
    """The loss of fused-then-heads ``logits``; ``gather``: the device formulation."""
    shape, batch = logits[0].shape, logits[0].shape[0]
    if not all(x.shape == shape for x in logits):
        per_row = torch.cat([_row_losses([x], target) for x in logits])
    elif gather and len(shape) == 2 and shape[1] > 1:
        picked = _picked_log_probabilities(logits, target)
        return (picked * _weights(modality, batch, count, jw, gamma, picked, -1.0)).sum()
    else:
        per_row = _row_losses(logits, target)
    return (per_row * _weights(modality, batch, count, jw, gamma, per_row)).sum()
