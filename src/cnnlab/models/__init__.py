"""Backbones (conf/model/): plain nn.Modules that keep one contract, plus the tools that describe them."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import check_choice

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "identity": nn.Identity}


def make_activation(name: str) -> nn.Module:
    """Build an activation by name (relu, gelu, identity)."""
    check_choice("model.activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]()


class Backbone(nn.Module):
    """What training, the lab tools and the model table rely on, and all they rely on.

    `features`: a Sequential of blocks, B×3×H×W images → B×C×h×w maps (the receptive field is measured
    on it; an MLP's features start with Flatten and see the whole image); `head`: features → B×classes
    logits; `num_classes`. forward = head(features(x)).
    """

    def __init__(self, features: nn.Sequential, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.features, self.head, self.num_classes = features, head, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W normalised images → B×num_classes logits."""
        return self.head(self.features(x))


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
