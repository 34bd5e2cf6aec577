"""`cnnlab-train`: compose the config, train, test the best checkpoint, record the run in metrics.json."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from cnnlab import config, runs
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.models import Backbone, count_macs, count_parameters
from cnnlab.models.receptive_field import final_receptive_field, too_small_warning
from cnnlab.models.summary import summary_table
from cnnlab.training import callbacks as cb
from cnnlab.training.checkpoints import resume_checkpoint
from cnnlab.training.hardware import (
    check_device,
    check_threads,
    nhwc_hazards,
    resolve_channels_last,
    resolve_run_settings,
    threads_for_job,
)
from cnnlab.training.module import ImageClassifier
from cnnlab.training.trainer import build_trainer, check_loggers, check_trainer, run_config

log = logging.getLogger("cnnlab")
HP_METRICS = ("hp/val_acc_best", "hp/test_acc", "hp/test_consistency")


class Checked(NamedTuple):
    """What check() built and read, handed to train(): the data, loaded, and the checkpoint to resume from."""

    datamodule: ImageDataModule
    resume_from: Path | None
    nhwc_hazards: list[str]  # the model's convolutions that oneDNN gets wrong in NHWC (hardware.nhwc_hazards)


def train(cfg: DictConfig, run_dir: Path, checked: Checked) -> dict[str, Any]:
    """Fit and test one configuration; return the numbers that go into metrics.json."""
    if threads := threads_for_job(cfg.threads, HydraConfig.get()):  # after validation: threads >= 1
        torch.set_num_threads(threads)
    datamodule, resume_from, hazards = checked
    settings = resolve_run_settings(cfg, hazards)  # precision/channels_last `auto` → this machine's choice, into cfg
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = ImageClassifier(run_config(cfg))
    shape = datamodule.input_shape
    backbone = module.net if isinstance(module.net, Backbone) else None  # any nn.Module trains; tables need features
    params, macs = count_parameters(module.net), count_macs(module.net, shape)
    rf = final_receptive_field(backbone.features, shape) if backbone is not None else None
    if cfg.compile:
        module.net.compile()  # in place: checkpoints keep their plain parameter names
    meter = cb.ThroughputMeter()
    trainer = build_trainer(cfg, run_dir, [meter, cb.ReseedEachEpoch(cfg.seed), cb.ReportEpochs()])
    if trainer.is_global_zero:
        if backbone is not None:
            runs.console().print(summary_table(backbone, shape))
        else:
            log.info(
                "%s: %s parameters; no model table or receptive field: it is not a cnnlab.models.Backbone "
                "(features + head, docs/extending.md)",
                type(module.net).__name__,
                f"{params:,}",
            )
        log.info("augment: %s", datamodule.augment)
        if backbone is not None and (warning := too_small_warning(backbone.features, shape)):
            log.warning(warning)
    hparams = {**runs.flat_hparams(cfg), "params": params, "macs": macs, "receptive_field": rf}
    for logger in trainer.loggers:  # TensorBoard's HParams tab needs the metrics it will compare declared
        logger.log_hyperparams(
            hparams, *([{m: 0.0 for m in HP_METRICS}] if isinstance(logger, TensorBoardLogger) else [])
        )
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    best = trainer.checkpoint_callback
    best_path = best.best_model_path if best is not None else ""
    val_final = float(trainer.callback_metrics["val/acc"]) if "val/acc" in trainer.callback_metrics else None
    test = trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)[0]
    consistency = test.get("test/consistency")
    val_best = float(best.best_model_score) if best is not None and best.best_model_score is not None else val_final
    for logger in trainer.loggers:
        hp = {"hp/val_acc_best": val_best, "hp/test_acc": test["test/acc"], "hp/test_consistency": consistency}
        logger.log_metrics({k: v for k, v in hp.items() if v is not None}, step=trainer.global_step)
        logger.finalize("success")  # flush and close files before the record says "completed"
    return {
        "val_acc_final": val_final,
        "val_acc_best": val_best,
        "test_acc": test["test/acc"],
        "test_loss": test["test/loss"],
        "test_acc_tta": test.get("test/acc_tta"),
        "test_tta_share": test.get("test/tta_share"),  # with tta_select: the share of images given the views
        "test_consistency": consistency,
        "consistency_shift": module.consistency_shift,
        "epochs": trainer.current_epoch,
        "params": params,
        "macs": macs,
        "receptive_field": rf,
        "train_images_per_s": meter.images_per_second,
        "best_checkpoint": best_path,
        "curves": module.curves,
        "world_size": trainer.world_size,
        "mixes_labels": datamodule.augment.mixes_labels,  # train acc on mixed images: cnnlab-compare notes it
        **settings,
    }


def check(cfg: DictConfig, run_dir: Path) -> Checked:
    """Everything that can be refused before a file is written: the model's arguments and its fit to the data,
    the data itself (read from disk here, kept for the run), the machine and the resume."""
    check_device(cfg)
    check_threads(cfg.threads)
    check_loggers(cfg.logger)
    check_trainer(cfg)
    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment))
    net = instantiate(cfg.model)
    check_fits(net, datamodule)
    hazards = nhwc_hazards(net)
    resolve_channels_last(cfg.get("channels_last", "auto"), cfg.trainer.get("accelerator", "auto"), hazards)
    if cfg.consistency_shift is not None and cfg.consistency_shift >= min(
        datamodule.image_size
    ):  # reflect padding needs a wider image than the shift
        smallest = min(datamodule.image_size)
        raise ConfigError(
            f"consistency_shift={cfg.consistency_shift} is not below the {smallest}-px side of {datamodule.name}'s "
            f"images. Fix: e.g. consistency_shift={max(1, smallest // 8)} (or 0 to turn the measure off)."
        )
    resume_from = resume_checkpoint(cfg, run_dir, HydraConfig.get().runtime.choices.get("debug"))
    datamodule.prepare_data()  # last: reading the data is the slow part
    datamodule.setup("fit")
    check_batches(cfg.trainer, datamodule)
    return Checked(datamodule, resume_from, hazards)


def check_batches(trainer_cfg: DictConfig, datamodule: ImageDataModule) -> None:
    """Refuse an epoch of no training batches (it would record untrained weights as a completed run), and
    overfit_batches where Lightning would swap cnnlab's batch sampler."""
    n = len(datamodule.train_set)
    per_epoch = n // datamodule.batch_size if datamodule.drop_last else -(-n // datamodule.batch_size)
    limit = trainer_cfg.get("limit_train_batches")
    if limit is not None and not isinstance(limit, bool):
        per_epoch = min(per_epoch, int(limit * per_epoch) if isinstance(limit, float) else int(limit))
    overfit = trainer_cfg.get("overfit_batches") or 0
    if overfit:
        datamodule.check_overfit_loader(overfit)
        per_epoch = min(per_epoch, int(overfit * per_epoch) if isinstance(overfit, float) else int(overfit))
    if per_epoch < 1:
        raise ConfigError(
            f"an epoch would hold no training batch: {n} training images of {datamodule.name}, "
            f"data.batch_size={datamodule.batch_size}{', data.drop_last=true' if datamodule.drop_last else ''}"
            f"{f', trainer.limit_train_batches={limit}' if limit is not None else ''}. Fix: "
            + (
                "trainer.limit_train_batches=1 or more (or a fraction that keeps a batch)."
                if limit is not None and n >= datamodule.batch_size
                else f"data.batch_size<={n}{' or data.drop_last=false' if datamodule.drop_last else ''}."
            )
        )


