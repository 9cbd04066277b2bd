"""The device path's cost, counted without a GPU: ATen operations dispatched on ``meta`` tensors.

A ``meta`` tensor runs no kernel but dispatches the same operations a CUDA
tensor would, and each operation costs host time (25-40 us per op on the
H200 of DESIGN.md section 8). Held to budget: at most 12 operations per
``HardSampleFilter.update`` on the pure-torch device path for any options, and
``remix_loss`` at most 1.5 times the operations of the joint loss
``CE(fused) + sum CE(head)`` on the same tensors; ``mask_features`` runs no
operation for a modality it leaves as it is.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from remix_data import ALL, PAD, HardSampleFilter, mask_features, remix_loss
from remix_data.device import DeviceQueue

META = torch.device("meta")
NAMES = ("a", "b", "c")
B, C, N = 16, 5, 64
UPDATE_BUDGET = 12


class CountOps(TorchDispatchMode):
    """Count every ATen operation dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.append(func.__name__)
        return func(*args, **(kwargs or {}))


def _update_ops(heads: int, score: str, dtype: torch.dtype, modality: str, index: str,
                smoothing: float, balance: str, classes: int) -> list[str]:  # fmt: skip
    kind = "confidence" if score == "confidence" else "loss"
    labels = [i % 2 for i in range(N)] if balance == "class" else None
    filt = HardSampleFilter(
        N, NAMES, score=kind, smoothing=smoothing, balance=balance, labels=labels
    )
    shape = (B,) if score == "values" else (B, classes)
    outputs = {n: torch.randn(shape, device=META, dtype=dtype) for n in NAMES[:heads]}
    targets = torch.zeros(B, dtype=torch.long, device=META) if score == "loss" else None
    idx = torch.arange(B, device=META if index == "device" else "cpu")
    one = 0 if heads == 1 else ALL
    ids = {
        "int": one,
        "host tensor": torch.full((B,), one),
        "device tensor": torch.full((B,), one, device=META),
        "device 0-d": torch.tensor(one, device=META),
        "None": None,
    }[modality]
    filt.update(idx, outputs, targets, modality=ids)  # the first call also looks for probabilities
    with CountOps() as mode:
        filt.update(idx, outputs, targets, modality=ids)
    assert isinstance(filt.queue, DeviceQueue) and len(filt.queue) == 2  # queued, not written
    return mode.ops


def test_update_dispatches_at_most_12_ops_for_any_options() -> None:
    options = itertools.product(
        (1, 2, 3),  # heads in the call
        ("confidence", "loss", "values"),  # logits scored by confidence or CE, or [B] losses
        (torch.float32, torch.bfloat16),
        ("int", "host tensor", "device tensor", "device 0-d", "None"),
        ("host", "device"),  # where the indices live
        (0.0, 0.5),  # smoothing
        ("none", "class"),  # balance
        (C, 1),  # classes (1: a binary head)
    )
    counted = {option: _update_ops(*option) for option in options}
    worst = max(counted, key=lambda option: len(counted[option]))
    assert len(counted[worst]) <= UPDATE_BUDGET, (worst, counted[worst])
    # the cheapest call is a unimodal batch: one head, scored on its own
    assert min(map(len, counted.values())) <= 6
    assert all("sort" not in ops and "index_put_" not in ops for ops in counted.values())


def test_a_unimodal_batch_scores_only_its_head() -> None:
    filt = HardSampleFilter(N, NAMES)
    outputs = {n: torch.randn(B, C, device=META) for n in NAMES}
    filt.update(torch.arange(B), outputs, modality=1)
    filt.update(torch.arange(B), outputs, modality=1)
    assert filt.queue is not None
    assert [tuple(q.scores.shape) for q in filt.queue.waiting] == [(1, B), (1, B)]
    assert [q.rows.tolist() for q in filt.queue.waiting] == [[1], [1]]


