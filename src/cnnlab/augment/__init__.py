"""Augmentations (conf/augment/): drawn per sample, applied to whole batches on the batch's device."""

from cnnlab.augment.ops import Augmentation

__all__ = ["Augmentation"]
