"""Every YAML file in conf/ composes, passes the checks a run makes before it starts (config.validate), builds
every object it describes, and (data, augment, model, optim, schedule) trains one batch: properties checked
generically, so an option a user adds is tested as it is, never rejected for being unknown. What the built-in
options must build is pinned separately, and only for the options it names
(test_the_built_in_options_build_what_they_describe)."""

import copy
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import OmegaConf, open_dict
from optuna.distributions import CategoricalDistribution

from cnnlab import config
from cnnlab.data.cifar10 import CIFAR10DataModule
from cnnlab.data.digits import DigitsDataModule
from cnnlab.data.imagefolder import ImageFolderDataModule
from cnnlab.data.tiny import TinyDataModule
from cnnlab.data.torchvision_sets import CIFAR100DataModule, FashionMNISTDataModule, MNISTDataModule, SVHNDataModule
from cnnlab.errors import user_error
from cnnlab.models.cnn import ConvNet
from cnnlab.models.fast import FastNet
from cnnlab.models.mlp import MLP
from cnnlab.models.resnet import ResNet
from cnnlab.sweep import SPACE_GROUP, check_search_space
from cnnlab.training.module import ImageClassifier
from cnnlab.training.optim import Muon
from cnnlab.training.trainer import build_trainer, run_config
from conftest import compose_config

CONF = Path(config.config_dir())
GROUPS = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"}
OPTIONS = [(g, o) for g, opts in sorted(GROUPS.items()) for o in opts]
TRAINED = ("data", "augment", "model", "optim", "schedule")  # every option of these trains one batch
DATA_LOCATION = ("data_dir", "root")  # where a data config reads its files: pointed at an empty folder here
COMMON_SPACE = {"optim.lr", "optim.weight_decay"}  # conf/hparams_search/optuna.yaml, for every model


def compose_option(group, option, tmp_path):
    """(config, its defaults) for `group=option`: other groups at their defaults, on data=tiny (a data option with
    augment=none and model=mlp: they fit any labels and image size). An option that reads files reads them from
    an empty folder and downloads nothing; an augmentation may change what tiny's labels mean."""
    overrides = (
        [f"{group}={option}", "augment=none", "model=mlp"] if group == "data" else ["data=tiny", f"{group}={option}"]
    )
    cfg = compose_config(overrides, tmp_path / "run")
    defaults = copy.deepcopy(cfg)  # the same choices without value overrides: what cnnlab-train checks against
    (tmp_path / "data").mkdir()
    with open_dict(cfg):
        for key in DATA_LOCATION:
            if key in cfg.data:
                cfg.data[key] = str(tmp_path / "data")
        if "download" in cfg.data:
            cfg.data.download = False
        if group == "augment" and "allow_label_unsafe" in cfg.augment:
            cfg.augment.allow_label_unsafe = True
    return cfg, defaults


def one_batch(cfg):
    """Lightning's fast_dev_run (one training and one validation batch), on small batches of a small set."""
    with open_dict(cfg):
        cfg.trainer.fast_dev_run = 1
        cfg.lab_images = cfg.progress_bar = False
        for key, value in (("batch_size", 16), ("eval_batch_size", 16), ("train_count", 64), ("test_count", 16)):
            if key in cfg.data:
                cfg.data[key] = value
        if isinstance(cfg.data.get("val_size"), int) and cfg.data.val_size > 0:
            cfg.data.val_size = 16


def build(cfg, run_dir):
    """What a run builds from its config, in cnnlab-train's order: the datamodule, the module (with the backbone),
    the trainer with the callbacks and loggers."""
    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment))
    return ImageClassifier(run_config(cfg)), datamodule, build_trainer(cfg, run_dir)


