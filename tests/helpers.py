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


class SignalAtEpochEnd(L.Callback):
    """Send this process `signum` at the end of training epoch `epoch`: after its last batch, before the next."""

    def __init__(self, epoch: int, signum: int = signal.SIGTERM) -> None:
        self.epoch, self.signum = epoch, signum

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), self.signum)


class SignalTwiceAt(SignalAt):
    """Send SIGINT twice during batch `batch` of epoch `epoch`: the second before the first is acted on."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)
            os.kill(os.getpid(), self.signum)


class PoisonAt(L.Callback):
    """Overwrite one weight with NaN at the start of epoch `epoch`, so the loss becomes NaN."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                weight = next(pl_module.parameters())  # may be channels_last, where .view(-1) fails
                weight[(0,) * weight.dim()] = float("nan")


class BatchCounter(L.Callback):
    """Count the batches each loop runs; the last instance is kept in BatchCounter.last for the test to read."""

    last: "BatchCounter | None" = None

    def __init__(self) -> None:
        self.train: list[int] = []  # batches per training epoch
        self.val = self.test = 0
        BatchCounter.last = self

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.train.append(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train[-1] += 1

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.val += 1

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.test += 1


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


class BatchKinds(L.Callback):
    """Record what each loop's batches hold, (tuple length, soft-target row sums), for the label-mixing tests; the
    last instance is kept in BatchKinds.last."""

    last: "BatchKinds | None" = None

    def __init__(self) -> None:
        self.lengths: dict[str, set[int]] = {"train": set(), "val": set(), "test": set()}
        self.row_sums: list[torch.Tensor] = []
        BatchKinds.last = self

    def _see(self, stage: str, batch) -> None:
        self.lengths[stage].add(len(batch))
        if len(batch) == 3:
            self.row_sums.append(batch[2].sum(-1).cpu())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._see("train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._see("val", batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._see("test", batch)


class FailOnTest(L.Callback):
    """Fail the run's final test, after its training ended well (a user error, so the run policy records it)."""

    def on_test_start(self, trainer, pl_module) -> None:
        from cnnlab.errors import DataError

        raise DataError("the test set broke. Fix: none, this is a test.")


class SignalInTest(L.Callback):
    """Send this process `signum` once, at the first batch of the run's final test (after fit has ended)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum, self.sent = signum, False

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class SignalInValidation(L.Callback):
    """Send this process `signum` at the first batch of epoch `epoch`'s validation (not the sanity check)."""

    def __init__(self, epoch: int, signum: int = signal.SIGTERM) -> None:
        self.epoch, self.signum = epoch, signum

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 0 and not trainer.sanity_checking:
            os.kill(os.getpid(), self.signum)
