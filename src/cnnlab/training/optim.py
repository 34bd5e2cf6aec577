"""What conf/optim/ and conf/schedule/ point at beyond torch itself: parameter groups and schedules.

Optimizers are torch classes built from `_target_` + `_partial_: true` configs; every schedule is a
function `(optimizer, total_steps) → scheduler or None`, so a new one is a YAML file (and at most one
function here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


def param_groups(net: torch.nn.Module, optim: Mapping[str, Any], norm_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Trainable parameters; with norm_lr_scale=s, normalisation parameters get s× the learning rate and
    weight_decay/s, so their effective decay (lr × weight_decay) matches the other parameters'."""
    norm_ids = {
        id(p) for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase) for p in m.parameters()
    }
    trainable = [p for p in net.parameters() if p.requires_grad]
    norm = [p for p in trainable if id(p) in norm_ids]
    other = [p for p in trainable if id(p) not in norm_ids]
    if norm_lr_scale == 1.0 or not norm:
        return [{"params": trainable}]
    decay = optim.get("weight_decay", 0.0)
    return [
        {"params": norm, "lr": optim["lr"] * norm_lr_scale, "weight_decay": decay / norm_lr_scale},
        {"params": other},
    ]


def can_fuse(net: torch.nn.Module) -> bool:
    """Whether the optimizer can use torch's fused kernel: float parameters, all on the CPU or all on CUDA.

    One fused kernel replaces ~5 small ops per parameter tensor: the default CNN's SGD step measured 0.16 ms
    fused against 0.49 ms per-tensor on one CPU thread (2-core EPYC), and the per-tensor path degrades much
    more when the cores are shared (small ops pay the thread pool's wake-up each).
    """
    params = [p for p in net.parameters() if p.requires_grad]
    devices = {p.device.type for p in params}
    return (
        bool(params) and len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)
    )


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """No schedule: the optimizer's learning rate throughout."""
    return None


def onecycle(
    optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float, div_factor: float, final_div_factor: float
) -> LRScheduler:
    """Linear warm-up from lr/div_factor to lr over pct_start of the steps, then linear decay to
    lr/(div_factor·final_div_factor): a triangle (torch's OneCycleLR divides by zero on runs of a few steps)."""
    return triangle(
        optimizer, total_steps, start=1 / div_factor, peak=pct_start, end=1 / (div_factor * final_div_factor)
    )


def cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    """Cosine decay from lr to 0 over all steps, no warm-up."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=0.0)


def triangle(optimizer: torch.optim.Optimizer, total_steps: int, start: float, peak: float, end: float) -> LRScheduler:
    """airbench: linear from start× up to 1× at `peak` of the steps, then linearly down to end×."""
    top = max(1, int(peak * total_steps))

    def factor(step: int) -> float:
        if step < top:
            return start + (1 - start) * step / top
        return 1 + (end - 1) * min(1.0, (step - top) / max(1, total_steps - top))

    return LambdaLR(optimizer, factor)
