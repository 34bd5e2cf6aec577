"""Backbones (conf/model/): plain nn.Modules that keep one contract, plus the tools that describe them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import check_choice

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "identity": nn.Identity}


def make_activation(name: str) -> nn.Module:
    """Build an activation by name (relu, gelu, silu, identity)."""
    check_choice("model.activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]()


class Backbone(nn.Module):
    """What the lab tools and the model table rely on, and all they rely on.

    `features`: any module, B×C×H×W images → B×C'×h×w maps (it may branch: the receptive field is traced
    through its real graph; an MLP's features start with Flatten and see the whole image); `head`: features →
    B×classes logits. forward = head(features(x)). Training needs only forward; the image shape and class
    count come from the data (conf/model/*.yaml: `num_classes: ${data.num_classes}`).
    """

    def __init__(self, features: nn.Module, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.features, self.head, self.num_classes = features, head, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W normalised images → B×num_classes logits."""
        return self.head(self.features(x))


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """An image size from a config, as (height, width): an int is a square."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@torch.no_grad()
def count_macs(net: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on one C×H×W image, counted by hooks on every Conv2d and Linear
    (out pixels × out channels × in channels / groups × kernel area; in × out): pooling, BN and activations are
    not MACs. Functional convolutions in a custom forward are not seen."""
    total = 0

    def conv(module: nn.Conv2d, _inputs, out: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += out[0].numel() * module.in_channels // module.groups * kernel

    def linear(module: nn.Linear, inputs, _out) -> None:
        nonlocal total
        total += inputs[0][0].numel() * module.out_features  # one image's inputs (all positions) × outputs

    hooks = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = net.training
    net.eval()
    try:
        parameter = next(net.parameters(), None)
        net(torch.zeros(1, *input_shape, device=parameter.device if parameter is not None else None))
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    return total
