"""Simulate the exported artifact (a NIR graph) on Lava or a numpy reference (layer L5, torch-free).

Public API::

    simulate(nir_path, *, x, y=None, profile=None, backend="lava", fixed_point=False,
             samples=None, timeout=None, expected_counts=None, progress=None) -> SimulationResult
    read_deployment(nir_path) -> DeploymentSpec
    SIM_BACKENDS: {"lava": LavaBackend(), "reference": ReferenceBackend()}

Names load lazily so that ``python -m neuroprune.sim.lava_worker`` and the custom Lava
processes in :mod:`neuroprune.sim.lavaext` import only what they use.
"""

from __future__ import annotations

from neuroprune.core.lazy import lazy_getattr

_EXPORTS = {
    "simulate": "neuroprune.sim.api",
    "SimulationResult": "neuroprune.sim.result",
    "read_deployment": "neuroprune.sim.spec",
    "spec_from_graph": "neuroprune.sim.spec",
    "DeploymentSpec": "neuroprune.sim.spec",
    "LayerSpec": "neuroprune.sim.spec",
    "LayerNeurons": "neuroprune.sim.spec",
    "QuantParams": "neuroprune.sim.spec",
    "Stimulus": "neuroprune.sim.inputs",
    "prepare_stimulus": "neuroprune.sim.inputs",
    "SimBackend": "neuroprune.sim.base",
    "BackendRun": "neuroprune.sim.base",
    "SIM_BACKENDS": "neuroprune.sim.backends",
    "get_backend": "neuroprune.sim.backends",
    "LavaBackend": "neuroprune.sim.lava_backend",
    "ReferenceBackend": "neuroprune.sim.reference",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
