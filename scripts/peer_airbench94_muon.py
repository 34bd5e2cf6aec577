"""The speedrun's second peer, measured on the machine at hand: airbench94_muon (Keller Jordan, 2024; the published
record, 94.01% in 8 epochs) written out in plain PyTorch for a CPU, importing nothing from cnnlab.

Its network, whitening, augmentation and test-time augmentation are airbench94's, so they come from
peer_airbench94.py beside this file. What differs is airbench94_muon's: logits divided by the 256 features (not
scaled by 1/9) from a head initialised to unit std, batch 2,000, 8 epochs, no Lookahead, Muon (momentum 0.6,
Nesterov, lr 0.24, three Newton-Schulz steps in bf16) for the conv filters, Nesterov SGD (momentum 0.85) for the
BatchNorm biases (lr 0.053), the whitening bias (lr 0.053, for 3 epochs) and the head (lr 0.67) on the summed
loss, weight decay 2e-6 × batch, and every lr decaying linearly to 0. The CPU changes are the first peer's: fp32
weights and optimizer state under bf16 autocast only on a CPU with native bf16, else plain fp32 (issue #31; the
Newton-Schulz steps, bf16 in the recipe, follow the same rule), channels_last, data read from the CIFAR-10 pickles;
--device cuda as the first peer's.

    python scripts/peer_airbench94_muon.py --data-dir ../shared/data --seed 0   # prints test accuracy and times

Time the whole process with /usr/bin/time (make peer94muon) to compare with `cnnlab-train experiment=cpu94`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from peer_airbench94 import (
    MEAN,
    STD,
    add_curve_option,
    add_device_option,
    autocast,
    compute_dtype,
    curve_point,
    evaluate,
    init_whitening,
    load_cifar,
    make_net,
    setup_device,
    synchronize,
    translate,
)

HYP = dict(
    epochs=8, batch=2000, bias_lr=0.053, head_lr=0.67, filter_lr=0.24, weight_decay=2e-6, momentum=0.85,
    filter_momentum=0.6, ns_steps=3, label_smoothing=0.2, whiten_bias_epochs=3, translate=2,
)  # fmt: skip


def forward(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Logits at the chosen precision, divided by the head's 256 input features (airbench94_muon's scaling)."""
    with autocast():
        return net(x.contiguous(memory_format=torch.channels_last)).float() / net[-1].in_features


