"""A file size limit (`ulimit -f`) or a full disk while a command writes: one line naming the file and the fix,
exit 2, no traceback, no partial file; a run keeps a `failed` record where one fits, and says so where none does
(#30)."""

import errno
import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from cnnlab.errors import user_error
from cnnlab.lab import rf
from conftest import run_tool

BIN = Path(sys.executable).parent
TRAIN = ("data=tiny", "trainer.max_epochs=1", "progress_bar=false", "data.train_count=300", "data.val_size=60")


def limited(limit_kb: int, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `argv` under `ulimit -f limit_kb` (bash counts 1024-byte blocks)."""
    command = f"ulimit -f {limit_kb}; exec {shlex.join(argv)}"
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=300)


def lines_of(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_efbig_is_a_user_error_naming_the_file_and_the_limit():
    error = user_error(OSError(errno.EFBIG, "File too large", "/runs/a/checkpoints/best.ckpt"))
    assert error is not None and str(error).startswith("/runs/a/checkpoints/best.ckpt ")
    assert "file size limit" in str(error) or "largest file" in str(error)


def test_a_file_size_limit_during_a_checkpoint_save_is_one_line_and_a_failed_record(tmp_path):
    run = tmp_path / "run"
    proc = limited(1024, str(BIN / "cnnlab-train"), *TRAIN, f"hydra.run.dir={run}", cwd=tmp_path)
    lines = lines_of(proc)
    assert proc.returncode == 2, "\n".join(lines[-40:])
    assert "Traceback" not in proc.stdout + proc.stderr
    best = run / "checkpoints" / "best.ckpt"
    expected = f"{best} reached this process's file size limit (ulimit -f 1024: {1024 * 1024} bytes). Fix: raise"
    errors = [line for line in lines if "[ERROR]" in line]
    assert len(errors) == 1 and expected in errors[0], lines
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith(expected)
    assert not list((run / "checkpoints").iterdir())  # no partial file, no cut checkpoint


def test_compare_under_a_file_size_limit_is_one_line_and_leaves_nothing_behind(tmp_path):
    sweep = tmp_path / "sweep"
    for num, depth in enumerate((2, 2, 3, 3)):
        job = sweep / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.depth={depth}", f"seed={num % 2}"]))
        curves = {"val/acc": [0.3, 0.5], "train/loss": [1.0, 0.8], "val/loss": [1.1, 0.9]}
        record = {"status": "completed", "seed": num % 2, "val_acc_final": 0.5, "epochs": 2, "curves": curves}
        (job / "metrics.json").write_text(json.dumps(record))
    out = tmp_path / "report" / "new"
    proc = limited(4, str(BIN / "cnnlab-compare"), str(sweep), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {out}/"), proc.stderr
    assert "file size limit (ulimit -f 4: 4096 bytes)" in proc.stderr
    assert ".cnnlab-compare-" not in proc.stderr  # the report's file, not its hidden copy
    assert not (tmp_path / "report").exists()

    earlier = tmp_path / "earlier"  # an --out that holds a report keeps it whole
    earlier.mkdir()
    (earlier / "summary.md").write_text("the earlier report\n")
    proc = limited(4, str(BIN / "cnnlab-compare"), str(sweep), "--out", str(earlier), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert [p.name for p in earlier.iterdir()] == ["summary.md"]
    assert (earlier / "summary.md").read_text() == "the earlier report\n"


HANDS_OVER = """
import errno, threading
import cnnlab.runs

cnnlab.runs.quiet()  # what every console script and job does first

class HandsOver(threading.Thread):  # keeps its error for its owner, as TensorBoard's event writer does
    def __init__(self, error):
        super().__init__()
        self.error, self.exception = error, None

    def run(self):
        self.exception = self.error
        raise self.error

for error in (OSError(errno.ENOSPC, "No space left on device"), ValueError("a bug")):
    thread = HandsOver(error)
    thread.start()
    thread.join()
    assert thread.exception is error
"""


def test_a_writer_thread_that_hands_its_disk_error_over_prints_no_traceback():
    # In a process of its own: pytest replaces threading.excepthook while a test runs.
    proc = subprocess.run([sys.executable, "-c", HANDS_OVER], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "OSError" not in proc.stderr and proc.stderr.count("Traceback") == 1  # the other error's, as before
    assert "ValueError: a bug" in proc.stderr


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs (root only): a run on it fills it with its TensorBoard events."""
    mount = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a 64 KiB tmpfs is not permitted here ({proc.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_one_line_naming_the_file_and_saying_the_record_is_missing(tmp_path, full_disk):
    run = full_disk / "run"
    proc = subprocess.run(
        [str(BIN / "cnnlab-train"), *TRAIN, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = lines_of(proc)
    assert proc.returncode == 2, "\n".join(lines[-40:])
    assert "Traceback" not in proc.stdout + proc.stderr  # TensorBoard's writer thread printed 40 lines of it
    errors = [line for line in lines if "[ERROR]" in line]
    assert len(errors) == 1 and not (run / "metrics.json").exists(), errors
    assert f"the disk refused a write writing {run}/" in errors[0]  # first what failed: TensorBoard's events file
    assert f"so {run} has no metrics.json: the disk refused a write writing {run / 'metrics.json'}" in errors[0]
    assert not [p for p in run.iterdir() if p.name.startswith(".metrics.")]


def test_the_rf_tool_under_a_file_size_limit_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "lab" / "rf"
    proc = limited(4, str(BIN / "cnnlab-rf"), "data=tiny", "model.depth=2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and lines_of(proc) == [proc.stderr.strip()], proc.stdout + proc.stderr
    assert f"{out}/rf_fresh.png" in proc.stderr and "file size limit" in proc.stderr  # no table printed before it
    assert not (tmp_path / "lab").exists()
    printed = run_tool(rf, ["data=tiny", "model.depth=2", "--out", str(out)], monkeypatch, capsys)  # no limit
    assert (out / "rf_fresh.png").stat().st_size > 4096 and "figures: " in printed
