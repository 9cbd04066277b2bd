"""Lightning recipe, run for real: a Trainer on the CPU accelerator, one process and 2-process DDP.

Run as a script (``python tests/test_lightning.py --ddp OUT``) this file is the DDP
worker: Lightning's ``ddp`` strategy starts the second process by running it again.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _frameworks import (
    NAMES,
    LateFusion,
    N,
    leave,
    make_data,
    read_ranks,
    run_script,
    write_rank,
)
from torch.utils.data import DataLoader

pl = pytest.importorskip("lightning.pytorch", reason="needs lightning (the test extra)")

from remix_data import (  # noqa: E402
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
)
from remix_data.integrations.lightning import RemixCallback  # noqa: E402
from remix_data.testing import check_step_modalities  # noqa: E402
from remix_data.vocabulary import PAD  # noqa: E402


class LitRemix(pl.LightningModule):
    """Encoders, fused head and unimodal heads; the remix loop lives in the hooks."""

    def __init__(
        self, batch_size: int = 4, warmup_epochs: int = 1, order: str = "sequential"
    ) -> None:
        super().__init__()
        self.filter = HardSampleFilter(N, NAMES, labels=[i % 2 for i in range(N)])
        self.data = ModalityDecoupler(make_data(), NAMES, mask="none")
        self.batch_size, self.warmup_epochs, self.order = batch_size, warmup_epochs, order
        self.net = LateFusion()
        self.loader: DataLoader[Any] | None = None
        self.seen: list[dict[str, Any]] = []  # per batch: epoch, modalities, indices

    def train_dataloader(self) -> DataLoader[Any]:
        if self.loader is None:  # built once: the same loader every epoch
            sampler = ReassemblingBatchSampler(
                self.filter,
                self.batch_size,
                warmup_epochs=self.warmup_epochs,
                order=self.order,
                num_replicas=self.trainer.world_size,
                rank=self.trainer.global_rank,
                accumulation_steps=self.trainer.accumulate_grad_batches,
            )
            self.loader = DataLoader(self.data, batch_sampler=sampler)
        sampler = self.loader.batch_sampler
        assert isinstance(sampler, ReassemblingBatchSampler)
        sampler.set_epoch(self.trainer.current_epoch)  # so len() is this epoch's
        return self.loader

    def forward(
        self, sample: dict[str, torch.Tensor], modality: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.net(sample, modality)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        sample, index, modality = batch
        fused, heads = self(sample, modality)
        target = sample["label"]
        loss = F.cross_entropy(fused, target, reduction="none")
        joint = (modality == ALL).float()
        for m, name in enumerate(NAMES):  # every head stays in the graph (DDP)
            w = 0.5 * joint + (modality == m).float()
            loss = loss + w * F.cross_entropy(heads[name], target, reduction="none")
        self.seen.append(
            {
                "epoch": self.current_epoch,
                "modality": modality.tolist(),
                "index": index.tolist(),
            }
        )
        return {"loss": loss.mean(), "remix_outputs": heads}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def score(module: LitRemix, sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return module(sample, torch.full((len(sample["label"]),), ALL))[1]


def trainer(**kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 4,
        "reload_dataloaders_every_n_epochs": 1,
        "use_distributed_sampler": False,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


def per_epoch(seen: list[dict[str, Any]], key: str = "modality") -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for record in seen:
        out.setdefault(record["epoch"], []).append(record[key])
    return out


@pytest.fixture(autouse=True)
def _quiet_lightning() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # [B, 8] layers: more intra-op threads only add synchronisation
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("scoring", ["online", "pass"])
def test_trainer_trains_unimodal_steps_and_feeds_scores_back(scoring: str) -> None:
    module = LitRemix(batch_size=4, warmup_epochs=1)
    kwargs: dict[str, Any] = {}
    if scoring == "pass":
        kwargs = {"score_fn": score, "score_data": module.data, "outputs_key": "nothing"}
    callback = RemixCallback(module.filter, **kwargs)
    trainer(max_epochs=4, accumulate_grad_batches=2, callbacks=[callback]).fit(module)

    sampler = module.loader.batch_sampler  # type: ignore[union-attr]
    assert sampler.epoch == 3
    epochs = per_epoch(module.seen)
    assert sorted(epochs) == [0, 1, 2, 3]
    assert {m for batch in epochs[0] for m in batch} - {PAD} == {ALL}
    for epoch, batches in epochs.items():
        check_step_modalities([batches], accumulation_steps=2)
        if epoch:  # every kept sample trained once; PAD rows complete the last steps
            rows = zip(per_epoch(module.seen, "index")[epoch], batches)
            trained = [i for b, mods in rows for i, m in zip(b, mods) if m != PAD]
            assert sorted(trained) == list(range(N))
    assert [h["epoch"] for h in module.filter.history] == [1, 2, 3]  # no extra epoch 4
    assert all(h["unscored"] == 0 for h in module.filter.history)
    assert {m for e in (1, 2, 3) for batch in epochs[e] for m in batch} - {PAD} == {0, 1}


def preset(module: LitRemix, hard_for_a: int) -> None:
    """Scores that send the first ``hard_for_a`` samples to "a" and the rest to "b"."""
    loss_a = (torch.arange(N) < hard_for_a).float()
    module.filter = HardSampleFilter(N, NAMES, score="loss")
    module.filter.update(torch.arange(N), {"a": loss_a, "b": torch.full((N,), 0.5)})


def test_batch_counts_follow_each_epochs_plan() -> None:
    """A remix epoch has another batch count than the warm-up; Lightning runs every batch."""
    module = LitRemix(batch_size=4, warmup_epochs=1)
    preset(module, hard_for_a=10)  # remix epochs: 10 + 34 samples, 3 + 9 batches
    callback = RemixCallback(module.filter, outputs_key="no feedback")
    trainer(max_epochs=3, callbacks=[callback]).fit(module)
    counts = {e: len(b) for e, b in per_epoch(module.seen).items()}
    assert counts == {0: 11, 1: 12, 2: 12}
    assert [h["counts"] for h in module.filter.history] == [{"a": 10, "b": 34}] * 2


class Rebuilt(LitRemix):
    """A fresh one-step sampler (and loader) every epoch."""

    def train_dataloader(self) -> DataLoader[Any]:
        sampler = ReassemblingBatchSampler(self.filter, 4, warmup_epochs=1)
        return DataLoader(self.data, batch_sampler=sampler)


def test_a_loader_rebuilt_every_epoch_is_caught() -> None:
    """A fresh sampler starts at epoch 0, so Lightning would count the wrong plan."""
    module = Rebuilt()
    preset(module, hard_for_a=10)
    callback = RemixCallback(module.filter, outputs_key="no feedback")
    with pytest.raises(RuntimeError, match="Lightning will run 11 batches in epoch 1"):
        trainer(max_epochs=3, callbacks=[callback]).fit(module)


def test_callback_requires_reloading_the_loader_every_epoch() -> None:
    module = LitRemix()
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs=1"):
        trainer(reload_dataloaders_every_n_epochs=0, callbacks=[RemixCallback(module.filter)]).fit(
            module
        )


def test_callback_rejects_a_sampler_that_accumulates_differently() -> None:
    module = Rebuilt()  # its sampler takes one batch per step
    fit = trainer(accumulate_grad_batches=2, callbacks=[RemixCallback(module.filter)])
    with pytest.raises(ValueError, match="accumulation_steps=2"):
        fit.fit(module)


def test_callback_rejects_a_warmup_that_fills_the_run() -> None:
    """Issue 20 #6 under Lightning: the sampler alone cannot know max_epochs, the callback can."""
    module = LitRemix(warmup_epochs=4)
    with pytest.raises(ValueError, match="max_epochs=4 epochs, but the sampler's warmup_epochs=4"):
        trainer(callbacks=[RemixCallback(module.filter)]).fit(module)
    assert module.seen == []  # refused before the first batch trained