def missing_package(exc):
    """The ModuleNotFoundError behind `exc` (an optional package not installed, e.g. mlflow), or None."""
    while exc is not None and not isinstance(exc, ModuleNotFoundError):
        exc = exc.__cause__
    return exc


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_config_composes_passes_validation_builds_and_trains(group, option, tmp_path):
    cfg, defaults = compose_option(group, option, tmp_path)
    config.validate(cfg, defaults)
    if group in TRAINED:
        one_batch(cfg)
    reads_files = group == "data" and any(key in cfg.data for key in DATA_LOCATION)
    try:
        module, datamodule, trainer = build(cfg, tmp_path / "run")
        before = [p.detach().clone() for p in module.parameters() if p.requires_grad]
        if group in TRAINED:
            trainer.fit(module, datamodule=datamodule)
    except Exception as e:
        if missing_package(e) is not None:
            pytest.skip(f"{group}={option} needs a package that is not installed: {missing_package(e)}")
        if reads_files and user_error(e) is not None:  # its own one-line refusal of the empty folder
            pytest.skip(f"data={option} reads files this test does not have: {user_error(e)}")
        raise
    if group in TRAINED:
        after = [p.detach() for p in module.parameters() if p.requires_grad]
        assert trainer.global_step == 1 and all(torch.isfinite(p).all() for p in after)
        assert any(not torch.equal(b, a) for b, a in zip(before, after)), "one optimizer step changed no weight"


NESTED = sorted({str(p.parent.relative_to(CONF)) for p in CONF.glob("*/*/*.yaml")} - {"hydra/job_logging"})


def test_every_nested_config_folder_is_checked_here():
    """A config folder inside a group is composed in its own way: each must have its test in this file."""
    assert NESTED == [SPACE_GROUP]


@pytest.mark.parametrize("model", sorted(p.stem for p in (CONF / SPACE_GROUP).glob("*.yaml")))
def test_every_search_space_composes_for_its_model_and_every_value_it_draws_builds(model, tmp_path):
    assert model in GROUPS["model"], f"conf/{SPACE_GROUP}/{model}.yaml is named after no model in conf/model/"
    cfg = compose_config(["hparams_search=optuna", f"model={model}", "data=tiny"], tmp_path)
    own = OmegaConf.load(CONF / SPACE_GROUP / f"{model}.yaml")
    space = dict(cfg.hydra.sweeper.params)
    assert set(own) | COMMON_SPACE <= set(space)
    check_search_space(cfg)  # every searched key is a key of the config
    distributions, _ = create_params_from_overrides([f"{k}={v}" for k, v in space.items()])
    assert set(distributions) == set(space)
    for key in own:  # the ends of each range and every choice build the model
        dist = distributions[key]
        values = dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        for value in values:
            drawn = copy.deepcopy(cfg)
            OmegaConf.update(drawn, key, value)
            assert instantiate(drawn.model) is not None


# What each built-in option must build, written from the option's description (not read back from the YAML by
# code). Only these options are checked here; an option added to conf/ is checked by the generic tests above.
AUGMENT_OPS = {
    "none": [],
    "flip": ["flip"],
    "vflip": ["vflip"],
    "crop": ["crop"],
    "crop_flip": ["crop", "flip"],
    "flip_translate": ["crop", "flip"],
    "alt_flip_translate": ["flip", "crop"],  # the alternating flip must see the untouched image
    "alt_flip_translate_jitter": ["flip", "crop", "brightness_contrast"],
    "color_jitter": ["color_jitter"],
    "cutout": ["cutout"],
    "crop_flip_cutout": ["crop", "flip", "cutout"],
    "autoaugment": ["crop", "flip", "autoaugment"],
    "trivialaugment": ["crop", "flip", "trivialaugment"],
    "rotate90": ["rotate90"],
    "mixup": ["crop", "flip", "mixup"],  # the label-mixing op comes last
    "cutmix": ["crop", "flip", "cutmix"],
}
LABEL_UNSAFE_ALLOWED = ("vflip", "rotate90")  # options that allow ops tiny refuses: tiny refuses rotate90
MODEL_CLASS = {"cnn": ConvNet, "fast": FastNet, "mlp": MLP, "resnet": ResNet}
DATA_CLASS = {  # (datamodule, class count)
    "cifar10": (CIFAR10DataModule, 10),
    "tiny": (TinyDataModule, 10),
    "cifar100": (CIFAR100DataModule, 100),
    "svhn": (SVHNDataModule, 10),
    "mnist": (MNISTDataModule, 10),
    "fashion_mnist": (FashionMNISTDataModule, 10),
    "digits": (DigitsDataModule, 10),
    "imagefolder": (ImageFolderDataModule, 2),
}
OPTIM_CLASS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW, "airbench": torch.optim.SGD, "muon": Muon}
SCHEDULE_FUNCTION = {
    "onecycle": "onecycle",
    "cosine": "cosine",
    "triangle": "triangle",
    "linear": "linear",
    "none": "constant",
}
PINNED = [
    *(("augment", o) for o in AUGMENT_OPS),
    *(("model", o) for o in MODEL_CLASS),
    *(("data", o) for o in DATA_CLASS),
    *(("optim", o) for o in OPTIM_CLASS),
    *(("schedule", o) for o in SCHEDULE_FUNCTION),
]


