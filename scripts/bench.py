"""Throughput benchmarks (`make bench`); paste the printed tables into docs/benchmarks.md.

1. Training: cnnlab's Lightning path against a plain PyTorch loop on the same model, data, batch size,
   augmentation, optimizer and schedule, alternated in one process, median of several repeats.
2. Augmentation: batched crop+flip on tensors against torchvision per-image transforms in a DataLoader
   with workers.
3. One epoch of the default CNN on 45,000 images (images/s, seconds), and the peak RSS of that run.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from cnnlab.builders import build_datamodule, build_module
from cnnlab.quiet import quiet
from torch.utils.data import DataLoader, Dataset

from cnnlab.lab.cli import compose_config
from cnnlab.training.callbacks import ThroughputMeter
from cnnlab.training.optim import build_optimizer, build_schedule

quiet()


def template_images_per_s(overrides: list[str], epochs: int) -> float:
    """Training images/s of cnnlab's LightningModule + datamodule (validation excluded)."""
    cfg = compose_config(overrides)
    torch.manual_seed(0)
    datamodule, module, meter = build_datamodule(cfg), build_module(cfg), ThroughputMeter()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[meter])
    trainer.fit(module, datamodule=datamodule)
    return meter.images_per_second


def plain_images_per_s(overrides: list[str], epochs: int) -> float:
    """The same training written as a plain PyTorch loop over the same tensors and augmentation."""
    cfg = compose_config(overrides)
    torch.manual_seed(0)
    datamodule, module = build_datamodule(cfg), build_module(cfg)
    datamodule.setup()
    images, labels = datamodule.train_set.tensors
    net, batch_size = module.net, cfg.data.batch_size
    optimizer = build_optimizer(net, module.optim_cfg)
    steps = epochs * -(-len(images) // batch_size)
    scheduler = build_schedule(optimizer, module.schedule_cfg, steps)["scheduler"]
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    seen, start = 0, time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch))
        for index in order.split(batch_size):
            x = datamodule.prepare_batch(images[index], train=True)
            loss = loss_fn(net(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(index)
    return seen / (time.perf_counter() - start)


class PerImage(Dataset):
    """uint8 CHW tensors through torchvision per-image transforms, as a typical DataLoader pipeline does."""

    def __init__(self, images: torch.Tensor) -> None:
        from torchvision.transforms import v2

        self.images = images
        self.transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                                     v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.images[i])


def augmentation_rates(count: int, batch_size: int, workers: int) -> tuple[float, float]:
    """(batched crop+flip images/s, torchvision per-image DataLoader images/s)."""
    from cnnlab.augment import Augmentation
    from cnnlab.augment.ops import RandomCrop, RandomFlip

    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8)
    augment = Augmentation([RandomCrop(4), RandomFlip()])
    start = time.perf_counter()
    for batch in images.split(batch_size):
        augment(batch.float() / 255)
    batched = count / (time.perf_counter() - start)
    loader = DataLoader(PerImage(images), batch_size=batch_size, num_workers=workers, persistent_workers=False)
    start = time.perf_counter()
    for _ in loader:
        pass
    return batched, count / (time.perf_counter() - start)


def full_epoch(train_images: int) -> dict:
    """One epoch of cnnlab-train (default CNN, crop_flip) on `train_images` synthetic images, in a child
    process so its peak RSS can be read."""
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(sys.executable).with_name("cnnlab-train")
        args = [str(exe), "data=tiny", f"data.train_count={train_images + 5000}", "data.val_size=5000",
                "data.batch_size=128", "trainer.max_epochs=1", "progress_bar=false", "lab_images=false",
                f"hydra.run.dir={tmp}/run"]
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, cwd=tmp)
        wall = time.perf_counter() - start
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"images_per_s": metrics["train_images_per_s"], "epoch_s": train_images / metrics["train_images_per_s"],
            "run_wall_s": wall, "peak_rss_mib": rss_mib}


