"""Issue 20: integrations that used to train the wrong thing silently now fail or warn.

Each test builds the broken integration as a user would (README quick start, recipes,
``build``), with the real parts and a real ``DataLoader``, and asserts the message that
names the fix; next to it, the correct integration stays silent.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from remix_data import (
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    RemixCollate,
    RemixWarning,
    mask_features,
    remix_loss,
    scoring_pass,
)
from remix_data.presets import PAPER, RECOMMENDED, build
from remix_data.testing import check_loader
from remix_data.watch import STEPS

NAMES = ("audio", "video")


def _toy(n: int = 64) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "audio": torch.randn(8, generator=gen) + i % 2,
            "video": torch.randn(4, generator=gen) + (i % 2) / 4,
            "label": i % 2,
        }
        for i in range(n)
    ]


class QuickStartNet(nn.Module):
    """The README quick start's model: masks by absence ("drop"), never calls mask_features."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.ModuleDict({"audio": nn.Linear(8, 16), "video": nn.Linear(4, 16)})
        self.heads = nn.ModuleDict({m: nn.Linear(16, 2) for m in self.enc})
        self.fused = nn.Linear(32, 2)

    def features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        zeros = torch.zeros(len(x["label"]), 16)
        return {m: enc(x[m]).relu() if m in x else zeros for m, enc in self.enc.items()}

    def forward(self, x: dict[str, torch.Tensor], modality: Any = None) -> Any:
        f = self.features(x)
        return self.fused(torch.cat(list(f.values()), 1)), {m: self.heads[m](f[m]) for m in f}


class FeatureMaskingNet(QuickStartNet):
    """The recipes' model for masking="features": zeroes the inactive features."""

    filt: Any = None

    def forward(self, x: dict[str, torch.Tensor], modality: Any = None) -> Any:
        f = self.features(x)
        if modality is not None:
            f = mask_features(f, modality, self.filt)
        return self.fused(torch.cat(list(f.values()), 1)), {m: self.heads[m](f[m]) for m in f}


def _train_paper(model: QuickStartNet, epochs: int = 4) -> list[RemixWarning]:
    """build(PAPER, ...) and the quick-start loop, the scoring pass before set_epoch."""
    train = _toy()
    parts = build(PAPER, train, modalities=NAMES, batch_size=8, epochs=epochs)
    model.filt = parts.filter
    loader = parts.loader(num_workers=2, persistent_workers=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(epochs):
            if not parts.sampler.is_warmup(epoch):
                model.eval()
                scoring_pass(lambda s: model(s)[1], parts.data, parts.filter, epoch=epoch,
                             progress=False)  # fmt: skip
                model.train()
            parts.sampler.set_epoch(epoch)
            for sample, _, modality in loader:
                fused, heads = model(sample, modality)
                loss = remix_loss(fused, heads, sample["label"], modality, parts.filter)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return [w.message for w in caught if issubclass(w.category, RemixWarning)]  # type: ignore[misc]


# ----------------------------------------------------------------------------- #1
def test_paper_preset_with_a_model_that_never_masks_features_warns_once() -> None:
    warned = _train_paper(QuickStartNet())
    assert len(warned) == 1
    message = str(warned[0])
    assert f"never called mask_features in {STEPS} unimodal remix steps" in message
    assert "mask_features(features, modality, filt)" in message
    assert "masking='zeros'" in message


def test_paper_preset_with_a_feature_masking_model_stays_silent() -> None:
    assert _train_paper(FeatureMaskingNet()) == []


def test_paper_preset_with_masking_zeros_needs_no_model_change() -> None:
    train = _toy()
    parts = build(PAPER, train, modalities=NAMES, batch_size=8, epochs=6, masking="zeros")
    assert parts.masking == "zeros" and parts.data.mask == "zeros" and parts.preset.name == "paper"
    parts.sampler.set_epoch(1)
    sample, _, modality = next(iter(parts.loader()))
    m = int(modality[0])
    assert not sample[NAMES[1 - m]].any(), "the inactive modality is zeros, not left to the model"


def test_check_loader_catches_a_loop_that_never_masks_features() -> None:
    train = _toy(24)
    filt = HardSampleFilter(len(train), NAMES)
    sampler = ReassemblingBatchSampler(filt, 8, warmup_epochs=1)
    loader = DataLoader(ModalityDecoupler(train, filt, mask="none"), batch_sampler=sampler)
    model = QuickStartNet()

    def loop(run: Any) -> None:
        for epoch in range(2):
            sampler.set_epoch(epoch)
            for sample, _, _ in run:
                model(sample)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RemixWarning)
        with pytest.raises(AssertionError, match=r"feature masking: .*never called mask_features"):
            check_loader(loader, train, train=loop)
    masking = FeatureMaskingNet()
    masking.filt = filt

    def good(run: Any) -> None:
        for epoch in range(2, 4):
            sampler.set_epoch(epoch)
            for sample, _, modality in run:
                masking(sample, modality)

    assert len(check_loader(loader, train, train=good)) == 2


