"""Chip facts (layer L1, torch-free): profiles, capacity models, neuron arithmetic."""
