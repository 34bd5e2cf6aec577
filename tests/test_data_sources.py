"""Data beyond CIFAR-10: image folders, torchvision's on-disk datasets, scikit-learn's digits. Every file is
written here in its own format, so the expected pixels and labels are the ones written."""

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from scipy.io import savemat

from cnnlab.cli.train import run
from cnnlab.data.digits import DigitsDataModule
from cnnlab.data.imagefolder import ImageFolderDataModule
from cnnlab.data.torchvision_sets import (
    CIFAR100DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
)
from cnnlab.errors import ConfigError, DataError, user_error
from conftest import compose_config, run_script

# --- image folders --------------------------------------------------------------------------------


def write_images(folder: Path, count: int, size_wh: tuple[int, int], mode: str, seed: int, suffix: str = ".png"):
    """`count` random images of PIL size (w, h) and `mode` into `folder`; returns their arrays (H×W or H×W×3)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shape = (size_wh[1], size_wh[0]) + ((3,) if mode == "RGB" else ())
    arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
    for i, array in enumerate(arrays):
        Image.fromarray(array, mode).save(folder / f"{seed}-{i}{suffix}")
    return arrays


def gray_folder(root: Path, classes: dict[str, int], seed: int = 0) -> dict[bytes, int]:
    """Class folders of mode-L 20×24 (w×h) PNGs; returns {pixels as 1×24×20 bytes: label}, labels by sorted name."""
    written = {}
    for label, (name, count) in enumerate(sorted(classes.items())):
        for array in write_images(root / name, count, (20, 24), "L", seed + label):
            written[array[None].tobytes()] = label
    return written


def folder_module(root: Path, **kwargs) -> ImageFolderDataModule:
    args = {"root": str(root), "in_channels": 1, "image_size": [24, 20], "num_workers": 0, **kwargs}
    module = ImageFolderDataModule(**args)
    module.setup()
    return module


def split_contents(dataset) -> list[tuple[bytes, int]]:
    images, labels = dataset.tensors
    images = images[:] if not isinstance(images, torch.Tensor) else images  # streamed: decode all
    return [(image.numpy().tobytes(), int(label)) for image, label in zip(images, labels)]


def test_class_folders_give_classes_labels_and_pixels(tmp_path):
    written = gray_folder(tmp_path / "pets", {"dog": 12, "cat": 10, "eel": 8})
    module = folder_module(tmp_path / "pets", test_size=0.1, val_size=3)
    assert module.num_classes == 3 and module.class_names == ("cat", "dog", "eel")  # sorted folder names
    splits = [module.train_set, module.val_set, module.test_set]
    assert [len(s) for s in splits] == [30 - 3 - 3, 3, 3]  # test: round(0.1 · 30) = 3 held out first, then val 3
    seen = [item for s in splits for item in split_contents(s)]
    assert sorted(seen) == sorted(written.items())  # every image once, exact pixels, the label of its folder
    for s in splits:
        assert s.tensors[0].dtype == torch.uint8 and tuple(s.tensors[0].shape[1:]) == (1, 24, 20)


def test_images_of_other_sizes_and_modes_are_converted_and_center_cropped(tmp_path):
    root = tmp_path / "mixed"
    band = np.zeros((20, 60, 3), dtype=np.uint8)  # 60 wide, 20 high: outer thirds red, middle third gray 90
    band[:, :20] = band[:, 40:] = (255, 0, 0)
    band[:, 20:40] = 90
    (root / "a").mkdir(parents=True)
    Image.fromarray(band, "RGB").save(root / "a" / "band.png")
    Image.fromarray(np.full((7, 5, 4), (200, 200, 200, 255), dtype=np.uint8), "RGBA").save(root / "a" / "rgba.png")
    write_images(root / "b", 2, (33, 17), "RGB", seed=1, suffix=".jpg")
    write_images(root / "b", 2, (9, 9), "P", seed=2, suffix=".gif")
    module = folder_module(root, in_channels=1, image_size=[10, 10], test_size=1, val_size=0)
    images = torch.cat([module.train_set.tensors[0], module.test_set.tensors[0]])
    assert images.shape == (6, 1, 10, 10) and images.dtype == torch.uint8
    assert any((image == 200).all() for image in images)  # rgba.png: gray 200, alpha dropped, upscaled
    # band.png: the center 20×20 crop is the gray middle third (luma of gray 90 is 90; of red, 76), resized to 10×10;
    # squashing all 60 columns instead would make columns 1 and 8 red. The filter reaches 1 px past the crop.
    band_out = next(image[0] for image in images if (image[0, :, 5] == 90).all())
    assert (band_out[:, 1:9] == 90).all() and (band_out[:, [0, 9]] > 80).all()
    rgb = folder_module(root, in_channels=3, image_size=[8, 12], test_size=1, val_size=0)
    assert tuple(rgb.train_set.tensors[0].shape[1:]) == (3, 8, 12)
    # an 8×12 (h×w) crop of the 20×60 band keeps its 2:3 aspect: the middle 20×30, gray flanked by red
    band_out = next(
        i for i in torch.cat([rgb.train_set.tensors[0], rgb.test_set.tensors[0]]) if (i[:, :, 6] == 90).all()
    )
    assert band_out[0, :, 0].float().mean() > 200 and band_out[1, :, 0].float().mean() < 50  # red at the edges


def test_split_folders_are_used_as_given(tmp_path):
    root = tmp_path / "split"
    train = gray_folder(root / "train", {"a": 6, "b": 5}, seed=0)
    val = gray_folder(root / "val", {"a": 2, "b": 3}, seed=10)
    test = gray_folder(root / "test", {"a": 4}, seed=20)  # a split may lack a class
    module = folder_module(root, val_size=0.5, test_size=0.5)  # both ignored: the folders are the splits
    assert module.class_names == ("a", "b")
    assert sorted(split_contents(module.train_set)) == sorted(train.items())
    assert sorted(split_contents(module.val_set)) == sorted(val.items())
    assert sorted(split_contents(module.test_set)) == sorted(test.items())


def test_without_split_folders_the_held_out_images_are_seeded(tmp_path):
    written = gray_folder(tmp_path / "pool", {"a": 25, "b": 25})
    first, again = (folder_module(tmp_path / "pool", test_size=0.2, val_size=0.1) for _ in range(2))
    other = folder_module(tmp_path / "pool", test_size=0.2, val_size=0.1, split_seed=1)
    assert [len(first.train_set), len(first.val_set), len(first.test_set)] == [36, 4, 10]  # 50·0.2; 40·0.1
    assert split_contents(first.test_set) == split_contents(again.test_set)
    assert set(split_contents(first.test_set)) != set(split_contents(other.test_set))
    counted = folder_module(tmp_path / "pool", test_size=7, val_size=5, train_subset=20)
    assert [len(counted.train_set), len(counted.val_set), len(counted.test_set)] == [20, 5, 7]
    assert set(split_contents(counted.train_set)) <= set(written.items())


def test_mean_and_std_are_measured_on_the_training_images_unless_given(tmp_path):
    root = tmp_path / "stats"
    arrays = write_images(root / "train" / "a", 6, (20, 24), "RGB", seed=3)
    write_images(root / "test" / "a", 3, (20, 24), "RGB", seed=4)  # not training images: no influence
    pixels = np.stack(arrays).reshape(-1, 3) / 255
    module = folder_module(root, in_channels=3, val_size=0)
    assert module.mean == pytest.approx(pixels.mean(0), abs=1e-4)
    assert module.std == pytest.approx(pixels.std(0), abs=1e-4)
    given = folder_module(root, in_channels=3, val_size=0, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5])
    assert given.mean == (0.1, 0.2, 0.3) and given.std == (0.5, 0.5, 0.5)


def test_streamed_images_give_the_same_batches_as_images_in_memory(tmp_path):
    gray_folder(tmp_path / "pets", {"a": 15, "b": 12, "c": 9})
    memory = folder_module(tmp_path / "pets", batch_size=8, eval_batch_size=5)
    streamed = folder_module(tmp_path / "pets", batch_size=8, eval_batch_size=5, max_memory_mb=0, num_workers=1)
    assert memory.streamed is False and streamed.streamed is True
    assert (memory.mean, memory.std) == (streamed.mean, streamed.std)
    assert torch.equal(memory.train_set.tensors[0][:5], streamed.train_set.tensors[0][:5])  # what LabImages reads
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        pairs = list(zip(getattr(memory, name)(), getattr(streamed, name)(), strict=True))
        assert pairs
        for (x1, y1), (x2, y2) in pairs:
            assert x2.dtype == torch.uint8 and torch.equal(x1, x2) and torch.equal(y1, y2)
            assert torch.equal(memory.prepare_batch(x1, train=False), streamed.prepare_batch(x2, train=False))


def test_the_memory_limit_decides_when_images_are_streamed(tmp_path):
    gray_folder(tmp_path / "pets", {"a": 20, "b": 20})  # 40 images · 1·24·20 bytes = 19,200 bytes
    assert not folder_module(tmp_path / "pets", max_memory_mb=19_200 / 2**20).streamed
    assert folder_module(tmp_path / "pets", max_memory_mb=19_100 / 2**20).streamed
    with pytest.raises(ConfigError, match="data.on_device=true needs the images in memory"):
        assert folder_module(tmp_path / "pets", max_memory_mb=0, on_device=True).uses_device_loader


def bad_layout(root: Path) -> None:
    """root/val/ without root/train/."""
    gray_folder(root / "val", {"a": 1})


def empty_class(root: Path) -> None:
    gray_folder(root, {"a": 2})
    (root / "b").mkdir()


def unknown_val_class(root: Path) -> None:
    gray_folder(root / "train", {"a": 2})
    gray_folder(root / "val", {"z": 1})


@pytest.mark.parametrize(
    "make, message",
    [
        (None, "is not a folder"),
        (lambda root: root.mkdir(), "has no class folders"),
        (bad_layout, "has val/ but no train/"),
        (empty_class, "holds no images"),
        (unknown_val_class, "has a class folder 'z' that the training images"),
    ],
)
def test_a_missing_or_misshapen_folder_is_one_line_with_the_fix(tmp_path, make, message):
    root = tmp_path / "images"
    if make is not None:
        make(root)
    with pytest.raises(DataError) as error:
        folder_module(root)
    text = str(error.value)
    assert message in text and "Fix:" in text and "\n" not in text


def test_the_class_count_comes_from_the_folders_through_the_config(tmp_path):
    gray_folder(tmp_path / "pets", {"a": 3, "b": 3, "c": 3, "d": 3})
    cfg = compose_config(["data=imagefolder", f"data.root={tmp_path / 'pets'}", "data.in_channels=1"])
    assert cfg.data.num_classes == 4 and cfg.model.num_classes == 4
    wrong = compose_config(["data=imagefolder", f"data.root={tmp_path / 'pets'}", "data.num_classes=5"])
    with pytest.raises(Exception) as error:  # Hydra's instantiate wraps it; the run policy prints the cause
        instantiate(wrong.data)
    assert "data.num_classes=5 does not match imagefolder, whose num classes is 4" in str(user_error(error.value))


def test_the_command_line_refuses_a_missing_image_folder_in_one_line(tmp_path, process_state_restored):
    args = ["data=imagefolder", f"data.root={tmp_path}/nowhere", f"hydra.run.dir={tmp_path}/run"]
    code, output = run_script(["cnnlab-train", *args])
    assert code == 2, output[-2000:]
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"data.root={tmp_path}/nowhere is not a folder" in lines[0] and "Fix:" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_grayscale_folder_of_three_classes_trains_end_to_end_streamed(tmp_path):
    gray_folder(tmp_path / "shapes", {"x": 14, "y": 14, "z": 14})
    run_dir = tmp_path / "run"
    overrides = [
        *("data=imagefolder", f"data.root={tmp_path / 'shapes'}", "data.in_channels=1", "data.image_size=[24,20]"),
        *("data.max_memory_mb=0", "data.num_workers=1", "data.batch_size=16"),  # streamed, one worker process
        *("model.depth=2", "model.width=8", "trainer.max_epochs=2", "progress_bar=false", "augment=crop"),
    ]
    run(compose_config(overrides, run_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    # 1→8 conv (72) + BN (16), 8→16 conv (1,152) + BN (32), head 16·3 + 3: a 3-class head on 1-channel input
    assert metrics["params"] == 72 + 16 + 1_152 + 32 + 16 * 3 + 3


# --- torchvision's on-disk datasets ---------------------------------------------------------------


def random_images(count: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def write_cifar100(data_dir: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder = data_dir / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for split, count in (("train", 120), ("test", 30)):
        images, labels = random_images(count, (3, 32, 32), seed=len(split)), [i % 100 for i in range(count)]
        entry = {"data": images.reshape(count, -1), "fine_labels": labels, "coarse_labels": [0] * count}
        (folder / split).write_bytes(pickle.dumps(entry))
        written[split] = images, labels
    return written


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes((0, 0, 8, array.ndim)) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_mnist(folder: Path, compress: bool) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    written = {
        "train-images-idx3-ubyte": random_images(70, (28, 28), seed=1),
        "train-labels-idx1-ubyte": np.arange(70) % 10,
        "t10k-images-idx3-ubyte": random_images(20, (28, 28), seed=2),
        "t10k-labels-idx1-ubyte": (np.arange(20) * 3) % 10,
    }
    for name, array in written.items():
        write_idx(folder / name, array, compress)
    return written


def loaded(module) -> tuple[torch.Tensor, ...]:
    arrays = module.load_arrays()
    for images, labels in (arrays[:2], arrays[2:]):
        module.check_arrays(images, labels, "any")
    return arrays


def test_cifar100_reads_its_pickles_with_100_fine_classes(tmp_path):
    written = write_cifar100(tmp_path)
    module = CIFAR100DataModule(data_dir=str(tmp_path), val_size=20)
    train_x, train_y, test_x, test_y = loaded(module)
    assert module.input_shape == (3, 32, 32) and module.num_classes == 100
    assert torch.equal(train_x, torch.from_numpy(written["train"][0])) and train_y.tolist() == written["train"][1]
    assert torch.equal(test_x, torch.from_numpy(written["test"][0])) and test_y.tolist() == written["test"][1]
    names = module.class_names  # the dataset's fine label names are alphabetical: apple … worm
    assert len(set(names)) == 100 and list(names) == sorted(names) and (names[0], names[-1]) == ("apple", "worm")
    module.setup()
    assert (len(module.train_set), len(module.val_set), len(module.test_set)) == (100, 20, 30)


def test_svhn_reads_its_mat_files_with_digit_zero_as_label_0(tmp_path):
    written = {}
    for split, count in (("train", 25), ("test", 12)):
        images = random_images(count, (32, 32, 3), seed=count).transpose(1, 2, 3, 0)  # stored H×W×C×N
        labels = (np.arange(count) % 10 + 1).reshape(-1, 1)  # 1..10, where 10 is the digit 0
        savemat(tmp_path / f"{split}_32x32.mat", {"X": images, "y": labels})
        written[split] = images, labels
    module = SVHNDataModule(data_dir=str(tmp_path), val_size=5)
    train_x, train_y, test_x, test_y = loaded(module)
    assert module.input_shape == (3, 32, 32) and module.num_classes == 10
    for x, y, (images, labels) in ((train_x, train_y, written["train"]), (test_x, test_y, written["test"])):
        assert torch.equal(x, torch.from_numpy(images).permute(3, 2, 0, 1))  # image n, channel c = X[:, :, c, n]
        assert y.tolist() == [d % 10 for d in labels.ravel()]  # 10 → 0, others unchanged
    assert module.class_names == tuple("0123456789")


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_idx_files_raw_or_gzipped_as_torchvision_lays_them_out(tmp_path, compress):
    written = write_mnist(tmp_path / "MNIST" / "raw", compress)
    module = MNISTDataModule(data_dir=str(tmp_path))
    train_x, train_y, test_x, test_y = loaded(module)
    assert module.input_shape == (1, 28, 28) and module.num_classes == 10
    assert torch.equal(train_x[:, 0], torch.from_numpy(written["train-images-idx3-ubyte"]))
    assert torch.equal(test_x[:, 0], torch.from_numpy(written["t10k-images-idx3-ubyte"]))
    assert train_y.tolist() == written["train-labels-idx1-ubyte"].tolist()
    assert test_y.tolist() == written["t10k-labels-idx1-ubyte"].tolist()
    if not compress:  # torchvision's own reader agrees on the same files
        from torchvision.datasets import MNIST

        theirs = MNIST(str(tmp_path), train=True, download=False)
        assert torch.equal(train_x[:, 0], theirs.data) and torch.equal(train_y, theirs.targets)


def test_fashion_mnist_reads_gzipped_files_from_the_data_dir_itself(tmp_path):
    written = write_mnist(tmp_path / "fashion", compress=True)  # as Debian's dataset-fashion-mnist installs them
    module = FashionMNISTDataModule(data_dir=str(tmp_path / "fashion"))
    train_x, _, _, test_y = loaded(module)
    assert torch.equal(train_x[:, 0], torch.from_numpy(written["train-images-idx3-ubyte"]))
    assert test_y.tolist() == written["t10k-labels-idx1-ubyte"].tolist()
    assert module.class_names[0] == "T-shirt/top" and module.class_names[9] == "Ankle boot"


@pytest.mark.parametrize(
    "module, expected",
    [
        (CIFAR100DataModule, "cifar-100-python"),
        (SVHNDataModule, "train_32x32.mat, test_32x32.mat"),
        (MNISTDataModule, "MNIST/raw"),
        (FashionMNISTDataModule, "FashionMNIST/raw"),
    ],
)
def test_missing_dataset_files_are_one_line_naming_the_folder_files_and_fix(tmp_path, module, expected):
    with pytest.raises(DataError) as error:
        module(data_dir=str(tmp_path / "empty")).setup()
    text = str(error.value)
    assert str(tmp_path / "empty") in text and expected in text and "Fix:" in text and "\n" not in text


def test_a_damaged_idx_file_is_refused_in_one_line(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", compress=False)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError) as error:
        MNISTDataModule(data_dir=str(tmp_path)).load_arrays()
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("data, augment", [("mnist", "flip"), ("svhn", "vflip"), ("digits", "rotate90")])
def test_digit_datasets_refuse_flips_and_quarter_turns(data, augment):
    cfg = compose_config([f"data={data}", f"augment={augment}"])
    with pytest.raises(Exception) as error:
        instantiate(cfg.data, augment=instantiate(cfg.augment))
    message = str(user_error(error.value))
    assert f"augmentation op '{augment}' changes what a label means" in message and "(e.g. augment=crop)" in message


# --- scikit-learn's digits ------------------------------------------------------------------------


def test_digits_are_the_1797_real_images_scaled_to_uint8_in_a_seeded_split():
    from sklearn.datasets import load_digits

    module = DigitsDataModule()
    module.setup()
    sizes = [len(module.train_set), len(module.val_set), len(module.test_set)]
    assert sizes == [1_200, 200, 397] and sum(sizes) == 1_797
    images = torch.cat([s.tensors[0] for s in (module.train_set, module.val_set, module.test_set)])
    labels = torch.cat([s.tensors[1] for s in (module.train_set, module.val_set, module.test_set)])
    assert images.shape == (1_797, 1, 8, 8) and images.dtype == torch.uint8 and int(images.max()) == 255  # ink 16
    digits = load_digits()
    expected = sorted(
        (np.round(image * 255 / 16).astype(np.uint8).tobytes(), int(label))
        for image, label in zip(digits.images, digits.target)
    )
    assert sorted((i.numpy().tobytes(), int(y)) for i, y in zip(images, labels)) == expected
    again = DigitsDataModule()
    again.setup()
    assert torch.equal(again.test_set.tensors[0], module.test_set.tensors[0])


def test_a_small_cnn_learns_the_digits_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["data=digits", "model.depth=2", "model.width=16", "augment=none", "trainer.max_epochs=5"]
    overrides += ["progress_bar=false", "logger=none"]
    run(compose_config(overrides, run_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 5
    assert metrics["test_acc"] >= 0.8  # chance is 0.1; measured 0.98 on 397 test digits
