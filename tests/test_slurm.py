"""SLURM: a real hydra/launcher=submitit_slurm sweep (two jobs, both finish, cnnlab-compare reports them), and the
time-limit warning submitit asks SLURM for (SIGUSR2) ending a run as interrupted, with a checkpoint to resume from.

The tests marked `slurm` need a cluster that answers (`scripts/slurm_local.sh` starts one on this host); run them
with `make test-slurm`. CNNLAB_SLURM_PARTITION picks the partition (default: the cluster's default one);
CNNLAB_SLURM_DIR a folder the compute nodes can see (default: pytest's tmp folder, fine on a single node).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.cli.train import run
from conftest import compose_config


def default_partition() -> str:
    """The partition to use: $CNNLAB_SLURM_PARTITION, else the one sinfo marks as default; skip if none answers."""
    missing = [tool for tool in ("sbatch", "sinfo") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"SLURM client tools not found ({', '.join(missing)}); start a local cluster with scripts/slurm_local.sh"
        )
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip("sinfo did not answer within 30 s: the SLURM controller is not reachable")
    if proc.returncode != 0:
        pytest.skip(
            f"SLURM controller does not answer (sinfo: {proc.stderr.strip()}); start it with scripts/slurm_local.sh"
        )
    partitions = {
        name.rstrip("*"): (name.endswith("*"), avail)
        for name, avail in (line.split() for line in proc.stdout.splitlines() if line.strip())
    }
    wanted = os.environ.get("CNNLAB_SLURM_PARTITION") or next((p for p, (d, _) in partitions.items() if d), None)
    if wanted not in partitions or partitions[wanted][1] != "up":
        pytest.skip(f"partition {wanted!r} is not up (cluster has: {partitions}); set CNNLAB_SLURM_PARTITION")
    return wanted


@pytest.fixture(scope="module")
def slurm_sweep(tmp_path_factory):
    """Two seeds of a one-epoch tiny run, each its own SLURM job; the submitting process waits for both."""
    partition = default_partition()
    root = Path(os.environ.get("CNNLAB_SLURM_DIR") or tmp_path_factory.mktemp("slurm"))
    sweep_dir = root / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    exe = Path(sys.executable).with_name("cnnlab-train")
    cmd = [
        str(exe),
        "-m",
        "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={partition}",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.tasks_per_node=1",
        "hydra.launcher.mem_gb=2",
        "threads=1",
        "data=tiny",
        "trainer.max_epochs=1",
        "progress_bar=false",
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"the sweep did not end within 600 s (squeue shows whether its jobs still wait or run; without "
            f"SLURM accounting, submitit cannot see a job that died before writing its result):\n{e.stderr}"
        )
    print(
        f"$ {' '.join(cmd)}\n(exit {proc.returncode} after {time.monotonic() - start:.0f} s)\n{proc.stdout[-3000:]}"
        f"{proc.stderr[-3000:]}"
    )
    return sweep_dir, proc


@pytest.mark.slurm
def test_both_jobs_run_under_slurm_and_complete(slurm_sweep):
    sweep_dir, proc = slurm_sweep
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 of 2 jobs completed" in proc.stdout + proc.stderr  # the sweep-summary callback ran at the end
    records = {
        d.name: json.loads((d / "metrics.json").read_text())
        for d in sorted(sweep_dir.iterdir())
        if (d / "metrics.json").exists()
    }
    assert sorted(records) == ["0", "1"]
    assert {r["seed"] for r in records.values()} == {0, 1}
    for record in records.values():
        assert record["status"] == "completed" and record["epochs"] == 1
        for key in ("val_acc_final", "val_acc_best", "test_acc"):
            assert 0.1 < record[key] <= 1.0 and not math.isnan(record[key]), (key, record)  # above chance (10 classes)
    # Each job ran as a SLURM job: submitit keeps one log folder per SLURM job id, with that job's output.
    logs = sorted((sweep_dir / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2, logs
    for log in logs:
        text, job_id = log.read_text(), log.parent.name
        assert job_id.split("_")[0].isdigit() and f"JobEnvironment(job_id={job_id}," in text
        assert "Job completed successfully" in text


@pytest.mark.slurm
def test_compare_summarises_the_slurm_sweep(slurm_sweep):
    sweep_dir, _ = slurm_sweep
    exe = Path(sys.executable).with_name("cnnlab-compare")
    proc = subprocess.run([str(exe), str(sweep_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert sorted(r["seed"] for r in rows) == ["0", "1"]
    assert all(r["status"] == "completed" for r in rows)
    summary = (sweep_dir / "summary.md").read_text()
    assert "|" in summary and "Jobs that did not complete" not in summary


def test_the_slurm_time_limit_warning_interrupts_with_a_checkpoint(tmp_path):
    """submitit has SLURM send SIGUSR2 `hydra.launcher.signal_delay_s` before the time limit; the run must end as
    'interrupted' with a checkpoint and a resume hint, not as a failed job (submitit's own handler would raise)."""
    cfg = compose_config(
        [
            "data=tiny",
            "progress_bar=false",
            "model.width=8",
            "data.train_count=600",
            "data.val_size=100",
            "trainer.max_epochs=3",
            "+callbacks.sig._target_=helpers.SignalAt",
            "+callbacks.sig.epoch=1",
            f"+callbacks.sig.signum={int(signal.SIGUSR2)}",
        ],
        tmp_path,
    )

    def submitit_handler(signum, frame):  # what submitit installs in a SLURM job: give up on the job
        raise RuntimeError("Job not requeued because: timed-out too many times.")

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        with pytest.raises(SystemExit) as exit_info:
            run(cfg)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert exit_info.value.code == 128 + signal.SIGUSR2
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["signal"] == signal.SIGUSR2
    assert "SIGUSR2 received at epoch 1" in record["error"]
    assert (tmp_path / "checkpoints" / "interrupted.ckpt").exists() and (
        tmp_path / "checkpoints" / "last.ckpt"
    ).exists()
