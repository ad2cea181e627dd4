"""The torch-free base (layer L0): errors, atomic file writes, the network summary."""
