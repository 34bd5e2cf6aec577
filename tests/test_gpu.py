"""On a CUDA GPU (make gpu-check; marked `gpu`, skipped without one): the device-resident data, bf16, channels_last,
compile, resume and DDP each do what they claim there. Unmarked, and run everywhere: scripts/gpu_check.py's data
shipping (chunks reassemble byte for byte, a bad chunk is named) and the files it writes for airbench94."""

import importlib.util
import json
import math
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from cnnlab.cli.train import run
from cnnlab.data.datamodule import DeviceLoader
from conftest import REPO, compose_config, write_fake_cifar

spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

TINY = ["data=tiny", "progress_bar=false", "model.width=16", "lab_images=false", "trainer.max_epochs=2"]
# conf/data/tiny.yaml: 1,200 training images − 200 held out = 1,000, at 64 per batch → ceil(1000 / 64) = 16 steps
TRAIN_IMAGES, STEPS_PER_EPOCH = 1_000, 16
NO_GPU = "needs a CUDA GPU (torch.cuda.is_available() is false): run by make gpu-check on a GPU machine"


def gpu_test(test):
    """Marked `gpu` (only make gpu-check selects it) and skipped where torch sees no CUDA GPU."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)(test))


class Probe(L.Callback):
    """What a training did on its device, read from inside it; the last instance is kept in Probe.last.
    `watch_conv` hooks the first convolution to see its output's dtype and memory layout (left off under compile)."""

    last: "Probe | None" = None

    def __init__(self, watch_conv: bool = True) -> None:
        self.watch_conv, self.loader, self.epochs, self.batch_devices = watch_conv, None, [], set()
        self.conv_out: tuple[torch.dtype, bool] | None = None  # (dtype, channels_last) in training
        Probe.last = self

    def on_train_start(self, trainer, pl_module) -> None:
        self.loader = trainer.train_dataloader
        self.param_devices = {p.device.type for p in pl_module.parameters()}
        self.param_dtypes = {p.dtype for p in pl_module.parameters()}
        conv = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d))
        self.weight_nhwc = conv.weight.is_contiguous(memory_format=torch.channels_last)
        self._hook = conv.register_forward_hook(self._see_conv) if self.watch_conv else None

    def _see_conv(self, module, inputs, output) -> None:
        if module.training:  # a B×C×32×32 map is contiguous in one layout only
            self.conv_out = (output.dtype, output.is_contiguous(memory_format=torch.channels_last))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append(trainer.current_epoch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_devices.add(batch[0].device.type)

    def on_train_end(self, trainer, pl_module) -> None:
        self.bn_stat_dtypes = {b.dtype for name, b in pl_module.named_buffers() if "running" in name}
        if self._hook is not None:
            self._hook.remove()


def train(run_dir: Path, *extra: str, watch_conv: bool = True) -> tuple[int, dict, Probe]:
    """One tiny training in-process with a Probe; returns (exit code, metrics.json, the probe)."""
    probe = ["+callbacks.probe._target_=test_gpu.Probe", f"+callbacks.probe.watch_conv={watch_conv}"]
    code = 0
    try:
        run(compose_config([*TINY, *probe, *extra], run_dir))
    except SystemExit as e:
        code = e.code
    return code, json.loads((run_dir / "metrics.json").read_text()), Probe.last


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[Path, dict, Probe]:
    """The defaults on a GPU: data.on_device, trainer.precision and channels_last all `auto`."""
    run_dir = tmp_path_factory.mktemp("default")
    code, record, probe = train(run_dir)
    assert code == 0 and record["status"] == "completed", record.get("error")
    return run_dir, record, probe


def auto_precision() -> tuple[str, torch.dtype]:
    """What precision=auto must pick on this GPU: bf16 where it has bf16 tensor cores (compute capability 8.0 on,
    Ampere and later; an H200 is 9.0), fp16 before."""
    return (
        ("bf16-mixed", torch.bfloat16) if torch.cuda.get_device_capability() >= (8, 0) else ("16-mixed", torch.float16)
    )


@gpu_test
def test_the_training_set_lives_on_the_gpu_and_batches_are_gathered_there(default_run):
    _, record, probe = default_run
    assert isinstance(probe.loader, DeviceLoader)  # crop_flip is batched, so on_device=auto keeps the data there
    assert probe.loader.images.device.type == "cuda" and probe.loader.images.dtype == torch.uint8
    assert len(probe.loader.images) == TRAIN_IMAGES
    assert probe.batch_devices == {"cuda"} and probe.param_devices == {"cuda"}
    assert record["test_acc"] > 0.5  # chance is 0.1


@gpu_test
def test_with_on_device_false_a_dataloader_feeds_the_gpu_batch_by_batch(tmp_path):
    code, record, probe = train(tmp_path, "data.on_device=false")
    assert code == 0 and record["status"] == "completed"
    assert isinstance(probe.loader, torch.utils.data.DataLoader) and not isinstance(probe.loader, DeviceLoader)
    assert probe.batch_devices == {"cuda"} and record["test_acc"] > 0.5


@gpu_test
def test_precision_auto_trains_in_bf16_with_fp32_weights_and_batchnorm_statistics(default_run):
    _, record, probe = default_run
    name, dtype = auto_precision()
    assert record["precision"] == name and probe.conv_out[0] == dtype
    assert probe.param_dtypes == {torch.float32} and probe.bn_stat_dtypes == {torch.float32}
    assert record["test_acc"] > 0.5


@gpu_test
@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)])
def test_an_explicit_precision_is_the_one_the_convolutions_run_in(tmp_path, precision, dtype):
    code, record, probe = train(tmp_path, f"trainer.precision={precision}")
    assert code == 0 and record["precision"] == precision and probe.conv_out[0] == dtype
    assert probe.param_dtypes == {torch.float32} and record["test_acc"] > 0.5


