"""Backbones (conf/model/): a configurable CNN and an MLP baseline, plain nn.Modules."""
