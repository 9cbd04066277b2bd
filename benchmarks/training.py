"""Training-step throughput, plain against remix, for ``benchmarks/gpu.py`` and the
``train`` level of ``benchmarks/throughput.py``.

Both sides train the same model on the same dataset with the same ``DataLoader``
keyword arguments and the same step (:func:`benchmarks.methods.train_step`,
i.e. :func:`remix_data.remix_loss`), under bf16 autocast when ``amp`` is on:

- plain: ``BatchSampler(RandomSampler)`` over the dataset, the joint step
  (every row ``ALL``: ``CE(fused) + 0.5 * CE(each head)``);
- remix: a :class:`~remix_data.ModalityDecoupler` over the same dataset, a
  :class:`~remix_data.ReassemblingBatchSampler` (``set_epoch`` each epoch: the
  filter's snapshot), the unimodal step of ``method`` and
  ``filter.update(index, heads, modality=modality)`` after every step (online
  scoring), which is what a user's loop runs.

One run of a side is one epoch; runs alternate (:func:`benchmarks._common.compare`)
and each ends with ``torch.cuda.synchronize()`` on a GPU. Each part of every step is
timed on the host (:func:`timed_epoch`): the wait for data, the step, ``update``, and
per epoch ``set_epoch`` and the final wait for the device. Host synchronisations
per step are counted in one extra epoch per side under
``torch.cuda.set_sync_debug_mode("warn")`` (each synchronising CUDA call warns
once; ``None`` off the GPU).

Models: :class:`TinyNet` (two MLP encoders, where per-step overheads show) and
:class:`AVResNet` (two ResNet-18-style encoders, spectrogram and frame).

Example:
    >>> net = AVResNet(base=4)
    >>> x = {"audio": torch.zeros(2, 1, 32, 32), "video": torch.zeros(2, 3, 32, 32)}
    >>> fused, heads = net(x)
    >>> fused.shape, net.feature_dim
    (torch.Size([2, 10]), 32)
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from benchmarks._common import NAMES, compare, spin
from benchmarks.methods import method_config, train_step
from benchmarks.models import LateFusionNet
from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    RemixCollate,
)

__all__ = [
    "AVResNet",
    "SyntheticAV",
    "TinyNet",
    "StepTimes",
    "compare_training",
    "count_syncs",
    "resnet18_encoder",
    "timed_epoch",
]


class TinyNet(LateFusionNet):
    """Two MLP encoders: audio ``[40]`` features and a ``video_shape`` frame."""

    def __init__(
        self, classes: int = 10, width: int = 256, video_shape: tuple[int, ...] = (3, 16, 16)
    ) -> None:
        pixels = 1
        for d in video_shape:
            pixels *= d
        encoders = {
            "audio": nn.Sequential(nn.Linear(40, width), nn.ReLU(), nn.Linear(width, width)),
            "video": nn.Sequential(
                nn.Flatten(), nn.Linear(pixels, width), nn.ReLU(), nn.Linear(width, width)
            ),
        }
        super().__init__(encoders, width, classes)


class _Block(nn.Module):
    """ResNet basic block: two 3x3 convolutions with BatchNorm, identity or 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )  # fmt: skip
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.relu(self.body(x) + self.short(x))
        return out


