"""The model summary printed at the start of training and by `cnnlab-rf`: layers, shapes, parameters, RF."""

from __future__ import annotations

from rich.table import Table
from torch import nn

from cnnlab.lab.receptive_field import receptive_field


SHORT = {"Conv2d": "conv", "MaxPool2d": "maxpool", "AvgPool2d": "avgpool"}


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def summary_table(net: nn.Module, image_size: int = 32) -> Table:
    """A rich table: per spatial layer its geometry, output size and receptive field; then the totals."""
    table = Table(title=f"{type(net).__name__}: {_params(net):,} parameters", title_justify="left")
    for column in ("layer", "op", "k", "s", "p", "d", "out", "params", "RF", "jump", "start"):
        table.add_column(column, justify="left" if column in ("layer", "type") else "right")
    features = getattr(net, "features", None)
    if features is None:
        for name, module in net.named_modules():
            if isinstance(module, nn.Linear):
                table.add_row(name, "Linear", "", "", "", "", str(module.out_features), f"{_params(module):,}",
                              "all", "", "")
        return table
    for rf in receptive_field(features, image_size):
        module = features.get_submodule(rf.name)
        table.add_row(rf.name, SHORT.get(rf.kind, rf.kind), str(rf.kernel), str(rf.stride), str(rf.padding), str(rf.dilation),
                      f"{rf.out_size}×{rf.out_size}", f"{_params(module):,}", f"{rf.size}×{rf.size}", str(rf.jump),
                      f"{rf.start:g}")
    head = getattr(net, "head", None)
    if head is not None:
        table.add_row("head", "gap+fc", "", "", "", "", "classes", f"{_params(head):,}", "all", "", "")
    return table
