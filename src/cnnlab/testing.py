"""Contract checks for the parts a user brings: a backbone, a datamodule, an augmentation op.

Call them from your own tests (docs/extending.md); each raises AssertionError naming what broke the contract:

    from cnnlab.testing import check_backbone, check_datamodule, check_op
    check_backbone(MyNet(num_classes=5, in_channels=1, image_size=28), input_shape=(1, 28, 28), num_classes=5)
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.augment.ops import BatchOp, MixingOp
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.models import Backbone
from cnnlab.models.receptive_field import empirical_receptive_field, input_gradient, trace_fields


def check_backbone(net: nn.Module, input_shape: tuple[int, int, int], num_classes: int) -> int | None:
    """What training and the lab tools need of a model: B×C×H×W → B×num_classes logits, gradients reach every
    trainable parameter, and (for a `Backbone`) a receptive field that the traced graph gives and the input
    gradient agrees with where it fits the image. Returns that field (None when the model has none to give)."""
    torch.manual_seed(0)
    x = torch.randn(4, *input_shape)
    net.train()
    logits = net(x)
    assert tuple(logits.shape) == (4, num_classes), (
        f"{type(net).__name__} gives {tuple(logits.shape)} for a batch of 4 {input_shape} images; "
        f"expected (4, {num_classes}): one logit per class"
    )
    logits.square().mean().backward()
    dead = [name for name, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not dead, f"no gradient reaches {', '.join(dead[:5])}: these parameters never train"
    net.eval()
    with torch.no_grad():
        assert tuple(net(x).shape) == (4, num_classes), "eval mode changes the output shape"
    if not isinstance(net, Backbone):
        return None
    analysis = trace_fields(net.features, input_shape)
    if analysis.reason is not None or analysis.final is None:
        return None  # the model table and cnnlab-rf then say why in one line
    size = analysis.final.size
    net.zero_grad()
    measured = empirical_receptive_field(input_gradient(net.features, input_shape))
    expected = tuple(min(size, side) for side in input_shape[1:])
    assert all(m <= e for m, e in zip(measured, expected)), (
        f"the input gradient of the centre unit spans {measured} px, more than the traced receptive field "
        f"{size}×{size} allows: the features use an operation the tracer counts wrongly"
    )
    return size


def check_datamodule(datamodule: ImageDataModule, batches: int = 2) -> None:
    """The datamodule loads what it declares: uint8 C×H×W images and labels in 0..num_classes − 1 in every split,
    one class name and one mean/std per class and channel, normalised float batches of the declared shape."""
    shape = datamodule.input_shape
    assert len(datamodule.class_names) == datamodule.num_classes, "one class name per class"
    assert len(datamodule.mean) == len(datamodule.std) == shape[0], "one mean and one std per channel"
    datamodule.setup("fit")
    for split in ("train_set", "val_set", "test_set"):
        images, labels = getattr(datamodule, split).tensors
        datamodule.check_arrays(images[: 2 * batches], labels[: 2 * batches], split)
    assert len(datamodule.train_set.tensors[0]) > 0, "the training split is empty"
    for i, (images, _labels) in enumerate(datamodule._loader(datamodule.train_set, datamodule.batch_size, True)):
        if i == batches:
            break
        assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == shape, (
            f"a training batch is {images.dtype} {tuple(images.shape[1:])}, not uint8 {shape}"
        )
        ready = datamodule.prepare_batch(images, train=False)
        assert ready.dtype == torch.float32 and ready.shape == images.shape, "prepare_batch changes the shape"
        assert torch.isfinite(ready).all(), "normalised images hold inf or nan (a std of 0?)"


def check_op(op: BatchOp, input_shape: tuple[int, int, int], num_classes: int = 10) -> None:
    """An augmentation op keeps a batch's shape, dtype and device, leaves pixels in [0, 1], draws per sample
    from torch's RNG (the same seed gives the same batch); a MixingOp also returns B×K targets whose rows sum
    to 1."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, *input_shape, generator=gen)
    labels = torch.randint(0, num_classes, (16,), generator=gen)
    targets = torch.zeros(16, num_classes).scatter_(1, labels.view(-1, 1), 1.0)

    def apply(seed: int):
        torch.manual_seed(seed)
        return op(x.clone(), targets.clone()) if isinstance(op, MixingOp) else (op(x.clone()), None)

    out, mixed = apply(1)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device, (
        f"{op!r} turns a {tuple(x.shape)} {x.dtype} batch into {tuple(out.shape)} {out.dtype}"
    )
    assert out.min() >= 0 and out.max() <= 1, f"{op!r} leaves pixels outside [0, 1]"
    again, _ = apply(1)
    assert torch.equal(out, again), f"{op!r} does not draw from torch's seeded RNG: the same seed gave another batch"
    if mixed is not None:
        assert mixed.shape == targets.shape, f"{op!r} returns targets of shape {tuple(mixed.shape)}"
        assert torch.allclose(mixed.sum(1), torch.ones(16)), f"{op!r} returns target rows that do not sum to 1"
