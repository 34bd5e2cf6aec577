"""The classic CNN: blocks of conv → (BN) → nonlinearity, each ending in a 2× downsampling, then a linear head."""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.errors import ConfigError, check_choice
from cnnlab.models import Backbone, image_hw, make_activation

POOLS = ("max", "avg", "stride", "conv", "blur", "none")
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")


def block_channels(depth: int, width: int, growth: float) -> list[int]:
    """Output channels of each block: width, width·growth, width·growth², ..."""
    return [max(1, round(width * growth**i)) for i in range(depth)]


def max_depth(image_size: int) -> int:
    """How many 2× downsamplings fit before the feature map would drop below 1×1."""
    return int(math.log2(image_size))


class ConvNet(Backbone):
    """`depth` blocks that halve the spatial size and grow channels; global average pool; linear head.

    pool: max / avg → a 2×2 pooling layer after the block's convs; stride → the block's last conv has
    stride 2; conv → one more 3×3 conv of stride 2 with its BN and nonlinearity, a learned downsampling (All-CNN,
    Springenberg et al. 2014); blur → 2×2 max pooling at stride 1, then a fixed binomial low-pass filter of
    `blur_size` taps at stride 2 (MaxBlurPool, Zhang 2019); none → no downsampling (the receptive field then grows
    only through kernel and dilation).
    """

    def __init__(
        self,
        depth: int = 4,
        width: int = 32,
        growth: float = 2.0,
        convs_per_block: int = 1,
        kernel_size: int = 3,
        dilation: int = 1,
        pool: str = "max",
        activation: str = "relu",
        batchnorm: bool = True,
        dropout: float = 0.0,
        padding_mode: str = "zeros",
        blur_size: int = 3,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int | tuple[int, int],
    ) -> None:
        check_choice("model.pool", pool, POOLS)
        height, width_px = image_hw(image_size)
        make_activation(activation)  # validates the name before any layer is built
        _check_positive(
            depth=depth, width=width, convs_per_block=convs_per_block, kernel_size=kernel_size, dilation=dilation
        )
        if kernel_size % 2 == 0:
            raise ConfigError(
                f"model.kernel_size={kernel_size} is even; 'same' padding needs an odd kernel. "
                f"Fix: model.kernel_size=3 (or 5, 7)."
            )
        check_choice("model.padding_mode", padding_mode, PADDING_MODES)
        check_choice("model.blur_size", blur_size, BLUR_SIZES)
        if not isinstance(growth, (int, float)) or isinstance(growth, bool) or growth <= 0:
            raise ConfigError(
                f"model.growth={growth!r} must be a number > 0 (the channel multiplier per block). "
                f"Fix: e.g. model.growth=2.0 (or 1.0 for constant width)."
            )
        if not 0 <= dropout < 1:
            raise ConfigError(f"model.dropout={dropout} is outside [0, 1). Fix: e.g. model.dropout=0.1.")
        if pool != "none" and depth > max_depth(min(height, width_px)):
            deepest = max_depth(min(height, width_px))
            raise ConfigError(
                f"model.depth={depth} with model.pool={pool} halves the {height}×{width_px} input {depth} times, "
                f"below 1×1. The largest valid depth is {deepest}. Fix: model.depth<={deepest}, or model.pool=none."
            )
        blocks, channels = [], in_channels
        for out_channels in block_channels(depth, width, growth):
            blocks.append(
                self._block(
                    channels,
                    out_channels,
                    convs_per_block,
                    kernel_size,
                    dilation,
                    pool,
                    activation,
                    batchnorm,
                    padding_mode,
                    blur_size,
                )
            )
            channels = out_channels
        head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)
        )
        super().__init__(nn.Sequential(*blocks), head, num_classes)

    @staticmethod
    def _block(
        c_in: int,
        c_out: int,
        convs: int,
        k: int,
        dilation: int,
        pool: str,
        activation: str,
        batchnorm: bool,
        padding_mode: str,
        blur_size: int,
    ) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i in range(convs):
            stride = 2 if pool == "stride" and i == convs - 1 else 1
            layers.append(
                nn.Conv2d(
                    c_in if i == 0 else c_out,
                    c_out,
                    k,
                    stride=stride,
                    padding=dilation * (k - 1) // 2,
                    dilation=dilation,
                    bias=not batchnorm,
                    padding_mode=padding_mode,
                )
            )
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(make_activation(activation))
        if pool == "max":
            layers.append(nn.MaxPool2d(2))
        elif pool == "avg":
            layers.append(nn.AvgPool2d(2))
        elif pool == "conv":
            layers.append(
                nn.Conv2d(c_out, c_out, 3, stride=2, padding=1, bias=not batchnorm, padding_mode=padding_mode)
            )
            layers += [nn.BatchNorm2d(c_out)] if batchnorm else []
            layers.append(make_activation(activation))
        elif pool == "blur":
            layers += [nn.MaxPool2d(2, stride=1), BlurPool2d(c_out, blur_size)]
        return nn.Sequential(*layers)


BLUR_SIZES = (1, 3, 5, 7)  # odd: a centred filter with the same padding on both sides


class BlurPool2d(nn.Conv2d):
    """A fixed low-pass filter at stride 2, per channel: the outer product of binomial taps (1 2 1 for 3), summing
    to 1. Padding replicates the border ((size − 1)/2 pixels); Zhang pads by reflection, which needs a map wider
    than the padding, and the deepest blocks here see 1×1 maps. Its weights are frozen: it adds no parameters
    that train."""

    def __init__(self, channels: int, size: int = 3) -> None:
        super().__init__(
            channels,
            channels,
            size,
            stride=2,
            padding=(size - 1) // 2,
            groups=channels,
            bias=False,
            padding_mode="replicate",
        )
        taps = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=torch.float32)
        kernel = torch.outer(taps, taps) / taps.sum() ** 2
        with torch.no_grad():
            self.weight.copy_(kernel.expand(channels, 1, size, size))
        self.weight.requires_grad_(False)


EXAMPLES = {"depth": 3, "width": 32, "convs_per_block": 1, "kernel_size": 3, "dilation": 1}


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"model.{name}={value!r} must be a positive integer. Fix: e.g. model.{name}={EXAMPLES[name]}."
            )
