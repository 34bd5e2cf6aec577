"""The shared datamodule: uint8 images in memory, a fixed seeded split, batches by index from an epoch-seeded
sampler (gathered on the training device when it can be), augmentation on the batch's device."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler, TensorDataset

from cnnlab.augment import Augmentation
from cnnlab.errors import ConfigError, DataError

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yield index batches; under DDP each rank takes an equal, disjoint share of the order."""

    def __init__(
        self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False
    ) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start."""
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        if not self.shuffle:
            order = torch.arange(self.size)
        else:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            world = dist.get_world_size()
            if self.shuffle:  # equal shares, so every rank runs the same number of optimizer steps
                order = order[: len(order) // world * world]
            order = order[dist.get_rank() :: world]
        return order

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self._indices().split(self.batch_size):
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DeviceLoader:
    """Iterate (images, labels) batches gathered by index on `device`: no workers, no per-image Python,
    no host-to-device copy per batch. Shuffling is EpochBatchSampler's, so results match the
    DataLoader path exactly."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, sampler: EpochBatchSampler, device: torch.device
    ) -> None:
        self.images, self.labels = images.to(device), labels.to(device)
        self.sampler = sampler  # Lightning calls sampler.set_epoch() at each epoch start
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in self.sampler:
            index = index.to(self.images.device, non_blocking=True)
            yield self.images[index], self.labels[index]

    def __len__(self) -> int:
        return len(self.sampler)


