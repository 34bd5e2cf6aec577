"""The model table printed at the start of training and by `cnnlab-rf`: layers, shapes, parameters, RF."""

from __future__ import annotations

from rich.table import Table
from torch import nn

from cnnlab.models import Backbone
from cnnlab.models.receptive_field import sees_whole_image, trace_fields

SHORT = {"Conv2d": "conv", "MaxPool2d": "maxpool", "AvgPool2d": "avgpool"}


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _submodule(features: nn.Module, name: str) -> nn.Module | None:
    """The module a traced layer calls; None for a functional call (F.max_pool2d in a custom forward)."""
    try:
        return features.get_submodule(name)
    except AttributeError:
        return None


def summary_table(net: Backbone, input_shape: tuple[int, int, int]) -> Table:
    """A rich table: per spatial layer (in the traced graph's order, branches included) its geometry, output
    size and receptive field; then the head; the caption gives the field at the features' output, or why
    there is none."""
    table = Table(title=f"{type(net).__name__}: {_params(net):,} parameters", title_justify="left")
    for column in ("layer", "op", "k", "s", "p", "d", "out", "params", "RF", "jump", "start"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    if sees_whole_image(net.features):
        for name, module in net.features.named_modules():
            if isinstance(module, nn.Linear):
                row = (f"features.{name}", "linear", "", "", "", "", str(module.out_features), f"{_params(module):,}")
                table.add_row(*row, "all", "", "")
        table.caption = "every unit sees the whole image (the image is flattened first)"
    else:
        analysis = trace_fields(net.features, input_shape)
        for rf in analysis.layers:
            module = _submodule(net.features, rf.name)
            table.add_row(
                rf.name,
                SHORT.get(rf.kind, rf.kind),
                str(rf.kernel),
                str(rf.stride),
                str(rf.padding),
                str(rf.dilation),
                f"{rf.out_height}×{rf.out_size}",
                f"{_params(module):,}" if module is not None else "0",
                f"{rf.size}×{rf.size}",
                str(rf.jump),
                f"{rf.start:g}",
            )
        if analysis.reason is not None:
            table.caption = f"receptive field unknown: {analysis.reason}"
        elif analysis.whole_image:
            table.caption = "features output: every unit sees the whole image"
        elif analysis.final is not None:
            final = analysis.final
            table.caption = (
                f"features output: {final.out_height}×{final.out_size} maps, receptive field {final.size}×{final.size} "
                f"on the {input_shape[1]}×{input_shape[2]} input"
            )
        table.caption_justify = "left"
    table.add_row("head", "head", "", "", "", "", "classes", f"{_params(net.head):,}", "all", "", "")
    return table
