"""torchdata.nodes graphs (SamplerWrapper -> ParallelMapper -> Loader) for the map-style
sampler and the streaming remixer: the same batches as the DataLoader paths, epochs
advanced by the graph, exact resume from Loader.state_dict().
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.nodes import IterableWrapper, Loader, Mapper

from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler
from remix_data.integrations.nodes import batch_node, stream_node
from remix_data.streaming import StreamingRemixer

N, NAMES = 40, ("audio", "video")
BASE = [
    {"audio": torch.full((2,), float(i)), "video": torch.full((3,), float(i))} for i in range(N)
]


def scored(seed: int = 0) -> HardSampleFilter:
    gen = torch.Generator().manual_seed(seed)
    filt = HardSampleFilter(N, NAMES, score="loss")
    filt.update(torch.arange(N), {m: torch.rand(N, generator=gen) for m in NAMES})
    return filt


def keys(batches: Any) -> list[tuple[list[int], int]]:
    return [(index.tolist(), int(modality[0])) for _, index, modality in batches]


def sampler_of(filt: HardSampleFilter) -> ReassemblingBatchSampler:
    return ReassemblingBatchSampler(filt, 6, warmup_epochs=1, order="interleave", seed=3)


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_node_yields_the_dataloaders_batches_epoch_after_epoch(workers: int) -> None:
    data = ModalityDecoupler(BASE, NAMES)
    filt, reference_filt = scored(), scored()
    sampler, reference = sampler_of(filt), sampler_of(reference_filt)
    loader = Loader(batch_node(sampler, data, num_workers=workers))
    for epoch in range(3):
        reference.set_epoch(epoch)
        expected = list(DataLoader(data, batch_sampler=reference))
        got = list(loader)
        assert sampler.epoch == epoch  # set_epoch driven by the graph
        assert keys(got) == keys(expected)
        assert all(torch.equal(g[0][m], e[0][m]) for g, e in zip(got, expected) for m in NAMES)


def test_batch_node_resumes_exactly() -> None:
    data = ModalityDecoupler(BASE, NAMES)
    filt = scored()
    loader = Loader(batch_node(sampler_of(filt), data, num_workers=2, initial_epoch=1))
    full = keys(loader)
    loader = Loader(batch_node(sampler_of(filt), data, num_workers=2, initial_epoch=1))
    it = iter(loader)
    head = keys(next(it) for _ in range(3))
    state = loader.state_dict()
    again = Loader(batch_node(sampler_of(filt), data, num_workers=2, initial_epoch=1))
    again.load_state_dict(state)
    assert head + keys(again) == full
    assert len(full) == len(sampler_of(filt)) > 3


def stream(i: int) -> dict[str, Any]:
    return {"id": i, **BASE[i]}


def remixer_of(source: Any, filt: HardSampleFilter) -> StreamingRemixer:
    return StreamingRemixer(source, filt, 4, warmup_epochs=1, buffer_size=4)


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_node_yields_the_remixers_batches_epoch_after_epoch(workers: int) -> None:
    samples = [stream(i) for i in range(N)]
    filt = scored()
    remixer, reference = remixer_of(samples, filt), remixer_of(samples, filt)
    loader = Loader(stream_node(remixer, num_workers=workers))
    for epoch in range(2):
        reference.set_epoch(epoch)
        expected = list(DataLoader(reference, batch_size=None))
        got = list(loader)
        assert remixer.epoch == epoch
        assert keys(got) == keys(expected)
        for (g, _, m), (e, _, _) in zip(got, expected):
            assert all(torch.equal(g[name], e[name]) for name in NAMES)
            if int(m[0]) >= 0:
                assert not g[NAMES[1 - int(m[0])]].any()  # masked by the mapper


def decoded_source() -> Loader[Any]:
    """A resumable nodes source: raw ids decoded into samples by a mapper."""
    return Loader(Mapper(IterableWrapper(list(range(N))), stream))


@pytest.mark.parametrize("make_source", [lambda: [stream(i) for i in range(N)], decoded_source])
def test_stream_node_resumes_exactly(make_source: Any) -> None:
    def build() -> Loader[Any]:
        return Loader(
            stream_node(remixer_of(make_source(), scored(1)), num_workers=2, initial_epoch=1)
        )

    full = keys(build())
    for cut in (1, 5):
        loader = build()
        it = iter(loader)
        head = keys(next(it) for _ in range(cut))
        state = loader.state_dict()
        again = build()
        again.load_state_dict(state)
        assert head + keys(again) == full


def test_nodes_builders_reject_bad_arguments() -> None:
    data = ModalityDecoupler(BASE, NAMES)
    sampler = sampler_of(scored())
    with pytest.raises(TypeError, match="sampler"):
        batch_node(object(), data)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data"):
        batch_node(sampler, BASE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_workers=-1"):
        batch_node(sampler, data, num_workers=-1)
    with pytest.raises(TypeError, match=r"num_workers should be a non-negative integer.*=1\.5"):
        batch_node(sampler, data, num_workers=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method='fork'"):
        batch_node(sampler, data, method="fork")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="remixer"):
        stream_node(sampler)  # type: ignore[arg-type]
