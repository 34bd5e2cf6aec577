"""Pinned model behaviour: receptive-field records, the model table, FastNet's parts, every refusal's exact line.

Expected values are worked out by hand in the comments (not by calling the code under test), with the recurrences
k_eff = d·(k − 1) + 1,  size += (k_eff − 1)·jump,  start += ((k_eff − 1)/2 − p)·jump (jump before the layer),
jump *= s,  out = ⌊(out + 2p − k_eff)/s⌋ + 1.
"""

import io

import pytest
import torch
from rich.console import Console
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import Backbone, count_parameters
from cnnlab.models.cnn import ConvNet
from cnnlab.models.fast import DiracConv, FastNet, FrozenScaleBatchNorm, Scale, conv_group
from cnnlab.models.mlp import MLP
from cnnlab.models.receptive_field import (
    LayerRF,
    empirical_receptive_field,
    final_receptive_field,
    input_gradient,
    receptive_field,
    sees_whole_image,
    too_small_warning,
)
from cnnlab.models.summary import summary_table
from cnnlab.training.callbacks import whiten_

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it

CIFAR = (3, 32, 32)  # C×H×W of a CIFAR-10 image: the input shape the tests below trace with


def mixed_geometry() -> nn.Sequential:
    """One layer of each kind, with every geometry field distinct from its default somewhere."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, stride=2, padding=1),  # 0
        nn.ReLU(),  # 1: moves no pixels
        nn.Conv2d(4, 4, 3, padding=3, dilation=3),  # 2
        nn.MaxPool2d(3, stride=1, padding=1),  # 3: stride given, not the kernel
        nn.AvgPool2d(2),  # 4: AvgPool2d has no dilation attribute
        nn.MaxPool2d(2, stride=2, dilation=2),  # 5
    )


def render(table) -> list[str]:
    """The table as plain text lines, as the console prints it."""
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table)
    return console.file.getvalue().splitlines()


def cells(lines: list[str], border: str) -> list[list[str]]:
    """The stripped cells of the lines that start with `border` (┃ for the header, │ for the rows)."""
    return [[cell.strip() for cell in line.split(border)[1:-1]] for line in lines if line.startswith(border)]


# ---------------------------------------------------------------------------------------------------------------
# receptive_field.py
# ---------------------------------------------------------------------------------------------------------------


def test_each_spatial_layer_gets_its_name_kind_geometry_size_jump_start_and_out_size():
    """Every LayerRF field of a net mixing strides, paddings, dilations and both pool kinds, on an odd image."""
    # image 33, size 1, jump 1, start 0.
    # 0 conv k5 s2 p1 d1: k_eff 5; start 0 + (2 − 1)·1 = 1; size 1 + 4·1 = 5; jump 2; out ⌊(33 + 2 − 5)/2⌋ + 1 = 16
    # 2 conv k3 s1 p3 d3: k_eff 7; start 1 + (3 − 3)·2 = 1; size 5 + 6·2 = 17; jump 2; out (16 + 6 − 7) + 1 = 16
    # 3 maxpool k3 s1 p1: k_eff 3; start 1 + (1 − 1)·2 = 1; size 17 + 2·2 = 21; jump 2; out (16 + 2 − 3) + 1 = 16
    # 4 avgpool k2 s2 p0 (d 1): start 1 + (0.5 − 0)·2 = 2; size 21 + 1·2 = 23; jump 4; out ⌊14/2⌋ + 1 = 8
    # 5 maxpool k2 s2 p0 d2: k_eff 3; start 2 + (1 − 0)·4 = 6; size 23 + 2·4 = 31; jump 8; out ⌊(8 − 3)/2⌋ + 1 = 3
    assert receptive_field(mixed_geometry(), (3, 33, 33)) == [
        LayerRF("0", "Conv2d", 5, 2, 1, 1, 5, 2, 1.0, 16, 16),
        LayerRF("2", "Conv2d", 3, 1, 3, 3, 17, 2, 1.0, 16, 16),
        LayerRF("3", "MaxPool2d", 3, 1, 1, 1, 21, 2, 1.0, 16, 16),
        LayerRF("4", "AvgPool2d", 2, 2, 0, 1, 23, 4, 2.0, 8, 8),
        LayerRF("5", "MaxPool2d", 2, 2, 0, 2, 31, 8, 6.0, 3, 3),
    ]


def test_out_sizes_are_the_integer_sizes_torch_produces():
    """out_size is an int equal to the size of each layer's real output, floor division included."""
    net = mixed_geometry()
    x, sizes = torch.zeros(1, 3, 33, 33), []
    for layer in net:
        x = layer(x)
        if not isinstance(layer, nn.ReLU):
            sizes.append(x.shape[-1])
    records = receptive_field(net, (3, 33, 33))
    assert [r.out_size for r in records] == sizes == [16, 16, 16, 8, 3]
    assert all(type(r.out_size) is int for r in records)


