"""The comparison plots: validation accuracy per epoch, train vs val loss, final accuracy per swept axis."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cnnlab.figures import save_figure
from cnnlab.report.collect import Job
from cnnlab.report.tables import setting_of


def _save(fig, path: Path) -> str:
    return save_figure(fig, path).name


def _by_setting(jobs: list[Job], axes: list[str], tag: str) -> dict[str, np.ndarray]:
    """Setting → seeds × epochs array of one curve (truncated to the shortest seed)."""
    groups: dict[str, list[list[float]]] = {}
    for job in jobs:
        if job.curves.get(tag):
            groups.setdefault(setting_of(job, axes), []).append(job.curves[tag])
    return {s: np.array([c[: min(map(len, cs))] for c in cs]) for s, cs in sorted(groups.items())}


def plot_val_acc(jobs: list[Job], axes: list[str], out: Path) -> str | None:
    """One line per setting (mean over seeds), a band from the worst to the best seed."""
    curves = _by_setting(jobs, axes, "val/acc")
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (setting, runs) in enumerate(curves.items()):
        epochs = np.arange(1, runs.shape[1] + 1)
        color = plt.cm.tab10(i % 10)
        ax.plot(epochs, 100 * runs.mean(0), marker="o", ms=3, color=color, label=f"{setting} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(epochs, 100 * runs.min(0), 100 * runs.max(0), color=color, alpha=0.2)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out / "val_acc_vs_epoch.png")


def plot_losses(jobs: list[Job], axes: list[str], out: Path) -> str | None:
    """Train (solid) vs validation (dashed) loss per setting: a widening gap is overfitting."""
    train, val = _by_setting(jobs, axes, "train/loss"), _by_setting(jobs, axes, "val/loss")
    settings = [s for s in train if s in val]
    if not settings:
        return None
    cols = min(3, len(settings))
    rows = math.ceil(len(settings) / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, setting in zip(grid.flat, settings):
        for runs, style, name in ((train[setting], "-", "train"), (val[setting], "--", "val")):
            ax.plot(np.arange(1, runs.shape[1] + 1), runs.mean(0), style, label=name)
        ax.set_title(setting, fontsize=8)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(grid.flat)[len(settings) :]:
        ax.axis("off")
    grid[0][0].set_ylabel("cross-entropy")
    grid[0][0].legend(fontsize=8)
    fig.suptitle("Train vs validation loss")
    return _save(fig, out / "loss_curves.png")


def plot_by_axis(jobs: list[Job], axes: list[str], out: Path) -> str | None:
    """For each swept axis: every completed job's final val acc at its value, and the mean."""
    done = [j for j in jobs if j.status == "completed"]
    if not done or not axes:
        return None
    fig, grid = plt.subplots(1, len(axes), figsize=(4 * len(axes), 3.6), squeeze=False, sharey=True)
    for ax, axis in zip(grid[0], axes):
        values = sorted({j.overrides.get(axis, "-") for j in done}, key=_value_key)
        for x, value in enumerate(values):
            accs = [100 * j.metrics["val_acc_final"] for j in done if j.overrides.get(axis, "-") == value]
            ax.scatter([x] * len(accs), accs, s=14, alpha=0.6, color="tab:blue")
            ax.hlines(np.mean(accs), x - 0.3, x + 0.3, color="tab:red", lw=2)
        ax.set_xticks(range(len(values)), values)
        ax.set_xlabel(axis)
        ax.grid(alpha=0.3, axis="y")
    grid[0][0].set_ylabel("final validation accuracy (%)")
    fig.suptitle("Final accuracy by swept axis (dots: jobs, bar: mean)")
    return _save(fig, out / "acc_by_axis.png")


def _value_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
