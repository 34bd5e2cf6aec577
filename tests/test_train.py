"""End-to-end: a tiny training learns, writes metrics.json, TensorBoard events and checkpoints; eval reads them."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
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
    # width 16, depth 4 → 16/32/64/128 channels: (432 + 32) + (4608 + 64) + (18432 + 128) + (73728 + 256) conv+BN,
    # head 128·10 + 10
    assert metrics["params"] == 464 + 4_672 + 18_560 + 73_984 + 1_290
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


def test_eval_with_a_data_key_changed_tests_the_runs_own_data_not_the_default_dataset(trained, tmp_path):
    cfg = compose_config(
        [f"ckpt_path={trained}/checkpoints/best.ckpt", "progress_bar=false", "data.eval_batch_size=50"],
        tmp_path,
        name="eval",
    )
    record = evaluate(cfg, tmp_path, check(cfg, tmp_path))
    assert record["data"] == "TinyDataModule"
    assert record["test_acc"] == pytest.approx(json.loads((trained / "metrics.json").read_text())["test_acc"])


def test_eval_on_another_dataset_ignores_the_runs_training_augmentation(tmp_path, fake_cifar):
    # vflip is label-unsafe on CIFAR-10, but the test set is never augmented: eval used to refuse, in a line whose
    # fixes (augment=none, augment.allow_label_unsafe=true) changed nothing.
    train_tiny(tmp_path / "run", "trainer.max_epochs=1", "augment=vflip")
    cfg = compose_config(
        [
            f"ckpt_path={tmp_path}/run/checkpoints/best.ckpt",
            "progress_bar=false",
            "data=cifar10",
            f"data.data_dir={fake_cifar}",
            "data.val_size=10",
        ],
        tmp_path / "eval",
        name="eval",
    )
    record = evaluate(cfg, tmp_path / "eval", check(cfg, tmp_path / "eval"))
    assert record["data"] == "CIFAR10DataModule" and 0 <= record["test_acc"] <= 1


def damaged_copy(trained: Path, tmp_path: Path, damage) -> Path:
    """A copy of the run's best checkpoint, changed by `damage(checkpoint)`."""
    checkpoint = torch.load(trained / "checkpoints/best.ckpt", map_location="cpu", weights_only=False)
    damage(checkpoint)
    torch.save(checkpoint, tmp_path / "damaged.ckpt")
    return tmp_path / "damaged.ckpt"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: c["state_dict"].pop(next(iter(c["state_dict"]))), "its weights do not fit the model"),
        (lambda c: c["state_dict"].update(extra=torch.zeros(1)), "its weights do not fit the model"),
        (lambda c: c["hyper_parameters"]["config"]["model"].update(width=32), "its weights do not fit the model"),
        (lambda c: c["hyper_parameters"]["config"].pop("data"), "its run config has no data section"),
    ],
    ids=["weight missing", "weight added", "config changed", "config section missing"],
)
def test_eval_of_a_damaged_checkpoint_is_one_line_and_writes_nothing(trained, tmp_path, damage, message, caplog):
    from cnnlab.cli.eval import run as run_eval

    ckpt = damaged_copy(trained, tmp_path, damage)
    cfg = compose_config([f"ckpt_path={ckpt}", "progress_bar=false"], tmp_path / "eval", name="eval")
    with pytest.raises(SystemExit) as exit_info:
        run_eval(cfg)
    assert exit_info.value.code == 2 and f"checkpoint {ckpt} is damaged: {message}" in caplog.text
    assert not (tmp_path / "eval").exists()


def test_eval_of_a_run_folder_names_the_checkpoint_inside_it(trained, tmp_path, caplog):
    from cnnlab.cli.eval import run as run_eval

    cfg = compose_config([f"ckpt_path={trained}", "progress_bar=false"], tmp_path / "eval", name="eval")
    with pytest.raises(SystemExit):
        run_eval(cfg)
    assert f"checkpoint {trained} is a folder, not a checkpoint file. Fix: pass {trained}/checkpoints/best.ckpt" in (
        caplog.text
    )


