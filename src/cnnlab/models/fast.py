"""An airbench94-class network: frozen patch-whitening conv, three conv-pool-BN-GELU groups, scaled head.

Our implementation of the published ideas (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds", 2024):
each choice below carries the reason the paper gives for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm with its scale fixed at 1 (only the bias learns); a tiny eps and fast-moving statistics."""

    def __init__(self, channels: int, momentum: float = 0.6, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=1 - momentum)  # torch's momentum is 1 − the usual one
        self.weight.requires_grad_(False)


class DiracConv(nn.Conv2d):
    """3×3 'same' conv without bias whose first in_channels filters start as the identity:
    an implicit residual connection at initialisation, which trains faster without skip layers."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[: min(c_in, c_out)])


def conv_group(c_in: int, c_out: int, bn_momentum: float) -> nn.Sequential:
    """conv → 2×2 max pool → BN → GELU → conv → BN → GELU (pooling before BN halves the BN cost)."""
    return nn.Sequential(DiracConv(c_in, c_out), nn.MaxPool2d(2), FrozenScaleBatchNorm(c_out, bn_momentum), nn.GELU(),
                         DiracConv(c_out, c_out), FrozenScaleBatchNorm(c_out, bn_momentum), nn.GELU())


class FastNet(nn.Module):
    """whiten(2×2, 24 ch) → GELU → groups of `widths` → 3×3 max pool → linear (no bias) × scale."""

    def __init__(self, widths: Sequence[int] = (64, 256, 256), whiten_kernel: int = 2, bn_momentum: float = 0.6,
                 scale: float = 1 / 9, whiten_bias_epochs: int = 3, tta_level: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        whiten_width = 2 * 3 * whiten_kernel**2  # each whitening filter and its negative: GELU keeps both signs
        whiten = nn.Conv2d(3, whiten_width, whiten_kernel, padding=0, bias=True)
        whiten.weight.requires_grad_(False)  # set from data by init_from_data, then frozen
        layers: list[nn.Module] = [whiten, nn.GELU()]
        channels = whiten_width
        for width in widths:
            layers.append(conv_group(channels, width, bn_momentum))
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.MaxPool2d(3), nn.Flatten(), nn.Linear(channels, num_classes, bias=False))
        self.scale = scale  # keeps initial logits small, like a softmax temperature
        self.whiten_bias_epochs = whiten_bias_epochs
        self.tta_level = tta_level

    @property
    def whiten(self) -> nn.Conv2d:
        """The patch-whitening first layer (registered once, as features.0)."""
        return self.features[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×32×32 normalised images → B×classes logits."""
        return self.head(self.features(x)) * self.scale

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters to the eigenvectors of the 2×2 patch covariance of `images`, scaled by
        1/sqrt(eigenvalue): the first layer then outputs decorrelated, unit-variance patch features."""
        k = self.whiten.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, 3 * k * k)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, 3, k, k).flip(0)
        self.whiten.weight.copy_(torch.cat((filters, -filters)).to(self.whiten.weight))

    def on_epoch_start(self, epoch: int) -> None:
        """Train the whitening bias only for the first epochs, then freeze it."""
        self.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)
