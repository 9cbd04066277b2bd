"""One checkpoint for every rank, through the frameworks' save paths, and the warnings
where a path cannot be exact. Two real gloo ranks (:class:`remix_data.gloo.GlooRanks`).

Each rank writes different score entries after the last sync, then:

- ``HardSampleFilter.state_dict(gather=False)`` warns (RemixWarning) while the rank
  holds unsynced entries, and is silent after a sync or with ``sync="never"``;
- ``RemixCallback.state_dict()``, which Lightning calls on every rank when it writes a
  checkpoint, is the gathering collective: rank 0's callback state, loaded into fresh
  callbacks on both ranks, restores both ranks' tables exactly;
- after ``on_exception`` (Lightning's hook before an ``OnExceptionCheckpoint``) the
  callback takes rank 0's state alone without waiting for rank 1 (no collective) and
  warns that the unsynced entries of the other ranks are not in it;
- Accelerate's ``save_state`` / ``load_state`` with the filter registered by
  ``register_for_checkpointing`` (``save_state`` on every rank, as Accelerate requires)
  restores both ranks exactly from the one saved file;
- a real Lightning DDP fit (both ranks in the gloo group, as under ``torchrun``): every
  checkpoint ``ModelCheckpoint`` writes mid-epoch holds both ranks' unsynced tables, and
  an exception at a step makes ``OnExceptionCheckpoint`` write a checkpoint with a
  warning instead of hanging;
- the real ``HardSampleFilter.sync`` of the two ranks equals
  :func:`remix_data.testing.simulate_sync` of their two states, which the resume
  property of tests/test_resume_ranks.py relies on.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from remix_data import ALL, HardSampleFilter, ReassemblingBatchSampler, RemixWarning
from remix_data.gloo import run_ranks
from remix_data.testing import simulate_sync

pytest.importorskip("lightning", reason="needs lightning (the test extra)")
pytest.importorskip("accelerate", reason="needs accelerate (the test extra)")

WORLD, N = 2, 12
NAMES = ("audio", "video")


def make() -> HardSampleFilter:
    return HardSampleFilter(N, NAMES, score="loss", smoothing=0.5)


def feed(filt: HardSampleFilter, rank: int, epoch: int) -> None:
    """Rank ``r`` writes samples ``4r .. 4r+5`` (4-5 on both ranks), audio only."""
    index = torch.arange(4 * rank, 4 * rank + 6)
    loss = (index.to(torch.float32) * (rank + 2) + epoch) % 5
    filt.update(index, {"audio": loss}, modality=0)


def base(filt: HardSampleFilter) -> HardSampleFilter:
    """A synced base table (every sample scored once on every rank), snapshotted."""
    filt.update(torch.arange(N), {m: torch.ones(N) for m in NAMES}, modality=ALL)
    filt.snapshot(0)
    return filt


def local(filt: HardSampleFilter) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RemixWarning)
        return filt.state_dict(gather=False)


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RemixWarning)]


def _rank(rank: int, workdir: str) -> None:
    from accelerate import Accelerator

    from remix_data.integrations.lightning import RemixCallback

    out = Path(workdir)
    record: dict[str, Any] = {}

    # gather=False warns while this rank holds unsynced entries
    filt = base(make())
    feed(filt, rank, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = filt.state_dict(gather=False)
    record["unsynced"] = _messages(caught)
    torch.save(before, out / f"before{rank}.pt")
    filt.sync()
    torch.save(local(filt), out / f"after{rank}.pt")
    never = HardSampleFilter(N, NAMES, score="loss", sync="never")
    feed(never, rank, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filt.state_dict(gather=False)
        never.state_dict(gather=False)
    record["synced"] = _messages(caught)

    # RemixCallback.state_dict on every rank: rank 0's checkpoint restores both
    filt = base(make())
    feed(filt, rank, 1)
    callback = RemixCallback(filt)
    state = callback.state_dict()  # the collective
    if rank == 0:
        torch.save(state, out / "callback.pt")
    dist.barrier()
    resumed = RemixCallback(make())
    resumed.load_state_dict(torch.load(out / "callback.pt", weights_only=True))
    for f in (filt, resumed.filter):
        feed(f, rank, 2)
        f.snapshot(1)
    record["callback"] = _same(local(filt), local(resumed.filter))
    record["callback_gathered"] = state["filter"]["ranks"] is not None

    # after on_exception: rank 0 alone takes the state (rank 1 never joins), and warns
    filt = base(make())
    feed(filt, rank, 1)
    callback = RemixCallback(filt)
    callback.on_exception(None, None, RuntimeError("boom"))  # type: ignore[arg-type]
    if rank == 0:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state = callback.state_dict()
        record["interrupted"] = _messages(caught)
        record["interrupted_ranks"] = state["filter"]["ranks"]
    dist.barrier()

    # Accelerate: save_state on every rank, one file, load_state on every rank
    # what torchrun sets; Accelerate finds the process group already initialised
    for key, value in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": WORLD}.items():
        os.environ[key] = str(value)
    os.environ.update(LOCAL_WORLD_SIZE=str(WORLD), OMP_NUM_THREADS="1")
    accelerator = Accelerator(cpu=True)
    record["accelerate_world"] = [accelerator.num_processes, accelerator.process_index]
    filt = base(make())
    accelerator.register_for_checkpointing(filt)
    feed(filt, rank, 1)
    accelerator.save_state(str(out / "accelerate"))
    # save_state returns on rank 1 before rank 0 has written the custom states (its last
    # step, without a barrier): a restart reads them in a new run; here, wait for rank 0.
    accelerator.wait_for_everyone()
    restored = make()
    fresh = Accelerator(cpu=True)
    fresh.register_for_checkpointing(restored)
    fresh.load_state(str(out / "accelerate"))
    for f in (filt, restored):
        feed(f, rank, 2)
        f.snapshot(1)
    record["accelerate"] = _same(local(filt), local(restored))
    record["accelerate_files"] = sorted(p.name for p in (out / "accelerate").iterdir())
    (out / f"rank{rank}.json").write_text(json.dumps(record))


def _lightning_rank(rank: int, workdir: str) -> None:
    """Two Lightning DDP fits on the gloo group: a checkpoint every step, then an exception."""
    import lightning.pytorch as pl
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader

    from remix_data import ModalityDecoupler
    from remix_data.integrations.lightning import RemixCallback

    out = Path(workdir)
    env = {"TORCHELASTIC_RUN_ID": "remix", "RANK": rank, "LOCAL_RANK": rank, "GROUP_RANK": 0}
    env.update(WORLD_SIZE=WORLD, LOCAL_WORLD_SIZE=WORLD, MASTER_ADDR="127.0.0.1")
    os.environ.update({k: str(v) for k, v in {**env, "MASTER_PORT": 29400}.items()})
    gen = torch.Generator().manual_seed(0)
    data = [{"audio": torch.randn(3, generator=gen), "video": torch.randn(2, generator=gen),
             "label": torch.tensor(i % 2)} for i in range(N)]  # fmt: skip

    class Lit(pl.LightningModule):
        def __init__(self, fail_at: int | None) -> None:
            super().__init__()
            self.filter, self.fail_at = make(), fail_at
            self.audio, self.video = nn.Linear(3, 2), nn.Linear(2, 2)
            self.loader: DataLoader[Any] | None = None
            self.saved: dict[int, list[Any]] = {}

        def train_dataloader(self) -> DataLoader[Any]:
            if self.loader is None:
                sampler = ReassemblingBatchSampler(
                    self.filter, 2, warmup_epochs=1, num_replicas=WORLD, rank=rank
                )
                self.loader = DataLoader(ModalityDecoupler(data, NAMES), batch_sampler=sampler)
            sampler = self.loader.batch_sampler
            assert isinstance(sampler, ReassemblingBatchSampler)
            sampler.set_epoch(self.trainer.current_epoch)
            return self.loader

        def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
            if self.global_step == self.fail_at:
                raise RuntimeError(f"failed at step {self.global_step}")
            sample, _, _ = batch
            heads = {"audio": self.audio(sample["audio"]), "video": self.video(sample["video"])}
            losses = [F.cross_entropy(h, sample["label"], reduction="none") for h in heads.values()]
            return {"loss": sum(losses).mean(), "remix_outputs": (heads, sample["label"])}

        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            self.saved[self.global_step] = local(self.filter)["values"].nan_to_num(-1).tolist()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(module: Lit, callbacks: list[Any]) -> None:
        pl.Trainer(
            accelerator="cpu", devices=WORLD, strategy="ddp", max_epochs=2,
            use_distributed_sampler=False, reload_dataloaders_every_n_epochs=1,
            callbacks=[RemixCallback(module.filter), *callbacks], logger=False,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
        ).fit(module)  # fmt: skip

    every = pl.callbacks.ModelCheckpoint(
        dirpath=out / "steps", every_n_train_steps=1, save_top_k=-1, filename="{step}"
    )
    module = Lit(None)
    fit(module, [every])
    record: dict[str, Any] = {"saved": module.saved}
    failing = Lit(fail_at=4)  # in the remix epoch, scores written since its snapshot
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit(failing, [pl.callbacks.OnExceptionCheckpoint(out / "failed")])
        except RuntimeError as error:
            record["error"] = str(error)
    record["warnings"] = _messages(caught)
    (out / f"lightning{rank}.json").write_text(json.dumps(record))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        torch.equal(a["values"].nan_to_num(-1), b["values"].nan_to_num(-1))
        and torch.equal(a["fresh"], b["fresh"])
        and torch.equal(a["snapshot"], b["snapshot"])
        and a["history"] == b["history"]
    )


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("checkpoint_ranks")
    run_ranks(_rank, WORLD, tmp, str(tmp), timeout=120)
    out = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for r, record in enumerate(out):
        record["before"] = torch.load(tmp / f"before{r}.pt", weights_only=True)
        record["after"] = torch.load(tmp / f"after{r}.pt", weights_only=True)
    return out


def test_a_local_state_with_unsynced_entries_warns(ranks: list[dict[str, Any]]) -> None:
    for rank, record in enumerate(ranks):
        (text,) = record["unsynced"]
        assert f"state_dict(gather=False) on rank {rank} of 2 holds only this rank's" in text
        assert "6 entries written since the last sync are in it" in text
        assert "Call state_dict() on every rank" in text
        assert record["synced"] == []  # after the sync, and with sync="never"


def test_the_callback_state_is_gathered_and_restores_every_rank(
    ranks: list[dict[str, Any]],
) -> None:
    assert all(r["callback_gathered"] for r in ranks)
    assert all(r["callback"] for r in ranks)


def test_the_callback_after_an_exception_saves_without_a_collective_and_warns(
    ranks: list[dict[str, Any]],
) -> None:
    (text,) = ranks[0]["interrupted"]
    assert text.startswith(
        "HardSampleFilter: a checkpoint written after an exception on rank 0 of 2 holds only "
        "this rank's scores"
    )
    assert ranks[0]["interrupted_ranks"] is None


def test_accelerate_save_state_restores_every_rank_from_one_file(
    ranks: list[dict[str, Any]],
) -> None:
    assert [r["accelerate_world"] for r in ranks] == [[2, 0], [2, 1]]
    assert "custom_checkpoint_0.pkl" in ranks[0]["accelerate_files"]
    assert all(r["accelerate"] for r in ranks)


def test_simulated_sync_equals_the_real_one(ranks: list[dict[str, Any]]) -> None:
    filters = [make() for _ in range(WORLD)]
    for f, record in zip(filters, ranks):  # a 2-rank state, loaded in one process
        f.load_state_dict({**record["before"], "world_size": 1})
    simulate_sync(filters)
    for f, record in zip(filters, ranks):
        state, real = f.state_dict(), record["after"]
        assert torch.equal(state["values"].nan_to_num(-1), real["values"].nan_to_num(-1))
        assert torch.equal(state["scored"], real["scored"]) and not state["fresh"].any()
    # samples 4 and 5 were written on both ranks: the mean of the two writes
    assert not torch.equal(
        ranks[0]["before"]["values"][0, 4:6], ranks[1]["before"]["values"][0, 4:6]
    )


@pytest.fixture(scope="module")
def lightning_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("lightning_ranks")
    run_ranks(_lightning_rank, WORLD, tmp, str(tmp), timeout=150)
    records = [json.loads((tmp / f"lightning{r}.json").read_text()) for r in range(WORLD)]
    steps = {
        int(p.stem.split("=")[1]): torch.load(p, weights_only=True)
        for p in (tmp / "steps").glob("step=*.ckpt")
    }
    failed = torch.load(tmp / "failed" / "on_exception.ckpt", weights_only=True)
    return {"records": records, "steps": steps, "failed": failed}


def _callback_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("RemixCallback")]
    filt: dict[str, Any] = state["filter"]
    return filt


def test_lightning_checkpoints_hold_every_ranks_scores(lightning_ranks: dict[str, Any]) -> None:
    """Rank 0 writes each checkpoint; its filter state holds both ranks' tables of that step."""
    records, steps = lightning_ranks["records"], lightning_ranks["steps"]
    assert len(steps) >= 4
    differ = 0
    for step, checkpoint in steps.items():
        state = _callback_state(checkpoint)
        for rank in range(WORLD):
            expected = torch.tensor(records[rank]["saved"][str(step)])
            ranks = state["ranks"]
            own = (
                state["values"]
                if ranks is None or ranks["values"] is None
                else ranks["values"][rank]
            )
            assert torch.equal(own.nan_to_num(-1), expected), (step, rank)
        differ += records[0]["saved"][str(step)] != records[1]["saved"][str(step)]
    assert differ >= 2  # the ranks' tables differed at those checkpoints: the gather mattered


def test_lightning_after_an_exception_writes_a_local_state_and_warns(
    lightning_ranks: dict[str, Any],
) -> None:
    for rank, record in enumerate(lightning_ranks["records"]):
        assert record["error"] == "failed at step 4"
        texts = [t for t in record["warnings"] if "written after an exception" in t]
        assert len(texts) == 1 and f"on rank {rank} of 2 holds only this rank's scores" in texts[0]
    state = _callback_state(lightning_ranks["failed"])
    assert state["ranks"] is None and bool(state["fresh"].any())
