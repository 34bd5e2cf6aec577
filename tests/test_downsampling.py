"""Learned (pool=conv, All-CNN) and anti-aliased (pool=blur, MaxBlurPool) downsampling: geometry, receptive
field by hand, parameters, the filter, and the equivalences that pin them."""

import pytest
import torch
import torch.nn.functional as F

from cnnlab.models import count_parameters
from cnnlab.models.cnn import BlurPool2d, ConvNet
from cnnlab.models.receptive_field import empirical_receptive_field, input_gradient, receptive_field
from conftest import CIFAR10

SHAPE = (3, 32, 32)


def test_conv_downsampling_field_by_hand():
    """depth 2: conv 3×3 → 3 (jump 1); stride-2 3×3 conv: 3 + 2·1 = 5, jump 2; conv: 5 + 2·2 = 9; stride-2 conv:
    9 + 2·2 = 13, jump 4. Every padding is 1 on a 3×3 kernel, so each unit stays centred: start 0."""
    torch.manual_seed(0)
    net = ConvNet(depth=2, width=4, pool="conv", **CIFAR10)
    layers = receptive_field(net.features, SHAPE)
    assert [(r.size, r.jump, r.start, r.out_size) for r in layers] == [
        (3, 1, 0, 32),
        (5, 2, 0, 16),
        (9, 2, 0, 16),
        (13, 4, 0, 8),
    ]
    assert empirical_receptive_field(input_gradient(net.features, SHAPE)) == (13, 13)


def test_blur_downsampling_field_by_hand():
    """depth 2: conv → 3; 2×2 max pool at stride 1: 3 + 1 = 4, start 0.5; 3-tap blur at stride 2 (padding 1):
    4 + 2 = 6, jump 2; conv: 6 + 2·2 = 10; max pool: 10 + 1·2 = 12, start 0.5 + 0.5·2 = 1.5; blur: 12 + 2·2 = 16,
    jump 4. The maps: 32 → 31 → 16 → 16 → 15 → 8."""
    net = ConvNet(depth=2, width=4, pool="blur", **CIFAR10)
    layers = receptive_field(net.features, SHAPE)
    assert [(r.kind, r.size, r.jump, r.start, r.out_size) for r in layers] == [
        ("Conv2d", 3, 1, 0, 32),
        ("MaxPool2d", 4, 1, 0.5, 31),
        ("BlurPool2d", 6, 2, 0.5, 16),
        ("Conv2d", 10, 2, 0.5, 16),
        ("MaxPool2d", 12, 2, 1.5, 15),
        ("BlurPool2d", 16, 4, 1.5, 8),
    ]
    measured = empirical_receptive_field(input_gradient(net.features, SHAPE))
    assert all(m <= 16 for m in measured) and min(measured) >= 12  # max pooling routes some gradients away


def test_a_5_tap_blur_widens_the_field_by_two_jumps_more():
    """5 taps, padding 2: the first blur adds 4 instead of 2 (at jump 1), the second 4·2 instead of 2·2: 16 + 2 + 4."""
    layers = receptive_field(ConvNet(depth=2, width=4, pool="blur", blur_size=5, **CIFAR10).features, SHAPE)
    assert layers[-1].size == 22 and layers[-1].out_size == 8


def test_parameters_conv_adds_a_conv_and_bn_per_block_blur_adds_none_that_train():
    """width 4, depth 2, BN (2 per channel), convs without bias: the max-pooled net is 3·4·9 + 8 + 4·8·9 + 16 +
    head 8·10 + 10 = 510; pool=conv adds 4·4·9 + 8 = 152 and 8·8·9 + 16 = 592; pool=blur's filters are frozen."""
    assert count_parameters(ConvNet(depth=2, width=4, **CIFAR10)) == 510
    assert count_parameters(ConvNet(depth=2, width=4, pool="conv", **CIFAR10)) == 510 + 152 + 592
    assert count_parameters(ConvNet(depth=2, width=4, pool="blur", **CIFAR10)) == 510


def test_blur_filter_is_the_normalised_binomial_outer_product_per_channel():
    blur = BlurPool2d(2, 3)
    expected = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    assert torch.equal(blur.weight[0, 0], expected) and torch.equal(blur.weight[1, 0], expected)
    flat = torch.full((1, 2, 8, 8), 0.7)
    assert torch.allclose(blur(flat), torch.full((1, 2, 4, 4), 0.7))  # replicate padding keeps a flat map flat


def test_one_tap_blur_is_max_pooling():
    """MaxPool(2, stride 1) then every second pixel is MaxPool(2, stride 2): blur_size=1 must match pool=max."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    blur = ConvNet(depth=2, width=4, pool="blur", blur_size=1, **CIFAR10).eval()
    plain = ConvNet(depth=2, width=4, pool="max", **CIFAR10).eval()
    plain.load_state_dict({k.replace(".4.", ".3."): v for k, v in blur.state_dict().items() if "4.weight" not in k})
    assert torch.allclose(blur(x), plain(x), atol=1e-6)


def test_blur_moves_a_shifted_edge_smoothly_where_max_pooling_jumps():
    """A vertical step edge moved one pixel at a time: the mass of one row of 2×2 max pooling's output changes by
    0, 1, 0, 1, ... (aliasing: half the shifts are invisible, the other half jump a whole output pixel); after
    the 3-tap blur (1 2 1)/4 at stride 2 each pixel of shift moves it by exactly half an output pixel."""
    ops = {"max": lambda x: F.max_pool2d(x, 2), "blur": lambda x: BlurPool2d(1, 3)(F.max_pool2d(x, 2, 1))}
    for pool, expected in (("max", [0.0, -1.0] * 4), ("blur", [-0.5] * 8)):
        mass = []
        for column in range(4, 13):
            edge = torch.zeros(1, 1, 16, 16)
            edge[..., column:] = 1
            mass.append(float(ops[pool](edge)[0, 0, 4].sum()))
        assert torch.tensor(mass).diff().tolist() == expected, pool


@pytest.mark.parametrize("size", [2, 4, 9])
def test_an_even_or_too_long_blur_is_refused_in_one_line(size):
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"model.blur_size={size} is not a valid choice. Valid: 1, 3, 5, 7"):
        ConvNet(pool="blur", blur_size=size, **CIFAR10)
