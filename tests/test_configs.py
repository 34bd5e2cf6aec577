"""Every file in conf/ composes, and the objects it describes can be built."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from cnnlab.config import config_dir
from cnnlab.lab.tools import build_datamodule
from cnnlab.cli.train import run_config
from cnnlab.training.module import ImageClassifier
from conftest import compose_config

CONF = Path(config_dir())
GROUPS = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"}


def build_module(cfg):
    return ImageClassifier(run_config(cfg))
OPTIONS = [(g, o) for g, opts in sorted(GROUPS.items()) for o in opts]


def test_every_group_has_options():
    assert {"data", "augment", "model", "optim", "schedule", "trainer"} <= set(GROUPS)
    assert {"none", "flip", "crop", "crop_flip", "color_jitter", "cutout", "crop_flip_cutout", "autoaugment",
            "trivialaugment"} <= set(GROUPS["augment"])


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_config_file_composes_and_builds(group, option, tmp_path):
    overrides = [f"{group}={option}"] if group == "data" else ["data=tiny", f"{group}={option}"]
    if group == "augment" and option in ("vflip", "rotate90"):
        overrides.append("augment.allow_label_unsafe=true")
    cfg = compose_config(overrides, tmp_path)
    if group in ("data", "augment", "model", "optim", "schedule"):
        build_module(cfg)
        if group != "data":
            build_datamodule(cfg)
        else:
            instantiate(cfg.data, data_dir=str(tmp_path)) if option == "cifar10" else build_datamodule(cfg)


@pytest.mark.parametrize("name", ["train", "eval"])
def test_top_level_configs_compose(name, tmp_path):
    cfg = compose_config(["ckpt_path=x.ckpt"] if name == "eval" else [], tmp_path, name=name)
    assert cfg.model.depth == 3 and cfg.augment.ops
