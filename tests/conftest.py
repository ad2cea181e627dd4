"""Shared pytest fixtures (keep small)."""

from __future__ import annotations

import functools
import os
import signal

import pytest

# A fit measures NeuroBench's metrics by default (15-30 s in its own environment on 2 cores).
# The suite runs hundreds of fits: they skip that stage unless a test asks (`--neurobench`);
# tests/test_neurobench_report.py and tests/test_neurobench.py measure it.
os.environ.setdefault("NEUROPRUNE_NEUROBENCH", "0")


@pytest.fixture(autouse=True)
def default_interrupt_handlers():
    """Each test starts with Python's own SIGINT/SIGTERM actions and leaves them as it found
    them. A library run in-process (Ray, Lava's runtime, an in-process CLI call) may leave
    SIGINT ignored in an xdist worker, and a child process inherits an ignored signal: the
    interrupt tests would then test nothing."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@pytest.fixture(scope="session")
def digits():
    """The bundled digits dataset (fixed 1437/360 split), loaded once per session."""
    from neuroprune.data.datasets import load_dataset

    return load_dataset("digits")


# Markers that name an environment of neuroprune.envs: a test marked with one needs it ready.
ENVIRONMENT_MARKERS = ("lava", "pynn", "sinabs", "neurobench", "rockpool")


@functools.cache
def _environment_problem(name: str) -> str:
    """``""`` when environment ``name`` is ready, else why not (asked once per session)."""
    from neuroprune.envs import status

    state = status(name)
    return "" if state.ready else f"{state.reason} at {state.path}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``lava``, ``pynn``, ``sinabs``, ``neurobench`` or ``rockpool`` fails (never
    skips) when that environment (the Python 3.10 backend environment, or a test environment) is not ready: a
    run without it must not look green. It fails before its fixtures are built."""
    for name in ENVIRONMENT_MARKERS:
        if item.get_closest_marker(name) is None:
            continue
        problem = _environment_problem(name)
        if problem:
            kind = "backend" if name in ("lava", "pynn") else "test"
            pytest.fail(
                f"the {name} {kind} environment is not ready ({problem}): run `make test-envs` "
                f"(or `neuroprune backends install {name}`)",
                pytrace=False,
            )
