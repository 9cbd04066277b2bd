"""Faults: two gloo ranks killed with SIGKILL and restarted from the last checkpoint,
and a DataLoader worker killed mid-epoch.

The ranks train a small DDP model with online scoring from a ``StatefulDataLoader``
with 2 workers each and checkpoint every ``K`` steps the way the recipe says:
``model``, ``loader`` and ``filter`` states taken on every rank (the filter's is a
collective that gathers every rank's unsynced scores), written by rank 0 alone,
atomically. A chain of runs is killed at steps drawn at random (mid warm-up, right
after a snapshot, mid remix epoch); each fresh pair restarts from the checkpoint
the killed pair left. Every rank logs what it trained and every snapshot it took;
the tests compare the logs with an uninterrupted run of the same seeds.

Bound on repeats: a run killed before step ``s`` restarts at the last checkpoint
``c = K * (s // K)``, so the steps ``c .. s-1`` (at most ``K - 1`` steps, i.e.
``(K - 1) * WORLD * BATCH`` samples) are trained twice (once by the killed run) and
no sample is lost.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from _frameworks import LateFusion, make_data, run_script
from torchdata.stateful_dataloader import StatefulDataLoader

from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler, remix_loss
from remix_data.gloo import GlooRanks

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")

WORLD, N, BATCH, WARMUP, EPOCHS, K, CLASSES = 2, 37, 3, 2, 4, 4, 3
MODALITIES = ("audio", "video")
DIMS = {"audio": 4, "video": 3}  # feature sizes, in MODALITIES order
WARMUP_STEPS = WARMUP * math.ceil(N / (WORLD * BATCH))  # joint epochs are padded to full steps


def pairs() -> list[dict[str, torch.Tensor]]:
    """Dict samples of two modalities and a label (deterministic: a seeded generator)."""
    return make_data(N, seed=3, dims=DIMS, shifts=(1.0, 0.3), classes=CLASSES)


def net() -> LateFusion:
    """Encoders without masking: every head sees its own features (DDP needs them all)."""
    return LateFusion(DIMS, hidden=6, classes=CLASSES)


def _train(rank: int, workdir: str, run: str, kill_at: int | None, resume: bool) -> None:
    """One rank of one run; pauses before step ``kill_at`` until the test kills it."""
    from torch.nn.parallel import DistributedDataParallel

    out = Path(workdir)
    log = (out / f"{run}-rank{rank}.jsonl").open("w", buffering=1)
    torch.manual_seed(0)
    model = net()
    filt = HardSampleFilter(N, MODALITIES)
    sampler = ReassemblingBatchSampler(filt, BATCH, warmup_epochs=WARMUP, order="random", seed=5)
    data = ModalityDecoupler(pairs(), MODALITIES)
    loader = StatefulDataLoader(data, batch_sampler=sampler, num_workers=2, persistent_workers=True)
    step, first_epoch = 0, 0
    if resume:  # rank 0's checkpoint on every rank
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        model.load_state_dict(state["model"])
        filt.load_state_dict(state["filter"])
        loader.load_state_dict(state["loader"])
        step, first_epoch = state["step"], state["epoch"]
    ddp = DistributedDataParallel(model)
    for epoch in range(first_epoch, EPOCHS):
        taken = filt.snapshot_epoch == epoch  # restored with a checkpoint of this epoch
        sampler.set_epoch(epoch)  # after warm-up: the snapshot, one collective
        if not sampler.is_warmup():
            record: dict[str, Any] = {"snapshot": epoch, "assign": filt.snapshot(epoch).tolist()}
            if not taken:  # the synced table this run's snapshot was computed from
                values = filt.state_dict(gather=False)["values"].tolist()
                record["values"] = [[None if math.isnan(v) else v for v in r] for r in values]
            log.write(json.dumps(record) + "\n")
        for sample, index, modality in loader:
            if step == kill_at:
                (out / f"{run}-reached{rank}").touch()
                time.sleep(300)  # the test kills the pair here
            fused, heads = ddp(sample)
            loss = remix_loss(fused, heads, sample["label"], modality, MODALITIES)
            loss.backward()  # DDP averages the gradients
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
                    p.grad = None
            filt.update(index, {m: h.detach() for m, h in heads.items()}, modality=modality)
            batch = {"step": step, "epoch": epoch, "index": index.tolist()}
            log.write(json.dumps({**batch, "modality": modality.tolist()}) + "\n")
            step += 1
            if step % K == 0:  # every rank takes the states; rank 0 writes them
                state = {
                    "model": model.state_dict(),
                    "loader": loader.state_dict(),
                    "filter": filt.state_dict(),  # a collective under DDP
                    "epoch": epoch,
                    "step": step,
                }
                if dist.get_rank() == 0:
                    torch.save(state, out / "checkpoint.tmp")
                    os.replace(out / "checkpoint.tmp", out / "checkpoint.pt")
    log.close()


def _launch(workdir: Path, run: str, kill_at: int | None, resume: bool) -> None:
    with GlooRanks(_train, WORLD, workdir, (str(workdir), run, kill_at, resume)) as ranks:
        if kill_at is None:
            ranks.join(timeout=60)
            return
        reached = [workdir / f"{run}-reached{r}" for r in range(WORLD)]
        deadline = time.monotonic() + 60
        while not all(p.exists() for p in reached):
            assert all(p.is_alive() for p in ranks.processes), f"run {run} died early"
            assert time.monotonic() < deadline, f"run {run} never reached step {kill_at}"
            time.sleep(0.05)
        ranks.kill()  # SIGKILL: ranks and their DataLoader workers
        assert [p.exitcode for p in ranks.processes] == [-signal.SIGKILL] * WORLD


def _read(path: Path) -> list[dict[str, Any]]:
    """JSON lines of a log; a line cut short by SIGKILL is dropped."""
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def _batches(records: list[dict[str, Any]]) -> dict[int, list[tuple[int, int]]]:
    return {r["step"]: list(zip(r["index"], r["modality"])) for r in records if "step" in r}


def _snapshots(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["snapshot"]: r for r in records if "snapshot" in r}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run, then one run killed thrice and restarted from its checkpoints."""
    tmp = tmp_path_factory.mktemp("faults")
    whole_dir, chain_dir = tmp / "whole", tmp / "chain"
    whole_dir.mkdir()
    chain_dir.mkdir()
    _launch(whole_dir, "whole", None, False)
    whole = [_read(whole_dir / f"whole-rank{r}.jsonl") for r in range(WORLD)]
    steps = [max(_batches(w)) + 1 for w in whole]
    assert steps[0] == steps[1]
    starts = {}
    for r in whole[0]:
        starts.setdefault(r.get("epoch"), r.get("step"))
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    snap_epoch = rng.choice(range(WARMUP, EPOCHS))
    kills = {
        # after the first checkpoint (step K): a kill before it leaves nothing to restart from
        "warm-up": rng.randrange(K, WARMUP_STEPS),
        "after snapshot": starts[snap_epoch],
    }
    later = range(starts[snap_epoch] + 1, steps[0] - 1)
    kills["mid remix epoch"] = rng.choice([s for s in later if s not in starts.values()])
    runs = []
    for i, (where, kill_at) in enumerate([*kills.items(), ("to the end", None)]):
        resume = i > 0
        restart = None
        if resume:
            restart = torch.load(chain_dir / "checkpoint.pt", weights_only=True)["step"]
        _launch(chain_dir, f"run{i}", kill_at, resume)
        logs = [_read(chain_dir / f"run{i}-rank{r}.jsonl") for r in range(WORLD)]
        runs.append({"where": where, "kill_at": kill_at, "restart": restart, "logs": logs})
    return {"whole": whole, "runs": runs, "seed": seed, "steps": steps[0], "starts": starts}