def test_dilation_enters_the_effective_kernel_as_d_times_k_minus_one_plus_one():
    """k_eff = d·(k − 1) + 1 for kernels and dilations where d + k and other slips would differ."""
    # d 3, k 3: 3·2 + 1 = 7;  d 2, k 5: 2·4 + 1 = 9
    assert final_receptive_field(nn.Sequential(nn.Conv2d(3, 3, 3, dilation=3)), CIFAR) == 7
    assert final_receptive_field(nn.Sequential(nn.Conv2d(3, 3, 5, dilation=2)), CIFAR) == 9


def test_fastnet_receptive_field_by_hand():
    """FastNet's whitening 2×2 conv, its Dirac convs and 2×2 pools give the hand-computed fields."""
    # 0 whiten k2 p0: start 0.5, size 2, jump 1, out 31.  Each group: conv (+2·jump), pool (+jump, start +jump/2,
    # jump ×2), conv (+2·jump).  Group 1: 4, 5 (jump 2, start 1, out 15), 9.  Group 2: 13, 15 (jump 4, start 2,
    # out 7), 23.  Group 3: 31, 35 (jump 8, start 4, out 3), 51.
    records = receptive_field(FastNet(widths=(8, 16, 4), **CIFAR10).features, CIFAR)
    assert [(r.name, r.size, r.jump, r.start, r.out_size) for r in records] == [
        ("0", 2, 1, 0.5, 31),
        ("2.0", 4, 1, 0.5, 31),
        ("2.1", 5, 2, 1.0, 15),
        ("2.4", 9, 2, 1.0, 15),
        ("3.0", 13, 2, 1.0, 15),
        ("3.1", 15, 4, 2.0, 7),
        ("3.4", 23, 4, 2.0, 7),
        ("4.0", 31, 4, 2.0, 7),
        ("4.1", 35, 8, 4.0, 3),
        ("4.4", 51, 8, 4.0, 3),
    ]


def test_flattened_features_see_the_whole_image_and_a_net_without_spatial_layers_sees_one_pixel():
    """An MLP's field is the image whatever its size (never flagged); no conv/pool: field 1; a CNN is not flat."""
    assert sees_whole_image(MLP(hidden=[4], **CIFAR10).features) and not sees_whole_image(
        ConvNet(depth=1, width=2, **CIFAR10).features
    )
    flat = MLP(hidden=[4], image_size=28, num_classes=10, in_channels=3).features
    assert final_receptive_field(flat, CIFAR) == 32 and final_receptive_field(flat, (3, 28, 28)) == 28
    assert too_small_warning(flat, (3, 64, 64)) is None
    pointwise = nn.Sequential(nn.ReLU(), nn.Identity())
    assert receptive_field(pointwise, CIFAR) == [] and final_receptive_field(pointwise, CIFAR) == 1


