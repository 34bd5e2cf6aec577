"""The logger and callbacks groups: every logger gets the hparams and metrics; the record stays the source."""

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.cli.train import run
from conftest import compose_config

TINY = [
    "data=tiny",
    "progress_bar=false",
    "model.width=8",
    "data.train_count=600",
    "data.val_size=100",
    "lab_images=false",
]


def train(run_dir: Path, *extra: str) -> dict:
    run(compose_config(TINY + list(extra), run_dir))
    return json.loads((run_dir / "metrics.json").read_text())


def test_several_loggers_at_once_each_get_hparams_and_the_epoch_curves(tmp_path):
    metrics = train(tmp_path, "logger=[tensorboard,csv]", "trainer.max_epochs=2")
    assert any((tmp_path / "tb").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    val_acc = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert val_acc == pytest.approx(metrics["curves"]["val/acc"])  # the CSV holds what the record holds
    assert float(next(r["hp/test_acc"] for r in rows if r.get("hp/test_acc"))) == pytest.approx(metrics["test_acc"])
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert hparams["model/width"] == 8 and hparams["params"] == metrics["params"]


def test_without_any_logger_the_record_keeps_its_curves(tmp_path):
    metrics = train(tmp_path, "logger=none", "trainer.max_epochs=2")
    assert not (tmp_path / "tb").exists() and metrics["status"] == "completed"
    assert len(metrics["curves"]["train/loss"]) == len(metrics["curves"]["val/acc"]) == 2
    assert metrics["curves"]["val/acc"][-1] == pytest.approx(metrics["val_acc_final"])


def test_callbacks_none_is_the_bare_loop_without_checkpoints(tmp_path):
    metrics = train(tmp_path, "callbacks=none", "trainer.max_epochs=1")
    assert metrics["status"] == "completed" and not (tmp_path / "checkpoints" / "best.ckpt").exists()
    assert metrics["best_checkpoint"] == "" and metrics["val_acc_best"] == metrics["val_acc_final"]


def test_early_stopping_ends_the_run_when_val_acc_stops_improving(tmp_path):
    # stopping_threshold=0: any val/acc counts as good enough, so the run stops after its first epoch
    metrics = train(
        tmp_path, "callbacks=early_stopping", "+callbacks.early_stopping.stopping_threshold=0.0", "trainer.max_epochs=5"
    )
    assert metrics["status"] == "completed" and metrics["epochs"] == 1 and len(metrics["curves"]["val/acc"]) == 1


def test_mlflow_logger_gets_the_same_params_and_metrics(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="logger=mlflow is the optional extra: pip install -e '.[mlflow]'")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the store goes to ./outputs/mlflow.db
    monkeypatch.setenv("PWD", str(tmp_path))
    metrics = train(tmp_path / "run", "logger=mlflow", "trainer.max_epochs=1")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/outputs/mlflow.db")
    (logged,) = client.search_runs([client.get_experiment_by_name("cnnlab").experiment_id])
    assert logged.data.params["model/width"] == "8"
    assert logged.data.metrics["hp/test_acc"] == pytest.approx(metrics["test_acc"])


def test_val_size_zero_trains_on_every_image_and_tests_the_last_epoch(tmp_path, caplog):
    metrics = train(tmp_path, "data.val_size=0", "trainer.max_epochs=2")
    assert metrics["status"] == "completed" and metrics["val_acc_best"] is None and metrics["val_acc_final"] is None
    assert set(metrics["curves"]) == {"train/loss", "train/acc"} and len(metrics["curves"]["train/acc"]) == 2
    assert metrics["best_checkpoint"] == str(tmp_path / "checkpoints" / "last.ckpt")
    assert not (tmp_path / "checkpoints" / "best.ckpt").exists()
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * 10  # all 600 images at 64 per batch: 10 steps an epoch, none held out
    assert "data.val_size=0: no validation split, so best_checkpoint (watching val/) are left out" in caplog.text
    assert metrics["test_acc"] > 0.3  # chance is 0.1
