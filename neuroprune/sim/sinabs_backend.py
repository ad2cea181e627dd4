"""``sinabs`` backend: Speck's network run by Sinabs 3.1.3's own DYNAP-CNN code, in the
``sinabs`` environment (a child process, :mod:`neuroprune.sim.sinabs_env`).

The exported file is read again here (:func:`neuroprune.graph.read.read_network`) for what the
unrolled :class:`~neuroprune.sim.spec.DeploymentSpec` no longer has: each layer's kernel,
stride, padding, pooling and flattening. The chain becomes ``nn.Sequential`` of ``Conv2d`` /
``Linear`` holding the quantized **integer** weights (and 8-bit integer biases, added every
step as Speck's bias does), ``SumPool2d``, ``Flatten`` and Sinabs'
``IAFSqueeze`` with ``spike_threshold = threshold_int`` and ``min_v_mem = -threshold_int``
(its defaults: ``MultiSpike``, ``MembraneSubtract``), and Sinabs builds
``DynapcnnNetwork(..., discretize=True)`` from it, so Sinabs' own discretization runs; its
common scale is exactly 1 for these integers (the ``speck`` weight format puts each layer's
extreme weight on 127 or -128; thresholds are below ``2**15``), which the child reports per
layer, computed by Sinabs' ``determine_discretization_scale``. Spike trains enter batch-major ``[N T, C, H, W]``; each layer's spike counts come
back from forward hooks on its ``IAFSqueeze``.

Only quantized chains for ``speck_iaf`` with spike input run here (Speck takes events); the
backend is not installed when the ``sinabs`` environment is not ready (exit 3, naming
``neuroprune backends install sinabs``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import neuroprune
from neuroprune.chip.arithmetic import SPECK
from neuroprune.core.errors import SimulationError, UnsupportedError
from neuroprune.envs import require
from neuroprune.graph.read import read_network
from neuroprune.graph.stages import FlattenStage, NeuronStage, PoolStage, SynapseStage
from neuroprune.sim.base import BackendRun, Progress, emit
from neuroprune.sim.inputs import CURRENT, Stimulus
from neuroprune.sim.lava_map import spec_arithmetic
from neuroprune.sim.spec import DeploymentSpec

WHERE = "sinabs backend"
ENVIRONMENT = "sinabs"
CHILD_MODULE = "neuroprune.sim.sinabs_env"
CHILD_TIMEOUT_S = 1800.0


def run_sinabs_job(
    kind: str, job: dict, arrays: dict[str, np.ndarray], *, timeout: float = CHILD_TIMEOUT_S
) -> tuple[dict, dict[str, np.ndarray]]:
    """Run one job of :mod:`neuroprune.sim.sinabs_env` in the ``sinabs`` environment:
    ``(facts, output arrays)``. Raises :class:`BackendUnavailableError` (one line naming
    ``neuroprune backends install sinabs``, exit 3) when the environment is not ready, and
    :class:`SimulationError` when the child fails."""
    python = require(
        ENVIRONMENT,
        what="Sinabs 3.1.3 (--backend sinabs)",
        where=WHERE,
        otherwise="or use --backend reference",
    )
    with tempfile.TemporaryDirectory(prefix="np-sinabs-") as tmp:
        folder = Path(tmp)
        (folder / "pythonpath").mkdir()
        package = Path(neuroprune.__file__).resolve().parent
        (folder / "pythonpath" / "neuroprune").symlink_to(package, target_is_directory=True)
        job_path = folder / "job.json"
        job_path.write_text(json.dumps({**job, "kind": kind}), encoding="utf-8")
        if arrays:
            np.savez(folder / "job.npz", **arrays)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONPATH"] = str(folder / "pythonpath")
        try:
            done = subprocess.run(
                [str(python), "-m", CHILD_MODULE, str(job_path)],
                capture_output=True,
                text=True,
                env=env,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise SimulationError(
                f"the Sinabs run timed out after {timeout:.0f} s",
                where=WHERE,
                field="timeout",
                value=timeout,
                fix="Simulate fewer samples (--samples N).",
            ) from exc
        facts = _last_json(done.stdout)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
            message = facts.get("message") or tail
            raise SimulationError(
                f"Sinabs failed ({facts.get('error', 'exit ' + str(done.returncode))}): {message}"[
                    :400
                ],
                where=WHERE,
                field="sinabs",
                value=facts.get("sinabs", ""),
                fix="Check the network is a chain of conv/linear + IF layers for Speck.",
            )
        out_path = folder / "job.out.npz"
        outputs = dict(np.load(out_path)) if out_path.exists() else {}
        return facts, outputs


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def sinabs_chain(path: str | os.PathLike) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The exported chain at ``path`` as the child's ``ops`` and weight arrays (the integer
    weights of each synaptic layer, ``threshold_int`` of each IF layer)."""
    network = read_network(path)
    if any(network.sources(i) != (i - 1,) for i in range(len(network.stages))):
        raise _unsupported("chains (Sinabs' DynapcnnNetwork here)", "graph", "residual")
    ops: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    for stage in network.stages:
        k = len(ops)
        if isinstance(stage, SynapseStage):
            if stage.quant is None:
                raise _unsupported("a quantized model", "quantized", False)
            arrays[f"w{k}"] = np.asarray(stage.quant.weight_int, dtype=np.float32)
            if stage.quant.bias_int is not None:  # added every step (a folded BatchNorm)
                arrays[f"b{k}"] = np.asarray(stage.quant.bias_int, dtype=np.float32)
            if stage.kind == "conv":
                ops.append({"op": "conv", "stride": stage.stride, "padding": stage.padding})
            else:
                ops.append({"op": "linear"})
        elif isinstance(stage, NeuronStage):
            if stage.model != "IF" or stage.threshold_int is None:
                raise _unsupported("IF neurons with integer thresholds", "neuron", stage.model)
            ops.append({"op": "iaf", "threshold": int(stage.threshold_int)})
        elif isinstance(stage, PoolStage):
            if stage.kind != "sum":
                raise _unsupported("sum pooling", "pooling", stage.kind)
            ops.append({"op": "sumpool", "kernel": int(stage.kernel)})
        elif isinstance(stage, FlattenStage):
            ops.append({"op": "flatten"})
    return ops, arrays


