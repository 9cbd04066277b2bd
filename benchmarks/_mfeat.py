"""mfeat counterpart of the HAPT job: two digit views, one small MLP per view.

The strong view ``fac`` (216 profile correlations) and the weak view ``mor``
(6 morphological features) of UCI mfeat (:func:`remix_data.datasets.load_mfeat`),
a fixed stratified 60/20/20 train / validation / test split, and per view an
MLP encoder (``Linear -> BatchNorm1d -> ReLU``, twice) with its own linear
head, plus a fused linear head on the concatenated features. The methods are
the HAPT presets (:data:`benchmarks.hapt.METHODS`), trained by the same
row-wise step (:func:`benchmarks.hapt._step`), with the weak view playing the
gyroscope and the strong one the accelerometer. :class:`MfeatJob` has the
interface of :class:`benchmarks.hapt.Job` (one epoch per ``train_epoch``);
a batch of a single row (a subset's tail) is skipped, since BatchNorm1d cannot
train on one row.

Example:
    >>> net = MfeatNet({"mor": 6, "fac": 216}, num_classes=10, width=8)
    >>> fused, heads = net({"mor": torch.zeros(4, 6), "fac": torch.zeros(4, 216)})
    >>> fused.shape, heads["mor"].shape
    (torch.Size([4, 10]), torch.Size([4, 10]))
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from benchmarks.hapt import _step, make_loader, method_config
from remix_data import ModalityDecoupler, scoring_pass
from remix_data.datasets import (
    MFEAT_NUM_CLASSES,
    MFEAT_STRONG_VIEW,
    MFEAT_WEAK_VIEW,
    MfeatData,
    load_mfeat,
    stratified_split,
)

__all__ = ["MfeatJob", "MfeatNet", "MfeatSplits", "ViewSet", "evaluate_views", "prepare_mfeat"]


class MfeatNet(nn.Module):
    """One MLP encoder and linear head per view; a fused linear head on all features."""

    def __init__(self, dims: Mapping[str, int], num_classes: int, *, width: int = 32) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.feature_dim = width

        def encoder(d: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(d, 2 * width), nn.BatchNorm1d(2 * width), nn.ReLU(),
                nn.Linear(2 * width, width), nn.BatchNorm1d(width), nn.ReLU(),
            )  # fmt: skip

        self.encoders = nn.ModuleDict({m: encoder(d) for m, d in dims.items()})
        self.heads = nn.ModuleDict({m: nn.Linear(width, num_classes) for m in dims})
        self.fused = nn.Linear(width * len(self.modalities), num_classes)

    def fuse(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out: torch.Tensor = self.fused(torch.cat([feats[m] for m in self.modalities], dim=1))
        return out

    def forward(
        self, inputs: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = {m: self.encoders[m](inputs[m]) for m in self.modalities}
        return self.fuse(feats), {m: self.heads[m](feats[m]) for m in self.modalities}


class ViewSet(Dataset[dict[str, torch.Tensor]]):
    """Rows of the chosen views as tensors; a sample is ``{view: x, "label": y}``."""

    def __init__(self, views: Mapping[str, torch.Tensor], label: torch.Tensor) -> None:
        self.views, self.label = dict(views), label

    @classmethod
    def from_mfeat(cls, data: MfeatData, idx: np.ndarray) -> ViewSet:
        views = {m: torch.from_numpy(np.ascontiguousarray(x[idx])) for m, x in data.views.items()}
        return cls(views, torch.from_numpy(data.label[idx].astype(np.int64)))

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{m: x[i] for m, x in self.views.items()}, "label": self.label[i]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        return [self[i] for i in indices]


@dataclass
class MfeatSplits:
    """Standardised train / validation / test rows (statistics of the train rows)."""

    train: ViewSet
    val: ViewSet
    test: ViewSet
    info: dict[str, Any] = field(default_factory=dict)


def prepare_mfeat(
    data: MfeatData | None = None,
    *,
    strong: str = MFEAT_STRONG_VIEW,
    weak: str = MFEAT_WEAK_VIEW,
    split_seed: int = 0,
    quick: bool = False,
) -> MfeatSplits:
    """Stratified 60/20/20 split: 20 % test, then a quarter of the rest for validation.

    ``quick`` keeps a fixed random quarter of every split (smoke runs).
    """
    data = load_mfeat((strong, weak)) if data is None else data
    label = np.asarray(data.label)
    rest, test_idx = stratified_split(label, test_fraction=0.2, seed=split_seed)
    tr, va = stratified_split(label[rest], test_fraction=0.25, seed=split_seed)
    train_idx, val_idx = rest[tr], rest[va]
    if quick:
        rng = np.random.default_rng(0)
        train_idx, val_idx, test_idx = (
            np.sort(rng.permutation(i)[: max(1, i.size // 4)])
            for i in (train_idx, val_idx, test_idx)
        )
    normed = data.normalize(train_idx)
    splits = MfeatSplits(
        ViewSet.from_mfeat(normed, train_idx),
        ViewSet.from_mfeat(normed, val_idx),
        ViewSet.from_mfeat(normed, test_idx),
    )
    splits.info = {
        "strong": strong, "weak": weak, "split_seed": split_seed, "split": "60/20/20 stratified",
        "n_train": int(train_idx.size), "n_val": int(val_idx.size), "n_test": int(test_idx.size),
        "dims": {m: int(x.shape[1]) for m, x in data.views.items()}, "quick": quick,
    }  # fmt: skip
    return splits


def evaluate_views(model: MfeatNet, data: ViewSet) -> dict[str, float]:
    """Accuracy of the fused head and of each view's head (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        fused, heads = model(data.views)
    model.train(was_training)
    out = {"fused": float((fused.argmax(1) == data.label).float().mean())}
    out.update({m: float((h.argmax(1) == data.label).float().mean()) for m, h in heads.items()})
    return out


