"""Standard datasets read offline from torchvision's on-disk layout under data.data_dir: CIFAR-100, SVHN, MNIST,
Fashion-MNIST. The files are parsed here directly (no md5 check, so copies from anywhere work); with
data.download=true a missing dataset is first fetched by torchvision's own class.

mean/std are per-channel statistics of each official training split, in [0, 1]: the values the literature uses
(CIFAR-100, SVHN, MNIST: PyTorch's MNIST example), and for Fashion-MNIST measured here on the 60,000 training
images of Debian's dataset-fashion-mnist package (0.2860, 0.3530, agreeing with the published values).
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.datamodule import Arrays, ImageDataModule
from cnnlab.errors import DataError


class OfflineDataModule(ImageDataModule):
    """A dataset in files under data_dir. Subclasses give `folder` (data_dir/folder holds the files), `files` (the
    names needed), `url` (where to get them) and `read(folder)`."""

    folder: str = ""
    files: tuple[str, ...] = ()
    url: str = ""
    torchvision_class: str = ""

    def __init__(self, data_dir: str = "data", download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir).expanduser()
        self.download = download

    def locate(self) -> Path | None:
        """The folder holding the dataset's files, or None."""
        for folder in (self.data_dir / self.folder, self.data_dir):
            if all(find_file(folder, name) is not None for name in self.files):
                return folder
        return None

    def prepare_data(self) -> None:
        """With data.download=true, fetch a missing dataset through torchvision into data_dir."""
        if self.locate() is not None or not self.download:
            return
        import torchvision.datasets

        dataset = getattr(torchvision.datasets, self.torchvision_class)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            for split in self.download_splits():
                dataset(str(self.data_dir), download=True, **split)
        except Exception as e:  # no network, read-only disk, bad archive: the same message for the user
            raise DataError(self._missing(f"the download failed ({type(e).__name__}: {e})")) from None

    def download_splits(self) -> list[dict]:
        return [{"train": True}, {"train": False}]

    def _missing(self, why: str) -> str:
        holder = f"{self.folder}/ or the files themselves" if self.folder else "them"
        places = dict.fromkeys(str(p.resolve()) for p in (self.data_dir / self.folder, self.data_dir))
        return (
            f"{self.name} not found: no {', '.join(self.files)} (each may be gzipped) in {' or '.join(places)}, "
            f"and {why}. Fix: put those files (from {self.url}) in {(self.data_dir / self.folder).resolve()} "
            f"(torchvision's layout), or point data.data_dir at a folder holding {holder}; or data.download=true "
            f"where the network allows."
        )

    def load_arrays(self) -> Arrays:
        self.prepare_data()
        folder = self.locate()
        if folder is None:
            raise DataError(self._missing("data.download is off" if not self.download else "the download gave none"))
        return self.read(folder)

    def read(self, folder: Path) -> Arrays:
        raise NotImplementedError