def test_callback_rejects_a_loader_without_a_remix_sampler() -> None:
    class Plain(LitRemix):
        def train_dataloader(self) -> DataLoader[Any]:
            return DataLoader(self.data, batch_size=4)

    module = Plain()
    with pytest.raises(ValueError, match="batch_sampler=ReassemblingBatchSampler"):
        trainer(callbacks=[RemixCallback(module.filter)]).fit(module)


def test_resume_from_an_epoch_end_checkpoint_replays_the_same_plan(tmp_path: Path) -> None:
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    torch.manual_seed(0)
    whole = LitRemix(warmup_epochs=1)
    trainer(max_epochs=4, callbacks=[RemixCallback(whole.filter)]).fit(whole)

    torch.manual_seed(0)
    first = LitRemix(warmup_epochs=1)
    trainer(
        max_epochs=2, callbacks=[RemixCallback(first.filter), ckpt], enable_checkpointing=True
    ).fit(first)
    resumed = LitRemix(warmup_epochs=1)
    again = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "resumed")
    trainer(
        max_epochs=4, callbacks=[RemixCallback(resumed.filter), again], enable_checkpointing=True
    ).fit(resumed, ckpt_path=str(tmp_path / "last.ckpt"))
    assert sorted(per_epoch(resumed.seen)) == [2, 3]
    assert per_epoch(resumed.seen, "index")[2] == per_epoch(whole.seen, "index")[2]
    assert resumed.filter.history == whole.filter.history


# ------------------------------------------------------------------------ DDP
def test_two_process_ddp_trains_the_same_modality_on_both_ranks(tmp_path: Path) -> None:
    command = [sys.executable, str(Path(__file__).resolve()), "--ddp", str(tmp_path)]
    done = run_script(command, MASTER_ADDR="127.0.0.1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = read_ranks(tmp_path)
    assert [r["world"] for r in ranks] == [[2, 0], [2, 1]]
    seen = [r["seen"] for r in ranks]
    epochs = [per_epoch(s) for s in seen]
    assert sorted(epochs[0]) == sorted(epochs[1]) == [0, 1, 2]
    for epoch in range(3):
        steps = check_step_modalities([epochs[0][epoch], epochs[1][epoch]], accumulation_steps=2)
        if epoch:
            assert set(steps) == {0, 1}
        indices = [i for s in seen for b in per_epoch(s, "index")[epoch] for i in b]
        assert set(indices) == set(range(N))  # the two shards cover the data set
    # One assignment on both ranks: the snapshot combined both ranks' scores.
    assert ranks[0]["history"] == ranks[1]["history"]
    assert [h["epoch"] for h in ranks[0]["history"]] == [1, 2]
    assert ranks[0]["history"][-1]["unscored"] == 0


def _ddp_main(out: Path) -> None:
    torch.manual_seed(0)
    module = LitRemix(batch_size=3, warmup_epochs=1, order="interleave")
    fit = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=3,
        accumulate_grad_batches=2,
        use_distributed_sampler=False,
        reload_dataloaders_every_n_epochs=1,
        callbacks=[RemixCallback(module.filter)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    fit.fit(module)
    record = {
        "world": [fit.world_size, fit.global_rank],
        "seen": module.seen,
        "history": module.filter.history,
    }
    write_rank(out, fit.global_rank, record)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--ddp":
        _ddp_main(Path(sys.argv[2]))
        leave()
