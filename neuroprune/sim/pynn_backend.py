"""``pynn`` backend: the exported PyNN script for SpiNNaker run unchanged on another PyNN
simulator (parent side).

:func:`neuroprune.sim.pynn_script.write_pynn` writes the script and its weights exactly as
``neuroprune export RUN --format pynn`` does; the script then runs, in the ``pynn``
environment (PyNN 0.13.0 with NEST 3.10, layered on the tool's), as
``python model_pynn.py --simulator nest --input ... --out ...`` in a child process with a time
limit, and once more on ``pyNN.mock`` (PyNN's own checker of a network description: every
call the script makes must be valid PyNN; mock has no IF_curr_delta, so the checker registers
PyNN's standard one for it, :data:`MOCK_RUNNER`). The counts it returns are NEST's.

NEST, not Brian 2: PyNN's Brian 2 backend tests the threshold before the step's synaptic
jumps and resets after them (Brian 2's schedule: groups, thresholds, synapses, resets), so the
input a neuron receives in the step it fires is lost; measured on the SpiNNaker digits run
(docs/benchmarks.md) its counts differ where NEST's are identical to the chip emulation's.

What an agreement proves: this is a float simulation of the SpiNNaker network description
(PyNN's IF_curr_delta in NEST, exact integration in float64), not SpiNNaker's s16.15 fixed
point; that is checked by the chip arithmetic (``--backend reference`` or ``lava``, kind
chip-exact). Its verification kind is a float stand-in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from neuroprune.core.errors import SimulationError
from neuroprune.envs import environment_python, require
from neuroprune.sim.base import BackendRun, Progress, emit
from neuroprune.sim.inputs import Stimulus
from neuroprune.sim.pynn_script import check_pynn_spec, write_pynn
from neuroprune.sim.spec import DeploymentSpec

WHERE = "--backend pynn"
SIMULATOR = "nest"
CHECKER = "mock"
MOCK_SAMPLES = 2
BASE_TIMEOUT_S = 60.0
TIMEOUT_PER_SAMPLE_S = 0.5


@dataclass(frozen=True)
class PynnBackend:
    """The PyNN script on ``pyNN.<simulator>`` (default NEST), checked on ``pyNN.mock``.

    Attributes:
        name: registry key.
        simulator: the PyNN backend module that gives the counts.
        python: the interpreter (default: the ``pynn`` environment's).
    """

    name: str = "pynn"
    float_only: ClassVar[bool] = True
    simulator: str = SIMULATOR
    python: str | None = None

    def check_available(self) -> None:
        """The ``pynn`` environment must be ready (exit 3 with the fix otherwise)."""
        if self.python is None:
            require(
                "pynn",
                what="PyNN 0.13.0 with NEST 3.10",
                where=WHERE,
                otherwise="or check the script with --backend reference",
            )

    def run(
        self,
        spec: DeploymentSpec,
        stimulus: Stimulus,
        *,
        fixed_point: bool,
        timeout: float | None = None,
        progress: Progress = None,
    ) -> BackendRun:
        """Write the script, run it on ``simulator`` and on ``pyNN.mock``; counts per layer."""
        check_pynn_spec(spec, where=WHERE)
        self.check_available()
        limit = timeout or BASE_TIMEOUT_S + TIMEOUT_PER_SAMPLE_S * stimulus.samples
        python = str(self.python or environment_python("pynn"))
        job = Path(tempfile.mkdtemp(prefix="neuroprune-pynn-"))
        try:
            files = write_pynn(spec, job / "model_pynn.py")
            spikes = np.ascontiguousarray(stimulus.frames.transpose(1, 0, 2), dtype=np.uint8)
            np.savez(job / "input.npz", spikes=spikes)
            emit(
                progress,
                "backend_start",
                backend=self.name,
                samples=stimulus.samples,
                chunks=1,
                timeout=limit,
            )
            begin = time.perf_counter()
            _script(python, job, files.script, CHECKER, limit, ["--samples", str(MOCK_SAMPLES)])
            checked = time.perf_counter()
            _script(python, job, files.script, self.simulator, limit, ["--out", "counts.npz"])
            ran = time.perf_counter()
            with np.load(job / "counts.npz") as data:
                counts = tuple(data[f"counts{k}"].astype(np.int32) for k in range(len(spec.layers)))
        finally:
            shutil.rmtree(job, ignore_errors=True)
        notes = (
            f"the exported PyNN script ran unchanged on pyNN.{self.simulator} (float "
            "simulation of the SpiNNaker network description, not SpiNNaker's s16.15 fixed "
            "point; that is what the chip arithmetic checks) and passed pyNN.mock",
        )
        timings = {"mock": checked - begin, "run": ran - checked, "total": ran - begin}
        return BackendRun(counts=counts, timings=timings, notes=notes)


# pyNN.mock (PyNN 0.13.0) has no IF_curr_delta; the checker gives it PyNN's standard one with
# mock's parameter names (as pyNN/mock/standardmodels.py does for IF_curr_exp), then runs the
# script unchanged as __main__.
MOCK_RUNNER = """
import runpy, sys
import pyNN.mock as mock
from pyNN.standardmodels import build_translations, cells
if not hasattr(mock, "IF_curr_delta"):
    class IF_curr_delta(cells.IF_curr_delta):
        translations = build_translations(*[(n, n.upper()) for n in cells.IF_curr_delta.default_parameters])
    mock.IF_curr_delta = IF_curr_delta
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _script(python: str, job: Path, script: Path, simulator: str, limit: float, extra) -> None:
    """``python script --simulator S --input input.npz EXTRA`` in ``job`` (on ``mock``:
    through :data:`MOCK_RUNNER`); one-line errors."""
    runner = ["-c", MOCK_RUNNER] if simulator == CHECKER else []
    args = [str(script), "--simulator", simulator, "--input", "input.npz", *extra]
    command = [python, *runner, *args]
    try:
        done = subprocess.run(
            command,
            cwd=job,
            capture_output=True,
            text=True,
            timeout=limit,
            stdin=subprocess.DEVNULL,
            env=_clean_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise SimulationError(
            f"the PyNN script on pyNN.{simulator} did not finish in {limit:.0f} s",
            where=WHERE,
            field="timeout",
            value=limit,
            fix="Pass a larger --timeout or fewer --samples.",
        ) from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise SimulationError(
            f"the PyNN script failed on pyNN.{simulator}: {lines[-1] if lines else done.returncode}",
            where=WHERE,
            fix="Run the exported script by hand to see its traceback.",
        )


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH/PYTHONHOME of the tool; one OpenMP thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    return env


__all__ = ["PynnBackend"]
