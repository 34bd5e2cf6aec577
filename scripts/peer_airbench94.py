"""The speedrun's peer, measured on the machine at hand: airbench94 (Keller Jordan's CIFAR-10 speedrun, 94% in
9.9 epochs) written out in plain PyTorch for a CPU, importing nothing from cnnlab.

The only changes from the GPU recipe are the ones a CPU needs, as in issue #9's port: fp32 weights and optimizer
state instead of fp16 ones, computed under bf16 autocast only where the CPU has native bf16 (avx512_bf16 or amx_bf16
in /proc/cpuinfo's flags; elsewhere bf16 is emulated, slower than fp32, so plain fp32: issue #31), channels_last, and
data read from the CIFAR-10 pickles. --device cuda runs it on a CUDA GPU under bf16 autocast, the data on the GPU and
every random draw still from the seeded CPU generator (a seed names the same run). The first line printed says which
device and precision were chosen, and why.
Every hyperparameter is airbench94's: batch 1,024, 9.9 epochs, Nesterov SGD (lr 11.5, momentum 0.85, weight
decay 0.0153 per 1,024 images, BatchNorm biases at 64× the lr), a triangular schedule, label smoothing 0.2,
a frozen 2×2 whitening layer whose bias trains for 3 epochs, BatchNorm momentum 0.6 with fixed unit scale, Lookahead
(every 5 steps), random flip once then alternating flips, ±2-pixel reflect-padded translation, and test-time
augmentation with mirror and ±1 translations.

    python scripts/peer_airbench94.py --data-dir ../shared/data --seed 0   # prints test accuracy and times

Time the whole process with /usr/bin/time to compare with `cnnlab-train experiment=cpu94` (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import math
import pickle
import time
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN = torch.tensor((0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
STD = torch.tensor((0.2470, 0.2435, 0.2616)).view(1, 3, 1, 1)
HYP = dict(
    epochs=9.9, batch=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0, label_smoothing=0.2,
    whiten_bias_epochs=3, widths=(64, 256, 256), bn_momentum=0.6, scaling=1 / 9, translate=2, lookahead_every=5,
)  # fmt: skip
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of a CPU that computes bf16 natively
RUN: dict = dict(device=torch.device("cpu"), dtype=None)  # set by setup_device: where the peer runs, autocast dtype


def cpu_flags(source: str | Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags: the first `flags` line of /proc/cpuinfo, `source` being its path or its text (an
    unreadable path gives none)."""
    if isinstance(source, Path):
        try:
            source = source.read_text()
        except OSError:
            return set()
    for line in source.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def choose_precision(device: str, flags: set[str]) -> tuple[torch.dtype | None, str]:
    """(autocast dtype, or None for plain fp32; the choice in words): bf16 on a CUDA GPU and on a CPU with native bf16
    (`flags` holding avx512_bf16 or amx_bf16), else fp32, since a CPU without them emulates bf16, slower than fp32."""
    if device == "cuda":
        return torch.bfloat16, "cuda, bf16 autocast (fp32 weights)"
    native = [flag for flag in NATIVE_BF16 if flag in flags]
    if native:
        return torch.bfloat16, f"cpu, bf16 autocast (fp32 weights; {'/'.join(native)} on this CPU)"
    return None, f"cpu, fp32 (no {'/'.join(NATIVE_BF16)} on this CPU)"


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """--device: the peers' device (precision follows from it and the CPU, by choose_precision)."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (bf16 autocast only with native bf16, else fp32) or cuda (bf16)")  # fmt: skip


def setup_device(name: str) -> torch.device:
    """Choose the device and precision (stored in RUN, read by autocast and compute_dtype), print them and why."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU here")
    dtype, why = choose_precision(name, cpu_flags() if name == "cpu" else set())
    if name == "cuda":
        why = f"{why}, {torch.cuda.get_device_name()}"
    RUN.update(device=torch.device(name), dtype=dtype)
    print(f"device and precision: {why}", flush=True)
    return RUN["device"]


def autocast() -> AbstractContextManager:
    """The chosen precision: bf16 autocast on the chosen device, or a disabled one (plain fp32)."""
    return torch.autocast(RUN["device"].type, dtype=RUN["dtype"] or torch.bfloat16, enabled=RUN["dtype"] is not None)


def compute_dtype() -> torch.dtype:
    """The dtype that the peers' own matrix work outside autocast (Muon's Newton-Schulz) uses: autocast's, or fp32."""
    return RUN["dtype"] or torch.float32


