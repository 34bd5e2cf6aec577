"""A loader that keeps a whole uint8 dataset on the training device and gathers each batch there."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cnnlab.data.sampler import EpochBatchSampler


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
