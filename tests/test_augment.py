"""Each augmentation op changes images exactly as specified, per sample, and never touches labels.

Every test seeds the global RNG (the ops draw from it), so none can pass or fail by chance.
"""

import pytest
import torch

from cnnlab.augment import Augmentation
from cnnlab.augment.ops import (
    AlternatingFlip,
    BrightnessContrast,
    ColorJitter,
    Cutout,
    RandomCrop,
    RandomFlip,
    RandomRotate90,
    RandomVerticalFlip,
    TorchvisionPolicy,
)
from cnnlab.errors import ConfigError


def batch(n: int = 64, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """n random images with values in [low, high), then the global RNG reseeded for the op under test."""
    x = low + (high - low) * torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    return x


def test_none_is_identity():
    x = batch()
    assert torch.equal(Augmentation([])(x), x)


def test_flip_mirrors_some_samples_and_keeps_the_rest():
    x = batch()
    y = RandomFlip()(x)
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(len(x))])
    assert (flipped | kept).all()
    assert 20 <= flipped.sum() <= 44  # Binomial(64, 0.5): mean 32, sd 4, ±3 sd


def test_flip_probability_is_respected():
    x = batch(400)
    flipped = sum(torch.equal(yi, xi.flip(-1)) for yi, xi in zip(RandomFlip(p=0.2)(x), x))
    assert 56 <= flipped <= 104  # Binomial(400, 0.2): mean 80, sd 8, ±3 sd


def test_vflip_flips_rows():
    x = batch()
    y = RandomVerticalFlip(p=1.0)(x)
    assert torch.equal(y, x.flip(-2))
    assert torch.equal(RandomVerticalFlip(p=0.0)(x), x)


def test_crop_is_a_window_of_the_zero_padded_image():
    x = batch(64)
    y = RandomCrop(padding=4)(x)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    offsets = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(y[i], padded[i, :, dy : dy + 32, dx : dx + 32])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 30  # 64 draws from 81 offsets: ~44 distinct expected, one shared offset would give 1
    # the full ±4 range on both axes (each extreme missed by 64 draws with probability (8/9)^64 ≈ 0.05%)
    assert {dy for dy, _ in offsets} == {dx for _, dx in offsets} == set(range(9))


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_crop_takes_the_offsets_drawn_row_first_then_column(mode):
    # Resumed runs and the augmentation distribution depend on the draws: dy for the batch, then dx, each 0..2p.
    x = batch(16)
    torch.manual_seed(5)
    y = RandomCrop(padding=4, padding_mode=mode)(x)
    torch.manual_seed(5)
    dy, dx = torch.randint(0, 9, (16, 1)), torch.randint(0, 9, (16, 1))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode=mode)
    expected = torch.stack([padded[i, :, dy[i, 0] : dy[i, 0] + 32, dx[i, 0] : dx[i, 0] + 32] for i in range(16)])
    assert torch.equal(y, expected)


