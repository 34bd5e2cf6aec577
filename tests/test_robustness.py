"""Robustness: bad input fails early and clearly; interruption, resume and NaN keep results intact."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cnnlab.cli.train import run
from cnnlab.data.cifar10 import CIFAR10DataModule
from cnnlab.training.callbacks import NonFiniteLoss, NonFiniteLossGuard
from conftest import compose_config, write_fake_cifar

# Without TensorBoard's lab images and with 100 test images (this file: 38.8 s → 35.8 s, AMD EPYC Zen 3): these tests
# read records, checkpoints and logs; test_train and test_extension check the images
TINY = ["data=tiny", "progress_bar=false", "model.width=8", "data.train_count=600", "data.val_size=100"]
TINY += ["lab_images=false", "data.test_count=100"]
COMPARED = ("val_acc_best", "val_acc_final", "test_acc", "test_loss", "epochs")


def train(run_dir: Path, *extra: str) -> tuple[int, dict]:
    """Run one training in-process, in `run_dir` (Hydra's run dir; with resume=, the resumed run's); return
    (exit code, metrics.json)."""
    code = 0
    try:
        run(compose_config(TINY + list(extra), run_dir))
    except SystemExit as e:
        code = e.code
    return code, json.loads((run_dir / "metrics.json").read_text())


def refused(run_dir: Path, caplog, *extra: str, base: tuple[str, ...] = tuple(TINY)) -> str:
    """Run a command that must be refused: exit 2 and nothing written into `run_dir`; return the log."""
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*base, *extra], run_dir))
    assert exit_info.value.code == 2
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after.keys() == before.keys() and [p for p in after if after[p] != before[p]] == []
    return caplog.text


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is out of range: it must be an integer >= 1"),
        ("data.batch_size=-8", "data.batch_size=-8 is out of range: it must be an integer >= 1"),
        ("optim.lr=0", "optim.lr=0 is out of range: it must be a number > 0"),
        ("optim.lr=-0.1", "optim.lr=-0.1 is out of range: it must be a number > 0"),
        ("optim.momentum=-1", "optim.momentum=-1 is out of range: it must be in [0, 1)"),
        ("schedule.pct_start=2", "schedule.pct_start=2 is out of range: it must be in (0, 1)"),
        ("model.dropout=1.5", "model.dropout=1.5 is out of range: it must be in [0, 1)"),
        ("model.depth=7", "largest valid depth is 5"),
        ("model.activation=tanh", "Valid: relu, gelu, silu, identity"),
        ("model.growth=-1", "model.growth=-1 must be a number > 0"),
        ("model.padding_mode=foo", "model.padding_mode='foo' is not a valid choice"),
        ("label_smoothing=1.0", "label_smoothing=1.0 is out of range: it must be in [0, 1)"),
        ("seed=abc", "seed='abc' has the wrong type: it must be an integer"),
        ("data.val_size=abc", "data.val_size='abc' has the wrong type: it must be an integer or a number"),
        ("data.train_subset=abc", "data.train_subset='abc' has the wrong type: it must be an integer"),
        ("threads=-1", "threads=-1 is out of range"),
        ("+model.foo=1", "model.foo is not a key of this config"),
        ("trainer.accelerator=tpu", "trainer.accelerator='tpu' is out of range"),
        # beyond numpy's seeds: Lightning's seed_everything raised after the run dir opened (a traceback, exit 1)
        ("seed=4294967296", "seed=4294967296 is out of range: it must be an integer in 0..4294967295"),
        # Lightning Trainer arguments added with +: their ranges hold too (a ZeroDivisionError mid-run, or a
        # negative clip Lightning takes silently as "off")
        ("+trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 is out of range: it must be"),
        ("+trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch=0 is out of range: it must be"),
        ("+trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1 is out of range: it must be a number >= 0"),
        ("+trainer.accumulate_grad_batches=abc", "trainer.accumulate_grad_batches='abc' is out of range"),
        ("+trainer.gradient_clip_val=nan", "trainer.gradient_clip_val=nan is not a finite number"),
    ],
)
def test_bad_values_are_refused_with_one_message_naming_value_and_fix(tmp_path, caplog, override, message):
    log = refused(tmp_path, caplog, override)
    assert message in log and "Fix:" in log.split(message)[1]


# Each needs the data read, the machine or the loader looked at: the gate before the run dir opens does that.
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.val_size=600"], "data.val_size=600 does not fit: tiny has 600 training images"),
        (["+trainer.limit_train_batches=0"], "an epoch would hold no training batch: 500 training images of tiny"),
        (["debug=limit", "trainer.limit_train_batches=0.01"], "Fix: trainer.limit_train_batches=1 or more"),
        (["data.batch_size=501", "data.drop_last=true"], "Fix: data.batch_size<=500 or data.drop_last=false."),
        (["debug=overfit", "data.on_device=false"], "trainer.overfit_batches=3 needs cnnlab's device loader"),
        (["threads=99"], "threads=99 is more than the"),
        (["trainer.precision=64-true"], "trainer.precision=64-true casts the whole model"),
        (["trainer.precision=bf16-true"], "Fix: trainer.precision=bf16-mixed."),
        (["channels_last=maybe"], "channels_last='maybe' is not a valid choice. Valid: auto, true, false."),
        # what Lightning's Trainer refuses when it is built: it used to be built after the run dir opened
        (["trainer.devices=0"], "Lightning's Trainer refuses a trainer.* value: `Trainer(devices=0)`"),
        (["+trainer.limit_val_batches=1.5"], "invalid value 1.5 for limit_val_batches"),
        (["+trainer.strategy=bogus"], "Lightning's Trainer refuses a trainer.* value: You selected an invalid"),
    ],
)
def test_what_needs_the_data_or_the_machine_is_refused_before_the_run_dir_opens(tmp_path, caplog, overrides, message):
    assert message in refused(tmp_path / "run", caplog, *overrides)
    assert not (tmp_path / "run").exists()


def test_the_cpu94_recipe_on_the_tiny_data_is_refused_an_epoch_of_no_batches(tmp_path, caplog):
    # batch 2,000 with drop_last on 500 training images: it used to record untrained weights as "completed"
    with pytest.raises(SystemExit) as exit_info:
        run(
            compose_config(
                ["experiment=cpu94", "data=tiny", "data.train_count=600", "data.val_size=100"], tmp_path / "r"
            )
        )
    assert exit_info.value.code == 2 and not (tmp_path / "r").exists()
    assert "500 training images of tiny, data.batch_size=2000, data.drop_last=true. Fix: data.batch_size<=500" in (
        caplog.text
    )


def test_a_logger_whose_package_is_missing_is_refused_naming_the_extra(tmp_path, caplog, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    log = refused(tmp_path / "run", caplog, "logger=mlflow")
    assert "logger=mlflow needs the package mlflow, which is not installed here. Fix: .venv/bin/pip install -e " in log
    assert not (tmp_path / "run").exists()


def test_a_run_dir_another_process_is_writing_is_refused_and_left_alone(tmp_path, caplog):
    import fcntl
    import os

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.log").write_text("the other run's log\n")
    holder = subprocess.Popen(  # another process that holds the run dir, as a running cnnlab-train does
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert "is in use by another cnnlab process" in refused(run_dir, caplog)
    finally:
        holder.kill()
        holder.wait()
    fd = os.open(run_dir, os.O_RDONLY)  # the refused job did not keep a lock of its own either
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_a_second_ctrl_c_stops_at_once_with_exit_130_and_an_interrupted_record(tmp_path):
    code, record = train(
        tmp_path,
        "trainer.max_epochs=2",
        "+callbacks.sig._target_=helpers.SignalTwiceAt",
        "+callbacks.sig.epoch=0",
    )
    assert (
        code == 130
        and record["status"] == "interrupted"
        and "a second SIGINT stopped the run at once" in record["error"]
    )
    assert not (tmp_path / "checkpoints" / "interrupted.ckpt").exists()  # stopped mid-batch: no save of this moment


def test_a_subset_larger_than_the_data_is_refused_before_the_run_dir_opens(tmp_path, caplog):
    # the data is read in the check: nothing is written for it, as for any other refused value
    assert "data.train_subset=100000 is outside 1..500" in refused(tmp_path / "run", caplog, "data.train_subset=100000")
    assert not (tmp_path / "run").exists()


def test_resume_from_a_missing_run_names_the_checkpoint(tmp_path, caplog):
    assert "never-ran/checkpoints/last.ckpt" in refused(tmp_path / "new", caplog, f"resume={tmp_path}/never-ran")


def interrupted_run(run_dir: Path, epoch: int, epochs: int = 3) -> dict:
    """A run stopped by SIGINT during epoch `epoch` (0-based) of `epochs`; returns its record."""
    code, record = train(
        run_dir,
        f"trainer.max_epochs={epochs}",
        "+callbacks.sig._target_=helpers.SignalAt",
        f"+callbacks.sig.epoch={epoch}",
    )
    assert code == 128 + signal.SIGINT and record["status"] == "interrupted"
    return record


def test_sigterm_between_epochs_is_the_runs_interruption_with_a_record(tmp_path):
    # Lightning's own SIGTERM handler would end the fit at that epoch's end: exit 0, no record, no checkpoint.
    code, record = train(
        tmp_path,
        "trainer.max_epochs=3",
        "+callbacks.sig._target_=helpers.SignalAtEpochEnd",
        "+callbacks.sig.epoch=0",
    )
    assert code == 128 + signal.SIGTERM and record["status"] == "interrupted" and "SIGTERM" in record["error"]
    assert (tmp_path / "checkpoints" / "interrupted.ckpt").exists()


@pytest.fixture(scope="module")
def straight3(tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted 3-epoch run (its folder and record), shared by the tests that resume to its end."""
    run_dir = tmp_path_factory.mktemp("straight3")
    return run_dir, train(run_dir, "trainer.max_epochs=3")[1]


