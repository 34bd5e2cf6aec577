"""`cnnlab-linearity [overrides]`: the same architecture with and without a nonlinearity, tested for linearity."""

from __future__ import annotations

import torch
from rich.table import Table
from torch import nn

from cnnlab.config import compose_checked
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.lab.tools import build_net, input_shape, model_choice, parser
from cnnlab.runs import console, console_script


@torch.no_grad()
def superposition_error(net: nn.Module, shape: tuple[int, int, int], seed: int = 0) -> float:
    """Relative error of g(a·x₁ + b·x₂) = a·g(x₁) + b·g(x₂) for the bias-free part g(x) = f(x) − f(0).

    Zero (to float precision) for a linear network; far from zero once a nonlinearity is in the way.
    """
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    x1, x2 = torch.randn(8, *shape, generator=gen), torch.randn(8, *shape, generator=gen)
    a, b = 0.7, -1.3
    zero = net(torch.zeros(1, *shape))
    g = lambda x: net(x) - zero  # noqa: E731
    lhs, rhs = g(a * x1 + b * x2), a * g(x1) + b * g(x2)
    return float((lhs - rhs).norm() / rhs.norm().clamp_min(1e-12))


def collapse_to_affine(
    net: nn.Module, shape: tuple[int, int, int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Read off W and b with f(x) ≈ W·x + b (W from the Jacobian at 0) and return (W, b, relative error
    of that single affine map on random inputs). For a linear network the error is float noise."""
    net.eval()
    zero = torch.zeros(1, *shape)
    bias = net(zero).detach()[0]
    weight = torch.autograd.functional.jacobian(lambda x: net(x)[0], zero)[:, 0].reshape(len(bias), -1)
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        exact = net(x)
        affine = x.reshape(len(x), -1) @ weight.T + bias
    return weight, bias, float((exact - affine).norm() / exact.norm().clamp_min(1e-12))


def _main() -> None:
    """For activation ∈ {identity, relu, gelu}: superposition error and the error of one affine map."""
    args = parser("cnnlab-linearity", __doc__, ckpt=False, out=False).parse_args()
    table = Table(
        title="Is the network one affine map f(x) = Wx + b? (errors are relative; ~1e-6 means yes)",
        title_justify="left",
    )
    for column in ("activation", "pool", "superposition error", "single affine map error"):
        table.add_column(column, justify="left" if column in ("activation", "pool") else "right")
    base = compose_checked(args.overrides)
    if "activation" not in base.model:
        raise CnnlabError(
            f"cnnlab-linearity swaps model.activation, but the model ({model_choice(base)}) has no activation key "
            f"(its keys: {', '.join(k for k in base.model if not k.startswith('_'))}). "
            f"Fix: a model with one, e.g. model=cnn or model=resnet."
        )
    shape = input_shape(base)
    for activation in ("identity", "relu", "gelu"):
        try:
            cfg = compose_checked([*args.overrides, f"model.activation={activation}"])
            net = build_net(cfg)
        except Exception as error:  # e.g. FastNet: its activation key names only smooth nonlinearities
            refusal = error  # Hydra wraps what the model's constructor raised
            while refusal is not None and not isinstance(refusal, ConfigError):
                refusal = refusal.__cause__
            if refusal is None:
                raise
            why = str(refusal).split(" Fix:")[0]
            raise CnnlabError(
                f"cnnlab-linearity swaps model.activation to identity, relu and gelu, but the model "
                f"({model_choice(base)}) refuses {activation}: {why} Fix: a model whose activation can be "
                f"identity, e.g. model=cnn or model=resnet."
            ) from None
        _, _, affine = collapse_to_affine(net, shape)
        pool = str(cfg.model.get("pool", "-"))
        table.add_row(activation, pool, f"{superposition_error(net, shape):.2e}", f"{affine:.2e}")
    console().print(table)
    if base.model.get("pool") in ("max", "blur"):  # blur is MaxBlurPool: a max, then a blur
        print(
            f"{base.model.pool} pooling takes a max, itself a nonlinearity: use model.pool=avg or stride to see a "
            f"purely linear stack collapse."
        )


main = console_script(_main)
