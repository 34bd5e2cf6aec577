"""Behaviours that could break with the rest of the suite green (issue #30): the run-dir lock against a second
cnnlab process, resume refusals of seed and batch size, the test-accuracy curve's eval mode, cnnlab-eval's data
overrides the model cannot take, and a record that never says `completed` before the final test ran."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from cnnlab.cli import eval as eval_cli
from cnnlab.cli.train import run
from cnnlab.training import callbacks as cb
from cnnlab.training.module import ImageClassifier
from cnnlab.training.trainer import run_config
from conftest import compose_config

TESTS = Path(__file__).resolve().parent
SMALL = ["data.train_count=200", "data.test_count=60", "data.val_size=0.2", "lab_images=false"]
BASE = ["data=tiny", "progress_bar=false", "trainer.max_epochs=1", *SMALL]
TINY = [*BASE, "model.width=8", "model.depth=2"]


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class WaitForFile(L.Callback):
    """Hold the run in its first training batch until `path` exists (at most `limit` seconds): a run that is
    certainly still training while the test does something beside it."""

    def __init__(self, path: str, started: str, limit: float = 180.0) -> None:
        self.path, self.started, self.limit, self.done = Path(path), Path(started), limit, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.done:
            return
        self.done = True
        self.started.write_text("training\n")
        deadline = time.time() + self.limit
        while not self.path.exists() and time.time() < deadline:
            time.sleep(0.1)


class RecordAtTestStart(L.Callback):
    """At the start of the final test, read the run dir's metrics.json (None: not there); kept in `seen`."""

    seen: list = []

    def on_test_start(self, trainer, pl_module) -> None:
        from hydra.core.hydra_config import HydraConfig

        record = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
        RecordAtTestStart.seen.append(json.loads(record.read_text()) if record.is_file() else None)


# --- the run-dir lock against a second cnnlab process ----------------------------------------------------------


# make test keeps test_robustness's test_a_run_dir_another_process_is_writing_is_refused_and_left_alone (in process)
@pytest.mark.slow
def test_a_second_cnnlab_train_on_a_training_run_dir_is_refused_in_one_line_and_the_first_finishes(tmp_path):
    bin_dir = Path(sys.executable).parent
    run_dir, gate, started = tmp_path / "run", tmp_path / "go", tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    first = subprocess.Popen(
        [
            str(bin_dir / "cnnlab-train"),
            *TINY,
            "+callbacks.gate._target_=test_pinned_behaviours.WaitForFile",
            f"+callbacks.gate.path={gate}",
            f"+callbacks.gate.started={started}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while not started.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert started.exists(), "the first run never reached its first batch"
        before = snapshot(run_dir)
        second = subprocess.run(
            [str(bin_dir / "cnnlab-train"), *TINY, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert first.poll() is None, "the first run ended before the second was refused"
        assert snapshot(run_dir) == before  # the refused process wrote nothing into the run being trained
    finally:
        gate.write_text("go\n")
        output, _ = first.communicate(timeout=300)
    lines = [line for line in (second.stdout + second.stderr).splitlines() if line.strip()]  # the log or stderr
    assert second.returncode == 2 and len(lines) == 1, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"{run_dir} is in use by another cnnlab process" in lines[0] and "Fix:" in lines[0]
    assert "Traceback" not in second.stdout + second.stderr
    assert first.returncode == 0, output[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 1
    assert "in use by another cnnlab process" not in (run_dir / "train.log").read_text()
    assert [p.name for p in (run_dir / ".hydra").iterdir() if p.name.startswith("resume-")] == []


# --- resume with another seed or batch size -------------------------------------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A 3-epoch run stopped by SIGINT in epoch 1: last.ckpt holds epoch 0, metrics.json says interrupted."""
    run_dir = tmp_path_factory.mktemp("interrupted")
    overrides = [*TINY, "trainer.max_epochs=3", "+callbacks.sig._target_=helpers.SignalAt", "+callbacks.sig.epoch=1"]
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config(overrides, run_dir))
    assert exit_info.value.code == 128 + signal.SIGINT
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    return run_dir


def resumable_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the interrupted run, so that no test (nor a broken refusal) changes the module's fixture."""
    import shutil

    shutil.copytree(run_dir, tmp_path / "copy")
    return tmp_path / "copy"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=7", "data.seed=0"], "seed=0 in the checkpoint but 7 now"),  # data.seed kept: the run's seed alone
        (["data.batch_size=32"], "data.batch_size=64 in the checkpoint but 32 now"),
    ],
    ids=["seed", "batch_size"],
)
def test_a_resume_with_another_seed_or_batch_size_is_refused_and_the_run_dir_stays_byte_identical(
    interrupted, tmp_path, caplog, overrides, message
):
    run_dir = resumable_copy(interrupted, tmp_path)
    before = snapshot(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*TINY, "trainer.max_epochs=3", f"resume={run_dir}", *overrides], run_dir))
    assert exit_info.value.code == 2
    assert snapshot(run_dir) == before
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "with other training settings: " in errors[0] and message in errors[0], errors
    assert "Fix:" in errors[0]


