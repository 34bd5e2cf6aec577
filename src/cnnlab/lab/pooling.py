"""Max versus average pooling on an edge response: strength, spread and position of what survives."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
    peak: float          # strongest response left (1.0 = full strength of the sharp edge)
    width: int           # output columns that still respond (spread)
    centre: float        # response-weighted centre, mapped back to input pixels (col·2 + 0.5)

    @property
    def displacement(self) -> float:
        return abs(self.centre - self.column)


def pool_edge(fmap: torch.Tensor, pool: str, column: int) -> PooledEdge:
    """Pool an edge map with 2×2 max or average pooling and measure what is left of the edge."""
    out = (F.max_pool2d if pool == "max" else F.avg_pool2d)(fmap, 2)[0, 0, 0]
    cols = torch.arange(len(out), dtype=torch.float32) * 2 + 0.5
    return PooledEdge(pool, column, float(out.max()), int((out > 1e-6).sum()),
                      float((out * cols).sum() / out.sum()))
