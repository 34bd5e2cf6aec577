"""`cnnlab-linearity [overrides]`: the same architecture with and without a nonlinearity, tested for linearity."""

from __future__ import annotations

from rich.table import Table

from cnnlab.builders import build_net
from cnnlab.lab.cli import console, compose_config, parser, run_tool
from cnnlab.lab.linearity import collapse_to_affine, superposition_error


def main() -> None:
    """For activation ∈ {identity, relu, gelu}: superposition error and the error of one affine map."""
    args = parser("cnnlab-linearity", __doc__).parse_args()
    table = Table(title="Is the network one affine map f(x) = Wx + b? (errors are relative; ~1e-6 means yes)",
                  title_justify="left")
    for column in ("activation", "pool", "superposition error", "single affine map error"):
        table.add_column(column, justify="left" if column in ("activation", "pool") else "right")
    for activation in ("identity", "relu", "gelu"):
        cfg = compose_config([*args.overrides, f"model.activation={activation}"])
        net = build_net(cfg)
        _, _, affine = collapse_to_affine(net)
        table.add_row(activation, cfg.model.get("pool", "-"), f"{superposition_error(net):.2e}", f"{affine:.2e}")
    console().print(table)
    print("max pooling is itself a nonlinearity: use model.pool=avg or stride to see a purely linear stack collapse.")


def cli() -> None:
    """Console entry point."""
    run_tool(main)