def test_the_same_resume_without_the_changed_value_is_accepted(interrupted, tmp_path):
    # the control: what the two refusals above differ in is the value alone
    copy = resumable_copy(interrupted, tmp_path)
    run(compose_config([*TINY, "trainer.max_epochs=3", f"resume={copy}", "seed=0", "data.batch_size=64"], copy))
    record = json.loads((copy / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 3


# --- the test-accuracy curve leaves BatchNorm alone -----------------------------------------------------------


def test_the_test_accuracy_curve_evaluates_in_eval_mode_and_leaves_batchnorm_statistics_unchanged():
    cfg = compose_config([*TINY, "model.batchnorm=true", "data.on_device=false"])
    torch.manual_seed(0)
    module = ImageClassifier(run_config(cfg))
    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment))
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns, "the model has no BatchNorm: the test would pin nothing"
    # BN statistics that are not the init's (running mean 0, var 1): a batch-statistics pass would move them
    with torch.no_grad():
        for bn in bns:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.num_batches_tracked.fill_(5)
    before = {name: b.clone() for name, b in module.named_buffers()}
    modes: list[bool] = []
    hooks = [bn.register_forward_pre_hook(lambda m, args: modes.append(m.training)) for bn in bns]
    module.train()
    trainer = SimpleNamespace(
        datamodule=datamodule, precision_plugin=SimpleNamespace(forward_context=contextlib.nullcontext)
    )
    curve = cb.TestAccuracyCurve()
    curve.on_train_epoch_start(trainer, module)
    curve.on_train_epoch_end(trainer, module)
    for hook in hooks:
        hook.remove()
    after = dict(module.named_buffers())
    assert [name for name in before if not torch.equal(before[name], after[name])] == []
    assert modes and not any(modes)  # every BN forward of the pass ran in eval mode
    assert module.training and all(m.training for m in module.modules())  # training mode restored
    # and its accuracy is that of an independent eval-mode pass over the test set
    module.eval()
    with torch.no_grad():
        loader = datamodule.test_dataloader()
        correct = sum(int((module(datamodule.prepare_batch(x, train=False)).argmax(-1) == y).sum()) for x, y in loader)
    assert module.curves["curve/test_acc"] == [pytest.approx(correct / len(datamodule.test_set))]


# --- cnnlab-eval: data overrides the model cannot take ----------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """best.ckpt of a tiny MLP run (its first layer takes 3×32×32 inputs only) and of a tiny 3-channel CNN run."""
    root = tmp_path_factory.mktemp("eval")
    run(compose_config([*BASE, "model=mlp", "model.hidden=[16]"], root / "mlp"))
    run(compose_config(TINY, root / "cnn"))
    return {name: root / name / "checkpoints" / "best.ckpt" for name in ("mlp", "cnn")}


@pytest.mark.parametrize(
    "model, override, message",
    [
        ("mlp", "data.image_size=[16,16]", "the model does not take tiny's 3×16×16 images"),
        ("mlp", "data.image_size=16", "the model does not take tiny's 3×16×16 images"),
        ("cnn", "data.in_channels=1", "data.in_channels=1 does not match tiny, whose in channels is 3"),
        ("cnn", "data=digits", "the model does not take digits's 1×8×8 images"),  # the reference: another dataset
    ],
)
def test_eval_with_a_data_key_the_model_cannot_take_is_refused_in_one_line_like_other_data(
    checkpoints, tmp_path, caplog, model, override, message
):
    from cnnlab.runs import RunEnded

    ckpt = checkpoints[model]
    before = snapshot(ckpt.parent.parent)
    with pytest.raises((RunEnded, SystemExit)) as ended:
        eval_cli.run(
            compose_config([f"ckpt_path={ckpt}", "progress_bar=false", override], tmp_path / "ev", name="eval")
        )
    assert getattr(ended.value, "code", None) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "Fix:" in errors[0] and "\n" not in errors[0], errors
    assert not (tmp_path / "ev").exists()
    assert snapshot(ckpt.parent.parent) == before


