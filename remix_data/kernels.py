"""The fused Triton kernel of a device update: every written head's scores in one launch.

:func:`score_triton` computes what :func:`remix_data.scores.score_torch` computes
(confidence, or the cross-entropy against targets; binary ``[B, 1]`` heads as
logits ``[0, x]``) for ``k`` heads in one kernel launch, reading the logits in
their own dtype (bf16 included), and copies the call's device-resident index
and modality ids in the same launch. It is used for CUDA tensors when Triton
imports (:func:`available`); elsewhere the torch ops of ``score_torch`` run.

With ``TRITON_INTERPRET=1`` in the environment before Triton is imported, the
kernel runs in Triton's interpreter on CPU tensors (no GPU needed), which is how
the test suite checks it (in a subprocess).

Example:
    >>> import torch
    >>> if available():  # doctest: +SKIP
    ...     scores, _, _ = score_triton([torch.zeros(2, 3, device="cuda")], None, "confidence")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

import torch

#: ``triton.language``, imported at the first use (a CPU-only torch does not bring Triton).
tl: Any = None

__all__ = ["available", "score_triton"]

#: Widest class dimension the kernel takes (one row of logits in registers).
MAX_CLASSES = 8192


@cache
def available() -> bool:
    """Whether Triton imports (it ships with torch's CUDA wheels); imported at the first call."""
    global tl
    try:
        import triton.language
    except ImportError:  # the torch ops of scores.score_torch run instead
        return False
    tl = triton.language
    return True


def supports(outputs: Sequence[torch.Tensor]) -> bool:
    """Whether :func:`score_triton` takes these outputs: same-shaped logits, <= 8192 classes."""
    first = outputs[0]
    return (
        first.dim() == 2
        and first.shape[1] <= MAX_CLASSES
        and all(o.shape == first.shape and o.dtype == first.dtype for o in outputs)
    )


def _score_kernel(  # type: ignore[no-untyped-def]
    x_ptr, stride_k, stride_b, stride_c, t_ptr, idx_ptr, ids_ptr,
    out_ptr, idx_out, ids_out, B, C, log_c,
    K: tl.constexpr, LOSS: tl.constexpr, BINARY: tl.constexpr, COPY_IDX: tl.constexpr,
    COPY_IDS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One program: ``BLOCK_B`` rows of every head (Triton source; see the module)."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    in_rows = rows < B
    cols = tl.arange(0, BLOCK_C)
    mask = in_rows[:, None] & (cols < C)[None, :]
    if LOSS:
        t = tl.load(t_ptr + rows, mask=in_rows, other=0)
    for r in tl.static_range(K):
        where = x_ptr + r * stride_k + rows[:, None] * stride_b + cols[None, :] * stride_c
        x = tl.load(where, mask=mask, other=float("-inf")).to(tl.float32)
        if BINARY:  # logits [0, x]
            x1 = tl.sum(tl.where(mask, x, 0.0), axis=1)
            m = tl.maximum(x1, 0.0)
            e0 = tl.exp(0.0 - m)
            e1 = tl.exp(x1 - m)
            total = e0 + e1
            if LOSS:
                picked = tl.where(t == 1, x1, 0.0)
                picked = tl.where((t == 0) | (t == 1), picked, float("nan"))
                score = tl.log(total) + m - picked
            else:
                score = ((0.0 - m) * e0 + (x1 - m) * e1) / total - tl.log(total) + log_c
        else:
            m = tl.max(x, axis=1)
            z = x - m[:, None]  # NaN for a NaN, +inf or all -inf row: the score is NaN
            e = tl.where(mask, tl.exp(z), 0.0)
            total = tl.sum(e, axis=1)
            if LOSS:
                hit = (cols[None, :] == t[:, None]) & mask
                picked = tl.sum(tl.where(hit, x, 0.0), axis=1)
                picked = tl.where((t >= 0) & (t < C), picked, float("nan"))
                score = tl.log(total) + m - picked
            else:
                ez = tl.where(e > 0.0, e * z, 0.0)  # a -inf logit: probability 0, 0 log 0 = 0
                score = tl.sum(ez, axis=1) / total - tl.log(total) + log_c
        tl.store(out_ptr + r * B + rows, score, mask=in_rows)
    if COPY_IDX:
        tl.store(idx_out + rows, tl.load(idx_ptr + rows, mask=in_rows), mask=in_rows)
    if COPY_IDS:
        tl.store(ids_out + rows, tl.load(ids_ptr + rows, mask=in_rows), mask=in_rows)


@cache
def _kernel() -> Any:
    if not available():
        raise RuntimeError("the fused update kernel needs Triton: pip install triton")
    import triton

    return triton.jit(_score_kernel)  # an interpreted function under TRITON_INTERPRET=1


@lru_cache(maxsize=64)
def _launch(batch: int, classes: int) -> tuple[int, int, tuple[int], float]:
    """Block sizes, grid and ``log(C)`` of one shape (computed once)."""
    block_c = 1 << max(classes - 1, 0).bit_length()
    block_b = max(1, min(128, 4096 // block_c))
    return block_b, block_c, (max(1, -(-batch // block_b)),), math.log(max(classes, 2))


def score_triton(
    outputs: Sequence[torch.Tensor],
    targets: torch.Tensor | None,
    score: str,
    index: torch.Tensor | None = None,
    ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Scores ``[k, B]`` of same-shaped ``outputs`` and copies of ``index`` and ``ids``: one launch.

    Launches: the kernel, plus one ``cat`` when ``k > 1`` and one copy when
    ``targets`` live elsewhere. Nothing synchronises.
    """
    k, (batch, classes) = len(outputs), outputs[0].shape
    x = outputs[0] if k == 1 else torch.stack(list(outputs))  # one head: no stride over heads
    strides = (0, *x.stride()) if k == 1 else x.stride()
    device = x.device
    out = torch.empty((k, batch), dtype=torch.float32, device=device)
    loss = score == "loss"
    if loss:
        assert targets is not None
        if targets.device != device:
            targets = targets.to(device, non_blocking=True)
    idx_out = torch.empty_like(index) if index is not None else None
    ids_out = torch.empty_like(ids) if ids is not None else None
    block_b, block_c, grid, log_c = _launch(batch, classes)
    _kernel()[grid](
        x, *strides,
        targets if loss else out, index if index is not None else out,
        ids if ids is not None else out, out,
        idx_out if idx_out is not None else out, ids_out if ids_out is not None else out,
        batch, classes, log_c,
        K=k, LOSS=loss, BINARY=classes == 1, COPY_IDX=index is not None,
        COPY_IDS=ids is not None, BLOCK_B=block_b, BLOCK_C=block_c,
    )  # fmt: skip
    return out, idx_out, ids_out
