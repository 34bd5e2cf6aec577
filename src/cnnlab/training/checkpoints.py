"""Load cnnlab checkpoints and check that they belong to the model config at hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cnnlab.errors import CnnlabError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, or one clear error if the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"checkpoint {path} does not exist. Fix: pass ckpt_path=<run dir>/checkpoints/best.ckpt "
                          f"(or last.ckpt) of a finished run.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CnnlabError(f"checkpoint {path} could not be read ({type(e).__name__}: {e}). "
                          f"Fix: pass a .ckpt written by cnnlab-train.") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "cnnlab_config" not in checkpoint:
        raise CnnlabError(f"{path} is not a cnnlab checkpoint (no state_dict/cnnlab_config). "
                          f"Fix: pass a .ckpt written by cnnlab-train.")
    return checkpoint


def check_model_matches(checkpoint: dict[str, Any], model_cfg: dict[str, Any], path: str | Path) -> None:
    """Raise if the checkpoint was trained with a different model config than `model_cfg`."""
    saved = checkpoint["cnnlab_config"]["model"]
    keys = sorted(set(saved) | set(model_cfg))
    diffs = [f"model.{k}={saved.get(k)!r} in the checkpoint but {model_cfg.get(k)!r} now" for k in keys
             if saved.get(k) != model_cfg.get(k)]
    if diffs:
        raise CnnlabError(
            f"checkpoint {path} belongs to a different model config: {'; '.join(diffs)}. "
            f"Fix: drop the model overrides so the checkpoint's own model is used, or pass that model's checkpoint."
        )


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint to resume from: `resume=<run dir>` or `ckpt_path=last|<file>`, checked to exist."""
    if cfg.resume:
        ckpt = Path(cfg.resume) / "checkpoints" / "last.ckpt"
    elif cfg.ckpt_path == "last":
        ckpt = run_dir / "checkpoints" / "last.ckpt"
    elif cfg.ckpt_path:
        ckpt = Path(cfg.ckpt_path)
    else:
        return None
    if not ckpt.is_file():
        raise CnnlabError(
            f"checkpoint to resume from does not exist: {ckpt}. Fix: pass resume=<run dir> of a run that finished at "
            f"least one epoch (it holds checkpoints/last.ckpt), or ckpt_path=<existing .ckpt file>."
        )
    checkpoint = load_checkpoint(ckpt)
    check_model_matches(checkpoint, OmegaConf.to_container(cfg.model, resolve=True), ckpt)
    check_schedule_length(checkpoint["cnnlab_config"], cfg, ckpt)
    return ckpt


def check_schedule_length(saved: dict, cfg: DictConfig, ckpt: Path) -> None:
    """A one-cycle or cosine schedule is laid out over the run's total steps: resuming with another length
    would run past its end (or restart it), so that is refused."""
    if cfg.schedule.name == "none":
        return
    for key in ("max_epochs", "max_steps"):
        before, now = saved["trainer"].get(key), cfg.trainer.get(key)
        if before != now:
            raise CnnlabError(
                f"resuming {ckpt} with trainer.{key}={now}, but its {cfg.schedule.name} schedule was laid out for "
                f"trainer.{key}={before}. Fix: resume with trainer.{key}={before}; a run you mean to extend later "
                f"should use schedule=none."
            )