def orthogonalize(g: torch.Tensor, steps: int) -> torch.Tensor:
    """The nearest semi-orthogonal matrix to `g` (rows × columns), by Newton-Schulz iterations in bf16 (fp32 where the
    precision rule says fp32)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(compute_dtype())
    x = x / (x.norm() + 1e-7)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return (x.T if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Momentum, then each filter bank's update orthogonalised; the weights are kept at norm √(output channels)."""

    def __init__(self, params, lr: float, momentum: float, ns_steps: int) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p.grad))
                buf.mul_(group["momentum"]).add_(p.grad)
                g = p.grad.add(buf, alpha=group["momentum"])  # Nesterov
                p.mul_(len(p) ** 0.5 / p.norm())
                p.add_(orthogonalize(g.reshape(len(g), -1), group["ns_steps"]).view_as(p), alpha=-group["lr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=HYP["epochs"], help="8 is airbench94_muon's; less to try it")
    add_curve_option(parser)
    add_device_option(parser)
    parser.add_argument("--sizes", default="", help="ablation, progressive resizing: per-epoch training image sizes, "
                        "e.g. 16,16,24,24,32,32,32,32 (the test stays at 32 px); default 32 throughout")  # fmt: skip
    parser.add_argument("--tta-select", action="store_true", help="ablation, selective TTA: also print the accuracy "
                        "when only images whose top softmax probability is below p get 5 more views")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [32] * args.epochs
    if len(sizes) != args.epochs:
        parser.error(f"--sizes names {len(sizes)} sizes for {args.epochs} epochs; give one per epoch")
    start = time.perf_counter()
    device = setup_device(args.device)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train_u8, train_y, test_u8, test_y = load_cifar(args.data_dir)
    normalize = lambda u8: ((u8.float() / 255 - MEAN) / STD).to(device)  # noqa: E731
    train_x, test_x, train_y, test_y = normalize(train_u8), normalize(test_u8), train_y.to(device), test_y.to(device)

    net = make_net()
    if args.sizes:  # a global max instead of airbench's 3×3 one, which needs a 3×3 map (32 px); the same at 32 px
        net[5] = nn.AdaptiveMaxPool2d(1)
    net = net.to(device, memory_format=torch.channels_last)
    whiten, head = net[0], net[-1]
    head.weight.data /= head.weight.data.std()
    init_whitening(whiten, train_x[:5000])
    batch = HYP["batch"]
    steps_per_epoch = len(train_x) // batch  # drop_last, as airbench's loader
    total_steps, whiten_steps = args.epochs * steps_per_epoch, HYP["whiten_bias_epochs"] * steps_per_epoch
    wd = HYP["weight_decay"] * batch
    norm_biases = [m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    filters = [p for p in net.parameters() if p.dim() == 4 and p.requires_grad]
    sgd = torch.optim.SGD(
        [
            dict(params=[whiten.bias], lr=HYP["bias_lr"], weight_decay=wd / HYP["bias_lr"]),
            dict(params=norm_biases, lr=HYP["bias_lr"], weight_decay=wd / HYP["bias_lr"]),
            dict(params=[head.weight], lr=HYP["head_lr"], weight_decay=wd / HYP["head_lr"]),
        ],
        momentum=HYP["momentum"],
        nesterov=True,
    )
    muon = Muon(filters, lr=HYP["filter_lr"], momentum=HYP["filter_momentum"], ns_steps=HYP["ns_steps"])
    groups = [(g, g["lr"]) for g in (*sgd.param_groups, *muon.param_groups)]

    flipped_once = torch.where((torch.rand(len(train_x), generator=gen) < 0.5).view(-1, 1, 1, 1).to(device),
                               train_x.flip(-1), train_x)  # fmt: skip
    padded = F.pad(flipped_once, (HYP["translate"],) * 4, "reflect")
    step, train_s, curve_s = 0, 0.0, 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        images = translate(padded, 32, gen)
        if epoch % 2 == 1:
            images = images.flip(-1)
        if sizes[epoch] != 32:
            images = F.interpolate(images, size=(sizes[epoch],) * 2, mode="bilinear", antialias=True)
        order = torch.randperm(len(images), generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            whiten.bias.requires_grad = step < whiten_steps
            loss = F.cross_entropy(forward(net, images[idx]), train_y[idx], label_smoothing=HYP["label_smoothing"],
                                   reduction="sum")  # fmt: skip
            loss.backward()
            for group, initial in groups:  # the whitening bias decays over its own 3 epochs, the rest over the run
                group["lr"] = initial * max(0.0, 1 - step / (whiten_steps if group is groups[0][0] else total_steps))
            sgd.step()
            muon.step()
            net.zero_grad(set_to_none=True)
            step += 1
        synchronize()
        train_s += time.perf_counter() - t0
        print(f"epoch {epoch + 1}: train loss {loss.item() / batch:.3f}, {train_s:.0f} s of training", flush=True)
        if args.curve:
            curve_s += curve_point(net, test_x, test_y, epoch + 1, train_s)
    acc, acc_tta = evaluate(net, test_x, test_y, tta=False), evaluate(net, test_x, test_y, tta=True)
    print(f"seed {args.seed}: test acc {100 * acc:.2f}%, with TTA {100 * acc_tta:.2f}%; {step} steps, "
          f"{train_s:.0f} s training ({step * batch / train_s:.0f} img/s), "
          f"{time.perf_counter() - start:.0f} s in main, {curve_s:.0f} s of it in --curve evaluations")  # fmt: skip
    if args.tta_select:
        for p, acc, share in selective_tta(net, test_x, test_y, (0.5, 0.6, 0.7, 0.8, 0.9)):
            print(f"selective TTA below p={p}: test acc {100 * acc:.2f}%, extra views for {100 * share:.1f}% of images")


@torch.no_grad()
def selective_tta(
    net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, thresholds: tuple[float, ...]
) -> list[tuple[float, float, float]]:
    """(p, accuracy, share of images given the extra views) when only images whose plain prediction's top softmax
    probability is below p get airbench's six-view TTA (the hiverge record's idea); the rest keep one view."""
    net.eval()
    plain = torch.cat([forward(net, x[i : i + 2000]) for i in range(0, len(x), 2000)])
    confidence = plain.softmax(-1).amax(-1)
    mirror = lambda v: 0.5 * forward(net, v) + 0.5 * forward(net, v.flip(-1))  # noqa: E731
    results = []
    for p in thresholds:
        logits, low = plain.clone(), (confidence < p).nonzero().squeeze(1)
        for i in range(0, len(low), 2000):
            idx = low[i : i + 2000]
            v, padded = x[idx], F.pad(x[idx], (1,) * 4, "reflect")
            unflipped = 0.5 * plain[idx] + 0.5 * forward(net, v.flip(-1))
            logits[idx] = 0.5 * unflipped + 0.25 * (mirror(padded[:, :, :32, :32]) + mirror(padded[:, :, 2:, 2:]))
        results.append((p, (logits.argmax(1) == y).float().mean().item(), len(low) / len(x)))
    net.train()
    return results


if __name__ == "__main__":
    main()
