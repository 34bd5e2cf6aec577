"""Every file in conf/ composes, and the objects it describes can be built."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from cnnlab.config import config_dir
from cnnlab.data.cifar10 import CIFAR10DataModule
from cnnlab.data.tiny import TinyDataModule
from cnnlab.lab.tools import build_datamodule
from cnnlab.models.cnn import ConvNet
from cnnlab.models.fast import FastNet
from cnnlab.models.mlp import MLP
from cnnlab.training.module import ImageClassifier
from cnnlab.training.optim import Muon
from cnnlab.training.trainer import run_config
from conftest import compose_config

CONF = Path(config_dir())
GROUPS = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"}


def build_module(cfg):
    return ImageClassifier(run_config(cfg))


OPTIONS = [(g, o) for g, opts in sorted(GROUPS.items()) for o in opts]
# What each option must build, written from the option's description (not read back from the YAML by code).
AUGMENT_OPS = {
    "none": [],
    "flip": ["flip"],
    "vflip": ["vflip"],
    "crop": ["crop"],
    "crop_flip": ["crop", "flip"],
    "flip_translate": ["crop", "flip"],
    "alt_flip_translate": ["flip", "crop"],  # the alternating flip must see the untouched image
    "color_jitter": ["color_jitter"],
    "cutout": ["cutout"],
    "crop_flip_cutout": ["crop", "flip", "cutout"],
    "autoaugment": ["crop", "flip", "autoaugment"],
    "trivialaugment": ["crop", "flip", "trivialaugment"],
    "rotate90": ["rotate90"],
}
MODEL_CLASS = {"cnn": ConvNet, "fast": FastNet, "mlp": MLP}
OPTIM_CLASS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW, "airbench": torch.optim.SGD, "muon": Muon}


def test_every_group_has_options():
    assert {"data", "augment", "model", "optim", "schedule", "trainer"} <= set(GROUPS)
    assert {
        "none",
        "flip",
        "crop",
        "crop_flip",
        "color_jitter",
        "cutout",
        "crop_flip_cutout",
        "autoaugment",
        "trivialaugment",
    } <= set(GROUPS["augment"])


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_config_file_composes_and_builds(group, option, tmp_path):
    overrides = [f"{group}={option}"] if group == "data" else ["data=tiny", f"{group}={option}"]
    if group == "augment" and option in ("vflip", "rotate90"):
        overrides.append("augment.allow_label_unsafe=true")
    cfg = compose_config(overrides, tmp_path)
    if group == "data":
        dm = instantiate(cfg.data, data_dir=str(tmp_path)) if option == "cifar10" else build_datamodule(cfg)
        assert type(dm) is {"cifar10": CIFAR10DataModule, "tiny": TinyDataModule}[option]
        assert dm.num_classes == 10
    if group in ("augment", "model", "optim", "schedule"):
        module, dm = build_module(cfg), build_datamodule(cfg)
        assert isinstance(dm, TinyDataModule)
        if group == "augment":
            assert dm.augment.names == AUGMENT_OPS[option]
            assert dm.augment.allow_label_unsafe == (option in ("vflip", "rotate90"))
        if group == "model":
            assert type(module.net) is MODEL_CLASS[option]
        if group == "optim":
            optimizer = instantiate(cfg.optim)
            assert optimizer.func is OPTIM_CLASS[option] and optimizer.keywords["lr"] > 0
        if group == "schedule":
            assert instantiate(cfg.schedule).func.__name__ == {"none": "constant"}.get(option, option)
    if group in ("logger", "callbacks"):
        assert all(entry._target_.startswith("lightning.pytorch.") for entry in (cfg[group] or {}).values())
    if group == "trainer":
        assert cfg.trainer.max_epochs > 0 and cfg.trainer._target_.endswith("Trainer")


@pytest.mark.parametrize("name", ["train", "eval"])
def test_top_level_configs_compose(name, tmp_path):
    cfg = compose_config(["ckpt_path=x.ckpt"] if name == "eval" else [], tmp_path, name=name)
    assert cfg.model.depth == 4 and cfg.augment.ops
