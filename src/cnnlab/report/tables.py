"""Rows of the comparison report: one per job, and one per setting with mean ± std over seeds."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from cnnlab.report.collect import NUMBERS, Job, running_note

# The record's numbers, then the train–val gap (computed here) before the epochs and time, then the status.
JOB_COLUMNS = (
    *NUMBERS[: NUMBERS.index("epochs")],
    "train_val_gap",
    *NUMBERS[NUMBERS.index("epochs") :],
    "status",
)


def setting_of(job: Job, axes: list[str]) -> str:
    """The job's swept values as one label, e.g. 'augment=none model.depth=3'."""
    return " ".join(f"{axis}={job.overrides.get(axis, '-')}" for axis in axes) or "all"


def train_val_gap(job: Job) -> float | None:
    """Last epoch's train accuracy minus final val accuracy (the overfitting symptom), None without both."""
    train_acc = job.curves.get("train/acc", [])
    final = job.metrics.get("val_acc_final")
    return train_acc[-1] - final if train_acc and final is not None else None


def mixes_labels(job: Job) -> bool:
    """Whether the job trained on label-mixed images (its augment.ops end with a MixingOp: mixup, cutmix), as its
    metrics.json records it (`mixes_labels`, read off the augmentation the run built from its config)."""
    return bool(job.metrics.get("mixes_labels"))


def mixing_note(jobs: list[Job], axes: list[str]) -> list[str]:
    """One line (and a blank) for summary.md when any job mixed labels: its train–val gap means something else."""
    settings = sorted({setting_of(job, axes) for job in jobs if mixes_labels(job)})
    if not settings:
        return []
    return [
        f"Label-mixing augmentation in {', '.join(settings)}: train acc there is measured on mixed images (against "
        "each image's dominant label), not comparable with val acc on clean images, so its train_val_gap is not an "
        "overfitting measure.",
        "",
    ]


def job_row(job: Job, axes: list[str]) -> dict[str, Any]:
    """One CSV row: the swept values, the seed and the job's numbers."""
    m = job.metrics
    row: dict[str, Any] = {
        "job": str(job.path),
        **{axis: job.overrides.get(axis, "") for axis in axes},
        "seed": job.overrides.get("seed", m.get("seed", "")),
    }
    row.update({col: m.get(col) for col in JOB_COLUMNS})
    row["train_val_gap"] = train_val_gap(job)
    row["status"] = job.status
    row["error"] = m.get("error", "")
    return row


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """summary.csv: every job, in job order."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _plain(v) for k, v in row.items()} for row in rows)


def _plain(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def grouped_rows(jobs: list[Job], axes: list[str]) -> list[dict[str, Any]]:
    """One row per setting: seeds pooled as mean ± std (in %), sorted by mean val acc, best first."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(setting_of(job, axes), []).append(job)
    rows = []
    for setting, members in groups.items():
        done = [j for j in members if j.status == "completed"]

        def values(key: str, done: list[Job] = done) -> list[float]:
            return [j.metrics[key] for j in done if j.metrics.get(key) is not None]

        gaps = [g for g in map(train_val_gap, done) if g is not None]
        rows.append(
            {
                "setting": setting,
                "jobs": f"{len(done)}/{len(members)}",
                "params": next((j.metrics.get("params") for j in members if j.metrics.get("params")), None),
                "macs": next((j.metrics.get("macs") for j in members if j.metrics.get("macs")), None),
                "receptive_field": next(
                    (j.metrics.get("receptive_field") for j in members if j.metrics.get("receptive_field")), None
                ),
                "val_acc_best": _mean_std(values("val_acc_best")),
                "val_acc_final": _mean_std(values("val_acc_final")),
                "test_acc": _mean_std(values("test_acc")),
                "test_consistency": _mean_std(values("test_consistency")),
                "train_val_gap": _mean_std(gaps),
                "epochs": max(values("epochs"), default=None),
                "wall_s": round(sum(values("wall_s")), 1),
                "_sort": statistics.mean(values("val_acc_final")) if values("val_acc_final") else -1.0,
            }
        )
    return sorted(rows, key=lambda r: (-r["_sort"], r["setting"]))


def _points(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def gain_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The augmentation-gain section of summary.md: one line per augmented setting (rows of report.gain)."""
    lines = [
        "## Augmentation gain",
        "",
        "Test accuracy of each augmented setting minus that of its augment=none twin (same values on every other "
        "axis), paired seed by seed: gain = mean ± sample std over seeds of the per-seed differences, in points. "
        "Train–val gaps use train accuracy on the (augmented) training batches.",
        "",
        "| setting | compared with | params | seeds | test_acc | test_acc (none) | gain | train_val_gap | "
        "train_val_gap (none) |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        gain = _points(r["gain"], signed=True) + ("" if r["gain_std"] is None else f" ± {_points(r['gain_std'])}")
        cells = [r["setting"], r["baseline"], r["params"], r["seeds"], _points(r["test_acc"])]
        cells += [_points(r["baseline_test_acc"]), gain, _points(r["train_val_gap"])]
        cells += [_points(r["baseline_train_val_gap"])]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return lines


def write_markdown(
    jobs: list[Job], axes: list[str], path: Path, plots: list[str], sections: list[str] | None = None
) -> None:
    """summary.md: settings sorted by val acc (mean ± std over seeds), failures with their errors, any further
    `sections` (markdown lines), plots."""
    grouped = grouped_rows(jobs, axes)
    columns = ("setting", "jobs", *(c for c in JOB_COLUMNS if c != "status"))
    lines = [
        f"# Sweep summary ({len(jobs)} jobs)",
        "",
        f"Swept: {', '.join(axes) or 'nothing'}. Accuracies in %, mean ± std over seeds; "
        "train_val_gap = final train acc − final val acc (the overfitting symptom); wall_s is summed over seeds. "
        "Sorted by final val acc.",
        "",
        *mixing_note(jobs, axes),
        *([f"**{note}**", ""] if (note := running_note(jobs)) else []),
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join("" if row[c] is None else str(row[c]) for c in columns) + " |" for row in grouped]
    failed = [j for j in jobs if j.status != "completed"]
    if failed:
        lines += ["", f"## Jobs that did not complete ({len(failed)})", ""]
        lines += [
            f"- `{j.path.name}` ({setting_of(j, axes)}, seed {j.overrides.get('seed', '-')}): {j.status}"
            + (f": {j.metrics['error']}" if j.metrics.get("error") else "")
            for j in failed
        ]
    if sections:
        lines += ["", *sections]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    path.write_text("\n".join(lines) + "\n")
