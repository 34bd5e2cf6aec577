"""The console scripts. Each imports its tool only when run, inside the Ctrl+C guard: importing Lightning
takes seconds, and a Ctrl+C during it must end with one line, not a traceback. `cnnlab-train` and
`cnnlab-eval` are the Hydra apps in cli/train.py and cli/eval.py (`python -m cnnlab.cli.train ...`)."""

from __future__ import annotations

import importlib
import signal
import sys
from functools import partial


def _start(module: str) -> None:
    # A Ctrl+C is only noted while the imports run, and acted on after them: a KeyboardInterrupt raised inside
    # an import can be swallowed by a library's bare `except` around an optional import, leaving a half-made
    # module that fails later with an unrelated traceback (seen: numpy's testing utils) or not at all (exit 0).
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        main = importlib.import_module(module).main
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        sys.stderr.write("stopped by Ctrl+C.\n")
        sys.exit(130)
    main()  # its own guard (cnnlab.runs.console_script) covers the rest


cnnlab_train = partial(_start, "cnnlab.cli.train")
cnnlab_eval = partial(_start, "cnnlab.cli.eval")
cnnlab_compare = partial(_start, "cnnlab.report.compare")
cnnlab_rf = partial(_start, "cnnlab.lab.rf")
cnnlab_params = partial(_start, "cnnlab.lab.params")
cnnlab_equivariance = partial(_start, "cnnlab.lab.equivariance")
cnnlab_linearity = partial(_start, "cnnlab.lab.linearity")
cnnlab_pooling = partial(_start, "cnnlab.lab.pooling")
cnnlab_doctor = partial(_start, "cnnlab.cli.doctor")
