"""netx worker: ``python -m neuroprune.sim.netx_worker JOB_DIR`` (never imports torch).

Started by :mod:`neuroprune.sim.netx_backend` on the ``lava`` environment's Python 3.10, in
its own session, with the same watchdog, shared-memory bookkeeping and one-line
``error.json`` as the Lava worker (:mod:`neuroprune.sim.lava_worker`). It loads
``JOB_DIR/model.netx`` with lava-dl's own ``lava.lib.dl.netx.hdf5.Network`` and runs it in
Lava's fixed point (``Loihi2SimCfg(select_tag="fixed_pt")``).

Samples stream through the one network back to back, ``T`` steps each, the way netx resets
its layers: ``Network(reset_interval=T, reset_offset=r)`` gives layer ``i`` a ``LIFReset``
that zeroes ``u`` and ``v`` at the steps ``t % T == (r + 1 + i) % T``. A frame sent at Lava
step ``t`` reaches layer 0 at ``t + 1`` through its synapse (Lava's Dense/Conv send the
previous step's sum) and at ``t`` when injected into its neuron (a ``direct`` network's host
current), and every block adds one step, so layer ``i`` sees sample ``n`` at the steps
``first_i + n T .. first_i + n T + T - 1`` with ``first_i = i + 2`` (spikes) or ``i + 1``
(current): ``r = 1`` or ``0`` puts each reset on the first step of a sample.
``SampleCountSink`` counts each layer's spikes per sample.

lava-dl 0.6.0 imports torch in two places netx's loader does not need: the package's
``netx/__init__.py`` imports ``sequential_modules`` (a torch wrapper), and ``netx/hdf5.py``
imports ``lava.lib.dl.slayer.neuron.rf.neuron_params`` (for resonate-and-fire neurons only;
importing slayer imports torch). torch 2.3 with its CUDA libraries is 2.7 GB of wheels (PyPI
has no CPU-only build of it). This worker registers ``lava.lib.dl.netx`` as a package without
running its ``__init__`` and a module under the slayer name whose ``neuron_params`` raises, so
``netx.hdf5``, ``netx.blocks`` and ``netx.utils`` themselves run unchanged without torch
(``sequential_modules`` is registered as an empty module for Lava's process-model search).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

from neuroprune.sim import lava_worker as common

TORCH_WRAPPER = "lava.lib.dl.netx.sequential_modules"
SLAYER_MODULES = ("lava.lib.dl.slayer", "lava.lib.dl.slayer.neuron", "lava.lib.dl.slayer.neuron.rf")


def main(argv: list[str]) -> None:
    """Entry point; never returns normally (``os._exit``), like the Lava worker."""
    job_dir = Path(argv[1])
    try:
        common.die_with_parent(job_dir)
        common._record_shared_memory(job_dir / "shm.txt")
        common._capture_model_tracebacks()
        job = json.loads((job_dir / "job.json").read_text())
        try:
            lava = import_netx()
        except ImportError as exc:
            common._fail(
                job_dir,
                "unavailable",
                f"lava-dl netx cannot be imported: {exc}",
                common.EXIT_UNAVAILABLE,
            )
        result = run_job(job_dir, job, lava)
        common._save_npz(job_dir / "result.npz", result)
    except BaseException as exc:  # noqa: BLE001 - everything must end in error.json
        common._fail(job_dir, "failed", common._one_line(exc), common.EXIT_FAILED)
    os._exit(0)


def _rf_needs_slayer(*args, **kwargs):
    raise ImportError(
        "resonate-and-fire neurons need lava-dl's slayer (torch); neuroprune writes CUBA only"
    )


def import_netx() -> dict:
    """lava-dl's netx (with the slayer placeholder of the module docstring) and the Lava names
    the worker needs; ImportError when lava-dl or lava-nc is missing."""
    if "lava.lib.dl.slayer" not in sys.modules:
        for name in SLAYER_MODULES:
            module = types.ModuleType(name)
            module.__path__ = []  # a package, so the submodule import resolves
            sys.modules[name] = module
        sys.modules["lava.lib.dl.slayer.neuron.rf"].neuron_params = _rf_needs_slayer
    if "lava.lib.dl.netx" not in sys.modules:
        found = importlib.util.find_spec("lava.lib.dl.netx")
        if found is None or found.submodule_search_locations is None:
            raise ImportError("lava-dl (lava.lib.dl.netx) is not installed")
        package = types.ModuleType("lava.lib.dl.netx")
        package.__path__ = list(found.submodule_search_locations)
        package.__spec__ = found
        sys.modules["lava.lib.dl.netx"] = package
        # Lava's compiler imports every module of the package by name to find process
        # models (compiler_graphs.py); this one stands for the torch wrapper and, when it
        # loads the file itself, the ImportError is caught there with a warning.
        wrapper = types.ModuleType(TORCH_WRAPPER)
        wrapper.__file__ = str(Path(package.__path__[0]) / "sequential_modules.py")
        sys.modules[TORCH_WRAPPER] = wrapper
    from lava.lib.dl.netx import hdf5  # deferred: imports lava-dl
    from lava.magma.core.run_conditions import RunSteps  # deferred: imports lava
    from lava.magma.core.run_configs import Loihi2SimCfg  # deferred: imports lava

    from neuroprune.sim.lavaext.process import (  # deferred: imports lava
        FrameSource,
        SampleCountSink,
    )

    return {
        "Network": hdf5.Network,
        "RunSteps": RunSteps,
        "Loihi2SimCfg": Loihi2SimCfg,
        "FrameSource": FrameSource,
        "SampleCountSink": SampleCountSink,
    }


def run_job(job_dir: Path, job: dict, lava: dict) -> dict[str, np.ndarray]:
    """Load the file with netx, stream every sample, return ``counts<k>`` (``[N, neurons]``,
    C-order) and timing scalars."""
    begin = time.perf_counter()
    steps, samples = int(job["timesteps"]), int(job["samples"])
    inject = job["stimulus"] == "current"
    base = 0 if inject else 1
    net = lava["Network"](
        net_config=str(job_dir / "model.netx"),
        reset_interval=steps,
        reset_offset=base,
        sparse_fc_layer=bool(job["sparse_fc_layer"]),
    )
    frames = job_dir / "frames.npy"
    rows = samples * steps
    width = int(job["input_width"])
    source = lava["FrameSource"](shape=(width,), path=str(frames), frames=rows)
    if inject:
        target = net.layers[0].neuron.a_in
        _connect(source.s_out, target, job["first_shape"])
    else:
        _connect(source.s_out, net.inp, job["input_shape"])
    sinks, outputs = [], []
    for i, layer in enumerate(net.layers):
        shape = tuple(int(s) for s in layer.out.shape)
        path = job_dir / f"counts_l{i}.npy"
        sink = lava["SampleCountSink"](
            shape=shape, first_step=base + 1 + i, steps=steps, samples=samples, out_path=str(path)
        )
        layer.out.connect(sink.a_in)
        sinks.append(sink)
        outputs.append(path)
    final = base + len(net.layers) + rows
    built = time.perf_counter()
    run_cfg = lava["Loihi2SimCfg"](select_tag="fixed_pt")
    net.run(condition=lava["RunSteps"](num_steps=1, blocking=True), run_cfg=run_cfg)
    started = time.perf_counter()
    net.run(condition=lava["RunSteps"](num_steps=final - 1, blocking=True), run_cfg=run_cfg)
    ran = time.perf_counter()
    net.stop()
    stopped = time.perf_counter()
    result = {}
    for i, path in enumerate(outputs):
        counts = np.load(path)
        if counts.ndim == 4:  # netx's (W, H, C) -> neuroprune's C-order (C, H, W)
            counts = counts.transpose(0, 3, 2, 1)
        result[f"counts{i}"] = counts.reshape(samples, -1)
    result.update(
        time_build=np.float64(built - begin),
        time_start=np.float64(started - built),
        time_run=np.float64(ran - started),
        time_stop=np.float64(stopped - ran),
    )
    return result


def _connect(port, target, chw: list[int]) -> None:
    """Connect a flat C-order frame port to ``target``: reshaped to (C, H, W) and transposed
    to netx's (W, H, C) when the target is a 3-D block."""
    if len(target.shape) == 3:
        port.reshape(tuple(int(s) for s in chw)).transpose([2, 1, 0]).connect(target)
    else:
        port.connect(target)


if __name__ == "__main__":
    main(sys.argv)
