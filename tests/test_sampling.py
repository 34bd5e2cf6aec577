"""Randomness of the data order and of the per-epoch reseeding, checked by properties, not by the code's own formula.

Batches are identified through labels equal to the sample index (labels = arange), so what a loader yields can be
compared with the dataset directly, without going through the sampler under test.
"""

from types import SimpleNamespace

import torch
from torch.utils.data import TensorDataset

from cnnlab.data.datamodule import DeviceLoader, EpochBatchSampler
from cnnlab.data.tiny import TinyDataModule
from cnnlab.training.callbacks import ReseedEachEpoch


def epoch_order(sampler: EpochBatchSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return torch.cat(list(sampler)).tolist()


def test_each_epoch_visits_every_sample_exactly_once_in_batches_of_the_given_size():
    sampler = EpochBatchSampler(103, 10, seed=5)
    sampler.set_epoch(2)
    batches = list(sampler)
    assert [len(b) for b in batches] == [10] * 10 + [3] and len(sampler) == 11  # 103 = 10·10 + 3
    assert sorted(torch.cat(batches).tolist()) == list(range(103))


def test_drop_last_drops_only_the_partial_batch():
    sampler = EpochBatchSampler(103, 10, seed=5, drop_last=True)
    batches = list(sampler)
    assert [len(b) for b in batches] == [10] * 10 and len(sampler) == 10
    assert len(set(torch.cat(batches).tolist())) == 100


def test_order_changes_every_epoch_and_repeats_for_the_same_seed_and_epoch():
    sampler = EpochBatchSampler(200, 50, seed=1)
    orders = [epoch_order(sampler, e) for e in range(4)]
    assert len({tuple(o) for o in orders}) == 4  # four epochs, four different permutations
    assert orders[0] != list(range(200))  # shuffled at all
    assert epoch_order(EpochBatchSampler(200, 50, seed=1), 2) == orders[2]  # a fresh sampler replays epoch 2


def test_order_differs_between_seeds_for_every_epoch():
    a, b = EpochBatchSampler(200, 50, seed=1), EpochBatchSampler(200, 50, seed=2)
    assert all(epoch_order(a, e) != epoch_order(b, e) for e in range(3))
    # seed s, epoch e must not be seed s+1, epoch e−1 (nor any other cheap collision)
    assert epoch_order(a, 1) != epoch_order(b, 0) and epoch_order(b, 1) != epoch_order(a, 2)


def test_evaluation_order_is_the_dataset_order():
    sampler = EpochBatchSampler(23, 10, seed=9, shuffle=False)
    sampler.set_epoch(3)
    assert [b.tolist() for b in sampler] == [list(range(10)), list(range(10, 20)), [20, 21, 22]]


def indexed_dataset(n: int = 50) -> TensorDataset:
    """Images whose every pixel is the sample index; labels are the index too."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return TensorDataset(images, torch.arange(n))


def test_device_loader_yields_the_dataset_rows_the_sampler_names():
    data = indexed_dataset()
    sampler = EpochBatchSampler(50, 16, seed=3)
    loader = DeviceLoader(*data.tensors, sampler, torch.device("cpu"))
    for epoch in range(2):
        sampler.set_epoch(epoch)
        seen = []
        for images, labels in loader:
            assert torch.equal(images, data.tensors[0][labels])  # image i belongs to label i
            seen += labels.tolist()
        assert sorted(seen) == list(range(50)) and seen == epoch_order(EpochBatchSampler(50, 16, seed=3), epoch)
    assert len(loader) == 4  # ceil(50 / 16)


def test_datamodule_loader_pairs_images_with_their_labels_and_reshuffles_each_epoch():
    dm = TinyDataModule(train_count=200, val_size=40, batch_size=32, seed=7)
    dm.setup()
    loader = dm.train_dataloader()
    label_of = {bytes(img.flatten().tolist()): int(y) for img, y in zip(*dm.train_set.tensors)}
    orders = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        order = []
        for images, labels in loader:
            assert [label_of[bytes(img.flatten().tolist())] for img in images] == labels.tolist()
            order += [bytes(img.flatten().tolist()) for img in images]
        assert len(order) == 160 and set(order) == set(label_of)
        orders.append(order)
    assert orders[0] != orders[1]


def reseeded_draw(seed: int, epoch: int, rank: int = 0, before: int = 12345) -> torch.Tensor:
    torch.manual_seed(before)  # whatever the global RNG held before must not matter
    torch.rand(3)
    ReseedEachEpoch(seed).on_train_epoch_start(SimpleNamespace(current_epoch=epoch, global_rank=rank), None)
    return torch.rand(8)


def test_reseeding_depends_on_seed_epoch_and_rank_and_only_on_them():
    draws = {(s, e, r): reseeded_draw(s, e, r) for s in (0, 1) for e in (0, 1, 2) for r in (0, 1)}
    assert len({tuple(d.tolist()) for d in draws.values()}) == len(draws)  # 12 combinations, 12 streams
    assert torch.equal(reseeded_draw(1, 2, 1, before=999), draws[(1, 2, 1)])  # reproducible from any prior state


def test_iterating_a_loader_leaves_the_global_rng_alone():
    """Augmentation draws from the global RNG right after ReseedEachEpoch; a loader drawing there first would
    make a resumed run's augmentation differ from the uninterrupted run's."""
    dm = TinyDataModule(train_count=200, val_size=40, batch_size=32)
    dm.setup()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        list(loader)
    assert torch.equal(torch.get_rng_state(), before)


def test_drop_last_never_drops_validation_or_test_samples():
    dm = TinyDataModule(train_count=200, test_count=47, val_size=43, batch_size=32, eval_batch_size=10, drop_last=True)
    dm.setup()
    assert sum(len(y) for _, y in dm.train_dataloader()) == 128  # 157 training images → 4 full batches of 32
    assert sum(len(y) for _, y in dm.val_dataloader()) == 43 and sum(len(y) for _, y in dm.test_dataloader()) == 47


def test_under_ddp_each_rank_takes_an_equal_disjoint_share_of_the_same_order(monkeypatch):
    import cnnlab.data.datamodule as datamodule

    world = 3
    monkeypatch.setattr(datamodule.dist, "is_available", lambda: True)
    monkeypatch.setattr(datamodule.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(datamodule.dist, "get_world_size", lambda: world)
    shares = []
    for rank in range(world):
        monkeypatch.setattr(datamodule.dist, "get_rank", lambda rank=rank: rank)
        shares.append(epoch_order(EpochBatchSampler(50, 4, seed=4), 1))
    # The order of one process, worked out without the sampler: the seeded permutation it documents.
    order = torch.randperm(50, generator=torch.Generator().manual_seed(4 * 1_000_003 + 1)).tolist()
    assert [len(s) for s in shares] == [16, 16, 16]  # 50 // 3 · 3 = 48 used, so every rank runs as many steps
    assert sorted(sum(shares, [])) == sorted(order[:48]) and shares[1] == order[:48][1::3]
    evaluation = []
    for rank in range(world):  # evaluation: nothing dropped, ranks interleave the dataset order
        monkeypatch.setattr(datamodule.dist, "get_rank", lambda rank=rank: rank)
        evaluation.append(epoch_order(EpochBatchSampler(50, 4, shuffle=False), 0))
    assert evaluation[0] == list(range(0, 50, 3)) and sorted(sum(evaluation, [])) == list(range(50))
    monkeypatch.setattr(datamodule.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(datamodule.dist, "get_rank", lambda: 0)
    assert len(epoch_order(EpochBatchSampler(50, 4, seed=4), 1)) == 25


def test_the_device_loader_keeps_images_labels_and_indices_on_its_device():
    # The meta device stands in for a GPU: a batch left on the CPU by mistake would show as a CPU tensor.
    data = indexed_dataset()
    loader = DeviceLoader(*data.tensors, EpochBatchSampler(50, 16, seed=3), torch.device("meta"))
    assert (loader.images.device.type, loader.labels.device.type) == ("meta", "meta")
    images, labels = next(iter(loader))
    assert (images.device.type, labels.device.type, images.shape, labels.shape) == (
        "meta",
        "meta",
        (16, 3, 4, 4),
        (16,),
    )