def synchronize() -> None:
    """Wait for the GPU's queued work (before reading a clock)."""
    if RUN["device"].type == "cuda":
        torch.cuda.synchronize()


def load_cifar(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and int64 labels of the training and test pickles."""
    folder = root / "cifar-10-batches-py"

    def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = []
        for name in names:
            with open(folder / name, "rb") as f:
                parts.append(pickle.load(f, encoding="bytes"))
        x = np.concatenate([p[b"data"] for p in parts]).reshape(-1, 3, 32, 32)
        y = np.concatenate([p[b"labels"] for p in parts])
        return torch.from_numpy(x), torch.from_numpy(y).long()

    return *read([f"data_batch_{i}" for i in range(1, 6)]), *read(["test_batch"])


class Conv(nn.Conv2d):
    """3×3 same-padding conv without bias, the first in_channels filters initialised to the identity."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding="same", bias=False)
        nn.init.dirac_(self.weight.data[:c_in])


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed unit scale and a trained bias (airbench's); `momentum` in airbench's sense (the running
    statistics keep that share), airbench94's 0.6 unless given."""

    def __init__(self, c: int, momentum: float | None = None) -> None:
        super().__init__(c, eps=1e-12, momentum=1 - (HYP["bn_momentum"] if momentum is None else momentum))
        self.weight.requires_grad = False


def conv_group(
    c_in: int, c_out: int, act: type[nn.Module] = nn.GELU, bn_momentum: float | None = None
) -> nn.Sequential:
    bn = lambda: BatchNorm(c_out, bn_momentum)  # noqa: E731
    return nn.Sequential(Conv(c_in, c_out), nn.MaxPool2d(2), bn(), act(), Conv(c_out, c_out), bn(), act())


def make_net(act: type[nn.Module] = nn.GELU, bn_momentum: float | None = None) -> nn.Sequential:
    """airbench's network; `act` is the conv groups' activation (the one after the whitening stays GELU)."""
    w1, w2, w3 = HYP["widths"]
    return nn.Sequential(
        nn.Conv2d(3, 24, 2, padding=0, bias=True),  # whitening, set from the data below
        nn.GELU(),
        conv_group(24, w1, act, bn_momentum),
        conv_group(w1, w2, act, bn_momentum),
        conv_group(w2, w3, act, bn_momentum),
        nn.MaxPool2d(3),
        nn.Flatten(),
        nn.Linear(w3, 10, bias=False),
    )


def init_whitening(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Filters = the eigenvectors of the 2×2 patch covariance over √eigenvalue, and their negatives."""
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3, 2, 2).float()
    flat = patches.reshape(len(patches), -1)  # not centred: the inputs are normalised (airbench's estimate)
    cov = flat.T @ flat / (len(flat) - 1)
    values, vectors = torch.linalg.eigh(cov)
    scaled = vectors.T.reshape(-1, 3, 2, 2) / torch.sqrt(values.view(-1, 1, 1, 1) + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))
    layer.weight.requires_grad = False


def forward(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    with autocast():
        return net(x.contiguous(memory_format=torch.channels_last)).float() * HYP["scaling"]


def translate(padded: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random size×size window of each padded image (two gathers: rows, then columns); the offsets are drawn on the
    CPU from `generator`, whatever the images' device."""
    n, c, h, w = padded.shape
    dy = torch.randint(0, h - size + 1, (n, 1), generator=generator).to(padded.device)
    dx = torch.randint(0, w - size + 1, (n, 1), generator=generator).to(padded.device)
    span = torch.arange(size, device=padded.device)
    rows = (dy + span).view(n, 1, size, 1).expand(n, c, size, w)
    out = padded.gather(2, rows)
    cols = (dx + span).view(n, 1, 1, size).expand(n, c, size, size)
    return out.gather(3, cols)


@torch.no_grad()
def evaluate(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, tta: bool) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), 2000):
        xb = x[i : i + 2000]
        mirror = lambda v: 0.5 * forward(net, v) + 0.5 * forward(net, v.flip(-1))  # noqa: E731
        if tta:
            padded = F.pad(xb, (1,) * 4, "reflect")
            shifted = 0.5 * (mirror(padded[:, :, :32, :32]) + mirror(padded[:, :, 2:, 2:]))
            logits = 0.5 * mirror(xb) + 0.5 * shifted
        else:
            logits = forward(net, xb)
        correct += (logits.argmax(1) == y[i : i + 2000]).sum().item()
    net.train()
    return correct / len(x)


def add_curve_option(parser: argparse.ArgumentParser) -> None:
    """--curve: both peers' accuracy-time curve."""
    parser.add_argument(
        "--curve",
        action="store_true",
        help="test accuracy (no TTA) after each epoch, timed apart from training (accuracy-time curve)",
    )


def curve_point(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, epoch: int, train_s: float) -> float:
    """Print the plain test accuracy after `epoch` beside the training seconds so far; return the seconds this took
    (kept out of the training time)."""
    start = time.perf_counter()
    acc = evaluate(net, x, y, tta=False)
    print(f"curve: epoch {epoch}, {train_s:.1f} s of training, test acc {100 * acc:.2f}%", flush=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=HYP["epochs"], help="9.9 is airbench94's; less to try it")
    add_curve_option(parser)
    add_device_option(parser)
    args = parser.parse_args()
    HYP["epochs"] = args.epochs
    start = time.perf_counter()
    device = setup_device(args.device)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train_u8, train_y, test_u8, test_y = load_cifar(args.data_dir)
    normalize = lambda u8: ((u8.float() / 255 - MEAN) / STD).to(device)  # noqa: E731
    train_x, test_x, train_y, test_y = normalize(train_u8), normalize(test_u8), train_y.to(device), test_y.to(device)

    net = make_net().to(device, memory_format=torch.channels_last)
    init_whitening(net[0], train_x[:5000])
    batch, momentum = HYP["batch"], HYP["momentum"]
    steps_per_epoch = len(train_x) // batch
    total_steps = math.ceil(HYP["epochs"] * steps_per_epoch)
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    lr, wd = HYP["lr"] / kilostep, HYP["weight_decay"] * batch / kilostep
    lr_bias = lr * HYP["bias_scaler"]
    is_bn = {id(m.bias) for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    bn_bias = [p for p in net.parameters() if id(p) in is_bn]
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in is_bn]
    opt = torch.optim.SGD(
        [dict(params=bn_bias, lr=lr_bias, weight_decay=wd / lr_bias), dict(params=rest, lr=lr, weight_decay=wd / lr)],
        momentum=momentum,
        nesterov=True,
    )
    peak = int(0.23 * total_steps)
    triangle = lambda s: float(np.interp(s, [0, peak, total_steps], [0.2, 1.0, 0.07]))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, triangle)
    alpha = 0.95**5 * (torch.arange(total_steps + 1) / total_steps) ** 3
    ema = {k: v.clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    def lookahead(decay: float) -> None:
        for k, v in net.state_dict().items():
            if k in ema:
                ema[k].lerp_(v, 1 - decay)
                v.copy_(ema[k])

    flipped_once = torch.where((torch.rand(len(train_x), generator=gen) < 0.5).view(-1, 1, 1, 1).to(device),
                               train_x.flip(-1), train_x)  # fmt: skip
    padded = F.pad(flipped_once, (HYP["translate"],) * 4, "reflect")
    step, train_s, curve_s = 0, 0.0, 0.0
    for epoch in range(math.ceil(HYP["epochs"])):
        t0 = time.perf_counter()
        net[0].bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        images = translate(padded, 32, gen)
        if epoch % 2 == 1:
            images = images.flip(-1)
        order = torch.randperm(len(images), generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(forward(net, images[idx]), train_y[idx], label_smoothing=HYP["label_smoothing"],
                                   reduction="sum")  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % HYP["lookahead_every"] == 0:
                lookahead(alpha[step].item())
            if step >= total_steps:
                break
        synchronize()
        train_s += time.perf_counter() - t0
        print(f"epoch {epoch + 1}: train loss {loss.item() / batch:.3f}, {train_s:.0f} s of training", flush=True)
        if args.curve:
            curve_s += curve_point(net, test_x, test_y, epoch + 1, train_s)
        if step >= total_steps:
            break
    lookahead(1.0)
    acc, acc_tta = evaluate(net, test_x, test_y, tta=False), evaluate(net, test_x, test_y, tta=True)
    print(f"seed {args.seed}: test acc {100 * acc:.2f}%, with TTA {100 * acc_tta:.2f}%; {step} steps, "
          f"{train_s:.0f} s training ({step * batch / train_s:.0f} img/s), "
          f"{time.perf_counter() - start:.0f} s in main, {curve_s:.0f} s of it in --curve evaluations")  # fmt: skip


if __name__ == "__main__":
    main()
