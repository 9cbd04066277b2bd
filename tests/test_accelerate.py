"""Accelerate: ``prepare_loader`` keeps every step unimodal on all ranks; ``prepare`` does not.

The mechanics are pinned on one process with accelerate's own ``BatchSamplerShard``
(what ``accelerator.prepare`` puts around a batch sampler when there are several
processes); the real thing runs as two ``torchrun`` processes on gloo. Run as a
script (``python tests/test_accelerate.py --worker OUT``) this file is that worker.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from _frameworks import (
    NAMES,
    LateFusion,
    N,
    free_port,
    leave,
    make_data,
    read_ranks,
    run_script,
    write_rank,
)
from torch.utils.data import DataLoader

accelerate = pytest.importorskip("accelerate", reason="needs accelerate (the test extra)")

from accelerate import Accelerator  # noqa: E402
from accelerate.data_loader import BatchSamplerShard  # noqa: E402

from remix_data import (  # noqa: E402
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    remix_loss,
)
from remix_data.integrations.accelerate import prepare_loader  # noqa: E402
from remix_data.testing import check_epoch, check_step_modalities  # noqa: E402


def decoupled() -> ModalityDecoupler:
    return ModalityDecoupler(make_data(), NAMES, mask="none")


@pytest.fixture(scope="module")
def accelerator() -> Accelerator:
    return Accelerator(cpu=True)


# ------------------------------------------------------------- one process
def test_prepare_loader_keeps_the_sampler_and_forwards_set_epoch(accelerator: Accelerator) -> None:
    filt = HardSampleFilter(N, NAMES)
    sampler = ReassemblingBatchSampler(filt, 4, warmup_epochs=1)
    loader = prepare_loader(accelerator, DataLoader(decoupled(), batch_sampler=sampler))
    assert loader.batch_sampler is sampler and len(loader) == len(sampler)
    assert accelerator.prepare(loader) is loader  # registered, never wrapped twice
    got = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = [modality.tolist() for _, _, modality in loader]
        assert sampler.epoch == epoch and len(batches) == len(sampler)
        got.append(check_step_modalities([batches]))
    assert set(got[0]) == {ALL} and set(got[1]) == set(got[2]) == {0, 1}


def test_prepare_loader_checks_the_world_and_the_accumulation(accelerator: Accelerator) -> None:
    filt = HardSampleFilter(N, NAMES)
    data = decoupled()
    with pytest.raises(TypeError, match="batch_sampler=ReassemblingBatchSampler"):
        prepare_loader(accelerator, DataLoader(data, batch_size=4))
    wrong = ReassemblingBatchSampler(filt, 4, num_replicas=2, rank=1)
    with pytest.raises(ValueError, match="num_replicas=1, rank=0"):
        prepare_loader(accelerator, DataLoader(data, batch_sampler=wrong))
    accumulating = Accelerator(cpu=True, gradient_accumulation_steps=2)
    try:
        one_step = ReassemblingBatchSampler(filt, 4)
        with pytest.raises(ValueError, match="accumulation_steps=2"):
            prepare_loader(accumulating, DataLoader(data, batch_sampler=one_step))
        two = ReassemblingBatchSampler(filt, 4, accumulation_steps=2)
        assert (
            prepare_loader(accumulating, DataLoader(data, batch_sampler=two)).batch_sampler is two
        )
    finally:
        Accelerator(cpu=True)  # gradient state is shared: back to one step


def shards(sampler: ReassemblingBatchSampler, **kwargs: Any) -> list[list[list[tuple[int, int]]]]:
    """What each of 2 processes gets from accelerate's own BatchSamplerShard."""
    return [list(BatchSamplerShard(sampler, 2, r, **kwargs)) for r in range(2)]


def modalities(ranks: list[list[list[tuple[int, int]]]]) -> list[list[list[int]]]:
    return [[[m for _, m in b] for b in batches] for batches in ranks]


