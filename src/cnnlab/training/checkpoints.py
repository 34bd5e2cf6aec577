"""The one way to save and load a cnnlab checkpoint, and the checks before a run resumes from one."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.training.hardware import nhwc_hazards
from cnnlab.training.module import ImageClassifier

log = logging.getLogger("cnnlab")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save each checkpoint to a hidden file beside it, then rename it into place: a full disk or a kill during
    the write leaves the previous checkpoint whole (Lightning's own save truncates it: seen at 3.0 of 3.2 MB)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            # Serialised in memory, then written by Python: torch.save into a file raises a bare RuntimeError on a
            # full disk ("basic_ios::clear"), where this write raises OSError (ENOSPC; EFBIG past `ulimit -f`, as
            # Python ignores SIGXFSZ), which ends the run in one line (cnnlab.errors.user_error).
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            with open(partial, "wb") as f:
                f.write(buffer.getbuffer())
            os.replace(partial, path)
        except OSError as e:
            partial.unlink(missing_ok=True)
            e.filename = e.filename or str(path)  # a failed write() names no file: the one-line error names it
            raise
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def _read(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(checkpoint, its run config), or one clear error if the file is missing, unreadable or not cnnlab's."""
    path = Path(path)
    if path.is_dir():
        inside = path / "checkpoints" / "best.ckpt"
        raise CnnlabError(
            f"checkpoint {path} is a folder, not a checkpoint file. Fix: pass "
            f"{inside if inside.is_file() else '<run dir>/checkpoints/best.ckpt'} (or last.ckpt)."
        )
    if not path.is_file():
        raise CnnlabError(
            f"checkpoint {path} does not exist. Fix: pass <run dir>/checkpoints/best.ckpt "
            f"(or last.ckpt) of a finished run."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CnnlabError(
            f"checkpoint {path} could not be read ({type(e).__name__}: {e}). Fix: pass a .ckpt written by cnnlab-train."
        ) from None
    config = checkpoint.get("hyper_parameters", {}).get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(config, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CnnlabError(
            f"{path} is not a cnnlab checkpoint (no state_dict and run config). "
            f"Fix: pass a .ckpt written by cnnlab-train."
        )
    if missing := [k for k in ("model", "data", "augment", "trainer") if not isinstance(config.get(k), dict)]:
        raise CnnlabError(
            f"checkpoint {path} is damaged: its run config has no {', '.join(missing)} section. "
            f"Fix: pass a .ckpt written by cnnlab-train, unchanged."
        )
    return checkpoint, config


def saved_config(path: str | Path) -> dict[str, Any]:
    """The run config stored in a checkpoint, or one clear error if the file is missing or not ours."""
    return _read(path)[1]


def load_classifier(path: str | Path, config: dict[str, Any] | None = None) -> ImageClassifier:
    """The module `config` describes (by default the checkpoint's own run config) with the checkpoint's weights, in
    eval mode on the CPU; one clear error where the weights do not fit that model."""
    checkpoint, saved = _read(path)
    module = ImageClassifier(config or saved)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:  # missing, unexpected or misshapen weights
        raise CnnlabError(
            f"checkpoint {path} is damaged: its weights do not fit the model its run config describes "
            f"({' '.join(str(e).split())[:300]}). Fix: pass a .ckpt written by cnnlab-train, unchanged."
        ) from None
    module.curves = {k: list(v) for k, v in checkpoint.get("curves", {}).items()}
    if module.channels_last and nhwc_hazards(module.net):  # trained NHWC (on a GPU): unsafe on this CPU (#29)
        module.channels_last = False
        module.net.to(memory_format=torch.contiguous_format)
    return module.eval()


def with_overridden_groups(
    saved: dict[str, Any], cfg: DictConfig, overrides: list[str], path: str | Path
) -> DictConfig:
    """A checkpoint's run config with the command line's say on its groups: model overrides must describe the
    checkpoint's own model (refused otherwise); data=<name> swaps the data group, data.<key>=... changes that key of
    the run's own data (not of the default dataset's)."""
    merged = OmegaConf.create(saved)
    if any(o.lstrip("+~").startswith("model") for o in overrides):
        check_model_matches(saved, OmegaConf.to_container(cfg.model, resolve=True), path)
        merged.model = cfg.model
    keys = [k for o in overrides if (k := o.lstrip("+~").split("=", 1)[0]) == "data" or k.startswith("data.")]
    if "data" in keys:  # another dataset (data=tiny): the group as composed
        merged.data = cfg.data
        return merged
    for key in keys:
        if key.split(".")[1] not in merged.data:
            raise CnnlabError(
                f"{key} is not a key of the run's data ({merged.data.get('_target_')}). Fix: drop it, or "
                f"choose the data with data=<name> and give its keys after that."
            )
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
    return merged


def check_model_matches(saved: dict[str, Any], model_cfg: dict[str, Any], path: str | Path) -> None:
    """Raise if the checkpoint was trained with a different model config than `model_cfg`."""
    before = saved["model"]
    diffs = [
        f"model.{k}={before.get(k)!r} in the checkpoint but {model_cfg.get(k)!r} now"
        for k in sorted(set(before) | set(model_cfg))
        if before.get(k) != model_cfg.get(k)
    ]
    if diffs:
        raise CnnlabError(
            f"checkpoint {path} belongs to a different model config: {'; '.join(diffs)}. Fix: drop the "
            f"model overrides so the checkpoint's own model is used, or pass that model's checkpoint."
        )


def resume_checkpoint(cfg: DictConfig, run_dir: Path, debug: str | None = None) -> Path | None:
    """The checkpoint to resume from (`resume=<run dir>`, `ckpt_path=last|<file>`), checked against the config.

    A run interrupted before its first epoch ended has no checkpoint: it restarts from the beginning (the
    same seed draws the same run). A completed run is refused: there is nothing to resume.
    """
    if not (cfg.resume or cfg.ckpt_path):
        return None
    if debug and (cfg.resume or cfg.ckpt_path == "last"):  # the debug group's choice
        raise CnnlabError(
            f"debug={debug} with {'resume=' + str(cfg.resume) if cfg.resume else 'ckpt_path=last'}: a debug pass "
            f"runs a few batches and never writes into a run's record. Fix: drop the resume, or drop debug=... to "
            f"resume the run itself."
        )
    target = Path(cfg.resume) if cfg.resume else run_dir
    ckpt = target / "checkpoints" / "last.ckpt" if cfg.resume or cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    previous = runs.read_metrics(target) if cfg.resume or cfg.ckpt_path == "last" else None
    if previous is not None and previous.get("status") == "completed":
        raise CnnlabError(
            f"{target} holds a completed run: there is nothing to resume, and it is never changed. "
            f"Fix: start a new run (train longer with trainer.max_epochs=... in a new directory)."
        )
    if not ckpt.is_file():
        if previous is not None and (previous.get("choices") or {}).get("callbacks") == "none":
            raise CnnlabError(
                f"{target} was trained with callbacks=none, which saves no checkpoints: it cannot be resumed "
                f"(restarting it would discard the epochs it finished). Fix: start a new run; keep the default "
                f"callbacks for a run you may resume."
            )
        if (target / "eval.log").is_file():  # an interrupted cnnlab-eval left a record in its own folder
            raise CnnlabError(
                f"{target} is a cnnlab-eval folder, not a training run: there is nothing to resume. Fix: run the "
                f"evaluation again (cnnlab-eval ckpt_path=... in a new folder)."
            )
        kept = sorted(p.name for p in (target / "checkpoints").glob("*.ckpt") if p.name != "interrupted.ckpt")
        if previous is not None and previous.get("status") in ("interrupted", "failed", "crashed") and kept:
            raise CnnlabError(
                f"checkpoint to resume from does not exist: {ckpt}, but {target} finished at least one epoch "
                f"({', '.join(kept)} in its checkpoints/): restarting it would discard those epochs. Fix: put its "
                f"last.ckpt back, or start a new run."
            )
        if previous is not None and previous.get("status") in ("interrupted", "failed", "crashed"):
            log.warning(
                "%s stopped before its first epoch ended (no %s): it restarts from the beginning.", target, ckpt
            )
            return None
        raise CnnlabError(
            f"checkpoint to resume from does not exist: {ckpt}. Fix: pass resume=<run dir> of an "
            f"interrupted run, or ckpt_path=<existing .ckpt file>."
        )
    checkpoint, saved = _read(ckpt)
    check_model_matches(saved, OmegaConf.to_container(cfg.model, resolve=True), ckpt)
    check_schedule_length(saved, cfg, ckpt)
    check_same_training(saved, cfg, ckpt)
    load_classifier(ckpt)  # its weights fit its model: a damaged file fails here, not after the run dir opened
    done = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    if done.get("processed", 0) >= cfg.trainer.max_epochs:
        raise CnnlabError(
            f"{ckpt} holds {done['processed']} finished epoch{'s' * (done['processed'] != 1)}, and "
            f"trainer.max_epochs={cfg.trainer.max_epochs}: "
            f"there is nothing left to train (the run would record another run's test as its own). Fix: evaluate "
            f"it with cnnlab-eval ckpt_path={ckpt}, or train longer in a new run (a larger trainer.max_epochs with "
            f"schedule=none)."
        )
    return ckpt


# What a resume may change: where and how the data is read. Anything else would make the resumed epochs another
# run's than the first ones, under one record (a resume with seed=7 recorded seed 7 over epochs trained with 0).
_RESUME_MAY_CHANGE = {"data_dir", "download", "num_workers", "on_device", "pin_memory", "eval_batch_size"}


def check_same_training(saved: dict[str, Any], cfg: DictConfig, ckpt: Path) -> None:
    """Refuse a resume whose seed, data, augmentation, optimiser, schedule or loss differ from the checkpoint's."""
    diffs = []
    for group in ("seed", "label_smoothing", "data", "augment", "optim", "schedule"):
        if group not in saved:  # a checkpoint from before the key existed
            continue
        before, after = saved[group], cfg.get(group)
        after = OmegaConf.to_container(after, resolve=True) if OmegaConf.is_config(after) else after
        if isinstance(before, dict) and isinstance(after, dict):
            diffs += [
                f"{group}.{k}={before.get(k)!r} in the checkpoint but {after.get(k)!r} now"
                for k in sorted(set(before) | set(after))
                if k not in _RESUME_MAY_CHANGE and k in before and before.get(k) != after.get(k)
            ]
        elif before != after:
            diffs.append(f"{group}={before!r} in the checkpoint but {after!r} now")
    if diffs:
        raise CnnlabError(
            f"resuming {ckpt} with other training settings: {'; '.join(diffs[:3])}. Fix: resume with the run's own "
            f"values (its .hydra/config.yaml), or start a new run."
        )


def check_schedule_length(saved: dict, cfg: DictConfig, ckpt: Path) -> None:
    """A schedule is laid out over the run's total steps: resuming with another length would run past its
    end (or restart it), so that is refused unless the schedule is constant."""
    if cfg.schedule._target_.endswith(".constant"):
        return
    for key in ("max_epochs", "max_steps"):
        before, now = saved["trainer"].get(key), cfg.trainer.get(key)
        if before != now:
            name = cfg.schedule._target_.rsplit(".", 1)[-1]
            raise CnnlabError(
                f"resuming {ckpt} with trainer.{key}={now}, but its {name} schedule was laid out for "
                f"trainer.{key}={before}. Fix: resume with trainer.{key}={before}; a run you mean to "
                f"extend later should use schedule=none."
            )
