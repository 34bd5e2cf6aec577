"""metrics.json: one small, atomically written summary per run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"


def write_metrics(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write `record` to run_dir/metrics.json via a temporary file, so a crash never leaves half a file."""
    path = Path(run_dir) / METRICS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, path)
    return path


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's metrics.json as a dict, or None if it has none (yet)."""
    path = Path(run_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else None
