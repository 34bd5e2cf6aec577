"""`cnnlab-pooling`: max versus average 2×2 pooling on a sharp and a blurred edge response."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from rich.table import Table

from cnnlab.figures import save_figure
from cnnlab.lab.tools import output_dir, parser, writing_figures
from cnnlab.runs import console, console_script


def edge_response(size: int = 8, column: int = 3, profile: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """A 1×1×size×size map that is zero except for a vertical line (an edge detector's response) whose
    horizontal profile `profile` is centred on `column`."""
    fmap = torch.zeros(1, 1, size, size)
    half = len(profile) // 2
    for offset, value in enumerate(profile):
        col = column - half + offset
        if 0 <= col < size:
            fmap[..., col] = value
    return fmap


@dataclass(frozen=True)
class PooledEdge:
    """What 2×2/stride-2 pooling keeps of an edge at input column `column`."""

    pool: str
    column: int
    peak: float  # strongest response left (1.0 = full strength of the sharp edge)
    width: int  # output columns that still respond (spread)
    centre: float  # response-weighted centre, mapped back to input pixels (col·2 + 0.5)

    @property
    def displacement(self) -> float:
        return abs(self.centre - self.column)


def pool_edge(fmap: torch.Tensor, pool: str, column: int) -> PooledEdge:
    """Pool an edge map with 2×2 max or average pooling and measure what is left of the edge."""
    out = (F.max_pool2d if pool == "max" else F.avg_pool2d)(fmap, 2)[0, 0, 0]
    cols = torch.arange(len(out), dtype=torch.float32) * 2 + 0.5
    return PooledEdge(pool, column, float(out.max()), int((out > 1e-6).sum()), float((out * cols).sum() / out.sum()))


EDGES = {"sharp": (1.0,), "blurred": (0.5, 1.0, 0.5)}


def _main() -> None:
    """Table of peak, spread and displacement for edges at every column; a figure of one example."""
    args = parser("cnnlab-pooling", __doc__, overrides=False, ckpt=False).parse_args()
    out = output_dir("pooling", args.out)
    table = Table(
        title="2×2 pooling of a vertical edge response on an 8×8 map, averaged over its 8 positions",
        title_justify="left",
    )
    for column in ("edge", "pool", "peak kept", "columns responding", "centre displacement (px)"):
        table.add_column(column, justify="left" if column in ("edge", "pool") else "right")
    for edge, profile in EDGES.items():
        for pool in ("max", "avg"):
            rows = [pool_edge(edge_response(column=c, profile=profile), pool, c) for c in range(8)]
            table.add_row(
                edge,
                pool,
                f"{sum(r.peak for r in rows) / 8:.3f}",
                f"{sum(r.width for r in rows) / 8:.2f}",
                f"{sum(r.displacement for r in rows) / 8:.3f}",
            )
    console().print(table)
    fmap = edge_response(column=3, profile=EDGES["blurred"])
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, (title, img) in zip(
        axes,
        [
            ("edge response (8×8)", fmap),
            ("max pool 2×2", F.max_pool2d(fmap, 2)),
            ("avg pool 2×2", F.avg_pool2d(fmap, 2)),
        ],
    ):
        ax.imshow(img[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    with writing_figures(out) as path:
        saved = save_figure(fig, path("pooling.png"))
    print("figure:", saved)


main = console_script(_main)
