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


def linear(optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    """Linear decay from lr at the first step to 0 after the last, no warm-up (airbench94_muon)."""
    return LambdaLR(optimizer, lambda step: max(0.0, 1 - step / max(1, total_steps)))


def triangle(optimizer: torch.optim.Optimizer, total_steps: int, start: float, peak: float, end: float) -> LRScheduler:
    """airbench: linear from start× up to 1× at `peak` of the steps, then linearly down to end×."""
    top = max(1, int(peak * total_steps))

    def factor(step: int) -> float:
        if step < top:
            return start + (1 - start) * step / top
        return 1 + (end - 1) * min(1.0, (step - top) / max(1, total_steps - top))

    return LambdaLR(optimizer, factor)


def orthogonalize(update: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """Push the singular values of a 2-D matrix (or of each matrix in a stack, ...×m×n) towards 1 with a quintic
    Newton–Schulz iteration (Muon's coefficients, tuned for few steps: the result is roughly, not exactly,
    orthogonal)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = update.float()
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm ≤ Frobenius norm = 1: the iteration's basin
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if tall else x).to(update.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for conv filters, Nesterov SGD for everything else (airbench94_muon, Keller Jordan 2024).

    Every 4-D parameter steps by its Nesterov momentum orthogonalised as an out × (in·k·k) matrix, at `filter_lr`
    with `filter_momentum`, and is rescaled to norm sqrt(out) before each step: BatchNorm follows every filter, so
    only the direction matters and a fixed norm keeps the step's angle constant. The other parameters (biases, the
    linear head) keep their group's `lr`, `momentum` and `weight_decay` (so `norm_lr_scale` works as with SGD).

    `ns_batched=True` orthogonalises filter banks of one shape together, as one stack of matrices (the hiverge
    record batches every bank, zero-padded to the largest shape: on a GPU that saves kernel launches, on a CPU
    the padding is 1.8× the arithmetic of FastNet's banks, so only equal shapes are stacked here).
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.85,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        filter_lr: float = 0.24,
        filter_momentum: float = 0.6,
        ns_steps: int = 3,
        ns_batched: bool = False,
    ) -> None:
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        split = []
        for group in groups:
            params_of_group = list(group["params"])
            others = [p for p in params_of_group if p.ndim != 4]
            filters = [p for p in params_of_group if p.ndim == 4]
            if others:
                split.append({**group, "params": others})
            if filters:
                split.append(
                    {"params": filters, "lr": filter_lr, "momentum": filter_momentum, "weight_decay": 0.0, "muon": True}
                )
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}
        super().__init__(split, {**defaults, "muon": False, "ns_steps": ns_steps, "ns_batched": ns_batched})

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter with a gradient; `closure` re-evaluates the loss (Lightning passes one)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            filters, updates = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(grad)
                update = grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
                if not group["muon"]:
                    p.add_(update, alpha=-group["lr"])
                    continue
                p.mul_(len(p) ** 0.5 / p.norm())
                filters.append(p)
                updates.append(update.reshape(len(p), -1))
            if group["ns_batched"]:
                by_shape: dict[torch.Size, list[int]] = {}
                for i, u in enumerate(updates):
                    by_shape.setdefault(u.shape, []).append(i)
                for indices in by_shape.values():
                    stacked = orthogonalize(torch.stack([updates[i] for i in indices]), group["ns_steps"])
                    for i, u in zip(indices, stacked):
                        updates[i] = u
            else:
                updates = [orthogonalize(u, group["ns_steps"]) for u in updates]
            for p, u in zip(filters, updates):
                p.add_(u.view_as(p), alpha=-group["lr"])
        return loss
