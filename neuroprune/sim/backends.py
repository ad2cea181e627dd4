"""Registry of simulator backends (the ``sim`` extension point).

:data:`SIM_BACKENDS` names every backend lazily (``"module:Class"``, instantiated on first
use), so the run config and ``neuroprune fit --help`` read the names without importing Lava or
scipy. Adding a backend: a :class:`~neuroprune.sim.base.SimBackend` class and one
``register_lazy`` line below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuroprune.core.errors import ConfigError
from neuroprune.core.registry import Registry, lookup

if TYPE_CHECKING:
    from neuroprune.sim.base import SimBackend

SIM_BACKENDS: Registry[SimBackend] = Registry(
    "simulator backend", where="simulate", field="backend"
)
SIM_BACKENDS.register_lazy("lava", "neuroprune.sim.lava_backend:LavaBackend", call=True)
SIM_BACKENDS.register_lazy("reference", "neuroprune.sim.reference:ReferenceBackend", call=True)
SIM_BACKENDS.register_lazy("netx", "neuroprune.sim.netx_backend:NetxBackend", call=True)
SIM_BACKENDS.register_lazy("pynn", "neuroprune.sim.pynn_backend:PynnBackend", call=True)
SIM_BACKENDS.register_lazy("sinabs", "neuroprune.sim.sinabs_backend:SinabsBackend", call=True)
SIM_BACKENDS.register_lazy("xylosim", "neuroprune.sim.xylo_backend:XylosimBackend", call=True)


def get_backend(backend: str | SimBackend) -> SimBackend:
    """The registered backend called ``backend``, or ``backend`` itself if it is one."""
    if not isinstance(backend, str):
        from neuroprune.sim.base import SimBackend  # deferred: imports scipy

        if isinstance(backend, SimBackend):
            return backend
        raise ConfigError(
            "not a simulator backend",
            where="simulate",
            field="backend",
            value=type(backend).__name__,
            fix=f"Pass one of: {', '.join(SIM_BACKENDS)}.",
        )
    return lookup(SIM_BACKENDS, backend)
