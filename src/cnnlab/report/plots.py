"""The comparison plots: validation accuracy per epoch, train vs val loss, final accuracy per swept axis, and the
augmentation gain against capacity."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cnnlab.figures import save_figure
from cnnlab.report.collect import Job, value_key
from cnnlab.report.gain import capacity_axes
from cnnlab.report.tables import setting_of, train_val_gap


def _save(fig, path: Path) -> str:
    return save_figure(fig, path).name


def _by_setting(jobs: list[Job], axes: list[str], tag: str) -> dict[str, np.ndarray]:
    """Setting → seeds × epochs array of one curve (truncated to the shortest seed), settings in the order of
    their swept values (numbers numerically: width 8 before 16)."""
    groups: dict[str, list[list[float]]] = {}
    order: dict[str, tuple] = {}
    for job in jobs:
        if job.curves.get(tag):
            setting = setting_of(job, axes)
            groups.setdefault(setting, []).append(job.curves[tag])
            order[setting] = tuple(value_key(job.overrides.get(axis, "-")) for axis in axes)
    return {s: np.array([c[: min(map(len, groups[s]))] for c in groups[s]]) for s in sorted(groups, key=order.get)}


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
    done = [j for j in jobs if j.status == "completed" and j.metrics.get("val_acc_final") is not None]
    if not done or not axes:  # (a run without validation, or an eval's record, has no val acc)
        return None
    fig, grid = plt.subplots(1, len(axes), figsize=(4 * len(axes), 3.6), squeeze=False, sharey=True)
    for ax, axis in zip(grid[0], axes):
        values = sorted({j.overrides.get(axis, "-") for j in done}, key=value_key)
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


def plot_aug_gain(jobs: list[Job], axes: list[str], gains: list[dict], out: Path) -> str | None:
    """Left: augmentation gain in test accuracy (mean over seeds, bars: sample std) against the parameter count,
    one line per augment policy and value of the other axes (e.g. training-set size). Right: the train–val gap
    of every setting, augment=none included, on the same axis."""
    if not gains:
        return None
    capacity = capacity_axes(axes)
    lines = [a for a in axes if a not in capacity]
    gaps = _gap_points(jobs, axes)
    styles = _line_styles(gains + gaps, lines)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for label, rows in _group(gains, lines).items():
        x, y, err = zip(*((r["params"], 100 * r["gain"], 100 * (r["gain_std"] or 0)) for r in rows))
        left.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label, **styles[label])
    for label, rows in _group(gaps, lines).items():
        x, y, err = zip(*((r["params"], 100 * r["gap"], 100 * (r["gap_std"] or 0)) for r in rows))
        right.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label, **styles[label])
    left.axhline(0, color="grey", lw=1)
    left.set(ylabel="test accuracy gain over augment=none (points)", title="What augmentation buys")
    right.set(ylabel="final train − val accuracy (points)", title="Train–val gap (overfitting)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("parameters" + (f" ({', '.join(capacity)} swept)" if capacity else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Augmentation gain against capacity (mean over seeds, bars: sample std)")
    return _save(fig, out / "aug_gain.png")


def _gap_points(jobs: list[Job], axes: list[str]) -> list[dict]:
    """Per setting: its swept values, parameter count and train–val gap (mean, sample std over seeds)."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if job.status == "completed" and train_val_gap(job) is not None and job.metrics.get("params"):
            groups.setdefault(setting_of(job, axes), []).append(job)
    points = []
    for members in groups.values():
        gaps = [train_val_gap(j) for j in members]
        points.append(
            {
                **{axis: members[0].overrides.get(axis, "-") for axis in axes},
                "params": members[0].metrics["params"],
                "gap": float(np.mean(gaps)),
                "gap_std": float(np.std(gaps, ddof=1)) if len(gaps) > 1 else None,
            }
        )
    return points


def _group(rows: list[dict], axes: list[str]) -> dict[str, list[dict]]:
    """Rows by their values on `axes` (one plotted line each), sorted by parameter count within a line."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("params"):
            groups.setdefault(_line_label(row, axes), []).append(row)
    return {label: sorted(rows, key=lambda r: r["params"]) for label, rows in sorted(groups.items())}


def _line_label(row: dict, axes: list[str]) -> str:
    return " ".join(f"{axis}={row[axis]}" for axis in axes) or "all"


def _line_styles(rows: list[dict], axes: list[str]) -> dict[str, dict]:
    """Colour by augment policy (none in black), line style by the values of the other axes."""
    policies = sorted({r["augment"] for r in rows} - {"none"})
    others = sorted({_line_label(r, [a for a in axes if a != "augment"]) for r in rows})
    dashes = ["-", "--", ":", "-."]
    styles = {}
    for r in rows:
        color = "black" if r["augment"] == "none" else plt.cm.tab10(policies.index(r["augment"]) % 10)
        other = others.index(_line_label(r, [a for a in axes if a != "augment"]))
        styles[_line_label(r, axes)] = {"color": color, "linestyle": dashes[other % len(dashes)]}
    return styles
