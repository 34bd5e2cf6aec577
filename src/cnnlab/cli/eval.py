"""`cnnlab-eval ckpt_path=...`: test a checkpoint with cfg.trainer; the record goes to the eval's own directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cnnlab import config, runs
from cnnlab.cli.train import check_fits
from cnnlab.errors import CnnlabError
from cnnlab.models import count_parameters
from cnnlab.training.checkpoints import load_classifier, saved_config, with_overridden_groups
from cnnlab.training.hardware import check_device, check_threads, threads_for_job
from cnnlab.training.module import ImageClassifier
from cnnlab.training.trainer import build_trainer, check_trainer

log = logging.getLogger("cnnlab")


def effective_config(cfg: DictConfig, saved: dict, overrides: list[str]) -> DictConfig:
    """The checkpoint's config, except groups the command line overrides (e.g. data=tiny, data.data_dir=...)
    and the trainer, which is this command's own (but with the run's precision unless it is overridden, so
    eval reproduces the run's test numbers)."""
    merged = with_overridden_groups(saved, cfg, overrides, cfg.ckpt_path)
    merged.progress_bar = cfg.progress_bar
    precision = merged.trainer.precision  # the precision the run trained and tested in, unless overridden
    merged.trainer = cfg.trainer
    if not any(o.startswith("trainer.precision") for o in overrides):
        merged.trainer.precision = precision
    return merged


def check(cfg: DictConfig, run_dir: Path) -> tuple[ImageClassifier, Any]:
    """The checkpoint's config, checked to exist and to match any model overrides, and its test data, read
    (missing or damaged files are refused here, before the eval's directory is opened)."""
    if not cfg.ckpt_path or cfg.ckpt_path == "???":
        raise CnnlabError("no checkpoint given. Fix: cnnlab-eval ckpt_path=<run dir>/checkpoints/best.ckpt")
    saved = saved_config(cfg.ckpt_path)
    overrides = config.task_overrides(HydraConfig.get())
    run_cfg = effective_config(cfg, saved, overrides)
    check_device(run_cfg)  # the machine and the trainer as cnnlab-train checks them: before the eval's dir opens
    check_threads(cfg.threads)
    check_trainer(run_cfg)
    datamodule = hydra.utils.instantiate(run_cfg.data)  # no augmentation: the test set is never augmented
    if any(o.lstrip("+~").startswith("data") for o in overrides):  # another dataset: its images must fit the model
        check_fits(hydra.utils.instantiate(run_cfg.model), datamodule)
    module = load_classifier(cfg.ckpt_path, OmegaConf.to_container(run_cfg, resolve=True))  # its weights fit it
    check_finite(module, cfg.ckpt_path)
    datamodule.prepare_data()
    datamodule.setup("test")
    return module, datamodule


def check_finite(module: torch.nn.Module, ckpt_path: str) -> None:
    """Refuse a checkpoint with a NaN or infinite weight or buffer: its test numbers would mean nothing (a diverged
    run's argmax of NaN logits scores chance, and was recorded as a completed evaluation)."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    bad = [(name, t) for name, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        name, tensor = bad[0]
        count = int((~torch.isfinite(tensor)).sum())
        raise CnnlabError(
            f"{ckpt_path} holds non-finite weights: {name} has {count} of {tensor.numel()} values NaN or infinite "
            f"({len(bad)} of {len(tensors)} tensors affected), so its test numbers would mean nothing. Fix: "
            f"evaluate a checkpoint saved before the run diverged (e.g. <run dir>/checkpoints/best.ckpt), or train "
            f"again with a lower optim.lr."
        )


def evaluate(cfg: DictConfig, run_dir: Path, checked: tuple[ImageClassifier, Any]) -> dict[str, Any]:
    """Test the checkpoint on its test set (or the overridden data); return the metrics.json record."""
    module, datamodule = checked
    if threads := threads_for_job(cfg.threads, HydraConfig.get()):  # as cnnlab-train applies it
        torch.set_num_threads(threads)
    run_cfg = OmegaConf.create(module.config)
    trainer = build_trainer(run_cfg, None)
    result = trainer.test(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, verbose=False)[0]
    log.info("test/acc %.4f  test/loss %.4f  (%s)", result["test/acc"], result["test/loss"], cfg.ckpt_path)
    return {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "test_acc": result["test/acc"],
        "test_loss": result["test/loss"],
        "test_acc_tta": result.get("test/acc_tta"),
        "test_tta_share": result.get("test/tta_share"),
        "test_consistency": result.get("test/consistency"),
        "params": count_parameters(module.net),
        "data": run_cfg.data._target_.rsplit(".", 1)[-1],
    }


def run(cfg: DictConfig) -> float | None:
    """One evaluation under the shared run policy: returns the test accuracy, None if it failed in a sweep."""
    return runs.run_job(cfg, check=check, job=evaluate)


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="eval")
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra's entry."""
    return run(cfg)


main = runs.console_script(hydra_main, composes="eval")

if __name__ == "__main__":
    main()
