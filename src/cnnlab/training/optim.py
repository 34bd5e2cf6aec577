"""Optimizers and learning-rate schedules built from the `optim` and `schedule` config groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from cnnlab.errors import ConfigError, check_choice

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "none")


def check_optim(optim: Mapping[str, Any], schedule: Mapping[str, Any]) -> None:
    """Reject unknown names and non-positive rates before any data is loaded."""
    check_choice("optim.name", optim["name"], OPTIMIZERS)
    check_choice("schedule.name", schedule["name"], SCHEDULES)
    lr = optim["lr"]
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"optim.lr={lr!r} must be a number > 0. Fix: e.g. optim.lr=0.05 for SGD, optim.lr=0.001 for AdamW.")
    decay = optim.get("weight_decay", 0)
    if not isinstance(decay, (int, float)) or decay < 0:
        raise ConfigError(f"optim.weight_decay={decay!r} must be a number >= 0. Fix: e.g. optim.weight_decay=5e-4.")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum by default) or AdamW, from optim.{name, lr, weight_decay, ...}."""
    if cfg["name"] == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9),
                               nesterov=cfg.get("nesterov", True), weight_decay=cfg.get("weight_decay", 0.0))
    return torch.optim.AdamW(params, lr=cfg["lr"], betas=tuple(cfg.get("betas", (0.9, 0.999))),
                             weight_decay=cfg.get("weight_decay", 0.01))


def build_schedule(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], total_steps: int) -> dict | None:
    """A per-step Lightning scheduler config for one-cycle or cosine, or None for a constant rate."""
    if cfg["name"] == "none":
        return None
    if cfg["name"] == "onecycle":
        base_lr = optimizer.param_groups[0]["lr"]
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=base_lr, total_steps=max(1, total_steps), pct_start=cfg.get("pct_start", 0.25),
            anneal_strategy="linear", div_factor=cfg.get("div_factor", 10.0), final_div_factor=cfg.get("final_div_factor", 100.0),
            cycle_momentum=False,
        )
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=0.0)
    return {"scheduler": scheduler, "interval": "step"}
