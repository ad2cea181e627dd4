"""What an environment is (:class:`EnvironmentSpec`) and the registry of them
(:data:`ENVIRONMENTS`).

Some simulators and test tools pin what the tool's own environment cannot hold: lava-nc 0.10.0
imports only on Python 3.10 with numpy < 2, xylosim 0.1.3 ships only a cp310 wheel, Sinabs 3.1
pins nir <= 1.0.4 (the tool needs nir >= 1.0.7). Each gets an environment of its own, described
here and built by :func:`neuroprune.envs.manage.install`.

Two kinds:

- a **separate** environment (``layered=False``) has its own interpreter (``python="3.10"``)
  and everything it imports; the tool talks to it through a child process (the Lava worker);
- a **layered** environment (``layered=True``) runs on the tool's own interpreter and sees the
  tool environment's packages *after* its own (a ``.pth`` file), so its pins shadow the tool's
  while torch and the rest are shared, not installed twice.

Adding one: an :class:`EnvironmentSpec` and one ``ENVIRONMENTS.register`` line below;
``neuroprune backends`` lists it and ``neuroprune backends install NAME`` builds it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Final, Literal

from neuroprune.core.errors import ConfigError
from neuroprune.core.registry import Registry

Purpose = Literal["backend", "test"]
BACKEND: Final = "backend"  # runs a simulator backend for the tool (``neuroprune fit`` needs it)
TEST: Final = "test"  # runs interoperability tests only (``make test`` builds it)
PURPOSES: tuple[Purpose, ...] = (BACKEND, TEST)
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_VERSION = re.compile(r"^3\.\d+$")


@dataclass(frozen=True)
class EnvironmentSpec:
    """One environment the tool can build.

    Attributes:
        name: registry key and folder name (``<root>/<name>``, :mod:`neuroprune.envs.location`).
        purpose: ``"backend"`` (a simulator backend runs in it) or ``"test"`` (tests only).
        python: ``"MAJOR.MINOR"`` of the interpreter it needs (found by
            :func:`neuroprune.envs.interpreter.find_python`), or ``None`` for the tool's own.
        layered: sees the tool environment's packages after its own (needs ``python=None``).
        requirements: pip requirement strings, installed in one ``pip install``.
        probe: modules imported in the new environment to prove that it works; every
            ``name==version`` requirement is also checked against the installed metadata.
        why: the pins that force it apart from the tool's environment.
        used_for: what runs in it (shown by ``neuroprune backends``).
        without_dependencies: pip requirement strings installed after ``requirements`` with
            ``pip install --no-deps`` (a package whose declared pins would replace what the
            environment holds, used only through modules that do not need them); their
            ``name==version`` pins are checked like the others.
    """

    name: str
    purpose: Purpose
    python: str | None
    layered: bool
    requirements: tuple[str, ...]
    probe: tuple[str, ...]
    why: str
    used_for: str
    without_dependencies: tuple[str, ...] = ()

    @property
    def all_requirements(self) -> tuple[str, ...]:
        """``requirements`` then ``without_dependencies``: every pin the stamp records."""
        return (*self.requirements, *self.without_dependencies)

    def __post_init__(self) -> None:
        where = f"environment {self.name!r}"
        if not _NAME.match(self.name):
            raise ConfigError(
                "an environment name is lower-case letters, digits, '-' and '_'",
                where=where,
                field="name",
                value=self.name,
            )
        if self.purpose not in PURPOSES:
            raise ConfigError(
                "unknown purpose",
                where=where,
                field="purpose",
                value=self.purpose,
                fix=f"Use one of: {', '.join(PURPOSES)}.",
            )
        if self.python is not None and not _VERSION.match(self.python):
            raise ConfigError(
                "python is 'MAJOR.MINOR' or None (the tool's interpreter)",
                where=where,
                field="python",
                value=self.python,
            )
        if self.layered and self.python is not None:
            raise ConfigError(
                "a layered environment shares the tool's packages, so it runs on the tool's "
                "interpreter",
                where=where,
                field="python",
                value=self.python,
                fix="Use python=None with layered=True.",
            )

    @property
    def python_label(self) -> str:
        """``"3.10"``, or ``"3.12 (the tool's)"`` for the tool's own interpreter."""
        return self.python or "{}.{} (the tool's)".format(*sys.version_info[:2])


ENVIRONMENTS: Registry[EnvironmentSpec] = Registry(
    "environment",
    where="backends install",
    field="name",
    hint="`neuroprune backends` lists them.",
)

