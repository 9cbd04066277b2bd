"""The plan: one step rule for the sampler and the stream, static shapes, PAD rows,
resume over ranks and accumulation, real DataLoader workers and StatefulDataLoader,
the run length, and a state saved by the code before the step order moved.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    RemixCollate,
    RemixWarning,
    mask_features,
)
from remix_data.plan import TAILS, EpochSettings, split_batches
from remix_data.streaming import StreamingRemixer
from remix_data.testing import check_epoch, check_step_modalities
from remix_data.vocabulary import PAD

NAMES = ("audio", "video", "text")
DATA = Path(__file__).resolve().parent / "data"


def scored(n: int, modalities: int, seed: int) -> HardSampleFilter:
    """A filter whose assignment is random with random shares."""
    names = NAMES[:modalities]
    filt = HardSampleFilter(n, names, score="loss")
    rescore(filt, seed)
    return filt


def rescore(filt: HardSampleFilter, seed: int) -> None:
    """New random losses for every sample: the next snapshot changes the subsets' sizes."""
    gen = np.random.default_rng(seed)
    n, names = filt.num_samples, filt.modalities
    shares = gen.dirichlet(np.ones(len(names)))
    hardest = gen.choice(len(names), size=n, p=shares)
    losses = {m: torch.from_numpy((hardest == k).astype(np.float32)) for k, m in enumerate(names)}
    filt.update(torch.arange(n), losses, modality=ALL)


def sample(i: int) -> dict[str, Any]:
    return {"id": i, "audio": torch.full((2,), i + 1.0), "video": torch.full((3,), i + 1.0)}


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "n": draw(st.integers(1, 90)),
        "modalities": draw(st.integers(2, 3)),
        "batch": draw(st.integers(1, 7)),
        "world": draw(st.integers(1, 4)),
        "accumulation": draw(st.integers(1, 3)),
        "tail": draw(st.sampled_from(TAILS)),
        "drop_last": draw(st.booleans()),
        "order": draw(st.sampled_from(["interleave", "random"])),
        "warmup": draw(st.integers(0, 1)),
        "epoch": draw(st.integers(0, 2)),
        "seed": draw(st.integers(0, 2**16)),
    }


def samplers(c: dict[str, Any], filt: HardSampleFilter, **extra: Any) -> list[Any]:
    return [
        ReassemblingBatchSampler(
            filt,
            c["batch"],
            warmup_epochs=c["warmup"],
            order=c["order"],
            drop_last=c["drop_last"],
            seed=c["seed"],
            num_replicas=c["world"],
            rank=r,
            accumulation_steps=c["accumulation"],
            tail=c["tail"],
            **extra,
        )
        for r in range(c["world"])
    ]


# ------------------------------------------------------------- one plan, two engines
@given(worlds())
def test_the_sampler_and_the_stream_take_the_same_steps(c: dict[str, Any]) -> None:
    filt = scored(c["n"], c["modalities"], c["seed"])
    for rank, sampler in enumerate(samplers(c, filt)):
        stream = [sample(i) for i in range(c["n"])] if c["world"] == 1 else []
        remixer = StreamingRemixer(
            stream,
            filt,
            c["batch"],
            warmup_epochs=c["warmup"],
            order=c["order"],
            drop_last=c["drop_last"],
            seed=c["seed"],
            num_replicas=c["world"],
            rank=rank,
            accumulation_steps=c["accumulation"],
            tail=c["tail"],
            buffer_size=max(c["n"], c["batch"]),
        )
        remixer.set_epoch(c["epoch"])
        sampler.set_epoch(c["epoch"])
        steps = [(b.modality, len(b)) for b in sampler]
        modality, size = remixer.schedule()
        assert steps == list(zip(modality.tolist(), size.tolist()))
        assert len(sampler) == len(remixer) == len(steps)
        if stream:  # the stream yields that schedule
            plans = list(remixer.iter_plans())
            assert [(g, len(ids)) for g, ids, _ in plans] == steps