def test_too_small_warning_is_one_exact_line_with_the_image_size_it_was_given():
    """The warning names the field and the image and the three knobs that grow it; image_size is honoured."""
    three_convs = nn.Sequential(*(nn.Conv2d(3, 3, 3, padding=1) for _ in range(3)))  # 3, 5, 7
    assert too_small_warning(three_convs, (3, 16, 16)) == (
        "receptive field 7×7 is smaller than the 16×16 input: no unit before global pooling sees a whole object "
        "(the lesson's 'receptive field too small for the task'). "
        "Add depth (model.depth), pooling (model.pool) or dilation (model.dilation)."
    )
    assert too_small_warning(three_convs, (3, 7, 7)) is None  # exactly the image


def test_input_gradient_of_a_linear_conv_is_the_absolute_summed_kernel_times_the_samples():
    """Linear case: |Σ_out-channels w| summed over input channels, once per sample, on the centre unit's window."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 3, padding=1)
    # ∂ Σ_n Σ_o out[n, o, 8, 8] / ∂ x[n, c, 7 + i, 7 + j] = Σ_o w[o, c, i, j] for every sample n (16×16 output)
    per_sample = conv.weight.detach().sum(0).abs().sum(0)  # 3×3; its signs are mixed, so abs is not a no-op
    assert (conv.weight.sum(0) < 0).any() and (conv.weight.sum(0) > 0).any()
    for samples, grad in ((8, input_gradient(conv, (3, 16, 16))), (3, input_gradient(conv, (3, 16, 16), samples=3))):
        expected = torch.zeros(16, 16)
        expected[7:10, 7:10] = samples * per_sample
        assert grad.shape == (16, 16) and torch.allclose(grad, expected, atol=1e-5)


def test_input_gradient_is_measured_in_eval_mode_and_leaves_the_mode_and_statistics_alone():
    """BN uses running statistics (batch ones would spread the gradient over the image); mode is restored."""
    torch.manual_seed(0)
    net = ConvNet(
        depth=1, width=4, pool="avg", activation="identity", **CIFAR10
    )  # conv 3×3 → BN → 2×2 avg pool: field 4
    features = net.features.train()
    bn = features[0][1]
    running_mean = bn.running_mean.clone()
    assert empirical_receptive_field(input_gradient(features, CIFAR)) == (4, 4)
    assert features.training and torch.equal(bn.running_mean, running_mean)
    features.eval()
    input_gradient(features, CIFAR)
    assert not features.training and not bn.training


def test_input_gradient_default_seed_is_zero():
    """The default draws are those of seed 0, and another seed gives another map on a nonlinear net."""
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())
    default = input_gradient(stack, CIFAR)
    assert torch.equal(default, input_gradient(stack, CIFAR, seed=0))
    assert not torch.equal(default, input_gradient(stack, CIFAR, seed=1))


def test_empirical_field_keeps_only_values_strictly_above_the_threshold():
    """A value exactly at threshold·max is left out of the box."""
    grad = torch.zeros(8, 8)
    grad[3, 3] = 1.0
    grad[3, 6] = 0.5  # exactly 0.5 × the maximum
    assert empirical_receptive_field(grad, threshold=0.5) == (1, 1)
    assert empirical_receptive_field(grad, threshold=0.49) == (1, 4)


def test_same_padding_string_is_read_as_its_numeric_padding():
    """A conv built with padding='same' is described like the equivalent explicit padding."""
    same = receptive_field(nn.Sequential(nn.Conv2d(3, 3, 5, padding="same")), CIFAR)
    assert same == receptive_field(nn.Sequential(nn.Conv2d(3, 3, 5, padding=2)), CIFAR)


def test_ceil_mode_pooling_out_size_matches_torch():
    """A 2×2 ceil_mode pool on 31 pixels gives ⌈29/2⌉ + 1 = 16, as torch does."""
    assert receptive_field(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), (3, 31, 31))[0].out_size == 16


# ---------------------------------------------------------------------------------------------------------------
# summary.py
# ---------------------------------------------------------------------------------------------------------------

HEADER = ["layer", "op", "k", "s", "p", "d", "out", "params", "RF", "jump", "start"]


def test_cnn_table_has_the_title_columns_and_one_row_per_spatial_layer_then_the_head():
    """A ConvNet's table, parsed from its text: counts with thousands separators, geometry, RF, jump, start."""
    net = ConvNet(depth=2, width=16, pool="avg", dilation=2, **CIFAR10)
    # conv 3→16: 3·16·9 = 432, BN 32; conv 16→32: 16·32·9 = 4,608, BN 64; head 32·10 + 10 = 330; total 5,466.
    # 3×3 d2 (k_eff 5, p 2): start 0 + (2 − 2)·1 = 0, size 5; pool: start 0.5, size 6, jump 2; conv: size 6 + 4·2
    # = 14; pool: start 0.5 + 0.5·2 = 1.5, size 16, jump 4.
    lines = render(summary_table(net, CIFAR))
    assert lines[0].strip() == "ConvNet: 5,466 parameters"
    assert cells(lines, "┃") == [HEADER]
    assert cells(lines, "│") == [
        ["0.0", "conv", "3", "1", "2", "2", "32×32", "432", "5×5", "1", "0"],
        ["0.3", "avgpool", "2", "2", "0", "1", "16×16", "0", "6×6", "2", "0.5"],
        ["1.0", "conv", "3", "1", "2", "2", "16×16", "4,608", "14×14", "2", "0.5"],
        ["1.3", "avgpool", "2", "2", "0", "1", "8×8", "0", "16×16", "4", "1.5"],
        ["head", "head", "", "", "", "", "classes", "330", "all", "", ""],
    ]


