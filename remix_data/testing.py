"""Hypothesis strategies and invariant checks for code that integrates remix_data.

Other repositories import these in their own test suites to prove that their
integration keeps the method's guarantees; this project's property tests use
them too. The checkers need only the core; the hypothesis strategies (call
without arguments for the defaults: ``logits``, ``score_tables``,
``sampler_configs``) live in :mod:`remix_data.strategies`, which needs
``hypothesis`` (the ``test`` extra), and are reachable from here too (imported on
first use). Simulated ranks:
:func:`build_samplers` (one sampler per rank over a shared filter) and
:func:`simulate_sync` (per-rank filters combined as ``HardSampleFilter.sync``
combines them under ``torch.distributed``). Checkers, raising
``AssertionError("remix invariant broken: <invariant>: <detail>")``:
:func:`check_epoch` (a sampler's epoch, on every rank),
:func:`check_step_modalities` (what a training loop actually received on each
rank, e.g. through Lightning or Accelerate) and :func:`check_loader` (a real
loader over the decoupler or a :class:`~remix_data.streaming.StreamingRemixer`,
masking included). All of them read :data:`~remix_data.vocabulary.PAD` rows as
repeats that only fill a batch: never a sample's one appearance in an epoch.

Example (a complete property test)::

    from hypothesis import given
    from remix_data.testing import build_samplers, check_epoch, sampler_configs

    @given(sampler_configs())
    def test_my_epochs_keep_the_invariants(config):
        check_epoch(build_samplers(config), epoch=config["epoch"])
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch

from ._checks import check_positive_int
from .decoupler import ModalityDecoupler
from .distributed import average_packed, pack_written
from .filter import HardSampleFilter
from .masking import Location, is_missing, locate
from .sampler import ReassemblingBatchSampler
from .streaming import StreamingRemixer
from .vocabulary import ALL, FILTERED, PAD, Batch, Key
from .watch import masked_calls

if TYPE_CHECKING:
    from .strategies import logits as logits
    from .strategies import sampler_configs as sampler_configs
    from .strategies import score_tables as score_tables

__all__ = [
    "logits",
    "score_tables",
    "sampler_configs",
    "build_samplers",
    "simulate_sync",
    "check_epoch",
    "check_step_modalities",
    "check_loader",
    "naive_assignment",
]

#: The strategies of :mod:`remix_data.strategies`, imported from there on first use.
_STRATEGIES = frozenset({"logits", "score_tables", "sampler_configs"})


def __getattr__(name: str) -> Any:
    """A strategy of :data:`_STRATEGIES`, importing hypothesis then (not with this module)."""
    if name not in _STRATEGIES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from . import strategies
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"remix_data.testing.{name} is a hypothesis strategy and needs hypothesis: "
            "pip install hypothesis (or remix-data[test]); the checkers work without it"
        ) from err
    return getattr(strategies, name)


def build_samplers(config: dict[str, Any]) -> list[ReassemblingBatchSampler]:
    """One sampler per rank over one shared filter, from a :func:`sampler_configs` draw."""
    filt = HardSampleFilter(
        config["num_samples"],
        config["modalities"],
        score=config.get("score", "confidence"),
        keep_ratio=config.get("keep_ratio"),
        threshold=config.get("threshold"),
        smoothing=config.get("smoothing", 0.0),
        balance=config.get("balance", "none"),
        labels=config.get("labels"),
        unscored=config.get("unscored", "spread"),
    )
    values = config.get("values")
    if values is not None:
        filt.set_scores(values)
    world = config.get("num_replicas", 1)
    return [
        ReassemblingBatchSampler(
            filt,
            config["batch_size"],
            warmup_epochs=config.get("warmup_epochs", 0),
            order=config.get("order", "sequential"),
            drop_last=config.get("drop_last", False),
            seed=config.get("seed", 0),
            num_replicas=world,
            rank=rank,
            accumulation_steps=config.get("accumulation_steps", 1),
            joint_fraction=config.get("joint_fraction", 0.0),
            tail=config.get("tail", "merge"),
        )
        for rank in range(world)
    ]


def simulate_sync(filters: Sequence[HardSampleFilter]) -> None:
    """Combine per-rank filters in one process as :meth:`HardSampleFilter.sync` does.

    ``filters[r]`` stands for rank ``r``'s filter (one process, no
    ``torch.distributed``, so their own ``sync`` is a no-op). Every entry written
    since the last sync on some rank becomes the mean of the values written on
    the ranks that wrote it, on every rank; every other entry keeps its value
    (the same on all ranks after the previous sync); the scored flags take the
    union and the written flags are cleared, as
    :func:`remix_data.distributed.average_written` leaves them. Call it on all
    ranks' filters right before the epoch's first snapshot (``set_epoch`` of a
    remix epoch not yet snapshotted); a one-filter list is left as it is.

    Example:
        >>> a, b = HardSampleFilter(2, ("x", "y"), score="loss"), HardSampleFilter(
        ...     2, ("x", "y"), score="loss")
        >>> a.update([0], {"x": torch.tensor([1.0])}, modality=0)
        >>> b.update([0, 1], {"x": torch.tensor([3.0, 5.0])}, modality=0)
        >>> simulate_sync([a, b])
        >>> a.state_dict()["values"][0].tolist() == b.state_dict()["values"][0].tolist() == [2, 5]
        True
    """
    if len(filters) < 2:
        return
    shapes = {(f.num_samples, f.modalities) for f in filters}
    if len(shapes) != 1:
        raise ValueError(f"filters should share num_samples and modalities, but got {shapes}")
    # What all_reduce would sum, then what every rank does with the sum.
    for f in filters:
        f.flush()  # staged or device calls into the tables read below
    tables = [f.table for f in filters]
    world = len(tables)
    summed = torch.stack(
        [pack_written(t.values, t.fresh, rank=r, world=world) for r, t in enumerate(tables)]
    ).sum(0)
    for table in tables:
        table.mark_synced(average_packed(summed.clone(), table.values))


def naive_assignment(
    values: torch.Tensor, score: str = "confidence", unscored: str = "spread"
) -> list[int]:
    """The paper's rule one sample at a time, in plain Python: a reference to test against.

    Each sample goes to the modality where it is least confident (``score=
    "confidence"``) or has the highest loss (``"loss"``); ties go to the modality
    listed last; ``NaN`` entries are skipped; a sample with no score follows the
    ``unscored`` policy (``"spread"``: ``index % M``; ``"filter"``: ``-1``).
    """
    m, n = values.shape
    table = values.tolist()
    out = []
    for i in range(n):
        best_m, best = None, None
        for j in range(m):
            v = table[j][i]
            if math.isnan(v):
                continue
            harder = best is None or (v >= best if score == "loss" else v <= best)
            if harder:
                best_m, best = j, v
        if best_m is None:
            best_m = i % m if unscored == "spread" else FILTERED
        out.append(best_m)
    return out


def _fail(invariant: str, detail: str) -> NoReturn:
    raise AssertionError(f"remix invariant broken: {invariant}: {detail}")


def check_epoch(
    samplers: ReassemblingBatchSampler | Sequence[ReassemblingBatchSampler],
    epoch: int | None = None,
) -> list[list[Batch]]:
    """Run one epoch on every rank's sampler and check the method's invariants.

    ``samplers`` is one sampler, or one per rank (``rank = position``) sharing a
    filter, as :func:`build_samplers` makes. A key ``(~i, m)`` (negative index)
    is a :data:`~remix_data.vocabulary.PAD` row repeating sample ``i``. Checks,
    each reported by name in the ``AssertionError``:

    - *len honest*: every rank yields exactly ``len(sampler)`` batches, the same
      number on every rank;
    - *batch size*: no batch is empty or larger than ``batch_size``, except the
      batches that took a lone last sample (``batch_size + 1``, as many as
      ``stats()["merged"]`` counts); under distribution or accumulation, and
      with ``tail="fill"``, every batch holds ``batch_size`` keys;
    - *no batch of one*: with ``tail="merge"`` and ``batch_size > 1`` no batch
      holds a single sample;
    - *unimodal*: every batch has one modality (``ALL`` in warm-up epochs, a
      modality id after), and it is the assigned modality of each sample in
      it, PAD rows included (a PAD row repeats a sample of its own group);
    - *same modality per step*: at every optimiser step, all ranks and all
      accumulated micro-batches share the modality;
    - *PAD rows last*: PAD rows sit only in a group's last optimiser step;
    - *each kept sample once*: over all ranks every kept sample appears once
      among the rows that are not PAD; the PAD rows are as many as
      ``stats()["padded"]`` counts; filtered and dropped samples never
      appear, and kept + filtered + dropped covers the dataset.

    Returns the batches, per rank.
    """
    ranks = [samplers] if isinstance(samplers, ReassemblingBatchSampler) else list(samplers)
    if not ranks:
        raise ValueError("samplers should hold at least one sampler, but got none")
    first = ranks[0]
    filt = first.filter
    for r, s in enumerate(ranks):
        if s.filter is not filt or s.num_replicas != len(ranks) or s.rank != r:
            raise ValueError(
                "samplers should share one filter and be ranks 0..n-1 of n replicas; "
                f"sampler {r} has rank={s.rank}, num_replicas={s.num_replicas}"
            )
        if epoch is not None:
            s.set_epoch(epoch)
    batches = [[list(b) for b in s] for s in ranks]
    lengths = [len(s) for s in ranks]
    for r, (got, expected) in enumerate(zip(batches, lengths)):
        if len(got) != expected:
            _fail("len honest", f"rank {r} yielded {len(got)} batches but len() is {expected}")
    if len(set(lengths)) > 1:
        _fail("len honest", f"ranks yield different batch counts {lengths}")
    warmup = first.is_warmup()
    assignment = None if warmup else filt.snapshot(first.epoch).tolist()
    _check_batches(first, batches, assignment)
    _check_steps(first, batches)
    _check_coverage(first, batches, assignment)
    return batches


def _check_batches(
    first: ReassemblingBatchSampler, batches: list[list[list[Key]]], assignment: list[int] | None
) -> None:
    """*batch size*, *no batch of one* and *unimodal* for every batch of every rank."""
    b = first.batch_size
    full = first.num_replicas * first.accumulation_steps > 1 or first.tail == "fill"
    merged = sum(first.stats()["merged"].values())
    larger = 0
    for r, rank_batches in enumerate(batches):
        for t, batch in enumerate(rank_batches):
            larger += len(batch) == b + 1
            if not batch or len(batch) > b + (merged > 0):
                _fail("batch size", f"rank {r} batch {t} has {len(batch)} keys")
            if len(batch) == 1 < b and first.tail == "merge":
                _fail("no batch of one", f"rank {r} batch {t} holds one sample ({batch})")
            if full and len(batch) != b:
                _fail("batch size", f"rank {r} batch {t} has {len(batch)} keys, not {b}")
            mods = {m for _, m in batch}
            if len(mods) != 1:
                _fail("unimodal", f"rank {r} batch {t} mixes modalities {sorted(mods)}")
            (mod,) = mods
            if assignment is None and mod != ALL:
                _fail("unimodal", f"warm-up batch {t} on rank {r} has modality {mod}")
            if assignment is None:
                continue
            samples = [i if i >= 0 else ~i for i, _ in batch]
            if mod == ALL:
                if not first.joint_fraction:
                    _fail("unimodal", f"rank {r} batch {t} after warm-up is joint (ALL)")
                wrong = [i for i in samples if assignment[i] == FILTERED]
                if wrong:
                    _fail("unimodal", f"rank {r} joint batch {t} holds filtered {wrong}")
            else:
                wrong = [i for i in samples if assignment[i] != mod]
                if wrong:
                    _fail("unimodal", f"rank {r} batch {t} (modality {mod}) holds {wrong}")
    if larger != merged:
        _fail("batch size", f"{larger} batches of batch_size + 1 but {merged} counted as merged")


def _check_steps(first: ReassemblingBatchSampler, batches: list[list[list[Key]]]) -> None:
    """*same modality per step* and *PAD rows last* over all ranks."""
    a = first.accumulation_steps
    steps = len(batches[0]) // a if batches[0] else 0
    owner: list[int] = []
    for step in range(steps):
        span = slice(step * a, (step + 1) * a)
        mods = {b[0][1] for rank_batches in batches for b in rank_batches[span]}
        if len(mods) != 1:
            _fail("same modality per step", f"step {step} mixes modalities {sorted(mods)}")
        owner.append(mods.pop())
    last = {m: step for step, m in enumerate(owner)}
    for step, m in enumerate(owner):
        span = slice(step * a, (step + 1) * a)
        pads = [i for rank_batches in batches for b in rank_batches[span] for i, _ in b if i < 0]
        if pads and step != last[m]:
            _fail(
                "PAD rows last",
                f"step {step} of modality {m} holds PAD rows {pads[:5]} but the modality's "
                f"last step is {last[m]}",
            )


def _check_coverage(
    first: ReassemblingBatchSampler, batches: list[list[list[Key]]], assignment: list[int] | None
) -> None:
    """*each kept sample once*: the rows that are not PAD cover the kept samples once."""
    filt = first.filter
    rows = [i for rank_batches in batches for b in rank_batches for i, _ in b]
    seen = Counter(i for i in rows if i >= 0)
    pads = len(rows) - sum(seen.values())
    stats = first.stats()
    padded = sum(stats["padded"].values())
    dropped = sum(stats["dropped"].values())
    if assignment is None:
        kept = list(range(filt.num_samples))
    else:
        kept = [i for i in range(filt.num_samples) if assignment[i] != FILTERED]
    filtered = filt.num_samples - len(kept)
    if filtered != stats["filtered"]:
        _fail("each kept sample once", f"{filtered} filtered but stats say {stats['filtered']}")
    twice = [i for i, c in seen.items() if c > 1]
    if twice:
        _fail("each kept sample once", f"samples {twice[:10]} appear in more than one row")
    missing = [i for i in kept if seen[i] == 0]
    if len(missing) != dropped:
        _fail("each kept sample once", f"{len(missing)} kept samples missing, {dropped} dropped")
    if pads != padded:
        _fail("each kept sample once", f"{pads} PAD rows but {padded} counted as padding")
    kept_set = set(kept)
    stray = [i for i in seen if i not in kept_set]
    if stray:
        _fail("each kept sample once", f"filtered samples were yielded: {stray[:10]}")


def check_step_modalities(ranks: Sequence[Sequence[Any]], accumulation_steps: int = 1) -> list[int]:
    """Check the modalities a training loop received, batch by batch, on every rank.

    Args:
        ranks: per rank, the batches in the order the loop received them; each
            batch given by its modalities (the collated ``modality`` tensor, a
            list of ids, or one id).
        accumulation_steps: micro-batches per optimiser step.

    Checks, each reported by name in the ``AssertionError``: *len honest* (every
    rank received the same number of batches), *unimodal* (one modality per
    batch) and *same modality per step* (all ranks and all micro-batches of an
    optimiser step). :data:`~remix_data.vocabulary.PAD` rows, which only fill a
    batch, have no modality: a batch of PAD rows alone fits any step. Returns
    the modality of every step (``PAD`` for a step of PAD rows alone).

    Example:
        >>> check_step_modalities([[[0, 0], [1, 1]], [[0, -2], [1, 1]]])
        [0, 1]
        >>> check_step_modalities([[0, 1], [1, 0]])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        AssertionError: remix invariant broken: same modality per step: step 0 mixes ...
    """
    if not ranks:
        raise ValueError("ranks should hold the batches of at least one rank, but got none")
    check_positive_int("accumulation_steps", accumulation_steps)
    per_rank: list[list[int | None]] = []
    for r, batches in enumerate(ranks):
        mods: list[int | None] = []
        for t, batch in enumerate(batches):
            ids = set(_ids(batch, "modalities")) - {PAD}
            if len(ids) > 1:
                _fail("unimodal", f"rank {r} batch {t} holds modalities {sorted(ids)}")
            mods.append(ids.pop() if ids else None)
        per_rank.append(mods)
    lengths = [len(mods) for mods in per_rank]
    if len(set(lengths)) > 1:
        _fail("len honest", f"ranks received different batch counts {lengths}")
    a = accumulation_steps
    steps = []
    for step in range(-(-lengths[0] // a)):
        span = slice(step * a, (step + 1) * a)
        mods_of_step = {m for mods in per_rank for m in mods[span] if m is not None}
        if len(mods_of_step) > 1:
            _fail("same modality per step", f"step {step} mixes modalities {sorted(mods_of_step)}")
        steps.append(mods_of_step.pop() if mods_of_step else PAD)
    return steps


# ------------------------------------------------------------ real loaders
def _find(root: Any, kind: type, depth: int = 3) -> Any:
    """The first ``kind`` instance reachable from ``root`` through attributes."""
    seen: set[int] = set()
    frontier = [root]
    for _ in range(depth + 1):
        following: list[Any] = []
        for obj in frontier:
            if id(obj) in seen or obj is None:
                continue
            seen.add(id(obj))
            if isinstance(obj, kind):
                return obj
            fields = getattr(obj, "__dict__", None)
            if isinstance(fields, dict):
                following.extend(fields.values())
        frontier = following
    return None


def _ids(value: Any, name: str) -> list[int]:
    """``value`` (an int, a tensor or an iterable of ints) as a list of ints."""
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    if isinstance(value, int):
        return [value]
    if isinstance(value, Iterable):
        return [int(v) for v in value]
    raise TypeError(f"the batch's {name} should be an int, a tensor or ints, but got {value!r}")


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


def _row(value: Any, r: int) -> Any:
    """Row ``r`` of a collated modality: a ``[B, ...]`` tensor/array or a list of rows."""
    return _as_tensor(value[r])


def _same(row: Any, raw: Any) -> bool:
    row, raw = _as_tensor(row), _as_tensor(raw)
    if isinstance(row, torch.Tensor) and isinstance(raw, torch.Tensor):
        if row.shape != raw.shape:  # a padding collate: the sample is the leading block
            if row.dim() != raw.dim() or any(a < b for a, b in zip(row.shape, raw.shape)):
                return False
            row = row[tuple(slice(0, s) for s in raw.shape)]
        return bool(torch.equal(row.to(raw.dtype), raw))
    return bool(row == raw)


class _Watched:
    """A stand-in for the user's loader that records what each pass yields.

    Attribute access goes to the real loader, so a loop that reads
    ``loader.batch_sampler`` or ``len(loader)`` sees the real thing.
    """

    def __init__(self, loader: Any, sampler: ReassemblingBatchSampler | StreamingRemixer) -> None:
        self._loader = loader
        self._sampler = sampler
        self.passes: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Any]:
        sampler = self._sampler
        record: dict[str, Any] = {"batches": [], "finished": False}
        self.passes.append(record)
        for batch in self._loader:
            if not record["batches"]:  # the loop's set_epoch has run by now
                record.update(
                    epoch=sampler.epoch,
                    warmup=sampler.is_warmup(),
                    planned=len(sampler),
                    stats=sampler.stats(),
                    table=sampler.filter.state_dict()["values"],
                )
            record["batches"].append(batch)
            yield batch
        if not record["batches"]:
            record.update(epoch=sampler.epoch, warmup=sampler.is_warmup(), planned=len(sampler))
        record["finished"] = True
        record["table_after"] = sampler.filter.state_dict()["values"]
        record["stats_after"] = sampler.stats()


def _default_unpack(batch: Any) -> tuple[Any, Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[0], batch[1], batch[2]
    raise TypeError(
        "the loader should yield (sample, index, modality) batches; pass unpack= to say "
        f"where they are in yours, but got a {type(batch).__name__}"
    )


def check_loader(
    loader: Any,
    dataset: Any,
    *,
    train: Callable[[Any], None] | None = None,
    epochs: int = 3,
    sampler: ReassemblingBatchSampler | StreamingRemixer | None = None,
    decoupler: ModalityDecoupler | None = None,
    unpack: Callable[[Any], tuple[Any, Any, Any]] | None = None,
    locations: Mapping[str, Location] | None = None,
) -> list[dict[str, Any]]:
    """Run the user's real loader (and loop) and check every invariant, masking included.

    Args:
        loader: your ``DataLoader`` as you build it (your dataset wrapper, your
            ``collate_fn``, your batch-sampler wrapper, workers): anything
            iterable that yields batches.
        dataset: the *raw* dataset (before :class:`~remix_data.ModalityDecoupler`),
            against which every batch's visible modality is compared; for a
            stream, anything indexed by sample id, or ``None`` to leave masking
            unchecked.
        train: your training loop as a function of the loader: ``train(loader)``
            runs all its epochs (``set_epoch``, the batches, ``filt.update``...)
            over the loader it is given, a recording stand-in for yours. Default:
            ``epochs`` epochs of ``sampler.set_epoch(e)`` and one full pass.
        sampler: the :class:`~remix_data.ReassemblingBatchSampler`, or the
            :class:`~remix_data.streaming.StreamingRemixer` of a streaming
            loader (default: found from ``loader`` through attributes, wrappers
            included).
        decoupler: the :class:`~remix_data.ModalityDecoupler` whose mask mode
            and locations apply (default: found from ``loader``'s dataset).
        unpack: ``batch -> (sample, index, modality)`` when your collate yields
            another structure (default: the batch is that triple).
        locations: where each modality sits in a collated ``sample`` when not
            where the decoupler's locations say.

    Checks, each reported by name in the ``AssertionError``:

    - *dataset size*: the filter has one entry per raw sample;
    - *set_epoch per epoch*: every pass over the loader runs a later epoch
      than the one before (a forgotten ``set_epoch`` repeats one);
    - *every planned batch consumed*: each pass received ``len(sampler)``
      batches (a loop that breaks early, a framework that skips batches);
    - *unimodal*, *same modality per step*: one modality per batch, shared by
      the micro-batches of an optimiser step;
    - *assignment*: after warm-up every row trains its assigned modality;
    - *each kept sample once*: the rows that are not PAD cover every kept
      sample once, minus the counted drops; the PAD rows are the counted padding
      (a stream: no sample id in two rows, which also catches ids that are not
      unique across workers, and the remixer's counts; ids repeated across
      ranks need every rank's records, which one process does not see);
    - *masking*: in every row the trained modality equals the raw sample's
      and every other modality is zeros of the raw shape (``mask="zeros"``)
      or absent (``"drop"``); with ``"none"`` everything stays visible;
    - *masked rows not scored*: during a remix pass, no score of a modality
      a row did not train changed (``filt.update(..., modality=...)``);
    - *missing modalities declared*: a modality that a raw sample lacks
      (``None`` or absent) is declared in the filter's ``available``, is never
      the one its row trains, and stands as zeros (or is dropped) in the batch;
    - *feature masking*: with ``mask="none"`` and your own ``train``, the loop
      called :func:`~remix_data.mask_features` (a model that never does trains
      every "unimodal" batch on all modalities).

    What it cannot see from the loader: a names tuple given to ``remix_loss`` /
    ``mask_features`` in another order than the filter's, heads that output
    probabilities, a raw sampler whose warm-up outlasts the run, and a scoring
    pass run after its epoch's ``set_epoch`` (those warn or raise where they
    happen); without ``train``, whether the model masks features; and a
    model that fails on a ``mask="drop"`` batch is seen only as the error it
    raises (run a short ``train`` through here before the real run). A filter
    of another size than the dataset is the *dataset size* check above.

    :data:`~remix_data.vocabulary.PAD` rows (repeats that only fill a batch) are
    masked as their batch's modality, count as padding and never as a sample's
    one appearance. Returns one record per pass: ``epoch``, ``warmup``,
    ``planned``, ``modalities`` (per batch; ``PAD`` for a batch of PAD rows
    alone), ``indices`` (per batch, the rows that are not PAD).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader
        >>> from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler
        >>> raw = [{"audio": torch.randn(2), "video": torch.randn(3), "y": i} for i in range(10)]
        >>> filt = HardSampleFilter(len(raw), ("audio", "video"))
        >>> sampler = ReassemblingBatchSampler(filt, batch_size=4, warmup_epochs=1)
        >>> loader = DataLoader(ModalityDecoupler(raw, filt), batch_sampler=sampler)
        >>> [p["planned"] for p in check_loader(loader, raw, epochs=2)]
        [3, 2]
    """
    if sampler is None:
        sampler = _find(loader, ReassemblingBatchSampler) or _find(loader, StreamingRemixer)
    if not isinstance(sampler, (ReassemblingBatchSampler, StreamingRemixer)):
        raise ValueError(
            "check_loader found no ReassemblingBatchSampler or StreamingRemixer in loader; "
            f"pass sampler=, but got sampler={sampler!r}"
        )
    if isinstance(sampler, StreamingRemixer):
        masker = sampler.masker
    else:
        decoupler = decoupler if decoupler is not None else _find(loader, ModalityDecoupler)
        if not isinstance(decoupler, ModalityDecoupler):
            raise ValueError(
                "check_loader found no ModalityDecoupler in loader; pass decoupler=, "
                f"but got decoupler={decoupler!r}"
            )
        masker = decoupler.masker
    filt = sampler.filter
    if dataset is not None and filt.num_samples != len(dataset):
        _fail(
            "dataset size",
            f"the filter has num_samples={filt.num_samples} but the dataset has "
            f"len(dataset)={len(dataset)}",
        )
    names = filt.modalities  # the truth: the filter's ids
    where = {n: masker.locations.get(n, n) for n in names}
    where.update(locations or {})
    watched = _Watched(loader, sampler)
    own_loop = train is not None
    if train is None:
        first = sampler.epoch

        def train(run: Any) -> None:
            for epoch in range(first, first + epochs):
                sampler.set_epoch(epoch)
                for _ in run:
                    pass

    masked_before = masked_calls()
    train(watched)
    masked = masked_calls() - masked_before
    unpack = unpack or _default_unpack
    out = []
    previous: int | None = None
    for p, record in enumerate(watched.passes):
        epoch = record["epoch"]
        if previous is not None and epoch <= previous:
            _fail(
                "set_epoch per epoch",
                f"pass {p} over the loader ran epoch {epoch} after epoch {previous}: call "
                "sampler.set_epoch(epoch) before every epoch",
            )
        previous = epoch
        mods, indices = _check_pass(record, sampler, dataset, names, where, masker.mask, unpack)
        out.append(
            {
                "epoch": epoch,
                "warmup": record["warmup"],
                "planned": record["planned"],
                "modalities": mods,
                "indices": indices,
            }
        )
    if own_loop:
        _check_feature_masking(masker.mask, out, masked)
    return out


def _check_feature_masking(mask: str, passes: list[dict[str, Any]], masked: int) -> None:
    """With ``mask="none"``, the loop must call ``mask_features`` on unimodal batches."""
    unimodal = sum(m >= 0 for p in passes for m in p["modalities"])
    if mask == "none" and unimodal and not masked:
        _fail(
            "feature masking",
            f"the decoupler keeps every modality (mask='none') and the loop trained "
            f"{unimodal} unimodal batches, but never called mask_features: zero the "
            "inactive features in forward (mask_features(features, modality, filt)), or "
            "mask the inputs (mask='zeros' / build(..., masking='zeros'))",
        )


def _check_missing(
    sample: Any,
    raw: Any,
    at: str,
    rows: tuple[int, int],
    modalities: tuple[int, int],
    names: tuple[str, ...],
    where: Mapping[str, Location],
    mask: str,
    available: torch.Tensor | None,
) -> bool:
    """Check a modality that a raw sample lacks; ``False`` when it has it.

    ``at`` names the batch, ``rows`` is ``(row in the batch, sample index)`` and
    ``modalities`` is ``(the modality checked, the batch's modality)``.
    """
    r, i = rows
    k, m = modalities
    name = names[k]
    if not is_missing(raw, where[name]):
        return False
    if available is None or bool(available[i, k]):
        _fail(
            "missing modalities declared",
            f"dataset[{i}] lacks {name!r} (None or absent), but the filter counts it "
            "available: pass HardSampleFilter(..., available=...) "
            "(remix_data.availability.scan_available) so that it is never trained there",
        )
    if k == m:
        _fail("missing modalities declared", f"{at} trains {name!r} on sample {i}, which lacks it")
    try:
        value = locate(sample, where[name])
    except KeyError:
        if mask == "drop" and m != ALL:
            return True
        _fail("masking", f"{at} row {r} (sample {i}) lacks {name!r} altogether")
    row = _as_tensor(_row(value, r))
    if row is not None and not (isinstance(row, torch.Tensor) and not bool(row.any())):
        _fail(
            "masking",
            f"{at} row {r}: sample {i} lacks {name!r}, which should stand as zeros",
        )
    return True


def _check_pass(
    record: dict[str, Any],
    sampler: ReassemblingBatchSampler | StreamingRemixer,
    dataset: Any,
    names: tuple[str, ...],
    where: Mapping[str, Location],
    mask: str,
    unpack: Callable[[Any], tuple[Any, Any, Any]],
) -> tuple[list[int], list[list[int]]]:
    epoch, warmup = record["epoch"], record["warmup"]
    got, planned = len(record["batches"]), record["planned"]
    if got != planned or not record["finished"]:
        _fail(
            "every planned batch consumed",
            f"epoch {epoch}: the loop consumed {got} of {planned} planned batches",
        )
    filt = sampler.filter
    assignment = None
    if not warmup and filt.snapshot_epoch == epoch:
        assignment = filt.snapshot(epoch).tolist()
    mods: list[int] = []
    indices: list[list[int]] = []
    pads = 0
    for t, batch in enumerate(record["batches"]):
        sample, index, modality = unpack(batch)
        rows = _ids(index, "index")
        ids = _ids(modality, "modality")
        if len(ids) == 1 and len(rows) > 1:
            ids = ids * len(rows)
        groups = set(ids) - {PAD}
        if len(groups) > 1:
            _fail("unimodal", f"epoch {epoch} batch {t} holds modalities {sorted(groups)}")
        m = groups.pop() if groups else (ALL if warmup else PAD)
        if warmup and m != ALL:
            _fail("unimodal", f"epoch {epoch} is a warm-up epoch but batch {t} has modality {m}")
        if assignment is not None and m not in (ALL, PAD):
            wrong = [i for i in rows if assignment[i] != m]  # PAD rows repeat their group's
            if wrong:
                _fail(
                    "assignment",
                    f"epoch {epoch} batch {t} trains modality {m} ({names[m]}) but samples "
                    f"{wrong[:5]} are assigned elsewhere",
                )
        if m != PAD and dataset is not None:  # PAD rows are masked as their batch's modality
            _check_masking(
                sample, rows, m, dataset, names, where, mask, epoch, t,
                available=filt.available,
            )  # fmt: skip
        mods.append(m)
        indices.append([i for i, g in zip(rows, ids) if g != PAD])
        pads += len(rows) - len(indices[-1])
    a = sampler.accumulation_steps
    for step in range(len(mods) // a):
        if len(set(mods[step * a : (step + 1) * a]) - {PAD}) > 1:
            _fail("same modality per step", f"epoch {epoch} step {step} mixes micro-batches")
    seen = Counter(i for rows in indices for i in rows)
    if isinstance(sampler, StreamingRemixer):
        _check_stream_pass(record, seen, pads, epoch)
    elif "stats" in record:
        stats = record["stats"]
        kept = sum(stats["samples"].values())
        dropped, padded = sum(stats["dropped"].values()), sum(stats["padded"].values())
        if sampler.num_replicas == 1 and (
            len(seen) != kept - dropped or sum(seen.values()) != len(seen) or pads != padded
        ):
            _fail(
                "each kept sample once",
                f"epoch {epoch}: {len(seen)} distinct samples in {sum(seen.values())} rows "
                f"and {pads} PAD rows, but the plan keeps {kept} (dropped {dropped}, "
                f"padded {padded})",
            )
        if not warmup:
            _check_scores(record, mods, indices, names, epoch)
    return mods, indices


def _check_stream_pass(record: dict[str, Any], seen: Counter[int], pads: int, epoch: int) -> None:
    """*each kept sample once* for a stream: no id in two rows, the counts of ``stats()``."""
    twice = sorted(i for i, c in seen.items() if c > 1)
    if twice:
        _fail(
            "each kept sample once",
            f"epoch {epoch}: sample ids {twice[:5]} came in more than one row (not PAD): the "
            "stream's ids are not unique (ids that restart at 0 in every shard?) or a part of "
            "the stream reached two workers or ranks",
        )
    stats = record.get("stats_after")
    if stats is not None and record["finished"]:
        trained, padded = sum(stats["samples"].values()), sum(stats["padded"].values())
        if (len(seen), pads) != (trained, padded):
            _fail(
                "each kept sample once",
                f"epoch {epoch}: {len(seen)} samples and {pads} PAD rows, but the remixer "
                f"counted {trained} samples and {padded} padded",
            )


def _check_masking(
    sample: Any,
    rows: list[int],
    m: int,
    dataset: Any,
    names: tuple[str, ...],
    where: Mapping[str, Location],
    mask: str,
    epoch: int,
    t: int,
    available: torch.Tensor | None = None,
) -> None:
    at = f"epoch {epoch} batch {t} (modality {m})"
    for r, i in enumerate(rows):
        raw = dataset[i]
        for k, name in enumerate(names):
            if _check_missing(sample, raw, at, (r, i), (k, m), names, where, mask, available):
                continue
            visible = m == ALL or k == m or mask == "none"
            truth = locate(raw, where[name])
            try:
                value = locate(sample, where[name])
            except KeyError:
                if visible or mask != "drop":
                    _fail(
                        "masking",
                        f"epoch {epoch} batch {t} (modality {m}) row {r} (sample {i}) lacks "
                        f"{'the trained' if k == m else 'visible'} modality {name!r}",
                    )
                continue
            row = _row(value, r)
            if visible and not _same(row, truth):
                moved = [j for j in rows if j != i and _same(row, locate(dataset[j], where[name]))]
                _fail(
                    "masking",
                    f"epoch {epoch} batch {t} row {r} (sample {i}): modality {name!r} should "
                    f"be visible ({'trained' if k == m else 'joint'}) but differs from "
                    f"dataset[{i}]"
                    + (
                        f"; it holds dataset[{moved[0]}], another row's sample: the collate_fn "
                        "reordered the rows, but it must keep the samples' order (row r is the "
                        "sample of index[r] and modality[r]); sort inside the model instead"
                        if moved
                        else ""
                    ),
                )
            if visible:
                continue
            if mask == "drop":
                _fail(
                    "masking",
                    f"epoch {epoch} batch {t} trains {names[m]!r} but row {r} (sample {i}) "
                    f"still holds {name!r}: mask='drop' should remove it",
                )
            row_t, truth_t = _as_tensor(row), _as_tensor(truth)
            zero = isinstance(row_t, torch.Tensor) and not bool(row_t.any())
            if not zero:
                _fail(
                    "masking",
                    f"epoch {epoch} batch {t} trains {names[m]!r} but modality {name!r} of "
                    f"row {r} (sample {i}) is not zeros",
                )
            stacked = isinstance(value, (torch.Tensor, np.ndarray))
            if isinstance(truth_t, torch.Tensor) and not stacked and row_t.shape != truth_t.shape:
                _fail(
                    "masking",
                    f"epoch {epoch} batch {t}: the zeros standing for {name!r} in row {r} "
                    f"(sample {i}) have shape {tuple(row_t.shape)}, but dataset[{i}] holds "
                    f"shape {tuple(truth_t.shape)}",
                )


def _check_scores(
    record: dict[str, Any],
    mods: list[int],
    indices: list[list[int]],
    names: tuple[str, ...],
    epoch: int,
) -> None:
    before, after = record["table"], record["table_after"]
    changed = ~((before == after) | (torch.isnan(before) & torch.isnan(after)))
    for m, rows in zip(mods, indices):
        if m in (ALL, PAD):
            continue
        others = [k for k in range(len(names)) if k != m]
        hit = changed[others][:, rows]
        if bool(hit.any()):
            k, r = (int(v) for v in hit.nonzero()[0])
            _fail(
                "masked rows not scored",
                f"epoch {epoch}: sample {rows[r]} trained {names[m]!r} (its other modalities "
                f"masked), but its {names[others[k]]!r} score changed: pass "
                "filt.update(index, outputs, modality=modality)",
            )
