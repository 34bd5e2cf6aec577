"""The lesson's claims, pinned: parameter sharing, equivariance, linearity, pooling on an edge."""

import re
from pathlib import Path

import pytest
import torch

from cnnlab.data.tiny import TinyDataModule
from cnnlab.lab.equivariance import layer_shift_errors, prediction_change, shift_right
from cnnlab.lab.linearity import collapse_to_affine, superposition_error
from cnnlab.lab.params import conv_layer, dense_equivalent, dense_layer
from cnnlab.lab.pooling import edge_response, pool_edge
from cnnlab.models import count_parameters
from cnnlab.models.cnn import ConvNet
from cnnlab.models.mlp import MLP
from conftest import refused_line, run_tool

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it

CIFAR = (3, 32, 32)  # C×H×W of a CIFAR-10 image: the input shape the tests below trace with


def test_dense_layer_from_a_224_image_to_1000_units():
    layer = dense_layer(224, 224, 3, 1000)
    assert (layer.weights, layer.biases) == (150_528_000, 1_000)


def test_conv_weights_do_not_depend_on_image_size():
    small, large = conv_layer(32, 32, 3, 64, 3), conv_layer(224, 224, 3, 64, 3)
    assert (small.weights, small.biases) == (large.weights, large.biases) == (1_728, 64)
    assert large.outputs == 224 * 224 * 64
    assert dense_equivalent(large, 224, 224, 3).weights == 150_528 * 3_211_264


def test_mlp_has_18_times_the_parameters_of_the_default_cnn():
    assert count_parameters(MLP(**CIFAR10)) == 1_707_274 and count_parameters(ConvNet(depth=3, **CIFAR10)) == 94_762