def test_reflect_crop_pads_by_mirroring():
    x = batch(16)
    y = RandomCrop(padding=2, padding_mode="reflect")(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    assert all(
        any(torch.equal(y[i], padded[i, :, dy : dy + 32, dx : dx + 32]) for dy in range(5) for dx in range(5))
        for i in range(16)
    )


def test_cutout_blacks_out_one_size_by_size_square_clipped_only_at_the_border():
    x = batch() + 0.01  # no exact zeros before cutout
    y = Cutout(size=8)(x)
    full, corners = 0, set()
    for i in range(len(x)):
        zero = (y[i] == 0).all(0)
        assert ((y[i] == 0).any(0) == zero).all()  # all channels blacked out together
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert zero.sum() == len(rows) * len(cols) > 0  # one rectangle
        for idx in (rows, cols):  # 8 wide unless it touches an image border
            assert len(idx) == 8 or idx[0] == 0 or idx[-1] == 31
            assert len(idx) >= 4  # a centre inside the image keeps at least half the square: 8 // 2
        full += int(zero.sum() == 64)
        corners.add((int(rows[0]), int(cols[0])))
        assert torch.equal(y[i][:, ~zero], x[i][:, ~zero])
    assert full >= 32  # centres in 4..27 on both axes: (24/32)² = 56% of 64 samples ≈ 36 full squares
    assert len(corners) >= 40  # a centre drawn per sample: 64 draws from 32² places are nearly all distinct


def test_cutout_centres_are_drawn_uniformly_over_every_pixel_border_rows_included():
    # size 1: the hole is exactly the drawn centre. 4,000 draws over 4×4 pixels: 250 each, sd 15.
    y = Cutout(size=1)(torch.ones(4000, 1, 4, 4))
    assert torch.equal((y == 0).flatten(1).sum(1), torch.ones(4000, dtype=torch.long))
    centres = (y == 0).flatten(1).float().argmax(1)
    assert torch.bincount(centres, minlength=16).sub(250).abs().max() < 60


def test_color_jitter_with_zero_strength_is_identity():
    x = batch()
    assert torch.allclose(ColorJitter(0.0, 0.0, 0.0)(x), x, atol=1e-6)  # up to float rounding of m + (x − m)·1


def test_brightness_scales_each_image_by_its_own_factor_within_range():
    x = batch(64, 0.2, 0.6)  # 0.6 × 1.4 = 0.84: no clipping
    y = ColorJitter(brightness=0.4, contrast=0.0, saturation=0.0)(x)
    factors = (y / x).flatten(1)
    assert torch.allclose(factors, factors[:, :1].expand_as(factors), atol=1e-5)  # one factor per image
    f = factors[:, 0]
    assert f.min() >= 0.6 - 1e-6 and f.max() <= 1.4 + 1e-6
    assert f.min() < 0.7 and f.max() > 1.3 and len(f.unique()) == 64  # uniform on [0.6, 1.4], drawn per sample


def luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # ITU-R 601


def test_contrast_keeps_each_images_mean_luma_and_scales_deviations_from_it():
    x = batch(64, 0.4, 0.6)  # deviations ≤ 0.1 × 1.4: no clipping
    y = ColorJitter(brightness=0.0, contrast=0.4, saturation=0.0)(x)
    mean_x, mean_y = luma(x).mean((1, 2)), luma(y).mean((1, 2))
    assert torch.allclose(mean_x, mean_y, atol=1e-5)
    scale = ((y - mean_y.view(-1, 1, 1, 1)) / (x - mean_x.view(-1, 1, 1, 1))).flatten(1).median(1).values
    assert scale.min() >= 0.6 - 1e-4 and scale.max() <= 1.4 + 1e-4 and scale.std() > 0.1


def test_saturation_keeps_each_pixels_luma():
    x = batch(64, 0.4, 0.6)
    y = ColorJitter(brightness=0.0, contrast=0.0, saturation=0.4)(x)
    assert torch.allclose(luma(x), luma(y), atol=1e-5)
    assert not torch.allclose(x, y, atol=1e-3)


def test_saturation_factor_is_drawn_uniformly_from_one_minus_to_one_plus_its_strength():
    x = batch(2000, 0.2, 0.8)
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    y = ColorJitter(brightness=0, contrast=0, saturation=0.4)(x)
    factor = ((y - gray) / (x - gray))[:, :, 0, 0].median(1).values  # one factor per image, read off its pixels
    assert factor.min() >= 0.6 - 1e-4 and factor.max() <= 1.4 + 1e-4
    assert factor.min() < 0.62 and factor.max() > 1.38 and abs(factor.mean() - 1) < 0.02


def test_color_jitter_stays_in_the_unit_range():
    x = batch()
    y = ColorJitter()(x)
    assert y.min() >= 0 and y.max() <= 1 and (y == 1).any()  # bright images are clipped, not overflowing


def test_rotate90_turns_each_sample_by_one_of_four_quarter_turns_all_of_which_occur():
    x = batch(64)
    y = RandomRotate90()(x)
    turns = []
    for i in range(64):
        matches = [k for k in range(4) if torch.equal(y[i], torch.rot90(x[i], k, dims=(-2, -1)))]
        assert len(matches) == 1
        turns += matches
    counts = torch.bincount(torch.tensor(turns), minlength=4)
    assert counts.min() >= 6  # 64 draws of 4 equally likely turns: 16 each, sd 3.5, −3 sd ≈ 6
    # Equally likely: 4,000 draws, 1,000 each with sd 27; identity drawn 2 times in 5 would give 1,600.
    x = torch.arange(4.0).view(1, 1, 2, 2).expand(4000, 1, 2, 2)
    corner = RandomRotate90()(x)[:, 0, 0, 0].long()  # where the top-left value 0 went names the turn
    assert torch.bincount(corner, minlength=4).sub(1000).abs().max() < 110


def uint8_exact(n: int) -> torch.Tensor:
    """Images that survive the policy's round trip through uint8 unchanged, so 'changed' means an op ran."""
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(0)).float() / 255
    torch.manual_seed(1)
    return x


