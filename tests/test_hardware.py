"""Machine-dependent speed settings: precision and channels_last `auto`, threads per joblib job, fp32 where needed."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.types import RunMode
from omegaconf import OmegaConf

from cnnlab.errors import ConfigError
from cnnlab.models.cnn import ConvNet
from cnnlab.training import hardware
from cnnlab.training.hardware import resolve_channels_last, resolve_precision, split_threads, threads_for_job
from conftest import compose_config

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize(
    "bf16, x86, precision, channels_last",
    [
        (True, True, "bf16-mixed", True),  # e.g. AMD Zen 4 / Intel Sapphire Rapids (AVX512-BF16, AMX)
        (False, True, "32-true", True),  # e.g. an AVX2-only laptop: bf16 would be emulated, slower than fp32
        (False, False, "32-true", False),  # e.g. an ARM CPU: no oneDNN NHWC path
    ],
)
def test_auto_on_a_cpu_follows_its_features(monkeypatch, cpu_only, bf16, x86, precision, channels_last):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: bf16)
    monkeypatch.setattr(hardware, "cpu_is_x86_with_onednn", lambda: x86)
    for accelerator in ("auto", "cpu"):
        assert resolve_precision("auto", accelerator) == precision
        assert resolve_channels_last("auto", accelerator) is channels_last


@pytest.mark.parametrize("native, precision", [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_on_cuda_is_mixed_precision_and_channels_last(monkeypatch, native, precision):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware, "cuda_has_native_bf16", lambda: native)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)  # the GPU decides, not the host CPU
    for accelerator in ("auto", "gpu", "cuda"):
        assert resolve_precision("auto", accelerator) == precision
        assert resolve_channels_last("auto", accelerator) is True
    # accelerator=cpu on a GPU machine: the CPU's rules apply
    monkeypatch.setattr(hardware, "cpu_is_x86_with_onednn", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true" and resolve_channels_last("auto", "cpu") is False


def test_explicit_values_win_over_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware, "cuda_has_native_bf16", lambda: True)
    assert resolve_precision("32-true", "auto") == "32-true"
    assert resolve_precision(32, "auto") == "32-true"  # Lightning's aliases, in its unified spelling
    assert resolve_precision("bf16", "cpu") == "bf16-mixed"
    assert resolve_precision("16-mixed", "cuda") == "16-mixed"
    assert resolve_channels_last(False, "auto") is False
    assert resolve_channels_last(True, "cpu") is True


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("precision", "bf17-mixed", "trainer.precision='bf17-mixed' is not a valid choice. Valid: auto, 64, 32, 16"),
        ("channels_last", "yes", "channels_last='yes' is not a valid choice. Valid: auto, true, false"),
    ],
)
def test_bad_values_name_the_choices_and_the_fix(key, value, message):
    resolve = resolve_precision if key == "precision" else resolve_channels_last
    with pytest.raises(ConfigError, match="Fix:") as info:
        resolve(value, "cpu")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "n_jobs, cores, threads",
    [(2, 16, 8), (4, 16, 4), (3, 16, 5), (-1, 16, 1), (-2, 16, 1), (-15, 16, 8), (-4, 16, 1), (32, 16, 1), (1, 16, 16)],
)
def test_joblib_jobs_share_the_cores(n_jobs, cores, threads):
    assert split_threads(n_jobs, cores) == threads
    running = cores + 1 + n_jobs if n_jobs < 0 else n_jobs  # joblib's count of jobs at once
    assert min(running, cores) * split_threads(n_jobs, cores) <= cores


def test_threads_per_job_only_change_under_joblib_multirun_when_unset():
    joblib = OmegaConf.create(
        {
            "mode": RunMode.MULTIRUN,
            "launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4},
        }
    )
    assert threads_for_job(None, joblib, cores=16) == 4
    assert threads_for_job(3, joblib, cores=16) == 3  # the user's value wins
    basic = OmegaConf.create(
        {
            "mode": RunMode.MULTIRUN,
            "launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
        }
    )
    assert threads_for_job(None, basic, cores=16) is None  # one job at a time: torch's default
    single = OmegaConf.merge(joblib, {"mode": RunMode.RUN})
    assert threads_for_job(None, single, cores=16) is None


def test_threads_rule_reads_the_composed_joblib_config(tmp_path):
    cfg = compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path)
    with_mode = OmegaConf.merge(cfg.hydra, {"mode": RunMode.MULTIRUN})
    assert threads_for_job(cfg.threads, with_mode, cores=8) == 4


def test_under_cpu_autocast_bn_statistics_and_the_loss_stay_fp32():
    torch.manual_seed(0)
    net = ConvNet(depth=1, width=8, **CIFAR10).to(memory_format=torch.channels_last).train()
    bn = net.features[0][1]
    seen = {}
    bn.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0].detach()))
    x = torch.randn(32, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert seen["x"].dtype == logits.dtype == torch.bfloat16  # autocast is really on: convs run in bf16
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits.float(), labels, label_smoothing=0.1).item(), rel=1e-6
    )
    # Running statistics: fp32 buffers, updated at fp32 accuracy from the bf16 activations (a bf16 update
    # would be off by ~1e-3 relative).
    batch = seen["x"].float()
    assert bn.running_mean.dtype == bn.running_var.dtype == torch.float32
    torch.testing.assert_close(bn.running_mean, 0.1 * batch.mean((0, 2, 3)), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * batch.var((0, 2, 3), unbiased=True), rtol=1e-5, atol=1e-7)


class DtypeProbe(L.Callback):
    """Records, during a real run, the dtypes the training step produced and BN's buffers ended in."""

    seen: dict = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        bn = next(m for m in pl_module.modules() if isinstance(m, torch.nn.BatchNorm2d))
        DtypeProbe.seen.update(
            precision=trainer.precision,
            loss=loss.dtype,
            running_mean=bn.running_mean.dtype,
            channels_last=pl_module.net.features[0][0].weight.is_contiguous(memory_format=torch.channels_last),
        )