def images(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def conv_stack(pool: str, padding_mode: str = "zeros") -> torch.nn.Module:
    torch.manual_seed(0)
    return ConvNet(
        depth=1, width=8, convs_per_block=3, pool=pool, padding_mode=padding_mode, batchnorm=False, **CIFAR10
    ).features


def test_shift_fills_with_zeros_or_wraps_round():
    row = torch.arange(1.0, 6.0)
    assert shift_right(row, 2).tolist() == [0, 0, 1, 2, 3]
    assert shift_right(row, 2, circular=True).tolist() == [4, 5, 1, 2, 3]


@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect"])
def test_stride_one_conv_stack_is_exactly_equivariant_away_from_the_border(padding_mode):
    errors = layer_shift_errors(conv_stack("none", padding_mode), images(), shift=3)
    assert len(errors) == 6 and max(e.relative_error for e in errors) < 1e-5
    # receptive fields 3, 5, 7 px centred on column q: inside [0, 32 − 3) for q in 1..27, 2..26, 3..25
    assert [e.positions for e in errors] == [27, 27, 25, 25, 23, 23]


def test_wrapped_border_shows_as_error_under_roll_but_not_in_the_interior_metric():
    stack, x = conv_stack("none"), images()
    with torch.no_grad():  # the old measure: roll the input, compare whole maps; zero padding sees the wrap
        rolled = (stack(torch.roll(x, 3, -1)) - torch.roll(stack(x), 3, -1)).norm() / stack(x).norm()
    assert rolled > 0.05 and layer_shift_errors(stack, x, shift=3)[-1].relative_error < 1e-5


class ColumnGain(torch.nn.Module):
    """Not equivariant by construction: columns 0–15 pass unchanged, columns 16–31 are doubled."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + (torch.arange(x.shape[-1]) >= 16))


def test_a_position_dependent_op_has_the_error_worked_out_by_hand():
    (error,) = layer_shift_errors(torch.nn.Sequential(ColumnGain()), torch.ones(1, 1, 4, 32), shift=4)
    # interior: columns 0..27 (a 1-px field inside [0, 28)). shift f(x) there: 16 ones, 12 twos; f(shift x) at
    # c + 4 differs by 1 for c = 12..15. ‖diff‖/‖f‖ = √(4 · 1²) / √(16 · 1² + 12 · 2²) = 2/8 per row
    assert error.positions == 28 and error.relative_error == pytest.approx(0.25)


def test_stride_two_pooling_breaks_one_pixel_shifts_but_commutes_with_two():
    one = layer_shift_errors(conv_stack("max"), images(), shift=1)
    two = layer_shift_errors(conv_stack("max"), images(), shift=2)
    assert max(e.relative_error for e in one[:-1]) < 1e-5  # every stride-1 layer before the pool
    assert one[-1].kind == "MaxPool2d" and one[-1].relative_error > 0.1
    assert two[-1].feature_shift == 1.0 and two[-1].relative_error < 1e-5


def least_squares_classifier() -> tuple[ConvNet, torch.Tensor, torch.Tensor]:
    """Random circular-padded conv features with a linear head fitted by least squares on tiny data: a classifier
    that predicts many classes (an untrained net predicts one class for every input, so nothing could change),
    and validation images with their labels."""
    dm = TinyDataModule(train_count=400, val_size=64)
    dm.setup()
    torch.manual_seed(0)
    net = ConvNet(depth=3, width=8, padding_mode="circular", batchnorm=False, **CIFAR10).eval()
    with torch.no_grad():
        train_x, train_y = dm.prepare_batch(dm.train_set.tensors[0], train=False), dm.train_set.tensors[1]
        pooled = net.head[:2](net.features(train_x))
        design = torch.cat([pooled, torch.ones(len(pooled), 1)], 1)
        solution = torch.linalg.lstsq(design, torch.nn.functional.one_hot(train_y, 10).float()).solution
        net.head[-1].weight.copy_(solution[:-1].T)
        net.head[-1].bias.copy_(solution[-1])
    return net, dm.prepare_batch(dm.val_set.tensors[0], train=False), dm.val_set.tensors[1]


def test_classifier_is_exactly_invariant_to_shifts_by_its_jump_and_nearly_to_small_ones():
    net, images, labels = least_squares_classifier()
    with torch.no_grad():
        predictions = net(images).argmax(-1)
    assert len(predictions.unique()) >= 8 and (predictions == labels).float().mean() > 0.5  # a real classifier
    # three 2×2 pools: jump 8. A circular shift by 8 px is a circular shift of every feature map → same pooled vector
    unchanged, distance = prediction_change(net, images, shift=8, circular=True)
    assert unchanged == 1.0 and distance < 1e-6
    assert prediction_change(net, images, shift=8)[1] > 1e-4  # zero fill: the right 8 columns leave the image
    unchanged, distance = prediction_change(net, images, shift=2, circular=True)
    assert 0.6 <= unchanged < 1.0 and 1e-4 < distance < 0.1
    # control: the same measure between unrelated images is near chance, so 'unchanged' above is not trivial
    shuffled = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        assert (net(shuffled).argmax(-1) == predictions).float().mean() < 0.3


@pytest.mark.parametrize("pool", ["avg", "stride"])
def test_deep_network_without_nonlinearity_is_one_affine_map(pool):
    net = ConvNet(depth=4, width=8, activation="identity", batchnorm=False, pool=pool, **CIFAR10)
    assert superposition_error(net, CIFAR) < 1e-4
    weight, bias, error = collapse_to_affine(net, CIFAR)
    assert weight.shape == (10, 3 * 32 * 32) and bias.shape == (10,) and error < 1e-4


def test_batchnorm_at_inference_keeps_a_linear_network_one_affine_map():
    torch.manual_seed(0)
    net = ConvNet(depth=3, width=8, activation="identity", batchnorm=True, pool="avg", **CIFAR10)
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # as if trained: not 0 and 1
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
    assert (
        superposition_error(net, CIFAR) < 1e-4 and collapse_to_affine(net, CIFAR)[2] < 1e-4
    )  # both put the net in eval mode


@pytest.mark.parametrize("activation, pool", [("relu", "avg"), ("gelu", "avg"), ("identity", "max")])
def test_a_nonlinearity_or_max_pooling_breaks_superposition(activation, pool):
    net = ConvNet(depth=4, width=8, activation=activation, batchnorm=False, pool=pool, **CIFAR10)
    assert superposition_error(net, CIFAR) > 0.1


def test_max_pool_keeps_a_sharp_edge_at_full_strength_and_average_halves_it():
    for column in range(8):
        fmap = edge_response(column=column)
        max_edge, avg_edge = pool_edge(fmap, "max", column), pool_edge(fmap, "avg", column)
        assert (max_edge.peak, avg_edge.peak) == (1.0, 0.5)
        assert max_edge.width == avg_edge.width == 1


def test_max_pool_keeps_a_blurred_edge_stronger_than_average():
    fmap = edge_response(column=3, profile=(0.5, 1.0, 0.5))
    max_edge, avg_edge = pool_edge(fmap, "max", 3), pool_edge(fmap, "avg", 3)
    assert max_edge.peak == 1.0 and avg_edge.peak == 0.75


def test_rf_tool_prints_the_table_and_saves_fresh_and_trained_maps(tmp_path, monkeypatch, capsys):
    from cnnlab.lab import rf as rf_tool

    out = run_tool(rf_tool, ["model.depth=2", "--out", str(tmp_path)], monkeypatch, capsys)
    assert "10×10" in out and "fresh: gradient non-zero over 10×10 px (analytic 10×10" in out
    assert (tmp_path / "rf_fresh.png").stat().st_size > 1000


def test_params_tool_prints_exact_counts(monkeypatch, capsys):
    from cnnlab.lab import params as params_tool

    out = run_tool(params_tool, [], monkeypatch, capsys)
    assert "150,528,000" in out and "1,728" in out and "1,707,274" in out and "391,466" in out


def table_rows(out: str) -> list[list[str]]:
    """The cells of each body row of a rich table (lines with │ separators)."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") > 3]


