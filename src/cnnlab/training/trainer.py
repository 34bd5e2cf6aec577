"""The Lightning Trainer of a run, built from the trainer, callbacks and logger groups, and the run config
that its module is built from (and that checkpoints store)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from cnnlab.training import callbacks as cb
from cnnlab.training.checkpoints import AtomicCheckpointIO
from cnnlab.training.hardware import resolve_precision
from cnnlab.training.lab_images import LabImages

log = logging.getLogger("cnnlab")

# Lightning's loggers that need a package cnnlab does not install: (the package, how to install it).
_LOGGER_PACKAGES = {
    "MLFlowLogger": ("mlflow", "pip install -e '.[mlflow]' (cnnlab's extra)"),
    "WandbLogger": ("wandb", "pip install wandb"),
    "CometLogger": ("comet_ml", "pip install comet-ml"),
    "NeptuneLogger": ("neptune", "pip install neptune"),
}


def check_loggers(logger_cfg: DictConfig | None) -> None:
    """Refuse a logger whose package is not installed (Lightning finds out only when it builds the logger)."""
    import importlib.util

    from cnnlab.errors import ConfigError

    for name, spec in (logger_cfg or {}).items():
        cls = str(spec.get("_target_", "")).rsplit(".", 1)[-1]
        package, install = _LOGGER_PACKAGES.get(cls, (None, None))
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"logger={name} needs the package {package}, which is not installed here. "
                f"Fix: .venv/bin/{install}, or choose another logger (e.g. logger=tensorboard)."
            )


def check_trainer(cfg: DictConfig) -> None:
    """Build the trainer group's Trainer once, bare (no callbacks, loggers or files), so that a value Lightning
    refuses (trainer.devices=0, a strategy it does not know, a limit fraction above 1) is refused in one line before
    the run directory opens, not with a traceback after it."""
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from cnnlab.errors import ConfigError

    chatter = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # "GPU available: ..." comes later anyway
    disabled, chatter.disabled = chatter.disabled, True
    try:
        instantiate(
            cfg.trainer,
            logger=False,
            callbacks=[],
            enable_checkpointing=False,
            enable_progress_bar=False,
            precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),
        )
    except InstantiationException as e:
        cause = e.__cause__
        if not isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            raise
        raise ConfigError(
            f"Lightning's Trainer refuses a trainer.* value: {' '.join(str(cause).split())} Fix: change the "
            f"trainer.<key> it names (cnnlab-train --cfg job lists them; conf/trainer/default.yaml has the defaults)."
        ) from None
    finally:
        chatter.disabled = disabled


def build_trainer(cfg: DictConfig, run_dir: Path | None, guards: list[L.Callback] = ()) -> L.Trainer:
    """cfg.trainer with the callbacks and loggers groups; for training (run_dir given) the run's guards too.
    Without a validation split (data.val_size=0), callbacks that watch a validation metric are left out."""
    callbacks = list(guards)
    if run_dir is not None:
        ckpt_dir = run_dir / "checkpoints"
        callbacks += [cb.GracefulInterrupt(ckpt_dir), cb.NonFiniteLossGuard(ckpt_dir)]
        chosen = {name: instantiate(c) for name, c in (cfg.callbacks or {}).items()}
        if cfg.data.get("val_size") == 0:
            watching = [name for name, c in chosen.items() if str(getattr(c, "monitor", None)).startswith("val/")]
            if watching:
                log.warning(
                    "data.val_size=0: no validation split, so %s (watching val/) are left out; the test uses "
                    "the last epoch's weights (checkpoints/last.ckpt).",
                    ", ".join(watching),
                )
            chosen = {name: c for name, c in chosen.items() if name not in watching}
        callbacks += list(chosen.values())
        if cfg.lab_images:
            callbacks.append(LabImages())
    if cfg.progress_bar:
        callbacks.append(SteppedRichProgressBar())  # redraws every 10 batches: see its docstring
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()] if run_dir is not None else []
    if not loggers:  # nothing to write a learning-rate curve to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    no_validation = {"limit_val_batches": 0} if cfg.data.get("val_size") == 0 else {}  # no empty val loop
    return instantiate(
        cfg.trainer,
        **no_validation,
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=bool(cfg.progress_bar),
        plugins=[AtomicCheckpointIO()],
        precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),
    )


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without Hydra's section: what rebuilds the run's module (checkpoints store it)."""
    return {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in cfg.items()
        if k != "hydra"
    }


class SteppedRichProgressBar(RichProgressBar):
    """Lightning's RichProgressBar, updated every `every` training batches (and at an epoch's last batch).

    The stock bar asks for a redraw after every batch and its render thread polls 100 times a second; in a
    terminal, py-spy on the default CPU run (1 torch thread) found that thread rendering for ~3% of the training
    loop's samples, holding the GIL the loop needs. Every 10 batches it was below py-spy's resolution, and is
    still several redraws a second on a laptop CPU.
    """

    def __init__(self, every: int = 10, refresh_rate: int = 4, **kwargs) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.every = every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        done = batch_idx + 1
        if done % self.every == 0 or done == self.total_train_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
