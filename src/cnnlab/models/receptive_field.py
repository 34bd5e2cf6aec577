"""Receptive fields: analytic per layer (size, jump, start) and empirical (input gradient of one unit)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerRF:
    """Receptive field after one spatial layer: `size` input pixels wide, output units `jump` pixels apart,
    the first unit centred on input pixel `start` (negative: it reaches into the padding)."""

    name: str
    kind: str
    kernel: int
    stride: int
    padding: int
    dilation: int
    size: int
    jump: int
    start: float
    out_size: int


def _geometry(module: nn.Module) -> tuple[int, int, int, int, int, bool] | None:
    """(kernel, stride, left padding, left + right padding, dilation, ceil_mode) of a spatial layer, or None if it
    does not move pixels."""

    def first(v):
        return v[0] if isinstance(v, tuple) else v

    if isinstance(module, nn.Conv2d):
        k, d, p = first(module.kernel_size), first(module.dilation), module.padding
        if p == "valid":
            p = 0
        if p == "same":  # stride 1 only (torch's rule); an odd total puts the extra pixel on the right
            return k, 1, d * (k - 1) // 2, d * (k - 1), d, False
        return k, first(module.stride), first(p), 2 * first(p), d, False
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        stride = module.stride if module.stride is not None else module.kernel_size
        k, p, d = first(module.kernel_size), first(module.padding), first(getattr(module, "dilation", 1))
        return k, first(stride), p, 2 * p, d, module.ceil_mode
    return None


def receptive_field(features: nn.Module, image_size: int = 32) -> list[LayerRF]:
    """Analytic receptive field after each conv/pool layer of `features`, in forward order.

    r_out = r_in + (k_eff − 1)·j_in,  j_out = j_in·s,  start_out = start_in + ((k_eff − 1)/2 − p)·j_in,
    with k_eff = d·(k − 1) + 1 (Araujo et al., Distill 2019).
    """
    size, jump, start, spatial = 1, 1, 0.0, image_size
    layers = []
    for name, module in features.named_modules():
        geometry = _geometry(module)
        if geometry is None:
            continue
        k, s, p, both_sides, d, ceil_mode = geometry
        k_eff = d * (k - 1) + 1
        start += ((k_eff - 1) / 2 - p) * jump
        size += (k_eff - 1) * jump
        jump *= s
        if ceil_mode:  # torch: round up, but the last window must start inside the input or its left padding
            out_size = -(-(spatial + both_sides - k_eff) // s) + 1
            spatial = out_size - 1 if (out_size - 1) * s >= spatial + p else out_size
        else:
            spatial = (spatial + both_sides - k_eff) // s + 1
        layers.append(LayerRF(name, type(module).__name__, k, s, p, d, size, jump, start, spatial))
    return layers


def sees_whole_image(features: nn.Module) -> bool:
    """True when the features flatten the image (an MLP): every unit then sees every pixel."""
    return any(isinstance(m, nn.Flatten) for m in features.modules())


def final_receptive_field(features: nn.Module, image_size: int = 32) -> int:
    """Receptive-field size of the last spatial layer (1 if there is none; the image if it is flattened)."""
    if sees_whole_image(features):
        return image_size
    layers = receptive_field(features, image_size)
    return layers[-1].size if layers else 1


def too_small_warning(features: nn.Module, image_size: int = 32) -> str | None:
    """A warning when the last feature map's units see less than the whole image, else None."""
    size = final_receptive_field(features, image_size)
    if size >= image_size:
        return None
    return (
        f"receptive field {size}×{size} is smaller than the {image_size}×{image_size} input: no unit before "
        f"global pooling sees a whole object (the lesson's 'receptive field too small for the task'). "
        f"Add depth (model.depth), pooling (model.pool) or dilation (model.dilation)."
    )


def input_gradient(features: nn.Module, image_size: int = 32, samples: int = 8, seed: int = 0) -> torch.Tensor:
    """|∂ centre unit / ∂ input| summed over channels and `samples` random inputs: an H×W map."""
    gen = torch.Generator().manual_seed(seed)
    device = next(features.parameters()).device
    x = torch.randn(samples, 3, image_size, image_size, generator=gen).to(device).requires_grad_()
    was_training = features.training
    features.eval()
    out = features(x)
    features.train(was_training)
    cy, cx = out.shape[-2] // 2, out.shape[-1] // 2
    out[:, :, cy, cx].sum().backward()
    return x.grad.abs().sum(dim=(0, 1)).cpu()


def empirical_receptive_field(grad_map: torch.Tensor, threshold: float = 0.0) -> tuple[int, int]:
    """Height and width of the bounding box where the input gradient is non-zero (above `threshold`·max)."""
    mask = grad_map > threshold * grad_map.max()
    rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
    if len(rows) == 0:
        return 0, 0
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
