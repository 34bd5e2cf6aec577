"""Training throughput benchmark (`make bench`); paste the printed table into docs/benchmarks.md.

Three loops, alternated in one process after a discarded warm-up round, each timed over the same number of
steps of batch 128 on CIFAR-shaped uint8 data held in memory (real CIFAR-10 when found, else random):

  (a) template: the default `cnnlab-train` training loop: the default config composed with
      cnnlab.config.compose_config, cnnlab's real Trainer with its default callbacks (checkpointing, LR monitor,
      throughput meter, reseeding, interrupt and NaN guards, lab images, progress bar), the depth-3 CNN
      (model.depth=3: the default until 2026-12-01, kept as the fixed workload so the numbers stay comparable),
      crop+flip, SGD + one-cycle, and `auto` precision/memory layout.
  (b) plain: an eager fp32 NCHW loop the way a PyTorch tutorial writes it, defined in this file and importing
      nothing from cnnlab: its own copy of that depth-3 CNN, its own crop+flip, its own SGD + one-cycle.
  (c) ceiling: the bare model step (forward, loss, backward, SGD step) of that CNN in the fastest mode,
      bf16 autocast + channels_last, on a fixed random batch: no data, no augmentation, no schedule.

Prints the CPU model and the features that decide speed first, then the median images/s of each over the repeats,
a/b and a/c.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it

BATCH = 128


# ---------------------------------------------------------------------------------------------------------------
# (b) and (c): plain PyTorch, no cnnlab.


class PlainCNN(nn.Module):
    """The depth-3 cnnlab CNN (the default until 2026-12-01) by hand: 3 × (conv3×3 → BN → ReLU → maxpool), 32/64/128."""

    def __init__(self) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c_out in (32, 64, 128):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def plain_augment(images: torch.Tensor) -> torch.Tensor:
    """uint8 batch → float in [0, 1], random crop after zero padding by 4 (two gathers), random flip."""
    x = images.float() / 255
    b, c, h, w = x.shape
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (b, 1), device=x.device)
    dx = torch.randint(0, 9, (b, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(b, c, h, w + 8)
    cols = (dx + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, c, h, w)
    x = padded.gather(2, rows).gather(3, cols)
    flip = (torch.rand(b, device=x.device) < 0.5).view(b, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def plain_rate(images: torch.Tensor, labels: torch.Tensor, warmup: int, steps: int) -> float:
    """(b) Training images/s of a tutorial-style eager fp32 NCHW loop."""
    device = images.device
    net = PlainCNN().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=0.05,
        total_steps=warmup + steps,
        pct_start=0.25,
        anneal_strategy="linear",
        cycle_momentum=False,
    )
    mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)
    order = torch.randperm(len(images), device=device)
    net.train()
    for step, index in enumerate(order.split(BATCH)[: warmup + steps]):
        if step == warmup:
            start = _now(device)
        x = (plain_augment(images[index]) - mean) / std
        loss = nn.functional.cross_entropy(net(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return steps * BATCH / (_now(device) - start)


def ceiling_rate(device: torch.device, warmup: int, steps: int) -> float:
    """(c) Images/s of the bare model step in the fastest mode: bf16 autocast, channels_last, fixed random batch."""
    net = PlainCNN().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(BATCH, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,), device=device)
    net.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = _now(device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * BATCH / (_now(device) - start)


CLOCK = {"name": "wall"}


def _now(device: torch.device) -> float:
    """Wall-clock seconds (default), or this process's CPU seconds with --clock cpu."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.process_time() if CLOCK["name"] == "cpu" else time.perf_counter()


# ---------------------------------------------------------------------------------------------------------------
# (a): the template.


