"""Hugging Face ``Trainer``: ``RemixTrainer`` trains remix epochs, checkpoints and resumes exactly.

The model is built locally from a config (a one-layer BERT for the token modality,
a linear encoder for the other); nothing comes from the hub (``HF_HUB_OFFLINE=1``).
One process: a real ``Trainer.train()`` with gradient accumulation, checkpoints
every optimiser step, and resumes from a checkpoint in the middle of a remix epoch
and from one at the end of the warm-up that train exactly the uninterrupted run's
remaining batches to the same weights and score table. Two ``torchrun`` processes
on gloo: every micro-batch of an optimiser step has one modality on both ranks,
every sample trains once per epoch (the padding the sampler counts aside), both
ranks share the history, and a resume on both ranks replays the uninterrupted run.
Run as a script (``python tests/test_transformers.py --worker OUT``) this file is
that worker.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="needs the transformers extra")

from _frameworks import leave, read_ranks, run_script, torchrun, write_rank  # noqa: E402
from hypothesis import given  # noqa: E402
from torch import nn  # noqa: E402
from transformers import BertConfig, BertModel, TrainingArguments  # noqa: E402

from remix_data import (  # noqa: E402
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    mask_features,
)
from remix_data.integrations.transformers import (  # noqa: E402
    INDEX_KEY,
    MODALITY_KEY,
    STATE_NAME,
    RemixTrainer,
    default_outputs,
    planned_steps,
)
from remix_data.testing import build_samplers, check_step_modalities, sampler_configs  # noqa: E402
from remix_data.vocabulary import PAD  # noqa: E402

NAMES = ("text", "audio")
N = 20
EPOCHS = 6


def make_data(n: int = N) -> list[dict[str, Any]]:
    """Token ids that carry the label weakly, audio features that carry it strongly."""
    gen = torch.Generator().manual_seed(0)
    data = []
    for i in range(n):
        y = i % 2
        text = torch.randint(1, 12, (6,), generator=gen)
        text[0] = 1 + y
        audio = torch.randn(3, generator=gen) + 2.0 * y
        data.append({"text": text, "audio": audio, "labels": y})
    return data


class TextAudio(nn.Module):
    """A one-layer BERT over the tokens, a linear audio encoder, a head each, a fused head."""

    def __init__(self) -> None:
        super().__init__()
        config = BertConfig(
            vocab_size=12,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=8,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.text = BertModel(config, add_pooling_layer=False)
        self.audio = nn.Linear(3, 8)
        self.heads = nn.ModuleDict({m: nn.Linear(8, 2) for m in NAMES})
        self.fused = nn.Linear(16, 2)
        gen = torch.Generator().manual_seed(1)  # the same weights in every run, no global seed
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))

    def forward(
        self, text: torch.Tensor, audio: torch.Tensor, modality: torch.Tensor | None = None
    ) -> dict[str, Any]:
        feats = {
            "text": self.text(input_ids=text).last_hidden_state.mean(1),
            "audio": torch.relu(self.audio(audio)),
        }
        if modality is not None:
            feats = mask_features(feats, modality, NAMES)
        fused = self.fused(torch.cat([feats[m] for m in NAMES], 1))
        return {"logits": fused, "head_logits": {m: self.heads[m](feats[m]) for m in NAMES}}


class Recording(RemixTrainer):
    """Records ``(epoch, global step, indices, modality ids)`` of every training micro-batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, int, list[int], list[int]]] = []
        self.padded: dict[int, int] = {}

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kw: Any) -> Any:
        if model.training:
            epoch = self.remix_sampler.epoch
            self.padded[epoch] = sum(self.remix_sampler.stats()["padded"].values())
            index, modality = inputs[INDEX_KEY].tolist(), inputs[MODALITY_KEY].tolist()
            self.seen.append((epoch, self.state.global_step, index, modality))
        return super().compute_loss(model, inputs, *args, **kw)


