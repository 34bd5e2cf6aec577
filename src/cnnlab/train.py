"""`cnnlab-train`: compose the config, train, test, and write metrics.json into the run directory."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from cnnlab import config
from cnnlab.quiet import quiet
from cnnlab.builders import build_datamodule, build_module, count_parameters, flat_hparams
from cnnlab.errors import CnnlabError, user_error
from cnnlab.lab.receptive_field import final_receptive_field, too_small_warning
from cnnlab.lab.cli import console
from cnnlab.lab.summary import summary_table
from cnnlab.training.callbacks import (GracefulInterrupt, NonFiniteLossGuard, ReseedEachEpoch, RunInterrupted,
                                       ThroughputMeter)
from cnnlab.training.checkpoints import resume_checkpoint
from cnnlab.training.hardware import resolve_run_settings, threads_for_job
from cnnlab.training.lab_images import LabImages
from cnnlab.training.progress import SteppedRichProgressBar
from cnnlab.training.records import read_metrics, write_metrics

log = logging.getLogger("cnnlab")
HP_METRICS = ("hp/val_acc_best", "hp/test_acc")
config.register_resolvers()
quiet()


def build_trainer(cfg: DictConfig, run_dir: Path, meter: ThroughputMeter) -> L.Trainer:
    """The Lightning Trainer with TensorBoard logging, checkpoints and the run's callbacks."""
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/acc", mode="max", save_last=True),
        LearningRateMonitor(logging_interval="epoch"),
        meter, ReseedEachEpoch(cfg.seed), GracefulInterrupt(ckpt_dir), NonFiniteLossGuard(ckpt_dir),
    ]
    if cfg.lab_images:
        callbacks.append(LabImages())
    callbacks += [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if cfg.progress_bar:
        callbacks.append(SteppedRichProgressBar())  # redraws every 10 batches: see its docstring
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False)
    return hydra.utils.instantiate(cfg.trainer, logger=logger, callbacks=callbacks,
                                   enable_progress_bar=bool(cfg.progress_bar))


def describe_run(net, datamodule, trainer: L.Trainer) -> None:
    """Print the model table with receptive fields, the augmentation, and an RF warning where it applies."""
    if not trainer.is_global_zero:
        return
    console().print(summary_table(net))
    log.info("augment: %s", datamodule.augment)
    features = getattr(net, "features", None)
    warning = too_small_warning(features) if features is not None else None
    if warning:
        log.warning(warning)


def fit_and_test(cfg: DictConfig, run_dir: Path, progress: dict[str, bool]) -> dict[str, Any]:
    """Train and test one configuration; return the numbers that go into metrics.json.

    Sets progress["fit_started"] once training begins, so a resume refused before that leaves the run's
    existing metrics.json untouched.
    """
    config.validate(cfg)
    settings = resolve_run_settings(cfg)  # precision/channels_last `auto` → this machine's choice, logged
    ckpt = resume_checkpoint(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    params = count_parameters(module.net)
    if cfg.get("compile"):
        module.net.compile()  # in place: checkpoints keep their plain parameter names
    features = getattr(module.net, "features", None)
    rf = final_receptive_field(features) if features is not None else 32  # an MLP sees the whole image
    meter = ThroughputMeter()
    trainer = build_trainer(cfg, run_dir, meter)
    describe_run(module.net, datamodule, trainer)
    hparams = {**flat_hparams(cfg, HydraConfig.get().runtime.choices), "params": params, "receptive_field": rf}
    trainer.logger.log_hyperparams(hparams, {m: 0.0 for m in HP_METRICS})
    progress["fit_started"] = True
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
    checkpoint = trainer.checkpoint_callback
    val_final = float(trainer.callback_metrics.get("val/acc", float("nan")))
    test = trainer.test(module, datamodule=datamodule, ckpt_path="best" if checkpoint.best_model_path else None,
                        verbose=False)[0]
    val_best = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else val_final
    trainer.logger.log_metrics({"hp/val_acc_best": val_best, "hp/test_acc": test["test/acc"]}, step=trainer.global_step)
    return {
        "val_acc_final": val_final, "val_acc_best": val_best, "test_acc": test["test/acc"],
        "test_loss": test["test/loss"], "test_acc_tta": test.get("test/acc_tta"), "epochs": trainer.current_epoch, "params": params, "receptive_field": rf,
        "train_images_per_s": meter.images_per_second, "best_checkpoint": checkpoint.best_model_path,
        "world_size": trainer.world_size, "is_global_zero": trainer.is_global_zero, **settings,
    }


def run(cfg: DictConfig) -> float | None:
    """One Hydra job: returns best val/acc (Optuna maximises it), or None when the job failed."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    previous = read_metrics(run_dir)
    if previous is not None and not (cfg.resume or cfg.ckpt_path):
        log.error("%s already holds a run (status %s); refusing to overwrite it. Fix: choose another hydra.run.dir, "
                  "or resume it with resume=%s.", run_dir, previous.get("status"), run_dir)
        return _exit(multirun, 2)
    record: dict[str, Any] = {"status": "running", "seed": cfg.seed, "overrides": list(hydra_cfg.overrides.task),
                              "choices": {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")}}
    start = time.perf_counter()
    progress = {"fit_started": False}
    try:
        record.update(fit_and_test(cfg, run_dir, progress))
        record["status"] = "completed"
    except RunInterrupted as e:
        record.update(status="interrupted", error=str(e), signal=e.signum)
        log.warning("%s Resume with: cnnlab-train resume=%s (plus the same overrides).", e, run_dir)
    except Exception as e:
        cause = user_error(e)
        if cause is not None:  # bad input: one clear message, no traceback
            record.update(status="failed", error=str(cause))
            log.error("%s", cause)
        else:  # an unexpected bug: keep the traceback in the job log, and the sweep going
            record.update(status="failed", error=f"{type(e).__name__}: {e}")
            log.exception("job failed")
            if not multirun:
                if previous is None or progress["fit_started"]:
                    _save(run_dir, record, start)
                raise
    if previous is not None and not progress["fit_started"]:
        log.error("%s keeps its metrics.json (status %s) unchanged.", run_dir, previous.get("status"))
    elif record.pop("is_global_zero", True):
        _save(run_dir, record, start)
    if record["status"] != "completed":
        return _exit(multirun, 128 + record["signal"] if record["status"] == "interrupted" else 2)
    return record["val_acc_best"]


def _save(run_dir: Path, record: dict[str, Any], start: float) -> None:
    record["wall_s"] = round(time.perf_counter() - start, 3)
    write_metrics(run_dir, record)


def _exit(multirun: bool, code: int) -> None:
    """A single run exits non-zero now; in a sweep the job is recorded and the sweep goes on."""
    if not multirun:
        sys.exit(code)
    return None


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Console entry point `cnnlab-train`."""
    torch.set_float32_matmul_precision("high")
    threads = threads_for_job(cfg.get("threads"), HydraConfig.get())  # joblib sweeps split the cores
    if threads:
        torch.set_num_threads(threads)
    return run(cfg)


if __name__ == "__main__":
    main()
