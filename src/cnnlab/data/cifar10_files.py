"""Read and validate torchvision's `cifar-10-batches-py` pickles without torchvision's md5 check."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

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
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, MemoryError) as e:
        raise DataError(
            f"CIFAR-10 batch file {path} is truncated or not a pickle ({type(e).__name__}: {e}). "
            f"{REDOWNLOAD_HINT}"
        ) from None
    if isinstance(entry, dict):  # Python 2 pickles load with str keys, some re-pickled copies with bytes keys
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if not isinstance(entry, dict) or "data" not in entry or not ({"labels", "fine_labels"} & entry.keys()):
        keys = sorted(entry.keys()) if isinstance(entry, dict) else type(entry).__name__
        raise DataError(f"CIFAR-10 batch file {path} lacks 'data'/'labels' (found {keys}). {REDOWNLOAD_HINT}")
    data = torch.as_tensor(entry["data"])
    labels = torch.as_tensor(entry.get("labels", entry.get("fine_labels")), dtype=torch.int64)
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


def write_batch(path: Path, images: torch.Tensor, labels: torch.Tensor, bytes_keys: bool = True) -> None:
    """Write uint8 N×3×32×32 images and labels as one batch file in torchvision's pickle layout."""
    entry = {"batch_label": path.name, "data": images.reshape(len(images), -1).numpy(),
             "labels": labels.tolist(), "filenames": [f"{i}.png" for i in range(len(images))]}
    if bytes_keys:  # as re-pickled copies store them; the original Python 2 pickles load with str keys
        entry = {k.encode(): v for k, v in entry.items()}
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def write_random_folder(root: Path, per_batch: int = 40, seed: int = 0, bytes_keys: bool = True) -> Path:
    """A `cifar-10-batches-py` folder of random images under `root` (for tests and demos); returns `root`."""
    gen = torch.Generator().manual_seed(seed)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES + TEST_FILES:
        images = torch.randint(0, 256, (per_batch, *IMAGE_SHAPE), generator=gen, dtype=torch.uint8)
        write_batch(folder / name, images, torch.randint(0, NUM_CLASSES, (per_batch,), generator=gen), bytes_keys)
    return Path(root)