def arguments(out: Path, **kwargs: Any) -> TrainingArguments:
    options: dict[str, Any] = {
        "num_train_epochs": EPOCHS,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "learning_rate": 0.05,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "steps",
        "save_steps": 1,
        "logging_strategy": "no",
        "disable_tqdm": True,
        "seed": 0,
    }
    return TrainingArguments(str(out), **{**options, **kwargs})


def make_trainer(
    out: Path, *, world: int = 1, rank: int = 0, **kwargs: Any
) -> tuple[Recording, HardSampleFilter]:
    args = arguments(out, **kwargs)
    filt = HardSampleFilter(N, NAMES)
    sampler = ReassemblingBatchSampler(
        filt,
        4,
        warmup_epochs=1,
        order="interleave",
        num_replicas=world,
        rank=rank,
        accumulation_steps=args.gradient_accumulation_steps,
    )
    data = ModalityDecoupler(make_data(), filt, mask="none")
    return Recording(TextAudio(), args, train_dataset=data, sampler=sampler), filt


def final_state(trainer: Recording, filt: HardSampleFilter) -> dict[str, Any]:
    assert trainer.model is not None
    return {
        "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "scores": filt.state_dict(gather=False)["values"],
        "history": filt.history,
    }


def assert_same_final(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k
    torch.testing.assert_close(a["scores"], b["scores"], rtol=0, atol=0, equal_nan=True)
    assert a["history"] == b["history"]


def epoch_steps(seen: list[tuple[int, int, list[int], list[int]]]) -> dict[int, list[int]]:
    """Global steps at the start of each micro-batch, per epoch."""
    steps: dict[int, list[int]] = {}
    for epoch, step, _, _ in seen:
        steps.setdefault(epoch, []).append(step)
    return steps


def assert_once_per_epoch(rows: list[tuple[int, int]], padded: int) -> None:
    """Every sample trains in the epoch; what repeats is the padding the sampler counts
    (rows marked ``PAD``, or, before PAD rows existed, repeats of a real modality)."""
    trained = Counter(i for i, m in rows if m != PAD)
    assert set(trained) == set(range(N))
    repeats = sum(c - 1 for c in trained.values()) + sum(1 for _, m in rows if m == PAD)
    assert repeats == padded


# ------------------------------------------------------------- one process
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("uninterrupted")
    trainer, filt = make_trainer(out)
    result = trainer.train()
    return {"out": out, "trainer": trainer, "filt": filt, "result": result}


def test_the_trainer_runs_the_planned_remix_epochs(uninterrupted: dict[str, Any]) -> None:
    trainer, filt = uninterrupted["trainer"], uninterrupted["filt"]
    seen = trainer.seen
    assert sorted({e for e, *_ in seen}) == list(range(EPOCHS))
    assert [h["epoch"] for h in filt.history] == list(range(1, EPOCHS))
    for epoch in range(EPOCHS):
        batches = [m for e, _, _, m in seen if e == epoch]
        # one modality per optimiser step (2 micro-batches), joint only in warm-up
        steps = check_step_modalities([batches], accumulation_steps=2)
        assert set(steps) <= ({-1} if epoch == 0 else {0, 1})
        rows = [(i, m) for e, _, index, mods in seen if e == epoch
                for i, m in zip(index, mods)]  # fmt: skip
        assert_once_per_epoch(rows, trainer.padded[epoch])
    # every step the Trainer took was a whole 2-micro-batch step of one epoch
    assert uninterrupted["result"].global_step * 2 == len(seen)
    planned = planned_steps(trainer.remix_sampler, EPOCHS)
    assert trainer.state.max_steps == sum(planned)
    steps = [len(s) // 2 for s in epoch_steps(seen).values()]
    assert all(s <= p for s, p in zip(steps, planned))
    # epochs of different lengths, which the Trainer's own arithmetic cannot place
    assert len(set(steps)) > 1
    assert trainer.state.epoch == EPOCHS  # each epoch ran its own length
    assert {m for e, _, _, mods in seen if e > 0 for m in mods} - {PAD} == {0, 1}
    # online scoring: the last epoch's assignment came from the model's own heads
    assert filt.stats()["unscored"] == 0
    assert (Path(uninterrupted["out"]) / "checkpoint-1" / STATE_NAME).is_file()


@pytest.mark.parametrize("where", ["mid last epoch", "end of warm-up"])
def test_resume_from_a_checkpoint_replays_the_uninterrupted_run(
    uninterrupted: dict[str, Any], where: str, tmp_path: Path
) -> None:
    seen = uninterrupted["trainer"].seen
    starts = epoch_steps(seen)
    if where == "end of warm-up":
        step = len(starts[0]) // 2
    else:  # an optimiser step inside the last epoch
        last = starts[EPOCHS - 1]
        step = last[0] + len(last) // 4
        assert last[0] < step <= last[-1]
        # where the Trainer's global_step // steps-per-epoch would place another epoch
        bound = max(planned_steps(uninterrupted["trainer"].remix_sampler, EPOCHS))
        assert step // bound != EPOCHS - 1
    checkpoint = Path(uninterrupted["out"]) / f"checkpoint-{step}"
    trainer, filt = make_trainer(tmp_path)
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.seen == seen[2 * step :]
    assert trainer.seen[0][1] == step
    assert_same_final(
        final_state(uninterrupted["trainer"], uninterrupted["filt"]), final_state(trainer, filt)
    )


def test_resume_true_takes_the_last_checkpoint(uninterrupted: dict[str, Any]) -> None:
    trainer, _ = make_trainer(uninterrupted["out"])
    trainer.train(resume_from_checkpoint=True)  # the run's last step: nothing left
    assert trainer.seen == []
    assert trainer.state.global_step == uninterrupted["result"].global_step


def test_a_checkpoint_without_remix_state_is_refused(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-3").mkdir()
    trainer, _ = make_trainer(tmp_path)
    with pytest.raises(ValueError, match=r"holds no remix_state\.pt"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))


def test_wrong_wiring_fails_at_construction(tmp_path: Path) -> None:
    filt = HardSampleFilter(N, NAMES)
    data = ModalityDecoupler(make_data(), filt)
    args = arguments(tmp_path)

    def build(**kwargs: Any) -> RemixTrainer:
        options: dict[str, Any] = {
            "train_dataset": data,
            "sampler": ReassemblingBatchSampler(filt, 4, accumulation_steps=2),
        }
        return RemixTrainer(TextAudio(), kwargs.pop("args", args), **{**options, **kwargs})

    with pytest.raises(TypeError, match="train_dataset should be a ModalityDecoupler"):
        build(train_dataset=make_data())
    with pytest.raises(TypeError, match="sampler should be a ReassemblingBatchSampler"):
        build(sampler=torch.utils.data.BatchSampler(range(N), 4, False))
    with pytest.raises(ValueError, match="accumulation_steps=2, but got accumulation_steps=1"):
        build(sampler=ReassemblingBatchSampler(filt, 4))
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2, but got"):
        build(args=arguments(tmp_path, gradient_accumulation_steps=1))
    with pytest.raises(ValueError, match="num_replicas=1, rank=0"):
        build(sampler=ReassemblingBatchSampler(filt, 4, num_replicas=2, rank=1))
    with pytest.raises(ValueError, match="max_steps=5"):
        build(args=arguments(tmp_path, max_steps=5))
    with pytest.raises(ValueError, match=r"num_train_epochs=2\.5"):
        build(args=arguments(tmp_path, num_train_epochs=2.5))
    with pytest.raises(ValueError, match="ignore_data_skip=True"):
        build(args=arguments(tmp_path, ignore_data_skip=True))
    with pytest.raises(ValueError, match="num_train_epochs=2 epochs, but the sampler's warmup"):
        build(
            args=arguments(tmp_path, num_train_epochs=2),
            sampler=ReassemblingBatchSampler(filt, 4, accumulation_steps=2, warmup_epochs=2),
        )
    other = HardSampleFilter(N + 1, NAMES)
    with pytest.raises(ValueError, match="train_dataset holds 20 samples"):
        build(sampler=ReassemblingBatchSampler(other, 4, accumulation_steps=2))


def test_default_outputs_names_what_the_model_should_return() -> None:
    fused, heads = default_outputs((torch.zeros(1, 2), {"text": torch.zeros(1, 2)}))
    assert fused.shape == (1, 2) and list(heads) == ["text"]
    with pytest.raises(TypeError, match=r"pass remix_outputs=\.\.\. to RemixTrainer"):
        default_outputs(torch.zeros(1, 2))


@given(sampler_configs(max_samples=60, max_replicas=4, max_accumulation=3))
def test_planned_steps_bound_every_epoch(config: dict[str, Any]) -> None:
    """The Trainer's max_steps never cuts an epoch short: each epoch's steps <= the bound."""
    samplers = build_samplers(config)
    epoch = config["epoch"]
    bound = planned_steps(samplers[0], epoch + 1)[epoch]
    for sampler in samplers:
        sampler.set_epoch(epoch)
        steps = len(sampler) // sampler.accumulation_steps
        assert len(sampler) % sampler.accumulation_steps == 0 or sampler.accumulation_steps == 1
        assert steps <= bound


# ------------------------------------------------------------ two processes
def test_two_ranks_train_one_modality_per_step_and_resume_exactly(tmp_path: Path) -> None:
    command = torchrun(Path(__file__).resolve(), tmp_path)
    done = run_script(command, timeout=300, HF_HUB_OFFLINE="1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = read_ranks(tmp_path)
    assert [r["world"] for r in ranks] == [[2, 0], [2, 1]]
    assert ranks[0]["history"] == ranks[1]["history"]
    assert [h["epoch"] for h in ranks[0]["history"]] == list(range(1, EPOCHS))
    for epoch in range(EPOCHS):
        per_rank = [[b for b in r["seen"] if b[0] == epoch] for r in ranks]
        # both ranks take the same optimiser steps, each step one modality on both
        assert [b[1] for b in per_rank[0]] == [b[1] for b in per_rank[1]]
        modalities = check_step_modalities(
            [[m for *_, m in batches] for batches in per_rank], accumulation_steps=2
        )
        assert set(modalities) <= ({-1} if epoch == 0 else {0, 1})
        rows = [(i, m) for batches in per_rank for _, _, index, mods in batches
                for i, m in zip(index, mods)]  # fmt: skip
        padded = ranks[0]["padded"][str(epoch)]
        assert padded == ranks[1]["padded"][str(epoch)]
        assert_once_per_epoch(rows, padded)
    remixed = {m for r in ranks for b in r["seen"] if b[0] > 0 for m in b[3]}
    assert remixed - {PAD} == {0, 1}
    for r in ranks:  # the resumed run trains exactly what the uninterrupted one did next
        step = r["resumed_from"]
        assert r["resumed"] == r["seen"][2 * step :] and r["resumed"]
        assert r["resumed_history"] == r["history"]


def _worker(out: Path) -> None:
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    first, filt = make_trainer(out / "run", world=world, rank=rank, ddp_backend="gloo")
    first.train()
    starts = epoch_steps(first.seen)
    step = starts[2][0] + len(starts[2]) // 4  # inside the second remix epoch
    second, again = make_trainer(out / "resumed", world=world, rank=rank, ddp_backend="gloo")
    second.train(resume_from_checkpoint=str(out / "run" / f"checkpoint-{step}"))
    record = {
        "world": [first.args.world_size, first.args.process_index],
        "seen": first.seen,
        "padded": first.padded,
        "history": filt.history,
        "resumed_from": step,
        "resumed": second.seen,
        "resumed_history": again.history,
    }
    write_rank(out, rank, record)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(Path(sys.argv[2]))
        leave()
