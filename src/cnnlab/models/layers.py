"""Name → layer tables shared by the models, with clear errors for unknown names."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import check_choice

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "identity": nn.Identity}
POOLS = ("max", "avg", "stride", "none")


def make_activation(name: str) -> nn.Module:
    """Build an activation by name (relu, gelu, identity)."""
    check_choice("model.activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]()