def test_every_group_has_options():
    assert {"data", "augment", "model", "optim", "schedule", "trainer"} <= set(GROUPS)
    assert {g: o for g, o in PINNED if o not in GROUPS.get(g, [])} == {}, "a built-in option is gone"


@pytest.mark.parametrize("group, option", PINNED)
def test_the_built_in_options_build_what_they_describe(group, option, tmp_path):
    overrides = [f"{group}={option}"] if group == "data" else ["data=tiny", f"{group}={option}"]
    if group == "augment" and option in LABEL_UNSAFE_ALLOWED:
        overrides.append("augment.allow_label_unsafe=true")
    if group == "data":
        overrides.append("augment=none")  # digit sets refuse flips
    if option == "imagefolder":  # two class folders: nothing else is read before setup()
        for name in ("a", "b"):
            (tmp_path / "images" / name).mkdir(parents=True)
        overrides.append(f"data.root={tmp_path / 'images'}")
    for key in ("data_dir",) if group == "data" and option not in ("tiny", "digits", "imagefolder") else ():
        overrides.append(f"data.{key}={tmp_path}")
    cfg = compose_config(overrides, tmp_path)
    if group == "data":
        dm = instantiate(cfg.data, augment=instantiate(cfg.augment))
        assert (type(dm), dm.num_classes) == DATA_CLASS[option] and cfg.model.num_classes == dm.num_classes
    if group == "augment":
        augment = instantiate(cfg.augment)
        assert augment.names == AUGMENT_OPS[option] and augment.allow_label_unsafe == (option in LABEL_UNSAFE_ALLOWED)
    if group == "model":
        assert type(instantiate(cfg.model)) is MODEL_CLASS[option]
    if group == "optim":
        optimizer = instantiate(cfg.optim)
        assert optimizer.func is OPTIM_CLASS[option] and optimizer.keywords["lr"] > 0
    if group == "schedule":
        assert instantiate(cfg.schedule).func.__name__ == SCHEDULE_FUNCTION[option]


def test_the_built_in_loggers_callbacks_and_trainers_are_lightnings(tmp_path):
    for group in ("logger", "callbacks"):
        for option in set(GROUPS[group]) & {"tensorboard", "csv", "mlflow", "none", "default", "early_stopping"}:
            cfg = compose_config([f"{group}={option}"], tmp_path)
            assert all(entry._target_.startswith("lightning.pytorch.") for entry in (cfg[group] or {}).values())
    for option in set(GROUPS["trainer"]) & {"default", "ddp_sim"}:
        cfg = compose_config([f"trainer={option}"], tmp_path)
        assert cfg.trainer.max_epochs > 0 and cfg.trainer._target_ == "lightning.pytorch.Trainer"


@pytest.mark.parametrize("name", ["train", "eval"])
def test_top_level_configs_compose(name, tmp_path):
    cfg = compose_config(["ckpt_path=x.ckpt"] if name == "eval" else [], tmp_path, name=name)
    assert cfg.model.depth == 4 and cfg.augment.ops
