"""TensorBoard images that show what the network learned: filters, feature maps, inputs, RF, confusions."""

from __future__ import annotations

import lightning as L
import matplotlib.pyplot as plt
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from cnnlab.models import Backbone
from cnnlab.models.receptive_field import input_gradient, sees_whole_image, trace_fields


def _grid(images: torch.Tensor) -> torch.Tensor:
    """A grid of images, each scaled to [0, 1] on its own."""
    return make_grid(images, nrow=8, padding=1, pad_value=1, normalize=True, scale_each=True)


def _one_image(datamodule) -> torch.Tensor:
    """A fixed image to follow through the network: the first validation image, or with no validation split
    (data.val_size=0) the first test image."""
    images = datamodule.val_set.tensors[0]
    return (images if len(images) else datamodule.test_set.tensors[0])[:1]


class LabImages(L.Callback):
    """Log, on rank zero: augmented training samples and first-layer filters at the start of fit; filters,
    feature maps of one fixed image after each block of the features and the empirical receptive field at the
    start and end; the test confusion matrix after testing."""

    def __init__(self, samples: int = 32) -> None:
        self.samples = samples

    def _writer(self, trainer):
        """The TensorBoard writer on rank zero, or None (another logger, or another rank)."""
        tensorboard = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        return tensorboard[0].experiment if trainer.is_global_zero and tensorboard else None

    def on_fit_start(self, trainer, pl_module) -> None:
        writer = self._writer(trainer)
        if writer is None:
            return
        datamodule = trainer.datamodule
        raw = datamodule.train_set.tensors[0][: self.samples].to(pl_module.device)
        augmented = datamodule.augment(raw.float() / 255)
        writer.add_image("inputs/augmented_train_samples", make_grid(augmented.clamp(0, 1).cpu(), nrow=8), 0)
        self._log_weights_and_features(trainer, pl_module, writer, "start")

    def on_train_end(self, trainer, pl_module) -> None:
        writer = self._writer(trainer)
        if writer is not None:
            self._log_weights_and_features(trainer, pl_module, writer, "end")

    @torch.no_grad()
    def _log_weights_and_features(self, trainer, pl_module, writer, when: str) -> None:
        step = trainer.global_step
        net = pl_module.net
        first_conv = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if first_conv is not None and first_conv.in_channels in (1, 3):  # filters shown as grey or RGB pictures
            writer.add_image(f"filters/first_layer_{when}", _grid(first_conv.weight.detach().float().cpu()), step)
        if not isinstance(net, Backbone) or sees_whole_image(net.features):
            return
        datamodule = trainer.datamodule
        image = datamodule.prepare_batch(_one_image(datamodule).to(pl_module.device), train=False)
        maps: list[tuple[str, torch.Tensor]] = []
        hooks = [
            block.register_forward_hook(lambda _m, _i, out, name=name: maps.append((name, out)))
            for name, block in net.features.named_children()
        ]
        was_training = net.training
        net.eval()
        try:
            pl_module(image)
        finally:
            net.train(was_training)
            for hook in hooks:
                hook.remove()
        for name, out in maps:
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                tag = f"block{int(name) + 1}" if name.isdigit() else name  # a Sequential's blocks count from 1
                writer.add_image(f"feature_maps_{when}/{tag}", _grid(out[0, :32].unsqueeze(1).float().cpu()), step)
        if trace_fields(net.features, datamodule.input_shape).final is None:
            return  # no spatial map at the output (or no traceable field): no centre unit to follow
        with torch.enable_grad():
            grad = input_gradient(net.features, datamodule.input_shape)
        grad = grad / grad.max().clamp_min(1e-12)
        writer.add_image(f"receptive_field/empirical_{when}", grad[None], step)

    def on_test_end(self, trainer, pl_module) -> None:
        confusion = pl_module.test_confusion
        confusion.compute()  # on every rank: compute() gathers across DDP processes
        writer = self._writer(trainer)
        if writer is None:
            return
        names = list(trainer.datamodule.class_names)
        fig, ax = confusion.plot(labels=names)
        ax.set_title("Test confusion matrix")
        writer.add_figure("confusion_matrix/test", fig, trainer.global_step)
        plt.close(fig)
