"""cnnlab: learn and research how convolutional networks see images."""

__version__ = "0.1.0"
