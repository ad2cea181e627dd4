"""Datasets (layer L1, torch-free): images, event recordings, input encodings."""