@pytest.fixture(scope="module")
def straight2(tmp_path_factory) -> dict:
    """An uninterrupted 2-epoch run's record."""
    return train(tmp_path_factory.mktemp("straight2"), "trainer.max_epochs=2")[1]


@pytest.mark.parametrize(  # inside the first epoch, after one, inside the last
    "epoch",
    [0, pytest.param(1, marks=pytest.mark.slow), 2],  # 1 resumes from last.ckpt as 2 does: make test-slow
)
def test_interrupt_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path, epoch, straight3):
    straight_dir, straight = straight3
    interrupted_dir = tmp_path / "interrupted"
    interrupted_run(interrupted_dir, epoch)
    assert (interrupted_dir / "checkpoints" / "interrupted.ckpt").exists()
    assert (interrupted_dir / "checkpoints" / "last.ckpt").exists() == (epoch > 0)
    code, resumed = train(interrupted_dir, "trainer.max_epochs=3", f"resume={interrupted_dir}")
    assert code == 0 and resumed["status"] == "completed"
    assert [resumed[k] for k in COMPARED] == [straight[k] for k in COMPARED]
    final = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=False) for d in (straight_dir, interrupted_dir)]
    assert final[0]["global_step"] == final[1]["global_step"] == 3 * 8  # 500 images / 64 per batch → 8 steps
    assert all(torch.equal(final[0]["state_dict"][k], final[1]["state_dict"][k]) for k in final[0]["state_dict"])