@pytest.mark.parametrize("policy", ["autoaugment", "trivialaugment"])
def test_torchvision_policies_change_most_images_each_differently(policy):
    x = uint8_exact(32)
    y = TorchvisionPolicy(policy)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.min() >= 0 and y.max() <= 1
    changed = [i for i in range(32) if not torch.equal(y[i], x[i])]
    # AutoAugment CIFAR-10: every sub-policy applies at least one op with p ≥ 0.2, most far more; an identity
    # policy changes none. TrivialAugment draws 'Identity' 1 time in 14 (+ zero magnitudes).
    assert len(changed) >= 16
    same = uint8_exact(1).expand(32, 3, 32, 32).contiguous()  # one image 32 times: per-image draws differ
    outputs = {tuple(img.flatten().tolist()) for img in TorchvisionPolicy(policy)(same)}
    assert len(outputs) >= 8  # one op drawn for the whole batch would give a single output
    assert not TorchvisionPolicy(policy).batched


def test_policies_work_on_bytes_and_return_bytes_scaled_back_to_the_unit_range():
    x = uint8_exact(64)
    for policy in ("autoaugment", "trivialaugment"):
        y = TorchvisionPolicy(policy)(x)
        assert (y * 255 - (y * 255).round()).abs().max() < 1e-4  # came back from uint8
        assert abs(y.mean() - x.mean()) < 0.1  # not read as 0..255 floats and clamped to near black
    with pytest.raises(ConfigError) as error:
        TorchvisionPolicy("randaugment")
    assert str(error.value) == (
        "augment policy='randaugment' is not a valid choice. Valid: autoaugment, trivialaugment. "
        "Fix: pass e.g. augment policy=autoaugment."
    )


def test_policy_round_trip_through_uint8_is_lossless():
    x = uint8_exact(8)
    policy = TorchvisionPolicy("autoaugment")
    policy._transform = lambda img: img  # an identity policy: only the float → uint8 → float conversion remains
    assert torch.equal(policy(x), x)
    between = batch(8)  # e.g. after colour jitter: snapped to the nearest of the 256 levels, at most half a step away
    assert (policy(between) - between).abs().max() <= 0.5 / 255 + 1e-7


def test_pipeline_applies_ops_in_order_and_reports_their_names():
    x = batch(8)
    crop_then_flip = Augmentation([RandomCrop(padding=4), RandomVerticalFlip(p=1.0)])
    torch.manual_seed(3)
    y = crop_then_flip(x)
    torch.manual_seed(3)
    assert torch.equal(y, RandomCrop(padding=4)(x).flip(-2))
    assert crop_then_flip.names == ["crop", "vflip"] and Augmentation([RandomCrop(), RandomFlip()]).names == [
        "crop",
        "flip",
    ]


