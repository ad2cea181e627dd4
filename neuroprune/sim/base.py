"""The simulator extension point (torch-free): one small interface, results as counts.

A backend runs a :class:`~neuroprune.sim.spec.DeploymentSpec` on a
:class:`~neuroprune.sim.inputs.Stimulus` and returns, per neuron layer, every sample's
per-neuron spike count over the ``T`` steps of that sample (``int32 [N, neurons]``). Register a
new backend in :data:`neuroprune.sim.backends.SIM_BACKENDS`; the contract tests run every entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from neuroprune.core import progress as core_progress
from neuroprune.sim.inputs import Stimulus
from neuroprune.sim.spec import DeploymentSpec

Progress = core_progress.Progress | None


@dataclass(frozen=True, eq=False)
class BackendRun:
    """What a backend returns.

    Attributes:
        counts: per neuron layer, ``int32 [N, neurons]`` spike counts over each sample's T steps.
        timings: named durations in seconds (``"build"``, ``"run"``, ``"total"``, ...).
        notes: facts a report should state (chunking, host-computed first layer, ...).
    """

    counts: tuple[np.ndarray, ...]
    timings: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@runtime_checkable
class SimBackend(Protocol):
    """A simulator. ``name`` is its registry key.

    Two optional class attributes say what it runs exactly (read with ``getattr``, default
    empty; :func:`neuroprune.sim.verification.verification_kind`): ``chip_arithmetics``, the
    chip arithmetics (``neuron.arithmetic`` of a profile) it runs bit for bit in fixed point,
    and ``vendor_chips``, the profile ids whose vendor wrote this simulator."""

    name: str

    def check_available(self) -> None:
        """Raise :class:`~neuroprune.core.errors.BackendUnavailableError` if it cannot run here."""

    def run(
        self,
        spec: DeploymentSpec,
        stimulus: Stimulus,
        *,
        fixed_point: bool,
        timeout: float | None = None,
        progress: Progress = None,
    ) -> BackendRun:
        """Simulate every sample from a zero state; see the module docstring."""


def emit(progress: Progress, event: str, **fields: Any) -> None:
    """Send ``{"stage": "simulate", "event": event, **fields}`` to ``progress`` if given."""
    core_progress.emit(progress, **{"stage": "simulate", "event": event, **fields})