def _unsupported(what: str, field: str, value: Any) -> UnsupportedError:
    return UnsupportedError(
        f"--backend sinabs runs {what} (Speck's chain)",
        where=WHERE,
        field=field,
        value=value,
        fix="Fit for Speck (--chip speck --neuron if) and simulate its exported model.nir.",
    )


@dataclass(frozen=True)
class SinabsBackend:
    """Sinabs 3.1.3's DYNAP-CNN layers on the exported integer network (module docstring).

    ``chip_arithmetics``: it runs ``speck_iaf`` (Sinabs' IAF is its source); ``vendor_chips``:
    SynSense wrote it for Speck (:mod:`neuroprune.sim.verification`: a vendor simulator)."""

    name: str = "sinabs"
    chip_arithmetics: ClassVar[tuple[str, ...]] = (SPECK,)
    vendor_chips: ClassVar[tuple[str, ...]] = ("speck",)

    def check_available(self) -> None:
        """:class:`BackendUnavailableError` (exit 3) unless the sinabs environment is ready."""
        require(
            ENVIRONMENT,
            what="Sinabs 3.1.3 (--backend sinabs)",
            where=WHERE,
            otherwise="or use --backend reference",
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
        """Run the exported chain in Sinabs (spike input, ``speck_iaf`` integers only)."""
        self.check_available()
        start = time.perf_counter()
        name = spec_arithmetic(spec)
        if not fixed_point or name != SPECK:
            raise _unsupported("Speck's integer arithmetic (speck_iaf)", "arithmetic", name)
        if stimulus.kind == CURRENT:
            raise _unsupported("spike input (Speck takes events)", "encoding", "direct")
        ops, arrays = sinabs_chain(spec.source)
        frames = np.asarray(stimulus.frames, dtype=np.float32)
        arrays["inputs"] = frames.reshape(frames.shape[0], frames.shape[1], *spec.input_shape)
        emit(progress, "backend_start", backend=self.name, samples=stimulus.samples)
        limit = CHILD_TIMEOUT_S if timeout is None else float(timeout)
        facts, outputs = run_sinabs_job("simulate", {"ops": ops}, arrays, timeout=limit)
        counts = tuple(
            outputs[f"counts{k}"].astype(np.int32).reshape(stimulus.samples, -1)
            for k in range(len(spec.layers))
        )
        scales = facts.get("discretize_scale", [])
        if any(scale != 1.0 for scale in scales):
            raise SimulationError(
                "Sinabs' discretize rescaled the integer weights",
                where=WHERE,
                field="discretize_scale",
                value=scales,
                fix="Quantize for Speck (--chip speck): 8-bit weights, thresholds below 2**15.",
            )
        elapsed = time.perf_counter() - start
        emit(progress, "backend_done", backend=self.name, seconds=elapsed)
        notes = (
            f"Sinabs {facts.get('sinabs', '?')} DynapcnnNetwork(discretize=True): discretize "
            f"scale {sorted(set(scales))} per layer (integers kept as they are); samna stand-in "
            "never called",
        )
        return BackendRun(counts=counts, timings={"run": elapsed, "total": elapsed}, notes=notes)


__all__ = ["SinabsBackend", "run_sinabs_job", "sinabs_chain"]
