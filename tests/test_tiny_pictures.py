"""The tiny data's pictures, measured from their pixels against data/tiny.py's spec.

The spec (module docstring and `_draw`): a square box of side 14..26 px at a uniformly random place that fits
in the 32×32 image, filled with the class colour times 0.35 + 0.65·stripes, where stripes = ½ + ½·sin(2π·c·y/32 + φ)
with c uniform in [2, 5] cycles per image and φ uniform in [0, 2π); a grey background of 0.45..0.55 per channel;
Gaussian noise of std 0.08; clamped to [0, 1] and stored as round(255·x). Nothing here replays the generator:
every number is read back from the images by geometry and least squares. (The box finder was checked once,
outside the suite, against the generator's own draws for these 1,300 images: every side and corner exact.)
"""

import math

import pytest
import torch

from cnnlab.data.tiny import make_tiny_images

PALETTE = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.3, 0.9], [0.9, 0.85, 0.2], [0.8, 0.2, 0.8]])
SIZE = 32


def colour_axis(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vector of each class colour with its grey part removed, and the colour's length along it."""
    chroma = PALETTE[labels // 2] - PALETTE[labels // 2].mean(1, keepdim=True)
    return torch.nn.functional.normalize(chroma, dim=1), chroma.norm(dim=1)


def best_squares(score: torch.Tensor, sides: range) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, left, side) of the square with the largest sum of `score` (N×H×W), over every place and side."""
    n = len(score)
    integral = torch.nn.functional.pad(score.cumsum(1).cumsum(2), (1, 0, 1, 0))
    best, top, left, side = torch.full((n,), -math.inf), *(torch.zeros(n, dtype=torch.long) for _ in range(3))
    for b in sides:
        sums = integral[:, b:, b:] - integral[:, :-b, b:] - integral[:, b:, :-b] + integral[:, :-b, :-b]
        value, where = sums.flatten(1).max(1)
        better = value > best
        best = torch.where(better, value, best)
        top = torch.where(better, where // sums.shape[2], top)
        left = torch.where(better, where % sums.shape[2], left)
        side = torch.where(better, torch.full_like(side, b), side)
    return top, left, side


def square_mask(top: torch.Tensor, left: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """N×32×32 boolean: True inside each image's square."""
    ys, xs = torch.arange(SIZE).view(1, SIZE, 1), torch.arange(SIZE).view(1, 1, SIZE)
    top, left, bottom, right = (v.view(-1, 1, 1) for v in (top, left, top + side, left + side))
    return (ys >= top) & (ys < bottom) & (xs >= left) & (xs < right)


@pytest.fixture(scope="module")
def pictures():
    """1,300 images (100 per box side on average) and what their pixels say: box, background, stripes."""
    raw, labels = make_tiny_images(1300, seed=11)
    x = raw.double() / 255
    axis, length = colour_axis(labels)
    along = torch.einsum("nchw,nc->nhw", x, axis.double())  # box: factor·length + noise; grey background: ~0
    # Two passes: a first box from a fixed threshold, then the threshold halfway between the box's colour at its
    # darkest stripe (0.35·length) and the background measured outside that first box.
    sides = range(8, SIZE + 1)  # wider than the spec's 14..26, so a box of another size is found as such
    inside = square_mask(*best_squares(along - 0.1, sides))
    outside_along = (along * ~inside).sum((1, 2)) / (~inside).sum((1, 2))
    threshold = (0.35 * length.double() + outside_along) / 2
    top, left, side = best_squares(along - threshold.view(-1, 1, 1), sides)
    inside = square_mask(top, left, side)
    return dict(
        raw=raw, labels=labels, x=x, along=along, length=length.double(), top=top, left=left, side=side, inside=inside
    )


def test_the_box_is_a_square_of_every_side_from_14_to_26_that_fits_anywhere_in_the_image(pictures):
    top, left, side = pictures["top"], pictures["left"], pictures["side"]
    assert sorted(set(side.tolist())) == list(range(14, 27))  # every side occurs, and no other
    assert ((top >= 0) & (top + side <= SIZE) & (left >= 0) & (left + side <= SIZE)).all()
    # uniform over the places that fit: both edges are reached, and the position's mean is the middle
    for start in (top, left):
        assert (start == 0).sum() >= 40 and (start == SIZE - side).sum() >= 40  # ~80 expected each
        assert (start.double() / (SIZE - side)).mean() == pytest.approx(0.5, abs=0.03)
    counts = torch.bincount(side - 14, minlength=13)
    assert counts.min() >= 70 and counts.max() <= 135  # 100 each expected: one draw per image from 13 sides


def test_the_background_is_grey_per_channel_between_045_and_055_with_noise_of_std_008(pictures):
    x, inside = pictures["x"], pictures["inside"].unsqueeze(1)
    outside = (~inside).double()
    mean = (x * outside).sum((2, 3)) / outside.sum((2, 3))  # N×3: each image's background colour
    assert mean.min() > 0.44 and mean.max() < 0.56
    assert mean.min() < 0.46 and mean.max() > 0.54  # the range is covered, channel by channel
    assert (mean.max(1).values - mean.min(1).values).max() > 0.07  # channels are drawn apart, not one grey
    residual = (x - mean.view(-1, 3, 1, 1)) * outside
    noise = (residual.square().sum() / (outside.sum() * 3)).sqrt()
    assert noise.item() == pytest.approx(0.08, abs=0.003)


def fit_sine(profile: torch.Tensor, ys: torch.Tensor, cycles: torch.Tensor):
    """Least-squares a + b·sin(ωy) + c·cos(ωy) for each ω = 2π·cycles/32: (best cycles, offset, amplitude,
    phase at y = 0, rms residual)."""
    best = None
    for c in cycles.tolist():
        w = 2 * math.pi * c * ys / SIZE
        design = torch.stack([torch.ones_like(ys), torch.sin(w), torch.cos(w)], 1)
        coef = torch.linalg.lstsq(design, profile.unsqueeze(1)).solution.squeeze(1)
        rms = (design @ coef - profile).square().mean().sqrt().item()
        if best is None or rms < best[-1]:
            best = (c, coef[0].item(), coef[1:].norm().item(), math.atan2(coef[2], coef[1]), rms)
    return best


def test_stripes_are_a_sine_of_2_to_5_cycles_per_image_with_a_uniform_phase(pictures):
    along, length, labels = pictures["along"], pictures["length"], pictures["labels"]
    top, left, side = pictures["top"], pictures["left"], pictures["side"]
    grid = torch.arange(1.0, 7.001, 0.02, dtype=torch.float64)
    fits = []
    for i in range(0, len(labels), 3):  # 434 images: enough for the distributions, quick to fit
        t, lf, b = top[i].item(), left[i].item(), side[i].item()
        factor = along[i, t : t + b, lf : lf + b] / length[i]  # 0.35 + 0.65·stripes, plus noise
        horizontal = labels[i] % 2 == 0  # stripes run along rows for even classes (test_data pins this)
        profile = factor.mean(1) if horizontal else factor.mean(0)
        coords = torch.arange(t, t + b) if horizontal else torch.arange(lf, lf + b)
        fits.append(fit_sine(profile, coords.double(), grid))
    cycles, offset, amplitude, phase, rms = (torch.tensor(v, dtype=torch.float64) for v in zip(*fits))
    assert cycles.min() >= 1.9 and cycles.max() <= 5.1  # 2..5 cycles per 32 px
    assert cycles.min() < 2.15 and cycles.max() > 4.85
    assert cycles.quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist() == pytest.approx(
        [2.75, 3.5, 4.25], abs=0.2
    )  # uniform
    assert offset.median().item() == pytest.approx(0.35 + 0.65 * 0.5, abs=0.02)
    assert amplitude.median().item() == pytest.approx(0.65 * 0.5, abs=0.02)
    assert rms.median().item() < 0.05  # a sine explains the profile (noise alone: ~0.08 / 0.5 / √20 = 0.036)
    # φ uniform on the circle: no mean direction, and a quarter of the phases in each quadrant
    assert torch.complex(phase.cos(), phase.sin()).mean().abs().item() < 0.1
    quadrants = torch.bincount(((phase % (2 * math.pi)) // (math.pi / 2)).long(), minlength=4)
    assert (quadrants.double() / len(phase) - 0.25).abs().max().item() < 0.06


def test_pixels_are_clamped_to_the_byte_range(pictures):
    # dark stripes of dim channels and bright ones of strong channels leave the [0, 1] range before the clamp:
    # those pixels pile up on exactly 0 and 255, far above their neighbours 1 and 254
    counts = torch.bincount(pictures["raw"].flatten().long(), minlength=256)
    assert counts[0] > 5 * counts[1] and counts[255] > 5 * counts[254]  # measured: 11.8× and 9.6×
