"""A fully connected baseline on flattened images: no parameter sharing, no notion of neighbourhood."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import Backbone, image_hw, make_activation


class MLP(Backbone):
    """features: Flatten → [Linear → activation → dropout] per hidden layer; head: Linear to classes."""

    def __init__(
        self,
        hidden: Sequence[int] = (512, 256),
        activation: str = "relu",
        dropout: float = 0.0,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int | tuple[int, int],
    ) -> None:
        make_activation(activation)
        if not 0 <= dropout < 1:
            raise ConfigError(f"model.dropout={dropout} is outside [0, 1). Fix: e.g. model.dropout=0.1.")
        if any(int(h) < 1 for h in hidden):
            raise ConfigError(
                f"model.hidden={list(hidden)} must hold positive layer widths. Fix: e.g. model.hidden=[512,256]."
            )
        layers: list[nn.Module] = [nn.Flatten()]
        height, width = image_hw(image_size)
        features = in_channels * height * width
        for width in hidden:
            layers += [nn.Linear(features, int(width)), make_activation(activation), nn.Dropout(dropout)]
            features = int(width)
        super().__init__(nn.Sequential(*layers), nn.Linear(features, num_classes), num_classes)
