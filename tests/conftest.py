"""Shared test helpers: config composition, a fake CIFAR-10 folder, and where real CIFAR-10 may be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from cnnlab.config import compose_config as compose
from cnnlab.data.cifar10_files import write_random_folder

REPO = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_epochs=1", "progress_bar=false", "trainer.enable_checkpointing=true"]


def compose_config(overrides: list[str], run_dir: Path | None = None, name: str = "train") -> DictConfig:
    """Compose conf/<name>.yaml as Hydra would, and register it as the current Hydra config."""
    cfg = compose(overrides, name=name, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir or "unused")
        cfg.hydra.job.name = "test"
    HydraConfig.instance().set_config(cfg)
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    return cfg


def write_fake_cifar(root: Path, per_batch: int = 40, seed: int = 0, bytes_keys: bool = True) -> Path:
    """A `cifar-10-batches-py` folder in torchvision's layout with random images; returns its parent."""
    return write_random_folder(root, per_batch, seed, bytes_keys)


def real_cifar_dir() -> Path | None:
    """Real CIFAR-10: $CNNLAB_CIFAR_DIR, else the team's copy beside the checkout, else None."""
    for candidate in (os.environ.get("CNNLAB_CIFAR_DIR"), REPO.parent / "shared/data/cifar10-partial"):
        if candidate and (Path(candidate) / "cifar-10-batches-py" / "data_batch_1").exists():
            return Path(candidate)
    return None


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Path:
    return write_fake_cifar(tmp_path / "data")


@pytest.fixture
def real_cifar() -> Path:
    path = real_cifar_dir()
    if path is None:
        pytest.skip("real CIFAR-10 not found (set CNNLAB_CIFAR_DIR or provide ../shared/data/cifar10-partial)")
    return path
