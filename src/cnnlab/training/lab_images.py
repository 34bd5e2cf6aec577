"""TensorBoard images that show what the network learned: filters, feature maps, inputs, RF, confusions."""

from __future__ import annotations

import lightning as L
import matplotlib.pyplot as plt
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from cnnlab.models.receptive_field import input_gradient, sees_whole_image


def _grid(images: torch.Tensor) -> torch.Tensor:
    """A grid of images, each scaled to [0, 1] on its own."""
    return make_grid(images, nrow=8, padding=1, pad_value=1, normalize=True, scale_each=True)


class LabImages(L.Callback):
    """Log, on rank zero: augmented training samples and first-layer filters at the start of fit; filters,
    feature maps of one fixed validation image after each block and the empirical receptive field at the
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
        if first_conv is not None and first_conv.in_channels == 3:
            writer.add_image(f"filters/first_layer_{when}", _grid(first_conv.weight.detach().float().cpu()), step)
        features = net.features
        if sees_whole_image(features):
            return
        datamodule = trainer.datamodule
        image = datamodule.prepare_batch(datamodule.val_set.tensors[0][:1].to(pl_module.device), train=False)
        was_training = net.training
        net.eval()
        x = image
        for i, block in enumerate(features):
            x = block(x)
            writer.add_image(f"feature_maps_{when}/block{i + 1}", _grid(x[0, :32].unsqueeze(1).float().cpu()), step)
        net.train(was_training)
        with torch.enable_grad():
            grad = input_gradient(features)
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
