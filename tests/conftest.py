"""Shared pytest fixtures (keep small)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits():
    """The bundled digits dataset (fixed 1437/360 split), loaded once per session."""
    from neuroprune.data.datasets import load_dataset

    return load_dataset("digits")
