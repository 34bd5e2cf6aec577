"""Why nonlinearity matters: without it, a deep network is one affine map."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def superposition_error(net: nn.Module, shape: tuple[int, ...] = (3, 32, 32), seed: int = 0) -> float:
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


def collapse_to_affine(net: nn.Module, shape: tuple[int, ...] = (3, 32, 32), seed: int = 0
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
