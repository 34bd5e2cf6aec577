"""Build the run's objects from a composed config; shared by training, evaluation and the lab tools."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.training.hardware import resolve_channels_last
from cnnlab.training.module import ImageClassifier


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    """The data group's datamodule with the augment group's pipeline plugged in."""
    return instantiate(cfg.data, augment=instantiate(cfg.augment))


def build_net(cfg: DictConfig) -> nn.Module:
    """The model group's backbone (a plain nn.Module)."""
    return instantiate(cfg.model)


def build_module(cfg: DictConfig, net: nn.Module | None = None) -> ImageClassifier:
    """The LightningModule around the backbone, with optimizer and schedule from their groups."""
    return ImageClassifier(
        net if net is not None else build_net(cfg),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        schedule=OmegaConf.to_container(cfg.schedule, resolve=True),
        label_smoothing=cfg.label_smoothing,
        config=run_config(cfg),
        channels_last=resolve_channels_last(cfg.get("channels_last", False), cfg.trainer.get("accelerator", "auto")),
    )


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without Hydra's own section: what a checkpoint needs to rebuild the run."""
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra"}


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def flat_hparams(cfg: DictConfig, choices: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config as flat 'group/key' scalars for TensorBoard's HParams tab."""
    flat: dict[str, Any] = {f"choice/{k}": str(v) for k, v in (choices or {}).items() if not k.startswith("hydra")}
    for group in ("model", "optim", "schedule"):
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if key != "_target_":
                flat[f"{group}/{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    flat.update({"seed": cfg.seed, "label_smoothing": cfg.label_smoothing, "data/batch_size": cfg.data.batch_size,
                 "data/train_subset": str(cfg.data.train_subset), "trainer/max_epochs": cfg.trainer.max_epochs})
    return flat
