"""remix_data.testing: the strategies draw valid inputs; each checker catches a broken sampler."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given
from hypothesis.strategies import SearchStrategy

import remix_data.testing as rt
from remix_data import HardSampleFilter, ReassemblingBatchSampler, RemixWarning
from remix_data.testing import (
    build_samplers,
    check_epoch,
    check_step_modalities,
    logits,
    sampler_configs,
    score_tables,
)

Batch = list[tuple[int, int]]
STRATEGIES = ("logits", "score_tables", "sampler_configs")


# ------------------------------------------------------------------ strategies
@pytest.mark.parametrize("name", STRATEGIES)
def test_each_strategy_function_returns_a_strategy_without_arguments(name: str) -> None:
    assert name in rt.__all__
    assert isinstance(getattr(rt, name)(), SearchStrategy)


def test_every_export_is_a_strategy_or_a_helper() -> None:
    helpers = {
        "build_samplers",
        "simulate_sync",
        "check_epoch",
        "check_step_modalities",
        "check_loader",
        "naive_assignment",
    }
    assert set(rt.__all__) == set(STRATEGIES) | helpers
    assert all(callable(getattr(rt, name)) for name in rt.__all__)


@given(logits())
def test_logits_are_finite_float32_matrices(x: torch.Tensor) -> None:
    assert x.dtype == torch.float32 and x.dim() == 2 and x.shape[1] >= 2
    assert bool(torch.isfinite(x).all())


@given(score_tables())
def test_score_tables_fit_a_filter(table: dict) -> None:
    m, n = len(table["modalities"]), table["num_samples"]
    assert table["values"].shape == (m, n)
    HardSampleFilter(n, table["modalities"], score=table["score"])


@given(sampler_configs(max_samples=20))
def test_sampler_configs_cover_worlds_and_accumulation(config: dict) -> None:
    samplers = build_samplers(config)
    assert len(samplers) == config["num_replicas"]
    assert {s.accumulation_steps for s in samplers} == {config["accumulation_steps"]}
    assert [s.rank for s in samplers] == list(range(config["num_replicas"]))


# ------------------------------------------------------------ broken samplers
def spread_filter(n: int = 20) -> HardSampleFilter:
    """Unscored samples are spread: even indices train modality 0, odd ones modality 1."""
    return HardSampleFilter(n, ("a", "b"))


class MixedBatch(ReassemblingBatchSampler):
    """Swaps one key between the first and the last batch: both batches mix modalities."""

    def __iter__(self) -> Iterator[Batch]:
        batches = [list(b) for b in super().__iter__()]
        first, last = batches[0], batches[-1]
        first[-1], last[0] = last[0], first[-1]
        return iter(batches)


class DuplicatedSample(ReassemblingBatchSampler):
    """Yields one sample twice in its first batch (and never another sample)."""

    def __iter__(self) -> Iterator[Batch]:
        batches = [list(b) for b in super().__iter__()]
        batches[0][-1] = batches[0][0]
        return iter(batches)


class DishonestLen(ReassemblingBatchSampler):
    def __len__(self) -> int:
        return super().__len__() + 1


class EmptyBatch(ReassemblingBatchSampler):
    def __iter__(self) -> Iterator[Batch]:
        return iter([*super().__iter__(), []])

    def __len__(self) -> int:
        return super().__len__() + 1


class ReversedOrder(ReassemblingBatchSampler):
    """Each batch is unimodal, but the rank walks its plan backwards."""

    def __iter__(self) -> Iterator[Batch]:
        return iter(list(super().__iter__())[::-1])


class LastBatchFirst(ReassemblingBatchSampler):
    """Moves the last batch (of the last modality) to position 1: step 0 mixes micro-batches."""

    def __iter__(self) -> Iterator[Batch]:
        batches = list(super().__iter__())
        batches.insert(1, batches.pop())
        return iter(batches)


class JointAfterWarmup(ReassemblingBatchSampler):
    """Yields joint (ALL) keys in a remix epoch."""

    def __iter__(self) -> Iterator[Batch]:
        return iter([[(i, -1) for i, _ in b] for b in super().__iter__()])


def test_the_real_sampler_passes_every_check() -> None:
    filt = spread_filter()
    check_epoch(ReassemblingBatchSampler(filt, 3), epoch=0)
    ranks = [
        ReassemblingBatchSampler(filt, 2, num_replicas=2, rank=r, accumulation_steps=2)
        for r in range(2)
    ]
    batches = check_epoch(ranks, epoch=1)
    mods = [[[m for _, m in b] for b in rank] for rank in batches]
    assert check_step_modalities(mods, accumulation_steps=2) == [0, 0, 1, 1]


@pytest.mark.parametrize(
    ("broken", "invariant"),
    [
        (MixedBatch, "unimodal"),
        (JointAfterWarmup, "unimodal"),
        (DuplicatedSample, "each kept sample once"),
        (DishonestLen, "len honest"),
        (EmptyBatch, "batch size"),
    ],
)
def test_check_epoch_names_the_broken_invariant(
    broken: type[ReassemblingBatchSampler], invariant: str
) -> None:
    sampler = broken(spread_filter(), batch_size=3)
    with pytest.raises(AssertionError, match=f"remix invariant broken: {invariant}:"):
        check_epoch(sampler, epoch=0)


def two_ranks(second: type[ReassemblingBatchSampler]) -> list[ReassemblingBatchSampler]:
    """Rank 0 a plain sampler, rank 1 a ``second`` one, over one spread filter."""
    filt = spread_filter()
    return [
        ReassemblingBatchSampler(filt, 2, num_replicas=2, rank=0),
        second(filt, 2, num_replicas=2, rank=1),
    ]


def test_check_epoch_catches_ranks_training_different_modalities_in_one_step() -> None:
    ranks = two_ranks(ReversedOrder)
    with pytest.raises(AssertionError, match="same modality per step: step 0 mixes"):
        check_epoch(ranks, epoch=0)


def test_check_epoch_catches_micro_batches_of_one_step_with_different_modalities() -> None:
    sampler = LastBatchFirst(spread_filter(), 2, accumulation_steps=2)
    with pytest.raises(AssertionError, match="same modality per step: step 0 mixes"):
        check_epoch(sampler, epoch=0)


def test_check_epoch_catches_a_rank_that_yields_fewer_batches() -> None:
    class Short(ReassemblingBatchSampler):
        def __iter__(self) -> Iterator[Batch]:
            return iter(list(super().__iter__())[:-1])

        def __len__(self) -> int:
            return super().__len__() - 1

    ranks = two_ranks(Short)
    with pytest.raises(AssertionError, match="len honest: ranks yield different batch counts"):
        check_epoch(ranks, epoch=0)


def test_check_epoch_rejects_samplers_that_are_not_ranks_of_one_world() -> None:
    filt = spread_filter()
    with pytest.raises(ValueError, match=r"ranks 0\.\.n-1"):
        check_epoch([ReassemblingBatchSampler(filt, 2, num_replicas=2, rank=1)])
    with pytest.raises(ValueError, match="at least one sampler"):
        check_epoch([])


# ------------------------------------------------------- check_step_modalities
def test_check_step_modalities_accepts_tensors_lists_and_ids() -> None:
    ranks = [[torch.tensor([1, 1]), [1], 0, 0], [torch.tensor([1]), 1, [0, 0], torch.tensor([0])]]
    assert check_step_modalities(ranks, accumulation_steps=2) == [1, 0]


@pytest.mark.parametrize(
    ("ranks", "steps", "invariant"),
    [
        ([[torch.tensor([0, 1])]], 1, "unimodal"),
        ([[0, 1], [0]], 1, "len honest"),
        ([[0, 1], [1, 0]], 1, "same modality per step"),
        ([[0, 1, 1, 1]], 2, "same modality per step"),
    ],
)
def test_check_step_modalities_names_the_broken_invariant(
    ranks: list, steps: int, invariant: str
) -> None:
    with pytest.raises(AssertionError, match=f"remix invariant broken: {invariant}:"):
        check_step_modalities(ranks, accumulation_steps=steps)


def test_check_step_modalities_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="accumulation_steps=0"):
        check_step_modalities([[0]], accumulation_steps=0)
    with pytest.raises(ValueError, match="at least one rank"):
        check_step_modalities([])


# ------------------------------------------------------------- check_loader
NAMES2 = ("audio", "video")


def raw_set(n: int = 12) -> list[dict]:
    return [
        {"audio": torch.full((2,), i + 1.0), "video": torch.full((3,), -i - 1.0), "y": i}
        for i in range(n)
    ]


class UserWrapper(torch.utils.data.Dataset):
    """A project's own dataset wrapper around the decoupler (composition)."""

    def __init__(self, inner: object, undo_masking: bool = False, raw: list | None = None) -> None:
        self.inner, self.undo, self.raw = inner, undo_masking, raw

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, key: object) -> object:
        sample, index, modality = self.inner[key]  # type: ignore[index]
        return (self.raw[index] if self.undo else sample), index, modality  # type: ignore[index]


