"""The datamodule: shapes, dtypes, split sizes, determinism, label safety, and clear data errors."""

import pickle
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from cnnlab.augment import Augmentation
from cnnlab.augment.ops import RandomFlip, RandomRotate90, RandomVerticalFlip
from cnnlab.data.cifar10 import CIFAR10DataModule
from cnnlab.data.tiny import TinyDataModule, make_tiny_images
from cnnlab.errors import ConfigError, DataError

# The tiny data's per-channel statistics, typed in from data/tiny.py's docstring ("measured on 1,000
# generated images") so a changed constant or a changed formula shows up here.
TINY_MEAN, TINY_STD = (0.46, 0.42, 0.43), (0.20, 0.19, 0.20)


def by_hand_normalised(raw: torch.Tensor) -> torch.Tensor:
    """uint8 → (x/255 − mean)/std per channel, written out without the datamodule."""
    mean, std = torch.tensor(TINY_MEAN).view(1, 3, 1, 1), torch.tensor(TINY_STD).view(1, 3, 1, 1)
    return (raw.float() / 255 - mean) / std


def rows(images: torch.Tensor) -> set[bytes]:
    """Each image as bytes: identity of a sample independent of where it sits."""
    return {bytes(img.flatten().tolist()) for img in images}


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


def test_normalisation_is_per_channel_mean_and_std_of_the_data():
    dm = TinyDataModule(train_count=1000, val_size=100)
    dm.setup()
    raw = dm.train_set.tensors[0]
    x = dm.prepare_batch(raw, train=False)
    assert torch.allclose(x, by_hand_normalised(raw), atol=1e-5)
    # the constants were measured on 1,000 images: on 900 of them each channel is ~N(0, 1) to 2 decimals
    per_channel = x.transpose(0, 1).reshape(3, -1)
    assert per_channel.mean(1).abs().max() < 0.05 and (per_channel.std(1) - 1).abs().max() < 0.05


def test_train_val_and_test_are_disjoint_and_train_plus_val_is_the_whole_training_file():
    dm = TinyDataModule(train_count=300, test_count=50, val_size=60)
    dm.setup()
    all_train, _ = make_tiny_images(300, seed=1234)  # what the datamodule loads, generated independently
    train, val, test = (rows(s.tensors[0]) for s in (dm.train_set, dm.val_set, dm.test_set))
    assert len(rows(all_train)) == 300  # every generated image is unique, so bytes identify samples
    assert (len(train), len(val), len(test)) == (240, 60, 50)
    assert not train & val and not train & test and not val & test
    assert train | val == rows(all_train)


def test_labels_stay_with_their_images_through_the_split():
    dm = TinyDataModule(train_count=300, test_count=50, val_size=60)
    dm.setup()
    label_of = {}
    for count, seed in ((300, 1234), (50, 1235)):  # train file, test file (data_seed + 1)
        images, labels = make_tiny_images(count, seed=seed)
        label_of.update({bytes(img.flatten().tolist()): int(y) for img, y in zip(images, labels)})
    for split in (dm.train_set, dm.val_set, dm.test_set):
        assert [label_of[bytes(img.flatten().tolist())] for img in split.tensors[0]] == split.tensors[1].tolist()


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


def test_prepare_batch_flips_only_when_training():
    dm = TinyDataModule(train_count=200, val_size=40, augment=Augmentation([RandomVerticalFlip(p=1.0)]))
    dm.setup()
    raw = dm.val_set.tensors[0][:8]
    assert torch.allclose(dm.prepare_batch(raw, train=False), by_hand_normalised(raw), atol=1e-5)
    assert torch.allclose(dm.prepare_batch(raw, train=True), by_hand_normalised(raw.flip(-2)), atol=1e-5)


