"""The training loop pieces (conf/optim/, conf/schedule/, conf/trainer/): module, optimizers, callbacks."""
