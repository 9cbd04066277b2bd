"""One error-type rule: TypeError for a wrong type, ValueError for a wrong value."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler, scoring_pass
from remix_data.distributed import world_info
from remix_data.testing import check_step_modalities

NAMES = ("audio", "video")


def filt(**kwargs: Any) -> HardSampleFilter:
    return HardSampleFilter(6, NAMES, **kwargs)


def sampler(**kwargs: Any) -> ReassemblingBatchSampler:
    return ReassemblingBatchSampler(filt(), **{"batch_size": 2, **kwargs})


def scoring(**kwargs: Any) -> int:
    data = ModalityDecoupler([{"audio": torch.zeros(1), "video": torch.zeros(1)}] * 6, NAMES)
    return scoring_pass(lambda s: {}, data, filt(), **{"progress": False, **kwargs})


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        # wrong types
        (lambda: sampler(batch_size=2.0), TypeError, "batch_size=2.0"),
        (lambda: sampler(batch_size=True), TypeError, "batch_size=True"),
        (lambda: sampler(drop_last=1), TypeError, "drop_last=1"),
        (lambda: sampler(seed="1"), TypeError, "seed='1'"),
        (lambda: sampler(order=0), TypeError, "order=0"),
        (lambda: sampler(joint_fraction="0.5"), TypeError, "joint_fraction='0.5'"),
        (lambda: sampler(num_replicas=2.0), TypeError, "num_replicas=2.0"),
        (lambda: sampler(rank="0"), TypeError, "rank='0'"),
        (lambda: filt(reweight=1), TypeError, "reweight=1"),
        (lambda: filt(score=None), TypeError, "score=None"),
        (lambda: filt(smoothing="0.5"), TypeError, "smoothing='0.5'"),
        (lambda: filt(keep_ratio="half"), TypeError, "keep_ratio='half'"),
        (lambda: HardSampleFilter(6.0, NAMES), TypeError, "num_samples=6.0"),  # type: ignore[arg-type]
        (lambda: ModalityDecoupler([], NAMES, mask=0), TypeError, "mask=0"),
        (lambda: scoring(seed=1.5), TypeError, "seed=1.5"),
        (lambda: scoring(progress="no"), TypeError, "progress='no'"),
        (lambda: scoring(batch_size=1.5), TypeError, "batch_size=1.5"),
        (lambda: check_step_modalities([[0]], accumulation_steps=1.0), TypeError, "1.0"),
        # wrong values
        (lambda: sampler(batch_size=0), ValueError, "batch_size=0"),
        (lambda: sampler(order="backwards"), ValueError, "order='backwards'"),
        (lambda: sampler(joint_fraction=1.5), ValueError, r"joint_fraction=1\.5"),
        (lambda: sampler(num_replicas=2, rank=2), ValueError, "rank=2"),
        (lambda: filt(smoothing=float("nan")), ValueError, "smoothing=nan"),
        (lambda: scoring(num_replicas=3, rank=3), ValueError, r"num_replicas=3\), but got rank=3"),
        (lambda: scoring(epoch=-1), ValueError, "epoch=-1"),
        (lambda: check_step_modalities([[0]], accumulation_steps=0), ValueError, "=0"),
    ],
)
def test_error_type_rule(build: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()


def test_world_info_is_one_validation_for_sampler_and_scoring() -> None:
    assert world_info(None, None) == (1, 0)  # no process group: one replica
    assert world_info(4, 3) == (4, 3)
    with pytest.raises(ValueError, match=r"num_replicas=1\), but got rank=1"):
        world_info(None, 1)
    for replicas, rank, message in ((0, 0, "num_replicas=0"), (2, -1, "rank=-1")):
        with pytest.raises(ValueError, match=rf"should be a .*, but got {message}$"):
            world_info(replicas, rank)
