"""The notebook API: train a configuration, load a finished run or a sweep, on the CLI's own code path."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


def _path(function: str, name: str, value: Any, example: str) -> Path:
    """`value` as a Path, or the one-line ConfigError the command line would give for a wrong type."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    from cnnlab.errors import ConfigError

    raise ConfigError(
        f"cnnlab.{function}({name}={value!r}): {name} must be a path (a str or pathlib.Path), "
        f"got {type(value).__name__}. Fix: e.g. cnnlab.{function}({example})."
    )


def _overrides(value: Any) -> list[str]:
    """cnnlab.train's overrides as a list of strings, or one ConfigError line naming what is wrong."""
    from cnnlab.errors import CnnlabError, ConfigError

    if isinstance(value, str):  # list("data=tiny") would be one override per letter
        raise CnnlabError(
            f"overrides={value!r} is one string, but cnnlab.train takes a list of overrides. "
            f"Fix: cnnlab.train({value.split()!r})."
        )
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"cnnlab.train(overrides={value!r}): overrides must be a list of strings; got {type(value).__name__}. "
            f"Fix: e.g. cnnlab.train(['data=tiny', 'trainer.max_epochs=1'])."
        )
    if wrong := [o for o in value if not isinstance(o, str)]:
        bad = wrong[0]
        raise ConfigError(
            f"cnnlab.train: the override {bad!r} is {type(bad).__name__}, but each override is a string "
            f"key=value. Fix: e.g. cnnlab.train([..., 'model.width={bad}'])."
        )
    return list(value)


class _DropRaised(logging.Filter):
    """Drops the run policy's error line (`log.error("%s", CnnlabError)`) that cnnlab.train raises itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        from cnnlab.errors import CnnlabError

        raised = record.levelno >= logging.ERROR and record.msg == "%s" and isinstance(record.args, tuple)
        return not (raised and len(record.args) == 1 and isinstance(record.args[0], CnnlabError))


@contextlib.contextmanager
def _said_once() -> Iterator[None]:
    """While a run of cnnlab.train runs, the error it ends with goes to the caller as its exception only: shown
    also by the notebook's log handlers, it printed twice. The run's own log file keeps it."""
    drop = _DropRaised()
    handlers = [h for h in logging.getLogger().handlers if not isinstance(h, logging.FileHandler)]
    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


def train(overrides: list[str] | tuple[str, ...] = (), run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train one configuration in this process, as `cnnlab-train <overrides>` would, and return its
    metrics.json record. Bad input or a failed run raises CnnlabError with the record's message."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from cnnlab.cli.train import run
    from cnnlab.config import compose_config
    from cnnlab.errors import CnnlabError
    from cnnlab.runs import RunEnded, check_writable, note_output_dir, read_metrics

    overrides = _overrides(overrides)
    if run_dir is not None:
        run_dir = _path("train", "run_dir", run_dir, "['data=tiny'], run_dir='outputs/mine'")
    cfg = compose_config(overrides, return_hydra_config=True)
    asked = any(o.startswith("hydra.run.dir=") for o in overrides)  # else a unique default: microseconds
    run_dir = Path(
        run_dir
        or (cfg.hydra.run.dir if asked else None)
        or cfg.get("resume")
        or f"outputs/runs/{datetime.now():%Y-%m-%d/%H-%M-%S-%f}"
    )
    check_writable(run_dir, "run_dir", "pass another run_dir (or hydra.run.dir).")
    note_output_dir(run_dir)  # a refused run removes the folders made for it, as the command line's does
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir.resolve())
        cfg.hydra.job.name = "train"
    HydraConfig.instance().set_config(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _said_once():
            run(cfg)
    except RunEnded as e:  # the run policy ends a refused or failed single run with an exit code
        raise CnnlabError(e.reason) from None
    return read_metrics(run_dir)


@dataclass
class Run:
    """A finished run: its trained model (eval mode, CPU), resolved config, metrics.json and per-epoch curves."""

    path: Path
    model: Any
    config: Any
    metrics: dict[str, Any]
    curves: dict[str, list[float]] = field(default_factory=dict)

    def predict(self, images: Any) -> Any:
        """Class indices for uint8 images (N×C×H×W, as the run's data declares them), normalised as in training and
        computed in the run's precision (bf16 autocast where it trained in bf16-mixed)."""
        import torch
        from hydra.utils import instantiate

        datamodule = instantiate(self.config.data)  # its normalisation only: no data is loaded
        bf16 = str(self.config.trainer.precision).startswith("bf16")
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return self.model(datamodule.prepare_batch(torch.as_tensor(images), train=False)).argmax(-1)


def load_run(run_dir: str | Path, checkpoint: str = "best") -> Run:
    """The run in `run_dir` with the weights of checkpoints/<checkpoint>.ckpt (best by val/acc, or last)."""
    from omegaconf import OmegaConf

    from cnnlab.errors import CnnlabError, ConfigError
    from cnnlab.runs import read_metrics
    from cnnlab.training.checkpoints import load_classifier

    run_dir = _path("load_run", "run_dir", run_dir, "'outputs/runs/<date>/<time>'")
    if not isinstance(checkpoint, str):
        raise ConfigError(
            f"cnnlab.load_run(checkpoint={checkpoint!r}): checkpoint must be a string, the name of a file in "
            f"<run dir>/checkpoints/ without .ckpt. Fix: checkpoint='best' (best by val/acc) or checkpoint='last'."
        )
    metrics = read_metrics(run_dir)
    if metrics is None:
        raise CnnlabError(
            f"{run_dir} holds no run (no metrics.json). Fix: pass a run directory, e.g. outputs/runs/<date>/<time>."
        )
    path = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if checkpoint == "best" and not path.is_file() and metrics.get("best_checkpoint"):
        # a run without validation (data.val_size=0) tests its last.ckpt; by name: the run may have been moved
        path = run_dir / "checkpoints" / Path(metrics["best_checkpoint"]).name
    if not path.is_file() and (metrics.get("choices") or {}).get("callbacks") == "none":
        raise CnnlabError(
            f"{run_dir} was trained with callbacks=none, which saves no checkpoints: it has no weights to load. "
            f"Fix: train it again with the default callbacks; its numbers are in {run_dir / 'metrics.json'}."
        )
    module = load_classifier(path)
    return Run(run_dir, module, OmegaConf.create(module.config), metrics, metrics.get("curves") or {})


def load_sweep(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The comparison table of a sweep (or any folder of runs): one row per job, as in summary.csv."""
    from cnnlab.errors import CnnlabError
    from cnnlab.report.collect import collect_jobs, swept_axes
    from cnnlab.report.tables import job_row

    sweep_dir = _path("load_sweep", "sweep_dir", sweep_dir, "'outputs/multirun/<date>/<time>'")
    if not sweep_dir.is_dir():
        raise CnnlabError(
            f"{sweep_dir} is not a directory. Fix: pass a sweep directory, e.g. outputs/multirun/<date>/<time>."
        )
    jobs = collect_jobs([Path(sweep_dir)])
    if not jobs:  # as cnnlab-compare refuses it
        raise CnnlabError(
            f"no run directories (with .hydra/overrides.yaml) under {sweep_dir}. Fix: pass a sweep directory, "
            f"e.g. outputs/multirun/<date>/<time>, or a folder that holds runs."
        )
    axes = swept_axes(jobs)
    return [job_row(job, axes) for job in jobs]