def test_warmup_steps_are_what_the_kill_schedule_assumes(chain: dict[str, Any]) -> None:
    assert chain["starts"][WARMUP] == WARMUP_STEPS
    assert chain["starts"][EPOCHS - 1] < chain["steps"]


def test_restarted_pairs_train_exactly_the_uninterrupted_batches(chain: dict[str, Any]) -> None:
    seed, whole = chain["seed"], chain["whole"]
    for previous, run in zip(chain["runs"], chain["runs"][1:]):
        context = f"seed={seed}, {previous['where']} kill before step {previous['kill_at']}"
        restart, end = run["restart"], run["kill_at"] or chain["steps"]
        assert restart == K * (previous["kill_at"] // K), context
        for rank in range(WORLD):
            got = _batches(run["logs"][rank])
            expected = {s: b for s, b in _batches(whole[rank]).items() if restart <= s < end}
            assert got == expected, context


def test_snapshots_after_a_restart_hold_the_uninterrupted_scores(chain: dict[str, Any]) -> None:
    """The synced score table and the assignment of every later epoch are identical."""
    whole = [_snapshots(w) for w in chain["whole"]]
    computed = set()
    for run in chain["runs"][1:]:
        for rank in range(WORLD):
            for epoch, snap in _snapshots(run["logs"][rank]).items():
                context = f"seed={chain['seed']}, epoch {epoch}"
                assert snap["assign"] == whole[rank][epoch]["assign"], context
                if "values" in snap:  # computed by this run, after a restart
                    assert snap["values"] == whole[rank][epoch]["values"], context
                    computed.add(epoch)
    assert whole[0][WARMUP]["values"] == whole[1][WARMUP]["values"]  # synced: one table
    assert WARMUP in computed  # from a checkpoint holding both ranks' warm-up scores
    assert len(computed) >= 2  # and at least one more remix epoch after another kill


def test_no_sample_is_lost_and_repeats_stay_within_the_checkpoint_interval(
    chain: dict[str, Any],
) -> None:
    whole = [_batches(w) for w in chain["whole"]]
    trained: list[dict[int, list[tuple[int, int]]]] = [{} for _ in range(WORLD)]
    repeated = 0
    for run in chain["runs"]:
        for rank in range(WORLD):
            for step, batch in _batches(run["logs"][rank]).items():
                if step in trained[rank]:
                    assert trained[rank][step] == batch  # a replayed step is the same step
                    repeated += len(batch)
                trained[rank][step] = batch
    assert trained == whole  # every step of the uninterrupted run was trained
    for previous, run in zip(chain["runs"], chain["runs"][1:]):
        assert previous["kill_at"] - run["restart"] <= K - 1
    bound = (len(chain["runs"]) - 1) * (K - 1) * WORLD * BATCH
    replayed = sum(
        (previous["kill_at"] - run["restart"]) * WORLD * BATCH
        for previous, run in zip(chain["runs"], chain["runs"][1:])
    )
    assert repeated == replayed <= bound


# --------------------------------------------------------------------------------------
# A DataLoader worker killed mid-epoch
# --------------------------------------------------------------------------------------
def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def _worker_setup() -> tuple[ReassemblingBatchSampler, ModalityDecoupler]:
    filt = HardSampleFilter(N, MODALITIES, score="loss")
    sampler = ReassemblingBatchSampler(filt, BATCH, order="random", seed=5)
    return sampler, ModalityDecoupler(pairs(), MODALITIES)


def _kill_a_worker(out: Path) -> None:
    """Script mode: 3 batches, save the loader state, SIGKILL a worker, go on iterating."""
    sampler, data = _worker_setup()
    # Batches travel as shared-memory files, not as file descriptors that the main process
    # fetches from the worker when it unpickles a batch: with torch's default
    # 'file_descriptor' strategy a batch the killed worker had queued fails in
    # multiprocessing's resource sharer (ConnectionResetError), sometimes while the
    # interpreter reports it, instead of in the loader's own dead-worker check.
    torch.multiprocessing.set_sharing_strategy("file_system")
    before = _children()
    loader = StatefulDataLoader(data, batch_sampler=sampler, num_workers=2, timeout=30)
    it = iter(loader)
    seen = [next(it)[1].tolist() for _ in range(3)]
    torch.save({"loader": loader.state_dict(), "seen": seen}, out / "state.pt")
    workers = sorted(_children() - before)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    for _ in range(len(sampler)):
        next(it)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_killed_worker_raises_a_clear_error_and_the_checkpoint_resumes(tmp_path: Path) -> None:
    start = time.monotonic()
    command = [sys.executable, "-W", "ignore", __file__, "--kill-worker", str(tmp_path)]
    done = run_script(command, timeout=60)
    assert time.monotonic() - start < 45  # the error ends it, not the loader's 30 s timeout
    assert done.returncode == 1, done.stderr[-2000:]
    # torch reports a dead worker from its SIGCHLD handler or from the next get
    died = r"DataLoader worker \(pid.*\) (is killed by signal: Killed|exited unexpectedly)"
    assert re.search("RuntimeError: " + died, done.stderr), done.stderr[-2000:]
    # the fix the user applies: a fresh loader from the last state continues exactly
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    sampler, data = _worker_setup()
    whole = [index.tolist() for _, index, _ in StatefulDataLoader(data, batch_sampler=sampler)]
    fresh = StatefulDataLoader(data, batch_sampler=sampler, num_workers=2)
    fresh.load_state_dict(saved["loader"])
    assert saved["seen"] + [index.tolist() for _, index, _ in fresh] == whole


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--kill-worker":
        _kill_a_worker(Path(sys.argv[2]))
