"""`cnnlab-equivariance [overrides] [--ckpt PATH] [--shifts 1 2 4]`: shift the input, compare features layer by layer."""

from __future__ import annotations

import matplotlib.pyplot as plt
from rich.table import Table

from cnnlab.builders import build_datamodule
from cnnlab.figures import save_figure
from cnnlab.lab.cli import console, compose_config, load_model, output_dir, parser, run_tool
from cnnlab.lab.equivariance import layer_shift_errors, prediction_change


def validation_images(cfg, count: int = 64):
    """The first `count` normalised validation images of the configured data."""
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    raw = datamodule.val_set.tensors[0][:count]
    return datamodule.prepare_batch(raw, train=False)


def main() -> None:
    """Table and figure of per-layer shift errors, and how often the prediction changes."""
    p = parser("cnnlab-equivariance", __doc__)
    p.add_argument("--shifts", type=int, nargs="+", default=[1, 2, 4])
    args = p.parse_args()
    net, run_cfg, label = load_model(compose_config(args.overrides), args.ckpt)
    images = validation_images(run_cfg if args.ckpt else compose_config(args.overrides))
    results = {k: layer_shift_errors(net.features, images, k) for k in args.shifts}
    table = Table(title=f"Relative error ‖f(shift x) − shift f(x)‖/‖f(x)‖ ({label} weights, padding "
                        f"{run_cfg.model.get('padding_mode', 'zeros')}, circular shifts)", title_justify="left")
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
        print(f"shift {k}: prediction unchanged for {100 * same:.1f}% of {len(images)} images; "
              f"mean change in class probabilities (total variation) {distance:.3f}")
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(first)), 3.8))
    for k in args.shifts:
        ax.plot(range(len(first)), [r.relative_error for r in results[k]], marker="o", label=f"shift {k} px")
    ax.set_xticks(range(len(first)), [f"{r.layer}\n{r.kind}" for r in first], fontsize=6, rotation=90)
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_ylabel("relative error")
    ax.set_title("Translation equivariance per layer (0 = exactly equivariant)")
    ax.legend()
    print("figure:", save_figure(fig, output_dir("equivariance", args.out) / "equivariance.png"))


def cli() -> None:
    """Console entry point."""
    run_tool(main)
