"""What `channels_last=auto`'s NCHW fallback costs (#29): a training step of cnnlab's ResNet in NCHW against NHWC.

A model with a oneDNN #6035 hazard (a narrow ResNet's 1×1 stride-2 shortcut) cannot be timed in NHWC on a CPU with
the bug (it hangs or crashes), so the cost is read off the same ResNet at a width without the hazard: what NHWC buys
there is what the fallback gives up. Process CPU time with one thread, so a busy neighbour barely moves it.

    python scripts/bench_layout.py --widths 4 16 32 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from cnnlab.models.resnet import ResNet
from cnnlab.training.hardware import nhwc_hazards


def step_seconds(width: int, layout: torch.memory_format, batch: int, steps: int) -> float:
    """CPU seconds per training step (forward, cross-entropy, backward, SGD) on one fixed random batch."""
    torch.manual_seed(0)
    net = ResNet(width=width, blocks_per_stage=[2, 2, 2], num_classes=10, in_channels=3, image_size=32)
    net.to(memory_format=layout)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch,))
    for i in range(steps + 2):  # two warm-up steps: oneDNN builds its kernels on the first calls
        if i == 2:
            start = time.process_time()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return (time.process_time() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[4, 16, 32])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    decisive = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    print(f"cpu: {model or platform.processor()} ({decisive}); torch {torch.__version__}, 1 thread, CPU clock")
    print("| ResNet width | NCHW ms/step | NHWC ms/step | NCHW / NHWC |")
    print("|---:|---:|---:|---:|")
    for width in args.widths:
        net = ResNet(width=width, blocks_per_stage=[2, 2, 2], num_classes=10, in_channels=3, image_size=32)
        layouts = [torch.contiguous_format] + ([] if nhwc_hazards(net) else [torch.channels_last])
        times: dict[torch.memory_format, list[float]] = {layout: [] for layout in layouts}
        for _ in range(args.repeats):  # rounds alternate the layouts, so drift in load hits both
            for layout in layouts:
                times[layout].append(step_seconds(width, layout, args.batch, args.steps))
        medians = {layout: statistics.median(t) for layout, t in times.items()}
        nchw = medians[torch.contiguous_format] * 1000
        if torch.channels_last in medians:
            nhwc = medians[torch.channels_last] * 1000
            print(f"| {width} | {nchw:.1f} | {nhwc:.1f} | {nchw / nhwc:.2f} |")
        else:
            print(f"| {width} | {nchw:.1f} | not timed: oneDNN #6035 hazard | – |")


if __name__ == "__main__":
    main()