def test_same_seed_same_metrics_and_other_seed_different(tmp_path):
    small = ("trainer.max_epochs=1", "lab_images=false", "data.train_count=600", "data.val_size=100")
    a = train_tiny(tmp_path / "a", *small, "seed=3")
    b = train_tiny(tmp_path / "b", *small, "seed=3")
    c = train_tiny(tmp_path / "c", *small, "seed=4")
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
    assert (
        "model.pool='maxx' is not a valid choice. Valid: max, avg, stride, conv, blur, none"
        in proc.stderr + proc.stdout
    )
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
        "lab_images=false",
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


# The run policy (cnnlab.runs) piece by piece, without a training: a job is any function returning its numbers.

RANK_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID")


def test_rank_comes_from_rank_then_local_rank_then_slurm_procid(monkeypatch):
    from cnnlab.runs import rank

    for key in RANK_KEYS:
        monkeypatch.delenv(key, raising=False)
    assert rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert rank() == 3
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert rank() == 2
    monkeypatch.setenv("RANK", "")  # set but empty: not a rank
    assert rank() == 2
    monkeypatch.setenv("RANK", "1")
    assert rank() == 1


def test_the_record_is_sorted_indented_json_renamed_into_place_from_a_hidden_file(tmp_path, monkeypatch):
    from cnnlab.runs import write_metrics

    for key in RANK_KEYS:
        monkeypatch.delenv(key, raising=False)
    renamed, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append((Path(src), Path(dst))), replace(src, dst)))
    umask = os.umask(0o022)
    try:
        path = write_metrics(tmp_path, {"b": 1, "a": torch.tensor(0.5)})  # tensors become plain floats
    finally:
        os.umask(umask)
    assert path == tmp_path / "metrics.json" and path.read_text() == '{\n  "a": 0.5,\n  "b": 1\n}\n'
    assert path.stat().st_mode & 0o777 == 0o644  # 0o666 less the umask, like any file the run writes
    ((src, dst),) = renamed
    assert (src.parent, dst) == (tmp_path, path) and src.name.startswith(".metrics.") and src.name.endswith(".tmp")


def test_a_non_finite_number_is_recorded_as_null_so_the_record_stays_json(tmp_path):
    from cnnlab.runs import write_metrics

    record = {"test_loss": float("nan"), "x": torch.tensor(float("inf")), "curves": {"val/loss": [1.0, float("-inf")]}}
    path = write_metrics(tmp_path, record)
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "test_loss": None,
        "x": None,
        "curves": {"val/loss": [1.0, None]},
    }


@pytest.mark.parametrize(
    "text, problem", [("{cut", "could not be read (JSONDecodeError: "), ("[1, 2]", "does not hold a JSON object.")]
)
def test_a_damaged_record_is_an_error_naming_the_file_and_the_fix(tmp_path, text, problem):
    from cnnlab.errors import CnnlabError
    from cnnlab.runs import read_metrics

    assert read_metrics(tmp_path) is None  # no record yet: not an error
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(CnnlabError) as error:
        read_metrics(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'metrics.json'} ") and problem in message
    assert "Fix: remove the damaged file" in message


def test_an_output_folder_in_the_way_of_a_file_or_in_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    from cnnlab.errors import CnnlabError
    from cnnlab.runs import check_report_dir, check_writable

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cases = {
        blocker: f"output directory {blocker} is a file, not a directory. Fix: another.",
        blocker / "run": f"output directory {blocker / 'run'} cannot be written ({blocker} is not a writable folder). "
        "Fix: another.",
    }
    for path, message in cases.items():
        with pytest.raises(CnnlabError) as error:
            check_writable(path, "output directory", "another.")
        assert str(error.value) == message
    assert check_writable(tmp_path / "new" / "run", "output directory", "another.") is None
    # A folder this process may not write into (simulated: as root, permission bits stop nothing)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path or not mode & os.W_OK)
    with pytest.raises(CnnlabError) as error:
        check_writable(tmp_path / "new" / "run", "output directory", "another.")
    assert f"({tmp_path} is not a writable folder)" in str(error.value)
    monkeypatch.undo()
    with pytest.raises(CnnlabError) as error:
        check_report_dir(blocker, "--out", "another.")
    assert str(error.value) == f"--out {blocker} is a file, not a directory. Fix: another."
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(CnnlabError) as error:
        check_report_dir(tmp_path, "--out", "another.")
    assert str(error.value) == (
        f"--out {tmp_path} is a run directory: its files are that run's record and never change. Fix: another."
    )


