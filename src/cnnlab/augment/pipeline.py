"""An augmentation pipeline: a list of batched ops applied in order to float images in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnlab.augment.ops import BatchOp


class Augmentation:
    """Apply `ops` in order to a B×C×H×W float batch in [0, 1]; an empty list is the identity."""

    def __init__(self, ops: Sequence[BatchOp] = (), allow_label_unsafe: bool = False) -> None:
        self.ops = list(ops)
        self.allow_label_unsafe = allow_label_unsafe

    @property
    def names(self) -> list[str]:
        """Names of the ops, e.g. ['crop', 'hflip'], used for label-safety checks and logs."""
        return [op.name for op in self.ops]

    @property
    def batched(self) -> bool:
        """True when every op is a pure tensor op (no per-image Python loop)."""
        return all(op.batched for op in self.ops)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            images = op(images)
        return images

    def __repr__(self) -> str:
        return f"Augmentation({', '.join(map(repr, self.ops)) or 'identity'})"
