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
``CE(fused) + sum CE(head)`` on the same tensors (forward only), with per-row
ids (ALL, 0 and 1 mixed) and with one id for the batch (a unimodal remix batch).

Without a GPU, :func:`proxy` runs the same cases on ``meta`` tensors (the
device path, no kernel runs) and reports per call the ATen operations called
(the outermost ones, as ``torch.profiler`` records them) and the host
microseconds spent outside them (the meta kernels' own time, some of it
Python, is subtracted): what the library's Python and torch's dispatch cost,
which is what a GPU's host pays besides launching. It weighs a view like a
launch (``tests/test_op_budget.py`` counts the operations a GPU runs)::

    python -m benchmarks.step_costs            # the meta proxy
    python -m benchmarks.step_costs --device cuda

On ``meta`` it also counts the ATen operations of one training step of the
GPU benchmark's ``tiny`` level, forward and backward (:func:`step_ops`): the
joint step against the remix step of a unimodal batch.

Example:
    >>> rows = measure(torch.device("cpu"), calls=5)
    >>> [row["case"] for row in rows][:2]
    ['update: 1 head', 'update: 2 heads, ALL']
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks._common import NAMES
from remix_data import ALL, HardSampleFilter, remix_loss
from remix_data.device import DeviceQueue

__all__ = ["measure", "proxy", "step_ops"]

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
    rows.extend(_loss_row(device, calls, case) for case in LOSS_CASES)
    return rows


def _loss_case(device: torch.device, ids: str) -> tuple[Callable[[int], object], ...]:
    """``remix_loss`` and the joint loss on the same tensors (``ids``: "rows" or "one")."""
    gen = torch.Generator().manual_seed(1)
    filt = HardSampleFilter(N, NAMES)
    fused = torch.randn(B, C, generator=gen).to(device).requires_grad_()
    heads = {m: torch.randn(B, C, generator=gen).to(device).requires_grad_() for m in NAMES}
    target = torch.randint(C, (B,), generator=gen).to(device)
    made = torch.randint(-1, 2, (B,), generator=gen) if ids == "rows" else torch.zeros(B).long()
    modality = _host(made, device)

    def ours(i: int) -> object:
        return remix_loss(fused, heads, target, modality, filt)

    def joint(i: int) -> object:
        return F.cross_entropy(fused, target) + sum(
            F.cross_entropy(h, target) for h in heads.values()
        )

    return ours, joint


LOSS_CASES = {"remix_loss vs joint loss": "rows", "remix_loss, one id, vs joint loss": "one"}


def _loss_row(device: torch.device, calls: int, case: str) -> dict[str, Any]:
    ours_fn, joint_fn = _loss_case(device, LOSS_CASES[case])
    ours = _timed(ours_fn, device, calls)
    joint = _timed(joint_fn, device, calls)
    return {
        "case": case,
        **ours,
        "joint_us_per_call": joint["us_per_call"],
        "joint_launches_per_call": joint["launches_per_call"],
        "ratio": ours["us_per_call"] / joint["us_per_call"],
    }


def _proxied(fn: Callable[[int], object], calls: int) -> dict[str, Any]:
    """Host microseconds per call outside the (meta) kernels, and ATen calls per call.

    ``torch.profiler`` records every ATen call; the time inside the outermost
    ones (the meta kernels, some of them Python) is subtracted from the wall
    time. The profiler's own cost per call stays in: it weighs each outermost
    call alike, a view or a ``numpy()`` as much as a launch.
    """
    from torch.profiler import ProfilerActivity, profile

    for i in range(3):
        fn(i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for i in range(calls):
            fn(i)
        seconds = time.perf_counter() - start
    outer = [e for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")]
    inside = sum(e.cpu_time_total for e in outer) / 1e6
    return {"host_us": 1e6 * (seconds - inside) / calls, "ops_per_call": len(outer) / calls}


def proxy(*, calls: int = 300) -> list[dict[str, Any]]:
    """The cases of :func:`measure` on ``meta`` tensors: one row per case with ``host_us``
    and ``ops_per_call``; the loss rows also have ``joint_host_us``, ``joint_ops_per_call``,
    ``ratio`` (of host us) and ``ops_ratio``.

    Example:
        >>> rows = proxy(calls=3)
        >>> rows[-1]["case"], rows[-1]["ops_per_call"] < rows[-2]["ops_per_call"]  # one id: fewer
        ('remix_loss, one id, vs joint loss', True)
    """
    meta = torch.device("meta")
    rows = []
    for case, (heads, ids, kwargs) in CASES.items():
        if "torch ops" not in case:  # on meta every update runs torch ops
            rows.append({"case": case, **_proxied(_update_case(meta, heads, ids, **kwargs), calls)})
    for case, ids in LOSS_CASES.items():
        ours_fn, joint_fn = _loss_case(meta, ids)
        ours, joint = _proxied(ours_fn, calls), _proxied(joint_fn, calls)
        rows.append({
            "case": case, **ours, "joint_host_us": joint["host_us"],
            "joint_ops_per_call": joint["ops_per_call"],
            "ratio": ours["host_us"] / joint["host_us"],
            "ops_ratio": ours["ops_per_call"] / joint["ops_per_call"],
        })  # fmt: skip
    return rows


def step_ops(batch: int = 64, width: int = 32) -> list[dict[str, Any]]:
    """ATen operations dispatched (every ``aten::`` event of ``torch.profiler``, nested
    ones included: each is one dispatch, and the leaves are what a GPU launches) in one
    training step of the ``tiny`` level on ``meta`` tensors, forward and backward
    (:class:`~benchmarks.training.TinyNet`, :func:`~benchmarks.methods.train_step`):
    the joint step (``ALL`` rows) and the remix step of a unimodal batch
    (``remix-online``, the loader's host ids).

    Example:
        >>> joint, remix = step_ops(batch=4, width=8)
        >>> remix["ops"] <= joint["ops"]
        True
    """
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.methods import method_config, train_step
    from benchmarks.training import TinyNet

    meta = torch.device("meta")
    model = TinyNet(width=width).to(meta)
    sample = {
        "audio": torch.zeros(batch, 40, device=meta),
        "video": torch.zeros(batch, 3, 16, 16, device=meta),
        "label": torch.zeros(batch, dtype=torch.long, device=meta),
    }
    rows = []
    for case, method, one in (
        ("tiny step, joint", "joint", ALL),
        ("tiny step, remix", "remix-online", 0),
    ):
        cfg, ids = method_config(method, NAMES), torch.full((batch,), one)
        train_step(model, cfg, sample, ids)[0].backward()  # cached tables made
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(model, cfg, sample, ids)[0].backward()
        rows.append({"case": case, "ops": sum(e.name.startswith("aten::") for e in prof.events())})
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Print the meta proxy (default) or :func:`measure` on ``--device``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="meta", help="meta (the proxy), cuda or cpu")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.device == "meta":
        rows = proxy(calls=args.calls) + step_ops()
    else:
        rows = measure(torch.device(args.device), calls=args.calls)
    for row in rows:
        print("  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in
                        row.items()))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
