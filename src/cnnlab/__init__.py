"""cnnlab: a Lightning + Hydra template for learning how convolutional networks see images.

In a notebook: `cnnlab.train(overrides)` trains and returns the record, `cnnlab.load_run(run_dir)` gives the
trained model, config, record and curves, `cnnlab.load_sweep(sweep_dir)` the comparison table.
"""

from cnnlab.api import Run, load_run, load_sweep, train

__version__ = "0.1.0"
__all__ = ["Run", "load_run", "load_sweep", "train"]