class ImageDataModule(L.LightningDataModule):
    """Subclasses implement `load_arrays`; everything else (split, loaders, augmentation) lives here.

    The datamodule declares the shape of its data, and everything downstream reads it from there (the model
    through conf/: `num_classes: ${data.num_classes}`): `num_classes`, `in_channels`, `image_size` (h, w),
    `class_names`, `mean` and `std` per channel. A dataset sets them as class attributes; those named in
    `fixed` are its own (CIFAR-10's 32×32) and other values are refused, the rest follow the config.
    The loaded arrays are checked against the declaration.

    Batches leave the loader as uint8 N×C×H×W; `on_after_batch_transfer` converts, augments (train
    only) and normalises them on the device the batch was moved to, so augmentation runs on the GPU
    when training does.
    """

    name = "images"
    num_classes: int  # each dataset declares these (class attributes, or its config's values)
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()  # none: the class indices
    fixed: tuple[str, ...] = ("num_classes", "in_channels", "image_size")  # the dataset's own: others are refused

    def __init__(
        self,
        augment: Augmentation | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 500,
        val_size: int | float = 5000,
        train_subset: int | None = None,
        split_seed: int = 0,
        seed: int = 0,
        label_unsafe: dict[str, str] | None = None,
        on_device: bool | str = "auto",
        drop_last: bool = False,
        num_classes: int | None = None,
        in_channels: int | None = None,
        image_size: Sequence[int] | int | None = None,
    ) -> None:
        super().__init__()
        self.augment = augment or Augmentation()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.train_subset = val_size, train_subset
        self.split_seed, self.seed = split_seed, seed
        self.label_unsafe = dict(label_unsafe or {})
        self.on_device, self.drop_last = on_device, drop_last
        self._declare_shape(num_classes, in_channels, image_size)
        self._check_label_safety()
        self.train_set: TensorDataset | None = None
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _declare_shape(self, num_classes: int | None, in_channels: int | None, image_size) -> None:
        """Take the config's shape; a fixed-shape dataset refuses values that are not its own."""
        given = {"num_classes": num_classes, "in_channels": in_channels, "image_size": _pair(image_size)}
        for key, value in given.items():
            if value is None:
                continue
            if key == "image_size":
                ok = len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            else:
                ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            if not ok:
                what = "[height, width], two positive integers" if key == "image_size" else "a positive integer"
                example = {"num_classes": "10", "in_channels": "3", "image_size": "[32,32]"}[key]
                raise ConfigError(f"data.{key}={value!r} must be {what}. Fix: e.g. data.{key}={example}.")
            own = getattr(self, key, None)
            if key in self.fixed and value != own:
                raise ConfigError(
                    f"data.{key}={_show(value)} does not match {self.name}, whose {key.replace('_', ' ')} is "
                    f"{_show(own)}: a dataset's shape is its own, and the model reads it from the data. "
                    f"Fix: data.{key}={_show(own)} (or remove the override)."
                )
            setattr(self, key, value)
        undeclared = [k for k in (*given, "mean", "std") if k not in vars(self) and not hasattr(type(self), k)]
        if undeclared:
            raise ConfigError(
                f"{self.name} does not declare its {', '.join(undeclared)}. Fix: set them as class attributes of "
                f"{type(self).__name__}, or in its config (e.g. data.{undeclared[0]}=...); docs/extending.md."
            )
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(
                f"{self.name} declares {self.in_channels} channels but its mean/std have {len(self.mean)}/"
                f"{len(self.std)} values. Fix: one mean and one std per channel."
            )
        if len(self.class_names) != self.num_classes:
            self.class_names = tuple(str(i) for i in range(self.num_classes))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """C×H×W of one image as the model sees it."""
        return (self.in_channels, *self.image_size)

    def check_arrays(self, images: torch.Tensor, labels: torch.Tensor, split: str) -> None:
        """Raise a DataError unless the loaded images and labels have the declared shape and class range."""
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != self.input_shape:
            raise DataError(
                f"{self.name} {split} images are {images.dtype} {'×'.join(map(str, images.shape[1:]))}, but the "
                f"dataset declares uint8 {'×'.join(map(str, self.input_shape))} (data.in_channels, data.image_size). "
                f"Fix: make load_arrays return what the dataset declares, or declare what it returns."
            )
        if len(labels) != len(images):
            raise DataError(f"{self.name} {split} split has {len(images)} images but {len(labels)} labels.")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise DataError(
                f"{self.name} {split} labels run over {int(labels.min())}..{int(labels.max())}, outside "
                f"0..{self.num_classes - 1} for data.num_classes={self.num_classes}. "
                f"Fix: data.num_classes={int(labels.max()) + 1}, or check the dataset's labels."
            )

    def _check_label_safety(self) -> None:
        for op in self.augment.names:
            if op in self.label_unsafe and not self.augment.allow_label_unsafe:
                raise ConfigError(
                    f"augmentation op '{op}' changes what a label means on {self.name}: {self.label_unsafe[op]} "
                    f"Label-unsafe ops for {self.name}: {', '.join(self.label_unsafe)}. Fix: choose a label-safe "
                    f"augmentation (e.g. augment={'crop' if 'flip' in self.label_unsafe else 'crop_flip'}), "
                    f"or set augment.allow_label_unsafe=true to run it anyway."
                )

    def load_arrays(self) -> Arrays:
        """Return (train_x uint8 N×C×H×W, train_y int64, test_x, test_y), as the dataset declares them."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays once and split train/val with a fixed seed (independent of the run's seed)."""
        if self.train_set is not None:
            return
        train_x, train_y, test_x, test_y = self.load_arrays()
        self.check_arrays(train_x, train_y, "train")
        self.check_arrays(test_x, test_y, "test")
        n_val = self._val_count(len(train_x))
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(self.split_seed))
        val_idx = order[:n_val]
        train_idx = self._subset(order[n_val:], f"{self.name} has", f"the {n_val}-image validation split")
        self.train_set = TensorDataset(train_x[train_idx], train_y[train_idx])
        self.val_set = TensorDataset(train_x[val_idx], train_y[val_idx])
        self.test_set = TensorDataset(test_x, test_y)

    def _subset(self, order: torch.Tensor | list[int], owner: str, after: str) -> torch.Tensor | list[int]:
        """The first data.train_subset of `order` (a seeded shuffle of the training images), or all of them."""
        if self.train_subset is None:
            return order
        if not 0 < self.train_subset <= len(order):
            raise ConfigError(
                f"data.train_subset={self.train_subset} is outside 1..{len(order)}: {owner} {len(order)} training "
                f"images after {after}. Fix: data.train_subset<={len(order)}, or data.train_subset=null for all of "
                f"them."
            )
        return order[: self.train_subset]

    def _val_count(self, available: int) -> int:
        """Images held out for validation; 0 (data.val_size=0) trains on all of them, as airbench does."""
        n_val = round(self.val_size * available) if isinstance(self.val_size, float) else int(self.val_size)
        if not 0 <= n_val < available:
            raise ConfigError(
                f"data.val_size={self.val_size} does not fit: {self.name} has {available} training images, so the "
                f"validation split must hold 0..{available - 1}. Fix: e.g. data.val_size={max(1, available // 10)} "
                f"or a fraction such as data.val_size=0.1 (or 0 to train on all of them)."
            )
        return n_val

    @property
    def uses_device_loader(self) -> bool:
        """Whether batches come from a DeviceLoader: 'auto' means yes unless an op loops per image."""
        if self.on_device == "auto":
            return self.augment.batched
        if self.on_device not in (True, False):
            raise ConfigError(
                f"data.on_device={self.on_device!r} is not valid. Valid: auto, true, false. Fix: data.on_device=auto."
            )
        return bool(self.on_device)

    def _loader(self, dataset: TensorDataset, batch_size: int, shuffle: bool) -> DataLoader | DeviceLoader:
        sampler = EpochBatchSampler(
            len(dataset), batch_size, seed=self.seed, shuffle=shuffle, drop_last=shuffle and self.drop_last
        )
        if self.uses_device_loader and self.trainer is not None:
            return DeviceLoader(*dataset.tensors, sampler, self.trainer.strategy.root_device)
        # batch_size=None: the sampler yields whole index batches, gathered in one tensor op. The loader's own
        # generator keeps iter() from drawing on the global RNG, which would make resumed runs diverge.
        return DataLoader(dataset, batch_size=None, sampler=sampler, generator=torch.Generator().manual_seed(self.seed))

    def check_overfit_loader(self, overfit_batches: float) -> None:
        """Refuse overfit_batches with batches from a DataLoader: Lightning would swap its batch-index sampler for
        a per-image one, giving batches of one image."""
        if overfit_batches > 0 and not self.uses_device_loader:
            raise ConfigError(
                f"trainer.overfit_batches={overfit_batches} needs cnnlab's device loader, but "
                f"data.on_device={self.on_device} (augment: {self.augment}) makes batches come from a DataLoader. "
                "Fix: data.on_device=true (as debug=overfit sets), or trainer.overfit_batches=0."
            )

    def train_dataloader(self) -> DataLoader:
        if self.trainer is not None:
            self.check_overfit_loader(self.trainer.overfit_batches)
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] to zero-mean, unit-variance per channel."""
        if images.device not in self._stats:  # once per device: no host-to-device copy in the training loop
            self._stats[images.device] = tuple(
                torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in (self.mean, self.std)
            )
        mean, std = self._stats[images.device]
        return (images - mean) / std

    def prepare_batch(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 batch → (augmented if train) normalised float batch, on the batch's device. A label-mixing
        augmentation mixes these images without targets: training batches come from on_after_batch_transfer."""
        images = images.float() / 255
        if train:
            images = self.augment(images)
        return self.normalize(images)

    def soft_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """B int labels → B×num_classes one-hot float32 targets, on the labels' device (no host sync)."""
        return torch.zeros(len(labels), self.num_classes, device=labels.device).scatter_(1, labels.view(-1, 1), 1.0)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        """(images, labels) → (normalised images, labels); a training batch of an augmentation that mixes labels
        (a MixingOp) → (mixed images, the un-mixed labels, the B×K mixed soft targets)."""
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        if training:
            self.augment.set_epoch(self.trainer.current_epoch)
            if self.augment.mixes_labels:
                mixed, targets = self.augment(images.float() / 255, self.soft_targets(labels))
                return self.normalize(mixed), labels, targets
        return self.prepare_batch(images, train=training), labels


def _pair(size: Sequence[int] | int | None) -> tuple[int, ...] | None:
    """An image size as (h, w): an int is a square; None stays None."""
    if size is None or isinstance(size, bool):
        return size
    if isinstance(size, int):
        return (size, size)
    return tuple(size)


def _show(value) -> str:
    return f"[{','.join(map(str, value))}]" if isinstance(value, tuple) else str(value)
