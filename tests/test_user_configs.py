"""Configs of the user's own (--config-dir, a YAML file with a syntax error), an int data.image_size, and the
receptive-field advice naming only the model's own keys (issue #30)."""

import io
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate

from cnnlab.cli import train as train_cli
from cnnlab.config import compose_checked
from cnnlab.models.fast import FastNet
from cnnlab.models.receptive_field import final_receptive_field, too_small_warning
from cnnlab.models.resnet import ResNet
from conftest import REPO, compose_config, refused_line, run_script, run_tool

TINY = ["data=tiny", "progress_bar=false", "trainer.max_epochs=1", "model.width=8", "data.train_count=200"]
TINY += ["data.val_size=40", "data.test_count=60", "lab_images=false"]
BROKEN = "_target_: cnnlab.models.cnn.ConvNet\ndepth: 2\n  width: [8\n"  # line 3: a mapping inside a scalar


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A config folder of the user's own: model/mine.yaml (a copy of conf/model/cnn.yaml), model/broken.yaml (bad
    YAML on line 3), and a primary config myexp.yaml built on cnnlab's train.yaml."""
    (tmp_path / "myconf" / "model").mkdir(parents=True)
    (tmp_path / "myconf" / "model" / "mine.yaml").write_text((REPO / "conf" / "model" / "cnn.yaml").read_text())
    (tmp_path / "myconf" / "model" / "broken.yaml").write_text(BROKEN)
    (tmp_path / "myconf" / "myexp.yaml").write_text(
        "defaults:\n  - train\n  - override model: mine\n  - override data: tiny\n  - _self_\n\nmodel:\n  depth: 2\n"
    )
    return tmp_path / "myconf"


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_a_yaml_syntax_error_in_a_users_config_is_one_line_naming_file_and_line(
    user_dir, tmp_path, monkeypatch, capsys, multirun
):
    out = tmp_path / "outputs"
    where = ["-m", f"hydra.sweep.dir={out}/sweep"] if multirun else [f"hydra.run.dir={out}/run"]
    flags = ["-m"] if multirun else []
    argv = [*flags, "--config-dir", str(user_dir), *where[len(flags) :], "model=broken", "data=tiny"]
    err = refused_line(train_cli, argv, monkeypatch, capsys)
    assert err.startswith(f"error: {user_dir / 'model' / 'broken.yaml'}, line 3, column ") and "Fix:" in err
    assert "Traceback" not in err and not out.exists()


def test_a_config_in_the_config_dir_trains_as_one_in_conf(user_dir, tmp_path, monkeypatch, capfd):
    # capfd: a run's faulthandler needs a real stderr (capsys's has no file descriptor)
    run_dir = tmp_path / "run"
    argv = ["--config-dir", str(user_dir), "model=mine", *TINY, "model.depth=2", f"hydra.run.dir={run_dir}"]
    run_tool(train_cli, argv, monkeypatch, capfd)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["choices"]["model"] == "mine"


def test_a_primary_config_of_the_users_own_is_checked_against_itself(user_dir, tmp_path, monkeypatch, capfd):
    run_dir = tmp_path / "run"
    argv = ["-cd", str(user_dir), "-cn", "myexp", *TINY[1:], f"hydra.run.dir={run_dir}"]
    run_tool(train_cli, argv, monkeypatch, capfd)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["choices"]["model"] == "mine"


def test_hydras_cfg_flag_shows_the_users_config(user_dir, monkeypatch, capsys):
    out = run_tool(train_cli, [f"--config-dir={user_dir}", "--config-name=myexp", "--cfg", "job"], monkeypatch, capsys)
    shown = yaml.safe_load(out)
    assert shown["model"]["depth"] == 2 and shown["data"]["_target_"] == "cnnlab.data.tiny.TinyDataModule"


def test_an_unknown_option_lists_the_options_of_the_config_dir_too(user_dir, tmp_path, monkeypatch, capsys):
    argv = ["--config-dir", str(user_dir), "model=nope", "data=tiny", f"hydra.run.dir={tmp_path}/out/run"]
    err = refused_line(train_cli, argv, monkeypatch, capsys)
    assert f"model=nope is not a config in conf/model/ nor {user_dir}/model/." in err
    assert "mine" in err.split("Valid:")[1].split(".")[0].split(", ") and not (tmp_path / "out").exists()
    assert "Fix: e.g. model=broken." in err and "defaults list" not in err  # typed on the command line: fix it there


