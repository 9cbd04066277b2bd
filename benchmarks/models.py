"""The models of the benchmarks: one encoder and one head per modality, late fusion.

:class:`LateFusionNet` holds the heads and the fusion for any encoders, so every
model (these two, and :mod:`benchmarks.training`'s) has what
:func:`benchmarks.methods.train_step` needs: ``encoders`` and ``heads``
(``ModuleDict`` by modality), ``fuse`` and ``feature_dim``.

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

__all__ = ["HaptNet", "LateFusionNet", "MfeatNet", "make_encoder"]


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


class LateFusionNet(nn.Module):
    """Given one encoder per modality (``[B, ...] -> [B, feature_dim]``): a linear head
    per modality and a fused linear head on the features concatenated in modality order.

    Args:
        encoders: modality name -> encoder, in the fused head's order.
        feature_dim: features per modality.
        num_classes: output classes.
    """

    def __init__(
        self, encoders: Mapping[str, nn.Module], feature_dim: int, num_classes: int
    ) -> None:
        super().__init__()
        self.modalities = tuple(encoders)
        self.feature_dim = feature_dim
        self.encoders = nn.ModuleDict(dict(encoders))
        self.heads = nn.ModuleDict(
            {m: nn.Linear(feature_dim, num_classes) for m in self.modalities}
        )
        self.fused = nn.Linear(feature_dim * len(self.modalities), num_classes)

    def features(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encode every modality, in modality order."""
        return {m: self.encoders[m](inputs[m]) for m in self.modalities}

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused logits from ``{modality: [B, feature_dim]}`` features (all modalities needed)."""
        logits: torch.Tensor = self.fused(torch.cat([features[m] for m in self.modalities], dim=1))
        return logits

    def forward(
        self, inputs: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Fused logits and each unimodal head's logits."""
        feats = self.features(inputs)
        return self.fuse(feats), {m: self.heads[m](f) for m, f in feats.items()}


class HaptNet(LateFusionNet):
    """Per-modality 1-D CNN encoders (:func:`make_encoder`) and the linear heads.

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
        encoders = {m: make_encoder(in_channels, width) for m in modalities}
        super().__init__(encoders, 2 * width, num_classes)

    def features(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encode every modality present in ``inputs``, in their order."""
        return {m: self.encoders[m](x) for m, x in inputs.items()}


class MfeatNet(LateFusionNet):
    """One MLP encoder and linear head per view; a fused linear head on all features.

    Args:
        dims: view name -> input features, in the fused head's order.
        num_classes: output classes.
        width: features per view.
    """

    def __init__(self, dims: Mapping[str, int], num_classes: int, *, width: int = 32) -> None:
        def encoder(d: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(d, 2 * width), nn.BatchNorm1d(2 * width), nn.ReLU(),
                nn.Linear(2 * width, width), nn.BatchNorm1d(width), nn.ReLU(),
            )  # fmt: skip

        super().__init__({m: encoder(d) for m, d in dims.items()}, width, num_classes)
