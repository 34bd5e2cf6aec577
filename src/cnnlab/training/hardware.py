"""Speed settings that depend on the machine: precision, memory layout and CPU threads per job.

The config value `auto` (the default for `trainer.precision` and `channels_last`) resolves here to the fastest
setting that trains correctly on the device at hand; an explicit value always wins.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import typing
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from cnnlab.errors import ConfigError

log = logging.getLogger("cnnlab")

# Lightning's accepted spellings, and the unified name Lightning reports for each alias.
_ALIASES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}
# Precisions that cast the model's weights, not its ops; the batches (float32 from the normalising step) would
# not match them: measured as a dtype error in the first training step.
_WHOLE_MODEL_CASTS = ("64-true", "bf16-true", "16-true", "transformer-engine", "transformer-engine-float16")


def _lightning_precisions() -> tuple[str, ...]:
    try:
        from lightning.fabric.connector import _PRECISION_INPUT

        return tuple(str(v) for arg in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(arg))
    except ImportError:  # a Lightning without the alias: accept the common names
        return ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", *_ALIASES)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The x86 features present here that decide the CPU speed settings: avx2, avx512f, avx512_bf16, amx_bf16."""
    found: set[str] = set()
    checks = {
        "avx2": "_is_avx2_supported",
        "avx512f": "_is_avx512_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_bf16": "_is_amx_tile_supported",
    }
    for flag, name in checks.items():  # torch's own cpuinfo (private API; absent on some builds)
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                found.add(flag)
        except RuntimeError:
            pass
    cpuinfo = Path("/proc/cpuinfo")  # Linux: the kernel's list, for builds without the checks above
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                found |= {"avx2", "avx512f", "avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[1].split())
                break
    return frozenset(found)


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with bf16 arithmetic in hardware (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_is_x86_with_onednn() -> bool:
    """True on x86 CPUs where torch's convolutions go through oneDNN, which runs NHWC (channels_last) natively."""
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86") and torch.backends.mkldnn.is_available()


def cuda_has_native_bf16() -> bool:
    """True on CUDA GPUs with bf16 tensor cores (compute capability 8.0 and later)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no including_emulation and does not emulate
        return torch.cuda.is_bf16_supported()


def device_kind(accelerator: Any) -> str:
    """The device a Trainer with this `trainer.accelerator` runs on: cuda, mps, cpu, or the name given."""
    name = str(accelerator).lower()
    if name in ("auto", "gpu"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu" if name == "auto" else "cuda"  # gpu without one: Lightning reports that itself
    return name


def check_device(cfg: DictConfig) -> None:
    """Refuse a GPU accelerator where torch sees no CUDA GPU (Lightning would stop with a traceback)."""
    accelerator = cfg.trainer.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but torch sees no CUDA GPU on this machine. "
            f"Fix: trainer.accelerator=auto (uses a GPU when there is one) or trainer.accelerator=cpu."
        )
    precision = resolve_precision(cfg.trainer.get("precision", "auto"), accelerator)  # an unknown value: one line
    if precision in _WHOLE_MODEL_CASTS:
        raise ConfigError(
            f"trainer.precision={cfg.trainer.precision} casts the whole model, but cnnlab's data arrives as float32 "
            f"(normalised on the device) and its metrics are float32. Valid here: auto, 32-true, bf16-mixed, "
            f"16-mixed. Fix: trainer.precision={'bf16-mixed' if 'bf16' in precision else '32-true'}."
        )
    resolve_channels_last(cfg.get("channels_last", "auto"), accelerator)


def check_threads(threads: int | None, cores: int | None = None) -> None:
    """Refuse more torch threads than this process has cores: they contend, and a run slows many times over."""
    cores = cores or available_cores()
    if threads and threads > cores:
        raise ConfigError(
            f"threads={threads} is more than the {cores} CPU cores this process may use: the threads would fight "
            f"over them (a 1-epoch tiny run at threads=99 did not end in 300 s on 2 cores). Valid: 1..{cores}, "
            f"or null for torch's default. Fix: threads={cores}."
        )


def resolve_precision(value: Any, accelerator: str) -> str:
    """`auto` → bf16-mixed on CUDA GPUs and CPUs with native bf16, 16-mixed on older GPUs, else 32-true;
    an explicit value is checked and returned in Lightning's unified spelling."""
    if value != "auto":
        valid = _lightning_precisions()
        if str(value) not in valid:
            raise ConfigError(
                f"trainer.precision={value!r} is not a valid choice. Valid: auto, {', '.join(valid)}. "
                f"Fix: trainer.precision=auto (the fastest correct setting here) or e.g. 32-true."
            )
        return _ALIASES.get(str(value), str(value))
    kind = device_kind(accelerator)
    if kind == "cuda":
        return "bf16-mixed" if cuda_has_native_bf16() else "16-mixed"
    if kind == "cpu" and cpu_has_native_bf16():
        return "bf16-mixed"
    return "32-true"  # CPUs without bf16 units emulate it (slower than fp32); MPS: not measured, stay safe


# oneDNN issue #6035 (open; torch 2.14.1 ships the affected oneDNN): the backward-weights pass of a 1×1 convolution
# with stride > 1 in NHWC, whose input channels are not a multiple of the kernel's block (8 with AVX2, 16 with
# AVX-512), writes past its workspace. Measured with cnnlab's ResNet at width 4 (its 4→8 channel stride-2 shortcut):
# on an AMD EPYC with AVX2 only, weight gradients off by 160% with 2 threads, or a hang, and SIGSEGV or SIGABRT with
# 1 thread; on an AMD EPYC with AVX-512, SIGSEGV (issue #29). Batch 1, stride 1, NCHW, 3×3 kernels and a multiple
# of 16 channels were all exact. scripts/onednn_nhwc_probe.py repeats the measurement.
NHWC_SAFE_CHANNELS = 16


def nhwc_hazards(net: nn.Module) -> list[str]:
    """The convolutions of `net` that oneDNN computes wrong (or crashes on) in NHWC on x86 CPUs, each as
    'name (in→out, 1×1 stride s)': 1×1 kernels of stride > 1 whose input channels per group are not a multiple of 16."""
    return [
        f"{name} ({m.in_channels}→{m.out_channels}, 1×1 stride {max(m.stride)})"
        for name, m in net.named_modules()
        if isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and max(m.stride) > 1
        and m.groups < m.in_channels  # depthwise convs have their own kernel
        and (m.in_channels // m.groups) % NHWC_SAFE_CHANNELS
    ]


def resolve_channels_last(value: Any, accelerator: str, hazards: list[str] = ()) -> bool:
    """`auto` → NHWC memory layout on CUDA GPUs and x86 CPUs with oneDNN, where convolutions run faster in it, except
    on such a CPU for a model with `nhwc_hazards` (NCHW then); `true` for such a model on such a CPU is refused."""
    if value != "auto" and not isinstance(value, bool):
        raise ConfigError(
            f"channels_last={value!r} is not a valid choice. Valid: auto, true, false. Fix: channels_last=auto."
        )
    kind = device_kind(accelerator)
    onednn_cpu = kind == "cpu" and cpu_is_x86_with_onednn()
    if value is True and onednn_cpu and hazards:
        raise ConfigError(
            f"channels_last=true: on this CPU oneDNN computes the weight gradients of {hazards[0]} wrong in NHWC, "
            f"or crashes (oneDNN issue #6035: 1×1 convs of stride > 1 whose input channels are not a multiple of "
            f"{NHWC_SAFE_CHANNELS}). Valid here: auto, false. Fix: channels_last=auto (NCHW for this model), or "
            f"widths that are multiples of {NHWC_SAFE_CHANNELS}."
        )
    if value == "auto":
        return kind == "cuda" or (onednn_cpu and not hazards)
    return value


def resolve_run_settings(cfg: DictConfig, hazards: list[str] = ()) -> dict[str, Any]:
    """Write the chosen precision and channels_last into `cfg` (so checkpoints store them), log them, and
    return them with the torch thread count for metrics.json. `hazards`: the model's `nhwc_hazards`."""
    accelerator = cfg.trainer.get("accelerator", "auto")
    asked = {"precision": cfg.trainer.get("precision", "auto"), "channels_last": cfg.get("channels_last", "auto")}
    chosen = {
        "precision": resolve_precision(asked["precision"], accelerator),
        "channels_last": resolve_channels_last(asked["channels_last"], accelerator, hazards),
    }
    with open_dict(cfg):
        cfg.trainer.precision = chosen["precision"]
        cfg.channels_last = chosen["channels_last"]
    kind = device_kind(accelerator)
    where = kind if kind != "cpu" else f"cpu ({', '.join(sorted(cpu_flags())) or 'no avx2/avx512'})"
    layout = " (auto)" if asked["channels_last"] == "auto" else ""
    if layout and hazards and kind == "cpu" and cpu_is_x86_with_onednn():
        layout = f" (auto: NCHW, since oneDNN gets {hazards[0]} wrong in NHWC on this CPU)"
    log.info(
        "device %s: precision=%s%s, channels_last=%s%s, %d torch threads",
        where,
        chosen["precision"],
        " (auto)" if asked["precision"] == "auto" else "",
        str(chosen["channels_last"]).lower(),
        layout,
        torch.get_num_threads(),
    )
    return {**chosen, "threads": torch.get_num_threads()}


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_jobs(n_jobs: int, cores: int) -> int:
    """How many jobs joblib runs at once for `n_jobs` (-1 = one per core, -2 = all but one, ...)."""
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return max(1, n_jobs)


def split_threads(n_jobs: int, cores: int) -> int:
    """Torch threads per job so that jobs running at once × threads ≤ cores (at least 1)."""
    return max(1, cores // parallel_jobs(n_jobs, cores))


def threads_for_job(threads: int | None, hydra_cfg: Any, cores: int | None = None) -> int | None:
    """The `threads` setting for this job: the user's value if set; under the joblib launcher in a multirun,
    the cores split between the jobs that run at once; otherwise None (torch's default)."""
    if threads:
        return int(threads)
    from hydra.types import RunMode

    launcher = hydra_cfg.get("launcher") or {}
    if hydra_cfg.get("mode") != RunMode.MULTIRUN or "joblib" not in str(launcher.get("_target_", "")).lower():
        return None
    return split_threads(int(launcher.get("n_jobs", -1)), cores or available_cores())
