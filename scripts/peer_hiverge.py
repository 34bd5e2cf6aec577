"""The speedrun's third peer, measured on the machine at hand: hiverge/cifar10-speedrun (the Hive's record of
2025-09, 94.01% mean in 2.015 s on an A100 against airbench94_muon's 2.59 s; the recipe of cifar10_speedrun.py on its
main branch, commit 5cd49b1) written out in plain PyTorch for a CPU, importing nothing from cnnlab.

The recipe, all of it the published script's: airbench's network (2×2 whitening conv of 24 filters, frozen, its bias
trained for the first ceil(0.19 × 32) = 7 steps; GELU after it; widths 64/256/256; conv groups with SiLU instead of
GELU; BatchNorm momentum 0.5566, eps 1e-12, fixed unit scale; logits divided by the 256 features of a head initialised
to unit std). The whitening filters come from the SVD (not eigh) of the uncentred 2×2-patch covariance (divided by
N) of the first 960 training images, eps 5e-4. Batch 1,536 (32 steps an epoch, drop_last), 7.59 epochs counted in
steps: ceil(7.59 × 32) = 243 steps, 7 epochs and 19 steps of an 8th. Data: each image flipped at random once, then
every odd epoch all flipped; ±2-pixel reflect-padded translation drawn each epoch; then per-image color jitter each
epoch on the normalised images, x ← (x + U(±0.1399)) · (1 + U(±0.1308)). Loss: summed cross entropy, label smoothing
0.09. Nesterov SGD (momentum 0.825) for the whitening bias (lr 0.0573, decaying to 0 over its 7 steps), the BatchNorm
biases (lr 0.0573) and the head (lr 0.5415), weight decay 1.0418e-6 × 1,536 divided by each group's lr. Its Muon for
the conv filters: lr 0.205, Nesterov momentum 0.655, decoupled weight decay × (1 - lr · 1.0418e-6 × 1,536) each step;
every filter bank's update flattened to out × in·3·3, zero-padded to one shape (256 × 2,304, columns rounded up to 16)
and stacked, scaled to a target magnitude falling linearly from 0.5012 to 0.0786 over the run, then normalised (the
two nearly cancel; eps 1e-5 each), and three batched Newton-Schulz steps (3.4576, -4.7391, 2.0843); the weights are
rescaled to norm √(output channels) only when 2 + int(15 · progress) steps have passed since the last rescaling.
Every lr but the whitening bias's decays linearly to 0 over the 243 steps. Test-time augmentation is selective: the
25% of test images whose plain prediction has the lowest top softmax probability get the mean logits of six views
(the image, its 1-pixel reflect-padded top-left and bottom-right crops, and the mirror of each); the rest keep one.

What changed for a CPU (as the other peers): fp32 weights and momentum buffers instead of fp16 ones, the network
under bf16 autocast and the Newton-Schulz steps in bf16 only on a CPU with native bf16 (else plain fp32 for both;
issue #31), no torch.compile, data read from the CIFAR-10 pickles, every random draw from one seeded generator, and
the time counted as the other peers count it (the training loop; hiverge's timer also holds the whitening and the
selective TTA). --device cuda runs it on a CUDA GPU under bf16 autocast. Earlier versions of the record differ (the
README's first 2.095 s, 2025-09-09: batch 1,500, 7.67 epochs, eigh; the unmerged PR #4: 7.63 epochs, eigh, a fixed
norm_freq of 8, a 20% TTA share); this is the one on main.

    python scripts/peer_hiverge.py --data-dir ../shared/data --seed 0   # prints test accuracy and times

Time the whole process with /usr/bin/time (make peerhiverge) to compare with `cnnlab-train experiment=cpu94`.
"""

from __future__ import annotations

import argparse
import math
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
    load_cifar,
    make_net,
    setup_device,
    synchronize,
    translate,
)

HYP = dict(
    epochs=7.59, batch=1536, whiten_bias_epochs=0.19, bias_lr=0.0573, head_lr=0.5415, filter_lr=0.205,
    momentum=0.825, filter_momentum=0.655, weight_decay=1.0418e-6, label_smoothing=0.09, bn_momentum=0.5566,
    translate=2, brightness=0.1399, contrast=0.1308, whiten_images=960, whiten_eps=5e-4,
    ns_coefficients=(3.4576, -4.7391, 2.0843), ns_steps=3, target_magnitude=(0.5012, 0.0786), tta_quantile=0.25,
)  # fmt: skip