def test_fastnet_table_counts_frozen_parameters_and_names_max_pools():
    """The title counts every parameter, frozen ones too (unlike count_parameters); plain convs and pools get the
    short names conv/maxpool, a conv subclass keeps its class name."""
    net = FastNet(widths=(8, 16, 4), **CIFAR10)
    # trainable 6,600 (see test_fastnet_exact_parameter_counts) + frozen whitening weights 24·3·2·2 = 288
    # + frozen BN scales 8 + 8 + 16 + 16 + 4 + 4 = 56  →  6,944
    lines = render(summary_table(net, CIFAR))
    assert lines[0].strip() == "FastNet: 6,944 parameters"
    rows = cells(lines, "│")
    assert rows[:3] == [
        ["0", "conv", "2", "1", "0", "1", "31×31", "312", "2×2", "1", "0.5"],  # 288 frozen weights + 24 bias
        ["2.0", "DiracConv", "3", "1", "1", "1", "31×31", "1,728", "4×4", "1", "0.5"],  # 24·8·9
        ["2.1", "maxpool", "2", "2", "0", "1", "15×15", "0", "5×5", "2", "1"],
    ]
    assert rows[-2:] == [
        ["4.4", "DiracConv", "3", "1", "1", "1", "3×3", "144", "51×51", "8", "4"],  # 4·4·9
        ["head", "head", "", "", "", "", "classes", "40", "all", "", ""],  # 4·10, no bias
    ]


def test_mlp_table_lists_its_linear_layers_and_sees_everything():
    """An MLP's rows are its Linear layers (width, parameters, RF 'all'), then the head."""
    # 3072·16 + 16 = 49,168;  16·8 + 8 = 136;  head 8·10 + 10 = 90;  total 49,394
    lines = render(summary_table(MLP(hidden=[16, 8], **CIFAR10), CIFAR))
    assert lines[0].strip() == "MLP: 49,394 parameters"
    assert cells(lines, "┃") == [HEADER]
    assert cells(lines, "│") == [
        ["features.1", "linear", "", "", "", "", "16", "49,168", "all", "", ""],
        ["features.4", "linear", "", "", "", "", "8", "136", "all", "", ""],
        ["head", "head", "", "", "", "", "classes", "90", "all", "", ""],
    ]