def template_rate(
    arrays: tuple[torch.Tensor, ...], warmup: int, steps: int, overrides: list[str]
) -> tuple[float, dict]:
    """(a) Training images/s of cnnlab's default training loop, timed from step `warmup` for `steps` steps;
    also returns the precision and memory layout it chose."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from cnnlab.config import compose_config
    from cnnlab.training.callbacks import ReseedEachEpoch, ThroughputMeter
    from cnnlab.training.hardware import resolve_run_settings
    from cnnlab.training.module import ImageClassifier
    from cnnlab.training.trainer import build_trainer, run_config

    class Clock(ThroughputMeter):  # the run's own meter, plus a clock over steps warmup .. warmup + steps - 1
        def __init__(self) -> None:
            super().__init__()
            self.window_start = self.window_s = 0.0  # not the meter's own `seconds`, which it adds to later
            self.window_images = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == warmup:
                self.window_start = _now(pl_module.device)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if batch_idx >= warmup:
                self.window_images += len(batch[1])
            if batch_idx == warmup + steps - 1:
                self.window_s = _now(pl_module.device) - self.window_start

    cfg = compose_config(
        overrides
        + ["trainer.max_epochs=1", f"+trainer.limit_train_batches={warmup + steps}", "+trainer.limit_val_batches=1"],
        return_hydra_config=True,
    )
    settings = resolve_run_settings(cfg)
    with tempfile.TemporaryDirectory() as run_dir:
        with open_dict(cfg):  # the run directory the callbacks and loggers groups write into, as in a real run
            cfg.hydra.runtime.output_dir = run_dir
            cfg.hydra.job.name = "bench"
        HydraConfig.instance().set_config(cfg)
        torch.manual_seed(0)
        datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment))
        datamodule.prepare_data = lambda: None  # the arrays are already in memory
        datamodule.load_arrays = lambda: arrays
        module = ImageClassifier(run_config(cfg))
        clock = Clock()
        trainer = build_trainer(cfg, Path(run_dir), [clock, ReseedEachEpoch(cfg.seed)])
        trainer.fit(module, datamodule=datamodule)
    return clock.window_images / clock.window_s, settings


# ---------------------------------------------------------------------------------------------------------------

FLAG_NAMES = ("avx512_bf16", "amx_bf16", "avx512f", "avx2")  # the x86 features that decide the `auto` settings


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's "model name" line (Linux), else what the platform module reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def proc_cpu_flags() -> frozenset[str] | None:
    """The features of FLAG_NAMES that /proc/cpuinfo's "flags" line lists; None where there is no such file."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags") and ":" in line:
                return frozenset(FLAG_NAMES) & set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_line(flags: frozenset[str] | None) -> str:
    """One line naming the CPU model and its speed-deciding flags, for the first line of a benchmark's output."""
    listed = (
        ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in FLAG_NAMES)
        if flags is not None
        else "unknown (this cnnlab predates training/hardware.py and there is no /proc/cpuinfo)"
    )
    return f"cpu: {cpu_model()}; flags: {listed}"


def load_data(data_dir: str | None) -> tuple[tuple[torch.Tensor, ...], str]:
    """Real CIFAR-10 (train/test arrays) from data_dir or $CNNLAB_CIFAR_DIR when present, else random uint8."""
    from cnnlab.data.cifar10 import TEST_FILES, TRAIN_FILES, find_batches_folder, read_split

    for candidate in (data_dir, os.environ.get("CNNLAB_CIFAR_DIR"), "data"):
        folder = find_batches_folder(Path(candidate)) if candidate else None
        if folder is not None:
            train_x, train_y = read_split(folder, TRAIN_FILES)
            test_x, test_y = read_split(folder, TEST_FILES)
            return (train_x, train_y, test_x, test_y), f"CIFAR-10 from {folder}"
    gen = torch.Generator().manual_seed(0)
    arrays = (
        torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8, generator=gen),
        torch.randint(0, 10, (50000,), generator=gen),
        torch.randint(0, 256, (10000, 3, 32, 32), dtype=torch.uint8, generator=gen),
        torch.randint(0, 10, (10000,), generator=gen),
    )
    return arrays, "random uint8 (no CIFAR-10 found; pass --data-dir)"


