"""Augmentation (conf/augment/): a pipeline of batched ops on B×C×H×W float images in [0, 1], each random per
sample and one tensor op per batch; a label-mixing op (MixingOp: Mixup, CutMix) last mixes the soft targets too."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from cnnlab.errors import ConfigError


class BatchOp:
    """Base class: `name` is what dataset configs refer to when they declare label-unsafe transforms."""

    name = "op"
    batched = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Most ops draw afresh for every batch and ignore the epoch; AlternatingFlip uses it."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{self.name}({args})"


def _coin(x: torch.Tensor, p: float) -> torch.Tensor:
    """A per-sample boolean mask, shaped to broadcast over C×H×W."""
    return (torch.rand(x.shape[0], device=x.device) < p).view(-1, 1, 1, 1)


class RandomFlip(BatchOp):
    """Mirror left-right with probability p (label-safe for natural photos)."""

    name = "flip"  # as conf/augment/flip.yaml; label_unsafe lists refer to ops by this name

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(_coin(x, self.p), x.flip(-1), x)


class AlternatingFlip(BatchOp):
    """airbench's flip: every image is mirrored in alternate epochs, from a random start per image, so any two
    consecutive epochs show both views of every image (random flips repeat a view in half of the image-pairs).

    The start is a seeded random bit per value of the image's pixel sum, so no image index has to travel with
    the batch; that is why this op must come first, before any op that changes the pixels.
    """

    name = "flip"  # label-safe exactly when a random flip is

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.epoch = 0
        self._start_bits: dict[tuple[int, torch.device], torch.Tensor] = {}

    def set_epoch(self, epoch: int) -> None:
        """Alternate with the training epoch (the datamodule calls this before each training batch)."""
        self.epoch = epoch

    def _starts(self, x: torch.Tensor) -> torch.Tensor:
        values = x[0].numel() * 255 + 1  # pixel sums of uint8 images run over 0..numel·255
        key = (values, x.device)
        if key not in self._start_bits:
            gen = torch.Generator().manual_seed(self.seed)
            self._start_bits[key] = torch.randint(0, 2, (values,), generator=gen).to(x.device)
        # Exact: uint8/255·255 rounds back to the byte, and sums stay below 2^24 (float32's integer range).
        pixel_sum = (x * 255).round().sum(dim=(1, 2, 3)).long()
        return self._start_bits[key][pixel_sum]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mirrored = (self._starts(x) + self.epoch) % 2 == 1
        return torch.where(mirrored.view(-1, 1, 1, 1), x.flip(-1), x)


class RandomVerticalFlip(BatchOp):
    """Flip upside down with probability p: for digits this turns a 6 into a 9."""

    name = "vflip"

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(_coin(x, self.p), x.flip(-2), x)


class RandomRotate90(BatchOp):
    """Rotate by a random multiple of 90 degrees per sample (square images only)."""

    name = "rotate90"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        quarter_turns = torch.randint(0, 4, (x.shape[0], 1, 1, 1), device=x.device)
        out = x
        for k in (1, 2, 3):  # a select, not boolean indexing: no host sync, and it runs on any device
            out = torch.where(quarter_turns == k, torch.rot90(x, k, dims=(-2, -1)), out)
        return out


class RandomCrop(BatchOp):
    """Pad by `padding` (zeros, or 'reflect') and take a random H×W window per sample: a random translation."""

    name = "crop"

    def __init__(self, padding: int = 4, padding_mode: str = "constant") -> None:
        self.padding, self.padding_mode = padding, padding_mode

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.padding
        padded = torch.nn.functional.pad(x, (p, p, p, p), mode=self.padding_mode)
        dy = torch.randint(0, 2 * p + 1, (b, 1), device=x.device)
        dx = torch.randint(0, 2 * p + 1, (b, 1), device=x.device)
        # One gather over each padded image's flattened H'×W' pixels, with one (h×w) index per sample shared by
        # its channels: 0.31 ms per CIFAR batch of 128 on a 2-core EPYC, against 1.57 ms for a row gather then a
        # column gather (whose index spans b×c×h×(w+2p)) and ~5× that for one 4-D advanced index. Same draws,
        # same pixels, so the same augmentation as before.
        width = w + 2 * p
        rows = (dy + torch.arange(h, device=x.device)).view(b, h, 1)
        cols = (dx + torch.arange(w, device=x.device)).view(b, 1, w)
        index = (rows * width + cols).view(b, 1, h * w).expand(b, c, h * w)
        flat = padded.reshape(b, c, (h + 2 * p) * width)
        return flat.gather(2, index).view(b, c, h, w)


class Cutout(BatchOp):
    """Black out one size×size square per sample, centred anywhere (may be clipped at the border)."""

    name = "cutout"

    def __init__(self, size: int = 16) -> None:
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        cy = torch.randint(0, h, (b, 1, 1, 1), device=x.device)
        cx = torch.randint(0, w, (b, 1, 1, 1), device=x.device)
        ys = torch.arange(h, device=x.device).view(1, 1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, 1, w)
        half = self.size // 2
        inside = (ys >= cy - half) & (ys < cy - half + self.size) & (xs >= cx - half) & (xs < cx - half + self.size)
        return x.masked_fill(inside, 0.0)


class ColorJitter(BatchOp):
    """Scale brightness, contrast and saturation by per-sample factors drawn from [1-s, 1+s]."""

    name = "color_jitter"

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4) -> None:
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    @staticmethod
    def _factor(x: torch.Tensor, strength: float) -> torch.Tensor:
        return 1.0 + (torch.rand(x.shape[0], 1, 1, 1, device=x.device) * 2 - 1) * strength

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self._factor(x, self.brightness)
        mean = _luma(x).mean(dim=(2, 3), keepdim=True)
        x = mean + (x - mean) * self._factor(x, self.contrast)
        gray = _luma(x)
        x = gray + (x - gray) * self._factor(x, self.saturation)
        return x.clamp(0.0, 1.0)


class BrightnessContrast(BatchOp):
    """The CIFAR-10 record's colour jitter (hiverge, 2025): add a per-sample brightness shift drawn from
    [-brightness, brightness], then scale the contrast about `center` by a factor drawn from [1-contrast,
    1+contrast], the same for every channel. Unclamped, as in the record: it perturbs the network's input, and a
    clamp would flatten highlights that the shift only moves."""

    name = "brightness_contrast"

    def __init__(self, brightness: float = 0.035, contrast: float = 0.13, center: float = 0.5) -> None:
        self.brightness, self.contrast, self.center = brightness, contrast, center

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shift, scale = (torch.rand(2, x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1).unbind(0)
        return (x - self.center + shift * self.brightness) * (1 + scale * self.contrast) + self.center


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of an RGB batch, B×1×H×W; for any other channel count (grey, or a user's own bands) the
    channel mean, so that saturation is a no-op on grey images instead of an empty tensor."""
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