def test_equivariance_tool_reports_layers_and_predictions(tmp_path, monkeypatch, capsys):
    from cnnlab.lab import equivariance as equivariance_tool

    out = run_tool(
        equivariance_tool,
        ["data=tiny", "model.depth=3", "--shifts", "1", "8", "--out", str(tmp_path)],
        monkeypatch,
        capsys,
    )
    rows = table_rows(out)
    assert [r[1] for r in rows] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] * 3  # depth 3: its last jump is 8
    assert [int(r[2]) for r in rows] == [1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 8]  # jump after each layer: ×2 at each pool
    shift1, shift8 = [float(r[3]) for r in rows], [float(r[4]) for r in rows]
    # zero padding, zero fill: away from the border the stride-1 layers commute with 1 px, the first pool does not
    assert max(shift1[:3]) < 1e-5 and shift1[3] > 0.1
    assert max(shift8) < 1e-5  # 8 px is a whole number of units at every jump ≤ 8
    assert re.search(r"shift 8 \(zero fill\): prediction unchanged for \d+\.\d% of 64 images", out)
    assert (tmp_path / "equivariance.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data=tiny", "--shifts", "1", "32"], "--shifts 32: a shift must be 1..31 pixels"),
        (["data=tiny", "--shifts", "0"], "--shifts 0: a shift must be 1..31 pixels"),
        (["data=tiny", "model=mlp"], "MLP flattens the image before its first layer"),
    ],
)
def test_equivariance_tool_refuses_shifts_off_the_image_and_flat_models(argv, message, monkeypatch, capsys):
    from cnnlab.lab import equivariance as equivariance_tool

    assert message in refused_line(equivariance_tool, argv, monkeypatch, capsys)


def test_linearity_tool_shows_identity_collapses_and_relu_does_not(monkeypatch, capsys):
    from cnnlab.lab import linearity as linearity_tool

    out = run_tool(linearity_tool, ["model.pool=avg", "model.batchnorm=false", "model.width=8"], monkeypatch, capsys)
    rows = {r[0]: (float(r[2]), float(r[3])) for r in table_rows(out)}
    assert set(rows) == {"identity", "relu", "gelu"}
    # float noise: one affine map (measured 4.8e-06 superposition, 6.7e-08 affine in float32)
    assert rows["identity"][0] < 2e-5 and rows["identity"][1] < 1e-6
    # far from float precision (measured at seed 0: 3.45 / 0.048 and 3.62 / 0.008; gelu is smooth at 0, so the
    # map read off there fits random inputs better than relu's)
    assert rows["relu"][0] > 1 and rows["gelu"][0] > 1 and rows["relu"][1] > 1e-3 and rows["gelu"][1] > 1e-3


def test_linearity_tool_repeats_its_table_for_a_seed_and_changes_it_with_another(monkeypatch, capsys):
    """The fresh nets are initialised from the config's seed: the same command prints the same numbers."""
    from cnnlab.lab import linearity as linearity_tool

    args = ["model.pool=avg", "model.batchnorm=false", "model.width=8"]
    first, again = (table_rows(run_tool(linearity_tool, args, monkeypatch, capsys)) for _ in range(2))
    other = table_rows(run_tool(linearity_tool, [*args, "seed=1"], monkeypatch, capsys))
    assert first == again
    assert first[1][0] == other[1][0] == "relu" and first[1][2] != other[1][2]  # another seed, another relu net


def test_pooling_tool_writes_table_and_figure(tmp_path, monkeypatch, capsys):
    from cnnlab.lab import pooling as pooling_tool

    out = run_tool(pooling_tool, ["--out", str(tmp_path)], monkeypatch, capsys)
    assert "sharp   │ avg  │     0.500" in out and (tmp_path / "pooling.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model.dpth=3"], "model.dpth is not a key of the config"),
        (["model=no_such_model_xyz"], "model=no_such_model_xyz is not a config in conf/model/"),
        (["--ckpt", "/nowhere/best.ckpt"], "checkpoint /nowhere/best.ckpt does not exist"),
        # the config's values are checked as cnnlab-train checks them (a traceback from torch.manual_seed, or a
        # table drawn for a seed no run could use)
        (["seed=abc"], "seed='abc' has the wrong type: it must be an integer"),
        (["seed=-1"], "seed=-1 is out of range"),
    ],
)
def test_lab_tools_refuse_bad_input_with_one_line_and_exit_2(argv, message, monkeypatch, capsys):
    from cnnlab.lab import rf as rf_tool

    err = refused_line(rf_tool, argv, monkeypatch, capsys)
    assert message in err and "ckpt_path=" not in err


