"""scikit-learn's handwritten digits (`load_digits`, shipped inside the package: no download): 1,797 real 8×8
grayscale images of the digits 0..9, with ink values 0..16 scaled to uint8 0..255."""

from __future__ import annotations

import torch

from cnnlab.data.datamodule import Arrays, ImageDataModule
from cnnlab.errors import ConfigError

IMAGES = 1797


def digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits: uint8 N×1×8×8 (ink 0..16 → round(v·255/16)), int64 labels 0..9, in scikit-learn's order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float64).mul(255 / 16).round().to(torch.uint8)
    return images[:, None].contiguous(), torch.as_tensor(digits.target, dtype=torch.int64)


class DigitsDataModule(ImageDataModule):
    """A seeded test split of `test_count` images (default 397), the other 1,400 form the training pool from which
    ImageDataModule draws the validation split (data.val_size, default 200: 1,200 train / 200 val / 397 test)."""

    name = "digits"
    num_classes, in_channels, image_size = 10, 1, (8, 8)
    mean, std = (0.3053,), (0.3759,)  # measured on all 1,797 images after scaling to 0..255
    class_names = tuple(str(d) for d in range(10))

    def __init__(self, test_count: int = 397, data_seed: int = 0, val_size: int | float = 200, **kwargs) -> None:
        super().__init__(val_size=val_size, **kwargs)
        if not (isinstance(test_count, int) and 0 < test_count < IMAGES):
            raise ConfigError(
                f"data.test_count={test_count!r} must be 1..{IMAGES - 1}: the digits are {IMAGES} images in all. "
                f"Fix: e.g. data.test_count=397."
            )
        self.test_count, self.data_seed = test_count, data_seed

    def load_arrays(self) -> Arrays:
        images, labels = digit_images()
        order = torch.randperm(IMAGES, generator=torch.Generator().manual_seed(self.data_seed))
        test, train = order[: self.test_count], order[self.test_count :]
        return images[train], labels[train], images[test], labels[test]
