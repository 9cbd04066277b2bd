"""Exact resume with torchdata's ``StatefulDataLoader`` (real workers, real checkpoints).

A training loop feeds per-sample losses back into the filter after every batch.
It is stopped after ``k`` batches (mid warm-up, mid remix epoch, right after an
epoch's last batch, or after an epoch's loop ended), its loader and filter
states go through ``torch.save`` / ``torch.load(weights_only=True)``, and a
freshly built filter, sampler, dataset and loader continue from them. The
batches of the resumed run, and the final score table, must equal an
uninterrupted run's.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import Stateful, StatefulDataLoader

from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler

# torchdata 0.11 calls a deprecated torch API on every loader it builds
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")

N, BATCH, WARMUP, EPOCHS = 45, 4, 1, 3
MODALITIES = ("audio", "video")

Record = tuple[int, list[int], list[int]]  # (epoch, indices, modalities) of one batch


class Pairs(Dataset[dict[str, Any]]):
    """Dict samples whose features encode the index (so they travel through workers)."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, index: int) -> dict[str, Any]:
        x = torch.tensor([float(index), float(index % 7)])
        return {"audio": x, "video": torch.stack((x[1], x[0], x[0] % 3)), "label": index % 3}


def losses(sample: dict[str, torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:
    """Deterministic per-sample 'losses' from the (masked) features; they vary by epoch."""
    audio = sample["audio"]
    video = sample["video"]
    return {
        "audio": (audio[:, 0] * (3 + epoch)) % 11 + audio[:, 1],
        "video": (video[:, 1] * (5 + 2 * epoch)) % 13 + video[:, 2],
    }


class Run:
    """Filter, sampler and loader built from scratch, as a restarted job would."""

    def __init__(self, *, persistent: bool = False, num_workers: int = 2) -> None:
        self.filter = HardSampleFilter(N, MODALITIES, score="loss")
        self.sampler = ReassemblingBatchSampler(
            self.filter, BATCH, warmup_epochs=WARMUP, order="random", seed=11
        )
        self.loader = StatefulDataLoader(
            ModalityDecoupler(Pairs(), MODALITIES),
            batch_sampler=self.sampler,
            num_workers=num_workers,
            persistent_workers=persistent and num_workers > 0,
        )
        self.record: list[Record] = []

    def train(
        self, first_epoch: int = 0, *, stop_after: int | None = None, stop_at_end: int | None = None
    ) -> bytes | None:
        """Run epochs from ``first_epoch``; return a checkpoint when told to stop.

        ``stop_after=k`` saves inside the loop once ``k`` batches were recorded
        (resume in the same epoch); ``stop_at_end=e`` saves after epoch ``e``'s
        loop ended (resume at ``e + 1``).
        """
        for epoch in range(first_epoch, EPOCHS):
            self.sampler.set_epoch(epoch)
            for sample, index, modality in self.loader:
                self.record.append((epoch, index.tolist(), modality.tolist()))
                self.filter.update(index, losses(sample, epoch), modality=modality)
                if stop_after is not None and len(self.record) == stop_after:
                    return self.checkpoint(epoch)
            if stop_at_end == epoch:
                return self.checkpoint(epoch + 1)
        return None

    def checkpoint(self, resume_epoch: int) -> bytes:
        buffer = io.BytesIO()
        torch.save(
            {
                "epoch": resume_epoch,
                "loader": self.loader.state_dict(),
                "filter": self.filter.state_dict(),
            },
            buffer,
        )
        return buffer.getvalue()

    def resume(self, checkpoint: bytes, *, restore_filter: bool = True) -> None:
        state = torch.load(io.BytesIO(checkpoint), weights_only=True)
        if restore_filter:
            self.filter.load_state_dict(state["filter"])
        self.loader.load_state_dict(state["loader"])
        self.train(state["epoch"])


@pytest.fixture(scope="module")
def uninterrupted() -> Run:
    run = Run()
    run.train()
    return run


def _epoch_lengths(run: Run) -> list[int]:
    return [sum(1 for e, _, _ in run.record if e == epoch) for epoch in range(EPOCHS)]


def _check_resumed(full: Run, first: Run, second: Run) -> None:
    assert first.record + second.record == full.record
    mine, theirs = second.filter.state_dict(), full.filter.state_dict()
    torch.testing.assert_close(mine["values"], theirs["values"], equal_nan=True)
    assert torch.equal(mine["fresh"], theirs["fresh"])
    assert mine["history"] == theirs["history"]
    assert second.sampler.epoch == full.sampler.epoch == EPOCHS - 1


def test_uninterrupted_run_is_a_real_remix(uninterrupted: Run) -> None:
    record = uninterrupted.record
    assert {m for e, _, mods in record if e < WARMUP for m in mods} == {-1}
    for epoch in range(WARMUP, EPOCHS):
        batches = [mods for e, _, mods in record if e == epoch]
        assert all(len(set(mods)) == 1 for mods in batches)
        assert {mods[0] for mods in batches} == {0, 1}  # both modalities get batches
        keys = sorted(i for e, idx, _ in record if e == epoch for i in idx)
        assert keys == list(range(N))
    # the assignment changes between remix epochs, so resuming must restore the scores
    first, second = uninterrupted.filter.history
    assert first["counts"] != second["counts"]


@pytest.mark.parametrize(
    "where",
    ["mid warm-up", "mid remix epoch", "last batch of warm-up", "last batch of remix epoch"],
)
def test_resume_mid_epoch_yields_exactly_the_remaining_batches(
    uninterrupted: Run, where: str
) -> None:
    lengths = _epoch_lengths(uninterrupted)
    stop = {
        "mid warm-up": 5,
        "mid remix epoch": lengths[0] + 3,
        "last batch of warm-up": lengths[0],
        "last batch of remix epoch": lengths[0] + lengths[1],
    }[where]
    first = Run()
    checkpoint = first.train(stop_after=stop)
    assert checkpoint is not None and len(first.record) == stop
    second = Run()
    second.resume(checkpoint)
    _check_resumed(uninterrupted, first, second)


@pytest.mark.parametrize("epoch", [0, 1])
def test_resume_after_an_epoch_ended_starts_the_next_epoch(uninterrupted: Run, epoch: int) -> None:
    first = Run()
    checkpoint = first.train(stop_at_end=epoch)
    assert checkpoint is not None
    second = Run()
    second.resume(checkpoint)
    _check_resumed(uninterrupted, first, second)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_with_persistent_workers_or_none(uninterrupted: Run, num_workers: int) -> None:
    stop = _epoch_lengths(uninterrupted)[0] + 6
    first = Run(persistent=True, num_workers=num_workers)
    checkpoint = first.train(stop_after=stop)
    assert checkpoint is not None
    second = Run(persistent=True, num_workers=num_workers)
    second.resume(checkpoint)
    _check_resumed(uninterrupted, first, second)
    end = Run(persistent=True, num_workers=num_workers)
    checkpoint = end.train(stop_at_end=1)
    assert checkpoint is not None
    resumed = Run(persistent=True, num_workers=num_workers)
    resumed.resume(checkpoint)
    _check_resumed(uninterrupted, end, resumed)


def test_resume_without_the_filter_state_raises_a_clear_error(uninterrupted: Run) -> None:
    first = Run()
    checkpoint = first.train(stop_after=_epoch_lengths(uninterrupted)[0] + 2)
    assert checkpoint is not None
    second = Run()
    with pytest.raises(ValueError, match="restore the filter's state"):
        second.resume(checkpoint, restore_filter=False)


def test_sampler_state_is_small_and_plain() -> None:
    """``StatefulDataLoader`` asks for it once per batch: no per-sample tables."""
    run = Run(num_workers=0)
    assert isinstance(run.sampler, Stateful) and isinstance(run.filter, Stateful)
    run.sampler.set_epoch(1)
    it = iter(run.loader)
    next(it)
    state = run.sampler.state_dict()
    assert state["epoch"] == 1 and state["yielded"] == 1
    assert state["batches"] == len(run.sampler)
    plain = (int, float, bool, str, tuple, type(None))
    assert all(isinstance(v, plain) for v in state.values())
    assert all(isinstance(c, int) for c in state["samples"])


def test_sampler_state_for_another_configuration_is_rejected() -> None:
    run = Run(num_workers=0)
    state = run.sampler.state_dict()
    filt = HardSampleFilter(N + 1, MODALITIES, score="loss")
    with pytest.raises(ValueError, match=f"num_samples={N}"):
        ReassemblingBatchSampler(filt, BATCH, warmup_epochs=WARMUP, seed=11).load_state_dict(state)
    other_modalities = HardSampleFilter(N, ("audio", "text"), score="loss")
    with pytest.raises(ValueError, match="modalities=\\('audio', 'video'\\)"):
        ReassemblingBatchSampler(
            other_modalities, BATCH, warmup_epochs=WARMUP, order="random", seed=11
        ).load_state_dict(state)
    for key, value in (
        ("num_replicas", 2),
        ("accumulation_steps", 2),
        ("warmup_epochs", 0),
        ("order", "sequential"),
        ("drop_last", True),
    ):
        with pytest.raises(ValueError, match=f"{key}={value!r}"):
            run.sampler.load_state_dict({**state, key: value})
    with pytest.raises(ValueError, match="yielded"):
        run.sampler.load_state_dict({**state, "yielded": 3, "batches": 2, "samples": (N,)})
    with pytest.raises(TypeError, match="mapping"):
        run.sampler.load_state_dict([("epoch", 0)])  # type: ignore[arg-type]


def test_filter_state_is_validated() -> None:
    filt = HardSampleFilter(6, MODALITIES, score="loss")
    filt.update(torch.arange(6), {"audio": torch.arange(6.0), "video": torch.ones(6)})
    filt.snapshot(2)
    state = filt.state_dict()
    assert state["world_size"] == 1
    bad_cases: list[tuple[dict[str, Any], str]] = [
        ({"world_size": 2}, "world_size=2"),
        ({"values": torch.zeros(2, 5)}, r"state\['values'\] should have shape \(2, 6\)"),
        ({"values": torch.zeros(2, 6, dtype=torch.int64)}, "dtype torch.float32"),
        ({"values": torch.full((2, 6), torch.inf)}, "inf"),
        ({"fresh": torch.zeros(3, 6, dtype=torch.bool)}, "fresh"),
        ({"snapshot": torch.full((6,), 2, dtype=torch.int8)}, "modality ids"),
        ({"snapshot": None}, "snapshot_epoch"),
        ({"snapshot_epoch": -1}, "snapshot_epoch"),
        ({"weights": [1.0] * 6}, "should be a tensor"),
    ]
    for change, match in bad_cases:
        fresh = HardSampleFilter(6, MODALITIES, score="loss")
        with pytest.raises((ValueError, TypeError), match=match):
            fresh.load_state_dict({**state, **change})
        assert fresh.snapshot_epoch is None  # nothing was half-loaded
    restored = HardSampleFilter(6, MODALITIES, score="loss")
    restored.load_state_dict(state)
    assert restored.snapshot(2).tolist() == filt.snapshot(2).tolist()
