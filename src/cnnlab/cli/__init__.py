"""The console scripts. Each imports its tool only when run, inside the Ctrl+C guard: importing Lightning
takes seconds, and a Ctrl+C during it must end with one line, not a traceback. `cnnlab-train` and
`cnnlab-eval` are the Hydra apps in cli/train.py and cli/eval.py (`python -m cnnlab.cli.train ...`)."""

from __future__ import annotations

import importlib
import sys


def _start(module: str) -> None:
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        sys.stderr.write("stopped by Ctrl+C.\n")
        sys.exit(130)
    main()  # its own guard (cnnlab.runs.console_script) covers the rest


def cnnlab_train() -> None:
    """cnnlab-train."""
    _start("cnnlab.cli.train")


def cnnlab_eval() -> None:
    """cnnlab-eval."""
    _start("cnnlab.cli.eval")


def cnnlab_compare() -> None:
    """cnnlab-compare."""
    _start("cnnlab.report.compare")


def cnnlab_rf() -> None:
    """cnnlab-rf."""
    _start("cnnlab.lab.rf")


def cnnlab_params() -> None:
    """cnnlab-params."""
    _start("cnnlab.lab.params")


def cnnlab_equivariance() -> None:
    """cnnlab-equivariance."""
    _start("cnnlab.lab.equivariance")


def cnnlab_linearity() -> None:
    """cnnlab-linearity."""
    _start("cnnlab.lab.linearity")


def cnnlab_pooling() -> None:
    """cnnlab-pooling."""
    _start("cnnlab.lab.pooling")