@given(
    n=st.integers(0, 200),
    b=st.integers(1, 9),
    world=st.integers(1, 4),
    accumulation=st.integers(1, 3),
    drop_last=st.booleans(),
    tail=st.sampled_from(TAILS),
)
def test_a_cut_keeps_pads_or_drops_every_sample_and_sizes_each_rank(
    n: int, b: int, world: int, accumulation: int, drop_last: bool, tail: str
) -> None:
    cut = split_batches(
        n, b, drop_last=drop_last, tail=tail, num_replicas=world, accumulation_steps=accumulation
    )
    step = world * accumulation * b
    assert cut.kept + cut.dropped == n and cut.batches == cut.steps * accumulation
    assert sum(cut.sizes()) * world == cut.kept + cut.padded  # every rank the same sizes
    if step > b or tail == "fill" or drop_last:  # static shapes
        assert set(cut.sizes()) <= {b} and cut.merged == 0
        assert cut.padded < step and cut.dropped < step
        assert cut.padded == (0 if drop_last else -n % step)
    else:
        assert cut.padded == 0


# ---------------------------------------------------------------- static shapes
@given(worlds(), st.sampled_from([0.0, 0.25]), st.sampled_from([0, 1, 4]))
def test_a_run_yields_one_batch_size_under_static_shapes(
    c: dict[str, Any], joint: float, warmup: int
) -> None:
    c["warmup"] = warmup
    filt = scored(c["n"], c["modalities"], c["seed"])
    ranks = samplers(c, filt, joint_fraction=joint)
    seen: set[int] = set()
    for epoch in range(4):
        if epoch:
            rescore(filt, c["seed"] + epoch)  # the subsets change size every epoch
        for rank_batches in check_epoch(ranks, epoch=epoch):  # every invariant, PAD rows too
            seen |= {len(b) for b in rank_batches}
    static = c["tail"] == "fill" or c["drop_last"] or c["world"] * c["accumulation"] > 1
    if static:
        assert seen <= {c["batch"]}
    if c["warmup"] >= 4 and c["tail"] != "fill":
        assert len(seen) <= 2  # warm-up only: what plain shuffled loading gives
    assert ranks[0].stats()["batch_sizes"] == sorted(seen)


def test_merge_yields_a_new_size_per_epoch_where_fill_yields_one() -> None:
    filt = HardSampleFilter(101, NAMES[:2], score="loss")
    sizes: dict[str, set[int]] = {"merge": set(), "fill": set()}
    for tail in sizes:
        sampler = ReassemblingBatchSampler(filt, 16, tail=tail)
        for epoch in range(5):
            rescore(filt, epoch)
            sampler.set_epoch(epoch)
            sizes[tail] |= {len(b) for b in sampler}
        assert sampler.stats()["batch_sizes"] == sorted(sizes[tail])
    assert len(sizes["merge"]) > 2 and sizes["fill"] == {16}


# ------------------------------------------------------------- resume over ranks
@given(worlds(), st.integers(0, 40))
def test_resume_mid_epoch_on_every_rank_yields_the_rest_of_the_plan(
    c: dict[str, Any], stop: int
) -> None:
    filt = scored(c["n"], c["modalities"], c["seed"])
    ranks = samplers(c, filt)
    full = check_epoch(ranks, epoch=c["epoch"])
    stop = min(stop, len(full[0]))
    states = []
    for sampler in ranks:
        sampler.set_epoch(c["epoch"])
        it = iter(sampler)
        for _ in range(stop):
            next(it)
        states.append(sampler.state_dict())
    filter_state = filt.state_dict()
    fresh = scored(c["n"], c["modalities"], c["seed"] + 1)  # other scores until restored
    fresh.load_state_dict(filter_state)
    resumed = samplers(c, fresh)
    for sampler, state, batches in zip(resumed, states, full):
        sampler.load_state_dict(state)
        assert [list(b) for b in sampler] == batches[stop:]
        # the run since load_state_dict: the resumed epoch, if a batch of it was yielded
        sizes = {len(b) for b in batches} if stop < len(batches) else set()
        assert sampler.stats()["batch_sizes"] == sorted(sizes)


# --------------------------------------------------------------- real loaders
def loader_rows(batches: list[Any]) -> list[tuple[list[int], list[int]]]:
    return [(index.tolist(), modality.tolist()) for _, index, modality in batches]