def test_the_pipeline_prints_as_the_run_header_shows_it():
    # The run's log names the augmentation this way; private state (the flip's start table) stays out of it.
    pipeline = Augmentation([AlternatingFlip(seed=2), RandomCrop(padding=2, padding_mode="reflect"), Cutout(size=8)])
    expected = "Augmentation(flip(seed=2, epoch=0), crop(padding=2, padding_mode=reflect), cutout(size=8))"
    assert repr(pipeline) == expected
    assert repr(Augmentation([])) == "Augmentation(identity)"


def _asymmetric_images(n: int, seed: int = 0) -> torch.Tensor:
    """uint8-valued float images in [0, 1], none of them equal to its mirror image."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=gen).float() / 255


def _mirrored(out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    is_flipped = (out == images.flip(-1)).flatten(1).all(1)
    is_kept = (out == images).flatten(1).all(1)
    assert bool((is_flipped ^ is_kept).all()), "every image is either itself or its mirror image"
    return is_flipped


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_consecutive_epochs():
    images = _asymmetric_images(400)
    op = AlternatingFlip(seed=3)
    states = []
    for epoch in range(4):
        op.set_epoch(epoch)
        shuffled = torch.randperm(400, generator=torch.Generator().manual_seed(epoch))
        out = op(images[shuffled])  # the state follows the image, not its place in the batch
        flipped = torch.empty(400, dtype=torch.bool)
        flipped[shuffled] = _mirrored(out, images[shuffled])
        states.append(flipped)
    assert bool((states[0] ^ states[1]).all()) and bool((states[1] ^ states[2]).all())
    assert torch.equal(states[0], states[2]) and torch.equal(states[1], states[3])
    assert 160 <= int(states[0].sum()) <= 240  # a random start per image: about half begin mirrored


def test_alternating_flip_start_depends_on_the_seed():
    images = _asymmetric_images(400)
    starts = [_mirrored(AlternatingFlip(seed=s)(images), images) for s in (0, 1)]
    assert 120 <= int((starts[0] != starts[1]).sum()) <= 280  # independent coins agree about half the time


def test_alternating_flip_handles_black_and_white_images_and_any_image_size():
    # pixel sums 0 and numel·255 are the ends of the start table; each image size gets its own table
    op = AlternatingFlip(seed=0)
    for size in (8, 32, 8):
        extremes = torch.stack([torch.zeros(3, size, size), torch.ones(3, size, size)])
        assert torch.equal(op(extremes), extremes)  # a uniform image is its own mirror image
        images = _asymmetric_images(50)[:, :, :size, :size] if size == 8 else torch.rand(50, 3, 32, 32)
        _mirrored(op(images), images)


def test_alternating_flip_start_comes_from_its_seed_not_the_global_rng():
    images = _asymmetric_images(400)
    starts = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        starts.append(_mirrored(AlternatingFlip(seed=5)(images), images))
    assert torch.equal(starts[0], starts[1])


@pytest.mark.parametrize(
    "op",
    [RandomFlip(), AlternatingFlip(), RandomVerticalFlip(), RandomRotate90(), RandomCrop(),
     RandomCrop(padding_mode="reflect"), Cutout(), ColorJitter(), BrightnessContrast()],
    ids=["flip", "alternating_flip", "vflip", "rotate90", "crop", "crop_reflect", "cutout", "color_jitter",
         "brightness_contrast"],
)  # fmt: skip
def test_every_batched_op_draws_and_computes_on_the_batchs_own_device(op):
    # The meta device stands in for a GPU: a tensor drawn on the CPU by mistake cannot meet a meta batch.
    x = torch.empty(4, 3, 32, 32, device="meta")
    y = op(x)
    assert (y.device.type, y.shape) == ("meta", x.shape)
    # a CPU table indexed by a device index would fail on a GPU (meta lets it pass): check where it lives
    assert all(t.device.type == "meta" for t in getattr(op, "_start_bits", {}).values())


def test_ops_default_to_the_documented_settings():
    # The values docs/lab.md and conf/augment/*.yaml rely on when a config leaves an argument out.
    ops = (AlternatingFlip(), RandomFlip(), RandomVerticalFlip(), RandomCrop(), Cutout(), ColorJitter())
    assert TorchvisionPolicy().name == "autoaugment" and TorchvisionPolicy("trivialaugment").name == "trivialaugment"
    assert [repr(op) for op in ops] == [
        "flip(seed=0, epoch=0)",
        "flip(p=0.5)",
        "vflip(p=0.5)",
        "crop(padding=4, padding_mode=constant)",
        "cutout(size=16)",
        "color_jitter(brightness=0.4, contrast=0.4, saturation=0.4)",
    ]


def test_alternating_flip_after_a_pixel_changing_op_is_refused():
    with pytest.raises(ConfigError) as error:
        Augmentation([RandomCrop(padding=2), Cutout(), AlternatingFlip()])
    assert str(error.value) == (
        "augmentation op 2 (AlternatingFlip) must come first: it recognises each image by its pixels, which the "
        "ops before it (crop, cutout) change every epoch. "
        "Fix: list cnnlab.augment.ops.AlternatingFlip first in augment.ops."
    )
    with pytest.raises(ConfigError, match=r"^augmentation op 1 \(AlternatingFlip\) .* before it \(crop\) "):
        Augmentation([RandomCrop(padding=2), AlternatingFlip()])  # second is already too late (mutmut: `i > 1`)
    assert [op.name for op in Augmentation([AlternatingFlip(), RandomCrop(padding=2)]).ops][1] == "crop"  # first: ok


def test_the_datamodule_hook_alternates_flips_with_the_trainers_epoch():
    from types import SimpleNamespace

    from cnnlab.data.tiny import TinyDataModule

    dm = TinyDataModule(augment=Augmentation([AlternatingFlip(seed=0)]))
    images = (_asymmetric_images(64) * 255).round().to(torch.uint8)
    labels = torch.arange(64) % 10
    normalized = dm.normalize(images.float() / 255)
    seen = []
    for epoch in (0, 1):
        dm.trainer = SimpleNamespace(training=True, current_epoch=epoch)
        out, out_labels = dm.on_after_batch_transfer((images, labels), 0)
        assert torch.equal(out_labels, labels)
        seen.append(_mirrored(out, normalized))
    assert bool((seen[0] ^ seen[1]).all())


def test_brightness_contrast_is_one_shift_and_one_contrast_factor_per_image_within_its_ranges():
    torch.manual_seed(0)
    images = torch.rand(512, 3, 8, 8)
    out = BrightnessContrast(brightness=0.1, contrast=0.2, center=0.5)(images)
    # Per image, out = a·x + b with one (a, b) for every pixel and channel: fit them from two pixels, check all.
    flat_in, flat_out = images.flatten(1), out.flatten(1)
    a = (flat_out[:, 1] - flat_out[:, 0]) / (flat_in[:, 1] - flat_in[:, 0])
    b = flat_out[:, 0] - a * flat_in[:, 0]
    torch.testing.assert_close(flat_out, a[:, None] * flat_in + b[:, None], atol=1e-4, rtol=0)
    # a is the contrast factor; b = (shift − 0.5)·a + 0.5, so the shift is (b − 0.5)/a + 0.5
    shift = (b - 0.5) / a + 0.5
    assert 0.8 <= a.min() and a.max() <= 1.2 and a.max() - a.min() > 0.35  # the whole range is drawn
    assert -0.1 <= shift.min() and shift.max() <= 0.1 and shift.max() - shift.min() > 0.17
    torch.testing.assert_close(BrightnessContrast(brightness=0, contrast=0)(images), images, atol=1e-6, rtol=0)
