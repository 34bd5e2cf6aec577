"""A CIFAR-style ResNet (He et al. 2016): a 3×3 stem, stages of residual blocks that halve the map and double the
channels, global average pooling and a linear head. Basic blocks (post-activation) or pre-activation blocks
(He et al., "Identity Mappings in Deep Residual Networks", 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ConfigError, check_choice
from cnnlab.models import Backbone, image_hw, make_activation

BLOCKS = ("basic", "preact")


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """3×3 'same' conv without bias (a BN follows or precedes it)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity when the shape is kept; else a 1×1 projection with the block's stride, then BN."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """x → conv-BN-act-conv-BN, plus the shortcut, then act."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1 = (
            conv3x3(c_in, c_out, stride),
            nn.BatchNorm2d(c_out),
            make_activation(activation),
        )
        self.conv2, self.bn2 = conv3x3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.shortcut, self.act2 = shortcut(c_in, c_out, stride), make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # B×c_out×H/s×W/s
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """x → BN-act-conv-BN-act-conv, plus the shortcut (taken from the raw input when it is the identity)."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str) -> None:
        super().__init__()
        self.bn1, self.act1, self.conv1 = (
            nn.BatchNorm2d(c_in),
            make_activation(activation),
            conv3x3(c_in, c_out, stride),
        )
        self.bn2, self.act2, self.conv2 = nn.BatchNorm2d(c_out), make_activation(activation), conv3x3(c_out, c_out)
        self.shortcut = shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        skip = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        out = self.conv2(self.act2(self.bn2(self.conv1(out))))
        return out + skip


class ResNet(Backbone):
    """stem (3×3 conv, BN, act) → stages of `blocks_per_stage[i]` blocks with width·2^i channels, each stage after
    the first opening with a stride-2 block → (pre-act: BN, act) → global average pool → linear."""

    def __init__(
        self,
        block: str = "basic",
        width: int = 16,
        blocks_per_stage: Sequence[int] = (2, 2, 2),
        activation: str = "relu",
        *,
        num_classes: int,
        in_channels: int,
        image_size: int | tuple[int, int],
    ) -> None:
        check_choice("model.block", block, BLOCKS)
        make_activation(activation)
        stages = [int(b) for b in blocks_per_stage]
        if (
            not stages
            or any(b < 1 for b in stages)
            or isinstance(width, bool)
            or not isinstance(width, int)
            or width < 1
        ):
            raise ConfigError(
                f"model.width={width!r}, model.blocks_per_stage={list(blocks_per_stage)}: need a positive width and "
                f"at least one stage of >= 1 block. Fix: e.g. model.width=16 model.blocks_per_stage=[2,2,2]."
            )
        smallest = min(image_hw(image_size))
        if 2 ** (len(stages) - 1) > smallest:
            raise ConfigError(
                f"model.blocks_per_stage={stages} has {len(stages)} stages, which halve the {smallest}-px input "
                f"{len(stages) - 1} times, below 1×1. Fix: at most {smallest.bit_length()} stages."
            )
        preact = block == "preact"
        layers: list[nn.Module] = [conv3x3(in_channels, width)]
        if not preact:  # a pre-activation net normalises inside its first block instead
            layers += [nn.BatchNorm2d(width), make_activation(activation)]
        stem = nn.Sequential(*layers)
        unit = PreActBlock if preact else BasicBlock
        channels, named = width, [("stem", stem)]
        for i, count in enumerate(stages):
            out = width * 2**i
            blocks = [
                unit(channels if j == 0 else out, out, 2 if i > 0 and j == 0 else 1, activation) for j in range(count)
            ]
            named.append((f"stage{i + 1}", nn.Sequential(*blocks)))
            channels = out
        if preact:
            named.append(("final", nn.Sequential(nn.BatchNorm2d(channels), make_activation(activation))))
        features = nn.Sequential()
        for name, module in named:
            features.add_module(name, module)
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        super().__init__(features, head, num_classes)
