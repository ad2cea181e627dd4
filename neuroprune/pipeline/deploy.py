"""Deployable artifacts the vendors' own tools run, and what to do with them.

* ``netx``: lava-dl's Network Exchange HDF5 file (:mod:`neuroprune.sim.netx_file`) of a
  network quantized for Loihi's arithmetic (``loihi_fixed_pt``: Loihi, Loihi 2), loaded by
  ``lava.lib.dl.netx.hdf5.Network``;
* ``pynn``: a PyNN script and its ``.npz`` weights (:mod:`neuroprune.sim.pynn_script`) of a
  network quantized for SpiNNaker's (``spinnaker_lif``), run with ``pyNN.spiNNaker``.

Both are written from the NIR file of the model (the file every simulator reads), exported to
a temporary folder first; every check runs before the target is written, so a refusal (another
chip, a graph the format cannot express) leaves nothing behind. :data:`DEPLOY_FORMATS` names
the arithmetic each format needs; :func:`deploy_plan` says, per chip, which artifact goes to
which vendor tool and how (``neuroprune deploy RUN``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from neuroprune.chip.arithmetic import LOIHI
from neuroprune.chip.arithmetic.spinnaker import SPINNAKER
from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import ConfigError

if TYPE_CHECKING:
    from neuroprune.sim.spec import DeploymentSpec

NETX = "netx"
PYNN = "pynn"
DEPLOY_FORMATS = {NETX: LOIHI, PYNN: SPINNAKER}
"""Deployment format -> the chip arithmetic (``neuron.arithmetic``) its network must have."""
DEFAULT_ATOMS_PER_CORE = 256  # sPyNNaker's default max_atoms_per_core for LIF


def deploy_format_for(arithmetic: str | None) -> str | None:
    """The deployment format of a chip arithmetic (``None``: the chip has none)."""
    for fmt, needs in DEPLOY_FORMATS.items():
        if needs == arithmetic:
            return fmt
    return None


@contextlib.contextmanager
def _deployment_spec(model, prefix: str, **nir_args) -> Iterator[DeploymentSpec]:
    """``model``'s :class:`DeploymentSpec`, read back from a NIR file written to a temporary
    folder (``nir_args``: :func:`neuroprune.export.export_nir`'s keyword arguments)."""
    from neuroprune.export import export_nir  # deferred: imports torch
    from neuroprune.sim.spec import read_deployment  # deferred: imports scipy

    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield read_deployment(export_nir(model, Path(folder) / "model.nir", **nir_args))


def export_netx(
    model,
    path,
    *,
    timesteps: int,
    encoding: str,
    input_shape: Sequence[int],
    chip: str | None = None,
    progress: Callable[[dict], None] | None = None,
    dt: float | None = None,
) -> Path:
    """Write ``model`` (quantized for Loihi) as a lava-dl netx file at ``path``."""
    from neuroprune.sim.netx_file import write_netx  # deferred: imports h5py

    nir_args = dict(
        timesteps=timesteps, encoding=encoding, input_shape=input_shape, chip=chip, dt=dt
    )
    with _deployment_spec(model, "neuroprune-netx-", **nir_args) as spec:
        summary = write_netx(spec, path)
    if progress is not None:
        progress({"event": "exported", "format": NETX, "path": str(summary.path)})
    return summary.path


def export_pynn(
    model,
    path,
    *,
    timesteps: int,
    encoding: str,
    input_shape: Sequence[int],
    chip: str | None = None,
    progress: Callable[[dict], None] | None = None,
    dt: float | None = None,
) -> Path:
    """Write ``model`` (quantized for SpiNNaker) as a PyNN script at ``path`` and its weights
    beside it (same stem, ``.npz``); populations of at most the profile's neurons per core."""
    from neuroprune.sim.pynn_script import write_pynn  # deferred: imports scipy

    atoms = load_profile(chip).core.neurons_max if chip else DEFAULT_ATOMS_PER_CORE
    nir_args = dict(
        timesteps=timesteps, encoding=encoding, input_shape=input_shape, chip=chip, dt=dt
    )
    with _deployment_spec(model, "neuroprune-pynn-", **nir_args) as spec:
        files = write_pynn(spec, path, max_atoms_per_core=atoms)
    if progress is not None:
        progress({"event": "exported", "format": PYNN, "path": str(files.script)})
    return files.script


# --------------------------------------------------------------------------------------------
# neuroprune deploy RUN


@dataclass(frozen=True)
class DeployStep:
    """One thing to do: ``what`` (a sentence) and the exact ``command`` (may be empty)."""

    what: str
    command: str = ""


@dataclass(frozen=True)
class DeployPlan:
    """What ``neuroprune deploy RUN`` prints for the run's chip."""

    chip: str
    chip_name: str
    artifact: str | None
    tool: str
    steps: tuple[DeployStep, ...]


def deploy_plan(run_dir: Path, profile, *, files: Sequence[str] = ()) -> DeployPlan:
    """The deployment steps for the run's chip ``profile`` (a ``ChipProfile``); ``files``: the
    run's files present (to say what must be exported first)."""
    arithmetic = profile.neuron.arithmetic
    fmt = deploy_format_for(arithmetic)
    run = str(run_dir)
    if fmt == NETX:
        artifact = f"{run}/model.netx"
        export = (
            ()
            if "model.netx" in files
            else (DeployStep("export the netx file", f"neuroprune export {run} --format netx"),)
        )
        sparse = "sparse_fc_layer=True"
        steps = (
            *export,
            DeployStep(
                "check it with lava-dl's own loader in Lava's bit-accurate CPU model "
                "(the same run `neuroprune simulate RUN --backend netx` does)",
                f"neuroprune simulate {run} --backend netx",
            ),
            DeployStep(
                f"on a Loihi 2 system (Intel's INRC access, lava-loihi installed; Lava's "
                f"hardware backend serves Loihi 2 only): load it with netx and run it on the "
                f"chip ({sparse} keeps pruned layers sparse)",
                'python -c "from lava.lib.dl import netx; from lava.magma.core.run_configs '
                "import Loihi2HwCfg; from lava.magma.core.run_conditions import RunSteps; "
                f"net = netx.hdf5.Network(net_config='{artifact}', {sparse}, "
                "reset_interval=T); net.run(condition=RunSteps(num_steps=N*T), "
                'run_cfg=Loihi2HwCfg()); net.stop()"',
            ),
            DeployStep(
                "input: spike frames into net.inp; for a direct-encoded run the host computes "
                "the first layer's current rint(2**k W_int x) (k: the file's "
                "neuroprune_input_shift) and injects it into net.layers[0].neuron.a_in"
            ),
        )
        return DeployPlan(
            profile.id, profile.name, artifact, "lava-dl netx (lava.lib.dl.netx.hdf5)", steps
        )
    if fmt == PYNN:
        artifact = f"{run}/model_pynn.py"
        export = (
            ()
            if "model_pynn.py" in files
            else (DeployStep("export the PyNN script", f"neuroprune export {run} --format pynn"),)
        )
        steps = (
            *export,
            DeployStep(
                "check it off the board on NEST and pyNN.mock (float, not SpiNNaker's fixed "
                "point; the chip arithmetic is checked by --backend reference)",
                f"neuroprune simulate {run} --backend pynn",
            ),
            DeployStep(
                "write the input spikes as an .npz with `spikes` uint8 [samples, T, inputs] "
                "(one frame per 1 ms step)"
            ),
            DeployStep(
                "on a host with sPyNNaker installed and a configured SpiNNaker machine "
                "(~/.spynnaker.cfg), run the script unchanged (model_pynn.npz beside it)",
                f"python {artifact} --input samples.npz --out counts.npz",
            ),
        )
        return DeployPlan(profile.id, profile.name, artifact, "sPyNNaker (pyNN.spiNNaker)", steps)
    steps = (
        DeployStep(
            f"{profile.name} has no vendor loader neuroprune writes for; take the NIR file to "
            "the vendor's toolchain (it reads NIR where it can)",
            f"neuroprune export {run} --format nir",
        ),
    )
    return DeployPlan(
        profile.id, profile.name, f"{run}/model.nir", "the vendor's NIR import", steps
    )


def check_deploy_format(
    fmt: str, arithmetic: str | None, chip: str, where: str, field: str = "format"
) -> None:
    """Refuse (exit 2, before anything is written) a deployment format, or the backend of the
    same name (``field="backend"``), for a run of another chip: netx needs Loihi's
    arithmetic, pynn SpiNNaker's."""
    needs = DEPLOY_FORMATS.get(fmt)
    if needs is None or needs == arithmetic:
        return
    right = deploy_format_for(arithmetic)
    other = "--format nir (or onnx)" if field == "format" else "--backend lava or reference"
    raise ConfigError(
        f"--{field} {fmt} is for networks quantized for {needs}; this run is for {chip!r}",
        where=where,
        field=field,
        value=fmt,
        fix=f"Use --{field} {right} for {chip}." if right else f"Use {other}.",
    )
