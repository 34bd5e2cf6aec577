"""A Hydra callback that ends a multirun with a count of its failed jobs and a non-zero exit."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cnnlab.runs import read_metrics

log = logging.getLogger("cnnlab")


def job_statuses(sweep_dir: Path) -> dict[str, str]:
    """Job directory name → status from its metrics.json ('missing' where it wrote none)."""
    statuses = {}
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir()):
        record = read_metrics(job_dir)
        statuses[job_dir.name] = record.get("status", "unknown") if record else "missing"
    return statuses


class SweepSummary(Callback):
    """After a multirun: log how many jobs completed; exit 1 if any failed, so scripts notice."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        statuses = job_statuses(sweep_dir)
        bad = {job: status for job, status in statuses.items() if status != "completed"}
        log.info("sweep %s: %d of %d jobs completed", sweep_dir, len(statuses) - len(bad), len(statuses))
        if bad:
            details = ", ".join(f"job {job}: {status}" for job, status in bad.items())
            log.error("%d of %d jobs did not complete (%s); each job's metrics.json holds its error. "
                      "Summarise with: cnnlab-compare %s", len(bad), len(statuses), details, sweep_dir)
            sys.exit(1)
