"""Presets carry the whole recipe: warm-up, masking, scoring, tail policy, all checked."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from remix_data import ALL, presets, scoring_pass
from remix_data.presets import MASKINGS, PAPER, RECOMMENDED, Preset, RemixParts, build
from remix_data.vocabulary import PAD

NAMES = ("audio", "video")
N = 37  # divides by no batch size used here


def _dataset() -> list[dict[str, Any]]:
    # uint8 video: masking must keep the dtype; values are never zero, so a zeroed
    # modality is recognisable.
    return [
        {
            "audio": torch.full((3,), float(i + 1)),
            "video": torch.full((2, 2), i % 200 + 1, dtype=torch.uint8),
            "label": i % 3,
        }
        for i in range(N)
    ]


def _heads(sample: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Deterministic per-sample logits of 3 classes from whichever modality is present."""
    out = {}
    for name in NAMES:
        if name in sample:
            x = sample[name].float().flatten(1).sum(1, keepdim=True)
            out[name] = torch.cat([torch.sin(x), torch.cos(3 * x), torch.zeros_like(x)], 1)
    return out


ZEROS_DROP_LAST = Preset("zeros-tail", warmup=2, masking="zeros", drop_last=True)
END_TO_END = [(PAPER, 0), (RECOMMENDED, 2), (ZEROS_DROP_LAST, 0)]


def test_every_shipped_preset_is_run_end_to_end() -> None:
    shipped = {v.name for v in vars(presets).values() if isinstance(v, Preset)}
    assert shipped == {"paper", "recommended"}
    assert shipped <= {p.name for p, _ in END_TO_END}, "add the new preset to END_TO_END"
    for name in presets.__all__:
        value = getattr(presets, name)
        if isinstance(value, Preset):  # every shipped recipe warms up, from any run length
            assert all(value.warmup_epochs(e) >= 1 for e in range(2, 121))


@pytest.mark.parametrize(("preset", "workers"), END_TO_END)
def test_every_preset_runs_its_recipe_end_to_end(preset: Preset, workers: int) -> None:
    base = _dataset()
    epochs = 6
    parts = build(
        preset, base, modalities=NAMES, batch_size=4, epochs=epochs,
        labels=[s["label"] for s in base], seed=1,
    )  # fmt: skip
    assert isinstance(parts, RemixParts)
    assert parts.sampler.filter is parts.filter and parts.data.dataset is base
    assert parts.warmup_epochs == parts.sampler.warmup_epochs == preset.warmup_epochs(epochs) >= 1
    assert parts.data.mask == MASKINGS[preset.masking]
    assert (parts.masking, parts.scoring) == (preset.masking, preset.scoring)
    assert parts.sampler.drop_last is preset.drop_last
    joint_batches = float(preset.sampler.get("joint_fraction", 0.0)) > 0
    loader = parts.loader(num_workers=workers, persistent_workers=workers > 0)
    for epoch in range(epochs):
        warm = epoch < parts.warmup_epochs
        if preset.scoring == "pass" and not warm:
            scored = scoring_pass(_heads, parts.data, parts.filter, epoch=epoch, progress=False)
            assert scored == N
        if not warm:  # the warm-up scored every sample: no remix epoch splits by index
            assert parts.filter.stats()["unscored"] == 0
        parts.sampler.set_epoch(epoch)
        plan = parts.filter.snapshot(epoch) if not warm else None
        seen: list[int] = []
        unimodal = 0
        for sample, index, modality in loader:
            ids = set(modality.tolist()) - {PAD}  # PAD rows only fill a batch (tail="fill")
            assert len(ids) == 1, "a batch mixes modalities"
            (m,) = ids
            seen += index[modality != PAD].tolist()
            assert len(index) == 4 or parts.sampler.tail != "fill"  # static shapes
            full = {name: torch.stack([base[i][name] for i in index.tolist()]) for name in NAMES}
            if warm:
                assert m == ALL
            elif not joint_batches:
                assert m != ALL, "a remix epoch without joint_fraction served a joint batch"
            if m == ALL:  # warm-up, or a joint batch of a remix epoch: everything visible
                for name in NAMES:
                    assert torch.equal(sample[name], full[name])
                continue
            unimodal += 1
            assert plan is not None and bool((plan[index] == m).all()), "batch off the plan"
            active, other = NAMES[m], NAMES[1 - m]
            assert torch.equal(sample[active], full[active])
            if preset.masking == "zeros":
                assert sample[other].dtype == full[other].dtype
                assert not sample[other].any()
            elif preset.masking == "drop":
                assert other not in sample
            else:  # features: the model masks, the sample stays whole
                assert torch.equal(sample[other], full[other])
            if preset.scoring == "online":
                parts.filter.update(index, _heads(sample), modality=modality)
        if warm:
            if preset.scoring == "online":  # both heads are fresh on joint batches
                parts.filter.update(torch.arange(N), _heads(_collate(base)))
        else:
            assert unimodal > 0, f"epoch {epoch} after warm-up trained no unimodal batch"
        if preset.drop_last:
            dropped = sum(parts.sampler.stats()["dropped"].values())
            assert len(seen) + dropped == N and len(set(seen)) == len(seen)
        else:
            assert sorted(seen) == list(range(N)), "every sample exactly once per epoch"


