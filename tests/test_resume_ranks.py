"""Resume at every batch boundary of an epoch, on 1-4 simulated ranks, with online scoring.

Each rank has its own filter and sampler (explicit ``num_replicas`` / ``rank``), all in
this process; the ranks step in lockstep and every rank feeds its batch's losses back
into its own filter after every step, so between two snapshots the ranks' tables hold
different unsynced entries. Right before an epoch's first snapshot the filters are
combined by :func:`remix_data.testing.simulate_sync`, which does what
``HardSampleFilter.sync`` does under ``torch.distributed`` (the real collective is
tested with gloo processes in tests/test_distributed.py and tests/test_faults.py).

The property: saving every rank's filter and sampler state at batch boundary ``b`` of
epoch ``E`` (``b = 0``: right after ``set_epoch``; ``b = B``: after the epoch's last
batch), passing it through ``torch.save`` / ``torch.load(weights_only=True)`` and
restoring it into freshly built objects yields, on every rank, exactly the remaining
``(index, modality)`` batches of the uninterrupted run, the same score table at the
end, and the same assignment for every later epoch.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from remix_data import HardSampleFilter, ReassemblingBatchSampler
from remix_data.testing import build_samplers, sampler_configs, simulate_sync
from remix_data.vocabulary import PAD

Batch = list[tuple[int, int]]
Record = tuple[int, Batch]  # (epoch, batch)


def losses(index: torch.Tensor, epoch: int, modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Per-sample losses of every head, varying with the sample, the head and the epoch."""
    x = index.to(torch.float32)
    return {name: (x * (3 + epoch + 2 * m) + 5 * m) % 11 for m, name in enumerate(modalities)}


class Ranks:
    """One filter and one sampler per simulated rank, built from a config."""

    def __init__(self, config: dict[str, Any]) -> None:
        world = config["num_replicas"]
        # build_samplers shares one filter among its samplers: rank r takes the r-th
        # sampler of its own call, so every rank has a filter of its own.
        self.samplers: list[ReassemblingBatchSampler] = [
            build_samplers(config)[r] for r in range(world)
        ]
        self.filters: list[HardSampleFilter] = [s.filter for s in self.samplers]
        assert len({id(f) for f in self.filters}) == world
        self.records: list[list[Record]] = [[] for _ in range(world)]
        self.snapshots: dict[int, list[list[int]]] = {}

    def set_epoch(self, epoch: int) -> None:
        first = self.samplers[0]
        if not first.is_warmup(epoch) and self.filters[0].snapshot_epoch != epoch:
            simulate_sync(self.filters)  # the collective inside the epoch's first snapshot
        for sampler in self.samplers:
            sampler.set_epoch(epoch)
        if not first.is_warmup(epoch):
            self.snapshots[epoch] = [f.snapshot(epoch).tolist() for f in self.filters]

    def run(self, epochs: range, *, stop: tuple[int, int] | None = None) -> list[bytes]:
        """Train ``epochs``; with ``stop=(E, b)`` return every rank's checkpoint after
        ``b`` steps of epoch ``E`` (and stop)."""
        for epoch in epochs:
            self.set_epoch(epoch)
            iterators = [iter(s) for s in self.samplers]
            step = 0
            while True:
                if stop == (epoch, step):
                    return [self.checkpoint(r) for r in range(len(self.samplers))]
                batches = [next(it, None) for it in iterators]
                if batches[0] is None:
                    assert all(b is None for b in batches), "ranks ended at different steps"
                    break
                for r, batch in enumerate(batches):
                    assert batch is not None
                    # what the decoupler makes of a PAD key (~i, m): sample i, modality PAD
                    index = torch.tensor([i if i >= 0 else ~i for i, _ in batch])
                    modality = torch.tensor([m if i >= 0 else PAD for i, m in batch])
                    names = self.filters[r].modalities
                    self.filters[r].update(index, losses(index, epoch, names), modality=modality)
                    self.records[r].append((epoch, batch))
                step += 1
        assert stop is None or stop[0] >= epochs.stop, f"never reached {stop}"
        return []

    def checkpoint(self, rank: int) -> bytes:
        buffer = io.BytesIO()
        state = {
            "filter": self.filters[rank].state_dict(),
            "sampler": self.samplers[rank].state_dict(),
        }
        torch.save(state, buffer)
        return buffer.getvalue()

    def restore(self, checkpoints: list[bytes]) -> None:
        for r, checkpoint in enumerate(checkpoints):
            state = torch.load(io.BytesIO(checkpoint), weights_only=True)
            self.filters[r].load_state_dict(state["filter"])
            self.samplers[r].load_state_dict(state["sampler"])


@st.composite
def resume_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A sampler config on 1-4 ranks, its epoch count and the epoch resumed in."""
    config = draw(sampler_configs(max_samples=30, max_replicas=4, max_accumulation=2))
    config["score"] = "loss"  # the fed values are losses
    config["epochs"] = config["warmup_epochs"] + 2
    config["resume_epoch"] = draw(st.integers(0, config["epochs"] - 2), label="resume_epoch")
    return config


@settings(max_examples=30, deadline=None)
@given(resume_configs())
def test_resume_at_every_batch_boundary_on_every_rank(config: dict[str, Any]) -> None:
    epochs, resumed_in = range(config["epochs"]), config["resume_epoch"]
    whole = Ranks(config)
    whole.run(epochs)
    steps = sum(1 for e, _ in whole.records[0] if e == resumed_in)
    assert all(sum(1 for e, _ in rec if e == resumed_in) == steps for rec in whole.records)
    final = [f.state_dict() for f in whole.filters]
    remix_epochs = [e for e in epochs if e > resumed_in and e >= config["warmup_epochs"]]
    assert remix_epochs, "a later remix epoch shows the next assignment"
    for b in range(steps + 1):
        first = Ranks(config)
        checkpoints = first.run(epochs, stop=(resumed_in, b))
        assert len(checkpoints) == config["num_replicas"]
        second = Ranks(config)
        second.restore(checkpoints)
        second.run(range(resumed_in, config["epochs"]))
        context = f"resumed at batch {b} of {steps} of epoch {resumed_in}"
        for r in range(config["num_replicas"]):
            assert first.records[r] + second.records[r] == whole.records[r], context
            mine = second.filters[r].state_dict()
            torch.testing.assert_close(
                mine["values"], final[r]["values"], equal_nan=True, rtol=0, atol=0, msg=context
            )
            assert torch.equal(mine["fresh"], final[r]["fresh"]), context
            assert torch.equal(mine["scored"], final[r]["scored"]), context
            assert mine["history"] == final[r]["history"], context
        for epoch in remix_epochs:
            assert second.snapshots[epoch] == whole.snapshots[epoch], context