def check_rows(
    ranks: list[list[tuple[list[int], list[int]]]], filt: Any, epoch: int, a: int
) -> None:
    """Non-PAD rows once per epoch; PAD rows in a group's last step; steps agree on ranks."""
    assign = filt.snapshot(epoch).tolist()
    steps = check_step_modalities([[m for _, m in r] for r in ranks], accumulation_steps=a)
    real = Counter(i for r in ranks for idx, m in r for i, g in zip(idx, m) if g != PAD)
    assert set(real.values()) == {1} and set(real) == {i for i, x in enumerate(assign) if x >= 0}
    last = {m: s for s, m in enumerate(steps)}
    for r in ranks:
        for t, (idx, mods) in enumerate(r):
            step = t // a
            pads = [i for i, g in zip(idx, mods) if g == PAD]
            assert not pads or last[steps[step]] == step or steps[step] == PAD
            assert all(assign[i] == steps[step] for i in pads if steps[step] != PAD)
            assert mods[len(mods) - len(pads) :] == [PAD] * len(pads)  # PAD rows come last


@pytest.mark.parametrize("tail", ["fill", "merge"])
def test_dataloader_workers_over_two_ranks_train_every_sample_once(tail: str) -> None:
    n, batch, a = 45, 4, 2
    base = [
        {"audio": torch.full((2,), i + 1.0), "video": torch.full((3,), i + 1.0)} for i in range(n)
    ]
    filt = scored(n, 2, 0)
    ranks = [
        ReassemblingBatchSampler(
            filt, batch, num_replicas=2, rank=r, accumulation_steps=a, tail=tail
        )
        for r in range(2)
    ]
    data = ModalityDecoupler(base, filt)
    loaders = [
        DataLoader(
            data, batch_sampler=s, num_workers=2, persistent_workers=True, collate_fn=RemixCollate()
        )
        for s in ranks
    ]
    for epoch in range(2):
        rescore(filt, epoch + 10)
        for s in ranks:
            s.set_epoch(epoch)
        got = [list(loader) for loader in loaders]
        assert [len(g) for g in got] == [len(s) for s in ranks] == [len(ranks[0])] * 2
        assert {len(i) for g in got for _, i, _ in g} == {batch}
        check_rows([loader_rows(g) for g in got], filt, epoch, a)
        for g in got:
            for sample, index, modality in g:
                pads = modality == PAD
                # a PAD row is its sample, masked like the batch (video rows show video only)
                m = int(modality[~pads][0]) if (~pads).any() else None
                if m is not None:
                    hidden = "video" if m == 0 else "audio"
                    assert not sample[hidden].any()
                shown = sample["audio" if m == 0 else "video"][pads] if m is not None else None
                if shown is not None:
                    assert torch.equal(shown[:, 0], (index[pads] + 1).float())
                feats = {k: torch.ones(len(index), 2) for k in ("audio", "video")}
                zeroed = mask_features(feats, modality, filt)
                assert not zeroed["audio"][pads].any() and not zeroed["video"][pads].any()


def test_stateful_dataloader_resumes_two_ranks_with_accumulation_and_fill() -> None:
    n, batch, a, cut = 37, 3, 2, 3
    base = [
        {"audio": torch.full((2,), i + 1.0), "video": torch.full((1,), i + 1.0)} for i in range(n)
    ]

    def build() -> tuple[HardSampleFilter, list[Any], list[StatefulDataLoader]]:
        filt = scored(n, 2, 3)
        ranks = [
            ReassemblingBatchSampler(
                filt,
                batch,
                num_replicas=2,
                rank=r,
                accumulation_steps=a,
                tail="fill",
                warmup_epochs=1,
            )
            for r in range(2)
        ]
        data = ModalityDecoupler(base, filt)
        loaders = [
            StatefulDataLoader(data, batch_sampler=s, num_workers=2, collate_fn=RemixCollate())
            for s in ranks
        ]
        for s in ranks:
            s.set_epoch(1)
        return filt, ranks, loaders

    filt, _, loaders = build()
    full = [loader_rows(list(loader)) for loader in loaders]
    check_rows(full, filt, 1, a)
    filt, _, loaders = build()
    heads, states = [], []
    for loader in loaders:
        it = iter(loader)
        heads.append(loader_rows([next(it) for _ in range(cut)]))
        states.append(loader.state_dict())
        del it
    filter_state = filt.state_dict()
    filt, _, loaders = build()
    filt.load_state_dict(filter_state)
    for head, state, loader, expected in zip(heads, states, loaders, full):
        loader.load_state_dict(state)
        assert head + loader_rows(list(loader)) == expected


