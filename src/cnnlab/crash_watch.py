"""A record for a run whose process dies without writing one (SIGSEGV or SIGABRT in native code, SIGKILL from the
OOM killer or `kill -9`): no handler runs in that process then, so a second, small process watches it.

The job starts `CrashWatch(run_dir, record)` once its run directory is accepted. The watcher (this file, run as a
script: the standard library only, no torch) reads the job's messages on a pipe: the record so far, each finished
epoch, and `done` once the job has written its own record. If the pipe closes without `done`, the job's process is
gone, and the watcher writes metrics.json with status `crashed`, how far the run got and what its log last said.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"  # as cnnlab.runs names it; this file imports nothing of cnnlab


class CrashWatch:
    """The job's end of the pipe to its watcher process."""

    def __init__(self, run_dir: Path, record: dict[str, Any], log_file: Path | None, next_step: str) -> None:
        read, self._write = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(run_dir), str(log_file or ""), str(os.getpid())],
            stdin=read,
            start_new_session=True,  # a Ctrl+C in the terminal is the job's to handle, not the watcher's
            close_fds=True,
        )
        os.close(read)
        self._send({"record": record, "started": time.time(), "next_step": next_step})

    def _send(self, message: dict[str, Any]) -> None:
        try:
            os.write(self._write, (json.dumps(message, default=str) + "\n").encode())
        except OSError:  # the watcher is gone (killed with the job's session): nothing to tell
            pass

    def epochs_done(self, epochs: int) -> None:
        """Tell the watcher that `epochs` epochs have finished."""
        self._send({"epochs": epochs})

    def done(self) -> None:
        """The job has written its own record (or was refused): the watcher ends without writing."""
        self._send({"done": True})
        os.close(self._write)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()


def _fatal_error(log_file: str) -> str | None:
    """The fatal signal faulthandler wrote into the dying process's log ('Segmentation fault', 'Aborted'), if any."""
    try:
        with open(log_file, "rb") as f:
            f.seek(max(0, os.path.getsize(log_file) - 50_000))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    fatal = re.findall(r"Fatal Python error: ([^\n]+)", tail)
    return fatal[-1].strip() if fatal else None


def _write_record(run_dir: Path, record: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".metrics.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, run_dir / METRICS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def crashed_record(run_dir: Path, log_file: str, pid: int, started: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The record of a job whose process `pid` died after `epochs` finished epochs."""
    record = dict(started.get("record") or {})
    last = run_dir / "checkpoints" / "last.ckpt"
    fatal = _fatal_error(log_file) if log_file else None
    if fatal:
        how = f"it crashed in native code: {fatal}; the stack is in {log_file}"
    else:
        how = "no crash in its log: it was killed by SIGKILL, from the OOM killer or kill -9"
    kept = f"{last} holds the last saved epoch" if last.is_file() else "no checkpoint was saved"
    record.update(
        status="crashed",
        error=(
            f"the process (pid {pid}) died without writing its record after {epochs} finished "
            f"epoch{'s' * (epochs != 1)} ({how}); {kept}. {started.get('next_step', '')}".rstrip()
        ),
        epochs=epochs,
        wall_s=round(time.time() - started.get("started", time.time()), 3),
    )
    return record


def _watch(run_dir: Path, log_file: str, pid: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the job decides how it ends, not a signal here
        signal.signal(sig, signal.SIG_IGN)
    started: dict[str, Any] = {}
    epochs = 0
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("done"):
            return
        started = started or message
        epochs = message.get("epochs", epochs)
    if started and run_dir.is_dir():  # the pipe closed without `done`: the job's process is gone
        _write_record(run_dir, crashed_record(run_dir, log_file, pid, started, epochs))


if __name__ == "__main__":
    _watch(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
