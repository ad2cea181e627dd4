"""``netx`` backend: the network as a lava-dl netx file, loaded by lava-dl's own
``netx.hdf5.Network`` and run in Lava's fixed point (parent side).

:func:`neuroprune.sim.netx_file.write_netx` writes the spec as the netx file
``neuroprune export RUN --format netx`` writes; the worker (:mod:`neuroprune.sim.netx_worker`,
on the ``lava`` environment's Python 3.10 with lava-dl 0.6.0) loads it with
``netx.hdf5.Network``, streams the samples through it and counts every layer's spikes per
sample. Process handling (own session, time limit, killing the group, one-line errors) is the
Lava backend's (:func:`neuroprune.sim.lava_backend.run_worker`).

What an agreement proves: the file Intel's loader reads computes, in Lava's bit-accurate
Loihi model (``Loihi2SimCfg(select_tag="fixed_pt")``: the ``loihi_fixed_pt`` arithmetic),
what the trained quantized model computes; so its verification kind is chip-exact for the
Loihi profiles (:mod:`neuroprune.sim.verification`). It runs only in fixed point.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from neuroprune.chip.arithmetic import LOIHI
from neuroprune.core.errors import ConfigError
from neuroprune.envs import environment_python, require
from neuroprune.sim.base import BackendRun, Progress, emit
from neuroprune.sim.inputs import CURRENT, Stimulus
from neuroprune.sim.lava_backend import default_timeout, run_worker, sweep_stale_jobs
from neuroprune.sim.netx_file import check_netx_spec, write_netx
from neuroprune.sim.spec import DeploymentSpec

WORKER_MODULE = "neuroprune.sim.netx_worker"
WHERE = "--backend netx"
JOB_PREFIX = "neuroprune-lava-"  # swept by the Lava backend's stale-job sweep too


@dataclass(frozen=True)
class NetxBackend:
    """lava-dl 0.6.0 ``netx.hdf5.Network`` in Lava fixed point (module docstring).

    Attributes:
        name: registry key.
        python: the worker's interpreter (default: the ``lava`` environment's).
    """

    name: str = "netx"
    chip_arithmetics: ClassVar[tuple[str, ...]] = (LOIHI,)
    python: str | None = None

    def check_available(self) -> None:
        """The ``lava`` environment must be ready (it holds lava-dl); whether netx imports
        there is the worker's to say (``BackendUnavailableError``, exit 3)."""
        if self.python is None:
            require(
                "lava",
                what="lava-dl netx (lava-dl 0.6.0 beside lava-nc 0.10.0)",
                where=WHERE,
                otherwise="or use --backend lava",
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
        """Write the netx file of ``spec``, run it in a netx worker; counts per layer."""
        if not fixed_point:
            raise ConfigError(
                "the netx backend runs Lava's fixed point only (a netx file holds integers)",
                where=WHERE,
                field="fixed_point",
                value=False,
                fix="Simulate a Loihi-quantized run in fixed point, or use --backend lava.",
            )
        check_netx_spec(spec, where=WHERE)
        self.check_available()
        limit = default_timeout(stimulus.samples) if timeout is None else float(timeout)
        sweep_stale_jobs()
        job_dir = Path(tempfile.mkdtemp(prefix=JOB_PREFIX))
        try:
            summary = write_netx(spec, job_dir / "model.netx", input_shift=stimulus.current_shift)
            write_job(job_dir, spec, stimulus, summary.sparse_fc_layer)
            emit(
                progress,
                "backend_start",
                backend=self.name,
                samples=stimulus.samples,
                chunks=1,
                timeout=limit,
            )
            python = str(self.python or environment_python("lava"))
            result, wall = run_worker(
                job_dir, limit, progress, python, module=WORKER_MODULE, where=WHERE
            )
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
        counts = tuple(result[f"counts{k}"].astype(np.int32) for k in range(len(spec.layers)))
        timings = {key[5:]: float(result[key]) for key in result if key.startswith("time_")}
        timings["total"] = wall
        notes = (
            f"lava-dl netx.hdf5.Network loaded the netx file ({summary.bytes:,} bytes; "
            f"sparse_fc_layer={summary.sparse_fc_layer}) and ran it in Loihi2SimCfg fixed_pt, "
            f"{stimulus.samples} samples streamed with reset_interval={stimulus.timesteps}",
        )
        if stimulus.kind == CURRENT:
            notes += (
                f"analog input: the host-computed first-layer current (2**-{summary.input_shift}"
                " weight LSB) was injected into the first block's neuron",
            )
        return BackendRun(counts=counts, timings=timings, notes=notes)


def write_job(job_dir: Path, spec: DeploymentSpec, stimulus: Stimulus, sparse: bool) -> None:
    """``frames.npy`` (``[N T, width]``, sample-major: sample ``n``'s step ``t`` is row
    ``n T + t``) and ``job.json``."""
    frames = np.ascontiguousarray(stimulus.frames.transpose(1, 0, 2))
    frames = frames.reshape(-1, frames.shape[-1])
    dtype = np.int32 if stimulus.kind == CURRENT else np.uint8
    np.save(job_dir / "frames.npy", frames.astype(dtype))
    first = spec.layers[0]
    job = {
        "stimulus": stimulus.kind,
        "timesteps": stimulus.timesteps,
        "samples": stimulus.samples,
        "input_width": int(frames.shape[-1]),
        "input_shape": [int(s) for s in spec.input_shape],
        "first_shape": [int(s) for s in first.out_shape],
        "sparse_fc_layer": bool(sparse),
    }
    (job_dir / "job.json").write_text(json.dumps(job))
