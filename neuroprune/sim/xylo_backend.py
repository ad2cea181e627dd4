"""``xylosim`` backend (parent side): SynSense's XyloSim, through Rockpool's Xylo mapper, on the
integers of a network quantized for Xylo Audio 2 (``--chip xylo``).

XyloSim (PyPI ``xylosim`` 0.1.3) ships only a cp310 wheel, so it runs in a child process on the
``lava`` backend environment's Python 3.10 beside Lava (:mod:`neuroprune.envs`), started like
the Lava worker: ``python -m neuroprune.sim.xylo_worker DIR`` with ``PYTHONPATH`` holding only
this package (:func:`neuroprune.sim.lava_backend.worker_env`), its own session, killed at the
time limit. A missing environment is :class:`~neuroprune.core.errors.BackendUnavailableError`
(exit 3) naming ``neuroprune backends install lava``.

What the worker receives per layer (:func:`xylo_job`): the integer weights ``W_int`` as int8
``[in, out]``, and from the layer's ``xylo_lif`` arithmetic (:mod:`neuroprune.chip.arithmetic.
xylo`, the same the training neuron and the reference run) its threshold ``K << s``, decays
``dash_mem``/``dash_syn`` and weight shift ``s``. It maps them with Rockpool's mapper and runs
XyloSim (the worker's docstring says how, and how Xylo's one-step delays between populations
are accounted for). The network must be a chain of dense layers on spike input (Xylo's shape:
input channels -> hidden population -> readout), without biases.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from neuroprune.chip.arithmetic import get_arithmetic
from neuroprune.chip.arithmetic.xylo import XYLO, XyloLayer
from neuroprune.core.errors import BackendUnavailableError, SimulationError, UnsupportedError
from neuroprune.envs import environment_python, require
from neuroprune.sim.base import BackendRun, Progress, emit
from neuroprune.sim.inputs import SPIKES, Stimulus
from neuroprune.sim.lava_backend import worker_env
from neuroprune.sim.lava_map import chip_facts, spec_arithmetic
from neuroprune.sim.spec import DeploymentSpec

WHERE = "--backend xylosim"
WORKER_MODULE = "neuroprune.sim.xylo_worker"
BASE_TIMEOUT_S = 60.0
TIMEOUT_PER_SAMPLE_S = 0.05
INT8 = 127
THRESHOLD_MAX = 2**15 - 1


@dataclass(frozen=True)
class XylosimBackend:
    """XyloSim (SynSense's simulator of Xylo Audio 2) on the spec's integers.

    Attributes:
        name: registry key.
        python: interpreter for the worker (default: the ``lava`` environment's).
        vendor_chips: the profiles whose vendor wrote this simulator
            (:mod:`neuroprune.sim.verification`: a ``vendor simulator`` verification).
    """

    name: str = "xylosim"
    vendor_chips: ClassVar[tuple[str, ...]] = ("xylo",)
    python: str | None = None

    def check_available(self) -> None:
        """:class:`BackendUnavailableError` (one line) unless the ``lava`` environment, which
        holds xylosim and Rockpool, is ready."""
        if self.python is None:
            require(
                "lava",
                what="XyloSim (xylosim 0.1.3 with Rockpool 3.1.0)",
                where=WHERE,
                otherwise="or use --backend reference",
            )

    def interpreter(self) -> Path:
        return Path(self.python) if self.python is not None else environment_python("lava")

    def run(
        self,
        spec: DeploymentSpec,
        stimulus: Stimulus,
        *,
        fixed_point: bool,
        timeout: float | None = None,
        progress: Progress = None,
    ) -> BackendRun:
        """Simulate every sample in XyloSim; see the module docstring."""
        self.check_available()
        arrays = xylo_job(spec, stimulus)
        limit = (
            float(timeout)
            if timeout
            else BASE_TIMEOUT_S + TIMEOUT_PER_SAMPLE_S * (stimulus.samples)
        )
        job_dir = Path(tempfile.mkdtemp(prefix="neuroprune-xylo-"))
        try:
            np.savez(job_dir / "job.npz", **arrays)
            emit(progress, "backend_start", backend=self.name, samples=stimulus.samples)
            start = time.perf_counter()
            self._run_worker(job_dir, limit)
            wall = time.perf_counter() - start
            with np.load(job_dir / "result.npz") as data:
                counts = tuple(data[f"counts{k}"].astype(np.int32) for k in range(len(spec.layers)))
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
        notes = (
            "XyloSim (xylosim 0.1.3) on Rockpool 3.1.0's mapping of the integer weights; "
            "layer k counted over steps [k, k + T) (one step of delay per population)",
        )
        return BackendRun(counts=counts, timings={"total": wall}, notes=notes)

    def _run_worker(self, job_dir: Path, limit: float) -> None:
        command = [str(self.interpreter()), "-m", WORKER_MODULE, str(job_dir)]
        try:
            done = subprocess.run(
                command,
                cwd=job_dir,
                env=worker_env(job_dir),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=limit,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise SimulationError(
                f"XyloSim run timed out after {limit:.1f} s",
                where=WHERE,
                field="timeout",
                value=limit,
                fix="Pass a larger time limit (simulate --timeout) or fewer samples.",
            ) from exc
        error_file = job_dir / "error.json"
        if error_file.exists():
            error = json.loads(error_file.read_text(encoding="utf-8"))
            if error.get("kind") == "unavailable":
                raise BackendUnavailableError(
                    f"XyloSim worker failed: {error.get('message')}",
                    where=WHERE,
                    fix="Rebuild the backend environment (`neuroprune backends install lava "
                    "--force`) or use --backend reference.",
                )
            raise SimulationError(
                f"XyloSim worker failed: {error.get('message')}",
                where=WHERE,
                fix="Check the model with --backend reference and `neuroprune check --chip xylo`.",
            )
        if done.returncode != 0 or not (job_dir / "result.npz").exists():
            tail = (done.stdout + done.stderr).strip().splitlines()
            raise SimulationError(
                f"XyloSim worker died (exit {done.returncode}): {tail[-1] if tail else ''}",
                where=WHERE,
                fix="Check the model with --backend reference.",
            )


def check_xylo_layers(spec: DeploymentSpec) -> None:
    """:class:`UnsupportedError` for what Xylo's SNN core cannot hold: a graph not quantized
    for Xylo, anything but a chain of dense layers, biases, weights beyond int8, thresholds
    beyond 16 bits."""
    if spec_arithmetic(spec) != XYLO:
        raise UnsupportedError(
            "XyloSim runs networks quantized for Xylo (weight format xylo)",
            where=WHERE,
            field="quantized format",
            value=spec_arithmetic(spec),
            fix="Quantize for Xylo (--chip xylo).",
        )
    if not spec.is_chain or any(layer.kind != "dense" for layer in spec.layers):
        raise UnsupportedError(
            "Xylo maps a chain of dense layers (input -> hidden population -> readout)",
            where=WHERE,
            field="model",
            value=",".join(layer.kind for layer in spec.layers),
            fix="Use --model mlp.",
        )
    arithmetic = get_arithmetic(XYLO)
    for layer, facts in zip(spec.layers, chip_facts(spec), strict=True):
        quant = layer.quant
        assert quant is not None  # chip_facts raised otherwise
        where = f"{WHERE} layer {layer.neuron_name}"
        if quant.bias_int is not None and np.any(quant.bias_int):
            raise UnsupportedError(
                "Xylo runs here without biases (the delay between populations would let a "
                "bias act before the layer's first input)",
                where=where,
                field="bias",
                value=True,
                fix="Use the built-in mlp (bias=False).",
            )
        largest = int(abs(quant.weight_int).max()) if quant.weight_int.nnz else 0
        if largest > INT8:
            raise UnsupportedError(
                "Xylo stores int8 weights",
                where=where,
                field="weight_int",
                value=largest,
                fix="Quantize for Xylo (--chip xylo).",
            )
        neuron: XyloLayer = arithmetic.layer(facts)  # type: ignore[assignment]
        if neuron.neuron.threshold > THRESHOLD_MAX:
            raise UnsupportedError(
                "Xylo's thresholds are 16-bit",
                where=where,
                field="threshold",
                value=neuron.neuron.threshold,
                fix="Quantize for Xylo (--chip xylo) with a smaller threshold.",
            )


def xylo_job(spec: DeploymentSpec, stimulus: Stimulus) -> dict[str, np.ndarray]:
    """The worker's ``job.npz`` arrays (module docstring); raises :class:`UnsupportedError`
    for what Xylo cannot run (:func:`check_xylo_layers`, analog input)."""
    check_xylo_layers(spec)
    if stimulus.kind != SPIKES:
        raise UnsupportedError(
            "Xylo's SNN core receives input events, not analog currents",
            where=WHERE,
            field="encoding",
            value=stimulus.kind,
            fix="Encode the input as spikes (--encoding poisson or latency).",
        )
    arithmetic = get_arithmetic(XYLO)
    arrays: dict[str, np.ndarray] = {
        "layers": np.asarray(len(spec.layers)),
        "frames": np.asarray(stimulus.frames, dtype=np.uint8),
    }
    for k, (layer, facts) in enumerate(zip(spec.layers, chip_facts(spec), strict=True)):
        assert layer.quant is not None
        neuron: XyloLayer = arithmetic.layer(facts)  # type: ignore[assignment]
        arrays[f"w{k}"] = layer.quant.weight_int.toarray().T.astype(np.int8)
        arrays[f"thr{k}"] = np.asarray(neuron.neuron.threshold)
        arrays[f"dash_mem{k}"] = np.asarray(neuron.neuron.dash_mem)
        arrays[f"dash_syn{k}"] = np.asarray(neuron.neuron.dash_syn)
        arrays[f"shift{k}"] = np.asarray(neuron.shift)
    return arrays