class TorchvisionPolicy(BatchOp):
    """A torchvision policy (AutoAugment CIFAR-10, TrivialAugment) drawn per image on the batch's device.

    torchvision draws one op per call, so each image gets its own call: a Python loop over the batch,
    slower than the pure tensor ops above but still on the training device.
    """

    batched = False
    _POLICIES = {
        "autoaugment": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
        "trivialaugment": lambda: v2.TrivialAugmentWide(),
    }

    def __init__(self, policy: str = "autoaugment") -> None:
        from cnnlab.errors import check_choice

        check_choice("augment policy", policy, tuple(self._POLICIES))
        self.policy = policy
        self._transform = self._POLICIES[policy]()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.policy

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        as_uint8 = (x * 255).round().to(torch.uint8)
        out = torch.stack([self._transform(img) for img in as_uint8])
        return out.to(x.dtype) / 255


class MixingOp(BatchOp):
    """Base class of label-mixing ops (Mixup, CutMix): ops that blend pairs of training images *and* their labels.

    Subclass it, set `name`, and implement `__call__(images, targets) -> (images, targets)`:

    - `images`: the B×C×H×W float training batch in [0, 1] on the training device, after every image op of the
      pipeline (the `Augmentation` runs at most one mixing op, and last).
    - `targets`: B×K float soft targets, one probability vector per image (K = `ImageDataModule.num_classes`);
      the datamodule passes the labels one-hot.
    - Return the mixed images (same shape, dtype and device) and the B×K mixed targets: each row the same
      convex combination of rows of `targets` as its image is of images, so every row still sums to 1.

    Draw from torch's global RNG on `images.device`, as every op does (seeded per epoch; no `.item()`, nothing
    moved to the host). `draw()` gives the draws both papers use: λ ~ Beta(α, α) (or λ = 1, no mixing, for a
    batch skipped with probability 1 − p) and a random permutation that pairs image i with image perm[i].

    The datamodule calls it on training batches only (validation and test images and labels are never mixed)
    and hands the module (images, labels, mixed targets); the loss is cross-entropy against the mixed targets.
    Mixing ops are label-safe by construction (the targets follow the pixels), so no dataset's `label_unsafe`
    needs to name them; one still may, by `name`, to refuse the op on its data.
    """

    name = "mix"

    def __init__(self, alpha: float = 1.0, p: float = 1.0) -> None:
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ConfigError(f"{self.name} alpha={alpha!r} must be > 0 (λ ~ Beta(α, α)). Fix: e.g. alpha=1.0.")
        if not (isinstance(p, (int, float)) and 0 <= p <= 1):
            raise ConfigError(f"{self.name} p={p!r} must be a probability in [0, 1]. Fix: e.g. p=1.0 (every batch).")
        self.alpha, self.p = alpha, p

    def draw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch's (λ, perm) on the batch's device: λ a 0-dim float32 tensor in [0, 1], perm a permutation of
        0..B-1. λ ~ Beta(α, α) as the ratio of two Gamma(α) draws (torch's Beta sampler has no meta kernel), or 1
        with probability 1 − p."""
        device = images.device
        gammas = torch.distributions.Gamma(
            torch.full((2,), float(self.alpha), device=device), torch.ones(2, device=device), validate_args=False
        ).sample()  # clamped to float32's smallest normal: never 0/0
        lam = gammas[0] / gammas.sum()
        if self.p < 1:
            lam = torch.where(torch.rand((), device=device) < self.p, lam, torch.ones_like(lam))
        return lam, torch.randperm(images.shape[0], device=device)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        raise NotImplementedError


class Mixup(MixingOp):
    """mixup (Zhang et al., ICLR 2018): per batch, λ ~ Beta(α, α) and a shuffled copy of the batch;
    images λ·x + (1−λ)·x[perm], targets λ·y + (1−λ)·y[perm]."""

    name = "mixup"

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam, perm = self.draw(images)
        return lam * images + (1 - lam) * images[perm], lam * targets + (1 - lam) * targets[perm]


class CutMix(MixingOp):
    """CutMix (Yun et al., ICCV 2019): per batch, λ ~ Beta(α, α) and a shuffled copy of the batch; one box of
    ⌊H·√(1−λ)⌋ × ⌊W·√(1−λ)⌋ pixels centred at a uniform random pixel (clipped at the border) is pasted from
    x[perm] into every image, and λ is recomputed as the share of pixels kept: targets λ·y + (1−λ)·y[perm]."""

    name = "cutmix"

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam, perm = self.draw(images)
        h, w = images.shape[-2:]
        device = images.device
        side = (1 - lam).sqrt()
        cut_h, cut_w = (h * side).long(), (w * side).long()
        top = torch.randint(0, h, (), device=device) - cut_h // 2
        left = torch.randint(0, w, (), device=device) - cut_w // 2
        ys = torch.arange(h, device=device).view(h, 1)
        xs = torch.arange(w, device=device).view(1, w)
        inside = (ys >= top) & (ys < top + cut_h) & (xs >= left) & (xs < left + cut_w)  # H×W, clipped by construction
        kept = 1 - inside.sum().to(targets.dtype) / (h * w)
        return torch.where(inside, images[perm], images), kept * targets + (1 - kept) * targets[perm]


class Augmentation:
    """Apply `ops` in order to a B×C×H×W float batch in [0, 1]; an empty list is the identity.

    Image ops (`BatchOp`) come first; a label-mixing op (`MixingOp`), if any, comes last and alone, and also
    mixes the B×K soft targets passed with the images (see `__call__`)."""

    def __init__(self, ops: Sequence[BatchOp] = (), allow_label_unsafe: bool = False) -> None:
        self.ops = list(ops)
        self.allow_label_unsafe = allow_label_unsafe
        late = [i for i, op in enumerate(self.ops) if isinstance(op, AlternatingFlip) and i > 0]
        if late:
            raise ConfigError(
                f"augmentation op {late[0]} (AlternatingFlip) must come first: it recognises each image by its pixels, "
                f"which the ops before it ({', '.join(op.name for op in self.ops[: late[0]])}) change every epoch. "
                "Fix: list cnnlab.augment.ops.AlternatingFlip first in augment.ops."
            )
        mixing = [i for i, op in enumerate(self.ops) if isinstance(op, MixingOp)]
        if len(mixing) > 1 or (mixing and mixing[0] != len(self.ops) - 1):
            raise ConfigError(
                f"augmentation ops {', '.join(f'{i} ({self.ops[i].name})' for i in mixing)} mix labels: a pipeline "
                "takes at most one label-mixing op, after every image op (each image is augmented, then pairs mixed). "
                "Fix: keep one MixingOp (Mixup, CutMix) and list it last in augment.ops."
            )

    @property
    def names(self) -> list[str]:
        """Names of the ops, e.g. ['crop', 'flip'], used for label-safety checks and logs."""
        return [op.name for op in self.ops]

    @property
    def batched(self) -> bool:
        """True when every op is a pure tensor op (no per-image Python loop)."""
        return all(op.batched for op in self.ops)

    @property
    def mixes_labels(self) -> bool:
        """True when the pipeline ends with a MixingOp: training batches then carry mixed soft targets."""
        return bool(self.ops) and isinstance(self.ops[-1], MixingOp)

    def set_epoch(self, epoch: int) -> None:
        """Tell epoch-aware ops (AlternatingFlip) which training epoch the next batches belong to."""
        for op in self.ops:
            op.set_epoch(epoch)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None = None):
        """Image ops, then the mixing op. With B×K soft `targets` returns (images, targets), both mixed by a
        mixing op (unchanged targets otherwise); without, returns the images alone, mixed too (a preview, such
        as LabImages' grid of what the network sees; training passes the targets: ImageDataModule)."""
        mixing = self.ops[-1] if self.mixes_labels else None
        for op in self.ops[:-1] if mixing else self.ops:
            images = op(images)
        if mixing is None:
            return images if targets is None else (images, targets)
        if targets is None:  # one placeholder class: the images mix exactly as they would with real targets
            return mixing(images, images.new_ones(len(images), 1))[0]
        return mixing(images, targets)

    def __repr__(self) -> str:
        return f"Augmentation({', '.join(map(repr, self.ops)) or 'identity'})"
