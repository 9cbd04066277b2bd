"""The main job: Data Remixing against joint training on real HAPT data.

Accelerometer (strong) and gyroscope (weak) windows of UCI HAPT, subjects 1-21
train / 22-30 test (:func:`remix_data.datasets.load_hapt`), one small 1-D CNN
per modality (:mod:`benchmarks._hapt_model`), four methods with the same
optimiser, learning rate, epochs and batch size:

- ``joint``: the paper's baseline, ``CE(fused) + 0.5 * CE(each unimodal head)``
  on shuffled multimodal batches;
- ``remix``: the paper's recipe, warm-up with the joint loss, then a scoring
  pass (:func:`remix_data.scoring_pass`) before every epoch, sequential
  unimodal batches (gyro first, then acc: the weak modality first, as the
  reference code's video-then-audio order), feature-level masking
  (:func:`remix_data.mask_features`), ``CE(fused) + CE(active head)``;
- ``remix-online``: as ``remix``, but scores come from the training step's own
  outputs (``filter.update(..., modality=...)``), no extra pass: the active
  modality's score is fresh, the other one stale;
- ``remix-skip``: as ``remix-online``, and the masked modality's encoder is not
  run at all on unimodal batches (its features are zeros).

Every number reported is the *final* epoch's test accuracy (no model selection
on the test split). Training wall time counts the scoring pass and the training
steps, not the per-epoch test evaluation (bookkeeping of this benchmark); all
runs happen sequentially in one process with the same thread count.

Usage::

    python benchmarks/hapt.py                      # one seed, all methods
    python benchmarks/hapt.py --seeds 0 1 2        # the full table
    python benchmarks/hapt.py --methods joint remix-online --epochs 10 --warmup 2
    python benchmarks/hapt.py --quick              # tiny smoke run (tests)

Writes ``results/hapt.json`` and ``results/hapt.png`` (``--out`` moves both).
A method is a dict (see :data:`METHOD_DEFAULTS`); :data:`METHODS` holds the
named presets, and :func:`run` trains one method for one seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._hapt_model import HaptNet
from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    mask_features,
    scoring_pass,
)
from remix_data.datasets import (
    HAPT_ACTIVITIES,
    HAPT_TEST_USERS,
    HAPT_TRAIN_USERS,
    HaptData,
    load_hapt,
)

__all__ = [
    "MAIN_METHODS",
    "METHODS",
    "METHOD_DEFAULTS",
    "SCHEMA",
    "VARIANTS",
    "HaptSplits",
    "Job",
    "WindowSet",
    "evaluate",
    "main",
    "method_config",
    "prepare_data",
    "run",
    "run_interleaved",
    "summarize",
]

SCHEMA = "remix_data.benchmarks.hapt/1"

#: Every key a method config may set, with its default. ``modalities`` is also
#: the sequential batch order (and ties in the filter go to the one listed last).
METHOD_DEFAULTS: dict[str, Any] = {
    "remix": False,  # False: joint training on shuffled multimodal batches
    "scoring": "pass",  # "pass": scoring_pass before each remix epoch; "online"
    "skip_encoder": False,  # unimodal batches: do not run the masked encoder
    "masked_encoder_eval": False,  # run the masked encoder in eval mode (frozen BatchNorm)
    "order": "sequential",  # ReassemblingBatchSampler order
    "modalities": ("gyro", "acc"),  # weak first, like the reference's video first
    "joint_head_weight": 0.5,  # weight of each unimodal head on joint batches
    "remix_head_weight": 1.0,  # gamma: weight of the active head on unimodal batches
    "scoring_batch_size": 256,
    "scoring_fraction": 1.0,
    "filter": {},  # extra HardSampleFilter keyword arguments (score, smoothing, ...)
    "sampler": {},  # extra ReassemblingBatchSampler keyword arguments (joint_fraction, ...)
}

#: Named presets; :func:`method_config` fills in :data:`METHOD_DEFAULTS`.
METHODS: dict[str, dict[str, Any]] = {
    "joint": {"remix": False},
    "remix": {"remix": True, "scoring": "pass"},
    "remix-online": {"remix": True, "scoring": "online"},
    "remix-skip": {"remix": True, "scoring": "online", "skip_encoder": True},
    # Diagnostics (not in the default --methods): the masked encoder still runs,
    # but in eval mode, so its BatchNorm running statistics see no masked batch.
    "remix-evalbn": {"remix": True, "scoring": "pass", "masked_encoder_eval": True},
    "remix-online-evalbn": {"remix": True, "scoring": "online", "masked_encoder_eval": True},
}

#: Robust variants (issue 6), each on top of both online bases: class-aware
#: decoupling, EMA of the scores, a quarter of every subset in joint batches,
#: interleaved batches, and all four together (``benchmarks/study.py``).
VARIANTS: dict[str, dict[str, Any]] = {
    "class": {"filter": {"balance": "class"}},
    "ema": {"filter": {"smoothing": 0.5}},
    "joint25": {"sampler": {"joint_fraction": 0.25}},
    "interleave": {"order": "interleave"},
    "all": {
        "filter": {"balance": "class", "smoothing": 0.5},
        "sampler": {"joint_fraction": 0.25},
        "order": "interleave",
    },
}
for _base in ("remix-skip", "remix-online-evalbn"):
    for _suffix, _extra in VARIANTS.items():
        METHODS[f"{_base}+{_suffix}"] = {**METHODS[_base], **copy.deepcopy(_extra)}

#: The methods of the main table (``--methods`` default).
MAIN_METHODS = ("joint", "remix", "remix-online", "remix-skip")

_SCORINGS = ("pass", "online")
NAMES = ("acc", "gyro")  # the data's modalities (table/report order: strong first)


def method_config(method: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """Resolve a preset name or a partial dict to a full, checked method config."""
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; presets: {sorted(METHODS)}")
        cfg = {"name": method, **copy.deepcopy(METHODS[method])}
    elif isinstance(method, Mapping):
        cfg = dict(copy.deepcopy(dict(method)))
    else:
        raise TypeError(f"method should be a preset name or a dict, but got {method!r}")
    cfg.update(overrides)
    unknown = set(cfg) - set(METHOD_DEFAULTS) - {"name"}
    if unknown:
        raise ValueError(f"method config has unknown keys {sorted(unknown)}")
    full = {"name": cfg.get("name", "custom"), **copy.deepcopy(METHOD_DEFAULTS)}
    full.update(cfg)
    if full["scoring"] not in _SCORINGS:
        raise ValueError(f"scoring should be one of {_SCORINGS}, but got {full['scoring']!r}")
    if sorted(full["modalities"]) != sorted(NAMES):
        raise ValueError(f"modalities should order {NAMES}, but got {full['modalities']!r}")
    full["modalities"] = tuple(full["modalities"])
    if not isinstance(full["filter"], Mapping):
        raise TypeError(f"filter should be a dict of HardSampleFilter kwargs: {full['filter']!r}")
    if not isinstance(full["sampler"], Mapping):
        raise TypeError(
            f"sampler should be a dict of ReassemblingBatchSampler kwargs: {full['sampler']!r}"
        )
    return full


# --------------------------------------------------------------------------- #
# Data                                                                         #
# --------------------------------------------------------------------------- #


class WindowSet(Dataset[dict[str, torch.Tensor]]):
    """HAPT windows as torch tensors; a sample is ``{"acc", "gyro", "label"}``."""

    def __init__(self, acc: torch.Tensor, gyro: torch.Tensor, label: torch.Tensor) -> None:
        self.acc, self.gyro, self.label = acc, gyro, label

    @classmethod
    def from_hapt(cls, data: HaptData, idx: np.ndarray) -> WindowSet:
        return cls(
            torch.from_numpy(np.ascontiguousarray(data.acc[idx])),
            torch.from_numpy(np.ascontiguousarray(data.gyro[idx])),
            torch.from_numpy(data.label[idx].astype(np.int64)),
        )

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"acc": self.acc[i], "gyro": self.gyro[i], "label": self.label[i]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        return [self[i] for i in indices]

    def class_counts(self, num_classes: int) -> list[int]:
        return [int(c) for c in torch.bincount(self.label, minlength=num_classes)]


@dataclass
class HaptSplits:
    """Normalised train / test (/ validation) windows and how they were made."""

    train: WindowSet
    test: WindowSet
    val: WindowSet | None = None
    info: dict[str, Any] = field(default_factory=dict)


def prepare_data(
    hapt: HaptData | None = None,
    *,
    val_users: Iterable[int] = (),
    quick: bool = False,
    quick_sizes: tuple[int, int] = (480, 240),
) -> HaptSplits:
    """Split HAPT by subject and normalise with the training windows' statistics.

    Args:
        hapt: the windows (default: :func:`load_hapt`).
        val_users: training subjects moved to a validation split (never test
            subjects); normalisation then uses the remaining training subjects.
        quick: keep a fixed random subset of ``quick_sizes`` (train, test)
            windows, for smoke runs.
    """
    data = load_hapt() if hapt is None else hapt
    val = sorted({int(u) for u in val_users})
    bad = [u for u in val if u not in HAPT_TRAIN_USERS]
    if bad:
        raise ValueError(f"val_users should be training subjects {HAPT_TRAIN_USERS}: got {bad}")
    train_users = [u for u in HAPT_TRAIN_USERS if u not in val]
    if not train_users:
        raise ValueError("val_users leaves no training subject")
    train_idx, test_idx = data.split(train_users, HAPT_TEST_USERS)
    val_idx = data.split(val, ())[0] if val else np.zeros(0, np.int64)
    if quick:
        rng = np.random.default_rng(0)
        train_idx = np.sort(rng.permutation(train_idx)[: quick_sizes[0]])
        test_idx = np.sort(rng.permutation(test_idx)[: quick_sizes[1]])
        val_idx = np.sort(rng.permutation(val_idx)[: quick_sizes[1]])
    if train_idx.size == 0 or test_idx.size == 0:
        raise ValueError("the split left no training or no test windows")
    normed, _ = data.normalize(train_idx)
    splits = HaptSplits(
        train=WindowSet.from_hapt(normed, train_idx),
        test=WindowSet.from_hapt(normed, test_idx),
        val=WindowSet.from_hapt(normed, val_idx) if val_idx.size else None,
    )
    splits.info = {
        "train_users": train_users,
        "val_users": val,
        "test_users": list(HAPT_TEST_USERS),
        "n_train": len(splits.train),
        "n_val": 0 if splits.val is None else len(splits.val),
        "n_test": len(splits.test),
        "window": int(data.acc.shape[2]),
        "classes": list(HAPT_ACTIVITIES),
        "train_class_counts": splits.train.class_counts(len(HAPT_ACTIVITIES)),
        "quick": quick,
    }
    return splits


# --------------------------------------------------------------------------- #
# Training                                                                     #
# --------------------------------------------------------------------------- #


def evaluate(model: HaptNet, data: WindowSet, batch_size: int = 1024) -> dict[str, float]:
    """Accuracy of the fused head and of each unimodal head (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    correct = dict.fromkeys(("fused", *NAMES), 0)
    with torch.no_grad():
        for lo in range(0, len(data), batch_size):
            sl = slice(lo, lo + batch_size)
            y = data.label[sl]
            fused, heads = model({"acc": data.acc[sl], "gyro": data.gyro[sl]})
            correct["fused"] += int((fused.argmax(1) == y).sum())
            for m in NAMES:
                correct[m] += int((heads[m].argmax(1) == y).sum())
    model.train(was_training)
    return {k: v / len(data) for k, v in correct.items()}


def _step(
    model: HaptNet,
    cfg: Mapping[str, Any],
    sample: Mapping[str, torch.Tensor],
    modality: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch and the unimodal logits computed for its active rows.

    Row-wise, so joint, unimodal and mixed batches share one code path: a row
    with modality ``ALL`` adds ``joint_head_weight * CE`` of every head, a row
    of modality ``m`` adds ``remix_head_weight * CE`` of head ``m`` only, and
    its other modalities' features are zeroed (:func:`mask_features`) or, with
    ``skip_encoder`` and no row needing them, never computed.
    """
    names: tuple[str, ...] = cfg["modalities"]
    y = sample["label"]
    joint_rows = modality == ALL
    all_joint = bool(joint_rows.all())
    feats: dict[str, torch.Tensor] = {}
    for i, m in enumerate(names):
        unused = not all_joint and not bool((joint_rows | (modality == i)).any())
        if unused and cfg["skip_encoder"]:
            feats[m] = torch.zeros(y.shape[0], model.feature_dim)  # skipped encoder
        elif unused and cfg["masked_encoder_eval"]:
            encoder = model.encoders[m]
            encoder.eval()  # its BatchNorm neither uses nor updates batch statistics
            feats[m] = encoder(sample[m])
            encoder.train()
        else:
            feats[m] = model.encoders[m](sample[m])
    if not all_joint:
        feats = mask_features(feats, modality, names)
    loss = F.cross_entropy(model.fuse(feats), y)
    logits: dict[str, torch.Tensor] = {}
    for i, m in enumerate(names):
        if all_joint:
            weight: torch.Tensor | float = float(cfg["joint_head_weight"])
        else:
            weight = torch.where(
                joint_rows,
                float(cfg["joint_head_weight"]),
                torch.where(modality == i, float(cfg["remix_head_weight"]), 0.0),
            )
            if not bool((weight != 0).any()):
                continue
        logits[m] = model.heads[m](feats[m])
        per_row = F.cross_entropy(logits[m], y, reduction="none")
        loss = loss + (weight * per_row).mean()
    return loss, logits


def make_loader(
    cfg: Mapping[str, Any],
    dataset: ModalityDecoupler,
    names: tuple[str, ...],
    labels: Any,
    batch_size: int,
    warmup: int,
    seed: int,
) -> tuple[HardSampleFilter | None, ReassemblingBatchSampler | None, DataLoader[Any]]:
    """The training loader of a method: remix parts, or a plain shuffled loader for joint."""
    if not cfg["remix"]:
        gen = torch.Generator()
        gen.manual_seed(seed)
        return None, None, DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen)
    filt = HardSampleFilter(len(dataset), names, labels=labels, **dict(cfg["filter"]))
    sampler = ReassemblingBatchSampler(
        filt, batch_size, warmup_epochs=warmup, order=cfg["order"], seed=seed,
        **dict(cfg["sampler"]),
    )  # fmt: skip
    return filt, sampler, DataLoader(dataset, batch_sampler=sampler)


def _tv_distance(counts: Sequence[int], reference: Sequence[float]) -> float | None:
    total = sum(counts)
    if total == 0:
        return None
    return 0.5 * sum(abs(c / total - r) for c, r in zip(counts, reference))


class Job:
    """One method trained for one seed, one epoch per :meth:`train_epoch` call.

    Several jobs can advance in turns (:func:`run_interleaved`), so that a
    machine whose load drifts slows every method alike. Arguments as in
    :func:`run`.
    """

    def __init__(
        self,
        method: str | Mapping[str, Any],
        seed: int,
        data: HaptSplits,
        *,
        epochs: int = 30,
        warmup: int = 5,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        decay_epoch: int | None = None,
        decay_gamma: float = 0.1,
        width: int = 32,
        log: Any = None,
    ) -> None:
        cfg = method_config(method)
        if epochs <= 0 or warmup < 0:
            raise ValueError(f"epochs should be > 0 and warmup >= 0, got {epochs=}, {warmup=}")
        decay = epochs // 2 if decay_epoch is None else decay_epoch
        self.cfg, self.seed, self.data, self.epochs, self.log = cfg, seed, data, epochs, log
        self.names: tuple[str, ...] = cfg["modalities"]
        num_classes = len(HAPT_ACTIVITIES)
        torch.manual_seed(seed)
        self.model = HaptNet(self.names, num_classes, width=width)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        milestones = [decay] if 0 < decay < epochs else []
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones, gamma=decay_gamma)

        train = data.train
        self.n = len(train)
        self.train_mix = [c / self.n for c in train.class_counts(num_classes)]
        # Masking happens on the features (the reference code), not in the data.
        self.dataset = ModalityDecoupler(train, self.names, mask="none")
        self.filter, self.sampler, self.loader = make_loader(
            cfg, self.dataset, self.names, train.label, batch_size, warmup, seed
        )
        self.online = cfg["remix"] and cfg["scoring"] == "online"
        self.records: list[dict[str, Any]] = []
        self.train_time = self.train_cpu = self.eval_time = 0.0
        self._previous: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return len(self.records) >= self.epochs

    def _score(self, sample: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        heads: dict[str, torch.Tensor] = self.model({m: sample[m] for m in self.names})[1]
        return heads

    def train_epoch(self) -> dict[str, Any]:
        """Train the next epoch (scoring pass included), evaluate, return its record."""
        cfg, model, filt, sampler = self.cfg, self.model, self.filter, self.sampler
        epoch = len(self.records)
        if epoch >= self.epochs:
            raise RuntimeError(f"all {self.epochs} epochs are trained")
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        scoring_time = 0.0
        remix_epoch = sampler is not None and not sampler.is_warmup(epoch)
        if remix_epoch and cfg["scoring"] == "pass":
            assert filt is not None
            model.eval()
            scoring_pass(
                self._score, self.dataset, filt, batch_size=cfg["scoring_batch_size"],
                fraction=cfg["scoring_fraction"], seed=self.seed, epoch=epoch, progress=False,
            )  # fmt: skip
            model.train()
            scoring_time = time.perf_counter() - t0
        if sampler is not None:
            sampler.set_epoch(epoch)  # after warm-up: snapshots the filter's assignment
        lr_used = float(self.opt.param_groups[0]["lr"])
        loss_sum, seen = 0.0, 0
        for sample, index, modality in self.loader:
            loss, logits = _step(model, cfg, sample, modality)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.online:
                assert filt is not None
                filt.update(index, logits, modality=modality)
            loss_sum += float(loss.detach()) * len(index)
            seen += len(index)
        self.sched.step()
        epoch_time = time.perf_counter() - t0
        epoch_cpu = time.process_time() - c0
        self.train_time += epoch_time
        self.train_cpu += epoch_cpu

        t1 = time.perf_counter()
        record: dict[str, Any] = {
            "epoch": epoch,
            "phase": "remix" if remix_epoch else ("warmup" if cfg["remix"] else "joint"),
            "lr": lr_used,
            "train_loss": loss_sum / max(seen, 1),
            "test": evaluate(model, self.data.test),
            "time_s": epoch_time,
            "cpu_s": epoch_cpu,
            "scoring_time_s": scoring_time,
        }
        if self.data.val is not None:
            record["val"] = evaluate(model, self.data.val)
        if remix_epoch:
            assert filt is not None and sampler is not None
            record.update(self._remix_stats(epoch, filt, sampler))
        self.records.append(record)
        self.eval_time += time.perf_counter() - t1
        if self.log is not None:
            self.log(self._line(record))
        return record

    def _remix_stats(
        self, epoch: int, filt: HardSampleFilter, sampler: ReassemblingBatchSampler
    ) -> dict[str, Any]:
        hist = filt.history[-1]
        assign = filt.snapshot(epoch)
        switched = None
        if self._previous is not None:
            switched = float((assign != self._previous).float().mean())
        self._previous = assign.clone()
        return {
            "shares": {m: hist["counts"][m] / self.n for m in self.names},
            "filtered": hist["filtered"],
            "mean_score": hist["mean_score"],
            "class_tv": {
                m: _tv_distance(hist["class_counts"][m], self.train_mix) for m in self.names
            },
            "batches": sampler.stats()["batches"],
            "switched": switched,
        }

    def _line(self, record: Mapping[str, Any]) -> str:
        acc, shares = record["test"], record.get("shares")
        extra = ""
        if shares is not None:
            extra = " shares " + " ".join(f"{m}={shares[m]:.2f}" for m in self.names)
        return (
            f"  {self.cfg['name']:<13} seed {self.seed} epoch {record['epoch'] + 1:>2}/"
            f"{self.epochs} loss {record['train_loss']:.3f} fused {acc['fused']:.3f} "
            f"acc {acc['acc']:.3f} gyro {acc['gyro']:.3f} {record['time_s']:.1f}s{extra}"
        )

    def result(self) -> dict[str, Any]:
        """The JSON-ready result (see :func:`run`)."""
        if not self.records:
            raise RuntimeError("no epoch trained yet")
        return {
            "method": {**self.cfg, "modalities": list(self.names)},
            "seed": self.seed,
            "final": self.records[-1]["test"],
            "final_val": self.records[-1].get("val"),
            "train_time_s": self.train_time,
            "train_cpu_s": self.train_cpu,
            "eval_time_s": self.eval_time,
            "epochs": self.records,
            "filter_history": [] if self.filter is None else self.filter.history,
        }


@contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run(
    method: str | Mapping[str, Any],
    seed: int,
    data: HaptSplits,
    *,
    threads: int | None = 1,
    **options: Any,
) -> dict[str, Any]:
    """Train one method for one seed; return its per-epoch record and final accuracy.

    Args:
        method: a preset name of :data:`METHODS` or a method config dict.
        seed: seeds the model initialisation, the loader's shuffling and the
            remix sampler.
        data: from :func:`prepare_data`.
        threads: ``torch.set_num_threads`` for the run (restored afterwards);
            ``None`` leaves it.
        **options: ``epochs`` (30), ``warmup`` (5, joint warm-up epochs of the
            remix methods), ``batch_size`` (64), ``lr`` (1e-3) and
            ``weight_decay`` (1e-4) of Adam, the same for every method;
            ``decay_epoch`` (``epochs // 2``; the learning rate is multiplied by
            ``decay_gamma`` = 0.1 once, there; 0 disables it), ``width`` (32,
            :class:`~benchmarks._hapt_model.HaptNet`), ``log`` (a callable taking
            one line of progress text; default silent).

    Returns:
        A JSON-ready dict: ``method`` (the resolved config), ``seed``, ``final``
        (test accuracies of the last epoch), ``final_val``, ``train_time_s``
        (scoring + training, wall), ``train_cpu_s``, ``eval_time_s``, ``epochs``
        (one record per epoch) and ``filter_history``.
    """
    with _num_threads(threads):
        job = Job(method, seed, data, **options)
        while not job.done:
            job.train_epoch()
        return job.result()


def run_interleaved(
    methods: Sequence[str | Mapping[str, Any]],
    seed: int,
    data: HaptSplits,
    *,
    threads: int | None = 1,
    **options: Any,
) -> list[dict[str, Any]]:
    """Train several methods for one seed, epoch ``e`` of each in turn.

    Results are those of :func:`run` (nothing random is shared between jobs);
    only the timing is fairer when other processes load the machine unevenly.
    """
    with _num_threads(threads):
        jobs = [Job(m, seed, data, **options) for m in methods]
        while not all(job.done for job in jobs):
            for job in jobs:
                job.train_epoch()
        return [job.result() for job in jobs]


# --------------------------------------------------------------------------- #
# Report                                                                       #
# --------------------------------------------------------------------------- #


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: mean ± std over seeds of the final accuracies, time and time ratio.

    The time ratio divides each run's training time by the ``joint`` run of the
    same seed (absent when no joint run exists).
    """
    joint = {r["seed"]: r for r in runs if r["method"]["name"] == "joint"}
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["method"]["name"] for r in runs):
        mine = [r for r in runs if r["method"]["name"] == name]
        entry: dict[str, Any] = {
            key: _mean_std([r["final"][key] for r in mine]) for key in ("fused", *NAMES)
        }
        for key, ratio in (("train_time_s", "time_vs_joint"), ("train_cpu_s", "cpu_vs_joint")):
            entry[key] = _mean_std([r[key] for r in mine])
            ratios = [r[key] / joint[r["seed"]][key] for r in mine if r["seed"] in joint]
            entry[ratio] = _mean_std(ratios) if ratios else None
        with_val = [r["final_val"] for r in mine if r.get("final_val")]
        entry["val"] = (
            {key: _mean_std([v[key] for v in with_val]) for key in ("fused", *NAMES)}
            if len(with_val) == len(mine)
            else None
        )
        entry["seeds"] = [r["seed"] for r in mine]
        entry["per_epoch"] = _per_epoch(mine)
        out[name] = entry
    return out


def _per_epoch(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over seeds, epoch by epoch: test accuracies, and shares / class skew
    of the remix epochs (``None`` where an epoch had no assignment)."""

    def mean(values: list[Any]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else None

    epochs = min(len(r["epochs"]) for r in runs)
    rows = [[r["epochs"][e] for r in runs] for e in range(epochs)]
    out: dict[str, Any] = {
        "test": {k: [mean([x["test"][k] for x in row]) for row in rows] for k in ("fused", *NAMES)}
    }
    for key in ("shares", "class_tv"):
        out[key] = {
            m: [mean([x[key][m] if key in x else None for x in row]) for row in rows] for m in NAMES
        }
    return out


def format_shares(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """Per remix method, the gyro share of each remix epoch (mean over seeds)."""
    lines = []
    for name, s in summary.items():
        shares = [v for v in s["per_epoch"]["shares"]["gyro"] if v is not None]
        if shares:
            lines.append(f"{name:<20} " + " ".join(f"{v:.2f}" for v in shares))
    return "\n".join(lines)


def format_table(summary: Mapping[str, Mapping[str, Any]], split: str = "test") -> str:
    """The Markdown table: method | fused | acc head | gyro head | time (s) | time vs joint.

    A last column gives the CPU-time ratio, steadier than wall time on a shared
    machine. ``split="val"`` shows the validation accuracies instead.
    """

    def pct(s: Mapping[str, float]) -> str:
        return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"

    def ratio(s: Mapping[str, float] | None) -> str:
        return "—" if s is None else f"{s['mean']:.2f}x ± {s['std']:.2f}"

    lines = [
        "| method | fused | acc head | gyro head | time (s) | time vs joint | CPU time vs joint |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        t = s["train_time_s"]
        acc = s if split == "test" else s["val"]
        if acc is None:
            continue
        lines.append(
            f"| {name} | {pct(acc['fused'])} | {pct(acc['acc'])} | {pct(acc['gyro'])} "
            f"| {t['mean']:.1f} ± {t['std']:.1f} | {ratio(s['time_vs_joint'])} "
            f"| {ratio(s['cpu_vs_joint'])} |"
        )
    return "\n".join(lines)


def _plot(runs: Sequence[Mapping[str, Any]], path: Path, dpi: int = 100) -> Path | None:
    """Shares and unimodal test accuracy per epoch, one column per method (first seed)."""
    try:
        from remix_data.plotting import plot_history
    except ImportError:  # pragma: no cover - plotting is optional
        return None
    histories: dict[str, list[dict[str, Any]]] = {}
    accuracy: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        name = r["method"]["name"]
        if name in histories:
            continue  # first seed only
        histories[name] = list(r["filter_history"])
        accuracy[name] = {
            f"{key} head" if key in NAMES else key: [e["test"][key] for e in r["epochs"]]
            for key in ("fused", *NAMES)
        }
    try:
        return plot_history(
            histories, path, accuracy=accuracy, modalities=NAMES, dpi=dpi,
            title=f"HAPT: assignment shares, mean confidence and test accuracy "
            f"(seed {runs[0]['seed']})",
        )  # fmt: skip
    except ImportError as err:  # matplotlib missing
        print(f"no plot: {err}", file=sys.stderr)
        return None


def _environment(threads: int | None) -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
    }


def finite_json(obj: Any) -> Any:
    """Replace NaN/inf by None so the JSON is strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Data Remixing vs joint training on HAPT (acc = strong, gyro = weak).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--methods", nargs="+", default=list(MAIN_METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=None, help="default 30 (2 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="default 5 (1 with --quick)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--decay-epoch", type=int, default=None, help="lr x0.1 here; epochs//2")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--val-users", nargs="*", type=int, default=[], help="e.g. 17 18 19 20 21")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="train the methods one after another (default: epoch by epoch in turns, "
        "so that a drifting machine load slows every method alike)",
    )
    p.add_argument("--out", type=Path, default=Path("results/hapt.json"))
    p.add_argument("--plot", type=Path, default=None, help="default: --out with .png")
    p.add_argument("--dpi", type=int, default=100, help="resolution of the plot")
    p.add_argument("--quick", action="store_true", help="tiny subset, 2 epochs (smoke test)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, hapt: HaptData | None = None) -> dict[str, Any]:
    """Run the benchmark from command-line arguments; return the written report."""
    args = parse_args(argv)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    decay = args.decay_epoch if args.decay_epoch is not None else epochs // 2
    t_start = time.perf_counter()
    data = prepare_data(hapt, val_users=args.val_users, quick=args.quick)
    info = data.info
    val_users = info["val_users"]
    print(
        f"HAPT: {info['n_train']} train / {info['n_val']} val / {info['n_test']} test windows; "
        f"{epochs} epochs ({warmup} warm-up), batch {args.batch_size}, Adam lr {args.lr} "
        f"wd {args.weight_decay}, lr x0.1 at epoch {decay}, {args.threads} thread(s)",
        flush=True,
    )
    log = None if args.quiet else (lambda line: print(line, flush=True))
    runs = []
    options: dict[str, Any] = {
        "epochs": epochs, "warmup": warmup, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "decay_epoch": decay, "width": args.width,
        "threads": args.threads, "log": log,
    }  # fmt: skip
    for seed in args.seeds:
        if args.sequential:
            results = [run(name, seed, data, **options) for name in args.methods]
        else:
            results = run_interleaved(args.methods, seed, data, **options)
        for r in results:
            final = r["final"]
            print(
                f"{r['method']['name']} seed {seed}: fused {final['fused']:.3f} "
                f"acc {final['acc']:.3f} gyro {final['gyro']:.3f}, "
                f"train {r['train_time_s']:.1f}s",
                flush=True,
            )
        runs.extend(results)
    summary = summarize(runs)
    report = {
        "schema": SCHEMA,
        "command": " ".join(["python", "benchmarks/hapt.py", *(argv or sys.argv[1:])]),
        "config": {
            "methods": {name: method_config(name) for name in args.methods},
            "seeds": args.seeds,
            "epochs": epochs,
            "warmup": warmup,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "decay_epoch": decay,
            "decay_gamma": 0.1,
            "width": args.width,
            "threads": args.threads,
            "schedule": "sequential" if args.sequential else "interleaved",
        },
        "data": info,
        "environment": _environment(args.threads),
        "summary": summary,
        "runs": runs,
        "total_time_s": time.perf_counter() - t_start,
    }
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite_json(report), indent=1) + "\n")
    plot_path = _plot(runs, args.plot or out.with_suffix(".png"), args.dpi)
    print()
    print("Final-epoch test accuracy (%), mean ± std over seeds", args.seeds)
    print(format_table(summary))
    if val_users:
        print(f"\nFinal-epoch validation accuracy (%), users {val_users}")
        print(format_table(summary, split="val"))
    shares = format_shares(summary)
    if shares:
        print("\nShare of training samples assigned to gyro, per remix epoch (mean over seeds)")
        print(shares)
    print(f"\nwrote {out}" + (f" and {plot_path}" if plot_path else ""))
    print(f"total wall time {report['total_time_s']:.0f}s")
    return report


if __name__ == "__main__":
    main()