# ------------------------------------------------------- a state from before the move
def test_a_state_saved_before_plan_version_2_resumes_with_its_old_step_order() -> None:
    saved = torch.load(DATA / "sampler_random_26fb052.pt", weights_only=True)
    names = ("audio", "video", "text")
    for rank, record in enumerate(saved["ranks"]):
        filt = HardSampleFilter(61, names, score="loss")
        filt.load_state_dict(saved["filter"])
        sampler = ReassemblingBatchSampler(
            filt, 4, order="random", seed=11, num_replicas=2, rank=rank, joint_fraction=0.25
        )
        state = record["state"]
        assert "plan_version" not in state
        sampler.load_state_dict(state)
        rest = [[(i if i >= 0 else ~i, m) for i, m in b] for b in sampler]  # PAD: a repeat
        old = [[tuple(k) for k in b] for b in record["batches"]]
        assert rest == old[state["yielded"] :]
        config = {"order": "random", "seed": 11, "num_replicas": 2, "rank": rank}
        fresh = ReassemblingBatchSampler(filt, 4, joint_fraction=0.25, **config)
        fresh.set_epoch(3)  # the same epoch planned today: the step order is drawn first
        assert [[(i if i >= 0 else ~i, m) for i, m in b] for b in fresh] != old
        sampler.set_epoch(4)  # later epochs follow today's order
        fresh.set_epoch(4)
        assert list(sampler) == list(fresh)


# ---------------------------------------------------------------- run length
def test_a_warmup_as_long_as_the_run_is_refused_and_an_epoch_past_it_warns() -> None:
    filt = HardSampleFilter(10, NAMES[:2])
    with pytest.raises(
        ValueError, match="warmup_epochs=5 leaves no remix epoch in a run of epochs=5"
    ):
        ReassemblingBatchSampler(filt, 2, warmup_epochs=5, epochs=5)
    with pytest.raises(ValueError, match="warmup_epochs=6 leaves no remix epoch"):
        StreamingRemixer([], filt, 2, warmup_epochs=6, epochs=3)
    with pytest.raises(ValueError, match="epochs=0"):
        ReassemblingBatchSampler(filt, 2, epochs=0)
    sampler = ReassemblingBatchSampler(filt, 2, warmup_epochs=4, epochs=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemixWarning)
        for epoch in range(5):
            sampler.set_epoch(epoch)
    assert not sampler.is_warmup(4) and sampler.epochs == 5
    with pytest.warns(
        RemixWarning, match=r"set_epoch\(5\) lies past the run of epochs=5"
    ) as caught:
        sampler.set_epoch(5)
        sampler.set_epoch(5)
    assert len([w for w in caught if w.category is RemixWarning]) == 1


def test_settings_are_checked_once_with_the_arguments_name() -> None:
    with pytest.raises(ValueError, match="tail should be one of \\('merge', 'keep', 'fill'\\)"):
        EpochSettings(2, tail="pad")
    with pytest.raises(ValueError, match="rank should lie in \\[0, num_replicas=2\\)"):
        EpochSettings(2, num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="joint_fraction"):
        EpochSettings(2, joint_fraction="half")
    filt = HardSampleFilter(10, NAMES[:2])
    with pytest.raises(ValueError, match="order should be one of \\('interleave', 'random'\\)"):
        StreamingRemixer([], filt, 2, order="sequential")


# ------------------------------------------------------------ stream sample ids
def id_shards(folder: Path, shards: int, per_shard: int, *, restart: bool) -> list[str]:
    """WebDataset shards; ``restart=True`` numbers every shard's samples from 0 again."""
    wds = pytest.importorskip("webdataset")
    urls = []
    for s in range(shards):
        url = str(folder / f"shard-{s}.tar")
        with wds.TarWriter(url) as sink:
            for k in range(per_shard):
                i = k if restart else s * per_shard + k
                sink.write({"__key__": f"{i:06d}", "audio.npy": np.full(2, i + 1.0, np.float32),
                            "video.npy": np.full(3, i + 1.0, np.float32)})  # fmt: skip
        urls.append(url)
    return urls


