"""Backbones: output shapes for every pooling × activation × depth, exact parameter counts, clear refusals."""

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import count_parameters
from cnnlab.models.cnn import ConvNet, block_channels
from cnnlab.models.mlp import MLP

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it


@pytest.mark.parametrize("pool", ["max", "avg", "stride", "none"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "identity"])
@pytest.mark.parametrize("depth", [1, 3, 5])
def test_output_shape_for_every_pool_activation_and_depth(pool, activation, depth):
    net = ConvNet(depth=depth, width=4, pool=pool, activation=activation, **CIFAR10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("pool, size", [("max", 4), ("avg", 4), ("stride", 4), ("none", 32)])
def test_blocks_shrink_space_and_grow_channels(pool, size):
    net = ConvNet(depth=3, width=8, pool=pool, **CIFAR10)
    assert net.features(torch.randn(1, 3, 32, 32)).shape == (1, 32, size, size)


def test_exact_parameter_count_of_a_known_config():
    # block 1: 3·8·3·3 conv (no bias, BN follows) + 2·8 BN = 232
    # block 2: 8·16·3·3 + 2·16 = 1,184;  head: 16·10 + 10 = 170
    assert count_parameters(ConvNet(depth=2, width=8, batchnorm=True, **CIFAR10)) == 232 + 1184 + 170
    # without BN each conv has a bias instead: (216 + 8) + (1152 + 16) + 170
    assert count_parameters(ConvNet(depth=2, width=8, batchnorm=False, **CIFAR10)) == 224 + 1168 + 170


def test_default_cnn_and_mlp_parameter_counts():
    assert block_channels(4, 32, 2.0) == [32, 64, 128, 256]
    # conv + BN per block: (864 + 64) + (18,432 + 128) + (73,728 + 256) + (294,912 + 512), head 256·10 + 10
    assert count_parameters(ConvNet(**CIFAR10)) == 928 + 18_560 + 73_984 + 295_424 + 2_570 == 391_466
    assert count_parameters(ConvNet(depth=3, **CIFAR10)) == 94_762  # the first three blocks, head 128·10 + 10
    # 3072·512 + 512 + 512·256 + 256 + 256·10 + 10
    assert count_parameters(MLP(**CIFAR10)) == 1_707_274


def test_stride_pooling_adds_no_parameters():
    assert count_parameters(ConvNet(pool="stride", **CIFAR10)) == count_parameters(ConvNet(pool="max", **CIFAR10))


@pytest.mark.parametrize("pool", ["max", "avg", "stride"])
def test_too_deep_is_refused_with_the_largest_valid_depth(pool):
    with pytest.raises(ConfigError, match=r"model.depth=6 .* largest valid depth is 5"):  # 32 / 2⁵ = 1
        ConvNet(depth=6, pool=pool, **CIFAR10)
    ConvNet(depth=6, width=2, pool="none", **CIFAR10)  # no downsampling: any depth fits


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pool": "maxx"}, r"model.pool='maxx'.*Valid: max, avg, stride, conv, blur, none"),
        ({"activation": "tanhh"}, r"model.activation='tanhh'.*Valid: relu, gelu, silu, identity"),
        ({"depth": 0}, r"model.depth=0 must be a positive integer"),
        ({"width": -4}, r"model.width=-4 must be a positive integer"),
        ({"dropout": 1.0}, r"model.dropout=1.0 is outside \[0, 1\)"),
        ({"kernel_size": 4}, r"model.kernel_size=4 is even"),
    ],
)
def test_bad_model_values_name_the_value_and_the_choices(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ConvNet(**{**CIFAR10, **kwargs})


def test_mlp_output_shape():
    assert MLP(hidden=[16], **CIFAR10).forward(torch.randn(5, 3, 32, 32)).shape == (5, 10)


def test_stride_pooling_puts_stride_two_on_the_last_conv_of_each_block():
    net = ConvNet(depth=2, width=4, convs_per_block=2, pool="stride", **CIFAR10)
    assert [m.stride[0] for m in net.modules() if isinstance(m, nn.Conv2d)] == [1, 2, 1, 2]


@pytest.mark.parametrize("dilation, kernel_size", [(2, 3), (3, 3), (2, 5)])
def test_dilated_convs_keep_the_spatial_size(dilation, kernel_size):
    net = ConvNet(depth=2, width=4, pool="none", dilation=dilation, kernel_size=kernel_size, **CIFAR10)
    assert net.features(torch.randn(1, 3, 32, 32)).shape == (1, 8, 32, 32)  # 'same' padding = d·(k − 1)/2


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    net = ConvNet(depth=1, width=8, dropout=0.5, batchnorm=False, **CIFAR10)
    net.train()
    assert not torch.equal(net(x), net(x))  # a fresh mask each call
    net.eval()
    assert torch.equal(net(x), net(x))
    plain = ConvNet(depth=1, width=8, dropout=0.0, batchnorm=False, **CIFAR10).train()
    assert torch.equal(plain(x), plain(x))


def test_model_arguments_are_checked_at_their_limits_with_one_exact_line():
    cases = [
        (lambda: MLP(dropout=1.0, **CIFAR10), "model.dropout=1.0 is outside [0, 1). Fix: e.g. model.dropout=0.1."),
        (lambda: MLP(hidden=[64, 0], **CIFAR10),
         "model.hidden=[64, 0] must hold positive layer widths. Fix: e.g. model.hidden=[512,256]."),
        (lambda: ConvNet(growth=0, **CIFAR10),
         "model.growth=0 must be a number > 0 (the channel multiplier per block). "
         "Fix: e.g. model.growth=2.0 (or 1.0 for constant width)."),
        (lambda: ConvNet(growth=True, **CIFAR10),
         "model.growth=True must be a number > 0 (the channel multiplier per block). "
         "Fix: e.g. model.growth=2.0 (or 1.0 for constant width)."),
        (lambda: ConvNet(padding_mode="mirror", **CIFAR10), "model.padding_mode='mirror' is not a valid choice. "
         "Valid: zeros, circular, reflect, replicate. Fix: pass e.g. model.padding_mode=zeros."),
    ]  # fmt: skip
    for build, message in cases:
        with pytest.raises(ConfigError) as error:
            build()
        assert str(error.value) == message
    assert MLP(dropout=0.99, hidden=[1], **CIFAR10).num_classes == 10  # the largest dropout and the smallest width pass
    assert block_channels(3, 1, 0.5) == [1, 1, 1]  # never fewer than one channel, never more than asked
    shrinking = ConvNet(depth=2, width=8, growth=0.5, **CIFAR10)  # a multiplier below 1 is valid: 8 then 4 channels
    assert [m.out_channels for m in shrinking.modules() if isinstance(m, torch.nn.Conv2d)] == [8, 4]


def test_padding_mode_and_convs_per_block_reach_every_conv():
    net = ConvNet(depth=2, width=4, convs_per_block=2, padding_mode="reflect", batchnorm=False, **CIFAR10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.padding_mode) for c in convs] == [
        (3, 4, "reflect"), (4, 4, "reflect"), (4, 8, "reflect"), (8, 8, "reflect"),
    ]  # fmt: skip
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
