"""Callbacks: throughput, per-epoch reseeding, graceful interruption and a non-finite-loss guard."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import lightning as L
import torch

from cnnlab.errors import CnnlabError


class ThroughputMeter(L.Callback):
    """Training images per second, timed over training batches only (validation excluded)."""

    def __init__(self) -> None:
        self.images, self.seconds, self._start = 0, 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch[1]) * trainer.world_size

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.training and self._start:
            self._stop_clock(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._start:
            self._stop_clock(pl_module)

    def _stop_clock(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._start
        self._start = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


class ReseedEachEpoch(L.Callback):
    """Seed the global RNG from (seed, epoch, rank) at each epoch start.

    Augmentation and dropout then depend only on the epoch, so a run resumed from an epoch-end
    checkpoint draws exactly what the uninterrupted run drew.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        torch.manual_seed((self.seed * 1_000_003 + trainer.current_epoch) * 64 + trainer.global_rank)


class RunInterrupted(Exception):
    """Raised after SIGINT/SIGTERM/SIGUSR2 once the current batch is done and a checkpoint is saved."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class GracefulInterrupt(L.Callback):
    """On SIGINT, SIGTERM or SIGUSR2 finish the batch, save checkpoints/interrupted.ckpt and stop.

    Resume uses checkpoints/last.ckpt, written at the end of the last completed epoch, so a resumed
    run replays the interrupted epoch exactly. A second Ctrl+C stops at once.
    """

    # SIGUSR2: the submitit launcher's warning that the SLURM time limit is near (hydra.launcher.signal_delay_s).
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.received is not None:  # second signal: the user means it
            raise KeyboardInterrupt
        self.received = signum

    def on_train_start(self, trainer, pl_module) -> None:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received is None:
            return
        path = self.checkpoint_dir / "interrupted.ckpt"
        trainer.save_checkpoint(path)
        raise RunInterrupted(
            f"{signal.Signals(self.received).name} received at epoch {trainer.current_epoch}, step {trainer.global_step}; "
            f"weights saved to {path}.",
            self.received,
        )

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class NonFiniteLoss(CnnlabError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(L.Callback):
    """Stop on a NaN/inf training loss before any checkpoint stores the broken weights.

    The check keeps a device-side flag and looks at it every `check_every` steps and before each
    validation (checkpoints are written after validation), so on a GPU it costs no per-step sync.
    """

    def __init__(self, checkpoint_dir: Path, check_every: int = 1) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.check_every = check_every
        self._step: torch.Tensor | None = None       # device-side step counter
        self._first_bad: torch.Tensor | None = None  # first step with a non-finite loss, −1 while none

    def on_train_start(self, trainer, pl_module) -> None:
        device = pl_module.device
        self._step = torch.full((), trainer.global_step, dtype=torch.long, device=device)
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)
        if device.type != "cpu":  # a sync per step would stall the GPU queue
            self.check_every = max(self.check_every, 50)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        first = ~torch.isfinite(loss.detach()) & (self._first_bad < 0)
        self._first_bad = torch.where(first, self._step, self._first_bad)
        self._step += 1
        if trainer.global_step % self.check_every == 0:
            self._check(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.training:
            self._check(trainer, pl_module)

    def _check(self, trainer, pl_module) -> None:
        if self._first_bad is None or int(self._first_bad) < 0:
            return
        last = self.checkpoint_dir / "last.ckpt"
        kept = f"The last good checkpoint is {last}." if last.exists() else "No epoch finished, so no checkpoint was saved."
        raise NonFiniteLoss(
            f"training loss became NaN/inf at step {int(self._first_bad)} (epoch {trainer.current_epoch}). "
            f"Likely causes: a learning rate too high (optim.lr={pl_module.optim_cfg.get('lr')}), or low-precision "
            f"overflow (trainer.precision={trainer.precision}). Fix: lower optim.lr, or use trainer.precision=32-true. {kept}"
        )