def _collate(base: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {name: torch.stack([s[name] for s in base]) for name in NAMES}


def test_paper_preset_is_the_library_default() -> None:
    parts = build(PAPER, _dataset(), modalities=NAMES, batch_size=4, epochs=60)
    filt, sampler = parts.filter, parts.sampler
    assert (filt.balance, filt.smoothing, filt.keep_ratio) == ("none", 0.0, [None, None])
    assert (sampler.order, sampler.joint_fraction, sampler.drop_last) == ("sequential", 0.0, False)
    assert parts.warmup_epochs == 10  # the reference code: 10 of 60 epochs
    assert (parts.data.mask, parts.scoring, parts.masking) == ("none", "pass", "features")
    assert parts.modalities == NAMES


def test_recommended_preset_is_class_balanced_with_joint_batches() -> None:
    base = _dataset()
    labels = torch.arange(N) % 4
    parts = build(
        RECOMMENDED, base, modalities=NAMES, batch_size=4, epochs=12, labels=labels, seed=3
    )
    parts.filter.update(torch.arange(N), {"audio": torch.randn(N, 4), "video": torch.randn(N, 4)})
    parts.sampler.set_epoch(parts.warmup_epochs)
    assert ALL in {b[0][1] for b in parts.sampler}  # a quarter of each subset in joint batches
    counts = parts.filter.stats()["class_counts"]
    assert all(abs(counts["audio"][c] - counts["audio"][0]) <= 1 for c in range(4))
    assert parts.data.mask == "drop" and parts.scoring == "online"


@given(
    fraction=st.floats(min_value=1e-6, max_value=1 - 1e-6, exclude_min=True),
    epochs=st.integers(1, 400),
)
def test_a_fractional_warmup_is_never_zero(fraction: float, epochs: int) -> None:
    preset = Preset("p", warmup=fraction)
    try:
        warmup = preset.warmup_epochs(epochs)
    except ValueError as err:
        assert "leaves no remix epoch" in str(err)
        assert max(1, round(fraction * epochs)) >= epochs
        return
    assert 1 <= warmup < epochs
    assert abs(warmup - fraction * epochs) <= max(0.5, 1 - fraction * epochs) + 1e-9


def test_a_fractional_warmup_needs_the_run_length() -> None:
    with pytest.raises(ValueError, match=r"pass epochs=\.\.\., but got epochs=None"):
        build(PAPER, _dataset(), modalities=NAMES, batch_size=4)
    assert PAPER.warmup_epochs(6) == 1 and PAPER.warmup_epochs(30) == 5
    explicit = build(dataclasses.replace(PAPER, warmup=3), _dataset(), modalities=NAMES,
                     batch_size=4)  # fmt: skip
    assert explicit.sampler.warmup_epochs == 3  # an int needs no run length
    with pytest.raises(ValueError, match="leaves no remix epoch in a run of epochs=3"):
        build(dataclasses.replace(PAPER, warmup=3), _dataset(), modalities=NAMES, batch_size=4,
              epochs=3)  # fmt: skip
    with pytest.raises(ValueError, match="epochs should be a positive integer"):
        PAPER.warmup_epochs(0)


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"masking": "input"}, ValueError, "masking='input'"),
        ({"scoring": "offline"}, ValueError, "scoring='offline'"),
        ({"warmup": -1}, ValueError, "warmup=-1"),
        ({"warmup": 1.0}, ValueError, r"warmup=1\.0"),
        ({"warmup": 0.0}, ValueError, r"warmup=0\.0"),
        ({"warmup": True}, TypeError, "warmup=True"),
        ({"warmup": "5"}, TypeError, "warmup='5'"),
        ({"masking": 0}, TypeError, "masking=0"),
        ({"scoring": None}, TypeError, "scoring=None"),
        ({"drop_last": "yes"}, TypeError, "drop_last='yes'"),
        ({"drop_last": 1}, TypeError, "drop_last=1"),
        ({"name": ""}, ValueError, "name=''"),
        ({"name": 7}, TypeError, "name=7"),
        ({"filter": {"balanse": "class"}}, ValueError, "unknown keys \\['balanse'\\]"),
        ({"filter": [("balance", "class")]}, TypeError, "filter should be a mapping"),
        ({"sampler": {"warmup_epochs": 2}}, ValueError, "unknown keys \\['warmup_epochs'\\]"),
        ({"sampler": {"drop_last": True}}, ValueError, "unknown keys \\['drop_last'\\]"),
    ],
)
def test_preset_fields_are_checked(fields: dict[str, Any], error: type, message: str) -> None:
    kwargs: dict[str, Any] = {"name": "p", "warmup": 2, **fields}
    with pytest.raises(error, match=message):
        Preset(**kwargs)


