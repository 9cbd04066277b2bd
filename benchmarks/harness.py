"""The job runner shared by the HAPT and mfeat jobs (and the study on top of them).

- :class:`Task` says what a data set needs from a job: its strong and weak
  modality, the number of classes and how to build the model.
- :class:`Splits` holds a task's train / test (/ validation) samples as
  :class:`SampleSet` tensors.
- :class:`Job` trains one method (:mod:`benchmarks.methods`) for one seed, one
  epoch per :meth:`Job.train_epoch`; :func:`run` trains one job to the end,
  :func:`run_interleaved` several, epoch by epoch in turns.

Every number a job records is the *final* epoch's (no model selection on test).
Training wall time counts the scoring pass and the training steps, not the
per-epoch evaluation. A metric is one more key of :func:`evaluate`'s dict (or of
an epoch record), summarised by :mod:`benchmarks.report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from benchmarks._common import num_threads
from benchmarks.balancing import make_balancer
from benchmarks.methods import make_loader, method_config, train_step
from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler, scoring_pass

__all__ = [
    "Job",
    "SampleSet",
    "Splits",
    "Task",
    "evaluate",
    "run",
    "run_interleaved",
    "run_seeds",
]


class SampleSet(Dataset[dict[str, torch.Tensor]]):
    """Rows of per-modality tensors and labels; a sample is ``{modality: x, "label": y}``."""

    def __init__(self, inputs: Mapping[str, torch.Tensor], label: torch.Tensor) -> None:
        self.inputs, self.label = dict(inputs), label

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{m: x[i] for m, x in self.inputs.items()}, "label": self.label[i]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        return [self[i] for i in indices]

    def class_counts(self, num_classes: int) -> list[int]:
        """Samples per class."""
        return [int(c) for c in torch.bincount(self.label, minlength=num_classes)]


@dataclass(frozen=True)
class Task:
    """A data set with a strong and a weak modality, and its model.

    ``make_model(modalities, width, splits)`` builds the model (its
    ``modalities`` in the method's order). ``min_batch`` skips training batches
    with fewer rows (1-row batches where BatchNorm1d cannot train).
    """

    name: str
    strong: str
    weak: str
    num_classes: int
    make_model: Callable[[tuple[str, ...], int, Splits], nn.Module]
    min_batch: int = 1

    @property
    def modalities(self) -> tuple[str, str]:
        """Default method order: weak first, like the reference's video first."""
        return (self.weak, self.strong)

    @property
    def keys(self) -> tuple[str, str, str]:
        """Accuracy keys in report order: fused, strong head, weak head."""
        return ("fused", self.strong, self.weak)


@dataclass
class Splits:
    """A task's train / test (/ validation) samples and how they were made."""

    task: Task
    train: SampleSet
    test: SampleSet
    val: SampleSet | None = None
    info: dict[str, Any] = field(default_factory=dict)


def evaluate(model: nn.Module, data: SampleSet, batch_size: int = 1024) -> dict[str, float]:
    """Accuracy of the fused head and of each unimodal head (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    correct: dict[str, int] = {}
    with torch.no_grad():
        for lo in range(0, len(data), batch_size):
            y = data.label[lo : lo + batch_size]
            fused, heads = model({m: x[lo : lo + batch_size] for m, x in data.inputs.items()})
            for key, logits in (("fused", fused), *heads.items()):
                correct[key] = correct.get(key, 0) + int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return {k: v / len(data) for k, v in correct.items()}


def _tv_distance(counts: Sequence[int], reference: Sequence[float]) -> float | None:
    total = sum(counts)
    if total == 0:
        return None
    return 0.5 * sum(abs(c / total - r) for c, r in zip(counts, reference))


class Job:
    """One method trained for one seed on ``data``, one epoch per :meth:`train_epoch`.

    Args:
        method: a name of :data:`benchmarks.methods.METHODS` or a method config.
        seed: seeds the model initialisation, the loader's shuffling and the
            remix sampler.
        data: the task's :class:`Splits`.
        epochs: 30; warmup: 5 (joint warm-up epochs of the remix methods);
        batch_size: 64; lr: 1e-3 and weight_decay: 1e-4 (Adam), the same for
            every method; decay_epoch: ``epochs // 2`` (the learning rate is
            multiplied by ``decay_gamma`` = 0.1 once, there; 0 disables it);
        width: passed to the task's model; log: a callable taking one line of
            progress text (default silent).
    """

    def __init__(
        self,
        method: str | Mapping[str, Any],
        seed: int,
        data: Splits,
        *,
        epochs: int = 30,
        warmup: int = 5,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        decay_epoch: int | None = None,
        decay_gamma: float = 0.1,
        width: int = 32,
        log: Callable[[str], None] | None = None,
    ) -> None:
        task = data.task
        cfg = method_config(method, task.modalities)
        if epochs <= 0 or warmup < 0:
            raise ValueError(f"epochs should be > 0 and warmup >= 0, got {epochs=}, {warmup=}")
        decay = epochs // 2 if decay_epoch is None else decay_epoch
        self.cfg, self.seed, self.data, self.epochs, self.log = cfg, seed, data, epochs, log
        self.task = task
        self.names: tuple[str, ...] = cfg["modalities"]
        torch.manual_seed(seed)
        self.model = task.make_model(self.names, width, data)
        self.lr = lr * float(cfg["lr_scale"])
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=weight_decay)
        milestones = [decay] if 0 < decay < epochs else []
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones, gamma=decay_gamma)

        train = data.train
        self.n = len(train)
        self.train_mix = [c / self.n for c in train.class_counts(task.num_classes)]
        # Masking happens on the features (the reference code), not in the data.
        self.dataset = ModalityDecoupler(train, self.names, mask="none")
        self.filter, self.sampler, self.loader = make_loader(
            cfg, self.dataset, train.label, batch_size, warmup, seed
        )
        self.online = cfg["remix"] and cfg["scoring"] == "online"
        self.batch_size = batch_size
        self.balancer = make_balancer(
            cfg["balancer"], self.names, epochs=epochs, seed=seed, num_classes=task.num_classes
        )
        self.records: list[dict[str, Any]] = []
        self.train_time = self.train_cpu = self.eval_time = 0.0
        self._previous: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        """Whether every epoch is trained."""
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
        balancer = self.balancer
        if balancer is not None:  # PMR's prototype pass counts as training time
            joint_batches = (
                sampler is None or sampler.is_warmup(epoch) or sampler.joint_fraction > 0
            )
            train = self.data.train
            balancer.start_epoch(
                epoch, model, joint_batches, inputs=train.inputs, labels=train.label,
                batch_size=self.batch_size,
            )  # fmt: skip
        lr_used = float(self.opt.param_groups[0]["lr"])
        loss_sum, seen = 0.0, 0
        for sample, index, modality in self.loader:
            if len(index) < self.task.min_batch:
                continue
            loss, logits = train_step(model, cfg, sample, modality, balancer=balancer)  # type: ignore[arg-type]
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if balancer is not None:
                balancer.after_backward(model)  # OGM-GE modulates the gradients here
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
        if balancer is not None:
            record["balancer"] = balancer.end_epoch()
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
        heads = " ".join(f"{m} {acc[m]:.3f}" for m in self.task.keys[1:])
        return (
            f"  {self.cfg['name']:<13} seed {self.seed} epoch {record['epoch'] + 1:>2}/"
            f"{self.epochs} loss {record['train_loss']:.3f} fused {acc['fused']:.3f} "
            f"{heads} {record['time_s']:.1f}s{extra}"
        )

    def result(self) -> dict[str, Any]:
        """The JSON-ready result: ``method`` (the resolved config), ``seed``, ``final``
        (test accuracies of the last epoch), ``final_val``, ``train_time_s`` (scoring +
        training, wall), ``train_cpu_s``, ``eval_time_s``, ``epochs`` (one record per
        epoch) and ``filter_history``."""
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


def run(
    method: str | Mapping[str, Any],
    seed: int,
    data: Splits,
    *,
    threads: int | None = 1,
    **options: Any,
) -> dict[str, Any]:
    """Train one method for one seed (options of :class:`Job`); return :meth:`Job.result`.

    ``threads``: ``torch.set_num_threads`` for the run (restored afterwards);
    ``None`` leaves it.
    """
    return run_interleaved([method], seed, data, threads=threads, **options)[0]


def run_interleaved(
    methods: Sequence[str | Mapping[str, Any]],
    seed: int,
    data: Splits,
    *,
    threads: int | None = 1,
    **options: Any,
) -> list[dict[str, Any]]:
    """Train several methods for one seed, epoch ``e`` of each in turn.

    Results are those of :func:`run` (nothing random is shared between jobs);
    only the timing is fairer when other processes load the machine unevenly.
    """
    with num_threads(threads):
        jobs = [Job(m, seed, data, **options) for m in methods]
        while not all(job.done for job in jobs):
            for job in jobs:
                job.train_epoch()
        return [job.result() for job in jobs]


_SHARED: Splits | None = None  # the data of run_seeds, inherited by its forked workers


def _seed_worker(args: tuple[Sequence[str | Mapping[str, Any]], int, dict[str, Any]]) -> Any:
    methods, seed, options = args
    assert _SHARED is not None
    return run_interleaved(methods, seed, _SHARED, **options)


def run_seeds(
    methods: Sequence[str | Mapping[str, Any]],
    seeds: Sequence[int],
    data: Splits,
    *,
    jobs: int = 1,
    **options: Any,
) -> list[list[dict[str, Any]]]:
    """:func:`run_interleaved` for every seed, the seeds in ``jobs`` forked processes
    (1: one after another in this process); one list of results per seed, in order.

    The results do not depend on ``jobs``: each seed's methods train in one process
    with the same thread count either way. ``options`` must pickle (no ``log``
    callable) when ``jobs > 1``.
    """
    global _SHARED
    if jobs <= 1 or len(seeds) <= 1:
        return [run_interleaved(methods, seed, data, **options) for seed in seeds]
    _SHARED = data
    try:
        ctx = get_context("fork")
        work = [(list(methods), seed, dict(options)) for seed in seeds]
        with ProcessPoolExecutor(max_workers=min(jobs, len(seeds)), mp_context=ctx) as pool:
            return list(pool.map(_seed_worker, work))
    finally:
        _SHARED = None
