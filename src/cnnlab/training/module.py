"""The LightningModule: any backbone, cross-entropy, accuracy, epoch-level logging."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from cnnlab.models.tta import predict
from cnnlab.training.optim import build_optimizer, build_schedule, check_optim


class ImageClassifier(L.LightningModule):
    """Train `net` with (label-smoothed) cross-entropy; log loss and accuracy per epoch, never per step."""

    def __init__(self, net: nn.Module, optim: dict[str, Any], schedule: dict[str, Any],
                 label_smoothing: float = 0.0, num_classes: int = 10, config: dict[str, Any] | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.config = config  # the resolved run config, stored in every checkpoint so eval can rebuild the model
        self.net = net
        self.optim_cfg, self.schedule_cfg = dict(optim), dict(schedule)
        self.smoothing = label_smoothing
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.eval_criterion = nn.CrossEntropyLoss()
        stages = ("train", "val", "test")
        self.acc = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes, average="micro") for s in stages})
        self.mean_loss = nn.ModuleDict({f"{s}_loss": MeanMetric() for s in stages})
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.tta_level = getattr(net, "tta_level", 0)
        if self.tta_level:
            self.acc["test_acc_tta"] = MulticlassAccuracy(num_classes, average="micro")
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def setup(self, stage: str) -> None:
        """Nets that initialise from data (FastNet's whitening conv) see 5,000 training images first.
        A resumed run then overwrites these weights with the checkpoint's."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and hasattr(self.net, "init_from_data") and datamodule is not None:
            raw = datamodule.train_set.tensors[0][:5000].to(self.device)
            self.net.init_from_data(datamodule.prepare_batch(raw, train=False))

    def on_train_epoch_start(self) -> None:
        if hasattr(self.net, "on_epoch_start"):
            self.net.on_epoch_start(self.current_epoch)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = (self.criterion if stage == "train" else self.eval_criterion)(logits, labels)
        # Report plain cross-entropy in every stage so train and val losses are comparable under smoothing.
        reported = self.eval_criterion(logits.detach(), labels) if stage == "train" and self.smoothing else loss.detach()
        acc, mean_loss = self.acc[f"{stage}_acc"], self.mean_loss[f"{stage}_loss"]
        acc.update(logits.detach(), labels)
        mean_loss.update(reported, weight=len(labels))
        return loss if stage == "train" else logits

    def _log_epoch(self, stage: str) -> None:
        """Log the stage's metric objects once, from its epoch-end hook; Lightning then computes, logs and resets them.

        Metric objects accumulate on the device and sync once per epoch. Calling self.log with them at every step
        (as before) gave the same values but cost ~1.5% of a CPU training step in Lightning's bookkeeping.
        """
        self.log(f"{stage}/loss", self.mean_loss[f"{stage}_loss"], on_step=False, on_epoch=True)
        self.log(f"{stage}/acc", self.acc[f"{stage}_acc"], on_step=False, on_epoch=True)
        if stage == "test" and self.tta_level:
            self.log("test/acc_tta", self.acc["test_acc_tta"], on_step=False, on_epoch=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        logits = self._step(batch, "test")
        self.test_confusion.update(logits.argmax(-1), batch[1])
        if self.tta_level:
            self.acc["test_acc_tta"].update(predict(self.net, batch[0], self.tta_level), batch[1])

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_train_epoch_end(self) -> None:
        """Training's epoch metrics, and the overfitting symptom as its own curve: how far validation trails training."""
        self._log_epoch("train")
        val = self.trainer.callback_metrics  # validation ran just before this hook
        if "val/acc" in val:
            self.log("gap/acc", self.acc["train_acc"].compute() - val["val/acc"], sync_dist=True)
            self.log("gap/loss", val["val/loss"] - self.mean_loss["train_loss"].compute(), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cnnlab_config"] = self.config

    def configure_optimizers(self):
        check_optim(self.optim_cfg, self.schedule_cfg)
        optimizer = build_optimizer(self.net, self.optim_cfg)
        schedule = build_schedule(optimizer, self.schedule_cfg, int(self.trainer.estimated_stepping_batches))
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": schedule}
