"""`cnnlab-rf [overrides] [--ckpt PATH]`: the receptive field of a backbone, analytic and empirical."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from cnnlab.config import compose_checked
from cnnlab.errors import CnnlabError
from cnnlab.figures import save_figure
from cnnlab.lab.tools import input_shape, load_model, output_dir, parser, require_backbone, writing_figures
from cnnlab.models.receptive_field import (
    LayerRF,
    empirical_receptive_field,
    input_gradient,
    sees_whole_image,
    too_small_warning,
    trace_fields,
)
from cnnlab.models.summary import summary_table
from cnnlab.runs import console, console_script


def rf_figure(grad: torch.Tensor, final: LayerRF, title: str, path) -> None:
    """Heat map of |∂ centre unit / ∂ input| with the centre unit's analytic receptive field drawn as a box."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(grad.numpy(), cmap="magma")
    height, width = grad.shape[-2:]
    # the centre unit (out_height // 2, out_size // 2) is centred on input pixel start + jump·index on each axis
    cy, cx = (final.start + final.jump * (n // 2) for n in (final.out_height, final.out_size))
    half = (final.size - 1) / 2
    ax.add_patch(
        plt.Rectangle((cx - half - 0.5, cy - half - 0.5), final.size, final.size, fill=False, ec="cyan", lw=1.5)
    )
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
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
    cfg = compose_checked(args.overrides)
    out = output_dir("rf", args.out)
    trained = None
    if args.ckpt:  # the checkpoint's own architecture, fresh and trained
        trained, cfg, _ = load_model(cfg, args.ckpt, args.overrides)
        trained = require_backbone(trained, "cnnlab-rf")
    fresh = require_backbone(load_model(cfg, None)[0], "cnnlab-rf")
    shape = input_shape(cfg)
    features = fresh.features
    if sees_whole_image(features):
        console().print(summary_table(fresh, shape))
        print("This model flattens the image first: every unit sees the whole image.")
        return
    analysis = trace_fields(features, shape)
    if analysis.reason is not None:
        raise CnnlabError(f"cnnlab-rf cannot give {type(fresh).__name__}'s receptive field: {analysis.reason}.")
    if analysis.final is None:
        console().print(summary_table(fresh, shape))
        print("The features pool the image globally: every output unit sees the whole image.")
        return
    final = analysis.final
    models = [("fresh", fresh)] + ([("trained", trained)] if trained is not None else [])
    lines = []
    with writing_figures(out) as path:  # the figures first: a disk that cannot take them leaves one line, no table
        for label, net in models:
            grad = input_gradient(net.features, shape)
            title = f"{label}: |d centre unit / d input|, box = analytic RF"
            rf_figure(grad, final, title, path(f"rf_{label}.png"))
            lines.append(describe(grad, final.size, label))
    console().print(summary_table(fresh, shape))
    print(*lines, sep="\n")
    covers = f"The {final.size}×{final.size} field covers the {shape[1]}×{shape[2]} image."
    print(too_small_warning(features, shape) or covers)
    print(f"figures: {out}")


main = console_script(_main)
