"""The quick-start loop against a plain loop, step by step, for ``benchmarks/gpu.py``.

Plain: ``DataLoader(dataset, shuffle=True)`` and the joint loss
``CE(fused) + sum CE(head)``, what a user has before remixing. Remix: the
quick start as printed: ``build(RECOMMENDED, ...)``, ``sampler.set_epoch`` every
epoch, ``remix_loss(fused, heads, label, modality, filt)`` and
``filt.update(index, heads, modality=modality)`` every step. Same model, same
dataset, same ``DataLoader`` keyword arguments (``pin_memory`` on a GPU), bf16
autocast on a GPU; both sides train one model with one Adam optimiser (compiled
once; a step costs the same whatever the weights). Each side reports its samples
per second over whole epochs (the device synchronised at the end) and its host
milliseconds per step split into the wait for data, the step (forward, loss,
backward, optimiser) and ``update``; nothing in the loop waits for the device.
Per epoch it also reports the milliseconds of ``set_epoch`` and of the final
wait for the device (large where the GPU, not the host, sets the pace).

:func:`compare_loop` with ``compiled=True`` runs the same with the model
wrapped in ``torch.compile`` on both sides and the masking set to zeros (one
input structure: the compiled graph is not rebuilt per masked modality).

Example:
    >>> net = QuickNet(conv=False, width=8)
    >>> x = {"audio": torch.zeros(2, 40), "label": torch.zeros(2, dtype=torch.long)}
    >>> fused, heads = net(x)     # video absent (masked by mask="drop"): zero features
    >>> fused.shape, sorted(heads)
    (torch.Size([2, 10]), ['audio', 'video'])
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks._common import NAMES, compare
from benchmarks.training import StepTimes, count_syncs, resnet18_encoder, timed_epoch
from remix_data import (
    remix_loss,
)
from remix_data.presets import RECOMMENDED, build

__all__ = ["QuickNet", "compare_loop"]


class QuickNet(nn.Module):
    """The quick start's model: an encoder and a head per modality, a fused head.

    A modality absent from the batch (``mask="drop"``) gets zero features, as in
    the README. ``conv=True``: ResNet-18-style encoders on a spectrogram
    ``[1, H, W]`` and a frame ``[3, H, W]``; else MLPs on 40 audio features and a
    ``3x16x16`` frame.
    """

    def __init__(self, *, conv: bool, width: int, classes: int = 10) -> None:
        super().__init__()
        if conv:
            self.dim = 8 * width
            enc = {"audio": resnet18_encoder(1, width), "video": resnet18_encoder(3, width)}
        else:
            self.dim = width
            enc = {
                "audio": nn.Sequential(nn.Linear(40, width), nn.ReLU(), nn.Linear(width, width)),
                "video": nn.Sequential(
                    nn.Flatten(), nn.Linear(768, width), nn.ReLU(), nn.Linear(width, width)
                ),
            }
        self.enc = nn.ModuleDict(enc)
        self.heads = nn.ModuleDict({m: nn.Linear(self.dim, classes) for m in self.enc})
        self.fused = nn.Linear(2 * self.dim, classes)

    def forward(
        self, x: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        label = x["label"]
        zeros = torch.zeros(len(label), self.dim, device=label.device)
        f = {m: enc(x[m]).relu() if m in x else zeros for m, enc in self.enc.items()}
        return self.fused(torch.cat(list(f.values()), 1)), {m: self.heads[m](f[m]) for m in f}


def _on(device: torch.device, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _parts(
    dataset: Any, labels: list[int], batch: int, compiled: bool, seed: int, epochs: int
) -> Any:
    """The quick start's filter, sampler and data (masked with zeros under ``compiled``),
    built for the ``epochs`` this level runs at most (two untimed, then the timed ones)."""
    return build(
        RECOMMENDED, dataset, modalities=NAMES, batch_size=batch, epochs=epochs, labels=labels,
        seed=seed, masking="zeros" if compiled else None,
    )  # fmt: skip


def compare_loop(
    level: str,
    model: nn.Module,
    dataset: Dataset[Any],
    labels: list[int],
    *,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    amp: bool,
    reps: int,
    compiled: bool = False,
    seed: int = 0,
    level_seconds: float | None = None,
) -> dict[str, Any]:
    """Samples/s and host ms per step of the plain loop and the quick start (module docstring)."""
    cuda = device.type == "cuda"
    kwargs: dict[str, Any] = {
        "num_workers": num_workers, "persistent_workers": num_workers > 0, "pin_memory": cuda,
    }  # fmt: skip
    parts = _parts(dataset, labels, batch_size, compiled, seed, epochs=2 + max(reps, 2))
    filt = parts.filter
    plain = DataLoader(dataset, batch_size=batch_size, shuffle=True, **kwargs)
    remix = parts.loader(**kwargs)
    # one model and optimiser for both sides (compiled once): a step costs the same whatever
    # the weights are
    net = _copy(model, device, compiled)
    optim = torch.optim.Adam(net.parameters(), lr=1e-4)
    times = {side: StepTimes() for side in ("plain", "remix")}

    def train(side: str, loss_of: Callable[..., torch.Tensor]) -> Callable[[Any], Any]:
        def step(batch: Any) -> Any:
            sample, rest = (batch, ()) if side == "plain" else (batch[0], batch[1:])
            x = _on(device, sample)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                fused, heads = net(x)
                loss = loss_of(fused, heads, x["label"], *rest)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            return heads, len(x["label"])

        return step

    def joint(fused: Any, heads: Any, label: Any) -> torch.Tensor:
        return F.cross_entropy(fused, label) + sum(
            F.cross_entropy(h, label) for h in heads.values()
        )

    def remixed(fused: Any, heads: Any, label: Any, index: Any, modality: Any) -> torch.Tensor:
        return remix_loss(fused, heads, label, modality, filt)

    def update(batch: Any, heads: Any) -> None:
        filt.update(batch[1], heads, modality=batch[2])

    epochs = itertools.count()
    plain_step, remix_step = train("plain", joint), train("remix", remixed)

    def run_plain() -> None:
        timed_epoch(plain, plain_step, None, times["plain"])
        times["plain"].end_epoch(device)

    def run_remix() -> None:
        times["remix"].set_epoch_of(parts.sampler, next(epochs))
        timed_epoch(remix, remix_step, update, times["remix"])
        times["remix"].end_epoch(device)

    start = time.perf_counter()
    for _ in range(2):  # warm-up epochs: compilation, cuDNN autotuning, the joint epoch
        run_plain()
        run_remix()
    if level_seconds is not None:
        per_pair = (time.perf_counter() - start) / 2
        reps = max(2, min(reps, int(level_seconds / max(per_pair, 1e-9))))
    times = {side: StepTimes() for side in times}  # count the timed epochs only
    row = compare(
        level, run_plain, run_remix, work=len(labels), unit="samples/s", goal=0.99, reps=reps,
        warmup=0, method="quickstart (RECOMMENDED)", num_workers=num_workers, amp=amp,
        batch_size=batch_size, compiled=compiled, device=str(device),
        params=sum(p.numel() for p in model.parameters()),
    )  # fmt: skip
    row["reps"] = reps
    row["host_ms"] = {side: t.per_step_ms() for side, t in times.items()}

    def counted_epoch() -> int:
        parts.sampler.set_epoch(next(epochs))
        counted = StepTimes()
        timed_epoch(remix, remix_step, update, counted)
        return counted.steps

    row["syncs"] = {"remix": count_syncs(counted_epoch, device)}
    return row


def _copy(model: nn.Module, device: torch.device, compiled: bool) -> Any:
    """The model for one side: a copy on ``device``, compiled (``eager`` off the GPU) if asked."""
    twin = copy.deepcopy(model).to(device)
    if not compiled:
        return twin
    return torch.compile(twin, backend="inductor" if device.type == "cuda" else "eager")
