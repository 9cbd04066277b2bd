"""The device update on a real CUDA GPU (skipped without one).

Run on a CUDA machine with ``python3 -m pytest tests/test_cuda.py``: needs torch
(a CUDA build, which brings Triton), numpy and pytest only. Checked: the fused
Triton kernel, the pure-torch device path and the host path write the same
table on random inputs (repeated indices, NaN and inf scores, PAD and ALL ids,
smoothing, bf16 logits, device-resident or pinned host ids); ``update`` and
``remix_loss`` never synchronise (``torch.cuda.set_sync_debug_mode("error")``);
an ``update`` puts at most four kernels and copies on the device.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from remix_data import ALL, HardSampleFilter, remix_loss
from remix_data.device import DeviceQueue
from remix_data.kernels import available
from remix_data.vocabulary import PAD

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

NAMES = ("a", "b")
CUDA = torch.device("cuda")


def _filters(score: str, smoothing: float) -> dict[str, HardSampleFilter]:
    kwargs: dict[str, Any] = {"score": score, "smoothing": smoothing, "nonfinite": "ignore"}
    out = {"host": HardSampleFilter(200, NAMES, **kwargs)}
    for scorer in ("triton", "torch"):
        filt = HardSampleFilter(200, NAMES, **kwargs)
        filt.queue = DeviceQueue(CUDA, scorer=scorer, limit=500)  # several transfers per run
        out[scorer] = filt
    return out


def _calls(dtype: torch.dtype, seed: int) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    calls = []
    for _ in range(12):
        b = int(torch.randint(1, 65, (1,), generator=gen))
        index = torch.randint(0, 200, (b,), generator=gen)  # repeats likely
        ids = torch.tensor([PAD, ALL, 0, 1])[torch.randint(0, 4, (b,), generator=gen)]
        heads = {m: (torch.randn(b, 7, generator=gen) * 3).to(dtype) for m in NAMES}
        if b > 2:
            heads["a"][0, 0] = math.nan
            heads["b"][1, 2] = math.inf
            heads["b"][2, :] = -math.inf
        calls.append({"index": index, "ids": ids, "heads": heads,
                      "targets": torch.randint(0, 7, (b,), generator=gen)})  # fmt: skip
    return calls


@pytest.mark.skipif(not available(), reason="needs triton")
@pytest.mark.parametrize("score", ["confidence", "loss"])
@pytest.mark.parametrize("smoothing", [0.0, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("where", ["pinned host ids", "device ids"])
def test_kernel_torch_ops_and_host_write_the_same_table(
    score: str, smoothing: float, dtype: torch.dtype, where: str
) -> None:
    filters = _filters(score, smoothing)
    for call in _calls(dtype, seed=int(smoothing * 10) + (dtype == torch.bfloat16)):
        filters["host"].update(call["index"], call["heads"], call["targets"], modality=call["ids"])
        heads = {m: h.to(CUDA) for m, h in call["heads"].items()}
        targets = call["targets"].to(CUDA)
        if where == "device ids":
            index, ids = call["index"].to(CUDA), call["ids"].to(CUDA)
        else:
            index, ids = call["index"].pin_memory(), call["ids"].pin_memory()
        for scorer in ("triton", "torch"):
            filters[scorer].update(index, heads, targets, modality=ids)
    states = {name: f.state_dict() for name, f in filters.items()}
    assert filters["triton"].queue is not None and filters["triton"].queue.scorer == "triton"
    host = states["host"]
    assert host["ignored"] > 0 and host["duplicates"] > 0  # the odd cases did occur
    for name in ("triton", "torch"):
        state = states[name]
        assert torch.allclose(state["values"], host["values"], equal_nan=True, atol=1e-4), name
        assert torch.equal(state["fresh"], host["fresh"]) and torch.equal(
            state["scored"], host["scored"]
        ), name
        assert (state["ignored"], state["duplicates"]) == (host["ignored"], host["duplicates"])


def _training_step_inputs() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(3)
    return {
        "index": torch.randperm(4096, generator=gen)[:256].pin_memory(),
        "ids": torch.zeros(256, dtype=torch.long).pin_memory(),
        "heads": {m: torch.randn(256, 10, generator=gen).to(CUDA) for m in NAMES},
        "fused": torch.randn(256, 10, generator=gen).to(CUDA).requires_grad_(),
        "target": torch.randint(0, 10, (256,), generator=gen).to(CUDA),
    }


@pytest.mark.parametrize("options", [{}, {"smoothing": 0.5, "balance": "class"}, {"score": "loss"}])
def test_update_and_remix_loss_never_synchronise(options: dict[str, Any]) -> None:
    x = _training_step_inputs()
    labels = [i % 10 for i in range(4096)] if options.get("balance") else None
    filt = HardSampleFilter(4096, NAMES, labels=labels, **options)
    filt.queue = DeviceQueue(CUDA, limit=2048)  # a transfer every few calls, inside the check
    targets = x["target"] if options.get("score") == "loss" else None
    mixed = torch.tensor([PAD, ALL, 0, 1]).repeat(64).pin_memory()  # per-row ids
    host_ids = [x["ids"], torch.full((256,), ALL).pin_memory(), mixed]  # one id, joint, rows
    device_ids = [ids.to(CUDA) for ids in host_ids]
    device_index = x["index"].to(CUDA)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(42):
            ids = host_ids[step % 3]
            loss = remix_loss(x["fused"], x["heads"], x["target"], ids, filt)
            loss = loss + remix_loss(
                x["fused"], x["heads"], x["target"], device_ids[step % 3], filt
            )
            filt.update(x["index"], x["heads"], targets, modality=ids)
            filt.update(device_index, x["heads"], targets, modality=device_ids[step % 3])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert bool(torch.isfinite(loss))
    filt.snapshot(0)  # the one wait: the table comes back complete
    assert filt.stats()["unscored"] == 4096 - 256


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_remix_loss_on_cuda_gives_the_cpu_loss_and_gradients(dtype: torch.dtype) -> None:
    """The device formulation (log_softmax and a gather, the weights from a cached column,
    a numpy gather sent through pinned memory, or a gather of device ids) against the CPU's."""
    gen = torch.Generator().manual_seed(5)
    logits = [torch.randn(64, 7, generator=gen).to(dtype) for _ in range(3)]
    target = torch.randint(0, 7, (64,), generator=gen)
    mixed = torch.tensor([PAD, ALL, 0, 1])[torch.randint(0, 4, (64,), generator=gen)]
    cases = {"one id": 1, "host one id": torch.zeros(64, dtype=torch.long),
             "host rows": mixed, "device rows": mixed}  # fmt: skip
    for case, modality in cases.items():
        results = []
        for device in ("cpu", "cuda"):
            made = [x.detach().to(device).requires_grad_() for x in logits]
            ids = modality
            if isinstance(ids, torch.Tensor):
                ids = ids.to(CUDA) if case == "device rows" and device == "cuda" else ids
                ids = ids.pin_memory() if device == "cuda" and ids.device.type == "cpu" else ids
            loss = remix_loss(made[0], dict(zip(NAMES, made[1:])), target.to(device), ids, NAMES)
            loss.backward()
            results.append([loss.detach().float().cpu()] + [x.grad.float().cpu() for x in made])
        tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
        for got, expected in zip(results[1], results[0]):
            torch.testing.assert_close(got, expected, **tolerance, msg=case)


def test_an_update_launches_at_most_four_kernels_and_copies() -> None:
    from torch.profiler import ProfilerActivity, profile

    x = _training_step_inputs()
    for options in ({}, {"score": "loss"}):
        filt = HardSampleFilter(4096, NAMES, **options)
        targets = x["target"] if options else None
        all_ids = torch.full((256,), ALL).pin_memory()
        for _ in range(3):  # compile the kernel, make the queue
            filt.update(x["index"], x["heads"], targets, modality=all_ids)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                filt.update(x["index"], x["heads"], targets, modality=all_ids)
            torch.cuda.synchronize()
        on_device = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        assert len(on_device) / 10 <= 4, [e.name for e in on_device][:20]