def wds_remixer(urls: list[str], n: int, **kwargs: Any) -> StreamingRemixer:
    import webdataset as wds

    stream = (
        wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        .decode()
        .map(
            lambda s: {
                "id": int(s["__key__"]),
                "audio": torch.from_numpy(s["audio.npy"]),
                "video": torch.from_numpy(s["video.npy"]),
            }
        )
    )
    return StreamingRemixer(stream, scored(n, 2, 5), 4, **kwargs)


def test_ids_restarting_in_every_shard_fail_at_the_first_repeat(tmp_path: Path) -> None:
    urls = id_shards(tmp_path, 2, 10, restart=True)  # ids 0..9 twice, in one worker's stream
    remixer = wds_remixer(urls, 20)
    with pytest.raises(ValueError, match=r"sample id 0 was read twice in epoch 0 by worker 0"):
        list(DataLoader(remixer, batch_size=None))


def test_ids_repeated_across_workers_are_refused_at_the_read(tmp_path: Path) -> None:
    """The workers of a process share which worker read each id: ids that restart in every
    shard raise in the worker that reads one the other read (check_loader used to be the
    only one to see it, from the loader's output)."""
    from remix_data.testing import check_loader

    urls = id_shards(tmp_path, 2, 10, restart=True)  # one shard per worker: each worker's ids
    remixer = wds_remixer(urls, 20, warmup_epochs=1)  # are unique, the stream's are not
    loader = DataLoader(remixer, batch_size=None, num_workers=2)
    with pytest.raises(ValueError, match=r"was read by worker [01] and by worker [01] of 2"):
        check_loader(loader, None, epochs=2)


def test_check_loader_passes_a_correct_stream_with_workers(tmp_path: Path) -> None:
    from remix_data.testing import check_loader

    urls = id_shards(tmp_path, 4, 10, restart=False)
    remixer = wds_remixer(urls, 40, warmup_epochs=1, tail="fill")
    loader = DataLoader(remixer, batch_size=None, num_workers=2)
    raw = [sample(i) for i in range(40)]  # what each id holds (masking is compared to it)
    records = check_loader(loader, [{k: v for k, v in s.items() if k != "id"} for s in raw])
    assert [r["epoch"] for r in records] == [0, 1, 2] and records[0]["warmup"]
    assert all(len({i for rows in r["indices"] for i in rows}) > 0 for r in records)
    assert remixer.stats()["batch_sizes"] == [4]


# ---------------------------------------------------------------- PAD rows
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bfloat16])
@pytest.mark.parametrize("mask", ["zeros", "drop", "none"])
def test_pad_rows_are_masked_like_their_batch_for_every_dtype(
    dtype: torch.dtype, mask: str
) -> None:
    from remix_data.vocabulary import KeyBatch

    base = [
        {
            "audio": torch.full((2,), i + 1, dtype=dtype),
            "video": torch.full((3,), i + 1, dtype=dtype),
        }
        for i in range(6)
    ]
    filt = HardSampleFilter(6, NAMES[:2])
    data = ModalityDecoupler(base, filt, mask=mask)
    for keys, shown in (
        (KeyBatch([1, 4, ~1, ~4], 1, filt.modalities), [1, 1, PAD, PAD]),
        (KeyBatch([5, ~5, ~5], ALL, filt.modalities), [ALL, PAD, PAD]),  # warm-up: unmasked
    ):
        batch, index, modality = RemixCollate()(data.__getitems__(keys))
        one_by_one = RemixCollate()([data[k] for k in keys])  # the item path agrees
        assert torch.equal(one_by_one[1], index) and torch.equal(one_by_one[2], modality)
        assert all(torch.equal(one_by_one[0][name], batch[name]) for name in batch)
        real = [i if i >= 0 else ~i for i in keys.indices]
        assert index.tolist() == real and modality.tolist() == shown
        video = torch.stack([base[i]["video"] for i in real])
        assert batch["video"].dtype == dtype and torch.equal(batch["video"], video)
        if keys.modality == ALL or mask == "none":
            assert torch.equal(batch["audio"], torch.stack([base[i]["audio"] for i in real]))
        elif mask == "zeros":
            assert batch["audio"].dtype == dtype and not batch["audio"].any()
        else:
            assert "audio" not in batch


