"""Callbacks: the run's guards (throughput, reseeding, epochs to the crash watch, interruption, non-finite loss) and
recipe steps (whitening from data, lookahead) that an experiment names in its config."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import lightning as L
import torch

from cnnlab import runs
from cnnlab.errors import CnnlabError, RunInterrupted


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


class ReportEpochs(L.Callback):
    """Tell the job's crash watch (cnnlab.runs) each finished epoch: a record written after the process died says
    how far the run got."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        runs.note_epochs_done(trainer.current_epoch + 1)


class ReseedEachEpoch(L.Callback):
    """Seed the global RNG from (seed, epoch, rank) at each epoch start.

    Augmentation and dropout then depend only on the epoch, so a run resumed from an epoch-end
    checkpoint draws exactly what the uninterrupted run drew.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        torch.manual_seed((self.seed * 1_000_003 + trainer.current_epoch) * 64 + trainer.global_rank)


class GracefulInterrupt(L.Callback):
    """On SIGINT, SIGTERM or SIGUSR2 finish the batch, save checkpoints/interrupted.ckpt and stop.

    Resume uses checkpoints/last.ckpt, written at the end of the last completed epoch, so a resumed
    run replays the interrupted epoch exactly. A second Ctrl+C stops at once (exit 130, status interrupted).
    """

    # SIGUSR2: the submitit launcher's warning that the SLURM time limit is near (hydra.launcher.signal_delay_s).
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.received is not None:  # second signal: the user means it. Not KeyboardInterrupt: Lightning
            # would catch that and exit(1) with no record; this one the run's record takes (exit 128 + signal).
            last = self.checkpoint_dir / "last.ckpt"
            raise RunInterrupted(
                f"a second {signal.Signals(signum).name} stopped the run at once; "
                + (f"the last completed epoch is in {last}" if last.is_file() else "no epoch had ended")
                + " (no checkpoint of this moment).",
                signum,
            )
        self.received = signum

    def setup(self, trainer, pl_module, stage: str) -> None:
        import threading

        # From setup, not on_train_start: a Ctrl+C during the sanity check would otherwise reach Lightning,
        # which ends the process with exit(1) and no checkpoint.
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_start(self, trainer, pl_module) -> None:
        import threading

        # Lightning registers its own SIGTERM handler after setup, composed with this one: its flag then ends the
        # fit with SIGTERMException (exit 0, no record, no checkpoint) at the next epoch end, before this callback's
        # next batch end when the signal comes late in an epoch (CI saw it). During training, this one alone.
        if threading.current_thread() is threading.main_thread() and signal.SIGTERM in self._previous:
            signal.signal(signal.SIGTERM, self._handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_signalled(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_if_signalled(trainer)  # else a signal in the last epoch's validation was lost: exit 0, completed

    def on_train_end(self, trainer, pl_module) -> None:
        # one that came after the last batch (while the epoch's checkpoints saved); current_epoch is one past it now
        self._stop_if_signalled(trainer, f"after the last epoch ({trainer.current_epoch - 1}) ended")

    def _stop_if_signalled(self, trainer, when: str | None = None) -> None:
        if self.received is None:
            return
        path = self.checkpoint_dir / "interrupted.ckpt"
        trainer.save_checkpoint(path)
        raise RunInterrupted(
            f"{signal.Signals(self.received).name} received {when or f'at epoch {trainer.current_epoch}'}, "
            f"step {trainer.global_step}; weights saved to {path}.",
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
        self._step: torch.Tensor | None = None  # device-side step counter
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
        kept = (
            f"The last good checkpoint is {last}."
            if last.exists()
            else "No epoch finished, so no checkpoint was saved."
        )
        raise NonFiniteLoss(
            f"training loss became NaN/inf at step {int(self._first_bad)} (epoch {trainer.current_epoch}). "
            f"Likely causes: a learning rate too high (optim.lr={pl_module.config['optim']['lr']}), or low-precision "
            f"overflow (trainer.precision={trainer.precision}). Fix: lower optim.lr, or use "
            f"trainer.precision=32-true. {kept}"
        )


@torch.no_grad()
def whiten_(conv: torch.nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set `conv`'s filters to the eigenvectors of the k×k patch covariance of `images`, scaled by
    1/sqrt(eigenvalue), each followed by its negative: the layer then outputs decorrelated, unit-variance
    patch features (and GELU keeps both signs)."""
    k, c = conv.kernel_size[0], conv.in_channels
    patches = images.float().unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, c * k * k)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, c, k, k).flip(0)
    conv.weight.copy_(torch.cat((filters, -filters)).to(conv.weight))