class Recorder(L.LightningModule):
    """A one-parameter module that keeps every batch Lightning hands it, per stage."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"train": [], "val": [], "test": []}

    def _keep(self, stage, batch):
        self.seen[stage].append((batch[0].detach().clone(), batch[1].clone()))
        return (self.w * batch[0].mean()).sum()

    def training_step(self, batch, batch_idx):
        return self._keep("train", batch)

    def validation_step(self, batch, batch_idx):
        self._keep("val", batch)

    def test_step(self, batch, batch_idx):
        self._keep("test", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.fixture(scope="module")
def recorded() -> tuple[TinyDataModule, Recorder]:
    """One real Trainer fit + test with a flip-always augmentation: what the model actually received."""
    dm = TinyDataModule(
        train_count=200,
        test_count=30,
        val_size=40,
        batch_size=64,
        eval_batch_size=25,
        augment=Augmentation([RandomVerticalFlip(p=1.0)]),
    )
    module = Recorder()
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    return dm, module


def test_real_trainer_augments_train_batches_and_keeps_their_labels(recorded):
    dm, module = recorded
    images = torch.cat([b[0] for b in module.seen["train"]])
    labels = torch.cat([b[1] for b in module.seen["train"]])
    assert len(images) == 160  # 200 − 40 validation images, one epoch
    # flip every training image by hand and find each received sample among them: every one was flipped, label intact
    raw, raw_labels = dm.train_set.tensors
    flipped = by_hand_normalised(raw.flip(-2))
    found = []
    for x, y in zip(images, labels):
        (match,) = ((flipped - x).abs().amax(dim=(1, 2, 3)) < 1e-5).nonzero().flatten().tolist()
        assert int(raw_labels[match]) == int(y)
        found.append(match)
    assert sorted(found) == list(range(160))  # each training image exactly once


def test_real_trainer_never_augments_validation_or_test_batches(recorded):
    dm, module = recorded
    for stage, split in (("val", dm.val_set), ("test", dm.test_set)):
        images = torch.cat([b[0] for b in module.seen[stage]])
        labels = torch.cat([b[1] for b in module.seen[stage]])
        assert torch.allclose(images, by_hand_normalised(split.tensors[0]), atol=1e-5)  # in order, unflipped
        assert torch.equal(labels, split.tensors[1])


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


def test_download_asks_torchvision_for_the_archive_into_data_dir_under_a_lock(tmp_path, monkeypatch):
    import torchvision.datasets

    from conftest import write_fake_cifar

    data_dir = tmp_path / "new" / "data"  # two levels that do not exist yet
    calls = []

    def download(root, train, download):
        calls.append((root, train, download, (data_dir / ".cnnlab-download.lock").exists()))
        write_fake_cifar(Path(root), per_batch=10)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", download)
    dm = CIFAR10DataModule(data_dir=str(data_dir), download=True, val_size=10)
    dm.prepare_data()
    dm.prepare_data()  # found now: no second download
    # train=True downloads and extracts the whole archive (test_batch included); the lock file sits in data_dir
    assert calls == [(str(data_dir), True, True, True)]
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set)) == (40, 10)


def test_a_download_finished_by_another_job_while_waiting_for_the_lock_is_not_repeated(tmp_path, monkeypatch):
    import contextlib

    import torchvision.datasets

    import cnnlab.data.cifar10 as cifar10
    from conftest import write_fake_cifar

    @contextlib.contextmanager
    def lock_held_by_a_job_that_downloads(path):
        write_fake_cifar(tmp_path, per_batch=10)  # the other job finishes before this one gets the lock
        yield

    calls = []
    monkeypatch.setattr(cifar10, "FileLock", lock_held_by_a_job_that_downloads)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda *args, **kwargs: calls.append(args))
    CIFAR10DataModule(data_dir=str(tmp_path), download=True).prepare_data()
    assert calls == []


def _pickled(entry) -> bytes:
    return pickle.dumps(entry)


def _u8(*shape):
    return torch.zeros(*shape, dtype=torch.uint8).numpy()


HINT = (
    "Re-download CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) and extract it "
    "into data.data_dir, or delete the damaged folder so a download can replace it."
)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "is missing."),
        (b"hello", "is truncated or not a pickle (UnpicklingError: Memo value not found at index 101)."),
        (_pickled({"labels": [0]}), "lacks 'data'/'labels' (found ['labels'])."),
        (_pickled({"data": _u8(1, 3072)}), "lacks 'data'/'labels' (found ['data'])."),
        (_pickled([1, 2]), "lacks 'data'/'labels' (found list)."),
        (_pickled({"data": torch.zeros(2, 3072, dtype=torch.int16).numpy(), "labels": [0, 1]}),
         "holds data of shape (2, 3072) and dtype torch.int16; expected N×3072 uint8."),
        (_pickled({"data": _u8(2, 3, 1024), "labels": [0, 1]}),
         "holds data of shape (2, 3, 1024) and dtype torch.uint8; expected N×3072 uint8."),
        (_pickled({"data": _u8(4, 3072), "labels": [0, 1, 2]}), "has 4 images but 3 labels."),
        (_pickled({"data": _u8(2, 3072), "labels": [0, 10]}), "has labels outside 0..9 (min 0, max 10)."),
        (_pickled({"data": _u8(2, 3072), "labels": [-1, 9]}), "has labels outside 0..9 (min -1, max 9)."),
    ],
)  # fmt: skip
def test_a_bad_batch_file_is_refused_with_the_file_what_is_wrong_and_the_fix(tmp_path, content, message):
    from cnnlab.data.cifar10 import read_batch

    path = tmp_path / "data_batch_1"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as error:
        read_batch(path)
    assert str(error.value) == f"CIFAR-10 batch file {path} {message} {HINT}"


def test_labels_load_as_int64_whatever_integer_type_the_pickle_holds(tmp_path):
    import numpy as np

    from cnnlab.data.cifar10 import read_batch

    path = tmp_path / "data_batch_1"
    path.write_bytes(_pickled({"data": _u8(3, 3072), "labels": np.array([7, 0, 9], dtype=np.int32)}))
    images, labels = read_batch(path)
    assert (labels.dtype, labels.tolist(), images.shape) == (torch.int64, [7, 0, 9], (3, 3, 32, 32))


def test_data_dir_may_be_the_batches_folder_itself_but_no_other_folder_of_batch_files(fake_cifar, tmp_path):
    from cnnlab.data.cifar10 import find_batches_folder

    folder = fake_cifar / "cifar-10-batches-py"
    assert find_batches_folder(fake_cifar) == folder and find_batches_folder(folder) == folder
    elsewhere = tmp_path / "batches"
    folder.rename(elsewhere)  # the same files under another name are not taken for CIFAR-10
    assert find_batches_folder(elsewhere) is None and find_batches_folder(tmp_path) is None


def test_setup_without_prepare_data_still_downloads_then_loads(tmp_path, monkeypatch):
    import torchvision.datasets

    from conftest import write_fake_cifar

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda root, train, download: write_fake_cifar(Path(root)))
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "data"), download=True, val_size=10)
    dm.setup()  # e.g. a rank whose prepare_data Lightning did not call
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (190, 10, 40)


def test_the_python_defaults_agree_with_the_config():
    import yaml

    from conftest import REPO

    config = yaml.safe_load((REPO / "conf/data/cifar10.yaml").read_text())
    dm = CIFAR10DataModule()
    assert (dm.data_dir, dm.download) == (Path(config["data_dir"]), config["download"]) == (Path("data"), True)
    assert CIFAR10DataModule(data_dir="~/cifar").data_dir == Path.home() / "cifar"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "truncated or not a pickle"),
        (lambda p: p.write_text("hello"), "truncated or not a pickle"),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": torch.zeros(4, 100, dtype=torch.uint8).numpy(), "labels": [0] * 4})
            ),
            "shape",
        ),
        (
            lambda p: p.write_bytes(
                pickle.dumps({"data": torch.zeros(4, 3072, dtype=torch.uint8).numpy(), "labels": [0, 1, 2, 12]})
            ),
            "outside 0..9",
        ),
    ],
)
def test_damaged_batch_file_is_named_and_left_in_place(fake_cifar, damage, message):
    path = fake_cifar / "cifar-10-batches-py" / "data_batch_3"
    damage(path)
    before = path.read_bytes()
    dm = CIFAR10DataModule(data_dir=str(fake_cifar), download=True, val_size=10)
    with pytest.raises(DataError, match=rf"data_batch_3.*{message}.*Re-download"):
        dm.setup()
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"val_size": 1000}, r"data.val_size=1000 does not fit.*data.val_size=0.1"),
        ({"val_size": 40, "train_subset": 500}, r"data.train_subset=500 is outside 1..160"),
    ],
)
def test_split_sizes_that_do_not_fit_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TinyDataModule(train_count=200, **kwargs).setup()


def test_val_size_may_be_a_fraction():
    dm = TinyDataModule(train_count=200, val_size=0.25)
    dm.setup()
    assert len(dm.val_set) == 50


@pytest.mark.real_data
def test_real_cifar_loads_the_full_set(real_cifar):
    dm = CIFAR10DataModule(data_dir=str(real_cifar), download=False)
    dm.setup()
    train_y = torch.cat([dm.train_set.tensors[1], dm.val_set.tensors[1]])
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (45_000, 5_000, 10_000)
    # the dataset's published facts: 5,000 training and 1,000 test images per class, the first test labels
    assert torch.bincount(train_y).tolist() == [5000] * 10
    assert torch.bincount(dm.test_set.tensors[1]).tolist() == [1000] * 10
    assert dm.test_set.tensors[1][:5].tolist() == [3, 8, 8, 0, 6]  # cat, ship, ship, airplane, frog
    train_x = torch.cat([dm.train_set.tensors[0], dm.val_set.tensors[0]]).float() / 255
    assert train_x.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0.4914, 0.4822, 0.4465], abs=1e-4)


def palette_colour(x: torch.Tensor) -> torch.Tensor:
    """Index of the tiny palette colour nearest (by angle) to each image's mean saturated (box) pixel."""
    palette = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.3, 0.9], [0.9, 0.85, 0.2], [0.8, 0.2, 0.8]])
    saturated = ((x.max(1).values - x.min(1).values) > 0.3).float().unsqueeze(1)
    colour = torch.nn.functional.normalize((x * saturated).sum((2, 3)), dim=1)
    return (colour @ torch.nn.functional.normalize(palette, dim=1).T).argmax(1)


