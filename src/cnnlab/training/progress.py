"""The training progress bar, redrawn every few batches rather than after each one."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


class SteppedRichProgressBar(RichProgressBar):
    """Lightning's RichProgressBar, updated every `every` training batches (and at an epoch's last batch).

    The stock bar updates its task and metrics after every batch and its render thread wakes 100 times a second;
    rendering takes the GIL from the training loop. py-spy on the default CPU run put the bar's thread at ~6% of
    the training loop's samples. Every 10 batches is still several redraws a second on a laptop CPU.
    """

    def __init__(self, every: int = 10, refresh_rate: int = 4, **kwargs) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.every = every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        done = batch_idx + 1
        if done % self.every == 0 or done == self.total_train_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