def test_preset_mappings_are_frozen_copies() -> None:
    options = {"order": "random"}
    preset = Preset("p", warmup=1, sampler=options)
    options["order"] = "interleave"
    assert preset.sampler["order"] == "random"
    with pytest.raises(TypeError):
        preset.sampler["order"] = "interleave"  # type: ignore[index]


def test_build_rejects_bad_input_and_takes_overrides() -> None:
    base = _dataset()
    with pytest.raises(ValueError, match="pass labels"):
        build(RECOMMENDED, base, modalities=NAMES, batch_size=2, epochs=6)
    with pytest.raises(TypeError, match="preset should be a Preset"):
        build("paper", base, modalities=NAMES, batch_size=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dataclasses.replace\(preset, warmup=\.\.\.\)"):
        build(PAPER, base, modalities=NAMES, batch_size=2, epochs=6, warmup_epochs=0)
    with pytest.raises(ValueError, match="drop_last=True"):
        build(PAPER, base, modalities=NAMES, batch_size=2, epochs=6, drop_last=True)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        build(PAPER, base, modalities=NAMES, batch_size=0, epochs=6)
    with pytest.raises(ValueError, match="unknown keys \\['smothing'\\]"):
        build(PAPER, base, modalities=NAMES, batch_size=2, epochs=6, filter_kwargs={"smothing": 1})
    custom = Preset("mine", warmup=1, sampler={"order": "random"}, filter={"smoothing": 0.5})
    parts = build(custom, base, modalities=NAMES, batch_size=2, order="interleave",
                  filter_kwargs={"smoothing": 0.25})  # fmt: skip
    assert parts.sampler.order == "interleave" and parts.filter.smoothing == 0.25
    with pytest.raises(ValueError, match="batch_size is set by the preset's sampler"):
        parts.loader(batch_size=8)


def test_build_serves_tuple_samples() -> None:
    base = [(torch.ones(2) * (i + 1), torch.ones(3) * (i + 1), i % 2) for i in range(10)]
    preset = Preset("tuples", warmup=1, masking="zeros")
    parts = build(preset, base, modalities={"audio": 0, "video": 1}, batch_size=4)
    assert parts.filter.modalities == NAMES and parts.filter.num_samples == 10
    parts.sampler.set_epoch(1)  # unscored samples spread: even -> audio, odd -> video
    (sample, index, modality), *_ = parts.loader()
    assert int(modality[0]) == 0 and not sample[1].any() and sample[0].all()
    assert all(i % 2 == 0 for i in index.tolist())
