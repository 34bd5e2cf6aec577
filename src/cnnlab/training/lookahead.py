"""Lookahead weight averaging (airbench): every few steps pull an EMA toward the weights and copy it back."""

from __future__ import annotations

import lightning as L
import torch


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
