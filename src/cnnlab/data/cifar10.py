"""CIFAR-10 from a `cifar-10-batches-py` folder under `data_dir`, downloaded once when the network allows."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock

from cnnlab.data import cifar10_files as files
from cnnlab.data.datamodule import Arrays, ImageDataModule
from cnnlab.errors import DataError


class CIFAR10DataModule(ImageDataModule):
    """45,000 train / 5,000 validation (seeded split) / 10,000 official test images."""

    name = "CIFAR-10"
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(self, data_dir: str = "data", download: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir).expanduser()
        self.download = download

    def prepare_data(self) -> None:
        """Download into data_dir if the batches folder is absent; a file lock serialises parallel jobs."""
        if files.find_batches_folder(self.data_dir) is not None:
            return
        if not self.download:
            raise DataError(self._missing_message("download is off (data.download=false)"))
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.data_dir / ".cnnlab-download.lock")):
                if files.find_batches_folder(self.data_dir) is None:  # another job may have finished it
                    from torchvision.datasets import CIFAR10

                    CIFAR10(str(self.data_dir), train=True, download=True)
        except Exception as e:  # no network, read-only disk, bad archive: all end the same way for the user
            raise DataError(self._missing_message(f"the download failed: {type(e).__name__}: {e}")) from None

    def _missing_message(self, why: str) -> str:
        return (
            f"CIFAR-10 not found: {self.data_dir.resolve()}/{files.FOLDER} does not exist or is empty, and {why}. "
            f"Fix: put an extracted '{files.FOLDER}' folder (torchvision's layout: data_batch_1..5, test_batch) "
            f"inside {self.data_dir}, or point at the folder that holds it with data.data_dir=<path>; "
            f"or train on synthetic data with data=tiny."
        )

    def load_arrays(self) -> Arrays:
        folder = files.find_batches_folder(self.data_dir)
        if folder is None:
            self.prepare_data()  # raises the clear message, or downloads when allowed
            folder = files.find_batches_folder(self.data_dir)
        train_x, train_y = files.read_split(folder, files.TRAIN_FILES)
        test_x, test_y = files.read_split(folder, files.TEST_FILES)
        return train_x, train_y, test_x, test_y
