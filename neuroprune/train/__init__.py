"""Training (layer L4): the training loop, checkpoints and distributed helpers."""
