"""debug= configs: fast_dev_run, overfitting a few batches, limited batches and the profiler, each on tiny data."""

import json
import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.cli.train import run
from conftest import compose_config
from helpers import BatchCounter

TINY = ["data=tiny", "progress_bar=false", "model.width=16", "+callbacks.count._target_=helpers.BatchCounter"]


def train(run_dir: Path, *extra: str) -> tuple[dict, BatchCounter]:
    """Train in-process; return metrics.json and the batches each loop ran."""
    run(compose_config(TINY + list(extra), run_dir))
    return json.loads((run_dir / "metrics.json").read_text()), BatchCounter.last


def scalars(run_dir: Path, tag: str) -> list[float]:
    values = []
    for events in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values += [e.value for e in acc.Scalars(tag)]
    return values


def test_fdr_runs_one_batch_per_loop_and_records_a_marked_run(tmp_path):
    metrics, batches = train(tmp_path, "debug=fdr")
    assert (batches.train, batches.val, batches.test) == ([1], 1, 1)
    assert metrics["status"] == "completed" and metrics["choices"]["debug"] == "fdr"
    assert metrics["epochs"] == 1 and metrics["best_checkpoint"] == ""  # no best checkpoint: test ran on the weights
    assert all(0 <= metrics[k] <= 1 for k in ("val_acc_final", "val_acc_best", "test_acc"))
    assert not (tmp_path / "checkpoints" / "best.ckpt").exists() and not (tmp_path / "tb").exists()


def test_overfit_reaches_99_percent_train_accuracy_on_three_batches(tmp_path):
    metrics, batches = train(tmp_path, "debug=overfit", "data.eval_batch_size=50")
    train_acc = scalars(tmp_path, "train/acc")
    # Each epoch trains on the same 3 batches of 64 images (data.train_subset=192) and validates on 3 of the 4
    # validation batches of 50.
    assert set(batches.train) == {3} and batches.val == 3 * len(batches.train)
    assert metrics["status"] == "completed" and metrics["choices"]["augment"] == "none"
    assert len(train_acc) == metrics["epochs"] <= 15  # stopped early by the train/acc threshold
    assert train_acc[-1] >= 0.99 > train_acc[0]


def test_limit_runs_the_stated_number_of_batches(tmp_path):
    metrics, batches = train(tmp_path, "debug=limit", "data.eval_batch_size=50")
    train_images = 1200 - 200  # data=tiny: train_count - val_size
    per_epoch = int(math.ceil(train_images / 64) * 0.25)  # limit_train_batches=0.25 of 16 batches of 64
    assert per_epoch == 4 and batches.train == [per_epoch] * 3
    assert batches.val == 3 * 2 and batches.test == 2  # 4 validation and 6 test batches of 50, capped at 2
    assert metrics["status"] == "completed" and metrics["epochs"] == 3


def test_profiler_writes_a_trace_and_an_operator_table(tmp_path):
    metrics, batches = train(tmp_path, "debug=profiler")
    assert metrics["status"] == "completed" and batches.train == [min(20, math.ceil((1200 - 200) / 64))]
    traces = sorted((tmp_path / "profiler").glob("fit-*training_step*.pt.trace.json"))
    assert len(traces) == 1
    events = json.loads(traces[0].read_text())["traceEvents"]
    assert any(e.get("name") == "aten::conv2d" for e in events)
    table = (tmp_path / "profiler" / "fit-profile.txt").read_text()
    # the operator table ranks the 30 costliest ops; which convolution kernels make it depends on load and precision
    assert "FIT Profiler Report" in table and "convolution" in table