def test_resuming_a_completed_run_is_refused_and_changes_nothing(tmp_path, caplog):
    train(tmp_path, "trainer.max_epochs=1")
    assert "holds a completed run: there is nothing to resume" in refused(tmp_path, caplog, f"resume={tmp_path}")


def test_resume_with_a_different_model_is_refused_and_keeps_the_run_record(tmp_path, caplog):
    interrupted_run(tmp_path, epoch=1)
    log = refused(tmp_path, caplog, "trainer.max_epochs=3", f"resume={tmp_path}", "model.width=16")
    assert "model.width=8 in the checkpoint but 16 now" in log


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    code, metrics = train(
        tmp_path, "trainer.max_epochs=3", "+callbacks.poison._target_=helpers.PoisonAt", "+callbacks.poison.epoch=1"
    )
    assert code == 2 and metrics["status"] == "failed"
    # 600 − 100 validation = 500 training images, batch 64 → ⌈500/64⌉ = 8 steps per epoch (0..7); the weights are
    # poisoned at the start of epoch 1, so the first NaN loss is step 8 (counted from 0)
    assert "NaN/inf at step 8 (epoch 1)" in metrics["error"] and "optim.lr=" in metrics["error"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


def test_nan_guard_counts_steps_from_where_a_resumed_run_starts(tmp_path):
    guard = NonFiniteLossGuard(tmp_path)
    module = SimpleNamespace(device=torch.device("cpu"), config={"optim": {"lr": 0.1}})
    trainer = SimpleNamespace(global_step=40, current_epoch=5, precision="32-true")  # resumed at step 40
    guard.on_train_start(trainer, module)
    guard.on_train_batch_end(trainer, module, torch.tensor(1.0), None, 0)  # step 40 is fine
    trainer.global_step = 41
    guard.on_train_batch_end(trainer, module, torch.tensor(2.0), None, 1)  # step 41 too
    trainer.global_step = 42
    with pytest.raises(NonFiniteLoss, match=r"NaN/inf at step 42 \(epoch 5\).*optim.lr=0.1.*No epoch finished"):
        guard.on_train_batch_end(trainer, module, torch.tensor(float("nan")), None, 2)


def test_nan_guard_checking_every_few_steps_still_names_the_first_bad_step(tmp_path):
    guard = NonFiniteLossGuard(tmp_path, check_every=3)  # as on a GPU, where it looks only every few steps
    module = SimpleNamespace(device=torch.device("cpu"), config={"optim": {"lr": 0.1}})
    trainer = SimpleNamespace(global_step=40, current_epoch=5, precision="32-true")
    guard.on_train_start(trainer, module)
    for step, loss in ((40, float("nan")), (41, float("inf"))):  # 40 and 41 are not multiples of 3: no look yet
        trainer.global_step = step
        guard.on_train_batch_end(trainer, module, torch.tensor(loss), None, step - 40)
    trainer.global_step = 42
    with pytest.raises(NonFiniteLoss, match=r"NaN/inf at step 40 "):
        guard.on_train_batch_end(trainer, module, torch.tensor(float("nan")), None, 2)


# make test keeps test_sigterm_between_epochs_is_the_runs_interruption_with_a_record (SIGTERM, in process) and
# test_cpu_kinds's test_a_process_that_dies_without_a_record_gets_one_that_says_how_far_it_got (a real cnnlab-train)
@pytest.mark.slow
def test_sigterm_from_outside_saves_and_exits_cleanly(tmp_path):
    exe = Path(sys.executable).with_name("cnnlab-train")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [str(exe), *TINY, "trainer.max_epochs=200", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and "SIGTERM" in metrics["error"]
    assert (run_dir / "checkpoints" / "interrupted.ckpt").exists()
    assert f"resume={run_dir}" in output
    # resume in place from last.ckpt; an early stop ends the resumed run after one more epoch
    code, resumed = train(
        run_dir,
        "trainer.max_epochs=200",
        "ckpt_path=last",
        "+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping",
        "+callbacks.stop.monitor=val/acc",
        "+callbacks.stop.mode=max",
        "+callbacks.stop.stopping_threshold=0.0",
    )
    assert code == 0 and resumed["status"] == "completed"


@pytest.mark.parametrize(
    "where, signum",
    [("SignalInTest", signal.SIGTERM), ("SignalInTest", signal.SIGINT)],
)
def test_a_signal_outside_the_training_batches_records_an_interrupted_run_and_exits_128_plus_it(
    tmp_path, where, signum
):
    # SIGTERM in the final test used to kill the process with no record; SIGINT there became Lightning's exit(1)
    # with no record. The test's own handler
    # ignores SIGTERM, so a run that does not take the signal over completes instead of killing pytest.
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        code, record = train(
            tmp_path,
            "trainer.max_epochs=1",
            f"+callbacks.sig._target_=helpers.{where}",
            f"+callbacks.sig.signum={signum}",
        )
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 128 + signum and record["status"] == "interrupted" and record["signal"] == signum
    assert signal.Signals(signum).name in record["error"] and "test_acc" not in record
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


# SIGINT takes the same path as SIGTERM: make test keeps SIGTERM here and both signals in
# test_a_signal_outside_the_training_batches_records_an_interrupted_run_and_exits_128_plus_it
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_in_the_last_epochs_validation_is_an_interruption_that_resumes_to_the_uninterrupted_end(
    tmp_path, signum, straight2
):
    straight = straight2
    run_dir = tmp_path / "stopped"
    code, record = train(
        run_dir,
        "trainer.max_epochs=2",
        "+callbacks.sig._target_=helpers.SignalInValidation",
        "+callbacks.sig.epoch=1",
        f"+callbacks.sig.signum={signum}",
    )
    assert code == 128 + signum and record["status"] == "interrupted" and record["signal"] == signum
    assert "test_acc" not in record and (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    code, resumed = train(run_dir, "trainer.max_epochs=2", f"resume={run_dir}")
    assert code == 0 and resumed["status"] == "completed"
    assert [resumed[k] for k in COMPARED] == [straight[k] for k in COMPARED]


@pytest.mark.parametrize(
    "override, message",
    [
        ("seed=7", "seed=0 in the checkpoint but 7 now"),
        ("data.train_count=500", "data.train_count=600 in the checkpoint but 500 now"),
        ("optim.lr=0.01", "optim.lr=0.05 in the checkpoint but 0.01 now"),
        ("augment=none", "augment.ops="),
    ],
)
def test_resume_with_other_training_settings_is_refused_naming_them(tmp_path, caplog, override, message):
    # a resume with seed=7 recorded seed 7 over an epoch trained with seed 0
    interrupted_run(tmp_path, epoch=1)
    log = refused(tmp_path, caplog, "trainer.max_epochs=3", f"resume={tmp_path}", override)
    assert f"resuming {tmp_path}/checkpoints/last.ckpt with other training settings: " in log and message in log


def test_resume_of_a_run_whose_last_checkpoint_is_gone_or_damaged_is_refused_and_changes_nothing(tmp_path, caplog):
    interrupted_run(tmp_path, epoch=1)
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name][:1]  # one weight cut short
    torch.save(checkpoint, last)
    log = refused(tmp_path, caplog, "trainer.max_epochs=3", f"resume={tmp_path}")
    assert f"checkpoint {last} is damaged: its weights do not fit the model" in log  # was a traceback, then 'failed'
    last.unlink()  # restarting would discard epoch 0, which best.ckpt still holds
    log = refused(tmp_path, caplog, "trainer.max_epochs=3", f"resume={tmp_path}")
    assert f"{tmp_path} finished at least one epoch (best.ckpt in its checkpoints/)" in log


def test_starting_from_a_checkpoint_with_no_epoch_left_to_train_is_refused(tmp_path, caplog):
    # it recorded a 'completed' run that never trained, tested with the other run's best.ckpt
    train(tmp_path / "done", "trainer.max_epochs=1")
    log = refused(tmp_path / "new", caplog, "trainer.max_epochs=1", f"ckpt_path={tmp_path}/done/checkpoints/last.ckpt")
    assert "holds 1 finished epoch, and trainer.max_epochs=1: there is nothing left to train" in log
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


def test_an_interrupted_evaluation_is_not_offered_as_a_run_to_resume(tmp_path, caplog):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "eval.log").write_text("")
    (tmp_path / "eval" / "metrics.json").write_text('{"status": "interrupted"}')
    log = refused(tmp_path / "eval", caplog, f"resume={tmp_path}/eval")
    assert f"{tmp_path}/eval is a cnnlab-eval folder, not a training run: there is nothing to resume" in log


def test_resume_option_points_hydra_at_the_run_dir(tmp_path):
    assert compose_config(TINY + [f"resume={tmp_path}/old"], tmp_path).hydra.run.dir == f"{tmp_path}/old"


def test_resume_with_another_schedule_length_is_refused(tmp_path, caplog):
    interrupted_run(tmp_path, epoch=1)
    log = refused(tmp_path, caplog, f"resume={tmp_path}", "trainer.max_epochs=4")
    assert "its onecycle schedule was laid out for trainer.max_epochs=3" in log


def test_parallel_jobs_prepare_the_data_dir_once(tmp_path, monkeypatch):
    import torchvision.datasets

    calls, active, most_active = [], [0], [0]

    def slow_download(root, train, download):
        active[0] += 1
        most_active[0] = max(most_active[0], active[0])
        time.sleep(0.3)
        write_fake_cifar(Path(root), per_batch=10)
        calls.append(root)
        active[0] -= 1

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", slow_download)
    jobs = [threading.Thread(target=CIFAR10DataModule(data_dir=str(tmp_path / "data")).prepare_data) for _ in range(3)]
    [j.start() for j in jobs]
    [j.join() for j in jobs]
    assert len(calls) == 1 and most_active[0] == 1


def test_resume_reads_the_last_checkpoint_not_the_best(tmp_path, straight3):
    straight_dir = straight3[0]
    run_dir = tmp_path / "interrupted"
    interrupted_run(run_dir, epoch=2)  # last.ckpt: the end of epoch 1; interrupted.ckpt: inside epoch 2
    ckpts = run_dir / "checkpoints"
    (ckpts / "best.ckpt").write_bytes((ckpts / "interrupted.ckpt").read_bytes())  # a best that is not the last
    (ckpts / ".interrupted.ckpt.partial").write_bytes(b"x" * 1000)  # a save killed midway (SIGKILL) left this
    code, resumed = train(run_dir, "trainer.max_epochs=3", f"resume={run_dir}")
    assert code == 0 and resumed["status"] == "completed" and not (ckpts / ".interrupted.ckpt.partial").exists()
    final = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=False) for d in (straight_dir, run_dir)]
    assert all(torch.equal(final[0]["state_dict"][k], final[1]["state_dict"][k]) for k in final[0]["state_dict"])