@gpu_test
def test_channels_last_auto_lays_weights_and_activations_out_nhwc(default_run):
    _, record, probe = default_run
    assert record["channels_last"] is True and probe.weight_nhwc and probe.conv_out[1]


@gpu_test
def test_channels_last_false_keeps_the_nchw_layout(tmp_path):
    code, record, probe = train(tmp_path, "channels_last=false")
    assert code == 0 and record["channels_last"] is False
    assert not probe.weight_nhwc and not probe.conv_out[1] and record["test_acc"] > 0.5


@gpu_test
def test_compile_trains_a_compiled_backbone_and_saves_its_plain_parameter_names(tmp_path, default_run):
    import torch._dynamo

    torch._dynamo.utils.counters.clear()
    code, record, probe = train(tmp_path, "compile=true", watch_conv=False)
    assert code == 0 and record["status"] == "completed" and record["test_acc"] > 0.5
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # dynamo captured graphs: it did compile
    assert probe.batch_devices == {"cuda"}
    compiled = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    plain = torch.load(default_run[0] / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert compiled.keys() == plain.keys()  # no `_orig_mod.`: cnnlab-eval loads it into an uncompiled model


@gpu_test
def test_resume_on_the_gpu_continues_after_the_last_completed_epoch(tmp_path):
    code, record, _ = train(
        tmp_path, "trainer.max_epochs=3", "+callbacks.sig._target_=helpers.SignalAt", "+callbacks.sig.epoch=1"
    )
    assert code == 128 + signal.SIGINT and record["status"] == "interrupted"
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0 and last["global_step"] == STEPS_PER_EPOCH  # the end of epoch 0, the one completed
    code, resumed, probe = train(tmp_path, "trainer.max_epochs=3", f"resume={tmp_path}")
    assert code == 0 and resumed["status"] == "completed" and resumed["epochs"] == 3
    assert probe.epochs == [1, 2] and probe.batch_devices == {"cuda"}  # epoch 0 is not trained again
    assert resumed["curves"]["train/loss"][0] == last["curves"]["train/loss"][0]  # its record comes from the checkpoint
    assert len(resumed["curves"]["val/acc"]) == 3 and resumed["test_acc"] > 0.5
    final = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == 3 * STEPS_PER_EPOCH


@gpu_test
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP needs 2 CUDA GPUs; this machine has fewer")
def test_ddp_trains_on_two_gpus_as_one_run(tmp_path):
    command = [sys.executable, "-m", "cnnlab.cli.train", *TINY, f"hydra.run.dir={tmp_path}/ddp"]
    proc = subprocess.run(
        [*command, "trainer.accelerator=gpu", "trainer.devices=2", "+trainer.strategy=ddp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert record["status"] == "completed" and record["world_size"] == 2 and record["precision"] == auto_precision()[0]
    assert record["test_acc"] > 0.5  # the same command on 2 CPU processes (accelerator=cpu) reached 0.82


# scripts/gpu_check.py's own parts, on any machine.


def write_meta(root: Path, names: list[str]) -> None:
    with open(root / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": 20, "num_vis": 3072}, f)


@pytest.fixture
def cifar_with_meta(tmp_path) -> Path:
    root = write_fake_cifar(tmp_path / "src", per_batch=20)
    write_meta(root, [f"class{i}" for i in range(10)])
    return root


def test_packed_chunks_reassemble_into_the_same_files_byte_for_byte(cifar_with_meta, tmp_path):
    originals = {name: (cifar_with_meta / "cifar-10-batches-py" / name).read_bytes() for name in gpu_check.FILES}
    chunks = gpu_check.pack(cifar_with_meta, tmp_path / "gpu_data", chunk_bytes=100_000)
    sizes = [(tmp_path / "gpu_data" / c).stat().st_size for c in chunks]
    assert len(chunks) == math.ceil(sum(map(len, originals.values())) / 100_000) > 1  # ~62 KB a file, 7 files
    assert max(sizes) == 100_000 and sum(sizes) == sum(map(len, originals.values()))
    folder = gpu_check.unpack(tmp_path / "gpu_data", tmp_path / "dst")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == originals


@pytest.mark.parametrize("fault", ["missing", "damaged"])
def test_unpack_names_a_missing_or_damaged_chunk_and_writes_nothing(cifar_with_meta, tmp_path, fault):
    gpu_check.pack(cifar_with_meta, tmp_path / "gpu_data", chunk_bytes=100_000)
    chunk = tmp_path / "gpu_data" / "cifar10.part01"
    if fault == "missing":
        chunk.unlink()
    else:
        data = bytearray(chunk.read_bytes())
        data[500] ^= 0xFF  # same size, one byte off: only the checksum sees it
        chunk.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.unpack(tmp_path / "gpu_data", tmp_path / "dst")
    assert f"cifar10.part01 ({fault if fault == 'missing' else '100,000 bytes, damaged'})" in str(exit_info.value)
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("bytes_keys", [False, True])  # the original pickles' str keys, and re-pickled bytes keys
def test_airbench_files_hold_what_airbench_would_have_saved_from_torchvision(tmp_path, monkeypatch, bytes_keys):
    import torchvision.datasets.cifar

    names = [f"class{i}" for i in range(10)]
    for keys, root in ((bytes_keys, tmp_path / "src"), (False, tmp_path / "reference")):  # same seed, same images
        write_fake_cifar(root, per_batch=20, bytes_keys=keys)
        write_meta(root, names)
    gpu_check.write_airbench_files(tmp_path / "src", tmp_path / "cifar10")
    # airbench's CifarLoader saves {images: torch.tensor(dset.data), labels: torch.tensor(dset.targets), classes}
    # from torchvision's CIFAR10; its md5 checks would refuse fake files, so they are switched off here.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    for name, train in (("train.pt", True), ("test.pt", False)):
        dset = torchvision.datasets.CIFAR10(tmp_path / "reference", train=train, download=False)
        saved = torch.load(tmp_path / "cifar10" / name, weights_only=True)  # as airbench loads it (torch >= 2.6)
        assert torch.equal(saved["images"], torch.tensor(dset.data)) and saved["images"].shape[1:] == (32, 32, 3)
        assert torch.equal(saved["labels"], torch.tensor(dset.targets)) and saved["labels"].dtype == torch.int64
        assert saved["classes"] == dset.classes == names


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_the_check_says_so_in_one_line_and_exits_0(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1 and "no CUDA GPU here" in proc.stdout, proc.stderr
