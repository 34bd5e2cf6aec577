"""FastNet's bare training step on this machine: images/s by batch size, precision, layout, image size and
torch.compile, FLOPs per image, and where a step's time goes (torch.profiler, by operator).

What bounds `experiment=cpu94` / `fast94` on a CPU: the model's own compute, with no data, augmentation or
Lightning. Run on an idle machine:
    .venv/bin/python scripts/bench_fastnet.py [--threads 2]          # the batch / precision / layout table
    .venv/bin/python scripts/bench_fastnet.py --speedrun             # cpu94's step: image sizes, compile, profile
    .venv/bin/python scripts/bench_fastnet.py --ideas                # cpu94's step with the record's ideas
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench import cpu_line, proc_cpu_flags  # scripts/bench.py: the CPU's model and flags, read from /proc/cpuinfo
from cnnlab.models.fast import FastNet
from cnnlab.training.hardware import cpu_has_native_bf16
from cnnlab.training.optim import Muon, param_groups

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it


def training_step(
    batch: int, bf16: bool, channels_last: bool, muon: bool, size: int = 32, compile_net: bool = False
) -> Callable[[], None]:
    """One FastNet training step (forward, label-smoothed loss, backward, optimizer step) on a fixed random batch."""
    torch.manual_seed(0)
    net = FastNet(**CIFAR10)
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    groups = param_groups(net, {"lr": 0.1, "weight_decay": 0.0}, 64.0)
    optimizer = Muon(groups, lr=0.1) if muon else torch.optim.SGD(groups, lr=0.1, momentum=0.85, nesterov=True)
    if compile_net:
        net.compile()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y, label_smoothing=0.2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def images_per_second(step: Callable[[], None], batch: int, steps: int, repeats: int) -> tuple[float, float]:
    """(median images/s of `repeats` timings of `steps` steps, seconds of the two warm-up steps before them)."""
    start = time.perf_counter()
    step()  # warm-up: oneDNN kernel selection, allocator (and compilation, when compiled)
    step()
    warm_up = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch / (time.perf_counter() - start))
    return statistics.median(rates), warm_up


def training_flops(size: int) -> float:
    """FastNet's FLOPs per training image (forward + backward) at size × size px."""
    net, x = FastNet(**CIFAR10), torch.randn(8, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), torch.zeros(8, dtype=torch.long)).backward()
    return counter.get_total_flops() / 8


