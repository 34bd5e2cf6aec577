"""`cnnlab-eval ckpt_path=...`: test a checkpoint and write metrics.json into a fresh run directory."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cnnlab import config
from cnnlab.quiet import quiet
from cnnlab.builders import build_datamodule, build_module, count_parameters
from cnnlab.errors import CnnlabError, user_error
from cnnlab.training.checkpoints import check_model_matches, load_checkpoint
from cnnlab.training.hardware import resolve_precision
from cnnlab.training.records import write_metrics

log = logging.getLogger("cnnlab")
config.register_resolvers()
quiet()


def effective_config(cfg: DictConfig, saved: dict, overrides: list[str]) -> DictConfig:
    """The checkpoint's config, except groups the command line overrides (e.g. data=tiny, data.data_dir=...)."""
    merged = OmegaConf.create(saved)
    for group in ("data", "model"):
        if any(o.lstrip("+~").startswith(group) for o in overrides):
            merged[group] = cfg[group]
    return merged


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    """Test the checkpoint on its test set; return the metrics.json record."""
    if not cfg.ckpt_path:
        raise CnnlabError("no checkpoint given. Fix: cnnlab-eval ckpt_path=<run dir>/checkpoints/best.ckpt")
    checkpoint = load_checkpoint(cfg.ckpt_path)
    run_cfg = effective_config(cfg, checkpoint["cnnlab_config"], list(HydraConfig.get().overrides.task))
    check_model_matches(checkpoint, OmegaConf.to_container(run_cfg.model, resolve=True), cfg.ckpt_path)
    module = build_module(run_cfg)
    module.load_state_dict(checkpoint["state_dict"])
    datamodule = build_datamodule(run_cfg)
    # The precision the run trained and tested in (stored in the checkpoint), so eval reproduces its test numbers.
    precision = resolve_precision(run_cfg.trainer.get("precision", "32-true"), cfg.trainer.accelerator)
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, logger=False, precision=precision,
                        enable_progress_bar=bool(cfg.progress_bar), enable_model_summary=False)
    result = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    log.info("test/acc %.4f  test/loss %.4f  (%s)", result["test/acc"], result["test/loss"], cfg.ckpt_path)
    return {"status": "completed", "ckpt_path": str(Path(cfg.ckpt_path).resolve()), "test_acc": result["test/acc"],
            "test_loss": result["test/loss"], "params": count_parameters(module.net),
            "epochs": checkpoint.get("epoch", 0) + 1, "data": run_cfg.data._target_.rsplit(".", 1)[-1]}


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """Console entry point `cnnlab-eval`."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    start = time.perf_counter()
    try:
        record = evaluate(cfg, run_dir)
    except Exception as e:
        cause = user_error(e)
        if cause is None:
            raise
        log.error("%s", cause)
        write_metrics(run_dir, {"status": "failed", "error": str(cause), "wall_s": round(time.perf_counter() - start, 3)})
        sys.exit(2)
    record["wall_s"] = round(time.perf_counter() - start, 3)
    write_metrics(run_dir, record)
    return record["test_acc"]


if __name__ == "__main__":
    main()
