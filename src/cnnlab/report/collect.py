"""Collect the jobs of one or more sweep directories: swept values and each run's own record (metrics.json,
with its per-epoch curves), whatever logger the runs used."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.runs import read_metrics

log = logging.getLogger("cnnlab")


@dataclass
class Job:
    """One run directory: its command-line overrides, its metrics.json (if any) and per-epoch curves."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any]
    curves: dict[str, list[float]] = field(default_factory=dict)
    overrides_read: bool = True  # False: its overrides.yaml is damaged, so it says nothing of what was swept

    @property
    def status(self) -> str:
        return self.metrics.get("status", "missing")


def find_job_dirs(root: Path) -> list[Path]:
    """Run directories under `root` (or `root` itself): folders holding Hydra's .hydra/overrides.yaml. Folders
    linked in (a job copied as a symlink) are followed, each real folder once."""
    root = Path(root)
    if (root / ".hydra" / "overrides.yaml").exists():
        return [root]
    found, seen = [], set()
    for folder, subfolders, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree, or a second link to one folder
            subfolders.clear()
            continue
        seen.add(real)
        if (Path(folder) / ".hydra" / "overrides.yaml").is_file():
            found.append(Path(folder))
        subfolders[:] = [d for d in subfolders if d != ".hydra"]
    return sorted(found, key=lambda p: (len(p.parts), _natural(p)))


def _natural(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in path.parts]


def read_overrides(job_dir: Path) -> dict[str, str]:
    """The job's command-line overrides as key → value strings (group choices included)."""
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        items = yaml.safe_load(path.read_text()) or []
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError("not a list of overrides (key=value texts)")
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise CnnlabError(f"{path} could not be read ({type(e).__name__}: {' '.join(str(e).split())})") from None
    pairs = (item.split("=", 1) for item in items if "=" in item)
    return {key.lstrip("+~"): _canonical(value) for key, value in pairs if not key.startswith("hydra")}


def _canonical(value: str) -> str:
    """One spelling per value: Hydra's multirun writes `False` where the command line said `false`."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return str(parsed).lower() if isinstance(parsed, bool) else value


# The record's numbers the report computes with (means, gaps, plots): each a number or null.
NUMBERS = (
    "params",
    "macs",
    "receptive_field",
    "val_acc_final",
    "val_acc_best",
    "test_acc",
    "test_consistency",
    "epochs",
    "wall_s",
)


def check_record(path: Path, metrics: dict[str, Any]) -> None:
    """A CnnlabError naming the first value of a record (hand-edited or damaged) that the report cannot compute
    with: a non-number where a number belongs, curves that are not lists of numbers, a status that is not text."""

    def number(value: Any) -> bool:  # NaN or inf would end the report in a plot's traceback
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    bad = next((f"{k}={metrics[k]!r}" for k in NUMBERS if metrics.get(k) is not None and not number(metrics[k])), None)
    curves = metrics.get("curves") or {}
    if bad is None and not isinstance(curves, dict):
        bad = f"curves={curves!r}"
    if bad is None:
        bad = next(
            (f"curves.{k}={v!r}" for k, v in curves.items() if not isinstance(v, list) or not all(map(number, v))), None
        )
    if bad is None and not isinstance(metrics.get("status", ""), str):
        bad = f"status={metrics['status']!r}"
    if bad is not None:
        raise CnnlabError(
            f"{path / 'metrics.json'} holds {' '.join(bad.split())[:120]}, which is not what cnnlab writes there "
            f"(a number, a list of numbers, text). Fix: restore the run's own metrics.json, or remove the run."
        )


def run_dir_locked(run_dir: Path) -> bool:
    """Whether a cnnlab process holds `run_dir`'s lock (cnnlab.runs takes an exclusive flock on the folder while
    it writes the run). Read from /proc/locks where there is one: trying the lock would make a job that starts at
    that moment find it taken."""
    try:
        st = os.stat(run_dir)
    except OSError:
        return False
    try:
        held = Path("/proc/locks").read_text()
    except OSError:  # no /proc (macOS): try the lock itself, and let it go at once
        return _flock_taken(run_dir)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(line.split()[1:2] == ["FLOCK"] and device in line.split() for line in held.splitlines())


def _flock_taken(run_dir: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: cnnlab takes no lock there
        return False
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def collect_job(job_dir: Path) -> Job:
    """One job; a damaged record makes it an 'unreadable' row naming the file, not the end of the report."""
    try:
        overrides = read_overrides(job_dir)
    except CnnlabError as e:
        log.warning("%s", e)
        return Job(job_dir, {}, {"status": "unreadable", "error": str(e)}, overrides_read=False)
    try:
        metrics = read_metrics(job_dir)
        if metrics is None:  # no record yet: a job still running holds its folder's lock
            metrics = {"status": "running"} if run_dir_locked(job_dir) else {}
        check_record(job_dir, metrics)
        return Job(job_dir, overrides, metrics, metrics.get("curves") or {})
    except CnnlabError as e:
        log.warning("%s", e)
        return Job(job_dir, overrides, {"status": "unreadable", "error": str(e)})


def collect_jobs(roots: list[Path]) -> list[Job]:
    """Every job under the given sweep (or run) directories, finished or not; a job given twice (a folder and its
    sweep, or one folder through two paths) counts once."""
    seen: set[str] = set()
    unique = []
    for job_dir in (d for root in roots for d in find_job_dirs(root)):
        if (real := os.path.realpath(job_dir)) not in seen:
            seen.add(real)
            unique.append(job_dir)
    return [collect_job(d) for d in unique]


def running_note(jobs: list[Job]) -> str | None:
    """One line saying which jobs are still running (the report covers the others), or None."""
    running = [job for job in jobs if job.status == "running"]
    if not running:
        return None
    names = ", ".join(job.path.name for job in running[:5]) + (", ..." if len(running) > 5 else "")
    others = len(jobs) - len(running)
    return (
        f"{len(running)} of {len(jobs)} jobs are still running ({names}): this report covers the {others} others "
        f"only. Run cnnlab-compare again when the sweep has ended."
    )


def swept_axes(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs (seed excluded: seeds are grouped, not compared); a job whose
    overrides could not be read has no say."""
    known = [job for job in jobs if job.overrides_read]
    keys = sorted({k for job in known for k in job.overrides})
    varying = [k for k in keys if len({job.overrides.get(k) for job in known}) > 1]
    return [k for k in varying if k != "seed"]


def value_key(value: str) -> tuple:
    """Sort key for swept values: numbers in numeric order, then words (none, null) alphabetically."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