def test_a_console_script_ends_bad_input_with_one_line_and_exit_2_and_ctrl_c_with_exit_130(monkeypatch, capsys):
    from cnnlab.errors import ConfigError
    from cnnlab.runs import console_script

    def bad_input() -> None:
        """Doc of the tool."""
        raise RuntimeError("wrapped") from ConfigError("model.depth=9 is too deep. Fix: model.depth=5.")

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    def bug() -> None:
        raise ZeroDivisionError

    assert console_script(bad_input).__doc__ == "Doc of the tool."
    monkeypatch.setattr("sys.argv", ["cnnlab-tool", "not=an override"])  # without `composes`, argv is the tool's
    for main, code, err in (
        (bad_input, 2, "error: model.depth=9 is too deep. Fix: model.depth=5.\n"),
        (ctrl_c, 130, "stopped by Ctrl+C.\n"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            console_script(main)()
        assert (exit_info.value.code, capsys.readouterr().err) == (code, err)
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        console_script(bug)()


def test_a_console_script_checks_its_command_line_before_it_starts_but_leaves_flags_to_hydra(
    tmp_path, monkeypatch, capsys
):
    from cnnlab.runs import console_script

    started = []
    script = console_script(lambda: started.append(sys.argv[1:]), composes="train")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr("sys.argv", ["cnnlab-train", "data=tiny", f"hydra.run.dir={blocker}"])
    with pytest.raises(SystemExit) as exit_info:
        script()
    fix = "Fix: choose another hydra.run.dir."
    assert (exit_info.value.code, started) == (2, [])
    assert capsys.readouterr().err == f"error: output directory {blocker} is a file, not a directory. {fix}\n"
    monkeypatch.setattr("sys.argv", ["cnnlab-train", "-m", "data=tiny", f"hydra.run.dir={blocker}"])
    script()  # -m (or --help, ...): Hydra reads the command line itself
    assert started == [["-m", "data=tiny", f"hydra.run.dir={blocker}"]]


def test_a_console_script_composes_its_own_config_not_trains(tmp_path, monkeypatch, capsys):
    from cnnlab.runs import console_script

    # cnnlab-eval's run directories live under outputs/eval/ (conf/eval.yaml), cnnlab-train's under
    # outputs/runs/: a file at outputs/eval stops eval's check and none of train's.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "eval").write_text("not a folder")
    started = []
    monkeypatch.setattr("sys.argv", ["cnnlab-eval", "ckpt_path=x.ckpt", "data=tiny"])
    console_script(lambda: started.append("train"), composes="train")()
    assert started == ["train"]
    with pytest.raises(SystemExit) as exit_info:
        console_script(lambda: started.append("eval"), composes="eval")()
    assert (exit_info.value.code, started) == (2, ["train"])
    assert "(outputs/eval is not a writable folder)" in capsys.readouterr().err


def test_a_run_dir_that_is_a_file_is_refused_by_the_job_with_the_sweep_fix(tmp_path):
    from cnnlab.errors import CnnlabError
    from cnnlab.runs import open_run_dir

    # A sweep's job directory is only known inside the job, so the job checks it again (a single run's
    # is checked before Hydra starts, by console_script).
    blocker = tmp_path / "0"
    blocker.write_text("not a folder")
    with pytest.raises(CnnlabError) as error:
        open_run_dir(blocker, cfg=None, resuming=False)
    assert str(error.value) == (
        f"output directory {blocker} is a file, not a directory. "
        "Fix: choose another hydra.run.dir (or hydra.sweep.dir)."
    )
    assert blocker.read_text() == "not a folder"


def test_quiet_drops_lightnings_tips_and_the_known_noise_but_nothing_else():
    import logging
    import warnings

    from cnnlab.runs import _drop_tips, quiet

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    logger.removeFilter(_drop_tips)  # an earlier test's quiet() may have installed it
    logger.addHandler(handler)
    noise = [
        "isinstance(treespec, LeafSpec) is deprecated, use isinstance(treespec, TreeSpec) and treespec.is_leaf()",
        "The number of training batches (3) is smaller than the logging interval Trainer(log_every_n_steps=50).",
        "The 'train_dataloader' does not have many workers which may be a bottleneck.",
        "You're resuming from a checkpoint that ended before the epoch ended. This can cause unreliable results.",
        "The `srun` command is available on your system but is not used. HINT: If your intention is to run ...",
        "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided ...",
    ]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet()
            for message in [*noise, "something the user must see"]:
                warnings.warn(message, UserWarning, stacklevel=1)
            logger.warning("💡 Tip: For seamless cloud uploads and versioning, try installing litmodels")
            logger.warning("GPU available: False, used: False")
    finally:
        logger.removeHandler(handler)
    assert [str(w.message) for w in caught] == ["something the user must see"]
    assert seen == ["GPU available: False, used: False"]


def policy_run(run_dir: Path, job, check=None, multirun: bool = False, monkeypatch=None, extra=()):
    """cnnlab.runs.run_job on the composed train config, with a fake job; 2.3456789 s pass between start and end.
    The default check hands the job its own arguments, so the job can see what run_job passed to each."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    from cnnlab.runs import run_job

    cfg = compose_config([*TINY, *extra], run_dir)
    if multirun:
        with read_write(cfg.hydra):
            cfg.hydra.mode = "MULTIRUN"
        HydraConfig.instance().set_config(cfg)
    ticks = iter([100.0, 102.3456789])
    monkeypatch.setattr("cnnlab.runs.time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    check = check or (lambda cfg, run_dir: (cfg.data.batch_size, run_dir))
    return run_job(cfg, check, lambda cfg, run_dir, checked: job((cfg.data.batch_size, run_dir, checked)))


def record_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_a_job_that_ends_well_records_its_numbers_and_wall_time_and_returns_its_score(tmp_path, monkeypatch):
    import logging

    def job(seen):
        logging.getLogger("cnnlab").warning("job sees %s", seen)
        assert seen == (64, tmp_path / "a", (64, tmp_path / "a"))  # data=tiny's batch size, the run dir
        return {"val_acc_best": 0.7}

    assert policy_run(tmp_path / "a", job, monkeypatch=monkeypatch) == 0.7
    record = record_of(tmp_path / "a")
    assert {k: record[k] for k in ("status", "seed", "overrides", "val_acc_best", "wall_s")} == {
        "status": "completed",
        "seed": 0,
        "overrides": TINY,
        "val_acc_best": 0.7,
        "wall_s": 2.346,  # 102.3456789 − 100, to the millisecond
    }
    assert set(record) == {"status", "seed", "overrides", "choices", "val_acc_best", "wall_s"}
    assert record["choices"]["data"] == "tiny" and not any(k.startswith("hydra") for k in record["choices"])
    assert sorted(p.name for p in (tmp_path / "a" / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    hydra_dir = tmp_path / "a" / ".hydra"
    assert yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) == TINY
    assert yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]["job"]["name"] == "test"
    assert yaml.safe_load((hydra_dir / "config.yaml").read_text())["data"]["batch_size"] == 64
    log_lines = (tmp_path / "a" / "test.log").read_text().splitlines()
    assert any(re.fullmatch(r"\[[-0-9 :,]+\]\[cnnlab\]\[WARNING\] - job sees \(64, .*", line) for line in log_lines)
    assert not any(getattr(h, "baseFilename", "").startswith(str(tmp_path)) for h in logging.getLogger().handlers)
    assert policy_run(tmp_path / "b", lambda _: {"test_acc": 0.6}, monkeypatch=monkeypatch) == 0.6  # eval's score


def test_bad_input_found_before_the_job_ends_a_run_with_exit_2_and_a_sweep_job_with_its_record(
    tmp_path, monkeypatch, caplog
):
    import logging

    from cnnlab.errors import ConfigError
    from cnnlab.runs import RunEnded

    def check(cfg, run_dir):
        raise ConfigError("model.depth=9 is too deep. Fix: model.depth=5.")

    with pytest.raises(RunEnded) as ended:
        policy_run(tmp_path / "run", lambda _: {}, check, monkeypatch=monkeypatch)
    assert (ended.value.code, ended.value.reason) == (2, "model.depth=9 is too deep. Fix: model.depth=5.")
    assert not (tmp_path / "run").exists()  # the empty folder made for it is gone
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "model.depth=9 is too deep. Fix: model.depth=5.")
    ]
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(RunEnded):
        policy_run(tmp_path / "kept", lambda _: {}, check, monkeypatch=monkeypatch)
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["notes.txt"]  # a folder with files stays
    assert policy_run(tmp_path / "job", lambda _: {}, check, multirun=True, monkeypatch=monkeypatch) is None
    record = record_of(tmp_path / "job")
    assert (record["status"], record["error"], record["wall_s"]) == (
        "failed",
        "model.depth=9 is too deep. Fix: model.depth=5.",
        0.0,
    )
    assert (tmp_path / "job" / ".hydra" / "overrides.yaml").exists()  # the report can place the failed job
    assert not any(getattr(h, "baseFilename", "").startswith(str(tmp_path)) for h in logging.getLogger().handlers)


@pytest.mark.parametrize("multirun", [False, True, None])  # None: a sweep of the basic launcher
def test_an_interrupted_job_records_the_signal_and_exits_128_plus_its_number(tmp_path, multirun, monkeypatch, caplog):
    from cnnlab.errors import RunInterrupted
    from cnnlab.runs import RunEnded

    def job(_):
        raise RunInterrupted("SIGTERM received at epoch 1, step 3.", signal.SIGTERM)

    if multirun:  # jobs in processes of their own (joblib, submitit): the signal was that job's, the sweep goes on
        extra = ["hydra/launcher=joblib"]
        assert policy_run(tmp_path, job, multirun=True, monkeypatch=monkeypatch, extra=extra) is None
    else:  # a single run, or a sweep whose jobs run in this process: the signal stops the command (it went on)
        with pytest.raises(RunEnded) as ended:
            policy_run(tmp_path, job, multirun=multirun is None, monkeypatch=monkeypatch)
        assert (ended.value.code, ended.value.reason) == (128 + 15, "SIGTERM received at epoch 1, step 3.")
    record = record_of(tmp_path)
    assert (record["status"], record["signal"], record["wall_s"]) == ("interrupted", 15, 2.346)
    assert record["error"] == "SIGTERM received at epoch 1, step 3."
    hint = (
        f"SIGTERM received at epoch 1, step 3. Resume with: cnnlab-train resume={tmp_path} (plus the same overrides)."
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", hint)]


@pytest.mark.parametrize("multirun", [False, True])
def test_a_failing_job_records_the_error_a_bug_keeps_its_traceback_in_a_single_run(
    tmp_path, multirun, monkeypatch, caplog
):
    from cnnlab.errors import CnnlabError
    from cnnlab.runs import RunEnded

    def bug(_):
        raise ZeroDivisionError("division by zero")

    def bad(_):
        raise CnnlabError("the checkpoint is of another model. Fix: resume with its model.")

    if multirun:
        assert policy_run(tmp_path / "bug", bug, multirun=True, monkeypatch=monkeypatch) is None
    else:
        with pytest.raises(ZeroDivisionError):
            policy_run(tmp_path / "bug", bug, monkeypatch=monkeypatch)
    record = record_of(tmp_path / "bug")
    assert (record["status"], record["error"]) == ("failed", "ZeroDivisionError: division by zero")
    ((level, message, traceback),) = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records]
    assert (level, message, traceback[0]) == ("ERROR", "job failed", ZeroDivisionError)  # logged with its traceback
    caplog.clear()
    if multirun:
        assert policy_run(tmp_path / "bad", bad, multirun=True, monkeypatch=monkeypatch) is None
    else:
        with pytest.raises(RunEnded) as ended:
            policy_run(tmp_path / "bad", bad, monkeypatch=monkeypatch)
        assert ended.value.code == 2
    record = record_of(tmp_path / "bad")
    assert (record["status"], record["error"], record["wall_s"]) == (
        "failed",
        "the checkpoint is of another model. Fix: resume with its model.",
        2.346,
    )
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        ("ERROR", "the checkpoint is of another model. Fix: resume with its model.", None)  # no traceback
    ]


def test_a_finished_run_is_refused_unless_resumed_and_a_resume_keeps_the_first_config(tmp_path, monkeypatch):
    from cnnlab.runs import RunEnded

    assert policy_run(tmp_path, lambda _: {"val_acc_best": 0.5}, monkeypatch=monkeypatch) == 0.5
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(RunEnded) as ended:
        policy_run(tmp_path, lambda _: {"val_acc_best": 0.6}, monkeypatch=monkeypatch)
    assert ended.value.reason == (
        f"{tmp_path} already holds a run (status completed); it is never overwritten. "
        f"Fix: choose another hydra.run.dir, or resume it with resume={tmp_path}."
    )
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    for extra in ([f"resume={tmp_path}"], ["ckpt_path=last"]):  # the two ways to resume a run
        assert policy_run(tmp_path, lambda _: {"val_acc_best": 0.6}, monkeypatch=monkeypatch, extra=extra) == 0.6
        assert (tmp_path / ".hydra" / "overrides.yaml").read_bytes() == before[tmp_path / ".hydra" / "overrides.yaml"]
    resumes = sorted((tmp_path / ".hydra").glob("resume-*/overrides.yaml"))
    assert [yaml.safe_load(p.read_text())[-1] for p in resumes] == [f"resume={tmp_path}", "ckpt_path=last"]


def test_a_run_dir_left_by_a_run_that_died_before_its_record_is_reused(tmp_path, monkeypatch):
    (tmp_path / ".hydra").mkdir(parents=True)
    (tmp_path / ".hydra" / "config.yaml").write_text("stale: true\n")
    assert policy_run(tmp_path, lambda _: {"val_acc_best": 0.5}, monkeypatch=monkeypatch) == 0.5
    assert "stale" not in (tmp_path / ".hydra" / "config.yaml").read_text()


@pytest.mark.real_data
def test_a_short_run_on_real_cifar10_learns_and_its_record_matches_an_independent_test_pass(real_cifar, tmp_path):
    # The main job's path on the full real CIFAR-10 (5,000 of its training images, 2 epochs): well above chance,
    # and metrics.json's test_acc is what the best checkpoint scores on the official 10,000 test images read
    # straight from the pickle, not through cnnlab's reader.
    import pickle

    import cnnlab

    record = cnnlab.train(
        [f"data.data_dir={real_cifar}", "data.train_subset=5000", "trainer.max_epochs=2", "logger=none"]
        + ["progress_bar=false", "lab_images=false"],
        run_dir=tmp_path / "run",
    )
    assert record["status"] == "completed" and record["epochs"] == 2
    with (real_cifar / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        batch = pickle.load(f, encoding="bytes")
    images = torch.tensor(batch[b"data"]).reshape(-1, 3, 32, 32)
    labels = torch.tensor(batch[b"labels"])
    assert len(labels) == 10_000
    run_ = cnnlab.load_run(tmp_path / "run")
    predicted = torch.cat([run_.predict(chunk) for chunk in images.split(1000)])
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy > 0.35  # chance is 0.10; measured 0.4112, equal to the record's to the last digit
    assert record["test_acc"] == pytest.approx(accuracy, abs=2e-3)  # bf16 batches of another size may flip a few


def test_hparams_are_the_group_choices_and_the_model_optim_and_schedule_keys_flattened():
    """flat_hparams (TensorBoard's HParams tab and every logger) for one command line, every value typed in from
    conf/ and the overrides: no `_target_`/`_partial_`, no hydra/* choices, lists as text, null as 'None',
    interpolations resolved."""
    from cnnlab.runs import flat_hparams

    overrides = ["data=tiny", "optim=adamw", "schedule=cosine", "model.width=8", "seed=3", "trainer.max_epochs=2"]
    # an interpolation in a group is logged resolved; train_subset as text
    overrides += ["label_smoothing=0.1", "model.dropout=${label_smoothing}", "data.train_subset=100"]
    cfg = compose_config(overrides)  # also makes it Hydra's current config
    choices = dict(data="tiny", augment="crop_flip", model="cnn", optim="adamw", schedule="cosine")
    choices |= dict(trainer="default", logger="tensorboard", callbacks="default")
    choices |= dict(experiment="None", hparams_search="None", debug="None")
    model = dict(depth=4, width=8, growth=2.0, convs_per_block=1, kernel_size=3, dilation=1, pool="max")
    model |= dict(activation="relu", batchnorm=True, dropout=0.1, padding_mode="zeros", blur_size=3)
    model |= dict(num_classes=10, in_channels=3, image_size="[32, 32]")  # the data's shape, read from data=tiny
    optim = {"lr": 2e-3, "betas": "[0.9, 0.999]", "weight_decay": 0.05}
    expected = {f"choice/{k}": v for k, v in choices.items()}
    expected |= {f"model/{k}": v for k, v in model.items()} | {f"optim/{k}": v for k, v in optim.items()}
    expected |= {"seed": 3, "label_smoothing": 0.1, "data/batch_size": 64, "data/train_subset": "100"}
    expected |= {"trainer/max_epochs": 2}
    assert flat_hparams(cfg) == expected


def test_the_console_is_120_columns_in_a_pipe_and_the_terminals_width_in_a_terminal(monkeypatch):
    from cnnlab.runs import console

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert console().width == 120  # logs and pipes: wide enough for the model table
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "97")  # rich reads a terminal's width from COLUMNS first
    assert console().width == 97


def test_ctrl_c_while_the_job_loads_data_records_an_interrupted_run_and_reraises(tmp_path, monkeypatch):
    def job(seen):
        raise KeyboardInterrupt  # e.g. while an image folder is read, before Lightning's loop takes signals over

    with pytest.raises(KeyboardInterrupt):
        policy_run(tmp_path / "a", job, monkeypatch=monkeypatch)
    record = record_of(tmp_path / "a")
    assert record["status"] == "interrupted" and record["signal"] == 2 and "Ctrl+C" in record["error"]


def test_ctrl_c_while_the_run_dir_is_being_opened_leaves_no_folder(tmp_path, monkeypatch):
    import cnnlab.runs

    def half_written(run_dir, cfg, resuming):
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "config.yaml").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(cnnlab.runs, "open_run_dir", half_written)
    with pytest.raises(KeyboardInterrupt):
        policy_run(tmp_path / "a", lambda seen: pytest.fail("the job started"), monkeypatch=monkeypatch)
    assert not (tmp_path / "a").exists()


def test_a_sweep_job_aimed_at_a_used_run_dir_is_refused_and_changes_nothing(tmp_path, monkeypatch, caplog):
    assert policy_run(tmp_path, lambda _: {"val_acc_best": 0.5}, monkeypatch=monkeypatch) == 0.5
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = policy_run(tmp_path, lambda _: pytest.fail("the job started"), multirun=True, monkeypatch=monkeypatch)
    assert again is None  # the sweep goes on with its other jobs
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert f"{tmp_path} already holds a run (status completed); it is never overwritten." in caplog.text


def test_the_record_says_completed_only_after_the_test_at_the_end(tmp_path):
    # a run whose final test fails is not completed: the test's numbers belong to the record
    with pytest.raises(SystemExit) as ended:
        run(compose_config([*TINY, "trainer.max_epochs=1", "+callbacks.boom._target_=helpers.FailOnTest"], tmp_path))
    record = record_of(tmp_path)
    assert ended.value.code == 2 and record["status"] == "failed" and "the test set broke" in record["error"]
    assert "test_acc" not in record


def test_eval_reads_its_data_before_its_directory_opens(trained, tmp_path):
    from cnnlab.cli.eval import run as run_eval
    from cnnlab.runs import RunEnded

    (tmp_path / "cifar.tar.gz").write_bytes(b"not a folder")
    overrides = [f"ckpt_path={trained}/checkpoints/best.ckpt", "data=cifar10", f"data.data_dir={tmp_path}/cifar.tar.gz"]
    cfg = compose_config([*overrides, "model.width=16"], tmp_path / "eval", name="eval")
    with pytest.raises(RunEnded) as ended:
        run_eval(cfg)
    assert ended.value.code == 2 and "is a file, not a folder" in ended.value.reason
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.precision=64-true", "trainer.precision=64-true casts the whole model"),
        ("trainer.devices=0", "Lightning's Trainer refuses a trainer.* value: `Trainer(devices=0)`"),
        ("threads=99", "threads=99 is more than the"),
    ],
)
def test_eval_checks_the_machine_and_the_trainer_before_its_directory_opens(trained, tmp_path, override, message):
    # cnnlab-train's checks of the machine and the trainer: eval used to crash after its directory opened (a float64
    # model on float32 data, Lightning's MisconfigurationException) or take threads=99 without a word
    from cnnlab.cli.eval import run as run_eval
    from cnnlab.runs import RunEnded

    overrides = [f"ckpt_path={trained}/checkpoints/best.ckpt", "progress_bar=false", override]
    with pytest.raises(RunEnded) as ended:
        run_eval(compose_config(overrides, tmp_path / "eval", name="eval"))
    assert ended.value.code == 2 and message in ended.value.reason
    assert not (tmp_path / "eval").exists()
