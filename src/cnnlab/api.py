"""The notebook API: train a configuration, load a finished run or a sweep, on the CLI's own code path."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


def train(overrides: list[str] | tuple[str, ...] = (), run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train one configuration in this process, as `cnnlab-train <overrides>` would, and return its
    metrics.json record. Bad input or a failed run raises CnnlabError with the record's message."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from cnnlab.cli.train import run
    from cnnlab.config import compose_config
    from cnnlab.errors import CnnlabError
    from cnnlab.runs import RunEnded, check_writable, note_output_dir, read_metrics

    if isinstance(overrides, str):  # list("data=tiny") would be one override per letter
        raise CnnlabError(
            f"overrides={overrides!r} is one string, but cnnlab.train takes a list of overrides. "
            f"Fix: cnnlab.train({overrides.split()!r})."
        )
    cfg = compose_config(list(overrides), return_hydra_config=True)
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

    from cnnlab.errors import CnnlabError
    from cnnlab.runs import read_metrics
    from cnnlab.training.checkpoints import load_classifier

    run_dir = Path(run_dir)
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

    if not Path(sweep_dir).is_dir():
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