def test_table_uses_the_image_size_it_is_given_and_its_alignment():
    """Output sizes follow image_size; the layer column and title are left-aligned, every number right-aligned."""
    table = summary_table(ConvNet(depth=2, width=4, **CIFAR10), (3, 64, 64))
    assert [row[6] for row in cells(render(table), "│")] == ["64×64", "32×32", "32×32", "16×16", "classes"]
    assert [c.justify for c in table.columns] == ["left"] + ["right"] * 10
    assert table.title_justify == "left"
    default = cells(render(summary_table(ConvNet(depth=1, width=4, **CIFAR10), CIFAR)), "│")
    assert [row[6] for row in default] == ["32×32", "16×16", "classes"]


# ---------------------------------------------------------------------------------------------------------------
# fast.py
# ---------------------------------------------------------------------------------------------------------------


def test_fastnet_exact_parameter_counts_and_shapes_for_small_widths():
    """Trainable and total parameters by hand, the 3×3 last map and the logits' shape."""
    net = FastNet(widths=(8, 16, 4), **CIFAR10)
    # trainable: whitening bias 24; convs 24·8·9 + 8·8·9 + 8·16·9 + 16·16·9 + 16·4·9 + 4·4·9 = 6,480;
    # BN biases 2·(8 + 16 + 4) = 56; head 4·10 (no bias) = 40  →  6,600
    assert count_parameters(net) == 24 + 6480 + 56 + 40
    assert sum(p.numel() for p in net.parameters()) == 6600 + 288 + 56  # + frozen whitening weights, BN scales
    x = torch.randn(2, 3, 32, 32)
    # 32 → whiten 2×2 unpadded 31 → pools: 15, 7, 3 → head 3×3 max pool → 1
    assert net.features(x).shape == (2, 4, 3, 3)
    assert net(x).shape == (2, 10)


def test_fastnet_layers_are_laid_out_as_documented():
    """whiten (frozen weights, trainable bias, unpadded) → GELU → groups; head: global max pool (airbench's 3×3 pool
    on the 3×3 map of a 32-px image), flatten, linear, scale."""
    net = FastNet(widths=(8, 16, 4), **CIFAR10)
    whiten = net.features[0]
    assert [type(m) for m in net.features] == [nn.Conv2d, nn.GELU, nn.Sequential, nn.Sequential, nn.Sequential]
    assert (whiten.in_channels, whiten.out_channels, whiten.kernel_size, whiten.padding) == (3, 24, (2, 2), (0, 0))
    assert not whiten.weight.requires_grad and whiten.bias.requires_grad
    group = [DiracConv, nn.MaxPool2d, FrozenScaleBatchNorm, nn.GELU, DiracConv, FrozenScaleBatchNorm, nn.GELU]
    assert all([type(m) for m in net.features[i]] == group for i in (2, 3, 4))
    assert [(net.features[i][0].in_channels, net.features[i][0].out_channels) for i in (2, 3, 4)] == [
        (24, 8),
        (8, 16),
        (16, 4),
    ]
    assert net.features[2][1].kernel_size == 2
    pool, flatten, linear, scale = net.head
    assert type(pool) is nn.AdaptiveMaxPool2d and pool.output_size == 1 and type(flatten) is nn.Flatten
    assert (linear.in_features, linear.out_features, linear.bias) == (4, 10, None)
    assert type(scale) is Scale and scale.scale == 1 / 9
    assert net.num_classes == 10


def test_whitening_width_is_two_signs_times_the_patch_size():
    """whiten_kernel k gives 2·3·k² whitening channels (54 for k = 3) and the net still fits a 32×32 image."""
    net = FastNet(widths=(4, 4, 4), whiten_kernel=3, **CIFAR10)
    assert net.features[0].out_channels == 54 and net.features[2][0].in_channels == 54
    assert net.features[0].kernel_size == (3, 3)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)  # 32 → 30 → 15 → 7 → 3 → 1