def loader_for(
    raw: list, filt: HardSampleFilter, decoupled_names: tuple = NAMES2, **kw: object
) -> tuple[torch.utils.data.DataLoader, ReassemblingBatchSampler]:
    from remix_data import ModalityDecoupler

    sampler = ReassemblingBatchSampler(filt, 3, warmup_epochs=1)
    data = UserWrapper(ModalityDecoupler(raw, decoupled_names), raw=raw, **kw)  # type: ignore[arg-type]
    return torch.utils.data.DataLoader(data, batch_sampler=sampler), sampler


def test_check_loader_passes_a_correct_composed_integration() -> None:
    raw = raw_set()
    loader, _ = loader_for(raw, HardSampleFilter(12, NAMES2))
    passes = rt.check_loader(loader, raw, epochs=3)
    assert [p["epoch"] for p in passes] == [0, 1, 2] and passes[0]["warmup"]


@pytest.mark.parametrize(
    ("broken", "invariant"),
    [
        ("reversed decoupler order", "masking"),
        ("wrapper undoes masking", "masking"),
        ("filter smaller than dataset", "dataset size"),
        ("no set_epoch", "set_epoch per epoch"),
        ("loop breaks early", "every planned batch consumed"),
        ("update without modality", "masked rows not scored"),
    ],
)
def test_check_loader_names_each_broken_integration(broken: str, invariant: str) -> None:
    raw = raw_set()
    filt = HardSampleFilter(11 if broken == "filter smaller than dataset" else 12, NAMES2)
    names = NAMES2[::-1] if broken == "reversed decoupler order" else NAMES2
    loader, sampler = loader_for(raw, filt, names, undo_masking=broken == "wrapper undoes masking")

    def train(run: object) -> None:
        for epoch in range(3):
            if broken != "no set_epoch":
                sampler.set_epoch(epoch)
            for t, (_, index, modality) in enumerate(run):  # type: ignore[attr-defined]
                if broken == "loop breaks early" and epoch == 1 and t == 1:
                    break
                heads = {n: torch.randn(len(index), 3) for n in NAMES2}
                given = None if broken == "update without modality" else modality
                filt.update(index, heads, modality=given)

    # The filter itself now refuses several heads without modality= after a remix
    # snapshot, so that mistake fails at the call, before check_loader can see it.
    expected = (
        pytest.raises(ValueError, match="without modality=")
        if broken == "update without modality"
        else pytest.raises(AssertionError, match=f"remix invariant broken: {invariant}:")
    )
    with expected, warnings.catch_warnings():
        warnings.simplefilter("ignore", RemixWarning)
        rt.check_loader(loader, raw, train=train)


def test_the_checkers_import_without_hypothesis_and_a_strategy_says_what_it_needs() -> None:
    # A user with the base install (no test extra) runs the README's check_loader block.
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "from remix_data.testing import check_loader, check_epoch, simulate_sync\n"
        "import remix_data.testing as t\n"
        "try:\n"
        "    t.sampler_configs\n"
        "except ModuleNotFoundError as err:\n"
        "    print('strategy:', err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "strategy: remix_data.testing.sampler_configs is a hypothesis strategy" in done.stdout
    assert "pip install hypothesis" in done.stdout


def test_the_strategies_are_reached_through_the_testing_module() -> None:
    import remix_data.testing as t
    from remix_data import strategies

    assert t.logits is strategies.logits and t.sampler_configs is strategies.sampler_configs
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        t.nope  # noqa: B018
