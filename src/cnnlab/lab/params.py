"""`cnnlab-params`: weight counts of a dense layer versus a convolution, and of model=mlp versus model=cnn."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.utils import instantiate
from rich.table import Table

from cnnlab.config import compose_checked
from cnnlab.lab.tools import build_net, parser, positive_int
from cnnlab.models import count_parameters
from cnnlab.runs import console, console_script


@dataclass(frozen=True)
class LayerCount:
    """Weights and biases of one layer, and how many output units it produces."""

    name: str
    weights: int
    biases: int
    outputs: int

    @property
    def total(self) -> int:
        return self.weights + self.biases


def dense_layer(height: int, width: int, channels: int, units: int) -> LayerCount:
    """A fully connected layer from an H×W×C image to `units` outputs: every input meets every unit."""
    return LayerCount(f"dense {height}×{width}×{channels} → {units:,}", height * width * channels * units, units, units)


def conv_layer(height: int, width: int, channels: int, out_channels: int, kernel: int) -> LayerCount:
    """A k×k 'same' convolution: the same k·k·C weights per output channel at every position."""
    return LayerCount(
        f"conv {kernel}×{kernel}, {channels} → {out_channels} channels on {height}×{width}",
        kernel * kernel * channels * out_channels,
        out_channels,
        height * width * out_channels,
    )


def dense_equivalent(conv: LayerCount, height: int, width: int, channels: int) -> LayerCount:
    """The dense layer that would produce as many outputs as `conv` from the same image."""
    return dense_layer(height, width, channels, conv.outputs)


def _main() -> None:
    """Print the layer comparison for the given input size, then the CIFAR-10 model totals."""
    p = parser("cnnlab-params", __doc__, ckpt=False, out=False)
    p.add_argument("--size", type=positive_int, default=224, help="input height = width (default 224)")
    p.add_argument("--channels", type=positive_int, default=3)
    p.add_argument("--units", type=positive_int, default=1000, help="outputs of the dense layer (default 1000)")
    p.add_argument("--kernel", type=positive_int, default=3)
    p.add_argument("--out-channels", type=positive_int, default=64)
    args = p.parse_args()
    cfg = compose_checked(args.overrides)  # the command line first: bad input is refused before any table prints
    datamodule = instantiate(cfg.data)  # its declared shape only
    channels, height, width = datamodule.input_shape
    chosen = [o for o in args.overrides if o.startswith("model=")]
    others = [o for o in args.overrides if not o.startswith("model=")]
    data = [o for o in others if o.startswith(("data=", "data."))]
    totals = [
        (label, count_parameters(build_net(compose_checked(overrides))))
        for label, overrides in (
            ("model=mlp", ["model=mlp", *data]),
            (" ".join(chosen + [o for o in others if o.startswith("model.")]) or "model=cnn", args.overrides),
        )
    ]
    conv = conv_layer(args.size, args.size, args.channels, args.out_channels, args.kernel)
    rows = [
        dense_layer(args.size, args.size, args.channels, args.units),
        conv,
        dense_equivalent(conv, args.size, args.size, args.channels),
    ]
    table = Table(title="One layer on a fixed image: dense versus convolution", title_justify="left")
    for column in ("layer", "weights", "biases", "total", "output units"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in rows:
        table.add_row(row.name, f"{row.weights:,}", f"{row.biases:,}", f"{row.total:,}", f"{row.outputs:,}")
    console().print(table)
    models = Table(
        title=f"Whole models on {datamodule.name} ({height}×{width}×{channels}, {datamodule.num_classes} classes)",
        title_justify="left",
    )
    models.add_column("model")
    models.add_column("parameters", justify="right")
    for label, count in totals:
        models.add_row(label, f"{count:,}")
    console().print(models)


main = console_script(_main)