def layouts_table(repeats: int) -> None:
    """Rates by batch size, precision, layout and optimizer at 32 px."""
    flops = training_flops(32)
    print(f"FastNet: {flops / 1e6:.0f} MFLOP per training image at 32 px\n")
    print("| batch | precision | layout | optimizer | images/s (median) | sustained GFLOP/s |")
    print("|---|---|---|---|---|---|")
    cases = [(256, True, True, False), (512, True, True, False), (1024, True, True, False), (2000, True, True, False)]
    cases += [(2000, True, True, True), (512, True, False, False), (512, False, True, False)]
    for batch, bf16, channels_last, muon in cases:
        rate, _ = images_per_second(
            training_step(batch, bf16, channels_last, muon), batch, max(2, 4096 // batch), repeats
        )
        print(
            f"| {batch} | {'bf16 autocast' if bf16 else 'fp32'} | {'channels_last' if channels_last else 'NCHW'} "
            f"| {'Muon + SGD' if muon else 'SGD'} | {rate:.0f} | {rate * flops / 1e9:.0f} |",
            flush=True,
        )


def speedrun_table(repeats: int) -> None:
    """cpu94's step (bf16, channels_last, Muon) by batch, image size and compilation, against batch 2,000 at 32 px."""
    print("| batch | image size | compiled | MFLOP/image | images/s (median) | × batch 2,000 at 32 px | warm-up s |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for batch, size, compiled in ((2000, 32, False), (1024, 32, False), (2000, 24, False), (2000, 16, False),
                                  (2000, 32, True)):  # fmt: skip
        rate, warm_up = images_per_second(training_step(batch, True, True, True, size, compiled), batch, 2, repeats)
        base = base or rate
        print(
            f"| {batch} | {size} | {'yes' if compiled else 'no'} | {training_flops(size) / 1e6:.0f} | {rate:.0f} "
            f"| {rate / base:.2f} | {warm_up:.0f} |",
            flush=True,
        )


def ideas_table(repeats: int) -> None:
    """What the record's ideas change in cpu94's step (precision as `auto` picks: bf16 only where the CPU has it):
    the step at batch 2,000 and 1,000, GELU against SiLU on FastNet's group activations, Muon's step alone per bank
    and batched by shape. Each small effect is timed on its own: inside a whole step it drowns in the step's noise."""
    bf16 = cpu_has_native_bf16()
    print(f"precision: {'bf16 autocast' if bf16 else 'fp32 (no native bf16 here, as precision=auto picks)'}\n")
    print("| cpu94's step | images/s (median) | × batch 2,000 |\n|---|---|---|")
    base = None
    for batch in (2000, 1000):
        rate, _ = images_per_second(training_step(batch, bf16, True, True), batch, max(1, 2000 // batch), repeats)
        base = base or rate
        print(f"| batch {batch} | {rate:.0f} | {rate / base:.2f} |", flush=True)
    # The groups' activation inputs for 250 images (32 px): two per group, after the pool and after the second conv.
    shapes = [(64, 15, 15), (64, 15, 15), (256, 7, 7), (256, 7, 7), (256, 3, 3), (256, 3, 3)]
    print("\n| groups' activations, forward + backward | ms per 1,000 images (median of 7) |\n|---|---|")
    for name, act in (("GELU", F.gelu), ("SiLU", F.silu)):
        xs = [torch.randn(250, *shape).contiguous(memory_format=torch.channels_last) for shape in shapes]
        times = []
        for _ in range(8):
            inputs = [x.clone().requires_grad_() for x in xs]
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                total = sum(act(x).float().sum() for x in inputs)
            total.backward()
            times.append(4e3 * (time.perf_counter() - start))
        print(f"| {name} | {statistics.median(times[1:]):.0f} |", flush=True)
    print("\n| Muon's step alone (FastNet's 6 filter banks, fixed gradients) | ms (median of 20) |\n|---|---|")
    for batched in (False, True):
        torch.manual_seed(0)
        net = FastNet(**CIFAR10)
        optimizer = Muon(param_groups(net, {"lr": 0.1, "weight_decay": 0.0}, 64.0), lr=0.1, ns_batched=batched)
        for p in net.parameters():
            p.grad = torch.randn_like(p) if p.requires_grad else None
        optimizer.step()
        times = []
        for _ in range(20):
            start = time.perf_counter()
            optimizer.step()
            times.append(1e3 * (time.perf_counter() - start))
        print(f"| {'batched by shape' if batched else 'one bank at a time'} | {statistics.median(times):.1f} |")


def profile_table(size: int, rows: int = 12) -> None:
    """Share of one cpu94 step (batch 2,000) per operator, by self time, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    step = training_step(2000, True, True, True, size)
    step(), step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\nOne step at {size} px (batch 2,000, bf16, channels_last, Muon): {total / 1e6:.2f} s of CPU time\n")
    print("| operator | self time | share |")
    print("|---|---|---|")
    for event in events[:rows]:
        print(f"| {event.key} | {event.self_cpu_time_total / 1e3:.0f} ms | {event.self_cpu_time_total / total:.1%} |")


def main() -> None:
    """Print the chosen markdown tables."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--speedrun", action="store_true", help="cpu94's step by image size and compile, and its profile")
    p.add_argument("--ideas", action="store_true", help="cpu94's step with the record's ideas (issue #31)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(cpu_line(proc_cpu_flags()), flush=True)  # the first line: every figure is this CPU's
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    if args.ideas:
        ideas_table(args.repeats)
    elif args.speedrun:
        speedrun_table(args.repeats)
        profile_table(32)
        profile_table(16)
    else:
        layouts_table(args.repeats)


if __name__ == "__main__":
    main()