def test_fastnet_logits_are_the_head_linear_output_scaled_by_one_ninth_and_num_classes_is_honoured():
    """logits = linear(pooled features) / 9; num_classes sets the head and the attribute."""
    torch.manual_seed(0)
    net = FastNet(widths=(4, 4, 4), num_classes=7, in_channels=3, image_size=32).eval()
    x = torch.randn(3, 3, 32, 32)
    pooled = net.head[:2](net.features(x))
    assert torch.allclose(net(x), net.head[2](pooled) / 9, atol=1e-7)
    assert net(x).shape == (3, 7) and net.num_classes == 7
    assert torch.equal(Scale(0.25)(torch.tensor([4.0, -8.0])), torch.tensor([1.0, -2.0]))


def test_frozen_scale_batchnorm_uses_the_usual_momentum_convention_and_a_tiny_eps():
    """momentum 0.6 keeps 60% of the running mean (torch's 0.4); eps 1e-12; scale frozen at 1, bias trains."""
    bn = FrozenScaleBatchNorm(2)
    assert bn.momentum == pytest.approx(0.4) and bn.eps == 1e-12
    assert not bn.weight.requires_grad and bn.bias.requires_grad and torch.equal(bn.weight, torch.ones(2))
    x = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0)) + torch.tensor([1.0, -2.0]).view(1, 2, 1, 1)
    bn.train()(x)
    # running = 0.6 · 0 + 0.4 · batch mean
    assert torch.allclose(bn.running_mean, 0.4 * x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert FrozenScaleBatchNorm(2, momentum=0.9).momentum == pytest.approx(0.1)


def test_bn_momentum_reaches_every_batchnorm_of_fastnet_and_conv_group():
    """bn_momentum is passed down: 0.9 → torch momentum 0.1 in all six BNs; the default 0.6 → 0.4."""

    def momenta(module):
        return [m.momentum for m in module.modules() if isinstance(m, FrozenScaleBatchNorm)]

    assert momenta(FastNet(widths=(4, 4, 4), bn_momentum=0.9, **CIFAR10)) == pytest.approx([0.1] * 6)
    assert momenta(FastNet(widths=(4, 4, 4), **CIFAR10)) == pytest.approx([0.4] * 6)
    assert momenta(conv_group(3, 4, 0.8)) == pytest.approx([0.2, 0.2])


def test_dirac_conv_starts_as_the_identity_on_its_first_channels_and_keeps_the_rest_random():
    """A same-size 3×3 conv without bias: outputs i < c_in copy input channel i; further filters stay random."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5)
    square, wider, narrower = DiracConv(4, 4), DiracConv(4, 8), DiracConv(4, 2)
    assert square.bias is None and square.kernel_size == (3, 3) and square.padding == (1, 1)
    assert torch.allclose(square(x), x, atol=1e-6)
    assert torch.allclose(wider(x)[:, :4], x, atol=1e-6)
    assert (wider.weight[4:] != 0).sum() > 100  # the four extra filters keep their random init (4·4·9 = 144 weights)
    assert torch.allclose(narrower(x), x[:, :2], atol=1e-6)


def test_whitening_fitted_on_data_whitens_its_patches_with_the_negative_half_mirroring_it():
    """After whiten_, the 24 outputs' patch covariance is [[I, −I], [−I, I]] on the images it was fitted on."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 16, 16, generator=gen) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    images[:, 2] += images[:, 0]  # correlated channels
    whiten = FastNet(widths=(4, 4, 4), **CIFAR10).features[0]
    with torch.no_grad():
        whiten_(whiten, images)
        out = nn.functional.conv2d(images, whiten.weight)  # no bias: centred features are not needed here
    flat = out.transpose(0, 1).reshape(24, -1)
    covariance = flat @ flat.T / flat.shape[1]  # whiten_ whitens the raw second moment (patches not centred)
    eye = torch.eye(12)
    assert torch.allclose(covariance, torch.cat((torch.cat((eye, -eye), 1), torch.cat((-eye, eye), 1))), atol=0.02)


# ---------------------------------------------------------------------------------------------------------------
# cnn.py and mlp.py
# ---------------------------------------------------------------------------------------------------------------

CONVNET_REFUSALS = [
    ({"pool": "maxx"}, "model.pool='maxx' is not a valid choice. Valid: max, avg, stride, conv, blur, none. "
     "Fix: pass e.g. model.pool=max."),
    ({"activation": "tanhh"}, "model.activation='tanhh' is not a valid choice. Valid: relu, gelu, silu, identity. "
     "Fix: pass e.g. model.activation=relu."),
    ({"depth": 0}, "model.depth=0 must be a positive integer. Fix: e.g. model.depth=3."),
    ({"depth": 2.0}, "model.depth=2.0 must be a positive integer. Fix: e.g. model.depth=3."),
    ({"width": -4}, "model.width=-4 must be a positive integer. Fix: e.g. model.width=32."),
    ({"convs_per_block": 0}, "model.convs_per_block=0 must be a positive integer. Fix: e.g. model.convs_per_block=1."),
    ({"kernel_size": 0}, "model.kernel_size=0 must be a positive integer. Fix: e.g. model.kernel_size=3."),
    ({"dilation": 0}, "model.dilation=0 must be a positive integer. Fix: e.g. model.dilation=1."),
    ({"kernel_size": 4}, "model.kernel_size=4 is even; 'same' padding needs an odd kernel. "
     "Fix: model.kernel_size=3 (or 5, 7)."),
    ({"dropout": -0.1}, "model.dropout=-0.1 is outside [0, 1). Fix: e.g. model.dropout=0.1."),
    ({"depth": 6}, "model.depth=6 with model.pool=max halves the 32×32 input 6 times, below 1×1. "
     "The largest valid depth is 5. Fix: model.depth<=5, or model.pool=none."),
    ({"depth": 7, "pool": "stride", "image_size": 64}, "model.depth=7 with model.pool=stride halves the 64×64 input "
     "7 times, below 1×1. The largest valid depth is 6. Fix: model.depth<=6, or model.pool=none."),
]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, message", CONVNET_REFUSALS, ids=["-".join(f"{k}={v}" for k, v in kw.items()) for kw, _ in CONVNET_REFUSALS]
)
def test_every_convnet_refusal_is_one_exact_line(kwargs, message):
    """Each bad value is refused with one line naming it, the valid values and the fix."""
    with pytest.raises(ConfigError) as error:
        ConvNet(**{**CIFAR10, **kwargs})
    assert str(error.value) == message