# --- the record never says completed before the final test ----------------------------------------------------


def test_the_record_does_not_say_completed_before_the_final_test_has_run(tmp_path):
    RecordAtTestStart.seen = []
    run(compose_config([*TINY, "+callbacks.peek._target_=test_pinned_behaviours.RecordAtTestStart"], tmp_path))
    assert len(RecordAtTestStart.seen) == 1  # the final test ran once, after fit
    seen = RecordAtTestStart.seen[0]
    assert seen is None or seen.get("status") != "completed", seen
    assert seen is None or "test_acc" not in seen
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "completed" and record["test_acc"] is not None


# --- user images: a 16-bit PNG (issue #30's fourth pass) -------------------------------------------------------


def test_a_16_bit_grey_png_decodes_to_its_8_bit_values_not_to_black_and_white(tmp_path):
    # PIL's convert("L"/"RGB") of a 16-bit grey PNG clips at 255: every pixel above 255/65535 came out white
    import numpy as np
    from PIL import Image

    from cnnlab.data.imagefolder import decode

    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # the same picture in 16 bits
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    assert torch.equal(decode(tmp_path / "deep.png", "L", (16, 16)), torch.from_numpy(grey)[None])
    assert torch.equal(decode(tmp_path / "deep.png", "RGB", (16, 16)), torch.from_numpy(grey)[None].expand(3, -1, -1))


# --- the file system's limits: a name longer than NAME_MAX ----------------------------------------------------


def test_an_output_folder_whose_name_is_longer_than_name_max_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    # it was an OSError traceback (ENAMETOOLONG from the writability check's stat), exit 1
    from cnnlab.cli import cnnlab_compare
    from cnnlab.errors import CnnlabError
    from cnnlab.runs import check_writable

    too_long = tmp_path / ("n" * 256)
    with pytest.raises(CnnlabError, match=r"cannot be used \(File name too long\): its longest name is 256 bytes"):
        check_writable(too_long, "output directory", "choose another hydra.run.dir.")
    check_writable(tmp_path / ("n" * 255), "output directory", "choose another hydra.run.dir.")  # at the limit: fine
    (tmp_path / "sweep" / "0" / ".hydra").mkdir(parents=True)  # a finished job, as cnnlab-compare reads one
    (tmp_path / "sweep" / "0" / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    (tmp_path / "sweep" / "0" / "metrics.json").write_text('{"status": "completed", "seed": 0, "test_acc": 0.5}')
    monkeypatch.setattr("sys.argv", ["cnnlab-compare", str(tmp_path / "sweep"), "--out", str(too_long)])
    with pytest.raises(SystemExit) as exit_info:
        cnnlab_compare()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    assert "--out" in err and "File name too long" in err and "Fix:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]


# --- user config folders: a model config that builds no network -----------------------------------------------


def test_a_model_config_without_target_is_refused_in_one_line_before_the_run_dir_opens(tmp_path, caplog):
    # a user's model/mine.yaml without _target_ built a DictConfig: `net.training` raised, a traceback, exit 1
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*TINY, "~model._target_"], tmp_path / "run"))
    assert exit_info.value.code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "the model config has no _target_, not a torch.nn.Module" in errors[0], errors
    assert "Fix: give it _target_: <package.module.Class> of an nn.Module" in errors[0]
    assert not (tmp_path / "run").exists()


def test_a_model_target_that_is_no_network_is_named_by_the_fit_check():
    from collections import OrderedDict

    from cnnlab.cli.train import check_fits
    from cnnlab.errors import ConfigError

    datamodule = instantiate(compose_config(TINY).data)
    with pytest.raises(ConfigError, match=r"the model config builds a OrderedDict, not a torch.nn.Module"):
        check_fits(OrderedDict(), datamodule)


