"""The optimised hot paths behave exactly like the straightforward code they replace.

- ``ModalityDecoupler.__getitems__`` (batch path) gives, item for item, what
  ``__getitem__`` gives, and collates to the same batch;
- the sampler's numpy planning yields the batches of the torch formulation it
  replaced (same ``randperm`` stream, so seeds keep their plans; a random step
  order is drawn before the shuffles since plan version 2, after them for a
  state saved before);
- a :class:`~remix_data.vocabulary.KeyBatch` is the list of its keys, edits make
  plain lists, and the decoupler's shortcut over it gives what the keys give;
- masking in place only where the dataset declares fresh samples;
- :class:`~remix_data.RemixCollate`'s int columns equal ``torch.tensor``'s.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, default_collate

from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    RemixCollate,
)
from remix_data.collate import _int64
from remix_data.decoupler import RemixItem
from remix_data.masking import DroppedSample
from remix_data.seeds import PLAN, SCORING, mix_seed
from remix_data.vocabulary import PAD, KeyBatch

NAMES = ("audio", "video")


#: Classes that explain a misuse in their error messages and are otherwise their base
#: (the first item of a batch, the first dropped sample): compared as the base.
PLAIN = {RemixItem: tuple, DroppedSample: dict}


def same(a: Any, b: Any) -> bool:
    a = PLAIN[type(a)](a) if type(a) in PLAIN else a
    b = PLAIN[type(b)](b) if type(b) in PLAIN else b
    if isinstance(a, torch.Tensor):
        return (
            type(b) is torch.Tensor
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def items(kind: str, n: int = 7) -> list[Any]:
    make = torch.full if kind != "numpy" else (lambda s, v: np.full(s, v, dtype=np.float32))
    out: list[Any] = []
    for i in range(n):
        audio, video = make((2,), float(i + 1)), make((3, 2), float(-i))
        out.append(
            (i % 3, audio, video) if kind == "tuple" else {"audio": audio, "video": video, "y": i}
        )
    return out


@pytest.mark.parametrize("kind", ["tensor", "numpy", "tuple"])
@pytest.mark.parametrize("mask", ["zeros", "drop", "none"])
@pytest.mark.parametrize(
    "keys",
    [
        [(0, 0), (3, 0), (5, 0)],  # unimodal batch, as the sampler yields
        [(6, 1), (1, 1)],
        [(2, ALL), (4, ALL)],  # warm-up
        [(0, 1), (1, 0), (2, ALL), 3],  # mixed keys
        [(4, 1)],
        [(torch.tensor(2), torch.tensor(1)), (5, 1)],  # tensor keys are converted
        [],
    ],
)
def test_getitems_matches_getitem(kind: str, mask: str, keys: list[Any]) -> None:
    if kind == "tuple" and mask == "drop":
        return
    locations: Any = {"audio": 1, "video": 2} if kind == "tuple" else None
    data = ModalityDecoupler(items(kind), NAMES, mask=mask, locations=locations)
    batch = data.__getitems__(list(keys))
    single = [data[k] for k in keys]
    assert same(batch, single)
    if keys and len({len(s[0]) for s in single}) == 1:
        assert same(default_collate(batch), default_collate(single))


def test_getitems_raises_like_getitem() -> None:
    data = ModalityDecoupler(items("tensor"), NAMES)
    for keys, match in (
        ([(0, 0), (1, 2)], "modality=2"),
        ([(0, 0), (0, 1, 2)], r"key=\(0, 1, 2\)"),
    ):
        with pytest.raises(ValueError, match=match):
            data.__getitems__(keys)
    tuples = ModalityDecoupler([(torch.ones(1),) * 2] * 2, ("a", "b"), locations={"a": 0, "b": 1})
    with pytest.raises(TypeError, match="got a list of 2 keys"):
        tuples.__getitems__([[(0, 0), (1, 0)]])


def test_batch_zeros_are_shared_read_only_views() -> None:
    data = ModalityDecoupler(items("tensor"), NAMES)
    batch = data.__getitems__([(0, 1), (1, 1), (2, 1)])
    zeros = [sample["audio"] for sample, _, _ in batch]
    assert all(float(z.abs().sum()) == 0.0 and z.shape == (2,) for z in zeros)
    with pytest.raises(RuntimeError, match="more than one element"):
        zeros[0].add_(1)  # cannot leak into the other samples
    # mixed shapes in one batch: each sample gets its own zeros_like
    odd = items("tensor")
    odd[1]["audio"] = torch.ones(5, dtype=torch.float64)
    mixed = ModalityDecoupler(odd, NAMES).__getitems__([(0, 1), (1, 1)])
    assert mixed[1][0]["audio"].shape == (5,) and mixed[1][0]["audio"].dtype == torch.float64
    assert mixed[0][0]["audio"].shape == (2,) and mixed[0][0]["audio"].is_contiguous()


#: What a framework does with a batch it completes or cuts: each makes a new plain list.
EDITS = [
    ("add", lambda b: b + [(1, 0)]),  # noqa: RUF005 - the operator itself is tested
    ("radd", lambda b: [(5, ALL)] + b),  # noqa: RUF005
    ("iadd", lambda b: _iadd(b, b)),  # Accelerate's ``initial_data += initial_data``
    ("slice", lambda b: b[1:]),
    ("imul", lambda b: _imul(b)),
    ("list", lambda b: list(b)),
    ("reversed", lambda b: list(reversed(b))),
]


def _imul(batch: Any) -> Any:
    batch *= 2
    return batch


#: In-place edits of a sampler's batch: each raises, so its shortcut stays true.
IN_PLACE = [
    ("setitem", lambda b: b.__setitem__(0, (6, 0))),
    ("slice", lambda b: b.__setitem__(slice(0, 1), [(2, 1), (3, 0)])),
    ("delitem", lambda b: b.__delitem__(0)),
    ("append", lambda b: b.append((5, ALL))),
    ("extend", lambda b: b.extend([(4, 1)])),
    ("insert", lambda b: b.insert(0, (3, 1))),
    ("pop", lambda b: b.pop()),
    ("remove", lambda b: b.remove(b[0])),
    ("sort", lambda b: b.sort(reverse=True)),
    ("reverse", lambda b: b.reverse()),
    ("clear", lambda b: b.clear()),
]


def _iadd(batch: Any, more: Any) -> Any:
    batch += more
    return batch


@given(
    indices=st.lists(st.integers(0, 6), min_size=1, max_size=6),
    pads=st.lists(st.integers(0, 6), max_size=3),
    modality=st.sampled_from([ALL, 0, 1]),
    edit=st.sampled_from(EDITS),
)
def test_a_key_batch_is_its_keys_and_edits_make_plain_lists(
    indices: list[int], pads: list[int], modality: int, edit: Any
) -> None:
    marked = indices + [~i for i in pads]  # PAD keys come last, as the sampler puts them
    batch = KeyBatch(marked, modality)
    plain = [(i, modality) for i in marked]
    assert batch == plain and plain == batch and list(batch) == plain and len(batch) == len(plain)
    assert batch.padded == len(pads) and batch[0] == plain[0] and batch[-1] == plain[-1]
    assert pickle.loads(pickle.dumps(batch)) == plain
    data = ModalityDecoupler(items("tensor"), NAMES)
    assert same(data.__getitems__(batch), data.__getitems__(plain))
    name, change = edit
    edited = change(batch)
    assert type(edited) is list and edited == change(list(plain)), name
    assert batch == plain, name  # the batch itself never changes
    if all(0 <= i < 7 for i, _ in edited):
        assert same(data.__getitems__(edited), data.__getitems__(change(list(plain)))), name
    for name, change in IN_PLACE:
        with pytest.raises(TypeError, match="cannot be changed in place"):
            change(batch)
        assert batch == plain, name


def test_pad_keys_return_the_sample_masked_for_the_batch_modality_with_modality_pad() -> None:
    data = ModalityDecoupler(items("tensor"), NAMES)
    keys = KeyBatch([3, 5, ~3, ~5], 1, NAMES)
    rows = data.__getitems__(keys)
    assert [(i, m) for _, i, m in rows] == [(3, 1), (5, 1), (3, PAD), (5, PAD)]
    assert same([s for s, _, _ in rows[2:]], [s for s, _, _ in rows[:2]])  # masked for video
    assert same(rows, data.__getitems__(list(keys)))  # plain lists of PAD keys agree
    assert same(rows[2], data[(~3, 1)])
    _, index, modality = RemixCollate()(rows)
    assert index.tolist() == [3, 5, 3, 5] and modality.tolist() == [1, 1, PAD, PAD]
    with pytest.raises(ValueError, match="index should be >= 0"):
        data[-1]  # a plain index is never a PAD key


def test_the_shortcut_checks_the_modality_against_the_decoupler() -> None:
    data = ModalityDecoupler(items("tensor"), NAMES)
    with pytest.raises(ValueError, match="modality=2"):
        data.__getitems__(KeyBatch([0, 1], 2))  # e.g. a sampler of a 3-modality filter


class Stored(list[dict[str, Any]]):
    """A dataset that keeps its samples and returns its own list from ``__getitems__``."""

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        return self if indices == list(range(len(self))) else [self[i] for i in indices]


class Fresh:
    """A dataset that builds a new dict per call (as most do), without saying so."""

    def __init__(self) -> None:
        self.made: list[int] = []

    def __len__(self) -> int:
        return 7

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = items("tensor")[i]
        self.made.append(id(sample))
        return sample


class Declared(Fresh):
    """The same, saying so: the decoupler may mask its samples in place."""

    fresh_samples = True


@pytest.mark.parametrize("mask", ["zeros", "drop"])
@pytest.mark.parametrize("dataset", ["list", "stored", "fresh", "declared"])
def test_masking_in_place_only_where_the_dataset_says_its_samples_are_fresh(
    mask: str, dataset: str
) -> None:
    kinds = {"list": items, "stored": lambda _: Stored(items("tensor")), "fresh": lambda _: Fresh()}
    base: Any = Declared() if dataset == "declared" else kinds[dataset]("tensor")
    before = [dict(base[i]) for i in range(7)]
    data = ModalityDecoupler(base, NAMES, mask=mask)
    keys = KeyBatch(list(range(7)), 1)
    batch = data.__getitems__(keys)
    assert same(batch, [data[k] for k in keys])
    for sample, _, _ in batch:
        assert ("audio" in sample) == (mask == "zeros") and "video" in sample
    if dataset in ("list", "stored"):  # the dataset's own samples are never edited
        assert all(same(base[i], before[i]) for i in range(7))
        assert all(sample is not base[i] for i, (sample, _, _) in enumerate(batch))
    made = {id(sample) for sample, _, _ in batch} & set(getattr(base, "made", []))
    # a declared fresh dict is masked in place (no copy); anything else is copied; the first
    # dropped sample becomes a DroppedSample (a copy) so the collated batch explains a missing key
    in_place = (6 if mask == "drop" else 7) if dataset == "declared" else 0
    assert len(made) == in_place
    assert type(batch[0][0]) is (DroppedSample if mask == "drop" else dict)


@given(
    values=st.lists(
        st.one_of(
            st.integers(-(2**63), 2**63 - 1),
            st.booleans(),
            st.integers(-5, 5).map(np.int64),
            st.integers(-5, 5).map(torch.tensor),
        ),
        min_size=1,
        max_size=20,
    ),
    repeat=st.booleans(),
)
def test_int_columns_equal_torch_tensor(values: list[Any], repeat: bool) -> None:
    column = tuple([values[0]] * len(values)) if repeat else tuple(values)
    got, want = _int64(column), torch.tensor(column, dtype=torch.int64)
    assert got.dtype == torch.int64 and torch.equal(got, want)


@given(
    first=st.sampled_from([ALL, 0, 1, PAD, 7]) | st.integers(-(2**63), 2**63 - 1),
    real=st.integers(1, 40),
    pads=st.integers(0, 40),
    tail=st.sampled_from([None, 0, True, np.int64(PAD)]),
)
def test_a_modality_column_with_pad_rows_equals_torch_tensor(
    first: int, real: int, pads: int, tail: Any
) -> None:
    column = (first,) * real + (PAD,) * pads + (() if tail is None else (tail,))
    got, want = _int64(column), torch.tensor(column, dtype=torch.int64)
    assert got.dtype == torch.int64 and torch.equal(got, want)


def test_remix_collate_builds_the_columns_of_the_keys() -> None:
    data = ModalityDecoupler(items("tensor"), NAMES)
    batch = data.__getitems__([(0, 1), (3, 1), (5, 0)])
    sample, index, modality = RemixCollate()(batch)
    assert index.tolist() == [0, 3, 5] and modality.tolist() == [1, 1, 0]
    assert same(sample, default_collate([s for s, _, _ in batch]))


def test_remix_collate_columns_cross_from_dataloader_workers() -> None:
    """The columns move to shared memory from a worker (they own torch memory)."""
    base = items("tensor", n=12)
    filt = HardSampleFilter(len(base), NAMES)
    sampler = ReassemblingBatchSampler(filt, batch_size=4, seed=1)
    data = ModalityDecoupler(base, filt)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=RemixCollate(), num_workers=2)
    want = [([i for i, _ in b], [m for _, m in b]) for b in sampler]
    sampler.set_epoch(0)
    got = [(index.tolist(), modality.tolist()) for _, index, modality in loader]
    assert got == want and len(got) == len(sampler)


def torch_plan(
    sampler: ReassemblingBatchSampler, snapshot: torch.Tensor | None, legacy: bool = False
) -> list[list[Any]]:
    """The torch formulation of the plan (before the numpy port), one rank.

    PAD repeats are keys ``(~i, m)``; a random step order is drawn first
    (``legacy``: after the shuffles, as states without ``plan_version`` did).
    """
    gen = torch.Generator().manual_seed(mix_seed(sampler.seed, sampler.epoch, PLAN))
    n, b, a = sampler.filter.num_samples, sampler.batch_size, sampler.accumulation_steps
    if snapshot is None:
        counts = [n]
    else:
        counts = [int((snapshot == m).sum()) for m in range(len(sampler.filter.modalities))]
    step = sampler.num_replicas * a * b
    steps_of = [c // step if sampler.drop_last else -(-c // step) for c in counts]
    owner = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(steps_of))
    random = sampler.order == "random" and sum(1 for s in steps_of if s) > 1
    if random and not legacy:
        owner = owner[torch.randperm(owner.numel(), generator=gen)]
    if snapshot is None:
        sources = [(ALL, torch.randperm(n, generator=gen, dtype=torch.int32))]
    else:
        sources = []
        for m in range(len(sampler.filter.modalities)):
            members = torch.nonzero(snapshot == m).squeeze(1)
            order = torch.randperm(members.numel(), generator=gen, dtype=torch.int32)
            sources.append((m, members.index_select(0, order)))
    if random and legacy:
        owner = owner[torch.randperm(owner.numel(), generator=gen)]
    groups = []
    for m, idx in sources:
        count, per_rank = idx.numel(), a * b
        step = sampler.num_replicas * per_rank
        if step == b:
            keep = count - count % b if sampler.drop_last else count
            groups.append((m, idx[:keep], keep // b if sampler.drop_last else -(-count // b)))
            continue
        rest = count % step
        if rest and sampler.drop_last:
            idx = idx[: count - rest]
        elif rest:
            pads = idx.repeat(-(-(step - rest) // count))[: step - rest]
            idx = torch.cat((idx, -1 - pads))  # PAD keys (~i, m)
        steps = idx.numel() // step
        mine = idx.view(steps, sampler.num_replicas, per_rank)[:, sampler.rank].reshape(-1)
        groups.append((m, mine, steps * a))
    if sampler.order == "interleave" and owner.numel():
        position = torch.cat(
            [(torch.arange(s, dtype=torch.float64) + 0.5) / s for s in steps_of if s]
        )
        owner = owner[torch.sort(position, stable=True).indices]
    batches: list[list[Any]] = []
    cursor = [0] * len(groups)
    for g in owner.tolist():
        for _ in range(a):
            m, idx, _ = groups[g]
            part = idx[cursor[g] * b : (cursor[g] + 1) * b].tolist()
            cursor[g] += 1
            batches.append([(i, m) for i in part])
    return batches


@given(
    n=st.integers(1, 300),
    modalities=st.integers(2, 3),
    batch_size=st.integers(1, 40),
    order=st.sampled_from(["sequential", "interleave", "random"]),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 3),
    world=st.integers(1, 3),
    accumulation=st.integers(1, 3),
    warmup=st.booleans(),
)
def test_numpy_plan_matches_the_torch_formulation(
    n: int,
    modalities: int,
    batch_size: int,
    order: str,
    drop_last: bool,
    seed: int,
    epoch: int,
    world: int,
    accumulation: int,
    warmup: bool,
) -> None:
    names = tuple(f"m{i}" for i in range(modalities))
    filt = HardSampleFilter(n, names, score="loss")
    gen = torch.Generator().manual_seed(seed)
    filt.update(torch.arange(n), {m: torch.rand(n, generator=gen) for m in names})
    for rank in range(world):
        sampler = ReassemblingBatchSampler(
            filt,
            batch_size,
            warmup_epochs=epoch + 1 if warmup else 0,
            order=order,
            drop_last=drop_last,
            seed=seed,
            num_replicas=world,
            rank=rank,
            accumulation_steps=accumulation,
            tail="keep",  # the torch formulation predates the default tail="merge"
        )
        sampler.set_epoch(epoch)
        state = sampler.state_dict()
        snapshot = None if warmup else filt.snapshot(epoch)
        assert list(sampler) == torch_plan(sampler, snapshot)
        del state["plan_version"]  # the epoch's start, saved before plan version 2
        sampler.load_state_dict(state)
        assert list(sampler) == torch_plan(sampler, snapshot, legacy=True)


@given(st.integers(0, 2**63), st.integers(0, 10**6))
def test_plan_seeds_are_those_the_sampler_always_used(seed: int, epoch: int) -> None:
    # The mix before the seed scheme was shared: plans of existing seeds must not change.
    before = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (
        2**63 - 1
    )
    assert mix_seed(seed, epoch, PLAN) == before
    assert mix_seed(seed, epoch, SCORING) != before
