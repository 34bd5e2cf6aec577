"""Every field of metrics.json equals its source: the TensorBoard curves, the best checkpoint, a hand count.

One tiny two-epoch run is shared by the module. Its weights are zeroed before the second validation, so the best
epoch (0) and the final epoch (1) differ for certain: a record that swaps "best" and "final", or tests the last
weights instead of the best, cannot pass by luck.
"""

import json
import math
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.cli.train import run
from cnnlab.lab.tools import build_datamodule
from cnnlab.training import callbacks as callbacks_module
from cnnlab.training.callbacks import ThroughputMeter
from cnnlab.training.module import ImageClassifier
from cnnlab.training.trainer import run_config
from conftest import compose_config


def build_module(cfg) -> ImageClassifier:
    return ImageClassifier(run_config(cfg))


# fp32 so that the by-hand recomputation below (plain fp32 forward) is exact
RUN = [
    "trainer.precision=32-true",
    "data=tiny",
    "progress_bar=false",
    "lab_images=false",
    "model.width=8",
    "data.train_count=600",
    "data.val_size=100",
    "trainer.max_epochs=2",
    "seed=5",
    "+callbacks.zero._target_=helpers.ZeroWeightsAt",
    "+callbacks.zero.epoch=1",
]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve of the run as (step, value) pairs, read with TensorBoard's own reader."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for events in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            curves.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in curves.items()}


OPEN_WRITERS: list[str] = []  # TensorBoard writer threads the shared run left running


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict, dict]:
    run_dir = tmp_path_factory.mktemp("record")
    before = set(threading.enumerate())
    run(compose_config(RUN, run_dir))
    OPEN_WRITERS.extend(
        name
        for name in (type(t).__name__ for t in set(threading.enumerate()) - before if t.is_alive())
        if "Writer" in name
    )  # tensorboard's _AsyncWriterThread
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), scalars(run_dir)


def test_a_finished_run_leaves_no_tensorboard_writer_open(trained):
    assert OPEN_WRITERS == []


def best_checkpoint_score(path: Path) -> float:
    states = torch.load(path, weights_only=False)["callbacks"]
    (state,) = [v for k, v in states.items() if k.startswith("ModelCheckpoint{'monitor': 'val/acc'")]
    return float(state["best_model_score"])


def test_the_run_is_discriminating(trained):
    _, metrics, curves = trained
    val = [v for _, v in curves["val/acc"]]
    assert metrics["status"] == "completed" and len(val) == 2
    # learnt something in epoch 0 (0.40 here); zeroed weights give equal logits → class 0 for all, ~10 % in epoch 1
    assert val[1] <= 0.2 and val[0] >= val[1] + 0.1


def test_val_acc_best_is_the_best_point_of_the_val_curve_and_the_checkpoints_score(trained):
    run_dir, metrics, curves = trained
    best = max(v for _, v in curves["val/acc"])
    assert metrics["val_acc_best"] == pytest.approx(best, abs=1e-6)
    assert metrics["val_acc_best"] == pytest.approx(
        best_checkpoint_score(run_dir / "checkpoints" / "best.ckpt"), abs=1e-6
    )
    assert [v for _, v in curves["hp/val_acc_best"]][-1] == pytest.approx(best, abs=1e-6)


def test_val_acc_final_is_the_last_point_of_the_val_curve(trained):
    _, metrics, curves = trained
    assert metrics["val_acc_final"] == pytest.approx(curves["val/acc"][-1][1], abs=1e-6)
    assert metrics["epochs"] == len(curves["val/acc"]) == 2


def test_best_checkpoint_is_the_best_epochs_weights(trained):
    run_dir, metrics, _ = trained
    assert Path(metrics["best_checkpoint"]) == run_dir / "checkpoints" / "best.ckpt"
    assert torch.load(metrics["best_checkpoint"], weights_only=False)["epoch"] == 0  # the curve peaks at epoch 0


