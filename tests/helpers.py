"""Callbacks that inject faults into a training run, for the robustness tests."""

import os
import signal

import lightning as L
import torch


class SignalAt(L.Callback):
    """Send this process `signum` during batch `batch` of epoch `epoch`, as a user or scheduler would."""

    def __init__(self, epoch: int, batch: int = 2, signum: int = signal.SIGINT) -> None:
        self.epoch, self.batch, self.signum = epoch, batch, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


class PoisonAt(L.Callback):
    """Overwrite one weight with NaN at the start of epoch `epoch`, so the loss becomes NaN."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")


class ZeroWeightsAt(L.Callback):
    """Zero every weight just before the validation of epoch `epoch`: that epoch's val acc drops to the share of
    the class argmax picks on ties (~10 %), so the best epoch and the final epoch differ for certain."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.zero_()
