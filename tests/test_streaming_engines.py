"""The streaming remixer over real engines on local files: WebDataset tar shards and a
Hugging Face ``datasets`` streaming dataset, through real DataLoader workers and
torchdata's StatefulDataLoader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _stream_shards import write_shards
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from remix_data import ALL, HardSampleFilter
from remix_data.streaming import StreamingRemixer
from remix_data.testing import check_step_modalities
from remix_data.vocabulary import PAD

wds = pytest.importorskip("webdataset")
datasets = pytest.importorskip("datasets")

N, SHARDS, BATCH = 48, 4, 4
NAMES = ("audio", "video")


def scored(seed: int) -> HardSampleFilter:
    gen = torch.Generator().manual_seed(seed)
    filt = HardSampleFilter(N, NAMES, score="loss")
    filt.update(torch.arange(N), {m: torch.rand(N, generator=gen) for m in NAMES})
    return filt


def to_sample(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "audio": torch.from_numpy(s["audio.npy"]),
        "video": torch.from_numpy(s["video.npy"]),
        "label": s["cls"],
        "key": s["__key__"],
    }


def wds_pipeline(urls: list[str]) -> Any:
    return (
        wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node, empty_check=False)
        .decode()
        .map(to_sample)
    )


def check_epoch(remixer: StreamingRemixer, batches: list[Any], assign: list[int] | None) -> None:
    """Schedule followed, unimodal, assigned modality, masked, every sample counted."""
    steps = check_step_modalities([[m for _, _, m in batches]])  # unimodal, PAD rows aside
    assert all(s in (g, PAD) for s, g in zip(steps, remixer.schedule()[0].tolist()))
    assert len(steps) == len(remixer)
    for batch, index, modality in batches:
        m = next((g for g in modality.tolist() if g != PAD), None)
        if m is None:  # a batch of PAD rows alone: masked as its scheduled modality
            continue
        for name_id, name in enumerate(NAMES):
            visible = m in (ALL, name_id)
            values = batch[name]
            expected = (index + 1).float()[:, None].expand_as(values)
            assert torch.equal(values, expected if visible else torch.zeros_like(values))
        if assign is not None:
            assert all(assign[i] == m for i in index[modality != PAD].tolist())
    stats = remixer.stats()
    kept = sum(stats["samples"].values())
    lost = sum(stats["dropped"].values()) + sum(stats["overflow"].values())
    assert stats["read"] == N and kept + lost + stats["filtered"] == N


def test_webdataset_pipeline_with_two_workers(tmp_path: Path) -> None:
    urls = write_shards(tmp_path, N, SHARDS)
    filt = scored(0)
    remixer = StreamingRemixer(
        wds_pipeline(urls),
        filt,
        BATCH,
        sample_id=lambda s: int(s["key"]),
        warmup_epochs=1,
    )
    loader = DataLoader(remixer, batch_size=None, num_workers=2, persistent_workers=True)
    for epoch in range(2):
        remixer.set_epoch(epoch)
        assert len(loader) == len(remixer)  # refreshes torch's remembered length
        batches = list(loader)
        assign = None if epoch == 0 else filt.snapshot(epoch).tolist()
        check_epoch(remixer, batches, assign)
        assert all(torch.equal(b["label"], i % 3) for b, i, _ in batches)


def test_webdataset_resume_replays_the_shards_exactly(tmp_path: Path) -> None:
    urls = write_shards(tmp_path, N, SHARDS)

    def build() -> StatefulDataLoader:
        remixer = StreamingRemixer(
            wds_pipeline(urls), scored(1), BATCH, sample_id=lambda s: int(s["key"])
        )
        remixer.set_epoch(1)
        return StatefulDataLoader(remixer, batch_size=None, num_workers=2)

    full = [i.tolist() for _, i, _ in build()]
    loader = build()
    it = iter(loader)
    head = [i.tolist() for _, (_, i, _) in zip(range(5), it)]
    state = loader.state_dict()
    del it
    again = build()
    again.load_state_dict(state)
    assert head + [i.tolist() for _, i, _ in again] == full


def hf_stream(rank: int = 0, world: int = 1) -> Any:
    from datasets.distributed import split_dataset_by_node

    table = datasets.Dataset.from_dict(
        {
            "audio": [[float(i + 1)] * 2 for i in range(N)],
            "video": [[float(i + 1)] * 3 for i in range(N)],
        }
    )
    table = table.map(lambda _, i: {"id": i}, with_indices=True)  # the stable id column
    stream = table.to_iterable_dataset(num_shards=SHARDS * world)
    return split_dataset_by_node(stream, rank=rank, world_size=world).with_format("torch")


def test_hf_streaming_dataset_with_two_workers() -> None:
    filt = scored(2)
    remixer = StreamingRemixer(hf_stream(), filt, BATCH)
    remixer.set_epoch(1)
    batches = list(DataLoader(remixer, batch_size=None, num_workers=2))
    check_epoch(remixer, batches, filt.snapshot(1).tolist())


def test_hf_streaming_resume_is_exact_to_the_batch() -> None:
    def build() -> StatefulDataLoader:
        remixer = StreamingRemixer(hf_stream(), scored(3), BATCH, buffer_size=BATCH)
        remixer.set_epoch(1)
        return StatefulDataLoader(remixer, batch_size=None, num_workers=2)

    full = [(i.tolist(), int(m[0])) for _, i, m in build()]
    for cut in (1, 6):
        loader = build()
        it = iter(loader)
        head = [(i.tolist(), int(m[0])) for _, (_, i, m) in zip(range(cut), it)]
        state = loader.state_dict()
        del it
        again = build()
        again.load_state_dict(state)
        assert head + [(i.tolist(), int(m[0])) for _, i, m in again] == full


def test_hf_split_by_node_ranks_share_the_schedule() -> None:
    filt = scored(4)
    steps = []
    for rank in range(2):
        remixer = StreamingRemixer(hf_stream(rank, 2), filt, BATCH, num_replicas=2, rank=rank)
        remixer.set_epoch(1)
        batches = list(DataLoader(remixer, batch_size=None, num_workers=2))
        steps.append([m for _, _, m in batches])
    assert len(set(check_step_modalities(steps)) - {PAD}) == 2  # one schedule on both ranks
