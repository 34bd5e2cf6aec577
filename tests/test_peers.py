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
        [sys.executable, str(REPO / "scripts" / script), "--data-dir", str(tmp_path), "--epochs", "1", "--curve"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 1: train loss" in proc.stdout and "seed 0: test acc" in proc.stdout
    assert "curve: epoch 1, " in proc.stdout and "s of it in --curve evaluations" in proc.stdout
    assert "nan" not in proc.stdout.lower()


@pytest.mark.slow  # two epochs of the muon peer, the first at 16 px, then five selective-TTA evaluations
def test_the_muon_peer_ablations_resize_epochs_and_select_tta_views(tmp_path):
    write_fake_cifar(tmp_path, per_batch=1000)
    script = [sys.executable, str(REPO / "scripts" / "peer_airbench94_muon.py"), "--data-dir", str(tmp_path)]
    proc = subprocess.run(
        [*script, "--epochs", "2", "--sizes", "16,32", "--tta-select"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 2: train loss" in proc.stdout
    shares = [
        float(line.split("views for ")[1].split("%")[0]) for line in proc.stdout.splitlines() if "below p=" in line
    ]
    assert len(shares) == 5 and shares == sorted(shares)  # a higher threshold gives more images the extra views
    refused = subprocess.run([*script, "--epochs", "2", "--sizes", "16"], capture_output=True, text=True)
    assert refused.returncode == 2 and "names 1 sizes for 2 epochs" in refused.stderr
