"""`cnnlab-doctor`: what this machine is, what `auto` picks on it and why, and whether a training step with that
choice runs and computes the same gradients as plain fp32 NCHW. Each step runs in a subprocess, so a crash in native
code is reported as a line, not the end of the doctor. Exit 0 when every check passed, 1 when one failed."""

from __future__ import annotations

import json
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from cnnlab.runs import console_script

# Hydra, Lightning and cnnlab's training code are imported where used: the --probe subprocess needs torch alone.
STEP_TIMEOUT_S = 120  # a hang in native code (seen: oneDNN spinning on 2 threads) ends the check, not the doctor
PROBE_TIMEOUT_S = 30


def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo's model name), else what the platform module says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line: CPU model, architecture, cores, and the flags that decide cnnlab's CPU speed settings."""
    from cnnlab.training import hardware

    flags = hardware.cpu_flags()
    known = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    missing = [f for f in known if f not in flags]
    present = ", ".join(f for f in known if f in flags) or "none of them"
    absent = f" (no {', '.join(missing)})" if missing else ""
    return f"CPU: {cpu_model()} ({platform.machine()}), {hardware.available_cores()} cores; flags: {present}{absent}"


def _subprocess(function: str, args: list[str], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run this module's `function(args)` in a new Python, which prints its result as JSON. Returns (the result, or
    None, and why not)."""
    code = f"import json, sys; from cnnlab.cli.doctor import {function}; print(json.dumps({function}(sys.argv[1:])))"
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"hung: no answer in {timeout:.0f} s (killed)"
    if done.returncode < 0:
        return None, f"crashed: killed by {signal.Signals(-done.returncode).name}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"failed (exit {done.returncode}): {tail}"
    return json.loads(lines[-1]), ""


def probe_onednn_bug(_: list[str]) -> dict[str, Any]:
    """oneDNN issue #6035 in plain torch (no cnnlab): a 1×1 stride-2 conv with 4 input channels, backward in NHWC
    against NCHW, one thread (where AVX2 and AVX-512 machines both crashed; two threads hung or gave wrong numbers)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False)
    x = torch.randn(8, 4, 16, 16)
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):
        conv.weight.grad = None
        conv.to(memory_format=layout)(x.contiguous(memory_format=layout)).square().sum().backward()
        grads.append(conv.weight.grad.clone())
    error = ((grads[1] - grads[0]).abs().max() / grads[0].abs().max()).item()
    return {"relative_error": error}


def _gradients(config: dict[str, Any], x: torch.Tensor, y: torch.Tensor, channels_last: bool, bf16: bool):
    """(loss, seconds, flat gradient) of one forward and backward pass of the config's freshly seeded model."""
    from cnnlab.training.module import ImageClassifier

    torch.manual_seed(0)
    module = ImageClassifier({**config, "channels_last": channels_last})
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(module(x), y)
    loss.backward()
    seconds = time.perf_counter() - start
    return (
        loss.item(),
        seconds,
        torch.cat([p.grad.flatten().float() for p in module.parameters() if p.grad is not None]),
    )


