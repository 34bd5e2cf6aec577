"""Batches by index: a sampler whose shuffle depends only on (seed, epoch), so resumed runs replay the same
order, and a loader that gathers each batch from a dataset kept whole on the training device."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yield index batches; under DDP each rank takes an equal, disjoint share of the order."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False) -> None:
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
            order = order[dist.get_rank():: world]
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

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, sampler: EpochBatchSampler,
                 device: torch.device) -> None:
        self.images, self.labels = images.to(device), labels.to(device)
        self.sampler = sampler  # Lightning calls sampler.set_epoch() at each epoch start
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in self.sampler:
            index = index.to(self.images.device, non_blocking=True)
            yield self.images[index], self.labels[index]

    def __len__(self) -> int:
        return len(self.sampler)
