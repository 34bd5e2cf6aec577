"""Translation equivariance, layer by layer: does shifting the input shift the features?"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ShiftError:
    """Relative error ‖f(shift_k x) − shift_{k/jump} f(x)‖ / ‖f(x)‖ after one layer."""

    layer: str
    kind: str
    jump: int
    shift: int
    feature_shift: float
    relative_error: float


def spatial_layers(features: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf modules of a feature extractor, in forward order (ConvNet's nested Sequentials)."""
    return [(name, m) for name, m in features.named_modules() if len(list(m.children())) == 0]


def _stride(module: nn.Module) -> int:
    stride = getattr(module, "stride", 1)
    stride = stride[0] if isinstance(stride, tuple) else stride
    return stride if isinstance(stride, int) else 1


@torch.no_grad()
def layer_shift_errors(features: nn.Module, images: torch.Tensor, shift: int) -> list[ShiftError]:
    """Shift `images` right by `shift` pixels (circularly) and compare every layer's output with the
    original output shifted by shift/jump. A non-integer shift/jump is rounded: those layers cannot
    be equivariant to this shift, and the error says by how much they are not."""
    features.eval()
    x, x_shifted = images, torch.roll(images, shifts=shift, dims=-1)
    jump, errors = 1, []
    for name, layer in spatial_layers(features):
        x, x_shifted = layer(x), layer(x_shifted)
        jump *= _stride(layer)
        feature_shift = shift / jump
        expected = torch.roll(x, shifts=round(feature_shift), dims=-1)
        error = (x_shifted - expected).norm() / x.norm().clamp_min(1e-12)
        errors.append(ShiftError(name, type(layer).__name__, jump, shift, feature_shift, float(error)))
    return errors


@torch.no_grad()
def prediction_change(net: nn.Module, images: torch.Tensor, shift: int) -> tuple[float, float]:
    """(fraction of predictions unchanged, mean total-variation distance of the class probabilities)."""
    net.eval()
    p = net(images).softmax(-1)
    q = net(torch.roll(images, shifts=shift, dims=-1)).softmax(-1)
    return float((p.argmax(-1) == q.argmax(-1)).float().mean()), float(0.5 * (p - q).abs().sum(-1).mean())