def step(overrides: list[str]) -> dict[str, Any]:
    """One training step of the configured model on 8 random images with `auto`'s choices on this CPU, and, where
    they include channels_last, its fp32 gradients against fp32 NCHW: what the --step subprocess reports."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from cnnlab.config import compose_checked
    from cnnlab.training import hardware
    from cnnlab.training.trainer import run_config

    cfg = compose_checked(overrides)
    hazards = hardware.nhwc_hazards(instantiate(cfg.model))
    precision = hardware.resolve_precision(cfg.trainer.precision, "cpu")  # the GPU is make gpu-check's
    channels_last = hardware.resolve_channels_last(cfg.channels_last, "cpu", hazards)
    config = run_config(OmegaConf.masked_copy(cfg, [k for k in cfg if k not in ("logger", "callbacks")]))  # no run dir
    torch.manual_seed(0)
    x = torch.randn(8, *instantiate(cfg.data).input_shape)
    y = torch.randint(0, config["data"]["num_classes"], (8,))
    loss, seconds, _ = _gradients(config, x, y, channels_last, precision.startswith("bf16"))
    result = {"precision": precision, "channels_last": channels_last, "loss": loss, "step_s": seconds}
    if channels_last:
        nhwc, nchw = (_gradients(config, x, y, layout, bf16=False)[2] for layout in (True, False))
        result["relative_error"] = ((nhwc - nchw).abs().max() / nchw.abs().max()).item()
    return result


def _main() -> None:
    """Print the machine, what `auto` picks and why, and check a training step and oneDNN's NHWC bug."""
    from hydra.utils import instantiate

    from cnnlab.config import compose_checked
    from cnnlab.lab.tools import parser
    from cnnlab.training import hardware

    p = parser("cnnlab-doctor", __doc__, ckpt=False, out=False)
    args = p.parse_args()
    cfg = compose_checked(args.overrides)  # bad overrides: one line before any check runs
    import lightning

    hazards = hardware.nhwc_hazards(instantiate(cfg.model))
    accelerator = cfg.trainer.get("accelerator", "auto")
    kind = hardware.device_kind(accelerator)
    precision = hardware.resolve_precision(cfg.trainer.precision, accelerator)
    channels_last = hardware.resolve_channels_last(cfg.channels_last, accelerator, hazards)  # true refused here
    onednn = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
    print(
        f"torch {torch.__version__} (oneDNN {onednn.group(1) if onednn else 'absent'}), "
        f"lightning {lightning.__version__}, python {platform.python_version()}"
    )
    print(machine_line())
    onednn_cpu = kind == "cpu" and hardware.cpu_is_x86_with_onednn()
    if cfg.trainer.precision != "auto":
        why = "as given"
    elif kind == "cuda":
        why = "auto: a CUDA GPU"
    else:
        why = f"auto: {'bf16 units' if precision.startswith('bf16') else 'no bf16 units: emulated bf16 is slower'}"
    if cfg.channels_last != "auto":
        layout = "as given"
    elif hazards and onednn_cpu:
        layout = f"auto falls back to NCHW: oneDNN gets {', '.join(hazards)} wrong in NHWC on x86 CPUs"
    else:
        layout = f"auto: {'CUDA' if kind == 'cuda' else 'an x86 CPU with oneDNN' if onednn_cpu else 'no oneDNN NHWC'}"
    print(f"device {kind}: precision={precision} ({why}); channels_last={str(channels_last).lower()} ({layout})")
    failed = False
    probe, why_not = _subprocess("probe_onednn_bug", [], PROBE_TIMEOUT_S)
    if probe is None or probe["relative_error"] > 1e-3:
        verdict = why_not or f"wrong weight gradients (relative error {probe['relative_error']:.2g})"
        print(
            f"oneDNN #6035 (1×1 stride-2 conv, 4 channels, NHWC backward): {verdict} on this CPU. cnnlab falls back to "
            f"NCHW for models with such convs (channels_last=auto); your own NHWC code must avoid them."
        )
    else:
        print("oneDNN #6035 (1×1 stride-2 conv, 4 channels, NHWC backward): exact on this CPU")
    result, why_not = _subprocess("step", args.overrides, STEP_TIMEOUT_S)
    if result is None:
        failed = True
        print(f"training step with auto's choices: {why_not}. Fix: run with channels_last=false trainer.precision=32")
    else:
        error = result.get("relative_error")
        wrong = error is not None and error > 1e-3
        failed |= wrong or not result["loss"] == result["loss"]
        print(
            f"training step (precision={result['precision']}, channels_last={str(result['channels_last']).lower()}): "
            f"loss {result['loss']:.3f} in {result['step_s']:.2f} s"
            + (
                f"; NHWC gradients {'differ from' if wrong else 'match'} NCHW ({error:.1g})"
                if error is not None
                else ""
            )
        )
    print("doctor: a check failed (above)." if failed else "doctor: every check passed.")
    if failed:
        sys.exit(1)


main = console_script(_main)

if __name__ == "__main__":
    main()
