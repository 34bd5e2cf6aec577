"""The datamodule: shapes, dtypes, split sizes, determinism, label safety, and clear data errors."""

import pickle

import pytest
import torch

from cnnlab.augment import Augmentation
from cnnlab.augment.ops import RandomFlip, RandomRotate90, RandomVerticalFlip
from cnnlab.data.cifar10 import CIFAR10DataModule
from cnnlab.data.tiny import TinyDataModule
from cnnlab.errors import ConfigError, DataError


def first_batch(dm, train=True):
    loader = dm.train_dataloader() if train else dm.val_dataloader()
    images, labels = next(iter(loader))
    return dm.prepare_batch(images, train=train), labels, images


def test_tiny_shapes_dtypes_and_splits():
    dm = TinyDataModule(train_count=300, test_count=50, val_size=60, batch_size=32)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (240, 60, 50)
    x, y, raw = first_batch(dm)
    assert raw.dtype == torch.uint8 and raw.shape == (32, 3, 32, 32)
    assert x.dtype == torch.float32 and x.shape == (32, 3, 32, 32) and y.dtype == torch.int64
    assert abs(float(x.mean())) < 0.5  # normalised


def test_fake_cifar_reads_torchvision_layout(fake_cifar):
    dm = CIFAR10DataModule(data_dir=str(fake_cifar), download=False, val_size=50, batch_size=16)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (150, 50, 40)
    assert dm.train_set.tensors[0].shape[1:] == (3, 32, 32)


def test_str_keyed_pickles_load_too(tmp_path):
    from conftest import write_fake_cifar

    dm = CIFAR10DataModule(data_dir=str(write_fake_cifar(tmp_path, bytes_keys=False)), download=False, val_size=50)
    dm.setup()
    assert len(dm.test_set) == 40


def test_split_is_fixed_across_run_seeds():
    a = TinyDataModule(train_count=200, val_size=40, seed=1)
    b = TinyDataModule(train_count=200, val_size=40, seed=2)
    a.setup(), b.setup()
    assert torch.equal(a.val_set.tensors[0], b.val_set.tensors[0])


def test_train_subset_takes_first_n_of_the_seeded_shuffle():
    full = TinyDataModule(train_count=200, val_size=40)
    sub = TinyDataModule(train_count=200, val_size=40, train_subset=25)
    full.setup(), sub.setup()
    assert len(sub.train_set) == 25
    assert torch.equal(sub.train_set.tensors[0], full.train_set.tensors[0][:25])


def test_same_seed_same_batches_and_different_seed_different_batches():
    def labels(seed):
        dm = TinyDataModule(train_count=200, val_size=40, seed=seed, batch_size=50)
        dm.setup()
        return next(iter(dm.train_dataloader()))[1]
    assert torch.equal(labels(3), labels(3))
    assert not torch.equal(labels(3), labels(4))


def test_batch_hook_augments_images_and_never_touches_labels():
    dm = TinyDataModule(train_count=200, val_size=40, augment=Augmentation([RandomVerticalFlip(p=1.0)]))
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    out_images, out_labels = dm.on_after_batch_transfer((images, labels.clone()), 0)
    assert torch.equal(out_labels, labels) and out_images.shape == images.shape


def test_validation_is_never_augmented():
    dm = TinyDataModule(train_count=200, val_size=40, augment=Augmentation([RandomVerticalFlip(p=1.0)]))
    dm.setup()
    raw = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(dm.prepare_batch(raw, train=False), dm.normalize(raw.float() / 255))
    assert torch.equal(dm.prepare_batch(raw, train=True), dm.normalize(raw.float().flip(-2) / 255))


def test_label_unsafe_transform_is_refused_unless_allowed():
    unsafe = {"rotate90": "a quarter turn swaps stripe orientations."}
    with pytest.raises(ConfigError, match=r"'rotate90'.*allow_label_unsafe=true"):
        TinyDataModule(augment=Augmentation([RandomRotate90()]), label_unsafe=unsafe)
    TinyDataModule(augment=Augmentation([RandomRotate90()], allow_label_unsafe=True), label_unsafe=unsafe)
    TinyDataModule(augment=Augmentation([RandomFlip()]), label_unsafe=unsafe)


def test_missing_data_without_download_names_the_folder_and_the_fix(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataError, match=r"nowhere/cifar-10-batches-py.*data.data_dir=.*data=tiny"):
        dm.prepare_data()


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="download failed: OSError: network is unreachable"):
        CIFAR10DataModule(data_dir=str(tmp_path / "empty"), download=True).prepare_data()


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "truncated or not a pickle"),
    (lambda p: p.write_text("hello"), "truncated or not a pickle"),
    (lambda p: p.write_bytes(pickle.dumps({"data": torch.zeros(4, 100, dtype=torch.uint8).numpy(), "labels": [0] * 4})), "shape"),
    (lambda p: p.write_bytes(pickle.dumps({"data": torch.zeros(4, 3072, dtype=torch.uint8).numpy(), "labels": [0, 1, 2, 12]})), "outside 0..9"),
])
def test_damaged_batch_file_is_named_and_left_in_place(fake_cifar, damage, message):
    path = fake_cifar / "cifar-10-batches-py" / "data_batch_3"
    damage(path)
    before = path.read_bytes()
    dm = CIFAR10DataModule(data_dir=str(fake_cifar), download=True, val_size=10)
    with pytest.raises(DataError, match=rf"data_batch_3.*{message}.*Re-download"):
        dm.setup()
    assert path.read_bytes() == before


@pytest.mark.parametrize("kwargs, message", [
    ({"val_size": 1000}, r"data.val_size=1000 does not fit.*data.val_size=0.1"),
    ({"val_size": 40, "train_subset": 500}, r"data.train_subset=500 is outside 1..160"),
])
def test_split_sizes_that_do_not_fit_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TinyDataModule(train_count=200, **kwargs).setup()


def test_val_size_may_be_a_fraction():
    dm = TinyDataModule(train_count=200, val_size=0.25)
    dm.setup()
    assert len(dm.val_set) == 50


@pytest.mark.real_data
def test_real_cifar_partial_copy_loads(real_cifar):
    dm = CIFAR10DataModule(data_dir=str(real_cifar), download=False, val_size=500)
    dm.setup()
    total = len(dm.train_set) + len(dm.val_set)
    assert total >= 3805 and len(dm.test_set) >= 761
    assert dm.test_set.tensors[1][:5].tolist() == [3, 8, 8, 0, 6]  # cat, ship, ship, airplane, frog
