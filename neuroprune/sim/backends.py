"""Registry of simulator backends (the ``sim`` extension point)."""

from __future__ import annotations

from neuroprune.core.errors import ConfigError, did_you_mean
from neuroprune.sim.base import SimBackend
from neuroprune.sim.lava_backend import LavaBackend
from neuroprune.sim.reference import ReferenceBackend

SIM_BACKENDS: dict[str, SimBackend] = {
    "lava": LavaBackend(),
    "reference": ReferenceBackend(),
}


def get_backend(backend: str | SimBackend) -> SimBackend:
    """The registered backend called ``backend``, or ``backend`` itself if it is one."""
    if not isinstance(backend, str):
        if isinstance(backend, SimBackend):
            return backend
        raise ConfigError(
            "not a simulator backend",
            where="simulate",
            field="backend",
            value=type(backend).__name__,
            fix="Pass 'lava' or 'reference'.",
        )
    if backend not in SIM_BACKENDS:
        raise ConfigError(
            "unknown simulator backend",
            where="simulate",
            field="backend",
            value=backend,
            fix=f"{did_you_mean(backend, SIM_BACKENDS)}Use one of: {', '.join(sorted(SIM_BACKENDS))}.",
        )
    return SIM_BACKENDS[backend]