def test_a_run_records_what_auto_chose(monkeypatch, cpu_only, tmp_path):
    from cnnlab.cli.train import run

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(hardware, "cpu_is_x86_with_onednn", lambda: True)
    run(
        compose_config(
            [
                "data=tiny",
                "progress_bar=false",
                "lab_images=false",
                "model.width=8",
                "data.train_count=600",
                "data.val_size=100",
                "trainer.max_epochs=1",
                "+callbacks.probe._target_=test_hardware.DtypeProbe",
            ],
            tmp_path,
        )
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["precision"] == "bf16-mixed" and metrics["channels_last"] is True
    assert metrics["threads"] == torch.get_num_threads()
    assert DtypeProbe.seen == {
        "precision": "bf16-mixed",
        "loss": torch.float32,
        "running_mean": torch.float32,
        "channels_last": True,
    }
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["hyper_parameters"]["config"]
    assert saved["trainer"]["precision"] == "bf16-mixed" and saved["channels_last"] is True


def test_explicit_precision_in_a_run_is_kept(monkeypatch, cpu_only, tmp_path):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    cfg = compose_config(["data=tiny", "trainer.precision=32-true", "channels_last=false"], tmp_path)
    assert hardware.resolve_run_settings(cfg) == {
        "precision": "32-true",
        "channels_last": False,
        "threads": torch.get_num_threads(),
    }
    assert cfg.trainer.precision == "32-true" and cfg.channels_last is False


@pytest.mark.parametrize(
    "flags, native_bf16",
    [
        ("fpu avx2 avx512f avx512_bf16", True),  # AMD Zen 4: AVX512-BF16
        ("fpu avx2 avx512f amx_bf16 amx_tile", True),  # Intel Sapphire Rapids: AMX
        ("fpu avx2 avx512f avx512bw", False),  # AVX-512 without bf16 (Skylake-X): emulated, slower than fp32
        ("fpu sse4_2 avx2", False),
    ],
)
def test_the_bf16_rule_reads_the_cpu_flags_themselves(tmp_path, monkeypatch, flags, native_bf16):
    # the flags come from the kernel's list here (torch's own checks report nothing), not from a patched answer
    for name in ("_is_avx2_supported", "_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\nbugs\t\t: none\n")
    monkeypatch.setattr(hardware, "Path", lambda p: cpuinfo if str(p) == "/proc/cpuinfo" else Path(p))
    hardware.cpu_flags.cache_clear()
    try:
        assert hardware.cpu_has_native_bf16() is native_bf16
        assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native_bf16 else "32-true")
    finally:
        hardware.cpu_flags.cache_clear()
