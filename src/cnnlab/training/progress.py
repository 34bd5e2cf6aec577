"""The training progress bar, redrawn every few batches rather than after each one."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


class SteppedRichProgressBar(RichProgressBar):
    """Lightning's RichProgressBar, updated every `every` training batches (and at an epoch's last batch).

    The stock bar asks for a redraw after every batch and its render thread polls 100 times a second; in a
    terminal, py-spy on the default CPU run (1 torch thread) found that thread rendering for ~3% of the training
    loop's samples, holding the GIL the loop needs. Every 10 batches it was below py-spy's resolution, and is
    still several redraws a second on a laptop CPU.
    """

    def __init__(self, every: int = 10, refresh_rate: int = 4, **kwargs) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.every = every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        done = batch_idx + 1
        if done % self.every == 0 or done == self.total_train_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
