"""`cnnlab-pooling`: max versus average 2×2 pooling on a sharp and a blurred edge response."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch.nn.functional as F
from rich.table import Table

from cnnlab.figures import save_figure
from cnnlab.lab.cli import console, output_dir, parser, run_tool
from cnnlab.lab.pooling import edge_response, pool_edge

EDGES = {"sharp": (1.0,), "blurred": (0.5, 1.0, 0.5)}


def main() -> None:
    """Table of peak, spread and displacement for edges at every column; a figure of one example."""
    args = parser("cnnlab-pooling", __doc__).parse_args()
    table = Table(title="2×2 pooling of a vertical edge response on an 8×8 map, averaged over its 8 positions",
                  title_justify="left")
    for column in ("edge", "pool", "peak kept", "columns responding", "centre displacement (px)"):
        table.add_column(column, justify="left" if column in ("edge", "pool") else "right")
    for edge, profile in EDGES.items():
        for pool in ("max", "avg"):
            rows = [pool_edge(edge_response(column=c, profile=profile), pool, c) for c in range(8)]
            table.add_row(edge, pool, f"{sum(r.peak for r in rows) / 8:.3f}", f"{sum(r.width for r in rows) / 8:.2f}",
                          f"{sum(r.displacement for r in rows) / 8:.3f}")
    console().print(table)
    fmap = edge_response(column=3, profile=EDGES["blurred"])
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, (title, img) in zip(axes, [("edge response (8×8)", fmap), ("max pool 2×2", F.max_pool2d(fmap, 2)),
                                       ("avg pool 2×2", F.avg_pool2d(fmap, 2))]):
        ax.imshow(img[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    print("figure:", save_figure(fig, output_dir("pooling", args.out) / "pooling.png"))


def cli() -> None:
    """Console entry point."""
    run_tool(main)
