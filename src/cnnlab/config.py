"""Where the Hydra configs live, the resolvers they use, and checks of values shared by all groups."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cnnlab.errors import ConfigError
from cnnlab.training.optim import check_optim


def config_dir() -> str:
    """`conf/` at the repository root (editable install), else the copy shipped inside the package."""
    for candidate in (Path(__file__).resolve().parents[2] / "conf", Path(__file__).resolve().parent / "conf"):
        if (candidate / "train.yaml").exists():
            return str(candidate)
    raise FileNotFoundError("cnnlab's conf/ folder was not found next to the package; reinstall with `make install`.")


def _run_dir(resume: str | None, default: str) -> str:
    """`resume=<run dir>` continues in that directory; otherwise the fresh timestamped default."""
    return str(resume) if resume else default


def _config_subdir(resume: str | None, ckpt_path: str | None = None) -> str:
    """Keep the original run's .hydra/ untouched when a run is resumed (resume= or ckpt_path=)."""
    return f".hydra/resume-{datetime.now():%Y%m%d-%H%M%S-%f}" if resume or ckpt_path else ".hydra"


def register_resolvers() -> None:
    """Register the resolvers used in conf/ (idempotent)."""
    for name, fn in (("cnnlab_run_dir", _run_dir), ("cnnlab_config_subdir", _config_subdir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def compose_config(overrides: list[str], name: str = "train", return_hydra_config: bool = False) -> DictConfig:
    """conf/<name>.yaml with Hydra overrides, as the entry points compose it, without starting a run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=return_hydra_config)


def validate(cfg: DictConfig) -> None:
    """Reject bad epochs, batch sizes, optimizer values and smoothing before any data loads."""
    epochs = cfg.trainer.get("max_epochs")
    if not isinstance(epochs, int) or epochs <= 0:
        raise ConfigError(f"trainer.max_epochs={epochs!r} must be a positive integer. Fix: e.g. trainer.max_epochs=10.")
    for key in ("batch_size", "eval_batch_size"):
        value = cfg.data.get(key)
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"data.{key}={value!r} must be a positive integer. Fix: e.g. data.{key}=128.")
    check_optim(cfg.optim, cfg.schedule)
    if not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"label_smoothing={cfg.label_smoothing} is outside [0, 1). Fix: e.g. label_smoothing=0.1.")