ENVIRONMENTS.register(
    "lava",
    EnvironmentSpec(
        name="lava",
        purpose=BACKEND,
        python="3.10",
        layered=False,
        requirements=(
            "lava-nc==0.10.0",
            "xylosim==0.1.3",
            # Rockpool's Xylo mapper and XyloSim wrapper (numpy and scipy only; its samna
            # driver extra is not installed: neuroprune.sim.xylo_worker stands in for the import)
            "rockpool==3.1.0",
            "numpy>=1.24.4,<2",
            "scipy>=1.10.1,<2",
            "h5py>=3.10,<4",
        ),
        probe=(
            "lava.magma.core.run_configs",
            "lava.magma.core.run_conditions",
            "lava.proc.lif.process",
            "lava.proc.sparse.models",
            "scipy.sparse",
            "xylosim",
            "h5py",
            "rockpool",
        ),
        why="lava-nc 0.10.0 imports only on Python 3.10 with numpy<2; xylosim 0.1.3 ships "
        "only a cp310 wheel (Rockpool's Xylo mapper runs beside it); lava-dl 0.6.0 pins torch "
        "2.3 (netx needs none of it)",
        used_for="the lava simulator backend (its worker process: python -m "
        "neuroprune.sim.lava_worker), the netx backend (lava-dl's netx.hdf5.Network: "
        "python -m neuroprune.sim.netx_worker) and the xylosim backend (Rockpool's Xylo "
        "mapper and XyloSim: python -m neuroprune.sim.xylo_worker)",
        # lava-dl 0.6.0 declares torch==2.3 (2.7 GB of wheels with its CUDA libraries: PyPI
        # has no CPU-only torch 2.3). Its netx loader uses torch only through
        # lava.lib.dl.slayer's RF-neuron helper, which neuroprune's files never need, so
        # lava-dl goes in without its dependencies and the netx worker loads netx without
        # slayer (neuroprune/sim/netx_worker.py).
        without_dependencies=("lava-dl==0.6.0",),
    ),
)
ENVIRONMENTS.register(
    "sinabs",
    EnvironmentSpec(
        name="sinabs",
        purpose=TEST,
        python=None,
        layered=True,
        requirements=("sinabs==3.1.3", "nir==1.0.4"),
        # `import sinabs` does not import samna (the PyPI stub whose import may run pip);
        # only sinabs.backend.dynapcnn does, so the probe stops at sinabs.
        probe=("sinabs",),
        why="Sinabs 3.1 pins nir<=1.0.4 (the tool needs nir>=1.0.7) and pulls the samna stub",
        used_for="--backend sinabs (Speck) and the Sinabs tests (.nir files read by Sinabs, "
        "Speck's neuron and fit verdicts against Sinabs' own code)",
    ),
)
ENVIRONMENTS.register(
    "neurobench",
    EnvironmentSpec(
        name="neurobench",
        purpose=BACKEND,
        python=None,
        layered=True,
        # snntorch, tonic, torchaudio and numba (0.68 accepts numpy<2.6, so the tool's numpy
        # serves) come from the tool environment: this environment holds neurobench alone.
        requirements=("neurobench==2.3.0",),
        # the metrics the report measures with (neuroprune.sim.neurobench) must import
        probe=(
            "neurobench",
            "neurobench.benchmarks",
            "neurobench.metrics.static",
            "neurobench.metrics.workload",
        ),
        why="no pin conflicts with the tool today (neurobench alone is installed); kept apart "
        "so that NeuroBench's own pins (tonic<2, numba>=0.57.1, torchaudio) never change the "
        "tool's environment",
        used_for="NeuroBench's metrics in every fit report (report.json neurobench: python -m "
        "neuroprune.sim.neurobench) and the NeuroBench tests",
    ),
)
ENVIRONMENTS.register(
    "pynn",
    EnvironmentSpec(
        name="pynn",
        purpose=BACKEND,
        python=None,
        layered=True,
        requirements=("PyNN==0.13.0", "nest-simulator==3.10.0"),
        probe=("pyNN", "pyNN.mock", "pyNN.nest"),
        why="PyNN and NEST are needed only to run an exported SpiNNaker script off the "
        "board; kept apart so that their pins (neo, quantities) never change the tool's "
        "environment",
        used_for="the pynn simulator backend (the exported PyNN script run unchanged on "
        "pyNN.nest and checked on pyNN.mock)",
    ),
)
ENVIRONMENTS.register(
    "rockpool",
    EnvironmentSpec(
        name="rockpool",
        purpose=TEST,
        python=None,
        layered=True,
        # Rockpool's NIR importer is torch-based (nirtorch): it runs on the tool's interpreter,
        # with torch, nir and nirtorch from the tool environment; its Xylo mapper needs no
        # xylosim (XyloSim itself runs in the lava environment).
        requirements=("rockpool==3.1.0",),
        probe=("rockpool", "rockpool.nn.modules.torch.nir"),
        why="kept apart so that a test-only package never changes the tool's environment; "
        "Rockpool's NIR importer needs torch, which the 3.10 lava environment does not hold",
        used_for="the Rockpool NIR interoperability measurement (export --format rockpool-nir "
        "read by rockpool.nn.modules.torch.nir.from_nir, then Rockpool's Xylo mapper)",
    ),
)


def environment_spec(name_or_spec: str | EnvironmentSpec) -> EnvironmentSpec:
    """The registered spec called ``name_or_spec`` (``ConfigError`` with a did-you-mean if
    unknown), or the spec itself."""
    if isinstance(name_or_spec, EnvironmentSpec):
        return name_or_spec
    return ENVIRONMENTS.get(name_or_spec)
