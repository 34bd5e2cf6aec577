"""Shared test helpers: config composition, a fake CIFAR-10 folder, and where real CIFAR-10 may be."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # `make test` runs the suite on one worker per core
    # Split the cores between the workers, for this process and the console scripts the tests start (they inherit
    # the variable; torch reads it when it is first imported, just below). Two workers with torch's default of every
    # core each took 451 s on 2 cores (threads spinning against each other); with one thread each, 160 s; serially
    # 241 s (docs/testing.md).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(max(1, cores // int(workers)))

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from cnnlab.config import compose_config as compose
from cnnlab.data.cifar10 import FOLDER, IMAGE_SHAPE, NUM_CLASSES, TEST_FILES, TRAIN_FILES

REPO = Path(__file__).resolve().parents[1]
CIFAR10 = {"num_classes": 10, "in_channels": 3, "image_size": 32}  # CIFAR-10's shape (conf/data/cifar10.yaml)
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


def write_batch(path: Path, images: torch.Tensor, labels: torch.Tensor, bytes_keys: bool = True) -> None:
    """Write uint8 N×3×32×32 images and labels as one batch file in torchvision's pickle layout."""
    entry = {
        "batch_label": path.name,
        "data": images.reshape(len(images), -1).numpy(),
        "labels": labels.tolist(),
        "filenames": [f"{i}.png" for i in range(len(images))],
    }
    if bytes_keys:  # as re-pickled copies store them; the original Python 2 pickles load with str keys
        entry = {k.encode(): v for k, v in entry.items()}
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def write_fake_cifar(root: Path, per_batch: int = 40, seed: int = 0, bytes_keys: bool = True) -> Path:
    """A `cifar-10-batches-py` folder of random images under `root` (for tests and demos); returns `root`."""
    gen = torch.Generator().manual_seed(seed)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES + TEST_FILES:
        images = torch.randint(0, 256, (per_batch, *IMAGE_SHAPE), generator=gen, dtype=torch.uint8)
        write_batch(folder / name, images, torch.randint(0, NUM_CLASSES, (per_batch,), generator=gen), bytes_keys)
    return Path(root)


def real_cifar_dir() -> Path | None:
    """Real CIFAR-10: $CNNLAB_CIFAR_DIR, else the team's full copy beside the checkout, else None."""
    for candidate in (os.environ.get("CNNLAB_CIFAR_DIR"), REPO.parent / "shared/data"):
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
        pytest.skip("real CIFAR-10 not found (set CNNLAB_CIFAR_DIR or provide ../shared/data/cifar-10-batches-py)")
    return path


def run_tool(module, argv: list[str], monkeypatch, capsys) -> str:
    """Run a console tool's main() with `argv` in-process; return what it printed."""
    monkeypatch.setattr("sys.argv", [module.__name__, *argv])
    module.main()
    return capsys.readouterr().out


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """Undo what a console script run in this process changes globally: logging (Hydra configures handlers and
    binds them to the captured stdout; cnnlab's wrapper turns off logging.raiseExceptions) and the environment
    (the wrapper sets HYDRA_FULL_ERROR)."""
    every_logger = lambda: [logging.getLogger()] + [  # noqa: E731
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    saved = {lg: (list(lg.handlers), lg.level, lg.propagate) for lg in every_logger()}
    environ, raise_exceptions = dict(os.environ), logging.raiseExceptions
    try:
        yield
    finally:
        for lg in every_logger():
            lg.handlers[:], lg.level, lg.propagate = saved.get(lg, ([], logging.NOTSET, True))
        os.environ.clear()
        os.environ.update(environ)
        logging.raiseExceptions = raise_exceptions


@pytest.fixture
def process_state_restored() -> Iterator[None]:
    """restored_process_state() around one test."""
    with restored_process_state():
        yield


SCRIPTS = {e.name: e for e in importlib.metadata.entry_points(group="console_scripts") if e.name.startswith("cnnlab-")}


def run_script(argv: list[str]) -> tuple[int, str]:
    """A cnnlab console script (argv[0]) through its entry point in this process, as its own Python would run it
    (without spending ~6 s importing torch and Lightning): (exit code, what it printed to stdout and stderr). Use it
    inside restored_process_state()."""
    saved, printed = sys.argv, io.StringIO()
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = SCRIPTS[argv[0]].load()() or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = saved
    return code, printed.getvalue()


def refused_line(module, argv: list[str], monkeypatch, capsys) -> str:
    """Run a tool that must refuse `argv`: exit 2 with one line on stderr, which is returned."""
    monkeypatch.setattr("sys.argv", [module.__name__, *argv])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    return err