def test_lab_tools_refuse_an_out_that_cannot_be_written(tmp_path, monkeypatch, capsys):
    from cnnlab.lab import pooling as pooling_tool

    in_the_way = tmp_path / "figs"
    in_the_way.write_text("a file")
    assert "cannot be written" in refused_line(pooling_tool, ["--out", str(in_the_way / "sub")], monkeypatch, capsys)


def test_ctrl_c_before_a_run_starts_exits_130_with_one_line(capsys):
    from cnnlab.runs import console_script

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        console_script(interrupted)()
    assert exit_info.value.code == 130 and capsys.readouterr().err == "stopped by Ctrl+C.\n"


@pytest.mark.parametrize("flag", ["--size", "--kernel", "--units"])
def test_params_refuses_a_size_below_one_instead_of_printing_zero_or_negative_counts(flag, monkeypatch, capsys):
    from cnnlab.lab import params as params_tool

    monkeypatch.setattr("sys.argv", ["cnnlab-params", flag, "-3"])
    with pytest.raises(SystemExit) as exit_info:
        params_tool.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"argument {flag}: -3 must be a positive integer" in err


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """best.ckpt of a 1-epoch depth-2 run on tiny."""
    import cnnlab

    run_dir = tmp_path_factory.mktemp("lab_run") / "run"
    overrides = ["data=tiny", "model.depth=2", "model.width=4", "data.train_count=300", "trainer.max_epochs=1"]
    cnnlab.train([*overrides, "progress_bar=false", "lab_images=false"], run_dir=run_dir)
    return run_dir / "checkpoints" / "best.ckpt"


def test_with_a_checkpoint_a_model_override_must_match_it_and_data_overrides_apply(
    tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    # model.depth=3 was dropped in silence (the tool measured the checkpoint's depth-2 net), data.test_count too
    from cnnlab.lab import equivariance as equivariance_tool
    from cnnlab.lab import rf as rf_tool

    err = refused_line(rf_tool, ["data=tiny", "model.depth=3", "--ckpt", str(tiny_checkpoint)], monkeypatch, capsys)
    assert f"checkpoint {tiny_checkpoint} belongs to a different model config: model.depth=2 in the checkpoint" in err
    argv = ["data=tiny", "data.test_count=40", "--ckpt", str(tiny_checkpoint), "--shifts", "1", "--draws", "1"]
    out = run_tool(equivariance_tool, [*argv, "--out", str(tmp_path)], monkeypatch, capsys)
    line = next(x for x in out.splitlines() if x.startswith("consistency"))
    assert "of all 40 test images (1 draw of the shifts)" in line and "±" not in line  # one draw has no spread


@pytest.mark.parametrize(
    "tool, argv",
    [
        ("pooling", ["--ckpt", "x.ckpt"]),
        ("pooling", ["model.depth=3"]),
        ("params", ["--out", "x"]),
        ("linearity", ["--ckpt", "x.ckpt"]),
    ],
)
def test_a_tool_refuses_an_option_it_would_ignore(tool, argv, monkeypatch, capsys):
    import importlib

    module = importlib.import_module(f"cnnlab.lab.{tool}")
    monkeypatch.setattr("sys.argv", [f"cnnlab-{tool}", *argv])
    with pytest.raises(SystemExit) as refused:
        module.main()
    assert refused.value.code == 2 and ("unrecognized arguments" in capsys.readouterr().err)


def test_bad_input_to_a_lab_tool_is_refused_before_it_prints_or_writes_anything(tmp_path, monkeypatch, capsys):
    from cnnlab.lab import params
    from cnnlab.lab import pooling as pooling_tool
    from cnnlab.lab import rf as rf_tool

    (tmp_path / "a_file").write_text("mine")
    for module, argv in [
        (pooling_tool, ["--out", str(tmp_path / "a_file")]),
        (rf_tool, ["data=tiny", "--out", str(tmp_path / "a_file")]),
        (params, ["data=tiny", "model.depth=9"]),
    ]:
        monkeypatch.setattr("sys.argv", ["tool", *argv])
        with pytest.raises(SystemExit) as refused:
            module.main()
        out, err = capsys.readouterr()
        assert refused.value.code == 2 and out == "" and err.count("\n") == 1, (argv, out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
