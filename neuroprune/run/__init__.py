"""Run directories (layer L5): the run's files, locks and saved models."""
