"""What the lab images show: augmented training samples, and an unaugmented validation image through the blocks."""

from types import SimpleNamespace

import torch

from cnnlab.augment.ops import Augmentation, BatchOp
from cnnlab.data.tiny import TinyDataModule
from cnnlab.models.cnn import ConvNet
from cnnlab.training.lab_images import LabImages


class Inverted(BatchOp):
    """An augmentation op no one could mistake: every training image turned to its negative."""

    name = "invert"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return 1 - images


class Classifier(torch.nn.Module):
    """What LabImages needs of the LightningModule: `net`, `device`, and a forward through the net."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.device = net, torch.device("cpu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class Writer:
    def __init__(self) -> None:
        self.images: dict[str, torch.Tensor] = {}

    def add_image(self, tag, image, step) -> None:
        self.images[tag] = image


def test_training_samples_are_augmented_and_the_followed_image_is_the_first_validation_image_unaugmented():
    dm = TinyDataModule(train_count=200, test_count=50, val_size=50, augment=Augmentation([Inverted()]))
    dm.setup("fit")
    net = ConvNet(depth=2, width=4, num_classes=10, in_channels=3, image_size=[32, 32])
    seen = []
    net.features[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    callback, writer = LabImages(samples=8), Writer()
    callback._writer = lambda trainer: writer
    callback.on_fit_start(SimpleNamespace(datamodule=dm, global_step=0), Classifier(net))

    raw = dm.train_set.tensors[0][:8].float() / 255
    grid = writer.images["inputs/augmented_train_samples"]  # make_grid: 2-px padding around each 32-px cell
    assert torch.allclose(grid[:, 2:34, 2:34], 1 - raw[0]) and torch.allclose(grid[:, 2:34, 36:68], 1 - raw[1])
    # the image followed through the blocks: the first validation image, normalised, not augmented
    followed = seen[0]  # then the empirical receptive field's own probe
    first_val = dm.val_set.tensors[0][:1].float() / 255
    assert torch.allclose(followed, dm.normalize(first_val))
    assert {"feature_maps_start/block1", "feature_maps_start/block2"} <= writer.images.keys()