def test_tiny_classes_are_a_palette_colour_by_k_over_2_and_stripe_direction_by_parity():
    # data/tiny.py's spec, read back from the pixels: the box's colour (mean of the saturated pixels, nearest
    # palette colour by angle) names k // 2, and horizontal stripes (luma varies more from row to row than from
    # column to column) name the even classes.
    x, y = make_tiny_images(1000, seed=3)
    x = x.float() / 255
    assert torch.equal(palette_colour(x), y // 2)
    luma = x.mean(1)
    horizontal = luma.mean(2).var(1) > luma.mean(1).var(1)
    assert (horizontal == (y % 2 == 0)).float().mean() >= 0.99
    assert torch.bincount(y, minlength=10).tolist() == [100] * 10  # balanced: a permutation of 0..999, mod 10


def test_tiny_images_are_drawn_chunk_by_chunk_to_the_last_image():
    # 10 images in chunks of 4 (4 + 4 + 2): every image is a drawn picture of its class, not unfilled memory
    x, y = make_tiny_images(10, seed=0, chunk=4)
    assert torch.equal(y, make_tiny_images(10, seed=0)[1])  # labels do not depend on the chunking
    assert torch.equal(palette_colour(x.float() / 255), y // 2)


def test_missing_data_with_download_off_is_one_exact_line(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataError) as error:
        dm.prepare_data()
    assert str(error.value) == (
        f"CIFAR-10 not found: {tmp_path}/nowhere/cifar-10-batches-py does not exist or is empty, and download is off "
        "(data.download=false). Fix: put an extracted 'cifar-10-batches-py' folder (torchvision's layout: "
        f"data_batch_1..5, test_batch) inside {tmp_path}/nowhere, or point at the folder that holds it with "
        "data.data_dir=<path>; or train on synthetic data with data=tiny."
    )


@pytest.mark.parametrize("val_size, sizes", [(0, (200, 0)), (199, (1, 199)), (0.5, (100, 100))])
def test_val_size_may_be_anything_from_zero_to_all_but_one_image(val_size, sizes):
    dm = TinyDataModule(train_count=200, val_size=val_size)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == sizes


def test_a_val_size_that_leaves_no_training_image_is_refused_with_the_range_and_a_fix():
    with pytest.raises(ConfigError) as error:
        TinyDataModule(train_count=200, val_size=200).setup()
    assert str(error.value) == (
        "data.val_size=200 does not fit: tiny has 200 training images, so the validation split must hold 0..199. "
        "Fix: e.g. data.val_size=20 or a fraction such as data.val_size=0.1 (or 0 to train on all of them)."
    )
    with pytest.raises(ConfigError, match=r"must hold 0..4. Fix: e.g. data.val_size=1 or"):
        TinyDataModule(train_count=5, val_size=5).setup()  # a tenth of 5 rounds down to 0: suggest 1


@pytest.mark.parametrize("subset, ok", [(0, False), (1, True), (160, True), (161, False)])
def test_train_subset_ranges_over_one_to_every_training_image(subset, ok):
    dm = TinyDataModule(train_count=200, val_size=40, train_subset=subset)
    if ok:
        dm.setup()
        assert len(dm.train_set) == subset
    else:
        with pytest.raises(ConfigError, match=rf"data.train_subset={subset} is outside 1..160"):
            dm.setup()


def test_label_unsafe_refusal_names_the_op_why_every_unsafe_op_and_the_fix():
    unsafe = {"rotate90": "a quarter turn swaps stripe orientations.", "vflip": "upside down."}
    with pytest.raises(ConfigError) as error:
        TinyDataModule(augment=Augmentation([RandomRotate90()]), label_unsafe=unsafe)
    assert str(error.value) == (
        "augmentation op 'rotate90' changes what a label means on tiny: a quarter turn swaps stripe orientations. "
        "Label-unsafe ops for tiny: rotate90, vflip. Fix: choose a label-safe augmentation (e.g. augment=crop_flip), "
        "or set augment.allow_label_unsafe=true to run it anyway."
    )


def _fake_trainer(overfit_batches=0, device="cpu", training=False):
    from types import SimpleNamespace

    return SimpleNamespace(
        overfit_batches=overfit_batches, training=training, current_epoch=0,
        strategy=SimpleNamespace(root_device=torch.device(device)),
    )  # fmt: skip


def test_overfitting_batches_needs_the_device_loader_and_only_then():
    dm = TinyDataModule(train_count=100, val_size=20, on_device=False)
    dm.setup()
    dm.trainer = _fake_trainer(overfit_batches=1)
    with pytest.raises(ConfigError) as error:
        dm.train_dataloader()
    assert str(error.value) == (
        "trainer.overfit_batches=1 needs cnnlab's device loader, but data.on_device=False (augment: "
        "Augmentation(identity)) makes batches come from a DataLoader. Fix: data.on_device=true (as debug=overfit "
        "sets), or trainer.overfit_batches=0."
    )
    dm.trainer = _fake_trainer(overfit_batches=0)
    dm.train_dataloader()  # a DataLoader is fine when nothing is overfitted
    on_device = TinyDataModule(train_count=100, val_size=20, on_device=True)
    on_device.setup()
    on_device.trainer = _fake_trainer(overfit_batches=3)
    on_device.train_dataloader()


def test_loaders_live_on_the_trainers_device_and_evaluation_keeps_the_dataset_order():
    dm = TinyDataModule(train_count=100, val_size=20, eval_batch_size=8)
    dm.setup()
    dm.trainer = _fake_trainer(device="meta")
    assert dm.val_dataloader().images.device.type == "meta"
    assert dm.normalize(torch.zeros(2, 3, 4, 4, device="meta")).device.type == "meta"
    dm.trainer = None  # the DataLoader path: labels of val and test come out in dataset order, every epoch
    for loader, split in ((dm.val_dataloader(), dm.val_set), (dm.test_dataloader(), dm.test_set)):
        assert torch.equal(torch.cat([labels for _, labels in loader]), split.tensors[1])


def test_the_batch_hook_without_a_trainer_only_normalises():
    dm = TinyDataModule(train_count=100, val_size=20, augment=Augmentation([RandomFlip(p=1.0)]))
    dm.setup()
    raw, labels = dm.train_set.tensors[0][:4], dm.train_set.tensors[1][:4]
    images, out_labels = dm.on_after_batch_transfer((raw, labels), 0)
    assert torch.allclose(images, by_hand_normalised(raw), atol=1e-5) and torch.equal(out_labels, labels)


def test_the_datamodules_python_defaults_agree_with_the_config():
    import yaml

    from cnnlab.data.datamodule import ImageDataModule
    from conftest import REPO

    data = yaml.safe_load((REPO / "conf/data/cifar10.yaml").read_text())
    train = yaml.safe_load((REPO / "conf/train.yaml").read_text())
    from cnnlab.data.cifar10 import CIFAR10DataModule
    from cnnlab.errors import ConfigError

    with pytest.raises(
        ConfigError, match="images does not declare its num_classes, in_channels, image_size, mean, std"
    ):
        ImageDataModule()  # the base class has no shape: no 10, 3 or 32 outside a dataset's own file
    dm = CIFAR10DataModule()
    for key in ("batch_size", "eval_batch_size", "val_size", "train_subset", "split_seed", "drop_last"):
        assert getattr(dm, key) == data[key], key
    assert dm.seed == train["seed"] == 0
    tiny = TinyDataModule()
    assert (tiny.train_count, tiny.test_count, tiny.data_seed) == (1200, 300, 1234)  # conf/data/tiny.yaml's
