"""The one seed-mixing scheme of the package's own random generators.

Every random choice remix_data makes (the sampler's epoch plan, the scoring
pass's random fraction) comes from a fresh ``torch.Generator`` seeded from the
user's ``seed``, the ``epoch`` and a *stream* naming the consumer, so that every
rank draws the same numbers for the same epoch, no global RNG is touched, and
two consumers given the same ``(seed, epoch)`` never draw correlated streams.

Example:
    >>> mix_seed(0, 1) != mix_seed(1, 0) != mix_seed(0, 1, SCORING)
    True
    >>> a = epoch_generator(3, 2)
    >>> b = epoch_generator(3, 2)
    >>> bool((torch.randperm(5, generator=a) == torch.randperm(5, generator=b)).all())
    True
"""

from __future__ import annotations

import torch

__all__ = ["PLAN", "SCORING", "mix_seed", "epoch_generator"]

#: Stream of :class:`~remix_data.ReassemblingBatchSampler`'s epoch plans.
PLAN = 0
#: Stream of :func:`~remix_data.scoring_pass`'s random fraction.
SCORING = 1

_SEED, _EPOCH, _STREAM, _OFFSET = (
    0x9E3779B97F4A7C15,
    0xBF58476D1CE4E5B9,
    0xD6E8FEB86659FD93,
    0x94D049BB133111EB,
)


def mix_seed(seed: int, epoch: int, stream: int = PLAN) -> int:
    """Mix ``(seed, epoch, stream)`` into one 63-bit generator seed.

    A linear mix with odd 64-bit constants, taken modulo ``2**63 - 1``: distinct
    for distinct small triples. For ``stream=PLAN`` it is the value the sampler
    has always used, so seeds keep their plans.
    """
    mixed = seed * _SEED + epoch * _EPOCH + stream * _STREAM + _OFFSET
    return mixed % (2**63 - 1)


def epoch_generator(seed: int, epoch: int, stream: int = PLAN) -> torch.Generator:
    """A new CPU ``torch.Generator`` seeded with :func:`mix_seed`."""
    gen = torch.Generator()
    gen.manual_seed(mix_seed(seed, epoch, stream))
    return gen
