"""The device path of HardSampleFilter.update: no host transfer, same table as the host path."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from remix_data import ALL, HardSampleFilter
from remix_data.device import DeviceQueue

NAMES = ("a", "b")
# Ops that read a device value on the host (a synchronisation on CUDA).
HOST_READS = {"_local_scalar_dense", "nonzero", "item", "equal", "is_nonzero"}


class RecordOps(TorchDispatchMode):
    """Record every aten op; fail on a host read or on an op taking meta tensors to the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.__name__.split(".")[0]
        self.ops.append(name)
        flat = [*args, *(kwargs or {}).values()]
        on_device = any(isinstance(a, torch.Tensor) and a.device.type == "meta" for a in flat)
        assert not (on_device and name in HOST_READS), f"host read: {func}"
        out = func(*args, **(kwargs or {}))
        if on_device:
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    assert t.device.type == "meta", f"{func} copied a device tensor to {t.device}"
        return out


def test_update_with_meta_tensors_never_reads_or_copies_to_the_host() -> None:
    n, b = 50, 8
    filt = HardSampleFilter(n, NAMES, smoothing=0.5)
    meta = torch.device("meta")
    heads = {m: torch.randn(b, 3, device=meta) for m in NAMES}
    with RecordOps() as mode:
        filt.update(torch.arange(b, device=meta), heads)  # first call: table made on the device
        filt.update(
            torch.arange(b, device=meta), heads, modality=torch.zeros(b, device=meta).long()
        )
        filt.update(torch.arange(b, device=meta), heads, modality=torch.tensor(1, device=meta))
    assert {"_softmax", "xlogy"} <= set(mode.ops)  # scored on the device
    assert filt.queue is not None and filt.queue.device == meta and len(filt.queue) == 3
    # host-known indices and ids (the loader's CPU tensors) are validated on the host, then
    # travel to the device; the dispatch mode sees only the device side.
    filt.update(torch.arange(b), heads, modality=torch.ones(b, dtype=torch.long))
    loss = HardSampleFilter(n, NAMES, score="loss", nonfinite="ignore")
    loss.update(torch.arange(b), {"a": torch.randn(b, 3, device=meta)}, torch.zeros(b).long())
    with pytest.raises(ValueError, match="got an id 4"):  # host values: checked at once
        filt.update(torch.arange(b), heads, modality=torch.full((b,), 4))


def _pair(device_path: bool) -> HardSampleFilter:
    filt = HardSampleFilter(6, NAMES, score="loss", smoothing=0.25, nonfinite="ignore")
    if device_path:  # the device path, run with the CPU standing in for the device
        filt.queue = DeviceQueue(torch.device("cpu"))
    return filt


@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 5), min_size=1, max_size=8),
            st.sampled_from([None, ALL, 0, 1]),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_device_algorithm_writes_what_the_host_path_writes(calls: list[Any]) -> None:
    host, device = _pair(False), _pair(True)
    for k, (indices, modality, poison) in enumerate(calls):
        scores = torch.arange(len(indices), dtype=torch.float32) + k
        if poison:
            scores[0] = float("nan")
        outputs = {"a": scores, "b": -scores}
        kwargs = {} if modality is None else {"modality": modality}
        host.update(indices, outputs, **kwargs)
        device.update(torch.tensor(indices), outputs, **kwargs)  # resident: checks deferred
    host.snapshot(0)
    device.snapshot(0)
    for key in ("values", "fresh", "scored", "snapshot"):
        a, b = host.state_dict()[key], device.state_dict()[key]
        assert torch.equal(
            a.nan_to_num(-7) if a.is_floating_point() else a,
            b.nan_to_num(-7) if b.is_floating_point() else b,
        ), key
    assert host.stats() == device.stats()


def test_device_errors_are_counted_and_raised_by_the_next_snapshot() -> None:
    filt = HardSampleFilter(4, NAMES, score="loss")
    filt.queue = DeviceQueue(torch.device("cpu"))
    filt.update(torch.tensor([0, 9, -1]), {"a": torch.tensor([1.0, 2.0, 3.0])})
    filt.update(
        torch.tensor([1, 2]),
        {"a": torch.tensor([float("inf"), 1.0])},
        modality=torch.tensor([0, 7]),
    )
    with pytest.raises(
        ValueError, match=r"1 non-finite scores.*2 indices outside \[0, 4\).*1 modality"
    ):
        filt.snapshot(0)
    assert filt.state_dict()["values"][0].nan_to_num(-7).tolist() == [1.0, -7.0, -7.0, -7.0]
    filt.snapshot(0)  # reported once


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_loop_with_online_scoring_never_synchronises() -> None:
    from torch.utils.data import DataLoader

    from remix_data import ModalityDecoupler, ReassemblingBatchSampler, remix_loss

    n, dev = 256, torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    items = [
        {"a": torch.randn(4, generator=gen), "b": torch.randn(6, generator=gen), "y": i % 3}
        for i in range(n)
    ]
    filt = HardSampleFilter(n, NAMES)
    sampler = ReassemblingBatchSampler(filt, 32, warmup_epochs=1)
    loader = DataLoader(ModalityDecoupler(items, NAMES), batch_sampler=sampler, pin_memory=True)
    enc = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 3), "b": torch.nn.Linear(6, 3)}).to(dev)
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    for epoch in range(3):
        sampler.set_epoch(epoch)  # the snapshot: one transfer, outside the checked region
        batches = list(loader)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for sample, index, modality in batches:
                x = {m: sample[m].to(dev, non_blocking=True) for m in NAMES}
                y = sample["y"].to(dev, non_blocking=True)
                heads = {m: enc[m](x[m]) for m in NAMES}
                loss = remix_loss(
                    heads["a"] + heads["b"], heads, y, modality.to(dev, non_blocking=True), NAMES
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                filt.update(index, heads, modality=modality)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    filt.snapshot(3)
    assert filt.stats()["unscored"] == 0
