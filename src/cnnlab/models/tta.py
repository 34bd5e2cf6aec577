"""Test-time augmentation: average the logits of mirrored and one-pixel-translated views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def predict(net: nn.Module, images: torch.Tensor, level: int) -> torch.Tensor:
    """level 0: plain; 1: mean of image and mirror; 2: level 1, averaged half-and-half with level 1 on
    the image translated one pixel up-left and down-right (reflect padding): six views in all."""
    def mirror(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * net(x) + 0.5 * net(x.flip(-1))
    if level == 0:
        return net(images)
    if level == 1:
        return mirror(images)
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    translated = 0.5 * mirror(padded[..., :h, :w]) + 0.5 * mirror(padded[..., 2:, 2:])
    return 0.5 * mirror(images) + 0.5 * translated
