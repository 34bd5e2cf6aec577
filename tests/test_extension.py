"""What happens when a user bends the template: a branching backbone, images that are not 32×32 RGB, a class count
that is not 10, no validation split. Every number printed must be right, or refused in one line."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.cli.train import run
from cnnlab.errors import user_error
from cnnlab.models import count_parameters
from cnnlab.models.receptive_field import (
    empirical_receptive_field,
    final_receptive_field,
    input_gradient,
    receptive_field,
    trace_fields,
)
from cnnlab.models.resnet import ResNet
from conftest import compose_config, refused_line, run_tool

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it

CIFAR = (3, 32, 32)


def test_resnet18_layout_has_the_109_px_field_on_a_4x4_map():
    """CIFAR ResNet-18 (stages [2,2,2,2], strides 1,2,2,2), by hand, counting each 3×3 conv once and never a shortcut:
    stem 3 (jump 1); stage 1: four convs +2 each → 11; stage 2: stride-2 conv +2 → 13 (jump 2), three convs +4 → 25;
    stage 3: +4 → 29 (jump 4), +8·3 → 53; stage 4: +8 → 61 (jump 8), +16·3 → 109. 32 px halved three times: 4×4.
    A chain walk that counts each 1×1 stride-2 shortcut as one more layer in series said 473 on 1×1."""
    net = ResNet(width=4, blocks_per_stage=[2, 2, 2, 2], **CIFAR10)
    final = trace_fields(net.features, CIFAR).final
    assert (final.size, final.jump, final.out_size, final.out_height) == (109, 8, 4, 4)
    assert final_receptive_field(net.features, CIFAR) == 109


def test_resnet_analytic_field_equals_the_input_gradient_where_it_fits_the_image():
    """[1,1] stages: stem 3, stage 1 +2+2 → 7, stage 2 stride-2 conv +2 → 9 (jump 2), +4 → 13. The centre unit's
    gradient (random weights, eval mode) is non-zero over exactly that 13×13 square."""
    torch.manual_seed(0)
    for block in ("basic", "preact"):
        net = ResNet(block=block, width=4, blocks_per_stage=[1, 1], **CIFAR10)
        assert final_receptive_field(net.features, CIFAR) == 13
        assert empirical_receptive_field(input_gradient(net.features, CIFAR)) == (13, 13)


def test_resnet_shortcuts_are_listed_with_their_own_fields_not_chained():
    """The 1×1 projection in stage 2 sees what the stage's input saw (7 px after stage 1), not the main path's 13."""
    layers = {
        rf.name: rf for rf in receptive_field(ResNet(width=4, blocks_per_stage=[1, 1], **CIFAR10).features, CIFAR)
    }
    assert layers["stage2.0.shortcut.0"].size == 7 and layers["stage2.0.shortcut.0"].jump == 2
    assert layers["stage2.0.conv2"].size == 13


def test_resnet_parameter_count_by_hand():
    """width 4, [1, 1], basic, convs without bias, BN 2 per channel: stem 3·4·9 + 8 = 116; stage 1: 2·(4·4·9 + 8) =
    304; stage 2: conv 4·8·9 + BN 16 + conv 8·8·9 + BN 16 + 1×1 shortcut 4·8 + BN 16 = 944; head 8·10 + 10 = 90."""
    assert count_parameters(ResNet(width=4, blocks_per_stage=[1, 1], **CIFAR10)) == 116 + 304 + 944 + 90 == 1_454


class TwoBranches(nn.Module):
    """A 3×3 then 3×3 path (5 px) concatenated with a 7×7 path (7 px), then a functional 2×2 max pool."""

    def __init__(self) -> None:
        super().__init__()
        self.a1, self.a2 = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 7, padding=3)

    def forward(self, x):
        return F.max_pool2d(torch.cat([self.a2(F.relu(self.a1(x))), self.b(x)], dim=1), 2)


def test_branches_meet_as_the_union_of_their_fields_and_functional_pools_count():
    """cat of a 5-px and a 7-px branch: 7 px; the functional 2×2 pool: 7 + 1 = 8, jump 2 (empirically the same)."""
    net = TwoBranches()
    analysis = trace_fields(net, CIFAR)
    assert [(rf.name, rf.size) for rf in analysis.layers] == [("a1", 3), ("a2", 5), ("b", 7), ("max_pool2d", 8)]
    assert (analysis.final.size, analysis.final.jump) == (8, 2)
    assert empirical_receptive_field(input_gradient(net, CIFAR)) == (8, 8)


class Upsampler(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2)


def test_an_operation_the_tracer_does_not_know_gives_a_reason_not_a_number():
    analysis = trace_fields(nn.Sequential(nn.Conv2d(3, 3, 3), Upsampler()), CIFAR)
    assert analysis.final is None and "interpolate" in analysis.reason and "does not know" in analysis.reason
    assert final_receptive_field(nn.Sequential(nn.Conv2d(3, 3, 3), Upsampler()), CIFAR) is None


def train(run_dir: Path, *overrides: str) -> dict:
    run(compose_config(["data=tiny", "progress_bar=false", "trainer.max_epochs=1", *overrides], run_dir))
    return json.loads((run_dir / "metrics.json").read_text())


def test_resnet_without_a_validation_split_trains_with_lab_images_and_records_the_traced_field(tmp_path):
    """model=resnet, data.val_size=0 (LabImages used to index the empty validation set) and 48-px images."""
    record = train(
        tmp_path / "run",
        "model=resnet",
        "model.width=4",
        "model.blocks_per_stage=[1,1]",
        "data.val_size=0",
        "data.image_size=[48,48]",
        "data.train_count=300",
        "data.test_count=100",
    )
    assert record["status"] == "completed" and record["receptive_field"] == 13
    tags = "".join(p.name for p in (tmp_path / "run" / "tb").iterdir())
    assert tags  # events written; the feature-map and RF images come from the test images
    import cnnlab  # no best.ckpt without validation: load_run takes the checkpoint the run tested, last.ckpt

    loaded = cnnlab.load_run(tmp_path / "run").model.state_dict()
    last = torch.load(tmp_path / "run/checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert not (tmp_path / "run/checkpoints/best.ckpt").exists() and loaded.keys() == last.keys()
    assert all(torch.equal(loaded[k], v) for k, v in last.items())


@pytest.mark.parametrize(
    "override, message",
    [
        ("+model.num_classes=12", "the model gives (12,) outputs per image, but tiny has 10 classes"),
        ("model.in_channels=1", "the model does not take tiny's 3×32×32 images"),
        ("data.num_classes=12", "data.num_classes=12 does not match tiny, whose num classes is 10"),
    ],
)
def test_a_model_that_does_not_fit_the_data_is_refused_before_anything_is_written(tmp_path, override, message):
    from cnnlab.runs import RunEnded

    override = override.replace("+model.num_classes", "model.num_classes")
    with pytest.raises(RunEnded) as ended:
        run(compose_config(["data=tiny", override], tmp_path / "run"))
    assert ended.value.code == 2 and message in ended.value.reason
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_image_size_comes_from_the_data_everywhere(tmp_path):
    """64-px images: depth 6 fits (refused at 32 px), the model table's first map is 64×64, the record's field is the
    traced one: 6 conv+pool blocks give 3 + 1 → 4, then +2·2 +1·2 → 10, 22, 46, 94, 190 px."""
    from hydra.utils import instantiate

    with pytest.raises(Exception) as refused:
        instantiate(compose_config(["data=tiny", "model.depth=6", "model.width=2"]).model)
    assert "halves the 32×32 input 6 times" in str(user_error(refused.value))
    record = train(tmp_path / "run", "data.image_size=[64,64]", "model.depth=6", "model.width=2", "model.growth=1.0")
    assert record["status"] == "completed" and record["receptive_field"] == 190


RESNET = ["data=tiny", "model=resnet", "model.width=4", "model.blocks_per_stage=[1,1]"]


def test_equivariance_tool_follows_a_resnets_branches_and_residual_sums(tmp_path, monkeypatch, capsys):
    """It crashed on the shortcut (run as if in series). Rows: every module call and the residual sum; a stride-1
    stem conv is exactly equivariant on its interior columns."""
    from cnnlab.lab import equivariance

    out = run_tool(equivariance, [*RESNET, "--shifts", "2", "--out", str(tmp_path)], monkeypatch, capsys)
    cells = ([c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") > 3)
    rows = {row[0]: row for row in cells}
    assert {"stem.0", "stage2.0.shortcut.0", "add_1"} <= set(rows)
    assert float(rows["stem.0"][3]) < 1e-5  # columns: layer, op, jump, shift 2
    assert (tmp_path / "equivariance.png").exists()


def test_rf_tool_on_grayscale_images_of_another_size(tmp_path, monkeypatch, capsys):
    """40×40 tiny pictures through a ResNet: the table, the traced field and the image it is compared with."""
    from cnnlab.lab import rf

    out = run_tool(rf, [*RESNET, "data.image_size=[40,40]", "--out", str(tmp_path)], monkeypatch, capsys)
    assert "features output: 20×20 maps, receptive field 13×13 on the 40×40 input" in out
    assert "receptive field 13×13 is smaller than the 40×40 input" in out
    assert "gradient non-zero over 13×13 px" in out


def test_linearity_refuses_a_model_without_an_activation_and_runs_on_a_resnet(monkeypatch, capsys):
    from cnnlab.lab import linearity

    err = refused_line(linearity, ["data=tiny", "model=mlp", "~model.activation"], monkeypatch, capsys)
    assert "has no activation key" in err and "model.activation" in err
    err = refused_line(linearity, ["data=tiny", "model=fast"], monkeypatch, capsys)  # its key: gelu or silu only
    assert "(FastNet) refuses identity" in err and "model.activation='identity' is not a valid choice" in err
    out = run_tool(linearity, RESNET, monkeypatch, capsys)
    identity = next(line for line in out.splitlines() if line.startswith("│ identity"))
    assert float(identity.split("│")[3]) < 1e-4  # a ResNet without nonlinearities is one affine map


class PlainNet(nn.Module):
    """Any nn.Module with no features/head split: it trains; the table and the field are left out, said once."""

    def __init__(self, num_classes: int, in_channels: int, image_size) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.out = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.out(self.body(x).flatten(1))


def test_a_plain_nn_module_trains_and_records_no_receptive_field(tmp_path, caplog):
    caplog.set_level("INFO", logger="cnnlab")
    import yaml

    from conftest import REPO

    cnn_keys = yaml.safe_load((REPO / "conf/model/cnn.yaml").read_text())
    dropped = [f"~model.{k}" for k in cnn_keys if k not in ("_target_", "num_classes", "in_channels", "image_size")]
    record = train(tmp_path / "run", "model._target_=test_extension.PlainNet", *dropped)
    assert record["status"] == "completed" and record["receptive_field"] is None
    assert record["params"] == 3 * 8 * 9 + 8 + 8 * 10 + 10
    assert "not a cnnlab.models.Backbone" in caplog.text
