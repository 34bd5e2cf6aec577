"""cnnlab-eval refuses a checkpoint of non-finite weights; cnnlab-compare says when jobs are still running; the
notebook API refuses wrong argument types in one line (issue #30)."""

import fcntl
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

import cnnlab
from cnnlab.cli import cnnlab_compare
from cnnlab.cli import eval as eval_cli
from cnnlab.cli.train import run as train_run
from cnnlab.errors import ConfigError
from conftest import compose_config

TINY = ["data=tiny", "progress_bar=false", "trainer.max_epochs=1", "model.width=8", "model.depth=2"]
TINY += ["data.train_count=200", "data.val_size=40", "data.test_count=60", "lab_images=false"]


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory) -> Path:
    """A finished tiny run's best.ckpt with every floating-point weight and buffer set to NaN."""
    run_dir = tmp_path_factory.mktemp("nan") / "run"
    train_run(compose_config(TINY, run_dir))
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    ckpt["state_dict"] = {
        k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
    }
    path = run_dir / "checkpoints" / "nan.ckpt"
    torch.save(ckpt, path)
    return path


def test_eval_refuses_a_checkpoint_of_nan_weights_before_its_folder_opens(nan_checkpoint, tmp_path, caplog):
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.run(compose_config([f"ckpt_path={nan_checkpoint}", "data=tiny"], tmp_path / "eval", name="eval"))
    assert exit_info.value.code == 2
    assert f"{nan_checkpoint} holds non-finite weights: " in caplog.text and "Fix:" in caplog.text
    assert not (tmp_path / "eval").exists()


def job(sweep: Path, num: int, record: dict | None) -> Path:
    folder = sweep / str(num)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.width={4 * (num + 1)}", "seed=0"]))
    if record is not None:
        (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def test_compare_says_in_one_line_which_jobs_are_still_running(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    done = {"status": "completed", "seed": 0, "val_acc_final": 0.5, "val_acc_best": 0.6, "test_acc": 0.55}
    job(sweep, 0, done)
    job(sweep, 1, {"status": "running", "seed": 0})  # a record the job has not finished
    locked = job(sweep, 2, None)  # no record yet, its run-dir lock held (as cnnlab.runs holds it)
    job(sweep, 3, None)  # no record and no lock: a job that died, not a running one
    fd = os.open(locked, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        monkeypatch.setattr("sys.argv", ["cnnlab-compare", str(sweep), "--out", str(tmp_path / "report")])
        cnnlab_compare()
    finally:
        os.close(fd)
    note = "2 of 4 jobs are still running (1, 2): this report covers the 2 others only."
    out = capsys.readouterr().out
    assert sum(note in line for line in out.splitlines()) == 1
    assert sum(note in line for line in (tmp_path / "report" / "summary.md").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cnnlab.train(5), "cnnlab.train(overrides=5): overrides must be a list of strings"),
        (lambda: cnnlab.train(["data=tiny", 8]), "cnnlab.train: the override 8 is int"),
        (lambda: cnnlab.train(["data=tiny"], run_dir=3), "cnnlab.train(run_dir=3): run_dir must be a path"),
        (lambda: cnnlab.load_run(None), "cnnlab.load_run(run_dir=None): run_dir must be a path"),
        (lambda: cnnlab.load_run("x", checkpoint=1), "cnnlab.load_run(checkpoint=1): checkpoint must be a string"),
        (lambda: cnnlab.load_sweep(1.5), "cnnlab.load_sweep(sweep_dir=1.5): sweep_dir must be a path"),
    ],
)
def test_the_notebook_api_refuses_a_wrong_argument_type_in_one_line(call, message):
    with pytest.raises(ConfigError) as raised:
        call()
    assert str(raised.value).startswith(message) and "Fix:" in str(raised.value) and "\n" not in str(raised.value)
