"""Checks of the Triton kernel under ``TRITON_INTERPRET=1`` (run by ``tests/test_kernels.py``).

Prints one JSON line: the kernel's scores against the torch ops and the host's
numpy for every score kind, dtype and odd row; its copies of device-resident
indices and ids; and a filter whose device path uses the kernel against a
filter on the host path.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from typing import Any

import torch

from remix_data import HardSampleFilter
from remix_data.device import DeviceQueue
from remix_data.kernels import score_triton
from remix_data.scores import confidence, cross_entropy, score_torch
from remix_data.vocabulary import ALL, PAD


def _odd_logits(batch: int, classes: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(batch, classes, generator=gen) * 4
    x[0, 0] = math.nan
    x[1, -1] = math.inf
    if classes > 1:
        x[2, :] = -math.inf
        x[3, 0] = -math.inf
    x[4] = 80.0  # large logits
    return x


def _scores() -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for score, dtype, classes, heads in itertools.product(
        ("confidence", "loss"), (torch.float32, torch.bfloat16), (1, 2, 3, 10), (1, 2)
    ):
        outputs = [_odd_logits(37, classes, gen).to(dtype) for _ in range(heads)]
        targets = torch.randint(max(classes, 2), (37,), generator=gen)
        kernel, _, _ = score_triton(outputs, targets if score == "loss" else None, score)
        torch_ops = score_torch(outputs, targets, score)
        host = torch.stack(
            [confidence(o) if score == "confidence" else _host_loss(o, targets) for o in outputs]
        )
        for name, reference in (("torch", torch_ops), ("host", host)):
            finite = reference.isfinite() & kernel.isfinite()
            error = (kernel[finite] - reference[finite]).abs().max().item()
            out.append(
                {
                    "score": score, "dtype": str(dtype).split(".")[-1], "classes": classes,
                    "heads": heads, "against": name, "max_error": error,
                    "same_nan": bool(torch.equal(kernel.isfinite(), reference.isfinite())),
                }
            )  # fmt: skip
    return out


def _host_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits.float(), targets)


def _copies() -> dict[str, bool]:
    index = torch.randperm(50)[:20]
    ids = torch.randint(-2, 3, (20,))
    _, got_index, got_ids = score_triton([torch.randn(20, 4)], None, "confidence", index, ids)
    assert got_index is not None and got_ids is not None
    return {
        "index": bool(torch.equal(got_index, index)),
        "ids": bool(torch.equal(got_ids, ids)),
        "distinct": got_index.data_ptr() != index.data_ptr(),
    }


def _tables() -> dict[str, bool]:
    gen = torch.Generator().manual_seed(1)
    same = {}
    for score, smoothing, where in itertools.product(
        ("confidence", "loss"), (0.0, 0.5), ("host ids", "device ids")
    ):
        kwargs: dict[str, Any] = {"score": score, "smoothing": smoothing, "nonfinite": "ignore"}
        host = HardSampleFilter(12, ("a", "b"), **kwargs)
        device = HardSampleFilter(12, ("a", "b"), **kwargs)
        device.queue = DeviceQueue(torch.device("cpu"), scorer="triton", limit=40)
        for _ in range(6):
            index = torch.randint(0, 12, (9,), generator=gen)  # repeats likely
            ids = torch.tensor([PAD, ALL, 0, 1, 0, 1, ALL, 0, 1])[torch.randperm(9, generator=gen)]
            heads = {m: torch.randn(9, 3, generator=gen) for m in ("a", "b")}
            heads["a"][0, 1] = math.nan
            targets = torch.randint(0, 3, (9,), generator=gen)
            host.update(index, heads, targets, modality=ids)
            given = (index, ids) if where == "device ids" else (index.tolist(), ids.numpy())
            device.update(given[0], heads, targets, modality=given[1])
        host.snapshot(0)
        device.snapshot(0)
        a, b = host.state_dict(), device.state_dict()
        same[f"{score} smoothing={smoothing} {where}"] = (
            torch.allclose(a["values"], b["values"], equal_nan=True, atol=1e-5)
            and torch.equal(a["fresh"], b["fresh"])
            and torch.equal(a["snapshot"], b["snapshot"])
            and (a["ignored"], a["duplicates"]) == (b["ignored"], b["duplicates"])
        )
    return same


if __name__ == "__main__":
    assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
    print(json.dumps({"scores": _scores(), "copies": _copies(), "tables": _tables()}))
