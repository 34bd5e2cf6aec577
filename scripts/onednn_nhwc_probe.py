"""oneDNN issue #6035 on this CPU, in plain torch (no cnnlab): one convolution's backward in NHWC against NCHW.

Each case runs in its own Python with a time limit, so a segfault or a hang is a row of the table, not the end of
the script: OK (gradients match), WRONG (relative error of the weight gradient), CRASH (the signal) or HANG.

    python scripts/onednn_nhwc_probe.py            # the cases behind cnnlab.training.hardware.nhwc_hazards
    python scripts/onednn_nhwc_probe.py --case 4 8 1 2 32 2   # one case: in out kernel stride batch threads
"""

from __future__ import annotations

import argparse
import platform
import signal
import subprocess
import sys
from pathlib import Path

# (in channels, out channels, kernel, stride, batch, threads): the hazard's edges (channels around 8 and 16, stride 1
# against 2, batch 1 against 2, one thread against two) and the ResNet and CNN convs cnnlab builds.
CASES = [
    (4, 8, 1, 2, 32, 2),
    (4, 8, 1, 2, 32, 1),
    (3, 8, 1, 2, 32, 2),
    (8, 16, 1, 2, 32, 2),
    (12, 24, 1, 2, 32, 2),
    (15, 16, 1, 2, 32, 2),
    (16, 32, 1, 2, 32, 2),
    (24, 48, 1, 2, 32, 2),
    (32, 64, 1, 2, 32, 2),
    (4, 8, 1, 1, 32, 2),
    (4, 8, 1, 2, 1, 2),
    (4, 8, 1, 2, 2, 2),
    (4, 8, 3, 2, 32, 2),
    (3, 16, 3, 1, 32, 2),
]
TIMEOUT_S = 30


def one_case(c_in: int, c_out: int, kernel: int, stride: int, batch: int, threads: int) -> float:
    """Relative max error of the weight gradient, NHWC against NCHW, after 20 NHWC passes (the bug is a race)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    x = torch.randn(batch, c_in, 32, 32)
    grads = {}
    for layout, passes in ((torch.contiguous_format, 1), (torch.channels_last, 20)):
        conv.to(memory_format=layout)
        for _ in range(passes):
            conv.weight.grad = None
            conv(x.contiguous(memory_format=layout)).square().sum().backward()
        grads[layout] = conv.weight.grad.clone()
    reference = grads[torch.contiguous_format]
    return ((grads[torch.channels_last] - reference).abs().max() / reference.abs().max()).item()


def verdict(case: tuple[int, ...]) -> str:
    """OK / WRONG / CRASH / HANG for one case, run in a new Python."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--case", *map(str, case)], capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"HANG (> {TIMEOUT_S} s)"
    if done.returncode < 0:
        return f"CRASH ({signal.Signals(-done.returncode).name})"
    if done.returncode != 0:
        return f"CRASH (exit {done.returncode})"
    error = float(done.stdout.strip())
    return "OK" if error < 1e-4 else f"WRONG (weight gradient off by {error:.0%})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", type=int, nargs=6, metavar="N", help="in out kernel stride batch threads")
    args = p.parse_args()
    if args.case:
        print(one_case(*args.case))
        return
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    decisive = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    onednn = next((w for w in torch.__config__.show().split() if w.startswith("v3") or w.startswith("v2")), "?")
    print(f"CPU: {model or platform.processor()} ({', '.join(decisive)}); torch {torch.__version__}, oneDNN {onednn}")
    print("| in | out | kernel | stride | batch | threads | NHWC backward |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for case in CASES:
        print("| " + " | ".join(map(str, case)) + f" | {verdict(case)} |", flush=True)


if __name__ == "__main__":
    main()