@torch.no_grad()
def check_fits(net: torch.nn.Module, datamodule) -> None:
    """Refuse, in one line, a model that does not take the data's images or does not give one logit per class:
    one forward pass on two blank images of the declared shape (no data loads)."""
    if not isinstance(net, torch.nn.Module):  # a user's model config without _target_, or one naming no network
        built = "has no _target_" if isinstance(net, DictConfig) else f"builds a {type(net).__qualname__}"
        raise ConfigError(
            f"the model config {built}, not a torch.nn.Module: there is no network to train. Fix: give it "
            f"_target_: <package.module.Class> of an nn.Module (e.g. cnnlab.models.cnn.ConvNet; docs/extending.md)."
        )
    shape, classes = datamodule.input_shape, datamodule.num_classes
    was_training = net.training
    net.eval()
    try:
        logits = net(torch.zeros(2, *shape))
    except RuntimeError as e:
        raise ConfigError(
            f"the model does not take {datamodule.name}'s {'×'.join(map(str, shape))} images "
            f"(data.in_channels={shape[0]}, data.image_size=[{shape[1]},{shape[2]}]): {str(e).splitlines()[0]} "
            f"Fix: let the model read the data's shape (model.in_channels: ${{data.in_channels}}, "
            f"model.image_size: ${{data.image_size}}), or change the data's."
        ) from None
    finally:
        net.train(was_training)
    if tuple(logits.shape) != (2, classes):
        raise ConfigError(
            f"the model gives {tuple(logits.shape)[1:]} outputs per image, but {datamodule.name} has {classes} classes "
            f"(data.num_classes={classes}). Fix: let the model read the class count from the data "
            f"(model.num_classes: ${{data.num_classes}}; remove a model.num_classes override)."
        )


def run(cfg: DictConfig) -> float | None:
    """One Hydra job under the shared run policy: returns best val/acc (Optuna maximises it), None if it failed."""
    return runs.run_job(cfg, check=check, job=train)


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra's entry: matmul precision, then the job."""
    torch.set_float32_matmul_precision("high")
    return run(cfg)


main = runs.console_script(hydra_main, composes="train")

if __name__ == "__main__":
    main()
