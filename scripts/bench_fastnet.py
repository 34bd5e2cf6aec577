"""FastNet's bare training step on this machine: images/s by batch size, precision and layout, and FLOPs per image.

What bounds `experiment=cpu94` / `fast94` on a CPU: the model's own compute, with no data, augmentation or
Lightning. Run on an idle machine:  .venv/bin/python scripts/bench_fastnet.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.models.fast import FastNet
from cnnlab.training.optim import Muon, param_groups

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it


def images_per_second(batch: int, bf16: bool, channels_last: bool, muon: bool, steps: int, repeats: int) -> float:
    """Median images/s of `repeats` timings of `steps` training steps on one fixed random batch."""
    torch.manual_seed(0)
    net = FastNet(**CIFAR10)
    x = torch.randn(batch, 3, 32, 32)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    groups = param_groups(net, {"lr": 0.1, "weight_decay": 0.0}, 64.0)
    optimizer = Muon(groups, lr=0.1) if muon else torch.optim.SGD(groups, lr=0.1, momentum=0.85, nesterov=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y, label_smoothing=0.2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: oneDNN kernel selection, allocator
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    """Print a markdown table of FastNet step rates and the model's training FLOPs per image."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net, x = FastNet(**CIFAR10), torch.randn(8, 3, 32, 32)
    with FlopCounterMode(display=False) as forward:
        net(x)
    with FlopCounterMode(display=False) as train:
        F.cross_entropy(net(x), torch.zeros(8, dtype=torch.long)).backward()
    flops = train.get_total_flops() / 8
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    forward_mflop = forward.get_total_flops() / 8 / 1e6
    print(f"FastNet: {forward_mflop:.0f} MFLOP forward, {flops / 1e6:.0f} MFLOP per training image\n")
    print("| batch | precision | layout | optimizer | images/s (median) | sustained GFLOP/s |")
    print("|---|---|---|---|---|---|")
    cases = [(256, True, True, False), (512, True, True, False), (1024, True, True, False), (2000, True, True, False)]
    cases += [(2000, True, True, True), (512, True, False, False), (512, False, True, False)]
    for batch, bf16, channels_last, muon in cases:
        steps = max(2, 4096 // batch)
        rate = images_per_second(batch, bf16, channels_last, muon, steps, args.repeats)
        print(
            f"| {batch} | {'bf16 autocast' if bf16 else 'fp32'} | {'channels_last' if channels_last else 'NCHW'} "
            f"| {'Muon + SGD' if muon else 'SGD'} | {rate:.0f} | {rate * flops / 1e9:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
