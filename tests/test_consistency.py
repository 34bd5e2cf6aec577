"""Shift consistency (Zhang 2019): the shifted copies, the agreement count, the record; and MACs by hand."""

import json

import pytest
import torch
from torch import nn

from cnnlab.cli.train import run
from cnnlab.models import count_macs
from cnnlab.models.cnn import ConvNet
from cnnlab.training.module import shift_agreement, shifted
from conftest import CIFAR10, compose_config


def test_a_shifted_copy_is_the_image_moved_with_reflected_borders():
    """Row 0..7, shift budget 2: dx = +2 shows columns 2..7 then the reflection 6, 5; dx = −1 shows the reflection
    1 then 0..6; dy moves rows the same way."""
    row = torch.arange(8.0)
    image = (row.view(1, 8) + 10 * row.view(8, 1)).view(1, 1, 8, 8)  # pixel = 10·row + column
    moved = shifted(image.repeat(2, 1, 1, 1), 2, torch.tensor([[0, 2], [-1, -1]]))
    assert moved[0, 0, 0].tolist() == [2, 3, 4, 5, 6, 7, 6, 5]
    assert moved[1, 0, 1].tolist() == [1, 0, 1, 2, 3, 4, 5, 6]  # row 1 of the moved image is original row 0
    assert moved[1, 0, :, 1].tolist() == [10, 0, 10, 20, 30, 40, 50, 60]
    assert torch.equal(shifted(image, 2, torch.tensor([[0, 0]])), image)


class BrightestColumnQuarter(nn.Module):
    """Class = which quarter of the image holds the brightest pixel of the first row (0..3)."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0, 0].argmax(-1) // (x.shape[-1] // 4), 4).float()


def test_agreement_is_the_share_of_images_whose_class_survives_both_shifts():
    """One bright pixel per image at column c: after a shift dx it sits at column c − dx (no reflection reaches it
    for c in 4..11 on 16 px with shifts up to 3), so the class agrees when (c − dx₁)//4 == (c − dx₂)//4. The draws
    are replayed from the same seed and the expected share computed from them by hand."""
    columns = torch.arange(4, 12).repeat(4)
    images = torch.zeros(len(columns), 1, 16, 16)
    images[torch.arange(len(columns)), 0, :, columns] = 1.0
    agree = shift_agreement(BrightestColumnQuarter(), images, 3, torch.Generator().manual_seed(7))
    draws = torch.randint(-3, 4, (2, len(columns), 2), generator=torch.Generator().manual_seed(7))
    expected = ((columns - draws[0, :, 1]) // 4 == (columns - draws[1, :, 1]) // 4).float()
    assert torch.equal(agree, expected) and 0 < expected.mean() < 1


def test_a_constant_classifier_is_perfectly_consistent():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.arange(10.0))
    agree = shift_agreement(net, torch.randn(20, 3, 32, 32), 4, torch.Generator().manual_seed(0))
    assert torch.equal(agree, torch.ones(20))


def test_macs_by_hand():
    """depth 1, width 4: a 3×3 conv 3 → 4 on 32×32: 32·32·4·3·9 = 110,592; the head 4 → 10: 40. Strided: the conv's
    output is 16×16, a quarter: 27,648. Pools and BN add none."""
    assert count_macs(ConvNet(depth=1, width=4, **CIFAR10), (3, 32, 32)) == 110_592 + 40
    assert count_macs(ConvNet(depth=1, width=4, pool="stride", **CIFAR10), (3, 32, 32)) == 27_648 + 40


def test_a_run_records_its_consistency_and_macs(tmp_path):
    run(
        compose_config(
            [
                "data=tiny",
                "progress_bar=false",
                "trainer.max_epochs=1",
                "model.depth=1",
                "model.width=4",
                "lab_images=false",
            ],
            tmp_path,
        )
    )
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["macs"] == 110_592 + 40 and 0 <= record["test_consistency"] <= 1
    assert record["consistency_shift"] == 4  # the default: an eighth of the 32-px side


def test_the_default_shift_follows_the_image_size(tmp_path):
    """16-px pictures: shifts of up to 16 // 8 = 2 px, not CIFAR's 4 (half of an 8-px digit would move it away)."""
    run(
        compose_config(
            [
                "data=tiny",
                "data.image_size=[16,16]",
                "progress_bar=false",
                "trainer.max_epochs=1",
                "model.depth=2",
                "model.width=4",
                "lab_images=false",
            ],
            tmp_path,
        )
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["consistency_shift"] == 2


def test_a_shift_as_wide_as_the_image_is_refused(tmp_path):
    from cnnlab.runs import RunEnded

    with pytest.raises(RunEnded) as ended:
        run(
            compose_config(
                ["data=tiny", "data.image_size=[16,16]", "model.depth=2", "consistency_shift=16"], tmp_path / "run"
            )
        )
    assert ended.value.code == 2 and "consistency_shift=16 is not below the 16-px side" in ended.value.reason


def test_equivariance_tool_measures_consistency_on_the_whole_test_split(tmp_path, monkeypatch, capsys):
    import re

    from cnnlab.lab import equivariance

    argv = ["data=tiny", "model.depth=2", "--shifts", "1", "--draws", "2", "--out", str(tmp_path)]
    monkeypatch.setattr("sys.argv", ["cnnlab-equivariance", *argv])
    equivariance.main()
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("consistency"))
    assert "up to 4 px (reflect padding)" in line and "of all 300 test images (2 draws of the shifts)" in line
    mean, spread = map(float, re.search(r"on ([\d.]+) ± ([\d.]+)%", line).groups())
    assert 0 <= mean <= 100 and spread >= 0
    monkeypatch.setattr("sys.argv", ["cnnlab-equivariance", "data=tiny", "--consistency-shift", "32"])
    with pytest.raises(SystemExit) as refused:
        equivariance.main()
    out, err = capsys.readouterr()
    assert refused.value.code == 2 and err.count("\n") == 1 and "the shift must be 1..31 px" in err
    assert out == ""  # refused before the per-layer table
