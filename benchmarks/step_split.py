"""Host microseconds per training step, split into parts, timed inside the loop.

The ``train`` level of :mod:`benchmarks.throughput` gives one ratio for a whole
epoch; this runs the same model, data and steps (:class:`~benchmarks.training.TinyNet`,
:class:`~benchmarks.throughput.Pairs`, :func:`~benchmarks.methods.train_step`,
``mask="zeros"``, batch 256) and times each part of every step with
``perf_counter``: the loader's ``next`` (``data``), the loss (``forward``),
``backward``, the optimiser ``step``, and on the remix side ``update`` and
``set_epoch``. Epochs alternate plain, remix; the first ``--skip`` pairs are
not counted. Inside a training loop a part costs several times what it costs
timed alone in a tight loop (its code and data left the caches during the
backward pass), so these are the numbers to read for what remixing adds per
step. The garbage collector is off unless ``--gc`` (one full collection can
fall in either side's epochs; :func:`benchmarks._common.alternate` collects
before every timed run instead)::

    python -m benchmarks.step_split
    python -m benchmarks.step_split --gc --epochs 12

Example:
    >>> rows = split(n=512, batch_size=64, width=8, epochs=2, skip=1)
    >>> [row["part"] for row in rows][:3], rows[-1]["part"]
    (['data', 'forward', 'backward'], 'total')
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from benchmarks._common import NAMES, print_table
from benchmarks.methods import method_config, train_step
from benchmarks.throughput import Pairs
from benchmarks.training import TinyNet
from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    RemixCollate,
)

__all__ = ["PARTS", "split"]

PARTS = ("data", "forward", "backward", "step", "update", "set_epoch")


def split(
    *,
    n: int = 20_000,
    batch_size: int = 256,
    width: int = 256,
    epochs: int = 8,
    skip: int = 2,
    collect: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Mean host microseconds per step of each part, plain and remix (module docstring).

    Returns one row per part of :data:`PARTS`, then ``total``: ``plain``,
    ``remix`` (µs per step) and ``extra`` (remix minus plain).
    """
    dataset = Pairs(n, seed=seed)
    model = TinyNet(width=width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    shuffled = BatchSampler(RandomSampler(dataset), batch_size, drop_last=False)
    plain = DataLoader(dataset, batch_sampler=shuffled)
    filt = HardSampleFilter(n, NAMES)
    sampler = ReassemblingBatchSampler(filt, batch_size, warmup_epochs=0, seed=seed)
    remix = DataLoader(
        ModalityDecoupler(dataset, NAMES, mask="zeros"),
        batch_sampler=sampler,
        collate_fn=RemixCollate(),
    )
    configs = {
        "plain": method_config("joint", NAMES),
        "remix": method_config("remix-online", NAMES),
    }
    seconds = {side: dict.fromkeys(PARTS, 0.0) for side in configs}
    steps = dict.fromkeys(configs, 0)
    joint_ids: dict[int, torch.Tensor] = {}
    remix_epochs = itertools.count()
    was_enabled = gc.isenabled()
    if not collect:
        gc.disable()
    try:
        for epoch in range(epochs):
            for side, cfg in configs.items():
                spent = dict.fromkeys(PARTS, 0.0)
                count = 0
                start = time.perf_counter()
                if side == "remix":
                    sampler.set_epoch(next(remix_epochs))
                    spent["set_epoch"] += time.perf_counter() - start
                batches = iter(remix if side == "remix" else plain)
                while True:
                    start = time.perf_counter()
                    item = next(batches, None)
                    if item is None:
                        break
                    t_data = time.perf_counter()
                    if side == "remix":
                        sample, index, modality = item
                    else:
                        sample, index = item, None
                        b = len(sample["label"])
                        modality = joint_ids.setdefault(b, torch.full((b,), ALL))
                    loss, logits = train_step(model, cfg, sample, modality)
                    t_forward = time.perf_counter()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    t_backward = time.perf_counter()
                    opt.step()
                    t_step = time.perf_counter()
                    if index is not None:
                        filt.update(index, logits, modality=modality)
                    t_update = time.perf_counter()
                    spent["data"] += t_data - start
                    spent["forward"] += t_forward - t_data
                    spent["backward"] += t_backward - t_forward
                    spent["step"] += t_step - t_backward
                    spent["update"] += t_update - t_step
                    count += 1
                if epoch >= skip:
                    steps[side] += count
                    for part, value in spent.items():
                        seconds[side][part] += value
    finally:
        if was_enabled:
            gc.enable()
    rows = []
    for part in (*PARTS, "total"):
        row: dict[str, Any] = {"part": part}
        for side in configs:
            spent_side = seconds[side]
            value = sum(spent_side.values()) if part == "total" else spent_side[part]
            row[side] = 1e6 * value / max(steps[side], 1)
        row["extra"] = row["remix"] - row["plain"]
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs per side, alternated")
    parser.add_argument("--skip", type=int, default=2, help="first epochs not counted")
    parser.add_argument("--gc", action="store_true", help="keep the garbage collector on")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if args.skip >= args.epochs:
        raise SystemExit(f"--skip should be below --epochs, but got {args.skip} >= {args.epochs}")
    rows = split(
        n=args.n, batch_size=args.batch_size, width=args.width, epochs=args.epochs,
        skip=args.skip, collect=args.gc,
    )  # fmt: skip
    columns = [("part", "part", "s"), ("plain µs", "plain", ".1f"), ("remix µs", "remix", ".1f")]
    columns.append(("extra µs", "extra", "+.1f"))
    collector = "on" if args.gc else "off"
    print_table(
        f"host µs per step, inside the loop (batch {args.batch_size}, width {args.width}, "
        f"{args.epochs - args.skip} epochs per side counted, collector {collector})",
        rows,
        columns,
    )
    return rows


if __name__ == "__main__":
    main()
