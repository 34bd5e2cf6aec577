"""cnnlab.testing: the contract checks users point at their own backbone, datamodule and op pass the built-in
parts and fail, naming the problem, on parts that break the contract."""

import random

import pytest
import torch
from torch import nn

from cnnlab.augment.ops import ColorJitter, Cutout, RandomCrop, RandomFlip
from cnnlab.data.tiny import TinyDataModule
from cnnlab.models import Backbone
from cnnlab.models.cnn import ConvNet
from cnnlab.models.fast import FastNet
from cnnlab.models.mlp import MLP
from cnnlab.models.resnet import ResNet
from cnnlab.testing import check_backbone, check_datamodule, check_op

GREY_28 = {"num_classes": 5, "in_channels": 1, "image_size": 28}


@pytest.mark.parametrize(
    "net, field",
    [
        # 28 px, depth 2: conv 3 → pool 4 (jump 2) → conv 8 → pool 10
        (ConvNet(depth=2, width=4, **GREY_28), 10),
        # stem 3, stage 1 +4 → 7, stage 2 stride-2 +2 → 9, +4 → 13
        (ResNet(width=4, blocks_per_stage=[1, 1], **GREY_28), 13),
        (MLP(hidden=[8], **GREY_28), None),
    ],
)
def test_built_in_backbones_keep_the_contract_on_grey_28_px_five_class_data(net, field):
    assert check_backbone(net, (1, 28, 28), num_classes=5) == field


def test_fastnet_keeps_the_contract():
    # whitening 2×2 (2), then per group conv +2·j, pool +1·j (j doubles), conv +2·2j: 51 px at 32 (cnnlab-rf)
    assert (
        check_backbone(FastNet(widths=(4, 4, 4), num_classes=10, in_channels=3, image_size=32), (3, 32, 32), 10) == 51
    )


class WrongHead(Backbone):
    def __init__(self) -> None:
        super().__init__(nn.Sequential(nn.Conv2d(1, 2, 3)), nn.Sequential(nn.Flatten(), nn.LazyLinear(4)), 4)


class UnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.forgotten = nn.Linear(784, 5), nn.Linear(5, 5)

    def forward(self, x):
        return self.used(x.flatten(1))


def test_a_backbone_with_the_wrong_class_count_or_an_untrained_layer_is_named():
    with pytest.raises(AssertionError, match=r"gives \(4, 4\).*expected \(4, 5\)"):
        check_backbone(WrongHead(), (1, 28, 28), num_classes=5)
    with pytest.raises(AssertionError, match="no gradient reaches forgotten.weight"):
        check_backbone(UnusedLayer(), (1, 28, 28), num_classes=5)


def test_the_tiny_datamodule_keeps_the_contract_at_another_image_size():
    check_datamodule(TinyDataModule(image_size=[16, 16], train_count=200, test_count=50, val_size=50))


def test_a_datamodule_that_loads_other_than_it_declares_is_named():
    class Liar(TinyDataModule):
        def load_arrays(self):
            train_x, train_y, test_x, test_y = super().load_arrays()
            return train_x[:, :1], train_y, test_x[:, :1], test_y  # one channel, but three declared

    with pytest.raises(Exception, match="declares uint8 3×16×16"):
        check_datamodule(Liar(image_size=[16, 16], train_count=200, test_count=50, val_size=50))


@pytest.mark.parametrize("op", [RandomFlip(), RandomCrop(4), Cutout(8), ColorJitter()])
def test_built_in_ops_keep_the_contract(op):
    check_op(op, (3, 32, 32))


class PythonRandomDim:
    """Draws from Python's random module, not torch's: not reproducible from the run's seed."""

    name, batched = "pydim", True

    def __call__(self, x):
        return x * random.uniform(0.5, 1.0)

    def __repr__(self) -> str:
        return "pydim"


class Shrink:
    name, batched = "shrink", True

    def __call__(self, x):
        return x[..., 1:, 1:]

    def __repr__(self) -> str:
        return "shrink"


def test_an_op_that_is_not_seeded_or_changes_the_shape_is_named():
    with pytest.raises(AssertionError, match="does not draw from torch's seeded RNG"):
        check_op(PythonRandomDim(), (3, 32, 32))
    with pytest.raises(AssertionError, match=r"shrink turns a \(16, 3, 32, 32\)"):
        check_op(Shrink(), (3, 32, 32))


def test_color_jitter_keeps_the_contract_on_grey_images_and_only_scales_brightness_and_contrast_there():
    """On one channel luma is the pixel itself: saturation changes nothing, the batch keeps its shape (it used to
    come back B×0×H×W)."""
    check_op(ColorJitter(), (1, 28, 28))
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(0)
    saturation_only = ColorJitter(brightness=0, contrast=0, saturation=0.9)(x)
    assert torch.allclose(saturation_only, x, atol=1e-6)
