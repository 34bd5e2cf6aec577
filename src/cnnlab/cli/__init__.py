"""The Hydra apps behind `cnnlab-train` and `cnnlab-eval` (`python -m cnnlab.cli.train ...`)."""