def _loss_ops(count: int, modality: Any, dtype: torch.dtype) -> tuple[int, int]:
    names = NAMES[:count]
    filt = HardSampleFilter(N, names)
    fused = torch.randn(B, C, device=META, dtype=dtype, requires_grad=True)
    heads = {n: torch.randn(B, C, device=META, dtype=dtype, requires_grad=True) for n in names}
    target = torch.zeros(B, dtype=torch.long, device=META)
    with CountOps() as ours:
        loss = remix_loss(fused, heads, target, modality, filt)
    with CountOps() as joint:
        reference = F.cross_entropy(fused, target) + sum(
            F.cross_entropy(h, target) for h in heads.values()
        )
    assert loss.shape == reference.shape == () and loss.device == META
    return len(ours.ops), len(joint.ops)


def test_remix_loss_dispatches_at_most_one_and_a_half_times_the_joint_loss() -> None:
    for count, where, dtype in itertools.product(
        (2, 3), ("int", "host", "device"), (torch.float32, torch.bfloat16)
    ):
        modality = {
            "int": 0,
            "host": torch.zeros(B, dtype=torch.long),
            "device": torch.zeros(B, dtype=torch.long, device=META),
        }[where]
        ours, joint = _loss_ops(count, modality, dtype)
        assert ours <= 1.5 * joint, (count, where, dtype, ours, joint)


def test_remix_loss_after_its_first_call_dispatches_no_more_than_the_joint_loss() -> None:
    """Warm calls (the weight table made): a batch of one id (an int, or host ids all equal:
    a unimodal remix batch) takes a cached column, at least three operations fewer than the
    joint loss; per-row ids cost at most the joint loss's operations (bf16: two more, the
    view of the table's bits); device ids are gathered there in as many."""
    for count, where, dtype in itertools.product(
        (2, 3), ("int", "host one id", "host rows", "device"), (torch.float32, torch.bfloat16)
    ):
        modality = {
            "int": 1,
            "host one id": torch.ones(B, dtype=torch.long),
            "host rows": torch.arange(B) % (count + 1) - 1,
            "device": torch.arange(B, device=META) % (count + 1) - 1,
        }[where]
        _loss_ops(count, modality, dtype)  # the first call makes the table of this configuration
        ours, joint = _loss_ops(count, modality, dtype)
        if where in ("int", "host one id"):
            assert ours <= joint - 3, (count, where, dtype, ours, joint)
        else:
            extra = 2 if where == "host rows" and dtype == torch.bfloat16 else 0
            assert ours <= joint + extra, (count, where, dtype, ours, joint)


VIEWS = {"select", "view", "detach", "expand", "slice", "unsqueeze"}


def _mask_ops(modality: Any, count: int) -> list[str]:
    feats = {n: torch.randn(B, 4, device=META, requires_grad=True) for n in NAMES[:count]}
    mask_features(feats, modality, NAMES[:count])  # the keep table of this configuration
    with CountOps() as counted:
        mask_features(feats, modality, NAMES[:count])
    return [op.split(".")[0] for op in counted.ops]


def test_mask_features_runs_nothing_where_one_host_id_masks_nothing() -> None:
    """A batch with one id known on the host (an int, or host ids all equal: what the loader
    yields): the active modality's features pass as they are, each masked one takes one
    multiplication; ``ALL`` takes none. Device ids: one gather, one multiplication each."""
    for count in (2, 3):
        for one in (0, ALL, PAD):
            for modality in (one, torch.full((B,), one)):
                kernels = [op for op in _mask_ops(modality, count) if op not in VIEWS]
                masked = 0 if one == ALL else count if one == PAD else count - 1
                assert kernels == ["mul"] * masked, (count, one, kernels)
        device_ids = torch.zeros(B, dtype=torch.long, device=META)
        kernels = [op for op in _mask_ops(device_ids, count) if op not in VIEWS]
        assert kernels == ["index"] + ["mul"] * count, (count, kernels)
