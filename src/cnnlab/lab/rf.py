"""`cnnlab-rf [overrides] [--ckpt PATH]`: the receptive field of a backbone, analytic and empirical."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from cnnlab.config import compose_config
from cnnlab.figures import save_figure
from cnnlab.lab.tools import load_model, output_dir, parser
from cnnlab.models.receptive_field import (
    empirical_receptive_field,
    final_receptive_field,
    input_gradient,
    sees_whole_image,
    too_small_warning,
)
from cnnlab.models.summary import summary_table
from cnnlab.runs import console, console_script


def rf_figure(grad: torch.Tensor, analytic: int, title: str, path) -> None:
    """Heat map of |∂ centre unit / ∂ input| with the analytic receptive field drawn as a box."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(grad.numpy(), cmap="magma")
    size = grad.shape[-1]
    centre = size // 2 - 0.5
    half = analytic / 2
    ax.add_patch(
        plt.Rectangle((centre - half + 0.5, centre - half + 0.5), analytic, analytic, fill=False, ec="cyan", lw=1.5)
    )
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    save_figure(fig, path)


def describe(grad: torch.Tensor, analytic: int, label: str) -> str:
    """One line comparing the empirical fields with the analytic size."""
    nonzero = empirical_receptive_field(grad)
    effective = empirical_receptive_field(grad, threshold=0.05)
    return (
        f"{label}: gradient non-zero over {nonzero[0]}×{nonzero[1]} px (analytic {analytic}×{analytic}, "
        f"clipped to the image); above 5% of its peak over {effective[0]}×{effective[1]} px (the effective field)"
    )


def _main() -> None:
    """Print the per-layer table; save empirical receptive-field maps for fresh and trained weights."""
    args = parser("cnnlab-rf", __doc__).parse_args()
    cfg = compose_config(args.overrides)
    trained = None
    if args.ckpt:  # the checkpoint's own architecture, fresh and trained
        trained, cfg, _ = load_model(cfg, args.ckpt)
    fresh, _, _ = load_model(cfg, None)
    console().print(summary_table(fresh))
    features = fresh.features
    if sees_whole_image(features):
        print("This model flattens the image first: every unit sees the whole image.")
        return
    out = output_dir("rf", args.out)
    analytic = final_receptive_field(features)
    models = [("fresh", fresh)] + ([("trained", trained)] if trained is not None else [])
    for label, net in models:
        grad = input_gradient(net.features)
        rf_figure(grad, analytic, f"{label}: |d centre unit / d input|, box = analytic RF", out / f"rf_{label}.png")
        print(describe(grad, analytic, label))
    print(too_small_warning(features) or f"The {analytic}×{analytic} field covers the 32×32 image.")
    print(f"figures: {out}")


main = console_script(_main)
