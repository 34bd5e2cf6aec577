"""`cnnlab-equivariance [overrides] [--ckpt PATH] [--shifts 1 2 4]`: shift the input, compare features per layer."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from rich.table import Table
from torch import nn

from cnnlab.config import compose_config
from cnnlab.figures import save_figure
from cnnlab.lab.tools import build_datamodule, load_model, output_dir, parser
from cnnlab.runs import console, console_script


@dataclass(frozen=True)
class ShiftError:
    """Relative error ‖f(shift_k x) − shift_{k/jump} f(x)‖ / ‖f(x)‖ after one layer."""

    layer: str
    kind: str
    jump: int
    shift: int
    feature_shift: float
    relative_error: float


def spatial_layers(features: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf modules of a feature extractor, in forward order (ConvNet's nested Sequentials)."""
    return [(name, m) for name, m in features.named_modules() if len(list(m.children())) == 0]


def _stride(module: nn.Module) -> int:
    stride = getattr(module, "stride", 1)
    stride = stride[0] if isinstance(stride, tuple) else stride
    return stride if isinstance(stride, int) else 1


@torch.no_grad()
def layer_shift_errors(features: nn.Module, images: torch.Tensor, shift: int) -> list[ShiftError]:
    """Shift `images` right by `shift` pixels (circularly) and compare every layer's output with the
    original output shifted by shift/jump. A non-integer shift/jump is rounded: those layers cannot
    be equivariant to this shift, and the error says by how much they are not."""
    features.eval()
    x, x_shifted = images, torch.roll(images, shifts=shift, dims=-1)
    jump, errors = 1, []
    for name, layer in spatial_layers(features):
        x, x_shifted = layer(x), layer(x_shifted)
        jump *= _stride(layer)
        feature_shift = shift / jump
        expected = torch.roll(x, shifts=round(feature_shift), dims=-1)
        error = (x_shifted - expected).norm() / x.norm().clamp_min(1e-12)
        errors.append(ShiftError(name, type(layer).__name__, jump, shift, feature_shift, float(error)))
    return errors


@torch.no_grad()
def prediction_change(net: nn.Module, images: torch.Tensor, shift: int) -> tuple[float, float]:
    """(fraction of predictions unchanged, mean total-variation distance of the class probabilities)."""
    net.eval()
    p = net(images).softmax(-1)
    q = net(torch.roll(images, shifts=shift, dims=-1)).softmax(-1)
    return float((p.argmax(-1) == q.argmax(-1)).float().mean()), float(0.5 * (p - q).abs().sum(-1).mean())


def validation_images(cfg, count: int = 64):
    """The first `count` normalised validation images of the configured data."""
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    raw = datamodule.val_set.tensors[0][:count]
    return datamodule.prepare_batch(raw, train=False)


def _main() -> None:
    """Table and figure of per-layer shift errors, and how often the prediction changes."""
    p = parser("cnnlab-equivariance", __doc__)
    p.add_argument("--shifts", type=int, nargs="+", default=[1, 2, 4])
    args = p.parse_args()
    net, run_cfg, label = load_model(compose_config(args.overrides), args.ckpt)
    images = validation_images(run_cfg if args.ckpt else compose_config(args.overrides))
    results = {k: layer_shift_errors(net.features, images, k) for k in args.shifts}
    table = Table(
        title=f"Relative error ‖f(shift x) − shift f(x)‖/‖f(x)‖ ({label} weights, padding "
        f"{run_cfg.model.get('padding_mode', 'zeros')}, circular shifts)",
        title_justify="left",
    )
    table.add_column("layer")
    table.add_column("op")
    table.add_column("jump", justify="right")
    for k in args.shifts:
        table.add_column(f"shift {k}", justify="right")
    first = results[args.shifts[0]]
    for i, row in enumerate(first):
        table.add_row(row.layer, row.kind, str(row.jump), *(f"{results[k][i].relative_error:.2e}" for k in args.shifts))
    console().print(table)
    for k in args.shifts:
        same, distance = prediction_change(net, images, k)
        print(
            f"shift {k}: prediction unchanged for {100 * same:.1f}% of {len(images)} images; "
            f"mean change in class probabilities (total variation) {distance:.3f}"
        )
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(first)), 3.8))
    for k in args.shifts:
        ax.plot(range(len(first)), [r.relative_error for r in results[k]], marker="o", label=f"shift {k} px")
    ax.set_xticks(range(len(first)), [f"{r.layer}\n{r.kind}" for r in first], fontsize=6, rotation=90)
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_ylabel("relative error")
    ax.set_title("Translation equivariance per layer (0 = exactly equivariant)")
    ax.legend()
    print("figure:", save_figure(fig, output_dir("equivariance", args.out) / "equivariance.png"))


main = console_script(_main)
