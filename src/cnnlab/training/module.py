"""The LightningModule: a backbone built from the run config, cross-entropy, accuracy, epoch-level logging."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from cnnlab.models import image_hw
from cnnlab.training.optim import can_fuse, param_groups

STAGES = ("train", "val", "test")


class ImageClassifier(L.LightningModule):
    """Train the run config's backbone with (label-smoothed) cross-entropy; log loss and accuracy per epoch.

    The module is built from the resolved run config alone and stores it as its hyperparameters, so
    `ImageClassifier.load_from_checkpoint(path)` rebuilds any run's model: the one way to load a checkpoint.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config}, logger=False)
        self.config = config
        self.net: torch.nn.Module = instantiate(config["model"])
        self.smoothing = config["label_smoothing"]
        self.tta = config.get("tta", 0)
        self.tta_select = config.get("tta_select")  # runs from before it existed: every image
        self.tta_share = MeanMetric()  # share of test images given the extra views
        self.consistency_shift = config.get("consistency_shift", 0)  # runs from before it existed: off
        if self.consistency_shift is None:  # an eighth of the shorter side: 4 px on 32-px images, 1 on 8-px digits
            self.consistency_shift = max(1, min(image_hw(config["data"]["image_size"])) // 8)
        self.consistency = MeanMetric()  # share of test images whose top-1 class two random shifts agree on
        self.channels_last = config.get("channels_last") is True  # train.py resolves "auto" before building
        num_classes = config["data"].get("num_classes") or self.net.num_classes  # older runs: the net's
        self.acc = torch.nn.ModuleDict(
            {f"{s}_acc": MulticlassAccuracy(num_classes, average="micro") for s in (*STAGES, "tta")}
        )
        self.mean_loss = torch.nn.ModuleDict({f"{s}_loss": MeanMetric() for s in STAGES})
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.curves: dict[str, list[float]] = {}  # per-epoch values, saved in checkpoints and in metrics.json

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, ...], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Under a label-mixing augmentation (augment.ops ends with a MixingOp) a training batch is (images, labels,
        B×K mixed soft targets): the loss is cross-entropy against the mixed targets (label smoothing applies to
        them as to one-hot labels); train/loss is that cross-entropy without smoothing (the mixed objective, whose
        floor is the mixed targets' entropy, not 0: not comparable with val/loss), and train/acc is the accuracy on
        the mixed images against each image's dominant label (the class with the largest share of its target)."""
        images, labels, *mixed = batch
        logits = self(images)
        targets = mixed[0] if mixed else labels
        loss = F.cross_entropy(logits, targets, label_smoothing=self.smoothing if stage == "train" else 0.0)
        # Report plain cross-entropy in every stage so train and val losses are comparable under smoothing.
        reported = F.cross_entropy(logits.detach(), targets) if stage == "train" and self.smoothing else loss.detach()
        acc, mean_loss = self.acc[f"{stage}_acc"], self.mean_loss[f"{stage}_loss"]
        acc.update(logits.detach(), targets.argmax(-1) if mixed else labels)
        mean_loss.update(reported, weight=len(labels))
        return loss, logits

    def _log_epoch(self, stage: str) -> None:
        """Log the stage's metric objects once, from its epoch-end hook; Lightning then computes, logs and resets
        them. They accumulate on the device and sync once per epoch. Calling self.log with them at every step
        gave the same values but cost ~1.5% of a CPU training step in Lightning's bookkeeping (py-spy)."""
        self.log(f"{stage}/loss", self.mean_loss[f"{stage}_loss"], on_step=False, on_epoch=True)
        self.log(f"{stage}/acc", self.acc[f"{stage}_acc"], on_step=False, on_epoch=True)
        if stage == "test" and self.tta:
            self.log("test/acc_tta", self.acc["tta_acc"], on_step=False, on_epoch=True)
            if self.tta_select is not None:
                self.log("test/tta_share", self.tta_share, on_step=False, on_epoch=True)
        if stage == "test" and self.consistency_shift:
            self.log("test/consistency", self.consistency, on_step=False, on_epoch=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        # The same shifts for every test of this run's config (eval too): drawn from the run's seed, on the device.
        self.shift_generator = torch.Generator(self.device).manual_seed(self.config.get("seed", 0))

    def test_step(self, batch, batch_idx: int) -> None:
        _, logits = self._step(batch, "test")
        self.test_confusion.update(logits.argmax(-1), batch[1])
        if self.tta:
            images = batch[0]
            if self.tta_select is None:
                tta_logits = predict_tta(self, images, self.tta, logits)
            else:
                tta_logits, unsure = predict_tta_selected(self, images, self.tta, logits, self.tta_select)
                self.tta_share.update(unsure.float().mean(), weight=len(images))
            self.acc["tta_acc"].update(tta_logits, batch[1])
        if self.consistency_shift:
            self.consistency.update(shift_agreement(self, batch[0], self.consistency_shift, self.shift_generator))

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_train_epoch_end(self) -> None:
        """Log and record the epoch's curves, and the overfitting symptom as its own curve (how far val trails)."""
        self._log_epoch("train")
        epoch = {"train/loss": self.mean_loss["train_loss"].compute(), "train/acc": self.acc["train_acc"].compute()}
        val = self.trainer.callback_metrics  # validation ran just before this hook
        if "val/acc" in val:
            epoch.update({"val/loss": val["val/loss"], "val/acc": val["val/acc"]})
            self.log("gap/acc", epoch["train/acc"] - epoch["val/acc"], sync_dist=True)
            self.log("gap/loss", epoch["val/loss"] - epoch["train/loss"], sync_dist=True)
        for name, value in epoch.items():
            self.curves.setdefault(name, []).append(float(value))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["curves"] = self.curves

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the curves only to continue training (resume): a test of the best checkpoint must not swap the
        run's full curves for the copy saved at its best epoch."""
        trainer = self._trainer
        if trainer is None or trainer.state.fn == "fit":
            self.curves = {k: list(v) for k, v in checkpoint.get("curves", {}).items()}

    def configure_optimizers(self):
        make_optimizer = instantiate(self.config["optim"])
        fused = (
            {"fused": True}
            if "fused" in inspect.signature(make_optimizer.func).parameters and can_fuse(self.net)
            else {}
        )
        optimizer = make_optimizer(
            param_groups(self.net, self.config["optim"], self.config.get("norm_lr_scale", 1.0)), **fused
        )
        schedule = instantiate(self.config["schedule"])(optimizer, int(self.trainer.estimated_stepping_batches))
        return (
            optimizer
            if schedule is None
            else {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
        )


def predict_tta(
    model: torch.nn.Module, images: torch.Tensor, level: int, logits: torch.Tensor | None = None
) -> torch.Tensor:
    """Test-time augmentation. level 1: mean logits of image and mirror; 2: level 1 averaged half-and-half
    with level 1 on the image translated one pixel up-left and down-right (reflect padding): six views.
    `logits`, the model's output on `images` when the caller has it already, saves one of those views."""
    plain = model(images) if logits is None else logits

    def mirror(x: torch.Tensor, unflipped: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * (model(x) if unflipped is None else unflipped) + 0.5 * model(x.flip(-1))

    if level == 1:
        return mirror(images, plain)
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    translated = 0.5 * mirror(padded[..., :h, :w]) + 0.5 * mirror(padded[..., 2:, 2:])
    return 0.5 * mirror(images, plain) + 0.5 * translated


def predict_tta_selected(
    model: torch.nn.Module, images: torch.Tensor, level: int, logits: torch.Tensor, below: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective TTA (the hiverge record): the extra views only for images whose plain prediction's top softmax
    probability is below `below`; the others keep `logits`. Returns the logits and the mask of images given views."""
    unsure = logits.float().softmax(-1).amax(-1) < below
    selected = logits.clone()
    if unsure.any():  # one host sync per test batch: the views' batch size depends on it
        selected[unsure] = predict_tta(model, images[unsure], level, logits[unsure]).to(selected.dtype)
    return selected, unsure


def shifted(images: torch.Tensor, shift: int, offsets: torch.Tensor) -> torch.Tensor:
    """Each image moved by its own (dy, dx) in −shift..shift (offsets: B×2 ints), the border filled by reflecting
    the image (so no black edge tells the network it moved): a crop of the reflect-padded image."""
    b, c, h, w = images.shape
    padded = F.pad(images, (shift,) * 4, mode="reflect")
    width = w + 2 * shift
    dy, dx = (offsets[:, :1] + shift), (offsets[:, 1:] + shift)
    rows = (dy + torch.arange(h, device=images.device)).view(b, h, 1)
    cols = (dx + torch.arange(w, device=images.device)).view(b, 1, w)
    index = (rows * width + cols).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


@torch.no_grad()
def shift_agreement(
    model: torch.nn.Module, images: torch.Tensor, shift: int, generator: torch.Generator
) -> torch.Tensor:
    """Per image, 1.0 when its top-1 class is the same for two random shifts of up to `shift` px on each axis, else
    0.0: Zhang's (2019) consistency, with shifts drawn independently per copy and reflect padding."""
    draws = torch.randint(-shift, shift + 1, (2, len(images), 2), generator=generator, device=images.device)
    first, second = (model(shifted(images, shift, d)).argmax(-1) for d in draws)
    return (first == second).float()
