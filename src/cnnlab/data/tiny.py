"""A tiny synthetic CIFAR-shaped dataset, generated in code, that a small CNN learns in seconds."""

from __future__ import annotations

import math

import torch

from cnnlab.data.datamodule import Arrays, ImageDataModule
from cnnlab.errors import ConfigError

# Five colours × two stripe orientations = ten classes. Class k is colour k // 2 with horizontal
# stripes when k is even and vertical stripes when k is odd, so a left-right flip keeps every label
# while a 90° rotation turns an even class into an odd one (the dataset's label-unsafe transform).
PALETTE = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.3, 0.9], [0.9, 0.85, 0.2], [0.8, 0.2, 0.8]])


def make_tiny_images(count: int, seed: int, size: int = 32, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (uint8 count×3×size×size, int64 labels): a striped coloured box at a random place on noise.
    Generated `chunk` images at a time, so float temporaries stay small however many images are asked for."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randperm(count, generator=gen) % 10
    images = torch.empty(count, 3, size, size, dtype=torch.uint8)
    for start in range(0, count, chunk):
        part = labels[start : start + chunk]
        images[start : start + len(part)] = _draw(part, size, gen)
    return images, labels


def _draw(labels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    count = len(labels)
    colour = PALETTE[labels // 2].view(count, 3, 1, 1)
    horizontal = (labels % 2 == 0).view(count, 1, 1, 1)
    ys = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1)
    xs = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
    cycles = 2 + 3 * torch.rand(count, 1, 1, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(count, 1, 1, 1, generator=gen)
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * cycles * torch.where(horizontal, ys, xs) / size + phase)
    box = torch.randint(14 * size // 32, 26 * size // 32 + 1, (count, 1, 1, 1), generator=gen)  # 14..26 at 32 px
    top = (torch.rand(count, 1, 1, 1, generator=gen) * (size - box + 1)).floor()
    left = (torch.rand(count, 1, 1, 1, generator=gen) * (size - box + 1)).floor()
    inside = (ys >= top) & (ys < top + box) & (xs >= left) & (xs < left + box)
    background = 0.45 + 0.1 * torch.rand(count, 3, 1, 1, generator=gen)
    images = torch.where(inside, colour * (0.35 + 0.65 * stripes), background)
    images = images + 0.08 * torch.randn(count, 3, size, size, generator=gen)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


class TinyDataModule(ImageDataModule):
    """Synthetic stand-in for CIFAR-10 used by tests and demos; same module code path."""

    name = "tiny"
    num_classes, in_channels, image_size = 10, 3, (32, 32)
    fixed = ("num_classes", "in_channels")  # any image size: the pictures are drawn at data.image_size
    mean = (0.46, 0.42, 0.43)  # measured on 1,000 generated images
    std = (0.20, 0.19, 0.20)
    class_names = tuple(
        f"{colour}-{stripes}"
        for colour in ("red", "green", "blue", "yellow", "magenta")
        for stripes in ("horizontal", "vertical")
    )

    def __init__(self, train_count: int = 1200, test_count: int = 300, data_seed: int = 1234, **kwargs) -> None:
        super().__init__(**kwargs)
        self.train_count, self.test_count, self.data_seed = train_count, test_count, data_seed
        height, width = self.image_size
        if height != width or height < 8:
            raise ConfigError(
                f"data.image_size=[{height},{width}]: the tiny pictures are square and at least 8 px. "
                f"Fix: e.g. data.image_size=[{max(8, height)},{max(8, height)}]."
            )

    def load_arrays(self) -> Arrays:
        height = self.image_size[0]
        train_x, train_y = make_tiny_images(self.train_count, self.data_seed, size=height)
        test_x, test_y = make_tiny_images(self.test_count, self.data_seed + 1, size=height)
        return train_x, train_y, test_x, test_y
