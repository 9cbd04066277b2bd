"""Host cost of one ``filter.update`` and one ``remix_loss`` call, for ``benchmarks/gpu.py``.

Per case, ``calls`` calls are timed on the host (``perf_counter``, nothing waits
for the device inside; one synchronisation after the last), and on CUDA the
kernels and copies they put on the device are counted with ``torch.profiler``.
Inputs are what a training step holds: heads on the device, the loader's
``index`` and ``modality`` as pinned host tensors, batch 256, 10 classes.

Cases of ``update``: one head with one id for the batch (a unimodal remix
batch), two heads with ``ALL`` ids (a joint batch), two heads with
``smoothing`` and ``balance="class"`` and per-row ids, ``score="loss"`` with
targets; and the two-head case on the pure-torch path (no Triton) for
comparison. ``remix_loss`` is timed against the joint loss
``CE(fused) + sum CE(head)`` on the same tensors (forward only).

Example:
    >>> rows = measure(torch.device("cpu"), calls=5)
    >>> [row["case"] for row in rows][:2]
    ['update: 1 head', 'update: 2 heads, ALL']
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks._common import NAMES
from remix_data import ALL, HardSampleFilter, remix_loss
from remix_data.device import DeviceQueue

__all__ = ["measure"]

B, C, N = 256, 10, 65_536


def _host(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor.pin_memory() if device.type == "cuda" else tensor


def _timed(fn: Callable[[int], object], device: torch.device, calls: int) -> dict[str, Any]:
    """Host microseconds per call, and device kernels and copies per call on CUDA."""
    for i in range(3):
        fn(i)  # first calls: Triton compilation, the queue, cached tables
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    seconds = time.perf_counter() - start
    if cuda:
        torch.cuda.synchronize(device)
    launches = None
    if cuda:
        from torch.profiler import ProfilerActivity, profile

        counted = min(calls, 50)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for i in range(counted):
                fn(i)
            torch.cuda.synchronize(device)
        on_device = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        launches = len(on_device) / counted
    return {"us_per_call": 1e6 * seconds / calls, "launches_per_call": launches}


def _update_case(
    device: torch.device, heads: int, ids: str, scorer: str = "auto", **kwargs: Any
) -> Callable[[int], object]:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(C, (N,), generator=gen)
    if kwargs.get("balance") == "class":
        kwargs["labels"] = labels
    filt = HardSampleFilter(N, NAMES, **kwargs)
    if device.type != "cpu":
        filt.queue = DeviceQueue(device, scorer=scorer)
    names = NAMES[:heads]
    outputs = {m: torch.randn(B, C, device=device) for m in names}
    targets = labels[:B].to(device)
    batches = [_host(torch.randperm(N, generator=gen)[:B], device) for _ in range(16)]
    modality: Any = {
        "one": 0,
        "ALL": _host(torch.full((B,), ALL), device),
        "rows": _host(torch.randint(-1, 2, (B,), generator=gen), device),
    }[ids]
    loss = kwargs.get("score") == "loss"

    def call(i: int) -> None:
        filt.update(batches[i % 16], outputs, targets if loss else None, modality=modality)

    return call


CASES: dict[str, tuple[int, str, dict[str, Any]]] = {
    "update: 1 head": (1, "one", {}),
    "update: 2 heads, ALL": (2, "ALL", {}),
    "update: 2 heads, smoothing + balance": (2, "rows", {"smoothing": 0.5, "balance": "class"}),
    "update: 2 heads, score=loss": (2, "rows", {"score": "loss"}),
    "update: 2 heads, ALL, torch ops": (2, "ALL", {"scorer": "torch"}),
}


def measure(device: torch.device, *, calls: int = 300) -> list[dict[str, Any]]:
    """One row per case: ``case``, ``us_per_call``, ``launches_per_call`` (``None`` off CUDA);
    the ``remix_loss`` row also has ``joint_us_per_call`` and ``ratio``."""
    rows = []
    for case, (heads, ids, kwargs) in CASES.items():
        if "torch ops" in case and device.type != "cuda":
            continue  # off CUDA every device update runs torch ops
        fn = _update_case(device, heads, ids, **kwargs)
        rows.append({"case": case, **_timed(fn, device, calls)})
    rows.append(_loss_row(device, calls))
    return rows


def _loss_row(device: torch.device, calls: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(1)
    filt = HardSampleFilter(N, NAMES)
    fused = torch.randn(B, C, generator=gen).to(device).requires_grad_()
    heads = {m: torch.randn(B, C, generator=gen).to(device).requires_grad_() for m in NAMES}
    target = torch.randint(C, (B,), generator=gen).to(device)
    modality = _host(torch.randint(-1, 2, (B,), generator=gen), device)
    ours = _timed(lambda i: remix_loss(fused, heads, target, modality, filt), device, calls)
    joint = _timed(
        lambda i: (
            F.cross_entropy(fused, target) + sum(F.cross_entropy(h, target) for h in heads.values())
        ),
        device,
        calls,
    )
    return {
        "case": "remix_loss vs joint loss",
        **ours,
        "joint_us_per_call": joint["us_per_call"],
        "joint_launches_per_call": joint["launches_per_call"],
        "ratio": ours["us_per_call"] / joint["us_per_call"],
    }
