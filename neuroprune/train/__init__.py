"""Training (layer L3): the training loop, checkpoints and distributed helpers."""
