"""Ray Train: the map-style and the streaming remixer under a ``TorchTrainer`` of 2 workers.

A local Ray cluster (``ray.init(num_cpus=2)``, loopback only, a small object
store) runs ``TorchTrainer`` with two CPU workers on gloo. Each epoch, each worker
trains the map-style loader (``ReassemblingBatchSampler`` sharded by Ray's world
rank, the loader kept as built by ``prepare_data_loader(..., add_dist_sampler=False)``)
and then a ``StreamingRemixer`` over its own part of a stream, and reports a
checkpoint (rank 0 writes the states every rank gathered). The test checks that
every step has one modality on both workers, every sample trains once per epoch
in the map-style loader (the padding it counts aside), both workers share the history, and a second
``TorchTrainer`` resumed from the epoch-2 checkpoint trains exactly the batches of
the uninterrupted run to the same weights. The streaming remixer trains each sample
at most once per epoch: a sample beyond its rank's share of the schedule is
counted (``dropped``/``overflow``) instead.

It takes about a minute and a half on two cores, so it is marked ``slow``: the
default ``pytest`` run deselects it and ``.ci/run`` runs it on its own.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

ray = pytest.importorskip("ray", reason="needs ray[train] (the ray extra)")
pytest.importorskip("ray.train.torch", reason="needs ray[train] (the ray extra)")

from _frameworks import NAMES, LateFusion, make_data  # noqa: E402
from ray.train import Checkpoint, RunConfig, ScalingConfig  # noqa: E402
from ray.train.torch import TorchConfig, TorchTrainer  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from remix_data import (  # noqa: E402
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    remix_loss,
)
from remix_data.streaming import StreamingRemixer  # noqa: E402
from remix_data.testing import check_step_modalities  # noqa: E402
from remix_data.vocabulary import PAD  # noqa: E402

pytestmark = pytest.mark.slow

N = 30
EPOCHS = 4
TESTS = Path(__file__).resolve().parent


def train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the recipe of docs/guide.md, with records for the test."""
    import ray.train
    import ray.train.torch

    torch.set_num_threads(1)
    context = ray.train.get_context()
    world, rank = context.get_world_size(), context.get_world_rank()
    data = make_data(N)

    filt = HardSampleFilter(N, NAMES)  # the map-style remixer
    sampler = ReassemblingBatchSampler(filt, 3, warmup_epochs=1, num_replicas=world, rank=rank)
    loader = DataLoader(ModalityDecoupler(data, filt, mask="none"), batch_sampler=sampler)
    loader = ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)

    stream_filt = HardSampleFilter(N, NAMES)  # the streaming remixer, this rank's samples
    stream = [{**data[i], "id": i} for i in range(rank, N, world)]
    remixer = StreamingRemixer(
        stream, stream_filt, 3, warmup_epochs=1, mask="none", num_replicas=world, rank=rank
    )
    stream_loader = DataLoader(remixer, batch_size=None)

    model = ray.train.torch.prepare_model(LateFusion())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    start = 0
    # Ray's own restore (a failed worker group restarted), else the run to resume
    checkpoint = ray.train.get_checkpoint() or config.get("resume")
    if checkpoint is not None:  # every rank restores from rank 0's file
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "remix.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        filt.load_state_dict(state["filter"])
        stream_filt.load_state_dict(state["stream_filter"])
        start = state["epoch"] + 1

    seen: list[list[Any]] = []
    stats: dict[str, dict[int, list[int]]] = {"map": {}, "stream": {}}
    for epoch in range(start, EPOCHS):
        for kind, part, batches, scores in (
            ("map", sampler, loader, filt),
            ("stream", remixer, stream_loader, stream_filt),
        ):
            part.set_epoch(epoch)  # on every rank: after warm-up, the one collective
            for sample, index, modality in batches:
                fused, heads = model(sample, modality)
                loss = remix_loss(fused, heads, sample["label"], modality, scores)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scores.update(index, {m: h.detach() for m, h in heads.items()}, modality=modality)
                seen.append([kind, epoch, index.tolist(), modality.tolist()])
            counts = part.stats()
            lost = [counts[k] for k in ("dropped", "overflow") if k in counts]
            stats[kind][epoch] = [
                sum(counts["padded"].values()),
                sum(sum(c.values()) for c in lost),
            ]
        state = {  # filter states are collectives: every rank takes them
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "filter": filt.state_dict(),
            "stream_filter": stream_filt.state_dict(),
            "epoch": epoch,
        }
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0:
                torch.save(state, Path(folder) / "remix.pt")
                saved = Checkpoint.from_directory(folder)
            ray.train.report({"epoch": epoch}, checkpoint=saved)

    weights = {k: v.tolist() for k, v in model.state_dict().items()}
    record = {
        "world": [world, rank],
        "seen": seen,
        "padded": stats,
        "history": {"map": filt.history, "stream": stream_filt.history},
        "weights": weights,
    }
    (Path(config["out"]) / f"{config['name']}-rank{rank}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # inherited by the workers Ray starts
    try:
        ray.init(
            num_cpus=2,
            object_store_memory=100 * 2**20,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
        )
        yield
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fit(out: Path, name: str, checkpoint: Checkpoint | None = None) -> Any:
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"out": str(out), "name": name, "resume": checkpoint},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(storage_path=str(out / "ray"), name=name),
    )
    return trainer.fit()


def ranks(out: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads((out / f"{name}-rank{r}.json").read_text()) for r in range(2)]


def shared(history: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The history records without ``duplicates``, a count of this rank's own updates
    (a streaming rank that pads with repeats of its samples writes some twice)."""
    return {
        kind: [{k: v for k, v in r.items() if k != "duplicates"} for r in records]
        for kind, records in history.items()
    }


def test_ray_train_workers_remix_in_step_and_resume_exactly(cluster: None, tmp_path: Path) -> None:
    result = fit(tmp_path, "whole")
    whole = ranks(tmp_path, "whole")
    assert [r["world"] for r in whole] == [[2, 0], [2, 1]]
    assert shared(whole[0]["history"]) == shared(whole[1]["history"])
    for kind in ("map", "stream"):
        assert [h["epoch"] for h in whole[0]["history"][kind]] == list(range(1, EPOCHS))
        for epoch in range(EPOCHS):
            per_rank = [[b for b in r["seen"] if b[:2] == [kind, epoch]] for r in whole]
            steps = check_step_modalities([[b[3] for b in batches] for batches in per_rank])
            assert set(steps) <= ({-1} if epoch == 0 else {0, 1})
            rows = [(i, m) for batches in per_rank for *_, index, mods in batches
                    for i, m in zip(index, mods)]  # fmt: skip
            trained = Counter(i for i, m in rows if m != PAD)
            repeats = sum(c - 1 for c in trained.values()) + sum(1 for _, m in rows if m == PAD)
            (padded0, lost0), (padded1, lost1) = [r["padded"][kind][str(epoch)] for r in whole]
            if kind == "map":  # one global plan: every rank counts all of its padding
                assert (padded0, lost0) == (padded1, lost1) and lost0 == 0
                assert set(trained) == set(range(N)) and repeats == padded0
            else:  # each rank counts its own; a sample beyond its quota is counted lost
                assert repeats == padded0 + padded1
                assert N - len(trained) == lost0 + lost1
    assert whole[0]["weights"] == whole[1]["weights"]  # DDP kept the replicas equal

    # Resume a new TorchTrainer from the checkpoint reported after epoch 1.
    checkpoints = sorted(result.best_checkpoints, key=lambda pair: pair[1]["epoch"])
    assert [metrics["epoch"] for _, metrics in checkpoints] == list(range(EPOCHS))
    fit(tmp_path, "resumed", checkpoints[1][0])
    resumed = ranks(tmp_path, "resumed")
    for before, after in zip(whole, resumed):
        assert after["seen"] == [b for b in before["seen"] if b[1] >= 2]
        assert after["history"] == before["history"]
        assert after["weights"] == before["weights"]