def test_a_missing_option_named_by_a_config_files_defaults_list_says_to_change_that_entry(
    user_dir, tmp_path, monkeypatch, capsys
):
    (user_dir / "experiment").mkdir()
    (user_dir / "experiment" / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: nope\n")
    argv = ["--config-dir", str(user_dir), "experiment=mine", "data=tiny", f"hydra.run.dir={tmp_path}/out/run"]
    err = refused_line(train_cli, argv, monkeypatch, capsys)
    assert "model=nope is not a config in conf/model/" in err and "Fix: e.g. model=" not in err
    assert "the defaults list of a config names it ('override /model: nope'" in err and "e.g. broken." in err
    assert not (tmp_path / "out").exists()


def test_a_missing_file_named_in_a_user_configs_own_defaults_list_names_that_config_and_the_options(
    user_dir, tmp_path, monkeypatch, capsys
):
    (user_dir / "model" / "derived.yaml").write_text("defaults:\n  - cnn_base\n  - _self_\nwidth: 8\n")
    argv = ["--config-dir", str(user_dir), "model=derived", "data=tiny", f"hydra.run.dir={tmp_path}/out/run"]
    err = refused_line(train_cli, argv, monkeypatch, capsys)
    assert err.startswith(
        f"error: the defaults list of model/derived names cnn_base, which is not a config in conf/model/ nor "
        f"{user_dir}/model/. Valid: "
    )
    valid = err.split("Valid: ")[1].split(". Fix:")[0].split(", ")
    assert {"cnn", "resnet", "mine", "broken", "derived"} <= set(valid) and "cnn_base" not in valid
    assert err.endswith("Fix: change that entry of model/derived's defaults list to one of these, e.g. cnn.\n")
    assert not (tmp_path / "out").exists()


def test_a_config_dir_flag_between_the_overrides_gets_the_reordered_command(user_dir, monkeypatch, capsys):
    argv = ["data=tiny", "--config-dir", str(user_dir), "model=mine"]
    err = refused_line(train_cli, argv, monkeypatch, capsys)  # argparse: "unrecognized arguments" and its usage
    fix = f"Fix: {train_cli.__name__} --config-dir {user_dir} data=tiny model=mine"
    assert err == f"error: --config-dir comes before the overrides. {fix}\n"


def test_a_config_dir_that_is_not_a_folder_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    err = refused_line(train_cli, ["--config-dir", str(tmp_path / "nope"), "data=tiny"], monkeypatch, capsys)
    assert err.startswith(f"error: --config-dir {tmp_path / 'nope'} is not a folder. Fix:")


@pytest.mark.parametrize("model", ["cnn", "fast", "mlp", "resnet"])
def test_an_int_image_size_is_a_square_for_every_model(model):
    for size in ("48", "[48,48]"):
        cfg = compose_checked(["data=tiny", f"data.image_size={size}", f"model={model}"])
        assert instantiate(cfg.data).input_shape == (3, 48, 48)
        assert instantiate(cfg.model)(torch.zeros(2, 3, 48, 48)).shape == (2, 10)


def test_a_run_with_an_int_image_size_trains_on_square_pictures(tmp_path):
    run_dir = tmp_path / "run"
    train_cli.run(compose_config([*TINY, "data.image_size=16", "model.depth=2"], run_dir))
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed"
    saved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert saved["data"]["image_size"] == 16


def test_a_refusal_of_cnnlab_train_is_said_once_by_the_exception_not_also_by_the_log(tmp_path):
    import cnnlab
    from cnnlab.errors import CnnlabError

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # a notebook's log display
    logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(CnnlabError, match=r"^optim.lr=-1 is out of range") as raised:
            cnnlab.train(["data=tiny", "optim.lr=-1"], run_dir=tmp_path / "bad")
    finally:
        logging.getLogger().removeHandler(handler)
    assert str(raised.value) not in stream.getvalue()


def model_keys(name: str) -> set[str]:
    return set(yaml.safe_load((REPO / "conf" / "model" / f"{name}.yaml").read_text()))


@pytest.mark.parametrize(
    "net, shape, name, advice",
    [
        (ResNet(blocks_per_stage=[1], num_classes=10, in_channels=3, image_size=64), (3, 64, 64), "resnet",
         "Add blocks per stage (model.blocks_per_stage)."),
        (FastNet(widths=[8], num_classes=10, in_channels=3, image_size=96), (3, 96, 96), "fast",
         "Add conv groups (model.widths)."),
    ],
)  # fmt: skip
def test_the_small_field_advice_names_only_keys_the_model_config_has(net, shape, name, advice):
    warning = too_small_warning(net.features, shape)
    assert final_receptive_field(net.features, shape) < shape[1] and warning.endswith(advice)
    named = {part.split(")")[0] for part in warning.split("(model.")[1:]}
    assert named and named <= model_keys(name) and "model.depth" not in warning


def test_the_small_field_advice_without_any_growing_key_names_none():
    three_convs = torch.nn.Sequential(*(torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(3)))
    warning = too_small_warning(three_convs, (3, 16, 16), model_keys=["width", "activation"])
    assert "(model." not in warning.split("too small for the task'). ")[1]


def test_an_interpolation_on_the_command_line_is_one_line_and_a_valid_one_trains(tmp_path, process_state_restored):
    bad = tmp_path / "bad"
    code, output = run_script(["cnnlab-train", "data=tiny", "model.width=${nope}", f"hydra.run.dir={bad}"])
    lines = output.strip().splitlines()  # Hydra's "Error executing job ..." line came first
    assert code == 2 and len(lines) == 1, output
    assert "model.width: Interpolation key 'nope' not found" in lines[0] and not bad.exists()
    train_cli.run(compose_config([*TINY, "model.width=${data.num_classes}"], tmp_path / "good"))
    saved = json.loads((tmp_path / "good" / "metrics.json").read_text())
    assert saved["status"] == "completed"