def test_image_size_sets_how_deep_a_downsampling_net_may_go():
    """At 64×64 six halvings fit and leave a 1×1 map."""
    net = ConvNet(depth=6, width=2, growth=1.0, image_size=64, num_classes=10, in_channels=3)
    assert net.features(torch.zeros(1, 3, 64, 64)).shape == (1, 2, 1, 1)


def test_a_boolean_width_is_refused_like_a_boolean_growth():
    """model.width=True is not a positive integer."""
    with pytest.raises(ConfigError, match=r"model.width=True must be a positive integer"):
        ConvNet(width=True, **CIFAR10)


def test_convnet_builds_the_requested_activation_batchnorm_and_classes():
    """activation, batchnorm and num_classes reach the layers and the attribute."""
    net = ConvNet(depth=2, width=4, convs_per_block=2, activation="gelu", num_classes=7, in_channels=3, image_size=32)
    assert sum(isinstance(m, nn.GELU) for m in net.modules()) == 4 and not any(
        isinstance(m, nn.ReLU) for m in net.modules()
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 4
    assert net.num_classes == 7 and net(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    plain = ConvNet(depth=2, width=4, batchnorm=False, activation="identity", **CIFAR10)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU)) for m in plain.modules())


def test_mlp_layers_carry_the_requested_activation_and_dropout():
    """Flatten, then Linear → activation → Dropout(p) per hidden width; the default dropout is 0."""
    net = MLP(hidden=[16, 8], activation="gelu", dropout=0.3, **CIFAR10)
    assert [type(m) for m in net.features] == [nn.Flatten] + [nn.Linear, nn.GELU, nn.Dropout] * 2
    assert [m.p for m in net.features if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert [m.p for m in MLP(hidden=[4, 4], **CIFAR10).features if isinstance(m, nn.Dropout)] == [0.0, 0.0]
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    train_mode = MLP(hidden=[8], **CIFAR10).train()
    assert torch.equal(train_mode(x), train_mode(x))  # no dropout unless asked


def test_mlp_input_size_classes_and_activation_refusal():
    """in_channels and image_size set the first layer; num_classes the head; a bad activation is always refused."""
    net = MLP(hidden=[4], in_channels=1, image_size=28, num_classes=7)
    # 1·28·28·4 + 4 = 3,140;  head 4·7 + 7 = 35
    assert count_parameters(net) == 3140 + 35
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 7) and net.num_classes == 7
    with pytest.raises(ConfigError) as error:
        MLP(hidden=[], activation="tanhh", **CIFAR10)  # refused even with no hidden layer to put it in
    assert str(error.value) == (
        "model.activation='tanhh' is not a valid choice. Valid: relu, gelu, silu, identity. "
        "Fix: pass e.g. model.activation=relu."
    )


