"""The speedrun's peers (scripts/peer_airbench94*.py) run end to end; their speed and accuracy are measured by hand
(docs/benchmarks.md), never here."""

import subprocess
import sys

import pytest

from conftest import REPO, write_fake_cifar


@pytest.mark.slow  # a subprocess training two FastNet steps at batch 2,000 (~15 s idle)
@pytest.mark.parametrize("script", ["peer_airbench94.py", "peer_airbench94_muon.py"])
def test_a_peer_trains_an_epoch_and_prints_its_accuracy(tmp_path, script):
    write_fake_cifar(tmp_path, per_batch=1000)  # 5,000 training images: two batches of 2,000 (one of airbench94's)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), "--data-dir", str(tmp_path), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 1: train loss" in proc.stdout and "seed 0: test acc" in proc.stdout
    assert "nan" not in proc.stdout.lower()