# ----------------------------------------------------------------------------- #3
def test_a_sample_without_a_modality_fails_at_the_first_batch_unless_declared() -> None:
    train = _toy(16)
    train[5]["video"] = None  # dataset[0] has video: only the batch can know
    del train[9]["video"]
    parts = build(RECOMMENDED, train, modalities=NAMES, batch_size=4, epochs=6,
                  labels=[s["label"] for s in train])  # fmt: skip
    parts.sampler.set_epoch(0)
    with pytest.raises(ValueError, match=r"sample (5|9) .*holds no 'video'.*available="):
        list(parts.loader())
    train[0]["video"] = None  # now dataset[0] lacks it: the same error, at construction
    with pytest.raises(ValueError, match=r"'video' is None in dataset\[0\].*available="):
        build(RECOMMENDED, train, modalities=NAMES, batch_size=4, epochs=6,
              labels=[s["label"] for s in train])  # fmt: skip


# ----------------------------------------------------------------------------- #4
def test_a_scoring_pass_after_set_epoch_warns_with_the_order() -> None:
    train = _toy(16)
    parts = build(PAPER, train, modalities=NAMES, batch_size=4, epochs=6, masking="zeros")
    model = QuickStartNet()
    parts.sampler.set_epoch(0)
    scoring_pass(lambda s: model(s)[1], parts.data, parts.filter, epoch=1, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts.sampler.set_epoch(1)  # the wrong order: snapshot first, then the pass
        scoring_pass(lambda s: model(s)[1], parts.data, parts.filter, epoch=1, progress=False)
        scoring_pass(lambda s: model(s)[1], parts.data, parts.filter, epoch=2, progress=False)
        parts.sampler.set_epoch(2)  # the right order again: silent
    (warning,) = [w for w in caught if issubclass(w.category, RemixWarning)]
    assert "scoring_pass(epoch=1) runs after the filter's snapshot of epoch 1" in str(
        warning.message
    )
    assert "before sampler.set_epoch(e)" in str(warning.message)
    assert warning.filename == __file__  # points at the user's call


# ----------------------------------------------------------------------------- #5
@pytest.mark.parametrize("size", [48, 80])
def test_names_form_decoupler_with_a_filter_of_another_size_fails_at_the_first_batch(
    size: int,
) -> None:
    train = _toy(64)
    filt = HardSampleFilter(size, NAMES)
    sampler = ReassemblingBatchSampler(filt, 8)
    data = ModalityDecoupler(train, NAMES)  # names form: no filter to check at construction
    loader = DataLoader(data, batch_sampler=sampler, num_workers=2)
    with pytest.raises(ValueError, match=rf"num_samples={size}, but len\(dataset\)=64"):
        next(iter(loader))
    with pytest.raises(ValueError, match=r"outside the dataset .*num_samples=len"):
        data.__getitems__([(70, 0), (3, 0)])  # keys built by hand, past the end
    with pytest.raises(ValueError, match="outside the dataset"):
        data[(64, 1)]


# ------------------------------------------------------------------- unclear cases
def test_build_takes_locations_for_tuple_and_nested_samples() -> None:
    pairs = [(torch.ones(2) * (i + 1), torch.ones(3) * (i + 1), i % 2) for i in range(10)]
    with pytest.raises(ValueError, match=r"build\(\.\.\., locations=\.\.\.\) takes the same"):
        build(PAPER, pairs, modalities=NAMES, batch_size=4, epochs=6, masking="zeros")
    parts = build(PAPER, pairs, modalities=NAMES, batch_size=4, epochs=6, masking="zeros",
                  locations={"audio": 0, "video": 1})  # fmt: skip
    parts.sampler.set_epoch(1)  # unscored: spread by index
    (sample, _, modality), *_ = parts.loader()
    m = int(modality[0])
    assert sample[m].all() and not sample[1 - m].any()
    nested = [{"x": {"a": torch.ones(2), "v": torch.ones(3)}, "y": i % 2} for i in range(10)]
    parts = build(RECOMMENDED, nested, modalities=NAMES, batch_size=4, epochs=6,
                  labels=[i % 2 for i in range(10)], masking="zeros",
                  locations={"audio": "x.a", "video": "x.v"})  # fmt: skip
    assert parts.data.masker.locations == {"audio": "x.a", "video": "x.v"}
    with pytest.raises(ValueError, match="already gives places: pass the names"):
        build(PAPER, pairs, modalities={"audio": 0, "video": 1}, batch_size=4, epochs=6,
              locations={"audio": 0, "video": 1})  # fmt: skip
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'location'.*'locations'"):
        build(PAPER, pairs, modalities=NAMES, batch_size=4, epochs=6, location={"audio": 0})
    with pytest.raises(ValueError, match=r"masking should be one of .*got masking='input'"):
        build(PAPER, pairs, modalities=NAMES, batch_size=4, epochs=6, masking="input")


def project_collate(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in samples[0]}


def test_a_projects_collate_fn_in_a_plain_loader_is_told_to_use_remix_collate() -> None:
    train = _toy(16)
    filt = HardSampleFilter(len(train), NAMES)
    data = ModalityDecoupler(train, filt)
    loader = DataLoader(data, batch_sampler=ReassemblingBatchSampler(filt, 4),
                        collate_fn=project_collate, num_workers=2)  # fmt: skip
    with pytest.raises(TypeError, match=r"RemixCollate\(my_collate\)"):
        next(iter(loader))
    fixed = DataLoader(data, batch_sampler=ReassemblingBatchSampler(filt, 4),
                       collate_fn=RemixCollate(project_collate), num_workers=2)  # fmt: skip
    batch, index, _ = next(iter(fixed))
    assert torch.equal(batch["audio"], torch.stack([train[i]["audio"] for i in index.tolist()]))


def sorting_collate(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Longest first, as for ``pack_padded_sequence(enforce_sorted=True)``: rows reordered."""
    return project_collate(sorted(samples, key=lambda s: -float(s["audio"].abs().sum())))


def test_check_loader_says_when_a_collate_fn_reorders_the_rows() -> None:
    train = _toy(16)
    filt = HardSampleFilter(len(train), NAMES)
    sampler = ReassemblingBatchSampler(filt, 8, warmup_epochs=1)
    data = ModalityDecoupler(train, filt)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=RemixCollate(sorting_collate))
    reordered = r"holds dataset\[\d+\], another row's sample: the collate_fn reordered the rows"
    with pytest.raises(AssertionError, match=reordered):
        check_loader(loader, train)
    in_order = DataLoader(data, batch_sampler=sampler, collate_fn=RemixCollate(project_collate))
    assert len(check_loader(in_order, train)) == 3


def test_scoring_pass_wraps_a_projects_collate_fn() -> None:
    train = _toy(16)
    filt = HardSampleFilter(len(train), NAMES)
    data = ModalityDecoupler(train, filt)
    seen: list[list[str]] = []

    def heads(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seen.append(sorted(batch))
        return {m: torch.stack([batch[m].sum(1), -batch[m].sum(1)], 1) for m in NAMES}

    scored = scoring_pass(heads, data, filt, batch_size=5, progress=False,
                          collate_fn=project_collate, num_workers=2)  # fmt: skip
    assert scored == 16 and seen == [["audio", "label", "video"]] * 4
    assert filt.stats()["unscored"] == 0


def test_recommended_with_a_model_that_reads_every_key_says_what_to_do() -> None:
    train = _toy(16)
    parts = build(RECOMMENDED, train, modalities=NAMES, batch_size=4, epochs=6,
                  labels=[s["label"] for s in train])  # fmt: skip
    loader = parts.loader()
    parts.sampler.set_epoch(parts.warmup_epochs)  # the first remix epoch
    sample, _, modality = next(b for b in loader if int(b[2][0]) >= 0)
    other = NAMES[1 - int(modality[0])]
    with pytest.raises(KeyError, match=rf"'{other}' is not in this batch. With mask='drop'"):
        sample[other]  # what model(s["audio"], s["video"]) meets
    assert other not in sample and isinstance(sample, dict)


def test_scoring_pass_over_the_raw_dataset_or_with_fused_and_heads_is_named() -> None:
    train = _toy(8)
    filt = HardSampleFilter(len(train), NAMES)
    model = QuickStartNet()
    with pytest.raises(TypeError, match="not the raw dataset, but got data=list of 8 items"):
        scoring_pass(lambda s: model(s)[1], train, filt, progress=False)  # type: ignore[arg-type]
    data = ModalityDecoupler(train, filt)
    with pytest.raises(TypeError, match=r"looks like \(fused, heads\).*model\(s\)\[1\]"):
        scoring_pass(model, data, filt, progress=False)
    with pytest.raises(TypeError, match="no unimodal heads is scored with fused_only=True"):
        scoring_pass(lambda s: model(s)[0], data, filt, progress=False)
    assert filt.stats()["unscored"] == len(train), "nothing was written"


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        ([0, 1, -1, 1], ValueError, r"labels should hold class ids >= 0, but got labels\[2\]=-1"),
        (["cat", "dog"] * 2, TypeError, r"labels\[0\]='cat' \(str, of 4 labels\): map class"),
        (torch.tensor([0.0, 1.0, 0.0, 1.0]), TypeError, "integer class ids, but got dtype"),
        ([0, 1, 1], ValueError, r"one label per sample \(4\), but got 3 labels"),
    ],
)
def test_bad_labels_fit_in_a_line(labels: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        HardSampleFilter(4, NAMES, labels=labels)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_string_labels_of_a_large_data_set_stay_short() -> None:
    labels = [f"class-{i % 7}" for i in range(20_000)]
    with pytest.raises(TypeError) as caught:
        build(RECOMMENDED, _toy(20_000 // 100) * 100, modalities=NAMES, batch_size=8,
              epochs=6, labels=labels)  # fmt: skip
    assert len(str(caught.value)) < 250 and "labels[0]='class-0'" in str(caught.value)