def forward(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Logits at the chosen precision, divided by the head's 256 input features."""
    with autocast():
        return net(x.contiguous(memory_format=torch.channels_last)).float() / net[-1].in_features


def init_whitening_svd(layer: nn.Conv2d, images: torch.Tensor, eps: float) -> None:
    """Filters = the left singular vectors of the uncentred 2×2-patch covariance over √(singular value + eps), and
    their negatives (hiverge's SVD; for this symmetric matrix, eigh's vectors in descending order, up to sign)."""
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3, 2, 2).float()
    flat = patches.reshape(len(patches), -1)
    u, s, _ = torch.linalg.svd(flat.T @ flat / len(flat))
    filters = (u / torch.sqrt(s + eps)).T.reshape(-1, 3, 2, 2)
    layer.weight.data[:] = torch.cat((filters, -filters))
    layer.weight.requires_grad = False


def batched_newton_schulz(updates: list[torch.Tensor], progress: float, dtype: torch.dtype) -> list[torch.Tensor]:
    """hiverge's orthogonalisation of every filter bank's update at once: each flattened to out × (in·kh·kw),
    zero-padded to the largest rows × the largest columns rounded up to 16, stacked, scaled to the target magnitude
    for this point of the run then normalised, and put through the Newton-Schulz steps as batched matrix products.
    Zero padding leaves each bank's result what it would be alone."""
    a, b, c = HYP["ns_coefficients"]
    shapes = [(len(u), u[0].numel()) for u in updates]
    rows, cols = max(r for r, _ in shapes), -(-max(k for _, k in shapes) // 16) * 16
    x = torch.stack([F.pad(u.reshape(r, k), (0, cols - k, 0, rows - r)) for u, (r, k) in zip(updates, shapes)])
    x = x.to(dtype)
    first, last = HYP["target_magnitude"]
    target = first * (1 - progress) + last * progress
    x = x * (target / (x.norm(dim=(1, 2), keepdim=True) + 1e-5))
    x = x / (x.norm(dim=(1, 2), keepdim=True) + 1e-5)
    tall = rows > cols
    if tall:
        x = x.mT
    for _ in range(HYP["ns_steps"]):
        s = x @ x.mT
        x = a * x + (b * s + c * s @ s) @ x
    if tall:
        x = x.mT
    return [x[i, :r, :k].reshape(u.shape).to(u.dtype) for i, (u, (r, k)) in enumerate(zip(updates, shapes))]


class Muon(torch.optim.Optimizer):
    """hiverge's Muon: Nesterov momentum, the batched Newton-Schulz update, the weights rescaled to norm
    √(output channels) only every 2 + int(15 · progress) steps (before the update), decoupled weight decay after it."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float, total_steps: int) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.total_steps, self.steps, self.last_rescale = total_steps, 0, 0

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        progress = self.steps / max(1, self.total_steps)
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        updates = []
        for p in params:
            state = self.state[p]
            if "momentum" not in state:
                state["momentum"] = torch.zeros_like(p.grad)
            buf = state["momentum"]
            buf.mul_(group["momentum"]).add_(p.grad)
            updates.append(p.grad.add(buf, alpha=group["momentum"]))  # Nesterov
        rescale = self.steps - self.last_rescale >= 2 + int(15 * progress)
        if rescale:
            self.last_rescale = self.steps
            scales = [len(p) ** 0.5 / (p.norm() + 1e-7) for p in params]
        for i, (p, u) in enumerate(zip(params, batched_newton_schulz(updates, progress, compute_dtype()))):
            if rescale:
                p.mul_(scales[i])
            p.add_(u, alpha=-group["lr"]).mul_(1 - group["lr"] * group["weight_decay"])


def color_jitter(images: torch.Tensor, brightness: float, contrast: float, generator: torch.Generator) -> torch.Tensor:
    """In place, per image: x ← (x + U(±brightness)) · (1 + U(±contrast)), on the normalised images (hiverge's)."""
    n = len(images)
    shift = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * brightness
    scale = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * contrast + 1
    return images.add_(shift.to(images.device)).mul_(scale.to(images.device))


@torch.no_grad()
def six_views(net: nn.Sequential, x: torch.Tensor, batch: int = 2000) -> torch.Tensor:
    """hiverge's TTA logits: the mean over the image, its top-left and bottom-right crops of the 1-pixel reflect
    padding, and the mirror of each."""
    out = []
    for xb in x.split(batch):
        padded = F.pad(xb, (1,) * 4, "reflect")
        views = (xb, padded[:, :, :32, :32], padded[:, :, 2:, 2:])
        out.append(sum(forward(net, v) + forward(net, v.flip(-1)) for v in views) / 6)
    return torch.cat(out)


@torch.no_grad()
def selective_tta(net: nn.Sequential, x: torch.Tensor, plain: torch.Tensor, quantile: float) -> torch.Tensor:
    """The plain logits, except for the int(quantile · N) images whose top softmax probability is lowest: theirs are
    six_views' (hiverge's selective TTA)."""
    low = plain.softmax(1).amax(1).topk(int(len(x) * quantile), largest=False).indices
    logits = plain.clone()
    if len(low):
        logits[low] = six_views(net, x[low])
    return logits


@torch.no_grad()
def plain_logits(net: nn.Sequential, x: torch.Tensor, batch: int = 2000) -> torch.Tensor:
    return torch.cat([forward(net, xb) for xb in x.split(batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=HYP["epochs"],
                        help="7.59 is hiverge's (steps = ceil(epochs × steps an epoch)); less to try it")  # fmt: skip
    add_curve_option(parser)
    add_device_option(parser)
    args = parser.parse_args()
    start = time.perf_counter()
    device = setup_device(args.device)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train_u8, train_y, test_u8, test_y = load_cifar(args.data_dir)
    batch = HYP["batch"]
    steps_per_epoch = len(train_u8) // batch  # drop_last, as hiverge's loader
    if steps_per_epoch == 0:
        parser.error(f"{len(train_u8)} training images are fewer than one batch of {batch}")
    normalize = lambda u8: ((u8.float() / 255 - MEAN) / STD).to(device)  # noqa: E731
    train_x, test_x, train_y, test_y = normalize(train_u8), normalize(test_u8), train_y.to(device), test_y.to(device)

    net = make_net(nn.SiLU, HYP["bn_momentum"]).to(device, memory_format=torch.channels_last)
    whiten, head = net[0], net[-1]
    head.weight.data /= head.weight.data.std()
    init_whitening_svd(whiten, train_x[: HYP["whiten_images"]], HYP["whiten_eps"])
    total_steps = math.ceil(args.epochs * steps_per_epoch)
    whiten_steps = math.ceil(HYP["whiten_bias_epochs"] * steps_per_epoch)
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
    muon = Muon(filters, HYP["filter_lr"], HYP["filter_momentum"], wd, total_steps)
    groups = [(g, g["lr"]) for g in (*sgd.param_groups, *muon.param_groups)]

    flipped_once = torch.where((torch.rand(len(train_x), generator=gen) < 0.5).view(-1, 1, 1, 1).to(device),
                               train_x.flip(-1), train_x)  # fmt: skip
    padded = F.pad(flipped_once, (HYP["translate"],) * 4, "reflect")
    del flipped_once, train_x
    step, train_s, curve_s = 0, 0.0, 0.0
    for epoch in range(math.ceil(total_steps / steps_per_epoch)):
        t0 = time.perf_counter()
        images = translate(padded, 32, gen)
        if epoch % 2 == 1:
            images = images.flip(-1)
        color_jitter(images, HYP["brightness"], HYP["contrast"], gen)
        order = torch.randperm(len(images), generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            whiten.bias.requires_grad = step < whiten_steps
            loss = F.cross_entropy(forward(net, images[idx]), train_y[idx], label_smoothing=HYP["label_smoothing"],
                                   reduction="sum")  # fmt: skip
            loss.backward()
            for group, initial in groups:  # the whitening bias decays over its own 7 steps, the rest over the run
                group["lr"] = initial * (1 - step / (whiten_steps if group is groups[0][0] else total_steps))
            sgd.step()
            muon.step()
            net.zero_grad(set_to_none=True)
            step += 1
            if step >= total_steps:
                break
        del images
        synchronize()
        train_s += time.perf_counter() - t0
        print(f"epoch {epoch + 1}: train loss {loss.item() / batch:.3f}, {train_s:.0f} s of training", flush=True)
        if args.curve:
            curve_s += curve_point(net, test_x, test_y, epoch + 1, train_s)
    net.eval()
    plain = plain_logits(net, test_x)
    accuracy = lambda logits: (logits.argmax(1) == test_y).float().mean().item()  # noqa: E731
    acc, acc_tta = accuracy(plain), accuracy(selective_tta(net, test_x, plain, HYP["tta_quantile"]))
    main_s = time.perf_counter() - start
    t0 = time.perf_counter()
    acc_all = accuracy(six_views(net, test_x))
    share = f"{100 * HYP['tta_quantile']:.0f}%"
    print(f"all-views TTA (six views for every test image, not only the {share} least confident): "
          f"test acc {100 * acc_all:.2f}%, {time.perf_counter() - t0:.0f} s, outside main's time")  # fmt: skip
    print(f"seed {args.seed}: test acc {100 * acc:.2f}%, with TTA {100 * acc_tta:.2f}%; {step} steps, "
          f"{train_s:.0f} s training ({step * batch / train_s:.0f} img/s), "
          f"{main_s:.0f} s in main, {curve_s:.0f} s of it in --curve evaluations")  # fmt: skip


if __name__ == "__main__":
    main()
