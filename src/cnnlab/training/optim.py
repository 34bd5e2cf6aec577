"""Optimizers and learning-rate schedules built from the `optim` and `schedule` config groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from cnnlab.errors import ConfigError, check_choice

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "triangle", "none")


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


def param_groups(net: torch.nn.Module, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Trainable parameters; with optim.norm_lr_scale=s, normalisation parameters get s× the learning rate
    and weight_decay/s, so their effective decay (lr × weight_decay) matches the other parameters'."""
    scale = cfg.get("norm_lr_scale", 1.0)
    norm_ids = {id(p) for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase) for p in m.parameters()}
    norm = [p for p in net.parameters() if p.requires_grad and id(p) in norm_ids]
    other = [p for p in net.parameters() if p.requires_grad and id(p) not in norm_ids]
    decay = cfg.get("weight_decay", 0.0)
    if scale == 1.0 or not norm:
        return [{"params": norm + other}]
    return [{"params": norm, "lr": cfg["lr"] * scale, "weight_decay": decay / scale}, {"params": other}]


def build_optimizer(net: torch.nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum by default) or AdamW over `net`'s trainable parameters, from optim.*."""
    groups = param_groups(net, cfg)
    fused = can_fuse(net)
    if cfg["name"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9), fused=fused,
                               nesterov=cfg.get("nesterov", True), weight_decay=cfg.get("weight_decay", 0.0))
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg.get("betas", (0.9, 0.999))), fused=fused,
                             weight_decay=cfg.get("weight_decay", 0.01))


def can_fuse(net: torch.nn.Module) -> bool:
    """Whether the optimizer can use torch's fused kernel: float parameters, all on the CPU or all on CUDA.

    One fused kernel replaces ~5 small ops per parameter tensor: the default CNN's SGD step measured 0.16 ms
    fused against 0.49 ms per-tensor on one CPU thread (2-core EPYC), and the per-tensor path degrades much
    more when the cores are shared (small ops pay the thread pool's wake-up each).
    """
    params = [p for p in net.parameters() if p.requires_grad]
    devices = {p.device.type for p in params}
    return bool(params) and len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)


def build_schedule(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], total_steps: int) -> dict | None:
    """A per-step Lightning scheduler config for one-cycle or cosine, or None for a constant rate."""
    if cfg["name"] == "none":
        return None
    total_steps = max(1, total_steps)
    if cfg["name"] == "triangle":  # airbench: linear from `start` up to 1 at `peak`, then down to `end`
        start, peak, end = cfg.get("start", 0.2), cfg.get("peak", 0.23), cfg.get("end", 0.07)
        top = max(1, int(peak * total_steps))

        def factor(step: int) -> float:
            if step < top:
                return start + (1 - start) * step / top
            return 1 + (end - 1) * min(1.0, (step - top) / max(1, total_steps - top))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    elif cfg["name"] == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps, pct_start=cfg.get("pct_start", 0.25),
            anneal_strategy="linear", div_factor=cfg.get("div_factor", 10.0), final_div_factor=cfg.get("final_div_factor", 100.0),
            cycle_momentum=False,
        )
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=0.0)
    return {"scheduler": scheduler, "interval": "step"}