def main() -> None:
    """Run the three loops alternately and print a markdown table with the ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py (default: $CNNLAB_CIFAR_DIR, then data/)")
    p.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before each measurement")
    p.add_argument("--repeats", type=int, default=5, help="alternating repeats (at least 5 for the docs)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (what a user waits; needs an idle machine). cpu: this process's CPU "
        "time, steadier on a shared machine, but only meaningful with --threads 1 (idle threads "
        "spin and would count)",
    )
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for the template, e.g. channels_last=false")
    args = p.parse_args()
    if args.warmup + args.steps < 8 or args.steps < 1:
        p.error(
            f"--warmup {args.warmup} --steps {args.steps}: the one-cycle schedules need at least 8 steps in all "
            f"and at least 1 timed. Fix: e.g. --warmup 3 --steps 15."
        )
    try:
        from cnnlab.training.hardware import cpu_flags

        flags = cpu_flags()  # the same detection `auto` uses
    except ImportError:
        flags = proc_cpu_flags()
    print(cpu_line(flags), flush=True)  # the first line: every figure is this CPU's (docs/benchmarks.md, "Which CPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    CLOCK["name"] = args.clock

    from cnnlab.models.cnn import ConvNet
    from cnnlab.runs import quiet

    quiet()
    for name in ("lightning.pytorch", "lightning.fabric", "cnnlab"):  # Trainer set-up chatter, once per repeat
        logging.getLogger(name).setLevel(logging.WARNING)
    arrays, source = load_data(args.data_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images, labels = arrays[0].to(device), arrays[1].to(device)
    template_params = sum(p.numel() for p in ConvNet(depth=3, **CIFAR10).parameters())
    plain_params = sum(p.numel() for p in PlainCNN().parameters())
    overrides = ["model.depth=3", *args.overrides]
    settings: dict = {}

    def template() -> float:
        rate, chosen = template_rate(arrays, args.warmup, args.steps, overrides)
        settings.update(chosen)
        return rate

    loops: dict[str, Callable[[], float]] = {
        "a": template,
        "b": lambda: plain_rate(images, labels, args.warmup, args.steps),
        "c": lambda: ceiling_rate(device, args.warmup, args.steps),
    }
    for fn in loops.values():  # warm-up round, discarded: allocator, thread pool, oneDNN kernels, imports
        fn()
    rates: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for repeat in range(args.repeats):  # rotate the order so drift in machine load hits every loop alike
        for name in names[repeat % 3 :] + names[: repeat % 3]:
            rates[name].append(loops[name]())
    med = {name: statistics.median(values) for name, values in rates.items()}
    paired = {k: statistics.median(a / o for a, o in zip(rates["a"], rates[k])) for k in ("b", "c")}

    print(
        f"\nmachine: {cpu_model()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, device {device}"
    )
    print(cpu_line(flags))
    print(
        f"data: {source}; batch {BATCH}; {args.steps} timed steps after {args.warmup} warm-up steps; "
        f"median of {args.repeats} alternating repeats after a discarded round; {args.clock} clock"
    )
    print(
        f"parameters: template CNN {template_params:,}, plain CNN {plain_params:,}"
        + ("" if template_params == plain_params else "  (MISMATCH: the baseline is not the same model)")
    )
    print(
        f"template overrides: {' '.join(overrides) or 'none (the default config)'}; it chose "
        f"precision={settings.get('precision')}, channels_last={settings.get('channels_last')}\n"
    )
    labels_ = {
        "a": "(a) cnnlab-train default loop",
        "b": "(b) plain eager fp32 NCHW loop",
        "c": "(c) bare model step, bf16 autocast + channels_last",
    }
    print("| loop | images/s (runs) | median |\n|---|---|---|")
    for name, values in rates.items():
        print(f"| {labels_[name]} | {', '.join(f'{v:.0f}' for v in values)} | {med[name]:.0f} |")
    print(f"\na/b = {med['a'] / med['b']:.2f} (goal ≥ 2.0; median of per-repeat ratios {paired['b']:.2f})")
    print(f"a/c = {med['a'] / med['c']:.2f} (goal ≥ 0.85; median of per-repeat ratios {paired['c']:.2f})")


if __name__ == "__main__":
    main()
