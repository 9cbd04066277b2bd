"""Every bad input raises a clear error naming the argument and the value."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from remix_data import (
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    cross_entropy,
    scoring_pass,
)


def filt(**kw: object) -> HardSampleFilter:
    return HardSampleFilter(10, ("audio", "video"), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ValueError, "num_samples=0"),
        ({"num_samples": 2.5}, TypeError, "num_samples=2.5"),
        ({"modalities": ("audio",)}, ValueError, r"at least two modalities.*\('audio',\)"),
        ({"modalities": "audio"}, TypeError, "modalities='audio'"),
        ({"modalities": ("a", "a")}, ValueError, "should not repeat"),
        ({"modalities": ("a", 3)}, TypeError, "got 3"),
        ({"score": "kl"}, ValueError, "score='kl'"),
        ({"unscored": "skip"}, ValueError, "unscored='skip'"),
        ({"nonfinite": "zero"}, ValueError, "nonfinite='zero'"),
        ({"keep_ratio": 0.0}, ValueError, "keep_ratio=0.0"),
        ({"keep_ratio": {"speech": 0.5}}, ValueError, "speech"),
        ({"threshold": math.nan}, ValueError, "threshold=nan"),
        ({"reweight": 1}, TypeError, "reweight=1"),
        ({"labels": [0, 1]}, ValueError, "one label per sample"),
        ({"sync": "always"}, ValueError, "sync='always'"),
    ],
)
def test_filter_construction(kwargs: dict, error: type, match: str) -> None:
    args = {"num_samples": 10, "modalities": ("audio", "video"), **kwargs}
    with pytest.raises(error, match=match):
        HardSampleFilter(**args)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda f: f.update([0, 10], {"audio": torch.zeros(2, 3)}), ValueError, r"\[0, 10\).*10"),
        (lambda f: f.update([-1], {"audio": torch.zeros(1, 3)}), ValueError, "index -1"),
        (
            lambda f: f.update(torch.tensor([0.0, 1.0]), {"audio": torch.zeros(2, 3)}),
            TypeError,
            "float32",
        ),
        (lambda f: f.update(np.array([0.5]), {"audio": torch.zeros(1, 3)}), TypeError, "float64"),
        (lambda f: f.update([True], {"audio": torch.zeros(1, 3)}), TypeError, "True"),
        (
            lambda f: f.update(torch.zeros(2, 2, dtype=torch.long), {}),
            ValueError,
            "one-dimensional",
        ),
        (lambda f: f.update([0], {"speech": torch.zeros(1, 3)}), ValueError, "'speech'"),
        (lambda f: f.update([0, 1], {"audio": torch.zeros(3, 3)}), ValueError, r"shape \(3, 3\)"),
        (lambda f: f.update([0], {"audio": torch.zeros(1)}), ValueError, r"\[B, C\] logits"),
        (lambda f: f.update([0], {"audio": torch.zeros(1, 0)}), ValueError, r"shape \(1, 0\)"),
        (lambda f: f.update([0], {"audio": [[0.0, 1.0]]}), TypeError, "should be a tensor"),
        (lambda f: f.update([0], [torch.zeros(1, 2)]), TypeError, "outputs should map"),
        (
            lambda f: f.update([0], {"audio": torch.tensor([[math.nan, 0.0]])}),
            ValueError,
            r"outputs\['audio'\] gave a non-finite",
        ),
        (
            lambda f: f.update([0], {"audio": torch.zeros(1, 2)}, modality=torch.zeros(2)),
            ValueError,
            "modality should have the shape",
        ),
        (lambda f: f.weights([11]), ValueError, "index 11"),
    ],
)
def test_filter_update(call, error: type, match: str) -> None:  # type: ignore[no-untyped-def]
    f = filt()
    with pytest.raises(error, match=match):
        call(f)
    assert f.stats()["unscored"] == 10  # nothing was written


def test_loss_score_needs_targets_for_logits() -> None:
    f = filt(score="loss")
    with pytest.raises(ValueError, match="targets are needed"):
        f.update([0], {"audio": torch.zeros(1, 3)})
    with pytest.raises(ValueError, match=r"targets should be a tensor of shape \[1\]"):
        f.update([0], {"audio": torch.zeros(1, 3)}, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"targets should be a tensor .* but got list"):
        cross_entropy(torch.zeros(2, 3), [0, 1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"batch_size": 0},
            ValueError,
            "batch_size should be a positive integer value, but got batch_size=0",
        ),
        ({"batch_size": -3}, ValueError, "batch_size=-3"),
        ({"batch_size": 2.0}, TypeError, "batch_size=2.0"),
        ({"warmup_epochs": -1}, ValueError, "warmup_epochs=-1"),
        ({"order": "video_first"}, ValueError, "order='video_first'"),
        ({"drop_last": "yes"}, TypeError, "drop_last='yes'"),
        ({"seed": 1.5}, TypeError, "seed=1.5"),
        ({"num_replicas": 0}, ValueError, "num_replicas=0"),
        ({"rank": -1}, ValueError, "rank=-1"),
        ({"num_replicas": 2, "rank": 2}, ValueError, "rank=2"),
        ({"accumulation_steps": 0}, ValueError, "accumulation_steps=0"),
    ],
)
def test_sampler_construction(kwargs: dict, error: type, match: str) -> None:
    args = {"batch_size": 4, **kwargs}
    with pytest.raises(error, match=match):
        ReassemblingBatchSampler(filt(), **args)


def test_sampler_needs_a_filter_and_valid_epochs_and_states() -> None:
    with pytest.raises(TypeError, match="filter should be a HardSampleFilter"):
        ReassemblingBatchSampler(object(), 4)  # type: ignore[arg-type]
    sampler = ReassemblingBatchSampler(filt(), 4)
    with pytest.raises(ValueError, match="epoch=-1"):
        sampler.set_epoch(-1)
    state = sampler.state_dict()
    changes = (("num_samples", 11), ("num_replicas", 2), ("batch_size", 8), ("seed", 5),
               ("num_replicas", True), ("modalities", ("audio", "text")))  # fmt: skip
    for key, value in changes:
        with pytest.raises(ValueError, match=re.escape(f"{key}={value}")):
            sampler.load_state_dict({**state, key: value})
    with pytest.raises(ValueError, match=r"should contain 'epoch'"):
        sampler.load_state_dict({k: v for k, v in state.items() if k != "epoch"})


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: ModalityDecoupler([], ("audio",)), ValueError, "at least two"),
        (lambda: ModalityDecoupler([], ("a", "b"), mask="blur"), ValueError, "mask='blur'"),
        (
            lambda: ModalityDecoupler([], ("a", "b"), locations={"a": 0, "b": 1.5}),
            TypeError,
            r"'b': 1\.5 in locations=",
        ),
        (
            lambda: ModalityDecoupler([], ("a", "b"), locations={"a": 0, "b": 0}),
            ValueError,
            "its own place",
        ),
        (
            lambda: ModalityDecoupler([], ("a", "b"), locations={"c": 0}),
            ValueError,
            r"locations names unknown modalities \['c'\]",
        ),
    ],
)
def test_decoupler_construction(build, error: type, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        build()


def test_decoupler_keys_and_sample_kinds() -> None:
    data = ModalityDecoupler([{"a": torch.zeros(1), "b": torch.zeros(1)}], ("a", "b"))
    with pytest.raises(ValueError, match="modality=2"):
        data[(0, 2)]
    with pytest.raises(ValueError, match=r"key=\(0, 1, 2\)"):
        data[(0, 1, 2)]  # type: ignore[index]
    with pytest.raises(
        ValueError, match=r"modality 'a' is not in dataset\[0\]: looked for position 0"
    ):
        ModalityDecoupler([{"a": torch.zeros(1)}], ("a", "b"), locations={"a": 0, "b": 1})
    with pytest.raises(
        ValueError, match=r"modality 'a' is not in dataset\[0\].*a tuple of 2 items"
    ):
        ModalityDecoupler([(torch.zeros(1), torch.zeros(1))], ("a", "b"))
    with pytest.raises(TypeError, match=r"mask='zeros' needs tensors .*modality 'a' holds str"):
        ModalityDecoupler([{"a": "text", "b": torch.zeros(1)}], ("a", "b"))


def test_scoring_pass_arguments() -> None:
    data = ModalityDecoupler([{"a": torch.zeros(1), "b": torch.zeros(1)}] * 3, ("a", "b"))
    with pytest.raises(ValueError, match="fraction=0"):
        scoring_pass(lambda s: {}, data, HardSampleFilter(3, ("a", "b")), fraction=0)
    with pytest.raises(ValueError, match=r"filter\.num_samples=4"):
        scoring_pass(lambda s: {}, data, HardSampleFilter(4, ("a", "b")))


def test_scoring_pass_rank_arguments() -> None:
    data = ModalityDecoupler([{"a": torch.zeros(1), "b": torch.zeros(1)}] * 3, ("a", "b"))
    with pytest.raises(ValueError, match="rank=2"):
        scoring_pass(lambda s: {}, data, HardSampleFilter(3, ("a", "b")), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas=0"):
        scoring_pass(lambda s: {}, data, HardSampleFilter(3, ("a", "b")), num_replicas=0)
