"""CIFAR-10 from a `cifar-10-batches-py` folder under `data_dir` (torchvision's pickles, read without its md5
check), downloaded once when the network allows."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from filelock import FileLock

from cnnlab.data.datamodule import Arrays, ImageDataModule
from cnnlab.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
REDOWNLOAD_HINT = (
    "Re-download CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) and extract it "
    "into data.data_dir, or delete the damaged folder so a download can replace it."
)


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (uint8 images N×3×32×32, int64 labels N) from one batch file, validating everything."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 batch file {path} is missing. {REDOWNLOAD_HINT}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        MemoryError,
    ) as e:
        raise DataError(
            f"CIFAR-10 batch file {path} is truncated or not a pickle ({type(e).__name__}: {e}). {REDOWNLOAD_HINT}"
        ) from None
    if isinstance(entry, dict):  # Python 2 pickles load with str keys, some re-pickled copies with bytes keys
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        keys = sorted(entry.keys()) if isinstance(entry, dict) else type(entry).__name__
        raise DataError(f"CIFAR-10 batch file {path} lacks 'data'/'labels' (found {keys}). {REDOWNLOAD_HINT}")
    data = torch.as_tensor(entry["data"])
    labels = torch.as_tensor(entry["labels"], dtype=torch.int64)
    if data.dtype != torch.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"CIFAR-10 batch file {path} holds data of shape {tuple(data.shape)} and dtype {data.dtype}; "
            f"expected N×3072 uint8. {REDOWNLOAD_HINT}"
        )
    if labels.shape != (data.shape[0],):
        raise DataError(
            f"CIFAR-10 batch file {path} has {data.shape[0]} images but {labels.numel()} labels. {REDOWNLOAD_HINT}"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(
            f"CIFAR-10 batch file {path} has labels outside 0..9 (min {labels.min()}, max {labels.max()}). "
            f"{REDOWNLOAD_HINT}"
        )
    return data.reshape(-1, *IMAGE_SHAPE).contiguous(), labels


def read_split(folder: Path, files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate several batch files of one folder."""
    parts = [read_batch(folder / name) for name in files]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def find_batches_folder(data_dir: Path) -> Path | None:
    """Return the `cifar-10-batches-py` folder under (or at) `data_dir`, or None if absent."""
    candidates = [data_dir / FOLDER] + ([data_dir] if data_dir.name == FOLDER else [])
    for folder in candidates:
        if any((folder / name).exists() for name in TRAIN_FILES + TEST_FILES):
            return folder
    return None


def _remove_leftovers(lock: Path, made: list[Path]) -> None:
    """After a failed download: the lock file, and the folders it made, as far as they are empty."""
    lock.unlink(missing_ok=True)
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # not empty (a partial archive stays for torchvision to check), or gone
            break


class CIFAR10DataModule(ImageDataModule):
    """45,000 train / 5,000 validation (seeded split) / 10,000 official test images."""

    name = "CIFAR-10"
    num_classes, in_channels, image_size = NUM_CLASSES, IMAGE_SHAPE[0], IMAGE_SHAPE[1:]
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(self, data_dir: str = "data", download: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir).expanduser()
        self.download = download

    def prepare_data(self) -> None:
        """Download into data_dir if the batches folder is absent; a file lock serialises parallel jobs."""
        if find_batches_folder(self.data_dir) is not None:
            return
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise DataError(
                f"data.data_dir={self.data_dir} is a file, not a folder. Fix: data.data_dir=<the folder that holds "
                f"{FOLDER}> (or that a download may fill)."
            )
        if not self.download:
            raise DataError(self._missing_message("download is off (data.download=false)"))
        made = [p for p in (self.data_dir, *self.data_dir.parents) if not p.exists()]  # deepest first
        lock = self.data_dir / ".cnnlab-download.lock"
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with FileLock(str(lock)):
                if find_batches_folder(self.data_dir) is None:  # another job may have finished it
                    from torchvision.datasets import CIFAR10

                    CIFAR10(str(self.data_dir), train=True, download=True)
        except Exception as e:  # no network, read-only disk, bad archive: all end the same way for the user
            _remove_leftovers(lock, made)
            raise DataError(self._missing_message(f"the download failed: {type(e).__name__}: {e}")) from None

    def _missing_message(self, why: str) -> str:
        return (
            f"CIFAR-10 not found: {self.data_dir.resolve()}/{FOLDER} does not exist or is empty, and {why}. "
            f"Fix: put an extracted '{FOLDER}' folder (torchvision's layout: data_batch_1..5, test_batch) "
            f"inside {self.data_dir}, or point at the folder that holds it with data.data_dir=<path>; "
            f"or train on synthetic data with data=tiny."
        )

    def load_arrays(self) -> Arrays:
        folder = find_batches_folder(self.data_dir)
        if folder is None:
            self.prepare_data()  # raises the clear message, or downloads when allowed
            folder = find_batches_folder(self.data_dir)
        train_x, train_y = read_split(folder, TRAIN_FILES)
        test_x, test_y = read_split(folder, TEST_FILES)
        return train_x, train_y, test_x, test_y
