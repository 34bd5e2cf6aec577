"""What every lab tool shares: arguments, the model (fresh from the config or trained from a checkpoint),
the data, and the output folder."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.errors import CnnlabError
from cnnlab.models import Backbone
from cnnlab.runs import check_report_dir
from cnnlab.training.checkpoints import load_classifier, saved_config, with_overridden_groups


def parser(
    tool: str, description: str, overrides: bool = True, ckpt: bool = True, out: bool = True
) -> argparse.ArgumentParser:
    """An argument parser with the options the lab tools share (Hydra overrides, --ckpt, --out), those the tool
    uses only: a tool must not accept an option it would ignore."""
    p = argparse.ArgumentParser(prog=tool, description=description, allow_abbrev=False)  # --out ≠ --out-channels
    if overrides:
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.depth=4 model.pool=avg")
    if ckpt:
        p.add_argument("--ckpt", type=Path, help="a checkpoint: its model and trained weights are used")
    if out:
        short = tool.removeprefix("cnnlab-")  # output_dir's folder name
        p.add_argument("--out", type=Path, help=f"folder for figures (default outputs/lab/{short}/<time>)")
    return p


def positive_int(text: str) -> int:
    """An argparse type for a count or a size: an integer >= 1 (argparse names the option, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer. Fix: e.g. 3") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer (a size or a count). Fix: e.g. 3")
    return value


def output_dir(tool: str, out: Path | None) -> Path:
    """The folder the tool will write into, checked before any work (one clear error if it cannot be written); it is
    made when the first figure is saved (`writing_figures`), so a tool that fails leaves no empty folder."""
    path = out or Path("outputs/lab") / tool / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    check_report_dir(path, "--out", "pass --out <a writable folder that is not a run directory>.")
    return path


@contextlib.contextmanager
def writing_figures(folder: Path) -> Iterator[Callable[[str], Path]]:
    """Yields `path(name)` → `folder`/`name`, the folder made on first use. If the block fails (a full disk, a file
    size limit), the figures it named and the folders it made are removed: a failed tool leaves nothing behind."""
    folder = Path(folder).absolute()
    existed = next(p for p in (folder, *folder.parents) if p.exists())
    named: list[Path] = []

    def path(name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        named.append(folder / name)
        return folder / name

    try:
        yield path
    except BaseException:
        for figure in named:
            figure.unlink(missing_ok=True)
        for made in (folder, *folder.parents):
            if made == existed or not made.is_dir() or any(made.iterdir()):
                break
            made.rmdir()
        raise


def build_net(cfg: DictConfig) -> Backbone:
    """The model group's backbone, freshly initialised from `cfg.seed`, so a lab tool's table repeats run to run."""
    torch.manual_seed(cfg.seed)
    return instantiate(cfg.model)


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    """The data group's datamodule with the augment group's pipeline."""
    return instantiate(cfg.data, augment=instantiate(cfg.augment))


def model_choice(cfg: DictConfig) -> str:
    """The model option a config was composed with (e.g. resnet), read from its `_target_` when not recorded."""
    return str(cfg.model.get("_target_", "?")).rsplit(".", 1)[-1]


def input_shape(cfg: DictConfig) -> tuple[int, int, int]:
    """C×H×W of the configured data's images (the datamodule declares it; nothing is loaded)."""
    return instantiate(cfg.data).input_shape  # without the augment group: a lab tool never augments


def require_backbone(net: torch.nn.Module, tool: str) -> Backbone:
    """The net, if it has the `features`/`head` split this tool measures; otherwise one line saying so."""
    if not isinstance(net, Backbone):
        raise CnnlabError(
            f"{tool} measures a backbone's feature maps, but {type(net).__name__} is a plain nn.Module without the "
            f"features/head split. Fix: subclass cnnlab.models.Backbone (docs/extending.md), or try model=cnn."
        )
    return net


def load_model(cfg: DictConfig, ckpt: Path | None, overrides: list[str] = ()) -> tuple[Backbone, DictConfig, str]:
    """The backbone from the config (fresh, seeded) or from a checkpoint (its config and trained weights; the command
    line's data overrides apply, and model overrides must match the checkpoint's model, as in cnnlab-eval)."""
    if ckpt is None:
        torch.manual_seed(cfg.seed)
        return build_net(cfg), cfg, "fresh"
    saved = saved_config(ckpt)
    run_cfg = with_overridden_groups(saved, cfg, list(overrides), ckpt)
    module = load_classifier(ckpt)
    return module.net, run_cfg, "trained"