def test_mask_features_zeroes_every_modality_of_a_pad_row() -> None:
    feats = {"audio": torch.ones(4, 2), "video": torch.ones(4, 2, dtype=torch.bfloat16)}
    out = mask_features(feats, torch.tensor([0, PAD, ALL, 1]), NAMES[:2])
    assert out["audio"][:, 0].tolist() == [1, 0, 1, 0]
    assert out["video"][:, 0].tolist() == [0, 0, 1, 1] and out["video"].dtype == torch.bfloat16
    assert not any(t.any() for t in mask_features(feats, PAD, NAMES[:2]).values())


def test_build_gives_the_sampler_the_run_length_and_recommended_static_shapes() -> None:
    from remix_data.presets import PAPER, RECOMMENDED, Preset, build

    base = [{"audio": torch.randn(2), "video": torch.randn(3)} for _ in range(20)]
    labels = [i % 2 for i in range(20)]
    parts = build(RECOMMENDED, base, modalities=NAMES[:2], batch_size=4, epochs=12, labels=labels)
    assert (parts.sampler.epochs, parts.sampler.tail) == (12, "fill")
    paper = build(PAPER, base, modalities=NAMES[:2], batch_size=4, epochs=12)
    assert paper.sampler.tail == "merge"  # the reference's short last batch, no batch of one
    with pytest.raises(ValueError, match="unknown keys \\['epochs'\\]"):
        Preset("mine", warmup=1, sampler={"epochs": 5})


def with_pad(batches: list[list[Any]]) -> int:
    """The position of the batch that holds PAD keys."""
    return next(t for t, b in enumerate(batches) if any(i < 0 for i, _ in b))


class PadFirst(ReassemblingBatchSampler):
    """Yields the batch with PAD rows first, before the other batches of its group."""

    def __iter__(self) -> Any:
        batches = [list(b) for b in super().__iter__()]
        return iter([batches.pop(with_pad(batches)), *batches])


class PadOfAnotherGroup(ReassemblingBatchSampler):
    """Its PAD rows repeat a sample of the other modality."""

    def __iter__(self) -> Any:
        batches = [list(b) for b in super().__iter__()]
        t = with_pad(batches)
        other = next(i for b in batches for i, m in b if i >= 0 and m != batches[t][0][1])
        batches[t] = [(i if i >= 0 else ~other, m) for i, m in batches[t]]
        return iter(batches)


class TrainedRepeat(ReassemblingBatchSampler):
    """Repeats completing a batch that are not marked PAD (trained twice)."""

    def __iter__(self) -> Any:
        batches = [list(b) for b in super().__iter__()]
        t = with_pad(batches)
        batches[t] = [(i if i >= 0 else ~i, m) for i, m in batches[t]]
        return iter(batches)


@pytest.mark.parametrize(
    ("broken", "invariant"),
    [
        (PadFirst, "PAD rows last"),
        (PadOfAnotherGroup, "unimodal"),
        (TrainedRepeat, "each kept sample once"),
    ],
)
def test_check_epoch_names_a_broken_pad_rule(broken: type, invariant: str) -> None:
    filt = HardSampleFilter(22, NAMES[:2], score="loss")
    filt.update(
        torch.arange(22),
        {"audio": (torch.arange(22) < 10).float(), "video": torch.full((22,), 0.5)},
    )
    # audio: 10 samples -> 4, 4, 2 + 2 PAD; video: 12 -> 4, 4, 4
    kwargs = {"tail": "fill", "order": "sequential"}
    check_epoch(ReassemblingBatchSampler(filt, 4, **kwargs), epoch=1)  # the real one passes
    with pytest.raises(AssertionError, match=f"remix invariant broken: {invariant}:"):
        check_epoch(broken(filt, 4, **kwargs), epoch=1)
