"""An airbench94-class network: frozen patch-whitening conv, three conv-pool-BN-GELU groups, scaled head.

Our implementation of the published ideas (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds", 2024):
each choice below carries the reason the paper gives for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import check_choice
from cnnlab.models import Backbone, make_activation


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


def conv_group(c_in: int, c_out: int, bn_momentum: float, activation: str = "gelu") -> nn.Sequential:
    """conv → 2×2 max pool → BN → act → conv → BN → act (pooling before BN halves the BN cost)."""
    return nn.Sequential(
        DiracConv(c_in, c_out),
        nn.MaxPool2d(2),
        FrozenScaleBatchNorm(c_out, bn_momentum),
        make_activation(activation),
        DiracConv(c_out, c_out),
        FrozenScaleBatchNorm(c_out, bn_momentum),
        make_activation(activation),
    )


class Scale(nn.Module):
    """Multiply by a constant: FastNet's logits start small, like a softmax temperature."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class FastNet(Backbone):
    """whiten(2×2, 24 ch) → GELU → groups of `widths` → 3×3 max pool → linear (no bias) × scale.

    `activation` is the groups' nonlinearity (gelu as airbench; silu as the hiverge record); the one after the
    whitening layer stays GELU in both.

    The whitening conv (features.0) is frozen; `experiment=fast94` sets it from data with the
    WhitenFromData callback.
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 256, 256),
        whiten_kernel: int = 2,
        bn_momentum: float = 0.6,
        scale: float = 1 / 9,
        activation: str = "gelu",
        *,
        num_classes: int,
        in_channels: int,
        image_size: int | tuple[int, int],
    ) -> None:
        check_choice("model.activation", activation, ("gelu", "silu"))  # the smooth ones its recipes are tuned for
        whiten_width = (
            2 * in_channels * whiten_kernel**2
        )  # each whitening filter and its negative: GELU keeps both signs
        whiten = nn.Conv2d(in_channels, whiten_width, whiten_kernel, padding=0, bias=True)
        whiten.weight.requires_grad_(False)
        layers: list[nn.Module] = [whiten, nn.GELU()]
        channels = whiten_width
        for width in widths:
            layers.append(conv_group(channels, width, bn_momentum, activation))
            channels = width
        # A global max: at 32 px the last map is 3×3, where this is airbench's MaxPool2d(3); other sizes work too.
        head = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes, bias=False), Scale(scale)
        )
        super().__init__(nn.Sequential(*layers), head, num_classes)
