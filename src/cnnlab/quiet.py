"""Silence third-party chatter that says nothing about the run (advertising tips, internal deprecations)."""

from __future__ import annotations

import logging
import warnings

NOISE = (
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*smaller than the logging interval.*",
    ".*does not have many workers.*",
    ".*You're resuming from a checkpoint that ended before the epoch ended.*",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet() -> None:
    """Install the warning filters and drop Lightning's 'Tip' advertisements."""
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
