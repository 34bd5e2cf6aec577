"""The model table printed at the start of training and by `cnnlab-rf`: layers, shapes, parameters, RF."""

from __future__ import annotations

from rich.table import Table
from torch import nn

from cnnlab.models import Backbone
from cnnlab.models.receptive_field import receptive_field, sees_whole_image

SHORT = {"Conv2d": "conv", "MaxPool2d": "maxpool", "AvgPool2d": "avgpool"}


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def summary_table(net: Backbone, image_size: int = 32) -> Table:
    """A rich table: per spatial layer its geometry, output size and receptive field; then the totals."""
    table = Table(title=f"{type(net).__name__}: {_params(net):,} parameters", title_justify="left")
    for column in ("layer", "op", "k", "s", "p", "d", "out", "params", "RF", "jump", "start"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    if sees_whole_image(net.features):
        for name, module in net.features.named_modules():
            if isinstance(module, nn.Linear):
                table.add_row(
                    f"features.{name}",
                    "linear",
                    "",
                    "",
                    "",
                    "",
                    str(module.out_features),
                    f"{_params(module):,}",
                    "all",
                    "",
                    "",
                )
    else:
        for rf in receptive_field(net.features, image_size):
            module = net.features.get_submodule(rf.name)
            table.add_row(
                rf.name,
                SHORT.get(rf.kind, rf.kind),
                str(rf.kernel),
                str(rf.stride),
                str(rf.padding),
                str(rf.dilation),
                f"{rf.out_size}×{rf.out_size}",
                f"{_params(module):,}",
                f"{rf.size}×{rf.size}",
                str(rf.jump),
                f"{rf.start:g}",
            )
    table.add_row("head", "head", "", "", "", "", "classes", f"{_params(net.head):,}", "all", "", "")
    return table
