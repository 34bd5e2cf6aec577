"""Every CPU torch supports, not only the one the suite was written on (#29): oneDNN's NHWC bug is routed around,
narrow and odd shapes train and go through the lab tools, a process that dies still leaves a record, and
cnnlab-doctor reports the machine. Crashes run in subprocesses, so one fails a test instead of killing a worker."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.cli import doctor
from cnnlab.cli.train import run as train_job
from cnnlab.errors import ConfigError
from cnnlab.lab import equivariance, linearity, params, rf  # cnnlab-pooling takes no model
from cnnlab.models.cnn import ConvNet
from cnnlab.models.resnet import ResNet
from cnnlab.training import hardware
from cnnlab.training.hardware import nhwc_hazards, resolve_channels_last
from conftest import compose_config, run_tool

BIN = Path(sys.executable).parent
NARROW_RESNET = ["model=resnet", "model.width=4", "model.blocks_per_stage=[1,1]", "data.image_size=[48,48]"]


def narrow_resnet(width: int = 4, stages=(1, 1), in_channels: int = 3) -> ResNet:
    return ResNet(num_classes=10, in_channels=in_channels, image_size=[48, 48], width=width, blocks_per_stage=stages)


def test_nhwc_hazards_are_the_1x1_stride_2_convs_whose_input_channels_are_not_a_multiple_of_16():
    # width 4: stage 2 opens with a 4→8 stride-2 block whose shortcut is a 1×1 stride-2 projection (issue #29's crash)
    assert nhwc_hazards(narrow_resnet()) == ["features.stage2.0.shortcut.0 (4→8, 1×1 stride 2)"]
    # width 8, three stages: shortcuts 8→16 (hazard) and 16→32 (16 channels: safe)
    assert nhwc_hazards(narrow_resnet(8, (1, 1, 1))) == ["features.stage2.0.shortcut.0 (8→16, 1×1 stride 2)"]
    assert nhwc_hazards(narrow_resnet(16, (2, 2, 2))) == []  # the default ResNet: 16→32, 32→64
    # a CNN whose strided downsampling conv is 1×1 (kernel_size=1, pool=stride): its blocks 2.. take 32, 64, ... in
    # but block 1 takes the 3 image channels
    cnn = ConvNet(num_classes=10, in_channels=3, image_size=32, depth=2, kernel_size=1, pool="stride")
    assert [h.split(" ")[0] for h in nhwc_hazards(cnn)] == ["features.0.0"]
    depthwise = torch.nn.Conv2d(8, 8, 1, stride=2, groups=8)  # its own oneDNN kernel: exact in the probe
    assert nhwc_hazards(torch.nn.Sequential(depthwise)) == []


@pytest.fixture
def x86_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_is_x86_with_onednn", lambda: True)


def test_auto_falls_back_to_nchw_on_an_x86_cpu_for_a_model_with_a_hazard_and_true_is_refused(x86_cpu):
    hazards = nhwc_hazards(narrow_resnet())
    assert resolve_channels_last("auto", "cpu", []) is True
    assert resolve_channels_last("auto", "cpu", hazards) is False
    assert resolve_channels_last(False, "cpu", hazards) is False
    with pytest.raises(ConfigError, match=r"channels_last=true: .*features.stage2.0.shortcut.0 .*oneDNN issue #6035"):
        resolve_channels_last(True, "cpu", hazards)


def test_a_gpu_keeps_nhwc_for_a_model_with_a_hazard(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_channels_last("auto", "auto", ["x (4→8, 1×1 stride 2)"]) is True


def run(cmd: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """A console script of this venv; a hang in native code fails the test at `timeout` instead of blocking."""
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_issue_repro_a_width_4_resnet_on_48_px_trains_under_auto(tmp_path):
    """The command that segfaulted on an AMD EPYC with AVX-512 and gave wrong weight gradients (or hung) on one with
    AVX2 only: its LabImages callback takes the input gradient of two samples through the 4→8 shortcut."""
    done = run(
        [
            "cnnlab-train",
            "data=tiny",
            "data.train_count=300",  # LabImages still takes the input gradient through the shortcut
            "data.val_size=100",
            "data.test_count=100",
            "progress_bar=false",
            "trainer.max_epochs=1",
            *NARROW_RESNET,
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed"
    assert record["channels_last"] is False  # auto's fallback (on every device this suite runs on: CPU)
    time.sleep(1)  # the job told its crash watcher it ended: a watcher that wrongly lived on would write `crashed`
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
    watchers = subprocess.run(["pgrep", "-f", f"crash_watch.py {tmp_path / 'run'}"], capture_output=True, text=True)
    assert watchers.stdout.strip() == ""
    # The same weights as a run trained in NHWC (on a GPU) would store them: loaded on this CPU, they run NCHW.
    checkpoint = torch.load(tmp_path / "run/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["config"]["channels_last"] = True
    torch.save(checkpoint, tmp_path / "nhwc.ckpt")
    from cnnlab.training.checkpoints import load_classifier

    module = load_classifier(tmp_path / "nhwc.ckpt")
    shortcut = module.net.features.stage2[0].shortcut[0].weight
    assert module.channels_last is False and shortcut.stride() == (4, 1, 1, 1)  # contiguous 8×4×1×1


def test_nhwc_gradients_of_a_model_without_hazards_equal_nchw_at_batch_1_and_2():
    """The layout auto keeps for a width-16 ResNet on 1-channel 48-px images: exact against NCHW in fp32."""
    for batch in (1, 2):
        torch.manual_seed(0)
        ref = narrow_resnet(16, (1, 1), in_channels=1)
        nhwc = narrow_resnet(16, (1, 1), in_channels=1)
        nhwc.load_state_dict(ref.state_dict())
        nhwc.to(memory_format=torch.channels_last)
        x = torch.randn(batch, 1, 48, 48)
        ref(x).square().sum().backward()
        nhwc(x.contiguous(memory_format=torch.channels_last)).square().sum().backward()
        for a, b in zip(nhwc.parameters(), ref.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


@pytest.fixture
def grey_folder(tmp_path) -> list[str]:
    """Overrides for a user's image folder of 1-channel 40×40 PNGs in 3 classes (7 images each), read at 48 px."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for c in range(3):
        (tmp_path / "images" / f"class{c}").mkdir(parents=True)
        for i in range(7):
            pixels = torch.randint(0, 256, (40, 40), generator=gen, dtype=torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(tmp_path / "images" / f"class{c}" / f"{i}.png")
    return [f"data.root={tmp_path / 'images'}", "data.in_channels=1", "data.test_size=3", "data.val_size=3"]


# make test keeps test_the_issue_repro_a_width_4_resnet_on_48_px_trains_under_auto (the same model trained by
# cnnlab-train) and test_nhwc_gradients_of_a_model_without_hazards_equal_nchw_at_batch_1_and_2 (in process)
@pytest.mark.slow
def test_a_width_4_resnet_trains_on_one_channel_48_px_images_at_batch_1_and_2(tmp_path, grey_folder):
    sweep = tmp_path / "sweep"
    argv = ["cnnlab-train", "-m", "data=imagefolder", *grey_folder, "progress_bar=false", "trainer.max_epochs=1"]
    done = run([*argv, *NARROW_RESNET, "data.batch_size=1,2", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for job in ("0", "1"):
        record = json.loads((sweep / job / "metrics.json").read_text())
        assert record["status"] == "completed" and record["channels_last"] is False


@pytest.mark.parametrize(
    "tool, args",
    [
        (rf, ["--out", "{out}"]),
        (params, ["--size", "48", "--channels", "1"]),
        (equivariance, ["--out", "{out}", "--draws", "1"]),
        (linearity, []),
    ],
)
def test_each_lab_tool_takes_a_width_4_resnet_on_1_channel_48_px_images(
    tmp_path, grey_folder, monkeypatch, capsys, tool, args
):
    out = str(tmp_path / "out")
    printed = run_tool(
        tool,
        [a.format(out=out) for a in args] + ["data=imagefolder", *grey_folder, *NARROW_RESNET],
        monkeypatch,
        capsys,
    )
    assert printed.strip()


def start_long_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A tiny run of many epochs, started in its own process; returns it once its first epoch is saved."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [
            str(BIN / "cnnlab-train"),
            "data=tiny",
            "progress_bar=false",
            "trainer.max_epochs=200",
            "schedule=none",
            "data.train_count=100",
            "data.val_size=0.2",
            "data.test_count=20",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():
        assert process.poll() is None and time.time() < deadline, process.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    time.sleep(0.5)
    return process, run_dir


def wait_for_record(run_dir: Path) -> dict:
    deadline = time.time() + 30
    while not (run_dir / "metrics.json").is_file():
        assert time.time() < deadline, "no record 30 s after the process died"
        time.sleep(0.1)
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize(
    "signum, said",
    [
        (signal.SIGKILL, "SIGKILL"),
        # the same crash watcher and record as SIGKILL's, which make test keeps (it also checks the refusal)
        pytest.param(signal.SIGSEGV, "Segmentation fault", marks=pytest.mark.slow),
    ],
)
def test_a_process_that_dies_without_a_record_gets_one_that_says_how_far_it_got(tmp_path, signum, said, caplog):
    process, run_dir = start_long_run(tmp_path)
    os.kill(process.pid, signum)  # SIGSEGV: as a crash in native code raises it; no Python handler runs
    process.wait(timeout=30)
    record = wait_for_record(run_dir)
    assert record["status"] == "crashed" and record["epochs"] >= 1
    assert said in record["error"] and f"resume={run_dir}" in record["error"] and "last.ckpt" in record["error"]
    assert record["seed"] == 0 and "data=tiny" in record["overrides"]
    assert not list(run_dir.glob(".metrics.*"))  # written atomically
    if signum == signal.SIGKILL:  # the folder is a finished run's now: a new run into it is refused
        before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        with pytest.raises(SystemExit) as again:
            train_job(compose_config(["data=tiny"], run_dir))
        assert again.value.code == 2 and f"{run_dir} already holds a run (status crashed)" in caplog.text
        assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_doctor_names_the_cpu_and_the_fallback_and_runs_a_step(monkeypatch, capsys):
    # in this process: what could crash (the oneDNN probe, the training step) runs in the doctor's own subprocesses
    lines = run_tool(doctor, ["data=tiny", *NARROW_RESNET], monkeypatch, capsys).splitlines()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), None)
    assert lines[0].startswith(f"torch {torch.__version__}")
    if model:
        assert lines[1].startswith(f"CPU: {model} (")
    if on_x86_with_onednn():
        assert "channels_last=false (auto falls back to NCHW: oneDNN gets features.stage2.0.shortcut.0" in lines[2]
    assert any(ln.startswith("oneDNN #6035") for ln in lines)
    assert any(ln.startswith("training step (precision=") for ln in lines)
    assert lines[-1] == "doctor: every check passed."


def test_doctor_refuses_channels_last_true_for_a_model_with_a_hazard_in_one_line(monkeypatch, capsys, x86_cpu):
    monkeypatch.setattr("sys.argv", ["cnnlab-doctor", "data=tiny", "channels_last=true", *NARROW_RESNET])
    with pytest.raises(SystemExit) as exit_info:
        doctor.main()
    printed = capsys.readouterr()
    assert exit_info.value.code == 2 and printed.out == "" and printed.err.count("\n") == 1  # before any check ran
    assert printed.err.startswith("error: channels_last=true: ") and "features.stage2.0.shortcut.0" in printed.err
    assert "oneDNN issue #6035" in printed.err


def on_x86_with_onednn() -> bool:
    """This machine, read independently of cnnlab.training.hardware."""
    import platform

    return platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