class WhitenFromData(L.Callback):
    """airbench: whiten the backbone's first layer (features.0) from `images` training images before fit,
    keep its weights frozen, and train its bias only for the first `bias_epochs` epochs.

    It runs in `setup`, before Lightning restores a checkpoint, so a resumed run keeps its saved weights.
    """

    def __init__(self, images: int = 5000, bias_epochs: int = 3) -> None:
        self.images, self.bias_epochs = images, bias_epochs

    def _conv(self, pl_module) -> torch.nn.Conv2d:
        features = getattr(pl_module.net, "features", None)
        conv = features[0] if isinstance(features, torch.nn.Sequential) else None
        if (
            not isinstance(conv, torch.nn.Conv2d)
            or 2 * conv.in_channels * conv.kernel_size[0] ** 2 != conv.out_channels
        ):
            raise CnnlabError(
                f"callbacks.whiten needs a backbone whose first layer (features.0) is a whitening conv "
                f"(C → 2·C·k² channels), but it is {conv}. Fix: use it with model=fast."
            )
        return conv

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            datamodule = trainer.datamodule
            datamodule.setup("fit")
            raw = datamodule.train_set.tensors[0][: self.images].to(pl_module.device)
            conv = self._conv(pl_module)
            whiten_(conv, datamodule.prepare_batch(raw, train=False))
            conv.weight.requires_grad_(False)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._conv(pl_module).bias.requires_grad_(trainer.current_epoch < self.bias_epochs)


class TestAccuracyCurve(L.Callback):
    """The run's accuracy–time curve: after every training epoch, the test split's accuracy (one plain forward per
    image, no TTA) and the training seconds so far, kept as the curves `curve/test_acc` and `curve/train_s` in
    metrics.json. The test passes are timed apart (`curve/eval_s`) and left out of train_s and the run's images/s;
    they add one test pass per epoch to the run's wall time (the run's guards, ThroughputMeter first, stop their
    clocks before this hook runs)."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        done = time.perf_counter()
        curves = pl_module.curves
        trained = (curves.get("curve/train_s") or [0.0])[-1] + done - self._start
        datamodule, was_training = trainer.datamodule, pl_module.training
        pl_module.eval()
        correct = 0
        with trainer.precision_plugin.forward_context():
            for images, labels in datamodule.test_dataloader():
                images, labels = images.to(pl_module.device), labels.to(pl_module.device)
                logits = pl_module(datamodule.prepare_batch(images, train=False))
                correct += int((logits.argmax(-1) == labels).sum())
        pl_module.train(was_training)
        for name, value in (
            ("curve/train_s", trained),
            ("curve/test_acc", correct / len(datamodule.test_set)),
            ("curve/eval_s", time.perf_counter() - done),
        ):
            curves.setdefault(name, []).append(value)


class Lookahead(L.Callback):
    """From `start_epoch` on, every `every` steps: ema ← lerp(ema, weights, 1 − ρ), weights ← ema, with
    ρ = decay_base^every · (step / total)^decay_pow rising over training (move fast early, average hard
    late); at each epoch end, before validation, the weights are set to the EMA."""

    def __init__(self, start_epoch: int = 3, decay_base: float = 0.95, decay_pow: float = 3.0, every: int = 5) -> None:
        self.start_epoch, self.decay_base, self.decay_pow, self.every = start_epoch, decay_base, decay_pow, every
        self.ema: dict[str, torch.Tensor] | None = None

    def _float_state(self, module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in module.net.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def _update(self, module, decay: float) -> None:
        for name, tensor in self._float_state(module).items():
            self.ema[name].lerp_(tensor, 1 - decay)
            tensor.copy_(self.ema[name])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if trainer.current_epoch < self.start_epoch or step % self.every:
            return
        if self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in self._float_state(pl_module).items()}
            return
        total = max(1, trainer.estimated_stepping_batches)
        self._update(pl_module, self.decay_base**self.every * (step / total) ** self.decay_pow)

    def on_validation_start(self, trainer, pl_module) -> None:
        # Lightning validates (and checkpoints) before on_train_epoch_end: both must see the averaged weights.
        if trainer.training and self.ema is not None:
            self._update(pl_module, 1.0)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.ema is not None:
            self._update(pl_module, 1.0)

    def state_dict(self) -> dict:
        return {"ema": self.ema}

    def load_state_dict(self, state_dict: dict) -> None:
        self.ema = state_dict["ema"]