def resnet18_encoder(in_channels: int, base: int = 64) -> nn.Sequential:
    """ResNet-18 layout (stem, 4 stages of 2 basic blocks): ``[B, C, H, W] -> [B, 8 * base]``."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]  # fmt: skip
    cin = base
    for i, cout in enumerate((base, 2 * base, 4 * base, 8 * base)):
        layers += [_Block(cin, cout, 1 if i == 0 else 2), _Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class AVResNet(LateFusionNet):
    """Two ResNet-18-style encoders: a 1-channel spectrogram and a 3-channel frame."""

    def __init__(self, classes: int = 10, base: int = 64) -> None:
        encoders = {"audio": resnet18_encoder(1, base), "video": resnet18_encoder(3, base)}
        super().__init__(encoders, 8 * base, classes)


class SyntheticAV(Dataset[dict[str, Any]]):
    """In-memory audio/video samples with a decode-like cost per item.

    ``n`` samples cycle through a pool of ``pool`` distinct ones: a float16
    spectrogram ``audio_shape`` and a uint8 frame ``video_shape``, returned as
    float32 (the frame scaled to [0, 1]: the conversion a decoder's output
    needs); ``decode_us`` adds a busy-wait per item.
    """

    def __init__(
        self,
        n: int,
        audio_shape: tuple[int, ...],
        video_shape: tuple[int, ...],
        *,
        classes: int = 10,
        pool: int = 256,
        decode_us: float = 0.0,
        seed: int = 0,
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.n, self.pool = n, min(pool, n)
        self.audio = torch.randn(self.pool, *audio_shape, generator=gen).half()
        self.video = torch.randint(0, 256, (self.pool, *video_shape), generator=gen).to(torch.uint8)
        self.labels = torch.randint(classes, (n,), generator=gen).tolist()
        self.decode_s = decode_us * 1e-6

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.decode_s:
            spin(self.decode_s)
        j = i % self.pool
        return {
            "audio": self.audio[j].float(),
            "video": self.video[j].float().div_(255.0),
            "label": self.labels[i],
        }


class StepTimes:
    """Host seconds of every step, split into the wait for data, the step and ``update``,
    and of each epoch's work outside its steps: ``set_epoch`` and the wait for the device
    at its end (``torch.cuda.synchronize``: what the host finished ahead of the GPU)."""

    def __init__(self) -> None:
        self.wait = self.step = self.update = 0.0
        self.set_epoch = self.drain = 0.0
        self.steps = self.epochs = 0
        self.sizes: set[int] = set()  # distinct batch sizes (each new one autotunes cuDNN)

    def set_epoch_of(self, sampler: Any, epoch: int) -> None:
        """``sampler.set_epoch(epoch)``, its host time counted."""
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        self.set_epoch += time.perf_counter() - start

    def end_epoch(self, device: torch.device) -> None:
        """Count one epoch, its final wait for ``device`` included (none off CUDA)."""
        start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.drain += time.perf_counter() - start
        self.epochs += 1

    def per_step_ms(self) -> dict[str, float | None]:
        n, e = max(self.steps, 1), max(self.epochs, 1)
        return {
            "data_ms": 1e3 * self.wait / n,
            "step_ms": 1e3 * self.step / n,
            "update_ms": 1e3 * self.update / n if self.update else None,
            "batch_sizes": len(self.sizes),
            "steps_per_epoch": self.steps / e,
            "set_epoch_ms_per_epoch": 1e3 * self.set_epoch / e,
            "device_wait_ms_per_epoch": 1e3 * self.drain / e,
        }


def timed_epoch(
    batches: Any,
    step: Callable[[Any], tuple[Any, int]],
    update: Callable[[Any, Any], None] | None,
    times: StepTimes,
) -> None:
    """One epoch of ``step`` (and ``update``) over ``batches``, each part timed into ``times``.

    ``step(batch)`` returns ``(outputs, batch size)``; ``update(batch, outputs)`` runs after it.
    """
    it = iter(batches)
    while True:
        start = time.perf_counter()
        batch = next(it, None)
        got = time.perf_counter()
        if batch is None:
            break
        out, size = step(batch)
        stepped = time.perf_counter()
        if update is not None:
            update(batch, out)
            times.update += time.perf_counter() - stepped
        times.wait += got - start
        times.step += stepped - got
        times.steps += 1
        times.sizes.add(size)


def count_syncs(epoch: Callable[[], int], device: torch.device) -> dict[str, Any]:
    """Run one epoch under the CUDA sync debug mode; synchronising calls per step."""
    if device.type != "cuda":
        return {"syncs_per_step": None, "syncs": None, "steps": None}
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            steps = epoch()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize(device)
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    return {"syncs_per_step": syncs / max(steps, 1), "syncs": syncs, "steps": steps}


def compare_training(
    level: str,
    model: nn.Module,
    dataset: Dataset[Any],
    *,
    method: str,
    mask: str,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    amp: bool,
    reps: int,
    warmup: int,
    seed: int = 0,
    goal: float | None = 0.99,
    level_seconds: float | None = None,
) -> dict[str, Any]:
    """Samples/s of a plain and a remix training epoch, alternated (module docstring).

    Args:
        method: the remix side's method (:data:`benchmarks.methods.METHODS`),
            e.g. ``"remix-online"`` (both encoders run, masked input) or
            ``"remix-skip"`` (the masked encoder is not run; with ``mask="drop"``
            its input is not even collated).
        mask: the decoupler's ``mask``.
        level_seconds: lower ``reps`` (to at least 2) so that the timed runs take
            about this long, judged from the warm-up runs.

    Returns:
        :func:`~benchmarks._common.compare`'s row, plus ``method``, ``mask``,
        ``num_workers``, ``device``, ``amp``, ``batch_size``, ``params``,
        ``reps`` (the timed runs per side), ``host_ms`` (per side, the timed epochs'
        :meth:`StepTimes.per_step_ms`: host ms per step waiting for data, stepping and in
        ``update``; per epoch in ``set_epoch`` and waiting for the device) and ``syncs``
        (per side: ``syncs_per_step``, ``syncs``, ``steps``).
    """
    cuda = device.type == "cuda"
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    kwargs: dict[str, Any] = {
        "num_workers": num_workers, "persistent_workers": num_workers > 0, "pin_memory": cuda,
    }  # fmt: skip
    n = len(dataset)  # type: ignore[arg-type]
    plain = DataLoader(
        dataset, batch_sampler=BatchSampler(RandomSampler(dataset), batch_size, False), **kwargs
    )
    filt = HardSampleFilter(n, NAMES)
    sampler = ReassemblingBatchSampler(filt, batch_size, warmup_epochs=0, seed=seed)
    remix = DataLoader(
        ModalityDecoupler(dataset, NAMES, mask=mask),
        batch_sampler=sampler,
        collate_fn=RemixCollate(),
        **kwargs,
    )
    joint_cfg, remix_cfg = method_config("joint", NAMES), method_config(method, NAMES)
    all_rows: dict[int, torch.Tensor] = {}  # the joint side's modality ids, pinned once

    def step(sample: Mapping[str, Any], modality: torch.Tensor, cfg: Any) -> Any:
        batch = {k: v.to(device, non_blocking=True) for k, v in sample.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, logits = train_step(model, cfg, batch, modality)  # type: ignore[arg-type]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return logits

    def plain_step(sample: Mapping[str, Any]) -> tuple[None, int]:
        b = len(sample["label"])
        if b not in all_rows:
            ids = torch.full((b,), ALL)
            all_rows[b] = ids.pin_memory() if cuda else ids
        step(sample, all_rows[b], joint_cfg)
        return None, b

    def remix_step(batch: Any) -> tuple[Any, int]:
        sample, index, modality = batch
        return step(sample, modality, remix_cfg), len(index)

    def update(batch: Any, logits: Any) -> None:
        filt.update(batch[1], logits, modality=batch[2])

    epochs = itertools.count()

    def plain_epoch(times: StepTimes) -> None:
        timed_epoch(plain, plain_step, None, times)

    def remix_epoch(times: StepTimes) -> None:
        times.set_epoch_of(sampler, next(epochs))  # snapshot of the filter's scores
        timed_epoch(remix, remix_step, update, times)

    times = {side: StepTimes() for side in ("plain", "remix")}

    def timed(side: str, epoch: Callable[[StepTimes], None]) -> Callable[[], None]:
        def run() -> None:
            epoch(times[side])
            times[side].end_epoch(device)

        return run

    def counted(epoch: Callable[[StepTimes], None]) -> Callable[[], int]:
        def run() -> int:  # one more epoch, its steps counted apart
            spent = StepTimes()
            epoch(spent)
            return spent.steps

        return run

    run_plain, run_remix = timed("plain", plain_epoch), timed("remix", remix_epoch)
    start = time.perf_counter()
    for _ in range(warmup):
        run_plain()
        run_remix()
    if level_seconds is not None and warmup:
        per_pair = (time.perf_counter() - start) / warmup
        reps = max(2, min(reps, int(level_seconds / max(per_pair, 1e-9))))
    times = {side: StepTimes() for side in times}  # count the timed epochs only
    model.train()
    row = compare(
        level, run_plain, run_remix, work=n, unit="samples/s", goal=goal, reps=reps, warmup=0,
        method=method, mask=mask, num_workers=num_workers, amp=amp, batch_size=batch_size,
        device=str(device) + (f" ({torch.cuda.get_device_name(device)})" if cuda else ""),
        params=sum(p.numel() for p in model.parameters()),
    )  # fmt: skip
    row["host_ms"] = {side: spent.per_step_ms() for side, spent in times.items()}
    row["reps"] = reps
    row["syncs"] = {
        "plain": count_syncs(counted(plain_epoch), device),
        "remix": count_syncs(counted(remix_epoch), device),
    }
    return row
