"""Run directories (layer L6): the run's files, locks and saved models."""
