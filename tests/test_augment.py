"""Each augmentation op changes images exactly as specified, per sample, and never touches labels."""

import pytest
import torch

from cnnlab.augment import Augmentation
from cnnlab.augment.ops import (
    ColorJitter,
    Cutout,
    RandomCrop,
    RandomFlip,
    RandomRotate90,
    RandomVerticalFlip,
    TorchvisionPolicy,
)


def batch(n: int = 64) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 3, 32, 32)


def test_none_is_identity():
    x = batch()
    assert torch.equal(Augmentation([])(x), x)


def test_flip_mirrors_some_samples_and_keeps_the_rest():
    x = batch()
    y = RandomFlip()(x)
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(len(x))])
    assert (flipped | kept).all()
    assert 10 < flipped.sum() < 54  # drawn per sample, p=0.5


def test_vflip_flips_rows():
    x = batch()
    y = RandomVerticalFlip(p=1.0)(x)
    assert torch.equal(y, x.flip(-2))


def test_crop_is_a_window_of_the_zero_padded_image():
    x = batch(32)
    y = RandomCrop(padding=4)(x)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    offsets = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(y[i], padded[i, :, dy:dy + 32, dx:dx + 32])]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 5  # each sample gets its own translation


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_crop_takes_the_offsets_drawn_row_first_then_column(mode):
    # Resumed runs and the augmentation distribution depend on the draws: dy for the batch, then dx, each 0..2p.
    x = batch(16)
    torch.manual_seed(5)
    y = RandomCrop(padding=4, padding_mode=mode)(x)
    torch.manual_seed(5)
    dy, dx = torch.randint(0, 9, (16, 1)), torch.randint(0, 9, (16, 1))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode=mode)
    expected = torch.stack([padded[i, :, dy[i, 0]:dy[i, 0] + 32, dx[i, 0]:dx[i, 0] + 32] for i in range(16)])
    assert torch.equal(y, expected)


def test_cutout_blacks_out_one_square_per_sample():
    x = batch() + 0.01  # no exact zeros before cutout
    y = Cutout(size=8)(x)
    for i in range(len(x)):
        zero = (y[i] == 0).all(0)
        assert 0 < zero.sum() <= 64
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert zero.sum() == len(rows) * len(cols)  # a (possibly clipped) rectangle
        assert torch.equal(y[i][:, ~zero], x[i][:, ~zero])


def test_color_jitter_changes_colour_within_range():
    x = batch()
    y = ColorJitter()(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(y, x)


def test_rotate90_turns_stripes():
    x = torch.zeros(8, 3, 32, 32)
    x[:, :, 0::4, :] = 1.0  # horizontal stripes, symmetric under a half turn
    x[:, :, 3::4, :] = 1.0
    y = RandomRotate90()(x)
    turned = [i for i in range(8) if torch.equal(y[i], x[i].transpose(-1, -2))]
    assert all(torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].transpose(-1, -2)) for i in range(8))
    assert len(turned) > 0


def test_autoaugment_policy_runs_per_image():
    x = batch(16)
    y = TorchvisionPolicy("autoaugment")(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not TorchvisionPolicy("trivialaugment").batched


def test_pipeline_reports_op_names():
    assert Augmentation([RandomCrop(), RandomFlip()]).names == ["crop", "hflip"]
