"""Parameter sharing in numbers: a dense layer against a convolution, and whole models."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerCount:
    """Weights and biases of one layer, and how many output units it produces."""

    name: str
    weights: int
    biases: int
    outputs: int

    @property
    def total(self) -> int:
        return self.weights + self.biases


def dense_layer(height: int, width: int, channels: int, units: int) -> LayerCount:
    """A fully connected layer from an H×W×C image to `units` outputs: every input meets every unit."""
    return LayerCount(f"dense {height}×{width}×{channels} → {units:,}", height * width * channels * units, units, units)


def conv_layer(height: int, width: int, channels: int, out_channels: int, kernel: int) -> LayerCount:
    """A k×k 'same' convolution: the same k·k·C weights per output channel at every position."""
    return LayerCount(f"conv {kernel}×{kernel}, {channels} → {out_channels} channels on {height}×{width}",
                      kernel * kernel * channels * out_channels, out_channels, height * width * out_channels)


def dense_equivalent(conv: LayerCount, height: int, width: int, channels: int) -> LayerCount:
    """The dense layer that would produce as many outputs as `conv` from the same image."""
    return dense_layer(height, width, channels, conv.outputs)