class MfeatJob:
    """One method, one seed on mfeat; the interface of :class:`benchmarks.hapt.Job`.

    Options as there: ``epochs`` (30), ``warmup`` (5), ``batch_size`` (64), Adam
    ``lr`` (1e-3) and ``weight_decay`` (1e-4), ``decay_epoch`` (``epochs // 2``,
    lr x0.1), ``width`` (32 features per view), ``log``.
    """

    def __init__(
        self,
        method: str | Mapping[str, Any],
        seed: int,
        data: MfeatSplits,
        *,
        epochs: int = 30,
        warmup: int = 5,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        decay_epoch: int | None = None,
        width: int = 32,
        log: Any = None,
    ) -> None:
        cfg = method_config(method)
        weak, strong = data.info["weak"], data.info["strong"]
        cfg["modalities"] = (weak, strong)  # weak first, as gyro in the HAPT presets
        self.cfg, self.seed, self.data, self.epochs, self.log = cfg, seed, data, epochs, log
        self.names: tuple[str, ...] = cfg["modalities"]
        torch.manual_seed(seed)
        dims = {m: int(data.train.views[m].shape[1]) for m in self.names}
        self.model = MfeatNet(dims, MFEAT_NUM_CLASSES, width=width)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        decay = epochs // 2 if decay_epoch is None else decay_epoch
        milestones = [decay] if 0 < decay < epochs else []
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones, gamma=0.1)
        self.n = len(data.train)
        self.dataset = ModalityDecoupler(data.train, self.names, mask="none")
        self.filter, self.sampler, self.loader = make_loader(
            cfg, self.dataset, self.names, data.train.label, batch_size, warmup, seed
        )
        self.online = cfg["remix"] and cfg["scoring"] == "online"
        self.records: list[dict[str, Any]] = []
        self.train_time = self.train_cpu = self.eval_time = 0.0

    @property
    def done(self) -> bool:
        return len(self.records) >= self.epochs

    def _score(self, sample: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        heads: dict[str, torch.Tensor] = self.model({m: sample[m] for m in self.names})[1]
        return heads

    def train_epoch(self) -> dict[str, Any]:
        cfg, model, filt, sampler = self.cfg, self.model, self.filter, self.sampler
        epoch = len(self.records)
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        remix_epoch = sampler is not None and not sampler.is_warmup(epoch)
        if remix_epoch and cfg["scoring"] == "pass":
            assert filt is not None
            model.eval()
            scoring_pass(
                self._score, self.dataset, filt, batch_size=cfg["scoring_batch_size"],
                fraction=cfg["scoring_fraction"], seed=self.seed, epoch=epoch, progress=False,
            )  # fmt: skip
            model.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        for sample, index, modality in self.loader:
            if len(index) < 2:  # BatchNorm1d cannot train on one row: skip that tail batch
                continue
            loss, logits = _step(cast(Any, model), cfg, sample, modality)  # duck-typed HaptNet
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.online:
                assert filt is not None
                filt.update(index, logits, modality=modality)
        self.sched.step()
        self.train_time += time.perf_counter() - t0
        self.train_cpu += time.process_time() - c0
        t1 = time.perf_counter()
        record: dict[str, Any] = {
            "epoch": epoch,
            "phase": "remix" if remix_epoch else ("warmup" if cfg["remix"] else "joint"),
            "test": evaluate_views(model, self.data.test),
            "val": evaluate_views(model, self.data.val),
        }
        if remix_epoch:
            assert filt is not None
            counts = filt.history[-1]["counts"]
            record["shares"] = {m: counts[m] / self.n for m in self.names}
        self.records.append(record)
        self.eval_time += time.perf_counter() - t1
        if self.log is not None:
            acc = record["test"]
            self.log(
                f"  {cfg['name']:<13} seed {self.seed} epoch {epoch + 1:>2}/{self.epochs} "
                + " ".join(f"{k} {v:.3f}" for k, v in acc.items())
            )
        return record

    def result(self) -> dict[str, Any]:
        """As :meth:`benchmarks.hapt.Job.result`: ``final`` (test) and ``final_val``."""
        if not self.records:
            raise RuntimeError("no epoch trained yet")
        return {
            "method": {**self.cfg, "modalities": list(self.names)},
            "seed": self.seed,
            "final": self.records[-1]["test"],
            "final_val": self.records[-1]["val"],
            "train_time_s": self.train_time,
            "train_cpu_s": self.train_cpu,
            "eval_time_s": self.eval_time,
            "epochs": self.records,
            "filter_history": [] if self.filter is None else self.filter.history,
        }
