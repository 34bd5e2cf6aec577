"""`cnnlab-params`: weight counts of a dense layer versus a convolution, and of model=mlp versus model=cnn."""

from __future__ import annotations

from rich.table import Table

from cnnlab.builders import build_net, count_parameters
from cnnlab.lab.cli import console, compose_config, parser, run_tool
from cnnlab.lab.params import conv_layer, dense_equivalent, dense_layer


def main() -> None:
    """Print the layer comparison for the given input size, then the CIFAR-10 model totals."""
    p = parser("cnnlab-params", __doc__)
    p.add_argument("--size", type=int, default=224, help="input height = width (default 224)")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--units", type=int, default=1000, help="outputs of the dense layer (default 1000)")
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--out-channels", type=int, default=64)
    args = p.parse_args()
    conv = conv_layer(args.size, args.size, args.channels, args.out_channels, args.kernel)
    rows = [dense_layer(args.size, args.size, args.channels, args.units), conv,
            dense_equivalent(conv, args.size, args.size, args.channels)]
    table = Table(title="One layer on a fixed image: dense versus convolution", title_justify="left")
    for column in ("layer", "weights", "biases", "total", "output units"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in rows:
        table.add_row(row.name, f"{row.weights:,}", f"{row.biases:,}", f"{row.total:,}", f"{row.outputs:,}")
    console().print(table)
    models = Table(title="Whole models on CIFAR-10 (32×32×3, 10 classes)", title_justify="left")
    models.add_column("model")
    models.add_column("parameters", justify="right")
    for name, overrides in (("mlp", ["model=mlp"]), ("cnn", ["model=cnn", *args.overrides])):
        net = build_net(compose_config(overrides))
        models.add_row(" ".join(overrides), f"{count_parameters(net):,}")
    console().print(models)


def cli() -> None:
    """Console entry point."""
    run_tool(main)