def test_test_acc_and_loss_are_those_of_the_best_checkpoint_recomputed_by_hand(trained):
    run_dir, metrics, curves = trained
    cfg = compose_config(RUN, run_dir / "unused")
    module = build_module(cfg)
    module.load_state_dict(torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"])
    module.eval()
    dm = build_datamodule(cfg)
    dm.setup()
    images, labels = dm.test_set.tensors
    with torch.no_grad():
        logits = module(dm.prepare_batch(images, train=False))
    assert metrics["test_acc"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()), abs=1e-6)
    assert metrics["test_loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-4)
    assert metrics["test_acc"] == pytest.approx(curves["test/acc"][-1][1], abs=1e-6)
    assert [v for _, v in curves["hp/test_acc"]][-1] == pytest.approx(metrics["test_acc"], abs=1e-6)


def test_params_receptive_field_seed_and_overrides_are_recorded(trained):
    _, metrics, _ = trained
    # width 8, depth 4 → 8/16/32/64 channels: (216 + 16) + (1152 + 32) + (4608 + 64) + (18432 + 128) conv+BN,
    # head 64·10 + 10
    assert metrics["params"] == 232 + 1_184 + 4_672 + 18_560 + 650
    assert metrics["receptive_field"] == 46  # 3×3 convs with 2×2 max pools: 3, 4, 8, 10, 18, 22, 38, 46
    assert metrics["seed"] == 5 and "model.width=8" in metrics["overrides"]
    assert metrics["choices"]["data"] == "tiny" and metrics["world_size"] == 1


def test_throughput_counts_training_images_over_training_time_only(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(callbacks_module.time, "perf_counter", lambda: now[0])
    meter, module = ThroughputMeter(), SimpleNamespace(device=torch.device("cpu"))
    trainer = SimpleNamespace(world_size=2, training=True)
    batch = (None, torch.zeros(10))
    meter.on_train_epoch_start(trainer, module)  # t = 100
    for i in range(3):
        meter.on_train_batch_end(trainer, module, None, batch, i)
    now[0] = 102.0
    meter.on_validation_start(trainer, module)  # the clock stops here, at 102
    now[0] = 107.0
    meter.on_train_epoch_end(trainer, module)  # 5 s of validation later: not counted
    now[0] = 110.0
    meter.on_train_epoch_start(trainer, module)
    for i in range(2):
        meter.on_train_batch_end(trainer, module, None, batch, i)
    now[0] = 113.0
    meter.on_train_epoch_end(trainer, module)  # no validation this epoch: the epoch end stops the clock
    # 5 batches × 10 images × 2 processes = 100 images in (102 − 100) + (113 − 110) = 5 s
    assert meter.images_per_second == pytest.approx(100 / 5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_training_loss_is_label_smoothed_cross_entropy_and_reported_losses_are_plain(smoothing):
    cfg = compose_config(["data=tiny", f"label_smoothing={smoothing}", "model.width=4", "model.depth=1"])
    module = build_module(cfg)
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(6, 3, 32, 32, generator=gen), torch.tensor([0, 1, 2, 3, 9, 9])
    module.eval()  # BN in eval mode: the same logits on every call
    with torch.no_grad():
        logits = module(images)
        loss = module.training_step((images, labels), 0)
        module.validation_step((images, labels), 0)
    # smoothed target: 1 − ε + ε/10 on the label, ε/10 elsewhere → (1 − ε)·CE + ε·mean over classes of −log p
    log_p = logits.log_softmax(-1)
    plain = F.cross_entropy(logits, labels)
    expected = (1 - smoothing) * plain + smoothing * (-log_p.mean(-1)).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(module.mean_loss["train_loss"].compute()) == pytest.approx(float(plain), rel=1e-5)
    assert float(module.mean_loss["val_loss"].compute()) == pytest.approx(float(plain), rel=1e-5)
    assert math.isfinite(float(loss))


def test_curves_hold_every_epoch_when_the_best_epoch_is_not_the_last(trained):
    """The test of best.ckpt (epoch 0) must not swap the run's curves for the copy saved in that checkpoint."""
    _, metrics, curves = trained
    assert metrics["epochs"] == 2
    for tag in ("val/acc", "val/loss", "train/acc", "train/loss"):
        assert metrics["curves"][tag] == pytest.approx([v for _, v in curves[tag]], abs=1e-6), tag
        assert len(metrics["curves"][tag]) == 2
