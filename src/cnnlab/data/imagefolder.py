"""`data=imagefolder`: images in class folders, of any size and mode, as data.in_channels × data.image_size uint8.

Each image is converted with PIL to mode L (data.in_channels=1) or RGB (3), then center-cropped to the aspect
ratio of data.image_size and resized to it (bilinear, antialiased when shrinking). The splits are files, fixed by
data.split_seed: root/test/ when it exists, else the first data.test_size of a seeded shuffle of the training
images; root/val/ when it exists, else the next data.val_size of that shuffle. The images are decoded once into
memory when all splits fit in data.max_memory_mb, otherwise decoded batch by batch by data.num_workers DataLoader
workers; either way batches leave the loader as uint8 and go through the same augmentation and normalisation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cnnlab.data.datamodule import EpochBatchSampler, ImageDataModule
from cnnlab.data.folders import find_layout, labelled_files, skipped_summary
from cnnlab.errors import ConfigError, DataError

log = logging.getLogger("cnnlab")
MODES = {1: "L", 3: "RGB"}  # data.in_channels → PIL mode
STATS_IMAGES = 10_000  # mean/std are measured on at most this many training images (a seeded sample)
CHUNK = 256  # images decoded per DataLoader item when loading into memory or measuring


def decode(path: Path, mode: str, size: tuple[int, int]) -> torch.Tensor:
    """One image file → uint8 C×H×W: EXIF rotation applied, converted to `mode`, center-cropped to the aspect
    ratio of `size` (h, w) and resized to it."""
    height, width = size
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I;16"):  # 16-bit grey: PIL's convert clips at 255, so nearly every pixel was white
                img = Image.fromarray((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8), "L")
            img = img.convert(mode)
            if img.size != (width, height):
                img = ImageOps.fit(img, (width, height), method=Image.Resampling.BILINEAR)
            array = np.array(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(
            f"image {path} cannot be read ({type(e).__name__}: {e}). Fix: replace or remove the file."
        ) from None
    image = torch.from_numpy(array)
    return image[None] if image.ndim == 2 else image.permute(2, 0, 1).contiguous()


def damage(path: Path) -> str | None:
    """Why `path` is not a whole image, found without decoding it, or None: PIL reads its header, verify() checks
    a PNG's chunk checksums up to its end chunk, and a JPEG must hold its end marker (PIL refuses one without)."""
    try:
        with Image.open(path) as img:
            kind = img.format
            img.verify()
        if kind == "JPEG":
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 1024))
                if b"\xff\xd9" not in f.read():
                    return "truncated: no JPEG end marker"
    except Exception as e:  # PIL's parsers raise many types on damaged bytes: each one means "not readable"
        return f"{type(e).__name__}: {e}"
    return None


def check_images(paths: Sequence[Path], root: Path, workers: int) -> None:
    """Raise one DataError naming the files `damage` finds (a truncated or unidentifiable file), before a run
    starts: otherwise a DataLoader worker meets it mid-run, after checkpoints and a failed record were written."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        found = sorted((p, why) for p, why in zip(paths, pool.map(damage, paths)) if why is not None)
    if len(found) == 1:
        raise DataError(f"image {found[0][0]} cannot be read ({found[0][1]}). Fix: replace or remove the file.")
    if found:
        names = "; ".join(f"{p} ({why})" for p, why in found[:3]) + (f"; and {len(found) - 3} more" * (len(found) > 3))
        raise DataError(
            f"{len(found)} images under data.root={root} cannot be read: {names}. Fix: replace or remove them."
        )


class ImageFiles(Dataset):
    """Image files decoded on access. `files[i]` → (uint8 C×H×W, label); `files[index tensor]` → a batch (uint8
    B×C×H×W, int64 B), as cnnlab's batch sampler asks for. `tensors` mirrors TensorDataset's, so code that reads
    `dataset.tensors[0][:n]` gets those n images, decoded then."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], mode: str, size: tuple[int, int]) -> None:
        self.paths, self.labels = list(paths), torch.as_tensor(labels, dtype=torch.int64)
        self.mode, self.size, self.channels = mode, size, len(Image.new(mode, (1, 1)).getbands())

    def __len__(self) -> int:
        return len(self.paths)

    def images(self, index: int | slice | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The images at `index`, decoded: uint8 B×C×H×W."""
        positions = range(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).view(-1).tolist()
        out = torch.empty(len(positions), self.channels, *self.size, dtype=torch.uint8)
        for k, i in enumerate(positions):
            out[k] = decode(self.paths[i], self.mode, self.size)
        return out

    def __getitem__(self, index):
        if isinstance(index, int):
            return decode(self.paths[index], self.mode, self.size), self.labels[index]
        return self.images(index), self.labels[index]

    @property
    def tensors(self) -> tuple[LazyImages, torch.Tensor]:
        return LazyImages(self), self.labels


class LazyImages:
    """`files.tensors[0]`: indexing decodes, e.g. `[:32]` → uint8 32×C×H×W."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __getitem__(self, index) -> torch.Tensor:
        return self.files.images(index)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), self.files.channels, *self.files.size)


