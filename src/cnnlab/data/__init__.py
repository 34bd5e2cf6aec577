"""Datasets (conf/data/): CIFAR-10 from disk and a tiny synthetic stand-in, behind one datamodule."""
