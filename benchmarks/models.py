"""The models of the HAPT and mfeat jobs: one encoder and one head per modality, late fusion.

Both have what :func:`benchmarks.methods.train_step` needs: ``encoders`` and
``heads`` (``ModuleDict`` by modality), ``fuse`` and ``feature_dim``.

:class:`HaptNet` (HAPT): one small 1-D CNN per modality.

Each modality (accelerometer, gyroscope: 3 channels x 128 steps) has its own
encoder, three strided ``Conv1d -> BatchNorm1d -> ReLU`` blocks and global
average pooling to a ``2 * width`` feature vector. The fused head is one linear
layer on the concatenated features; each modality also has its own linear head
on its own features (the unimodal heads the paper scores and trains).

Strided convolutions instead of max pooling keep a training step at about 9 ms
for a batch of 64 on one CPU thread (about 3.5x faster than a stride-1 + pool
design of the same width, measured), so the four methods fit the benchmark's
five-minute budget.

:class:`MfeatNet` (mfeat): per view an MLP encoder (``Linear -> BatchNorm1d ->
ReLU``, twice) and a linear head, and a fused linear head on the concatenated
features.

Example:
    >>> import torch
    >>> net = HaptNet(("gyro", "acc"), num_classes=6, width=8)
    >>> feats = net.features({"gyro": torch.zeros(2, 3, 128), "acc": torch.zeros(2, 3, 128)})
    >>> net.fuse(feats).shape, net.heads["acc"](feats["acc"]).shape
    (torch.Size([2, 6]), torch.Size([2, 6]))
    >>> net = MfeatNet({"mor": 6, "fac": 216}, num_classes=10, width=8)
    >>> fused, heads = net({"mor": torch.zeros(4, 6), "fac": torch.zeros(4, 216)})
    >>> fused.shape, heads["mor"].shape
    (torch.Size([4, 10]), torch.Size([4, 10]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["HaptNet", "MfeatNet", "make_encoder"]


def make_encoder(in_channels: int = 3, width: int = 32) -> nn.Sequential:
    """A 1-D CNN: ``[B, in_channels, T] -> [B, 2 * width]`` features."""
    return nn.Sequential(
        nn.Conv1d(in_channels, width, kernel_size=8, stride=4, padding=2),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Conv1d(width, width, kernel_size=5, stride=2, padding=2),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Conv1d(width, 2 * width, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm1d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
    )


class HaptNet(nn.Module):
    """Per-modality encoders, a fused linear head and one linear head per modality.

    Args:
        modalities: modality names; the fused head sees their features
            concatenated in this order.
        num_classes: output classes.
        width: channels of the first convolution (features have ``2 * width``).
        in_channels: input channels per modality.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        num_classes: int,
        *,
        width: int = 32,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.feature_dim = 2 * width
        self.encoders = nn.ModuleDict({m: make_encoder(in_channels, width) for m in modalities})
        self.heads = nn.ModuleDict(
            {m: nn.Linear(self.feature_dim, num_classes) for m in modalities}
        )
        self.fused = nn.Linear(self.feature_dim * len(self.modalities), num_classes)

    def features(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encode every modality present in ``inputs``."""
        return {m: self.encoders[m](x) for m, x in inputs.items()}

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused logits from ``{modality: [B, D]}`` features (all modalities needed)."""
        logits: torch.Tensor = self.fused(torch.cat([features[m] for m in self.modalities], dim=1))
        return logits

    def forward(
        self, inputs: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Fused logits and each unimodal head's logits, from all modalities."""
        feats = self.features(inputs)
        return self.fuse(feats), {m: self.heads[m](f) for m, f in feats.items()}


class MfeatNet(nn.Module):
    """One MLP encoder and linear head per view; a fused linear head on all features.

    Args:
        dims: view name -> input features, in the fused head's order.
        num_classes: output classes.
        width: features per view.
    """

    def __init__(self, dims: Mapping[str, int], num_classes: int, *, width: int = 32) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.feature_dim = width

        def encoder(d: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(d, 2 * width), nn.BatchNorm1d(2 * width), nn.ReLU(),
                nn.Linear(2 * width, width), nn.BatchNorm1d(width), nn.ReLU(),
            )  # fmt: skip

        self.encoders = nn.ModuleDict({m: encoder(d) for m, d in dims.items()})
        self.heads = nn.ModuleDict({m: nn.Linear(width, num_classes) for m in dims})
        self.fused = nn.Linear(width * len(self.modalities), num_classes)

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused logits from ``{view: [B, width]}`` features (all views needed)."""
        out: torch.Tensor = self.fused(torch.cat([features[m] for m in self.modalities], dim=1))
        return out

    def forward(
        self, inputs: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Fused logits and each view's head logits, from all views."""
        feats = {m: self.encoders[m](inputs[m]) for m in self.modalities}
        return self.fuse(feats), {m: self.heads[m](feats[m]) for m in self.modalities}