def test_a_debug_pass_never_resumes_a_run(tmp_path, caplog):
    interrupted_run(tmp_path, epoch=1)
    log = refused(tmp_path, caplog, "trainer.max_epochs=3", "debug=fdr", f"resume={tmp_path}")
    assert f"debug=fdr with resume={tmp_path}: a debug pass runs a few batches and never writes into a run" in log


def test_a_run_without_checkpoints_is_refused_resume_instead_of_restarted(tmp_path, caplog):
    code, record = train(
        tmp_path,
        "trainer.max_epochs=3",
        "callbacks=none",
        "+callbacks.sig._target_=helpers.SignalAt",
        "+callbacks.sig.epoch=1",
    )
    assert code == 130 and record["status"] == "interrupted"
    log = refused(tmp_path, caplog, "trainer.max_epochs=3", "callbacks=none", f"resume={tmp_path}")
    assert "was trained with callbacks=none, which saves no checkpoints: it cannot be resumed" in log


def test_a_failed_download_leaves_no_folder_and_no_lock_behind(tmp_path, caplog, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    data_dir = tmp_path / "my data" / "cifar"  # a space, and two folders that do not exist yet
    cifar = ("data=cifar10", "progress_bar=false", "model.width=8")
    log = refused(tmp_path / "run", caplog, f"data.data_dir='{data_dir}'", "data.download=true", base=cifar)
    assert "the download failed: OSError: [Errno 101] Network is unreachable" in log
    assert list(tmp_path.iterdir()) == []  # neither the data folders nor the run dir


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path, caplog):
    (tmp_path / "cifar.tar.gz").write_bytes(b"not a folder")
    log = refused(tmp_path / "run", caplog, f"data.data_dir={tmp_path}/cifar.tar.gz", base=("data=cifar10",))
    assert f"data.data_dir={tmp_path}/cifar.tar.gz is a file, not a folder. Fix: data.data_dir=<the folder" in log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar.tar.gz"]


def test_a_full_disk_ends_in_one_line_a_failed_record_and_no_partial_files(tmp_path, caplog, monkeypatch):
    import builtins
    import errno

    from cnnlab.training import checkpoints

    calls = []

    def disk_fills_in_epoch_two(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return f
        calls.append(path)
        if len(calls) <= 2:  # epoch 0's best.ckpt and last.ckpt
            return f

        class Full:  # part of the checkpoint makes it to disk, then the disk is full
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                f.write(bytes(data)[:1000])
                raise OSError(errno.ENOSPC, "No space left on device", str(path))

        return Full()

    monkeypatch.setattr(checkpoints, "open", disk_fills_in_epoch_two, raising=False)
    code, record = train(tmp_path, "trainer.max_epochs=2", "lab_images=false")
    monkeypatch.undo()
    assert code == 2 and record["status"] == "failed" and "Traceback" not in caplog.text
    assert (
        record["error"].startswith("the disk refused a write writing ")
        and "(No space left on device)" in (record["error"])
    )
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert not [name for name in left if name.endswith((".partial", ".tmp"))], left
    # the checkpoints of epoch 0 are whole: the failed write of epoch 1 never touched them
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8