def test_accelerates_round_robin_shard_breaks_the_invariants() -> None:
    """``accelerator.prepare``'s default: batch t to process t % 2, the tail padded."""
    filt = HardSampleFilter(20, NAMES)  # unscored: 10 samples per modality
    # the paper's tail: one global plan a a a a(1) b b b b(1)
    sampler = ReassemblingBatchSampler(filt, 3, tail="keep")
    sampler.set_epoch(0)
    ranks = shards(sampler)  # split_batches=False, even_batches=True (the defaults)
    # The step of batches 2 and 3 (a, short a) is skipped on both ranks, as is rank 0's
    # short last batch; rank 1's is completed with keys of the first batch ("a").
    assert modalities(ranks) == [
        [[0, 0, 0], [1, 1, 1], [1, 1, 1]],
        [[0, 0, 0], [1, 1, 1], [1, 0, 0]],
    ]
    with pytest.raises(AssertionError, match="unimodal: rank 1 batch 2 holds modalities"):
        check_step_modalities(modalities(ranks))
    seen = {i for batches in ranks for b in batches for i, _ in b}
    assert len(seen) == 16  # four samples of "a" never trained
    assert len(BatchSamplerShard(sampler, 2, 0)) == 4 != len(ranks[0])  # len() is off

    sampler = ReassemblingBatchSampler(
        filt, 3, order="interleave", tail="keep"
    )  # a b a b a b a(1) b(1)
    ranks = shards(sampler)
    assert modalities(ranks) == [
        [[0, 0, 0]] * 3,
        [[1, 1, 1]] * 3 + [[1, 0, 0]],
    ]  # every step mixes modalities, and the ranks disagree on the step count (DDP hangs)
    with pytest.raises(AssertionError, match="unimodal: rank 1 batch 3 holds modalities"):
        check_step_modalities(modalities(ranks))
    with pytest.raises(AssertionError, match="len honest: ranks received different batch"):
        check_step_modalities([[b[0] for b in r] for r in modalities(ranks)])


def test_a_distributed_sampler_is_sharded_twice_by_prepare() -> None:
    filt = HardSampleFilter(40, NAMES)
    rank0 = ReassemblingBatchSampler(filt, 4, num_replicas=2, rank=0)
    rank0.set_epoch(0)
    assert len(list(BatchSamplerShard(rank0, 2, 0))) == len(rank0) // 2


def test_split_batches_with_drop_last_is_the_flags_alternative() -> None:
    """Each process slices the same global batch; only full batches keep that exact."""
    filt = HardSampleFilter(20, NAMES)
    sampler = ReassemblingBatchSampler(filt, 4, order="interleave")  # global batch of 4
    sampler.set_epoch(0)
    broken = shards(sampler, split_batches=True)  # a b a b a(2) b(2)
    # The short "a" batch inside the epoch is skipped; the last one is padded with the
    # first batch's keys, so its step gives rank 0 "b" and rank 1 "a".
    assert {i for r in broken for b in r for i, _ in b} == set(range(20)) - {6, 12}
    with pytest.raises(AssertionError, match="same modality per step: step 4"):
        check_step_modalities(modalities(broken))
    sampler = ReassemblingBatchSampler(filt, 4, order="interleave", drop_last=True)
    sampler.set_epoch(0)
    ranks = shards(sampler, split_batches=True)
    check_step_modalities(modalities(ranks))
    assert [len(b) for b in ranks[0]] == [2] * len(sampler)


def test_the_sampler_the_helper_needs_passes_check_epoch() -> None:
    filt = HardSampleFilter(N, NAMES)
    check_epoch(
        [
            ReassemblingBatchSampler(filt, 3, num_replicas=2, rank=r, accumulation_steps=2)
            for r in range(2)
        ],
        epoch=0,
    )


