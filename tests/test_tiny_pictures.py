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


@pytest.fixture
def pictures():
    """1,300 images (100 per box side on average) and what their pixels say: box, background, stripes.
    Function-scoped on purpose: mutation testing credits a module fixture's code to the first test alone."""
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
    # each image draws its own noise: the residuals of two images, where both show background, are uncorrelated
    both = outside[:-1] * outside[1:]
    pairs = (residual[:-1] * residual[1:] * both).sum((1, 2, 3)) / both.sum((1, 2, 3))
    assert (pairs.mean() / noise**2).abs().item() < 0.05  # the same noise in every image would give ~1


def fit_sines(profiles: torch.Tensor, coords: torch.Tensor, grid: torch.Tensor) -> list[torch.Tensor]:
    """Least-squares a + b·sin(ωy) + c·cos(ωy) to each row of `profiles` (N×L, sampled at `coords`) for every
    ω = 2π·cycles/32 in `grid`; per row, at the best ω: [cycles, offset, amplitude, phase at y = 0, rms residual]."""
    n, length = profiles.shape
    w = 2 * math.pi * grid.view(1, -1, 1) * coords.view(n, 1, length) / SIZE  # N×F×L
    design = torch.stack([torch.ones_like(w), torch.sin(w), torch.cos(w)], -1)  # N×F×L×3
    target = profiles.view(n, 1, length, 1).expand(-1, len(grid), -1, -1)
    coef = torch.linalg.lstsq(design, target).solution  # N×F×3×1
    rms = (design @ coef - target).squeeze(-1).square().mean(-1).sqrt()  # N×F
    best = rms.argmin(1)
    a, b, c = coef[torch.arange(n), best, :, 0].unbind(1)
    return [grid[best], a, torch.hypot(b, c), torch.atan2(c, b), rms[torch.arange(n), best]]


def test_stripes_are_a_sine_of_2_to_5_cycles_per_image_with_a_uniform_phase(pictures):
    along, length, labels = pictures["along"], pictures["length"], pictures["labels"]
    top, left, side = pictures["top"], pictures["left"], pictures["side"]
    grid = torch.arange(1.0, 7.001, 0.02, dtype=torch.float64)
    fits = []
    for b in side.unique().tolist():  # one batch of fits per box side (profiles of one length)
        profiles, coords = [], []
        for i in (side == b).nonzero().flatten().tolist():
            t, lf = top[i].item(), left[i].item()
            factor = along[i, t : t + b, lf : lf + b] / length[i]  # 0.35 + 0.65·stripes, plus noise
            horizontal = labels[i] % 2 == 0  # stripes run along rows for even classes (test_data pins this)
            profiles.append(factor.mean(1) if horizontal else factor.mean(0))
            coords.append(torch.arange(t, t + b) if horizontal else torch.arange(lf, lf + b))
        fits.append(fit_sines(torch.stack(profiles), torch.stack(coords).double(), grid))
    cycles, offset, amplitude, phase, rms = (torch.cat(v) for v in zip(*fits))
    assert cycles.min() >= 1.9 and cycles.max() <= 5.1  # 2..5 cycles per 32 px
    assert cycles.min() < 2.1 and cycles.max() > 4.9
    quartiles = cycles.quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    assert quartiles.tolist() == pytest.approx([2.75, 3.5, 4.25], abs=0.15)  # uniform
    assert offset.median().item() == pytest.approx(0.35 + 0.65 * 0.5, abs=0.02)
    assert amplitude.median().item() == pytest.approx(0.65 * 0.5, abs=0.02)
    assert rms.median().item() < 0.05  # a sine explains the profile (noise alone: ~0.08 / 0.5 / √20 = 0.036)
    # φ uniform on the circle: no mean direction, and a quarter of the phases in each quadrant
    assert torch.complex(phase.cos(), phase.sin()).mean().abs().item() < 0.06
    quadrants = torch.bincount(((phase % (2 * math.pi)) // (math.pi / 2)).long(), minlength=4)
    assert (quadrants.double() / len(phase) - 0.25).abs().max().item() < 0.04


def test_pixels_are_clamped_to_the_byte_range(pictures):
    # dark stripes of dim channels and bright ones of strong channels leave the [0, 1] range before the clamp:
    # those pixels pile up on exactly 0 and 255, far above their neighbours 1 and 254
    counts = torch.bincount(pictures["raw"].flatten().long(), minlength=256)
    assert counts[0] > 5 * counts[1] and counts[255] > 5 * counts[254]  # measured: 11.8× and 9.6×
