"""The device path of HardSampleFilter.update: no host transfer, same table as the host path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from remix_data import ALL, HardSampleFilter
from remix_data.device import DeviceQueue
from remix_data.vocabulary import PAD

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


@given(
    calls=st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(0, 5), st.sampled_from([PAD, ALL, 0, 1])), max_size=8),
            st.sampled_from(["host", "device", "one"]),  # where the ids are, or one id
            st.sampled_from([None, 0, 3]),  # a row whose score is NaN or inf, if any
        ),
        min_size=1,
        max_size=5,
    ),
    logits=st.booleans(),
    limit=st.sampled_from([1, 7, 1 << 20]),  # copies per call, every few calls, at the end
)
def test_the_device_path_writes_what_the_host_path_writes(
    calls: list[Any], logits: bool, limit: int
) -> None:
    """Scores computed on the device and written by the host later give the host path's table,
    with PAD rows, ALL rows, repeated indices, non-finite scores and any transfer schedule."""
    kwargs: dict[str, Any] = {"smoothing": 0.25, "nonfinite": "ignore"}
    host = HardSampleFilter(6, NAMES, score="confidence" if logits else "loss", **kwargs)
    device = HardSampleFilter(6, NAMES, score=host.score, **kwargs)
    device.queue = DeviceQueue(torch.device("cpu"), limit=limit)
    gen = torch.Generator().manual_seed(len(calls))
    for rows, where, bad in calls:
        index = torch.tensor([i for i, _ in rows], dtype=torch.long)
        ids = torch.tensor([m for _, m in rows], dtype=torch.long)
        b = len(rows)
        outputs = {m: torch.randn(b, 3, generator=gen) if logits else torch.randn(b, generator=gen)
                   for m in NAMES}  # fmt: skip
        if bad is not None and bad < b:
            outputs["a"][bad] = float("inf") if bad else float("nan")
        one = int(ids[0]) if where == "one" and b else None
        host.update(index.numpy(), outputs, modality=ids.numpy() if one is None else one)
        # "device": index and ids on the (stand-in) device, checked when they reach the host
        given = ids if one is None else one
        device.update(index if where == "device" else index.tolist(), outputs, modality=given)
    assert len(device.queue) <= len(calls)
    host.snapshot(0)
    device.snapshot(0)
    for key in ("values", "fresh", "scored", "snapshot"):
        a, b = host.state_dict()[key], device.state_dict()[key]
        assert torch.allclose(a.double(), b.double(), equal_nan=True, atol=1e-6), key
    ours, theirs = host.stats(), device.stats()  # numpy and torch scores differ in the last bits
    for name in NAMES:
        assert ours["mean_score"][name] == pytest.approx(theirs["mean_score"][name], abs=1e-6)
    assert {**ours, "mean_score": None} == {**theirs, "mean_score": None}
    assert len(device.queue) == 0


@pytest.mark.parametrize("score", ["confidence", "loss"])
def test_an_update_without_outputs_on_the_device_path_writes_nothing(score: str) -> None:
    """The bug of the old device table: ``update(idx, {})`` raised once the table had moved."""
    filt = HardSampleFilter(4, NAMES, score=score)
    filt.queue = DeviceQueue(torch.device("cpu"))
    filt.update([0], {})
    filt.update(torch.tensor([1, 2]), {}, modality=torch.tensor([0, 1]))
    assert len(filt.queue) == 0 and filt.stats()["unscored"] == 4
    filt.update([3], {"a": torch.ones(1, 2) if score == "confidence" else torch.ones(1)})
    assert len(filt.queue) == 1 and filt.stats()["unscored"] == 3 and len(filt.queue) == 0


def test_reading_the_table_writes_the_queued_scores_first_and_keeps_the_queue_device() -> None:
    filt = HardSampleFilter(4, NAMES, score="loss")
    filt.queue = queue = DeviceQueue(torch.device("cpu"))
    filt.update(torch.tensor([0, 1]), {"a": torch.tensor([1.0, 2.0])}, modality=0)
    assert len(queue) == 1  # nothing written yet
    assert filt.state_dict()["values"][0, :2].tolist() == [1.0, 2.0] and len(queue) == 0
    filt.update(torch.tensor([2]), {"b": torch.tensor([3.0])}, modality=1)
    assert filt.assignment().tolist()[2] == 1 and filt.queue is queue  # the queue stays
    filt.update([3], {"a": torch.tensor([4.0])})  # a host update keeps the order of queued ones
    assert filt.stats()["unscored"] == 0


def test_probabilities_on_the_device_path_are_reported_at_the_snapshot() -> None:
    filt = HardSampleFilter(8, NAMES)
    filt.queue = DeviceQueue(torch.device("cpu"))
    probs = torch.softmax(torch.randn(8, 3), dim=1)
    filt.update(torch.arange(8), {"a": probs}, modality=0)  # the first device call is checked
    with pytest.raises(ValueError, match=r"probabilities instead of logits in outputs\['a'\]"):
        filt.snapshot(0)
    host = HardSampleFilter(8, NAMES)
    with pytest.raises(ValueError, match=r"outputs\['a'\] holds probabilities"):
        host.update(torch.arange(8), {"a": probs}, modality=0)  # the host path refuses at once
    assert host.stats()["unscored"] == 8


def test_queued_calls_keep_the_indices_and_ids_they_were_given() -> None:
    """A loop may reuse its index and id buffers: a queued call holds copies of them."""
    filt = HardSampleFilter(4, NAMES, score="loss")
    filt.queue = DeviceQueue(torch.device("cpu"))
    index, ids = np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1])
    filt.update(index, {"a": torch.arange(4.0), "b": torch.arange(4.0)}, modality=ids)
    index[:] = [3, 2, 1, 0]
    ids[:] = 1
    assert len(filt.queue) == 1
    assert values(filt) == [[0.0, 1.0, -7.0, -7.0], [-7.0, -7.0, 2.0, 3.0]]


def values(filt: HardSampleFilter) -> list[list[float]]:
    return filt.state_dict()["values"].nan_to_num(-7.0).tolist()