# ------------------------------------------------------------ two processes
def test_two_processes_train_the_same_modality_at_every_step(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        str(Path(__file__).resolve()), "--worker", str(tmp_path),
    ]  # fmt: skip
    done = run_script(command)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = read_ranks(tmp_path)
    assert [r["world"] for r in ranks] == [[2, 0, "MULTI_CPU"], [2, 1, "MULTI_CPU"]]

    # The supported path: prepare_loader, accumulate over 2 micro-batches.
    for epoch in range(3):
        steps = [[b for b in r["supported"] if b["epoch"] == epoch] for r in ranks]
        assert [len(s) for s in steps] == [ranks[0]["planned"][epoch]] * 2
        check_step_modalities([[b["modality"] for b in s] for s in steps], accumulation_steps=2)
        # accelerate syncs gradients exactly at the end of each 2-batch step
        assert [b["sync"] for b in steps[0]] == [False, True] * (len(steps[0]) // 2)
        assert {i for s in steps for b in s for i in b["index"]} == set(range(N))
    assert ranks[0]["history"] == ranks[1]["history"]
    assert [h["epoch"] for h in ranks[0]["history"]] == [1, 2]

    # The naive path: accelerator.prepare(loader) over one global interleaved plan
    # (a b a b ...): round-robin gives rank 0 every "a" batch and rank 1 every "b"
    # batch, one more batch to rank 1 (a DDP step would wait forever), and pads
    # rank 1's last batch with "a" keys.
    naive = [r["naive"] for r in ranks]
    assert [len(n) for n in naive] == [7, 8]
    assert all(set(b) == {0} for b in naive[0]) and all(set(b) == {1} for b in naive[1][:7])
    assert set(naive[1][7]) == {0, 1}
    with pytest.raises(AssertionError, match="remix invariant broken: unimodal"):
        check_step_modalities(naive)
    # ... and with a sampler that already shards: half of each rank's plan is lost.
    assert [len(r["twice"]) for r in ranks] == [ranks[0]["twice_planned"] // 2] * 2


def _worker(out: Path) -> None:
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    world, rank = accelerator.num_processes, accelerator.process_index
    torch.manual_seed(0)
    data = decoupled()
    filt = HardSampleFilter(N, NAMES)
    sampler = ReassemblingBatchSampler(
        filt, 3, warmup_epochs=1, order="interleave", num_replicas=world, rank=rank,
        accumulation_steps=2,
    )  # fmt: skip
    loader = prepare_loader(accelerator, DataLoader(data, batch_sampler=sampler))
    net = LateFusion()
    model, optimizer = accelerator.prepare(net, torch.optim.SGD(net.parameters(), lr=0.1))
    supported, planned = [], []
    for epoch in range(3):
        loader.set_epoch(epoch)
        planned.append(len(loader))
        for sample, index, modality in loader:
            with accelerator.accumulate(model):
                fused, heads = model(sample, modality)
                accelerator.backward(remix_loss(fused, heads, sample["label"], modality, NAMES))
                optimizer.step()
                optimizer.zero_grad()
            filt.update(index, heads, modality=modality)  # online scoring
            supported.append(
                {
                    "epoch": epoch,
                    "modality": modality.tolist(),
                    "index": index.tolist(),
                    "sync": accelerator.sync_gradients,
                }
            )

    # Naive: hand accelerate one global plan and let prepare() shard it.
    naive_sampler = ReassemblingBatchSampler(
        HardSampleFilter(N, NAMES), 3, order="interleave", num_replicas=1, rank=0, tail="keep"
    )
    naive_loader = accelerator.prepare(DataLoader(data, batch_sampler=naive_sampler))
    naive = [modality.tolist() for _, _, modality in naive_loader]
    # Naive: a sampler that shards by itself (world from torch.distributed), then prepare().
    sharded = ReassemblingBatchSampler(HardSampleFilter(N, NAMES), 3)
    twice = [m.tolist() for _, _, m in accelerator.prepare(DataLoader(data, batch_sampler=sharded))]
    record = {
        "world": [world, rank, str(accelerator.distributed_type).split(".")[-1]],
        "supported": supported,
        "planned": planned,
        "history": filt.history,
        "naive": naive,
        "twice": twice,
        "twice_planned": len(sharded),
    }
    write_rank(out, rank, record)
    accelerator.end_training()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(Path(sys.argv[2]))
        leave()