# --- user config folders: an interpolation to a key that is not there ------------------------------------------


# make test keeps test_an_interpolation_error_names_the_key_that_holds_it_where_omegaconf_says (the message) and
# test_train's test_cli_bad_value_is_one_clear_error_without_traceback (the command line's exit 2, nothing written)
@pytest.mark.slow
def test_a_user_config_interpolating_a_missing_key_is_one_line_naming_the_key_and_writes_nothing(tmp_path):
    # it was an omegaconf InterpolationKeyError traceback (105 lines), exit 1
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text(
        "_target_: cnnlab.models.cnn.ConvNet\nwidth: ${data.no_such_key}\nnum_classes: ${data.num_classes}\n"
        "in_channels: ${data.in_channels}\nimage_size: ${data.image_size}\n"
    )
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cnnlab-train")), "--config-dir", str(tmp_path / "conf"), *TINY[:3]]
        + ["model=mine", f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Interpolation key 'data.no_such_key' not found" in lines[0] and "Fix:" in lines[0]
    assert not (tmp_path / "run").exists()


def test_an_interpolation_error_names_the_key_that_holds_it_where_omegaconf_says():
    from omegaconf import OmegaConf

    from cnnlab.errors import ConfigError, user_error

    cfg = OmegaConf.create({"data": {"a": 1}, "model": {"width": "${data.no_such_key}"}})
    with pytest.raises(Exception) as raised:
        cfg.model.width  # noqa: B018  (the access resolves the interpolation)
    error = user_error(raised.value)
    assert isinstance(error, ConfigError) and str(error).startswith("model.width: Interpolation key 'data.no_such_key'")
    assert str(error).endswith("or give model.width a value.")


# --- user images: a class folder that is a link to another class ---------------------------------------------


@pytest.mark.parametrize("link", ["fox", "ant"])  # the link sorts after, or before, the folder it points at
def test_a_class_folder_linked_to_another_class_is_refused_naming_the_link(tmp_path, link):
    # fox -> cat trained without a word: cat's images labelled both 'cat' and 'fox'
    from PIL import Image

    from cnnlab.data.folders import find_layout, labelled_files
    from cnnlab.errors import DataError

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (4, 4), (40 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    (tmp_path / link).symlink_to(tmp_path / "cat", target_is_directory=True)
    layout = find_layout(tmp_path)
    with pytest.raises(
        DataError, match=rf"class folder {tmp_path / link} is a link to the class folder {tmp_path}/cat"
    ):
        labelled_files(layout.train, layout.classes, "train")
    (tmp_path / link).unlink()  # the same folder without the link: 6 images, two labels
    layout = find_layout(tmp_path)
    paths, labels = labelled_files(layout.train, layout.classes, "train")
    assert len(paths) == 6 and sorted(labels) == [0, 0, 0, 1, 1, 1]


# --- the file system's limits: a full disk while .hydra/ is written -------------------------------------------


def test_a_full_disk_while_the_run_config_is_saved_leaves_no_empty_file_behind(tmp_path, caplog, monkeypatch):
    # a refused run (the disk full at .hydra/config.yaml) left a 0-byte .hydra/config.yaml in its run dir
    import errno

    from omegaconf import OmegaConf

    def full(cfg, f, resolve=False):  # the file is created, then the disk refuses its bytes
        Path(f).write_bytes(b"")
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(OmegaConf, "save", staticmethod(full))
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config(TINY, run_dir))
    assert exit_info.value.code == 2
    assert f"the disk refused a write writing {run_dir}/.hydra/config.yaml (No space left on device)" in caplog.text
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_figure_the_disk_refuses_leaves_no_partial_png(tmp_path, monkeypatch):
    # cnnlab-rf --out on a full disk: one line, exit 2, but a partial rf_fresh.png stayed in --out
    import errno

    from matplotlib.figure import Figure

    from cnnlab.figures import plt, save_figure

    def full(self, path, **kwargs):  # the first bytes land, then the disk is full
        Path(path).write_bytes(b"\x89PNG\r\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    fig = plt.figure()
    with pytest.raises(OSError):
        save_figure(fig, tmp_path / "rf_fresh.png")
    assert list(tmp_path.iterdir()) == [] and not plt.fignum_exists(fig.number)
