"""Environments apart from the tool's own (layer L1, torch-free): the Python 3.10 backend
environment that runs the Lava worker, and the test environments of tools whose pins the
tool's environment cannot hold (Sinabs, NeuroBench).

Public API::

    ENVIRONMENTS                      registry of EnvironmentSpec (lava, sinabs, neurobench)
    status(name) -> EnvironmentStatus ready or why not (cheap: a stamp and one interpreter run)
    require(name) -> Path             the interpreter of a ready environment, else
                                      BackendUnavailableError (one line, exit 3) with the fix
    environment_python(name) -> Path  <root>/<name>/bin/python (installed or not)
    install(name, progress=None, force=False) -> EnvironmentStatus
    envs_root() -> Path               where they live, by LOCATION_RULE
    find_python("3.10") -> Interpreter | None

Where they live (:mod:`neuroprune.envs.location`): ``$NEUROPRUNE_ENVS`` if set; else, when the
tool runs inside a virtual environment, ``<sys.prefix>/share/neuroprune/envs``; else
``${XDG_DATA_HOME:-~/.local/share}/neuroprune/envs``. Environment ``NAME`` is ``<root>/NAME``.

``neuroprune backends`` lists them; ``neuroprune backends install [NAME ...]`` builds them.
"""

from neuroprune.envs.interpreter import Interpreter, find_python, install_hint
from neuroprune.envs.location import LOCATION_RULE, environment_dir, envs_root
from neuroprune.envs.manage import (
    EnvironmentStatus,
    environment_python,
    install,
    require,
    status,
)
from neuroprune.envs.spec import BACKEND, ENVIRONMENTS, TEST, EnvironmentSpec, environment_spec

__all__ = [
    "BACKEND",
    "ENVIRONMENTS",
    "LOCATION_RULE",
    "TEST",
    "EnvironmentSpec",
    "EnvironmentStatus",
    "Interpreter",
    "environment_dir",
    "environment_python",
    "environment_spec",
    "envs_root",
    "find_python",
    "install",
    "install_hint",
    "require",
    "status",
]