def test_backbone_forward_is_head_after_features():
    """forward(x) = head(features(x)), in that order."""
    net = Backbone(nn.Sequential(nn.Flatten()), nn.Linear(12, 2), num_classes=2)
    x = torch.randn(3, 3, 2, 2)
    assert torch.equal(net(x), net.head(x.flatten(1)))


@pytest.mark.parametrize(
    "layer, image_size",
    [
        (nn.Conv2d(3, 3, 4, padding="same"), 9),  # even kernel: torch pads 1 left, 2 right
        (nn.Conv2d(3, 3, 3, padding="same", dilation=2), 8),
        (nn.Conv2d(3, 3, 3, padding="valid"), 8),
        (nn.MaxPool2d(3, stride=2, ceil_mode=True), 8),  # ⌈5/2⌉ + 1 = 4: the last window starts at 6 < 8
        (nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True), 7),  # ⌈7/2⌉ + 1 = 5, last start 8 ≥ 7 + 1: 4
        (nn.AvgPool2d(3, stride=3, ceil_mode=True), 10),
        (nn.MaxPool2d(2, stride=2, ceil_mode=False), 31),
        (nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True), 6),  # ⌈6/2⌉ + 1 = 4, last start 6 < 6 + 1: 4
        (nn.Conv2d(3, 3, 3, stride=2, padding=1), 32),  # a conv always floors: 31 // 2 + 1 = 16 (ceil would give 17)
    ],
)
def test_out_size_is_the_size_torch_produces(layer, image_size):
    """out_size of 'same'/'valid' convs and ceil_mode pools equals the shape of the layer's real output."""
    real = layer(torch.zeros(1, 3, image_size, image_size)).shape[-1]
    assert receptive_field(nn.Sequential(layer), (3, image_size, image_size))[0].out_size == real


def test_an_even_same_padded_conv_pads_the_smaller_half_on_the_left():
    """torch pads a 4-tap 'same' conv 1 left and 2 right, so the first unit is centred at (4 − 1)/2 − 1 = 0.5."""
    (layer,) = receptive_field(nn.Sequential(nn.Conv2d(3, 3, 4, padding="same")), (3, 9, 9))
    assert (layer.padding, layer.size, layer.start, layer.out_size) == (1, 4, 0.5, 9)
    assert isinstance(layer.padding, int)


def test_input_gradient_defaults_to_cifar_sized_images():
    """Without image_size the gradient map is 32×32, CIFAR-10's size (mutmut: a default of 33 survived)."""
    torch.manual_seed(0)
    assert tuple(input_gradient(nn.Sequential(nn.Conv2d(3, 2, 3, padding=1)), CIFAR).shape[-2:]) == (32, 32)
