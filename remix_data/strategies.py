"""Hypothesis strategies for property tests of code that uses remix_data (needs ``hypothesis``).

:mod:`remix_data.testing` hands them out too, importing this module on first use, so
that its checkers work on the base install.

Example:
    >>> from hypothesis import find
    >>> find(score_tables(), lambda t: t["num_samples"] > 3)["values"].shape[1]
    4
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import strategies as st

__all__ = ["logits", "sampler_configs", "score_tables"]


@st.composite
def logits(draw: st.DrawFn, batch: int | None = None, classes: int | None = None) -> torch.Tensor:
    """A ``[batch, classes]`` float32 logits tensor with finite values (ties likely)."""
    b = batch if batch is not None else draw(st.integers(1, 32))
    c = classes if classes is not None else draw(st.integers(2, 6))
    values = draw(
        st.lists(
            st.sampled_from([-3.0, -1.0, 0.0, 0.5, 1.0, 4.0])
            | st.floats(-20, 20, allow_nan=False, width=32),
            min_size=b * c,
            max_size=b * c,
        )
    )
    return torch.tensor(values, dtype=torch.float32).view(b, c)


@st.composite
def score_tables(draw: st.DrawFn, max_samples: int = 60, max_modalities: int = 4) -> dict[str, Any]:
    """A filter's inputs: ``num_samples``, ``modalities`` and a ``[M, N]`` score table.

    Scores are drawn from a small set so ties are common; about one entry in
    eight is ``NaN`` (not scored yet).
    """
    n = draw(st.integers(1, max_samples))
    m = draw(st.integers(2, max_modalities))
    cells = st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0, 3, width=32)
    cells = st.one_of(cells, cells, cells, cells, cells, cells, cells, st.just(math.nan))
    values = draw(st.lists(cells, min_size=n * m, max_size=n * m))
    return {
        "num_samples": n,
        "modalities": tuple(f"m{i}" for i in range(m)),
        "values": torch.tensor(values, dtype=torch.float32).view(m, n),
        "score": draw(st.sampled_from(["confidence", "loss"])),
    }


@st.composite
def sampler_configs(
    draw: st.DrawFn, max_samples: int = 80, max_replicas: int = 8, max_accumulation: int = 4
) -> dict[str, Any]:
    """A full sampler configuration with a score table, world size and accumulation.

    Keys: those of :func:`score_tables` plus ``batch_size``, ``order``,
    ``drop_last``, ``seed``, ``warmup_epochs``, ``epoch``, ``num_replicas``,
    ``accumulation_steps``, ``tail``, ``joint_fraction`` (the sampler's) and
    ``keep_ratio``, ``threshold``, ``smoothing``, ``balance``, ``labels``,
    ``unscored`` (the filter's). Feed it to :func:`build_samplers`.
    """
    config = draw(score_tables(max_samples=max_samples))
    n = config["num_samples"]
    balance = draw(st.sampled_from(["none", "none", "class"]))
    classes = draw(st.integers(1, 4))
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    config.update(
        batch_size=draw(st.integers(1, 9)),
        order=draw(st.sampled_from(["sequential", "interleave", "random"])),
        drop_last=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31)),
        warmup_epochs=draw(st.integers(0, 2)),
        epoch=draw(st.integers(0, 4)),
        num_replicas=draw(st.integers(1, max_replicas)),
        accumulation_steps=draw(st.integers(1, max_accumulation)),
        keep_ratio=draw(st.none() | st.sampled_from([0.5, 0.9, 1.0])),
        joint_fraction=draw(st.sampled_from([0.0, 0.0, 0.25, 0.5])),
        tail=draw(st.sampled_from(["merge", "merge", "keep", "fill"])),
        # 0.5 is a drawn score value, so some scores sit exactly on the threshold
        threshold=draw(st.none() | st.sampled_from([0.5, 1.0])),
        smoothing=draw(st.sampled_from([0.0, 0.0, 0.5, 0.9])),
        balance=balance,
        labels=labels if balance == "class" or draw(st.booleans()) else None,
        unscored=draw(st.sampled_from(["spread", "spread", "filter"])),
    )
    return config