def main() -> None:
    """Run the benchmarks and print markdown."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=5000, help="training images for the loop comparison")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--full-epoch-images", type=int, default=45000)
    args = p.parse_args()
    overrides = ["data=tiny", f"data.train_count={args.images + 200}", "data.val_size=200", "data.batch_size=128",
                 "augment=crop_flip", "lab_images=false"]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, lightning {L.__version__}")
    variants = {
        "plain": lambda: plain_images_per_s(overrides, args.epochs),
        "template (device loader)": lambda: template_images_per_s(overrides + ["data.on_device=true"], args.epochs),
        "template (DataLoader)": lambda: template_images_per_s(overrides + ["data.on_device=false"], args.epochs),
    }
    names = list(variants)
    for name in names:  # warm-up round, discarded: allocator, thread pool and import costs land here
        variants[name]()
    rows: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):  # rotate the order so drift in machine speed hits every variant alike
        for name in names[repeat % 3:] + names[: repeat % 3]:
            rows[name].append(variants[name]())
    base = statistics.median(rows["plain"])
    print(f"\n### Training throughput: default CNN, {args.images} images, batch 128, crop_flip, {args.epochs} epochs, "
          f"median of {args.repeats} after a discarded warm-up round, order rotated\n\n| loop | images/s (runs) | median | ratio to plain |\n|---|---|---|---|")
    for name, values in rows.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {runs} | {statistics.median(values):.0f} | {statistics.median(values) / base:.3f} |")
    tiny_model = overrides + ["model.depth=1", "model.width=1", "model.batchnorm=false"]
    overhead_rows: dict[str, list[float]] = {"plain": [], "template": []}
    steps = args.epochs * -(-args.images // 128)
    for repeat in range(args.repeats):
        order = [("plain", plain_images_per_s), ("template", template_images_per_s)]
        for name, fn in order[repeat % 2:] + order[: repeat % 2]:
            rate = fn(tiny_model + ["data.on_device=true"], args.epochs)
            overhead_rows[name].append(1000 * args.images * args.epochs / rate / steps)
    plain_ms, template_ms = (statistics.median(overhead_rows[k]) for k in ("plain", "template"))
    step_ms = 1000 * 128 / statistics.median(rows["plain"])
    print("\n### Per-step cost with a near-empty model (1 conv of width 1): the loop's own overhead\n\n"
          "| loop | ms per step (runs) | median |\n|---|---|---|")
    for name, values in overhead_rows.items():
        print(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} |")
    print(f"\nThe template adds {template_ms - plain_ms:.2f} ms per step over the plain loop; one step of the default "
          f"CNN takes {step_ms:.0f} ms here, so the template's overhead is {100 * (template_ms - plain_ms) / step_ms:.1f}% of a step.")
    batched, per_image = [], []
    for _ in range(args.repeats):
        b, q = augmentation_rates(20000, 128, workers=2)
        batched.append(b)
        per_image.append(q)
    print(f"\n### Augmentation throughput: crop+flip of 20,000 images, batch 128, median of {args.repeats}\n\n"
          f"| pipeline | images/s | ratio |\n|---|---|---|\n"
          f"| torchvision per-image transforms, DataLoader, 2 workers | {statistics.median(per_image):.0f} | 1.000 |\n"
          f"| cnnlab batched tensor ops (one process) | {statistics.median(batched):.0f} | "
          f"{statistics.median(batched) / statistics.median(per_image):.1f} |")
    full = full_epoch(args.full_epoch_images)
    print(f"\n### One epoch of `cnnlab-train` on {args.full_epoch_images:,} images (default CNN, crop_flip, batch 128)\n\n"
          f"| images/s | seconds per epoch (training only) | whole run incl. start-up, val, test | peak RSS |\n|---|---|---|---|\n"
          f"| {full['images_per_s']:.0f} | {full['epoch_s']:.1f} | {full['run_wall_s']:.1f} s | {full['peak_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
