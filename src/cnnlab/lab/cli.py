"""Shared plumbing of the lab tools: argument parsing, config composition, model loading, output folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn

from cnnlab.builders import build_net
from cnnlab.config import compose_config  # noqa: F401  (re-exported for the lab tools)
from cnnlab.errors import user_error
from cnnlab.training.checkpoints import load_checkpoint


def console() -> Console:
    """A rich console at least 120 columns wide, so tables stay readable in logs and pipes."""
    return Console(width=None if sys.stdout.isatty() else 120)


def parser(tool: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every lab tool shares."""
    p = argparse.ArgumentParser(prog=tool, description=description)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.depth=4 model.pool=avg")
    p.add_argument("--ckpt", type=Path, help="a checkpoint: its model and trained weights are used")
    p.add_argument("--out", type=Path, help=f"folder for figures (default outputs/lab/{tool}/<time>)")
    return p


def output_dir(tool: str, out: Path | None) -> Path:
    """The folder the tool writes into, created."""
    path = out or Path("outputs/lab") / tool / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_model(cfg: DictConfig, ckpt: Path | None) -> tuple[nn.Module, DictConfig, str]:
    """The backbone from the config (fresh, seeded) or from a checkpoint (its config and weights)."""
    if ckpt is None:
        import torch

        torch.manual_seed(cfg.seed)
        return build_net(cfg), cfg, "fresh"
    checkpoint = load_checkpoint(ckpt)
    run_cfg = OmegaConf.create(checkpoint["cnnlab_config"])
    net = build_net(run_cfg)
    net.load_state_dict({k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")})
    return net, run_cfg, "trained"


def run_tool(main: Callable[[], None]) -> None:
    """Run a tool's main; bad input prints one message and exits 2."""
    try:
        main()
    except Exception as e:
        cause = user_error(e)
        if cause is None:
            raise
        sys.exit(f"error: {cause}")
