"""Shared pytest fixtures (keep small)."""

from __future__ import annotations

import functools

import pytest


@pytest.fixture(scope="session")
def digits():
    """The bundled digits dataset (fixed 1437/360 split), loaded once per session."""
    from neuroprune.data.datasets import load_dataset

    return load_dataset("digits")


@functools.cache
def _lava_environment_problem() -> str:
    """``""`` when the lava backend environment is ready, else why not (asked once)."""
    from neuroprune.envs import status

    state = status("lava")
    return "" if state.ready else f"{state.reason} at {state.path}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``lava`` fails (never skips) when the Python 3.10 backend environment is
    not ready: a run without it must not look green. It fails before its fixtures are built."""
    if item.get_closest_marker("lava") is None:
        return
    problem = _lava_environment_problem()
    if problem:
        pytest.fail(
            f"the lava backend environment is not ready ({problem}): run `make test-envs` "
            "(or `neuroprune backends install lava`)",
            pytrace=False,
        )