def load_all(files: ImageFiles, workers: int) -> TensorDataset:
    """Decode every file into one uint8 tensor, `workers` DataLoader processes at a time."""
    chunks = list(torch.arange(len(files)).split(CHUNK))
    loader = DataLoader(files, batch_size=None, sampler=chunks, num_workers=workers)
    images = torch.cat([x for x, _ in loader]) if chunks else torch.empty(0, files.channels, *files.size)
    return TensorDataset(images.to(torch.uint8), files.labels)


class ImageFolderDataModule(ImageDataModule):
    """Class folders under data.root; num_classes and class_names are the folders' (sorted by name)."""

    name = "imagefolder"
    fixed = ("num_classes",)  # any channel count and size: images are converted and resized to the config's

    def __init__(
        self,
        root: str | None = None,
        test_size: int | float = 0.1,
        val_size: int | float = 0.1,
        max_memory_mb: float = 2048,
        num_workers: int = 2,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        self.layout = find_layout(root)
        self.num_classes, self.class_names = len(self.layout.classes), tuple(self.layout.classes)
        channels = kwargs.get("in_channels")
        if isinstance(channels, bool) or channels not in MODES:
            raise ConfigError(
                f"data.in_channels={channels!r}: images are converted with PIL to 1 channel (mode L) or 3 (RGB). "
                f"Fix: data.in_channels=1 or data.in_channels=3."
            )
        if (mean is None) != (std is None) or (std is not None and min(std, default=0) <= 0):
            raise ConfigError(
                f"data.mean={mean} data.std={std}: give both (one value per channel, std > 0) or neither "
                f"(then they are measured on the training images). Fix: e.g. data.mean=null data.std=null."
            )
        self.stats_given = mean is not None
        self.mean = tuple(mean) if mean is not None else (0.5,) * channels  # until setup() measures them
        self.std = tuple(std) if std is not None else (0.25,) * channels
        super().__init__(val_size=val_size, **kwargs)
        self.test_size, self.max_memory_mb, self.num_workers = test_size, max_memory_mb, num_workers
        if not (isinstance(max_memory_mb, (int, float)) and max_memory_mb >= 0):
            raise ConfigError(
                f"data.max_memory_mb={max_memory_mb!r} must be a number >= 0 (0 streams every image from disk). "
                f"Fix: e.g. data.max_memory_mb=2048."
            )
        if not (isinstance(num_workers, int) and num_workers >= 0):
            raise ConfigError(
                f"data.num_workers={num_workers!r} must be an integer >= 0. Fix: e.g. data.num_workers=2."
            )
        self.streamed: bool | None = None  # decided in setup(), once the images are counted

    def prepare_data(self) -> None:
        """Refuse a root of one class folder: classification needs two (torchmetrics refuses one deep inside the
        run, after the run dir opened). The commands call this before setup(); setup() alone takes one class."""
        if len(classes := self.layout.classes) == 1:
            raise DataError(
                f"data.root={self.layout.root} has one class folder ({classes[0]}) in {self.layout.train}: "
                f"classification needs at least 2 classes. Fix: add a folder per class beside "
                f"{self.layout.train / classes[0]}, or point data.root at the folder that holds all the class folders."
            )

    def setup(self, stage: str | None = None) -> None:
        """List the files, split them, load them into memory or leave them on disk, measure mean/std."""
        if self.train_set is not None:
            return
        train, val, test = self._split_files()
        check_images([*train.paths, *val.paths, *test.paths], self.layout.root, self.num_workers)
        count = len(train) + len(val) + len(test)
        megabytes = count * math.prod(self.input_shape) / 2**20
        self.streamed = megabytes > self.max_memory_mb
        how = f"streamed from disk by {self.num_workers} workers" if self.streamed else "decoded into memory"
        log.info(
            "imagefolder %s: %d classes, %d train / %d val / %d test images, %.0f MB as uint8 %s "
            "(data.max_memory_mb=%s): %s",
            *(self.layout.root, self.num_classes, len(train), len(val), len(test), megabytes),
            *("×".join(map(str, self.input_shape)), self.max_memory_mb, how),
        )
        if not self.streamed:
            train, val, test = (load_all(files, self.num_workers) for files in (train, val, test))
        self.train_set, self.val_set, self.test_set = train, val, test
        if not self.stats_given:
            self.mean, self.std = self._measure_stats()
            self._stats.clear()
            log.info("imagefolder mean %s, std %s (measured on the training images)", self.mean, self.std)

    def _split_files(self) -> tuple[ImageFiles, ImageFiles, ImageFiles]:
        """train, val and test files: the split folders where the root has them, else a seeded shuffle of the
        training images (test first, then validation), fixed by data.split_seed."""
        classes, skipped = self.layout.classes, []
        paths, labels = labelled_files(self.layout.train, classes, "train", skipped)
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        held = {}
        for split in ("test", "val"):
            if (folder := getattr(self.layout, split)) is not None:
                held[split] = labelled_files(folder, classes, split, skipped)
                if not held[split][0]:
                    raise DataError(f"{split} folder {folder} holds no images. Fix: add them, or remove the folder.")
        if skipped:
            log.warning("imagefolder %s: %s", self.layout.root, skipped_summary(skipped, self.layout.root))
        for split in ("test", "val"):  # held out from the training images, in this order, where no folder is
            if split not in held:
                count = self._test_count(len(order)) if split == "test" else self._val_count(len(order))
                held[split] = [paths[i] for i in order[:count]], [labels[i] for i in order[:count]]
                order = order[count:]
        order = self._subset(order, f"{self.layout.root} has", "the validation and test splits")
        mode = MODES[self.in_channels]
        train = ImageFiles([paths[i] for i in order], [labels[i] for i in order], mode, self.image_size)
        return train, *(ImageFiles(*held[s], mode, self.image_size) for s in ("val", "test"))

    def _test_count(self, available: int) -> int:
        """Images held out for testing when the root has no test/ folder: a count, or a fraction."""
        size = self.test_size
        if isinstance(size, float) and 0 < size < 1:
            n_test = max(1, round(size * available))  # a fraction holds out at least one image
        else:
            n_test = size if isinstance(size, int) and not isinstance(size, bool) else -1
        if not 0 < n_test < available:
            raise ConfigError(
                f"data.test_size={size} does not fit: {self.layout.root} has no test/ folder, so the test images are "
                f"held out from its {available} training images: 1..{available - 1} of them, or a fraction in (0, 1). "
                f"Fix: e.g. data.test_size=0.1, or add {self.layout.root}/test/<class>/..."
            )
        return n_test

    def _measure_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images (a seeded sample of STATS_IMAGES if there are more)."""
        dataset = self.train_set
        gen = torch.Generator().manual_seed(self.split_seed)
        index = torch.randperm(len(dataset), generator=gen)[:STATS_IMAGES].sort().values
        workers = self.num_workers if self.streamed else 0
        loader = DataLoader(dataset, batch_size=None, sampler=list(index.split(CHUNK)), num_workers=workers)
        total = torch.zeros(self.in_channels, dtype=torch.float64)
        squares, pixels = torch.zeros_like(total), 0
        for images, _ in loader:
            x = images.to(torch.float64) / 255
            total += x.sum(dim=(0, 2, 3))
            squares += x.square().sum(dim=(0, 2, 3))
            pixels += x.numel() // self.in_channels
        mean = total / pixels
        std = (squares / pixels - mean.square()).clamp_min(0).sqrt().clamp_min(1 / 255)  # a flat channel: no 1/0
        return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """As ImageDataModule's; measured statistics need the training images, so they are read first when this
        datamodule has not been set up (e.g. cnnlab.api's Run.predict)."""
        if not self.stats_given and self.train_set is None:
            self.setup()
        return super().normalize(images)

    @property
    def uses_device_loader(self) -> bool:
        """Streamed images never sit on the device; otherwise as ImageDataModule's."""
        if not self.streamed:
            return super().uses_device_loader
        if self.on_device is True:
            raise ConfigError(
                f"data.on_device=true needs the images in memory, but {self.layout.root} is streamed from disk "
                f"(more than data.max_memory_mb={self.max_memory_mb} MB as uint8). Fix: data.on_device=auto, or raise "
                f"data.max_memory_mb if the machine holds them."
            )
        return False

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        if not self.streamed:
            return super()._loader(dataset, batch_size, shuffle)
        sampler = EpochBatchSampler(
            len(dataset), batch_size, seed=self.seed, shuffle=shuffle, drop_last=shuffle and self.drop_last
        )
        return DataLoader(
            dataset,
            batch_size=None,  # the sampler yields whole index batches: each worker decodes one batch
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )
