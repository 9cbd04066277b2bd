"""Two real gloo processes, two DataLoader workers each, over WebDataset tar shards split
by node and by worker: the ranks' actual batches train one modality per step, and both
ranks yield the same number of batches, in warm-up and in remix epochs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from _stream_shards import write_shards
from torch.utils.data import DataLoader

from remix_data import ALL, HardSampleFilter
from remix_data.gloo import run_ranks
from remix_data.streaming import StreamingRemixer
from remix_data.testing import check_step_modalities
from remix_data.vocabulary import PAD

wds = pytest.importorskip("webdataset")

WORLD, WORKERS, N, SHARDS, BATCH, EPOCHS = 2, 2, 90, 8, 4, 3
NAMES = ("audio", "video")


def _to_sample(s: dict[str, Any]) -> dict[str, Any]:
    audio = torch.from_numpy(s["audio.npy"])
    return {"id": int(s["__key__"]), "audio": audio, "video": torch.from_numpy(s["video.npy"])}


def _rank_main(rank: int, out_dir: str) -> dict[str, Any]:
    # What torchrun gives every rank: WebDataset's split_by_node reads them in workers.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD))
    try:
        urls = sorted(str(p) for p in Path(out_dir).glob("shard-*.tar"))
        source = (
            wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node)
            .decode()
            .map(_to_sample)
        )
        filt = HardSampleFilter(N, NAMES, score="loss")
        remixer = StreamingRemixer(source, filt, BATCH, warmup_epochs=1)
        # fork, as in a torchrun rank (this spawned rank would otherwise spawn its workers)
        loader = DataLoader(
            remixer,
            batch_size=None,
            num_workers=WORKERS,
            persistent_workers=True,
            multiprocessing_context="fork",
        )
        out: dict[str, Any] = {"epochs": [], "stats": [], "world": remixer.num_replicas}
        for epoch in range(EPOCHS):
            remixer.set_epoch(epoch)  # after warm-up: the synced snapshot (a collective)
            seen = []
            for _, index, modality in loader:
                seen.append((modality.tolist(), index.tolist()))
                # online scoring from this rank's own batches only: the sync merges them
                losses = torch.rand(len(index), generator=torch.Generator().manual_seed(epoch))
                filt.update(index, {"audio": losses, "video": 1 - losses}, modality=ALL)
            out["epochs"].append(seen)
            out["stats"].append(remixer.stats())
            out.setdefault("snapshots", []).append(
                None if remixer.is_warmup() else filt.snapshot(epoch).clone()
            )
        return out
    finally:
        os.environ.pop("RANK")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("stream-gloo")
    write_shards(tmp, N, SHARDS)  # uneven: 90 samples over 8 shards
    return run_ranks(_rank_main, WORLD, tmp, str(tmp), timeout=120)


def test_every_step_trains_one_modality_on_both_ranks(ranks: list[dict[str, Any]]) -> None:
    assert [r["world"] for r in ranks] == [WORLD, WORLD]
    for epoch in range(EPOCHS):
        received = [[m for m, _ in r["epochs"][epoch]] for r in ranks]
        assert len(received[0]) > 0
        # unimodal batches, equal batch counts, the same modality at every step (PAD rows,
        # which only complete a worker's batches, aside)
        steps = check_step_modalities(received)
        assert set(steps) - {PAD} == ({ALL} if epoch == 0 else {0, 1})


def test_ranks_share_the_assignment_and_train_it(ranks: list[dict[str, Any]]) -> None:
    for epoch in range(1, EPOCHS):
        snap0, snap1 = (r["snapshots"][epoch] for r in ranks)
        assert torch.equal(snap0, snap1)
        for r in ranks:
            for modality, index in r["epochs"][epoch]:
                assert all(int(snap0[i]) == m for i, m in zip(index, modality) if m != PAD)
        # every sample read on some rank is trained once or counted
        kept = lost = read = 0
        for r in ranks:
            s = r["stats"][epoch]
            kept += sum(s["samples"].values())
            lost += sum(s["dropped"].values()) + sum(s["overflow"].values()) + s["filtered"]
            read += s["read"]
        assert read == N and kept + lost == N
