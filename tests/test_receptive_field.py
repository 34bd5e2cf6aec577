"""Receptive fields: analytic sizes, jumps and starts match hand calculations and the input gradient."""

import pytest
import torch
from torch import nn

from cnnlab.models.cnn import ConvNet
from cnnlab.models.receptive_field import (
    empirical_receptive_field,
    final_receptive_field,
    input_gradient,
    receptive_field,
    too_small_warning,
)
from conftest import CIFAR10

CIFAR = (3, 32, 32)  # C×H×W of a CIFAR-10 image: the input shape the tests below trace with


def conv_stack(n: int, dilation: int = 1) -> nn.Sequential:
    # A fixed init: for 4 of 200 random inits of three 3-channel conv+ReLU layers the centre unit is dead on all
    # of input_gradient's 8 inputs, its gradient is 0 and the test failed, depending on what ran before it.
    torch.manual_seed(0)
    layers = []
    for _ in range(n):
        layers += [nn.Conv2d(3, 3, 3, padding=dilation, dilation=dilation), nn.ReLU()]
    return nn.Sequential(*layers)


def test_three_stride_one_3x3_convs_see_7x7_analytically_and_empirically():
    stack = conv_stack(3)
    assert [layer.size for layer in receptive_field(stack, CIFAR)] == [3, 5, 7]
    assert empirical_receptive_field(input_gradient(stack, CIFAR)) == (7, 7)


def test_dilation_two_3x3_conv_sees_5x5():
    stack = conv_stack(1, dilation=2)
    assert final_receptive_field(stack, CIFAR) == 5
    assert empirical_receptive_field(input_gradient(stack, CIFAR)) == (5, 5)


def test_pooling_multiplies_the_jump():
    layers = receptive_field(ConvNet(depth=3, width=4, **CIFAR10).features, CIFAR)
    assert [(layer.kind, layer.size, layer.jump) for layer in layers] == [
        ("Conv2d", 3, 1),
        ("MaxPool2d", 4, 2),
        ("Conv2d", 8, 2),
        ("MaxPool2d", 10, 4),
        ("Conv2d", 18, 4),
        ("MaxPool2d", 22, 8),
    ]
    assert [layer.out_size for layer in layers] == [32, 16, 16, 8, 8, 4]


def test_default_cnn_empirical_field_matches_analytic_size():
    net = ConvNet(depth=2, width=4, pool="avg", activation="identity", **CIFAR10)
    size = final_receptive_field(net.features, CIFAR)
    assert size == 10
    # the centre unit of an even-sized map is off-centre by half a jump; its field is fully inside the image
    assert empirical_receptive_field(input_gradient(net.features, CIFAR)) == (size, size)


@pytest.mark.parametrize("depth, small", [(2, True), (5, False)])
def test_a_field_smaller_than_the_image_is_flagged(depth, small):
    warning = too_small_warning(ConvNet(depth=depth, width=4, **CIFAR10).features, CIFAR)
    assert (warning is not None) == small
    if small:
        assert "10×10 is smaller than the 32×32 input" in warning


def test_first_unit_centres_follow_padding_and_pooling():
    layers = receptive_field(ConvNet(depth=3, width=4, **CIFAR10).features, CIFAR)
    # start_out = start_in + ((k − 1)/2 − p)·jump_in: 3×3 pad-1 convs keep it, each 2×2 pool adds half its input jump
    assert [layer.start for layer in layers] == [0.0, 0.5, 0.5, 1.5, 1.5, 3.5]  # last: pixels 0..7 → centre 3.5
    unpadded = receptive_field(nn.Sequential(nn.Conv2d(3, 3, 5), nn.Conv2d(3, 3, 5, padding=2)), CIFAR)
    assert [(layer.start, layer.out_size) for layer in unpadded] == [
        (2.0, 28),
        (2.0, 28),
    ]  # 5×5 unpadded: centre of 0..4


def test_a_field_exactly_the_image_size_is_not_flagged():
    exact = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(3, 3, 16))  # 2 + (16 − 1)·2 = 32
    short = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(3, 3, 15))  # 2 + 14·2 = 30
    assert final_receptive_field(exact, CIFAR) == 32 and too_small_warning(exact, CIFAR) is None
    assert final_receptive_field(short, CIFAR) == 30 and "30×30 is smaller" in too_small_warning(short, CIFAR)


def test_empirical_field_is_the_bounding_box_of_the_gradient_above_the_threshold():
    grad = torch.zeros(32, 32)
    grad[10:13, 4:9] = 2.0  # 3 rows × 5 columns
    grad[0, 0] = 0.15  # below a 0.1 threshold (0.1 × the maximum 2.0), above a 0.0 one
    assert empirical_receptive_field(grad, threshold=0.1) == (3, 5)
    assert empirical_receptive_field(grad) == (13, 9)
    assert empirical_receptive_field(torch.zeros(32, 32)) == (0, 0)
    one = torch.zeros(8, 8)
    one[2, 3] = 1.0
    assert empirical_receptive_field(one) == (1, 1)


def test_input_gradient_is_taken_at_the_centre_unit_and_from_its_own_seed():
    conv = nn.Conv2d(3, 2, 3, padding=1)
    grad = input_gradient(conv, (3, 32, 32))
    rows, cols = grad.sum(1).nonzero().flatten().tolist(), grad.sum(0).nonzero().flatten().tolist()
    assert (rows, cols) == ([15, 16, 17], [15, 16, 17])  # output 32×32: centre unit (16, 16), its 3×3 window
    stack = conv_stack(2)
    torch.manual_seed(1)
    first = input_gradient(stack, CIFAR)
    torch.manual_seed(2)
    assert torch.equal(
        input_gradient(stack, CIFAR), first
    )  # the random inputs come from its own seed, not the global RNG