def find_file(folder: Path, name: str) -> Path | None:
    """`folder/name`, or its gzipped copy `folder/name.gz`."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def read_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataError(
            f"{path} cannot be read ({type(e).__name__}: {e}). Fix: replace it with an intact copy."
        ) from None


# --- CIFAR-100 -----------------------------------------------------------------------------------------------------

# The fine labels 0..99, as the dataset's `meta` file lists them (alphabetical).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip


class CIFAR100DataModule(OfflineDataModule):
    """CIFAR-100 (fine labels): 50,000 train (45,000 + a seeded 5,000 validation) / 10,000 test, 3×32×32."""

    name = "CIFAR-100"
    num_classes, in_channels, image_size = 100, 3, (32, 32)
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    class_names = CIFAR100_CLASSES
    folder, files = "cifar-100-python", ("train", "test")
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    torchvision_class = "CIFAR100"

    def read(self, folder: Path) -> Arrays:
        return (*self._read_pickle(find_file(folder, "train")), *self._read_pickle(find_file(folder, "test")))

    def _read_pickle(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            entry = pickle.loads(read_bytes(path), encoding="latin1")
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
            raise DataError(
                f"CIFAR-100 file {path} is not a CIFAR pickle ({type(e).__name__}: {e}). "
                f"Fix: re-extract {self.url} into data.data_dir."
            ) from None
        if isinstance(entry, dict):  # re-pickled copies may have bytes keys
            entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        if not isinstance(entry, dict) or "data" not in entry or "fine_labels" not in entry:
            raise DataError(f"CIFAR-100 file {path} lacks 'data'/'fine_labels'. Fix: re-extract {self.url}.")
        data = torch.as_tensor(np.asarray(entry["data"], dtype=np.uint8))
        return data.reshape(-1, 3, 32, 32).contiguous(), torch.as_tensor(entry["fine_labels"], dtype=torch.int64)


# --- SVHN ----------------------------------------------------------------------------------------------------------


class SVHNDataModule(OfflineDataModule):
    """SVHN cropped digits: 73,257 train (minus a seeded 5,000 validation) / 26,032 test, 3×32×32; labels 0..9
    are the digits (the files store digit 0 as 10)."""

    name = "SVHN"
    num_classes, in_channels, image_size = 10, 3, (32, 32)
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    class_names = tuple(str(d) for d in range(10))
    folder, files = "", ("train_32x32.mat", "test_32x32.mat")  # torchvision's SVHN root holds them directly
    url = "http://ufldl.stanford.edu/housenumbers/"
    torchvision_class = "SVHN"

    def download_splits(self) -> list[dict]:
        return [{"split": "train"}, {"split": "test"}]

    def read(self, folder: Path) -> Arrays:
        return (*self._read_mat(find_file(folder, self.files[0])), *self._read_mat(find_file(folder, self.files[1])))

    def _read_mat(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        from scipy.io import loadmat

        try:
            mat = loadmat(io.BytesIO(read_bytes(path)) if path.suffix == ".gz" else path)
            images, labels = np.asarray(mat["X"], dtype=np.uint8), np.asarray(mat["y"], dtype=np.int64).reshape(-1)
        except (OSError, ValueError, KeyError, TypeError, NotImplementedError) as e:
            raise DataError(
                f"SVHN file {path} is not an SVHN .mat file with X and y ({type(e).__name__}: {e}). "
                f"Fix: download it again from {self.url}."
            ) from None
        if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels):
            raise DataError(
                f"SVHN file {path} holds X of shape {images.shape} for {len(labels)} labels; expected "
                f"32×32×3×N. Fix: download it again from {self.url}."
            )
        labels[labels == 10] = 0  # digit 0 is stored as 10
        return torch.from_numpy(images.transpose(3, 2, 0, 1).copy()), torch.from_numpy(labels)  # H×W×C×N → N×C×H×W


# --- MNIST and Fashion-MNIST ---------------------------------------------------------------------------------------

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: Path, dims: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (magic 0x0000 08 `dims`, then `dims` big-endian int32 sizes) as a tensor."""
    data = read_bytes(path)
    header = 4 + 4 * dims
    sizes = (
        tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)) if len(data) >= header else ()
    )
    if data[:4] != bytes((0, 0, 8, dims)) or len(data) != header + int(np.prod(sizes, dtype=np.int64)):
        raise DataError(
            f"{path} is not an IDX file of {dims}-dimensional unsigned bytes (magic {data[:4].hex()}, "
            f"{len(data)} bytes for sizes {sizes}). Fix: replace it with an intact copy."
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(sizes)


class MNISTDataModule(OfflineDataModule):
    """MNIST handwritten digits: 60,000 train (minus a seeded 5,000 validation) / 10,000 test, 1×28×28."""

    name = "MNIST"
    num_classes, in_channels, image_size = 10, 1, (28, 28)
    mean, std = (0.1307,), (0.3081,)
    class_names = tuple(str(d) for d in range(10))
    folder, files = "MNIST/raw", IDX_FILES  # torchvision's layout; the four files may be gzipped
    url = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror of yann.lecun.com/exdb/mnist
    torchvision_class = "MNIST"

    def read(self, folder: Path) -> Arrays:
        train_x, train_y, test_x, test_y = (
            read_idx(find_file(folder, n), 3 if "images" in n else 1) for n in self.files
        )
        return train_x[:, None], train_y.long(), test_x[:, None], test_y.long()


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando's clothing): 60,000 train (minus a seeded 5,000 validation) / 10,000 test, 1×28×28."""

    name = "Fashion-MNIST"
    mean, std = (0.2860,), (0.3530,)
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    folder = "FashionMNIST/raw"
    url = "https://github.com/zalandoresearch/fashion-mnist"
    torchvision_class = "FashionMNIST"
