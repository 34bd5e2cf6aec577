"""End-to-end: a tiny training learns, writes metrics.json, TensorBoard events and checkpoints; eval reads them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.cli.eval import check, evaluate
from cnnlab.cli.train import run
from conftest import compose_config

TINY = ["data=tiny", "progress_bar=false", "model.width=16"]


def train_tiny(run_dir: Path, *extra: str) -> dict:
    run(compose_config(TINY + list(extra), run_dir))
    return json.loads((run_dir / "metrics.json").read_text())


def scalar_tags(run_dir: Path) -> set[str]:
    tags = set()
    for events in (run_dir / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    train_tiny(run_dir, "trainer.max_epochs=2")
    return run_dir


def test_two_epochs_on_tiny_beat_chance_by_a_wide_margin(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["test_acc"] > 0.5 and metrics["val_acc_best"] > 0.5  # chance is 0.1
    # width 16 → 16/32/64 channels: (432 + 32) + (4608 + 64) + (18432 + 128) conv+BN, head 64·10 + 10
    assert metrics["params"] == 464 + 4_672 + 18_560 + 650
    # 1,200 − 200 validation = 1,000 training images per epoch, 2 epochs, trained in less than the whole run's wall time
    assert metrics["train_images_per_s"] > 2 * 1_000 / metrics["wall_s"]


def test_run_writes_tensorboard_curves_and_checkpoints(trained):
    tags = scalar_tags(trained)
    assert {
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/acc",
        "lr-SGD",
        "gap/acc",
        "hp/val_acc_best",
        "hp/test_acc",
    } <= tags
    assert (trained / "checkpoints" / "best.ckpt").exists() and (trained / "checkpoints" / "last.ckpt").exists()


def test_run_logs_lab_images_to_tensorboard(trained):
    images = set()
    for events in (trained / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        images |= set(acc.Tags()["images"])
    assert {
        "inputs/augmented_train_samples",
        "filters/first_layer_start",
        "filters/first_layer_end",
        "feature_maps_end/block1",
        "feature_maps_end/block3",
        "receptive_field/empirical_start",
        "receptive_field/empirical_end",
        "confusion_matrix/test",
    } <= images


def test_eval_round_trip_reproduces_the_test_accuracy(trained, tmp_path):
    cfg = compose_config([f"ckpt_path={trained}/checkpoints/best.ckpt", "progress_bar=false"], tmp_path, name="eval")
    record = evaluate(cfg, tmp_path, check(cfg, tmp_path))
    assert record["test_acc"] == pytest.approx(json.loads((trained / "metrics.json").read_text())["test_acc"])


def test_same_seed_same_metrics_and_other_seed_different(tmp_path):
    a = train_tiny(tmp_path / "a", "trainer.max_epochs=1", "seed=3")
    b = train_tiny(tmp_path / "b", "trainer.max_epochs=1", "seed=3")
    c = train_tiny(tmp_path / "c", "trainer.max_epochs=1", "seed=4")
    keys = ("val_acc_best", "val_acc_final", "test_acc", "test_loss")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert [a[k] for k in keys] != [c[k] for k in keys]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("cnnlab-train")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_cli_bad_value_is_one_clear_error_without_traceback(tmp_path):
    proc = cli("data=tiny", "model.pool=maxx", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "model.pool='maxx' is not a valid choice. Valid: max, avg, stride, none" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run").exists()  # a refused command writes nothing


def test_refuses_to_overwrite_a_finished_run(trained, caplog):
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config(TINY, trained))
    assert (
        exit_info.value.code == 2 and "already holds a run (status completed); it is never overwritten" in caplog.text
    )
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before


def test_ddp_simulation_runs_the_same_code_on_two_processes(tmp_path):
    proc = cli(
        "data=tiny",
        "trainer=ddp_sim",
        "trainer.max_epochs=1",
        "progress_bar=false",
        "model.width=16",
        f"hydra.run.dir={tmp_path}/ddp",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["world_size"] == 2
    assert metrics["test_acc"] > 0.3


def test_last_checkpoint_holds_the_end_of_the_last_epoch(trained):
    last = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=False)
    # data=tiny: 1,200 images − 200 for validation = 1,000 at 64 per batch → 16 steps an epoch, 2 epochs
    assert last["global_step"] == 2 * 16 and last["epoch"] == 1


def files_of(run_dir: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("ckpt", ["best.ckpt", "missing.ckpt"])
def test_eval_into_a_training_run_or_of_a_missing_checkpoint_changes_nothing(trained, ckpt, caplog):
    from cnnlab.cli.eval import run as run_eval

    before = files_of(trained)
    cfg = compose_config([f"ckpt_path={trained}/checkpoints/{ckpt}", "progress_bar=false"], trained, name="eval")
    with pytest.raises(SystemExit) as exit_info:
        run_eval(cfg)
    assert exit_info.value.code == 2 and files_of(trained) == before
    assert ("does not exist" if ckpt == "missing.ckpt" else "already holds a run") in caplog.text


def test_a_run_of_a_few_steps_trains_with_the_one_cycle_schedule(tmp_path):
    metrics = train_tiny(tmp_path, "data.train_subset=256", "trainer.max_epochs=1")  # 4 steps
    assert metrics["status"] == "completed"


def test_only_rank_zero_writes_the_record(tmp_path, monkeypatch):
    from cnnlab.runs import write_metrics

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert write_metrics(tmp_path, {"status": "completed"}) is None and not any(tmp_path.iterdir())
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert json.loads(write_metrics(tmp_path, {"status": "completed"}).read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind
