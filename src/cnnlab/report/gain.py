"""Augmentation gain: each augmented run paired with its unaugmented twin (augment=none, same values on every
other swept axis, same seed), and the gain in test accuracy per setting, mean and spread over seeds."""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from typing import Any

from cnnlab.report.collect import Job, value_key
from cnnlab.report.tables import setting_of, train_val_gap

log = logging.getLogger("cnnlab")

BASELINE = "augment=none"


@dataclass(frozen=True)
class Pair:
    """An augmented run and the unaugmented run it is compared with."""

    augmented: Job
    baseline: Job
    seed: str

    @property
    def gain(self) -> float:
        """Test accuracy with augmentation minus without (a fraction; × 100 for points)."""
        return self.augmented.metrics["test_acc"] - self.baseline.metrics["test_acc"]


def has_baseline(jobs: list[Job], axes: list[str]) -> bool:
    """True when the sweep varies `augment` and one of its levels is `none`."""
    return "augment" in axes and any(job.overrides.get("augment") == "none" for job in jobs)


def capacity_axes(axes: list[str]) -> list[str]:
    """The swept model.* axes (width, depth, ...): what the gain is plotted against, via the parameter count."""
    return [axis for axis in axes if axis.startswith("model.")]


def seed_of(job: Job) -> str:
    """The job's seed as a string: its override, else its record's."""
    return str(job.overrides.get("seed", job.metrics.get("seed", "")))


def _key(job: Job, axes: list[str]) -> tuple[str, ...]:
    """Every swept value except augment, plus the seed: what an augmented run and its twin share."""
    return (*(job.overrides.get(axis, "-") for axis in axes if axis != "augment"), seed_of(job))


def pair_runs(jobs: list[Job], axes: list[str]) -> list[Pair]:
    """Every completed augmented run with a completed augment=none twin, in job order."""
    usable = [j for j in jobs if j.status == "completed" and j.metrics.get("test_acc") is not None]
    baselines: dict[tuple[str, ...], Job] = {}
    for job in usable:
        if job.overrides.get("augment") == "none":
            if _key(job, axes) in baselines:
                first = baselines[_key(job, axes)].path
                log.warning("%s repeats the setting and seed of %s; the first is the baseline", job.path, first)
            baselines.setdefault(_key(job, axes), job)
    return [
        Pair(job, baselines[_key(job, axes)], seed_of(job))
        for job in usable
        if job.overrides.get("augment") not in (None, "none") and _key(job, axes) in baselines
    ]


def _mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def _std(values: list[float]) -> float | None:
    """Sample standard deviation (n − 1); None below two values."""
    return statistics.stdev(values) if len(values) > 1 else None


def gain_rows(jobs: list[Job], axes: list[str]) -> list[dict[str, Any]]:
    """One row per augmented setting: its twin setting, the pairs (seeds) found, test accuracy with and without,
    the gain (mean and sample std over seeds of the per-seed differences) and both train–val gaps."""
    groups: dict[str, list[Pair]] = {}
    for pair in pair_runs(jobs, axes):
        groups.setdefault(setting_of(pair.augmented, axes), []).append(pair)
    rows = []
    for setting, pairs in groups.items():
        first = pairs[0].augmented
        gaps = [g for g in (train_val_gap(p.augmented) for p in pairs) if g is not None]
        baseline_gaps = [g for g in (train_val_gap(p.baseline) for p in pairs) if g is not None]
        gains = [p.gain for p in pairs]
        rows.append(
            {
                "setting": setting,
                "baseline": setting_of(pairs[0].baseline, axes),
                **{axis: first.overrides.get(axis, "-") for axis in axes},
                "params": first.metrics.get("params"),
                "seeds": " ".join(p.seed for p in pairs),
                "pairs": len(pairs),
                "test_acc": _mean([p.augmented.metrics["test_acc"] for p in pairs]),
                "baseline_test_acc": _mean([p.baseline.metrics["test_acc"] for p in pairs]),
                "gain": _mean(gains),
                "gain_std": _std(gains),
                "train_val_gap": _mean(gaps),
                "baseline_train_val_gap": _mean(baseline_gaps),
            }
        )
    return sorted(rows, key=lambda r: _order(r, axes))


def _order(row: dict[str, Any], axes: list[str]) -> tuple:
    """Group by augment and the other non-capacity axes, then by growing capacity (parameter count)."""
    groups = tuple(value_key(row[a]) for a in axes if a not in capacity_axes(axes))
    return (*groups, row["params"] or 0, *(value_key(row[a]) for a in capacity_axes(axes)))
