"""Lava worker: ``python -m neuroprune.sim.lava_worker JOB_DIR`` (never imports torch).

Started by :mod:`neuroprune.sim.lava_backend` in its own session. Reads ``JOB_DIR/job.json``,
``layers.npz`` and ``frames_c<i>.npy``; for every chunk of ``B`` samples builds one
space-batched network (``BatchedSparse``, i.e. what ``Sparse(kron(I_B, W))`` computes with
``W`` stored once, -> ``LIFReset`` per layer, a ``FrameSource`` and one ``CountSink`` per
layer, Lava channels of 2 slots), runs it for ``T + D (+1)`` steps (``D``: the deepest layer's
depth) with blocking ``RunSteps`` (the first step alone, so compile and process start are timed
apart, then the rest) and calls ``stop()`` only after ``run()`` returned. Writes
``result.npz`` (per-layer counts ``[N, neurons]``, timings), appends progress events to
``progress.jsonl``, and on any failure writes a one-line ``error.json`` and leaves with
``os._exit`` (Lava may hang at exit after a failed run; the parent then kills the whole
process group).

Graphs: layer ``i`` gets one ``BatchedSparse`` per source (its column block of the weights),
each reading the source's ``s_out`` (a neuron layer, or the ``FrameSource`` for the network
input) and all connected to the layer's ``LIFReset.a_in``, whose InPort sums them.

Pipeline alignment: the source sends frame ``t-1`` at Lava step ``t``; every connection adds
one step. A layer at depth ``D`` (longest path from the input in layers, 1 for the first;
``LayerWiring.depth``) sees sample step ``s`` at Lava step ``s + D + d``, with ``d = 1`` when
spikes enter through a Sparse and ``d = 0`` when the first layer's current is injected; its
projection from a source at depth ``D_j`` waits ``D - 1 - D_j`` extra steps (the
``BatchedSparse`` delay) so that all its sources' spikes of one step arrive together. In a
chain ``D = k + 1`` and every delay is 0. ``LIFReset`` zeroes a layer once, right before its
first real input, so biases integrated while the pipeline fills are discarded.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import scipy.sparse as sp

CHANNEL_SLOTS = 2  # messages per Lava channel (Lava's default 64 costs 64 x B x width x 8 B)
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 3
RUNTIME_LOGGER = "lava.magma.runtime.runtime"
MODEL_TRACEBACKS: list[str] = []


def main(argv: list[str]) -> None:
    """Entry point; never returns normally (``os._exit``) so Lava threads cannot block exit."""
    job_dir = Path(argv[1])
    try:
        die_with_parent(job_dir)
        _record_shared_memory(job_dir / "shm.txt")
        _capture_model_tracebacks()
        job = json.loads((job_dir / "job.json").read_text())
        try:
            lava = _import_lava()
        except ImportError as exc:
            _fail(job_dir, "unavailable", f"lava-nc cannot be imported: {exc}", EXIT_UNAVAILABLE)
        result = run_job(job_dir, job, lava)
        _save_npz(job_dir / "result.npz", result)
    except BaseException as exc:  # noqa: BLE001 - everything must end in error.json
        _fail(job_dir, "failed", _one_line(exc), EXIT_FAILED)
    os._exit(0)


def _import_lava() -> dict:
    """The Lava names the worker needs (ImportError when lava-nc is missing)."""
    from lava.magma.core.run_conditions import RunSteps  # deferred: imports lava
    from lava.magma.core.run_configs import Loihi2SimCfg  # deferred: imports lava
    from lava.proc.lif.process import LIFReset  # deferred: imports lava

    from neuroprune.sim.lavaext.process import (  # deferred: imports lava
        BatchedSparse,
        ChipNeuron,
        CountSink,
        FrameSource,
    )

    return {
        "RunSteps": RunSteps,
        "Loihi2SimCfg": Loihi2SimCfg,
        "LIFReset": LIFReset,
        "BatchedSparse": BatchedSparse,
        "ChipNeuron": ChipNeuron,
        "CountSink": CountSink,
        "FrameSource": FrameSource,
    }


def run_job(job_dir: Path, job: dict, lava: dict) -> dict[str, np.ndarray]:
    """Run every chunk; return ``counts<k>`` arrays and timing scalars (seconds summed over
    chunks: ``build``, ``start`` = compile + process start + first step, ``run``, ``stop``)."""
    layers = _load_layers(job_dir / "layers.npz", job)
    chunks = job["chunks"]
    parts: list[list[np.ndarray]] = [[] for _ in layers]
    timings = {"build": 0.0, "start": 0.0, "run": 0.0, "stop": 0.0}
    for index, (start, stop) in enumerate(chunks):
        counts, chunk_times = run_chunk(job_dir, job, lava, layers, index, stop - start)
        for k, block in enumerate(counts):
            parts[k].append(block)
        for key, value in chunk_times.items():
            timings[key] += value
        _progress(job_dir, "chunk_done", chunk=index + 1, chunks=len(chunks), samples=stop)
    result = {f"counts{k}": np.concatenate(p, axis=0) for k, p in enumerate(parts)}
    result.update({f"time_{key}": np.float64(value) for key, value in timings.items()})
    return result


def run_chunk(job_dir, job, lava, layers, index: int, batch: int):
    """Build, run and stop one space-batched network of ``batch`` samples. The first step runs
    alone, so ``start`` (compile, process start, one step) and ``run`` (the other steps) are
    timed apart."""
    begin = time.perf_counter()
    windows = _windows(job, layers)
    final = max(last for _, last in windows)
    outputs = [job_dir / f"counts_c{index}_l{k}.npy" for k in range(len(layers))]
    source, sinks = _build(
        job, lava, layers, batch, windows, outputs, job_dir / f"frames_c{index}.npy"
    )
    built = time.perf_counter()
    run_cfg = lava["Loihi2SimCfg"](
        select_tag="fixed_pt" if job["mode"] == "fixed" else "floating_pt"
    )
    source.run(
        condition=lava["RunSteps"](num_steps=1, blocking=True),
        run_cfg=run_cfg,
        compile_config={"pypy_channel_size": CHANNEL_SLOTS},
    )
    started = time.perf_counter()
    source.run(condition=lava["RunSteps"](num_steps=final - 1, blocking=True), run_cfg=run_cfg)
    ran = time.perf_counter()
    source.stop()  # only reached when run() returned normally
    stopped = time.perf_counter()
    counts = [np.load(path).reshape(batch, -1) for path in outputs]
    times = {
        "build": built - begin,
        "start": started - built,
        "run": ran - started,
        "stop": stopped - ran,
    }
    return counts, times


def _windows(job: dict, layers: list[dict]) -> list[tuple[int, int]]:
    """Per layer ``(first_step, last_step)`` of its T counted Lava steps (module docstring)."""
    delay = 1 if job["stimulus"] == "spikes" else 0
    steps = int(job["timesteps"])
    return [(layer["depth"] + delay, layer["depth"] + delay + steps - 1) for layer in layers]


def _build(job, lava, layers, batch, windows, outputs, frames_path):
    """Wire the source and every layer's projections (``BatchedSparse`` per source) into its
    ``LIFReset``, with a ``CountSink`` per layer (module docstring)."""
    final = max(last for _, last in windows)
    inject = job["stimulus"] == "current"
    width = layers[0]["neurons"] if inject else int(job["input_width"])
    source = lava["FrameSource"](
        shape=(batch * width,), path=str(frames_path), frames=int(job["timesteps"])
    )
    spikes, sinks = [], []
    for k, layer in enumerate(layers):
        neuron = _neuron(lava, layer, batch, windows[k][0], final)
        if k == 0 and inject:
            source.s_out.connect(neuron.a_in)
        else:
            for port, synapse in _projections(lava, layer, batch, job, source, spikes):
                port.connect(synapse.s_in)
                synapse.a_out.connect(neuron.a_in)
        sink = lava["CountSink"](
            shape=(batch * layer["neurons"],),
            first_step=windows[k][0],
            last_step=windows[k][1],
            final_step=final,
            out_path=str(outputs[k]),
            fault=job.get("fault", "") if k == len(layers) - 1 else "",
            graded=bool((layer.get("chip") or {}).get("graded", False)),
        )
        neuron.s_out.connect(sink.a_in)
        spikes.append(neuron.s_out)
        sinks.append(sink)
    return source, sinks


def _projections(lava, layer: dict, batch: int, job: dict, source, spikes: list):
    """``(presynaptic OutPort, BatchedSparse)`` per source of ``layer``: its column block,
    delayed by the layer's per-source delay."""
    fixed = job["mode"] == "fixed"
    pairs = []
    for j, (start, stop), delay in zip(
        layer["sources"], layer["columns"], layer["delays"], strict=True
    ):
        block = layer["weights"][:, start:stop].tocsr()
        port = source.s_out if j == -1 else spikes[j]
        pairs.append((port, _sparse(lava, block, batch, fixed, job, delay, layer)))
    return pairs


def _sparse(lava, weights, batch: int, fixed: bool, job: dict, delay: int, layer: dict):
    """One :class:`~neuroprune.sim.lavaext.process.BatchedSparse` holding ``W`` once for the
    ``batch`` samples of the chunk (what ``Sparse(kron(I_batch, W))`` computes), its output
    held ``delay`` extra steps."""
    kwargs = {"num_message_bits": int(job.get("message_bits", 1)), "batch": batch}
    if fixed:
        weights = weights.astype(np.int32)
        kwargs.update(weight_exp=layer["weight_exp"], num_weight_bits=layer["num_weight_bits"])
    return lava["BatchedSparse"](weights=weights, delay=int(delay), **kwargs)


def _neuron(lava, layer: dict, batch: int, first_step: int, final: int):
    """LIFReset that zeroes u and v once, at ``first_step`` (interval longer than the run);
    a ``ChipNeuron`` (same reset) for a layer that runs another chip arithmetic."""
    bias = np.tile(layer["bias_mant"], batch)
    if layer.get("chip"):
        return lava["ChipNeuron"](
            shape=(batch * layer["neurons"],),
            bias=np.rint(bias).astype(np.int64),
            reset_offset=first_step,
            chip=layer["chip"],
        )
    params = {"du": layer["du"], "dv": layer["dv"], "vth": layer["vth"]}
    if layer["fixed"]:
        bias = bias.astype(np.int32)
        params = {key: int(value) for key, value in params.items()}
        params["bias_exp"] = np.full(bias.shape, int(layer["bias_exp"]), dtype=np.int32)
    return lava["LIFReset"](
        shape=(batch * layer["neurons"],),
        bias_mant=bias,
        reset_interval=final + 1,
        reset_offset=first_step,
        **params,
    )


def _load_layers(path: Path, job: dict) -> list[dict]:
    data = np.load(path)
    fixed = job["mode"] == "fixed"
    layers = []
    for k, scalars in enumerate(job["layers"]):
        shape = tuple(int(s) for s in data[f"w{k}_shape"])
        weights = sp.csr_matrix(
            (data[f"w{k}_data"], data[f"w{k}_indices"], data[f"w{k}_indptr"]), shape=shape
        )
        layers.append(
            {
                **scalars,
                "fixed": fixed,
                "weights": weights,
                "bias_mant": data[f"bias{k}"],
                "neurons": shape[0],
                "inputs": shape[1],
            }
        )
    return layers


# --------------------------------------------------------------------------------------------
# Dying with the parent

PR_SET_PDEATHSIG = 1  # linux/prctl.h
OWNER_ENV = "NEUROPRUNE_LAVA_OWNER"  # the parent's pid (lava_backend.worker_env)
WATCHDOG_ENV = "NEUROPRUNE_LAVA_WATCHDOG_FD"  # read end of a pipe the parent holds open


def die_with_parent(job_dir: Path) -> None:
    """However the parent dies (SIGKILL included), this worker's whole process group goes too,
    and its shared memory and job directory are removed:

    1. ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel signals this process when the parent
       dies; the handler runs :func:`abandon`;
    2. a watchdog thread blocks on a pipe whose write end only the parent holds: end-of-file
       means the parent is gone (also covers a parent that died before step 1);
    Lava's forked children do not inherit either, so :func:`abandon` kills the group.
    """

    owner = int(os.environ.get(OWNER_ENV, "0"))
    signal.signal(signal.SIGTERM, lambda signum, frame: abandon(job_dir))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if owner and os.getppid() != owner:  # the parent died before prctl took effect
        abandon(job_dir)
    fd = os.environ.get(WATCHDOG_ENV)
    if fd is not None:
        threading.Thread(target=_watch, args=(int(fd), job_dir), daemon=True).start()


def _watch(fd: int, job_dir: Path) -> None:
    while True:
        try:
            if not os.read(fd, 1):  # EOF: the parent closed its end or died
                abandon(job_dir)
        except OSError:
            abandon(job_dir)


def abandon(job_dir: Path) -> None:
    """Kill the rest of this process group, unlink its shared memory, delete the job
    directory, and exit (the parent is gone: nobody will read the result)."""

    me = os.getpid()
    for pid in _group_members(os.getpgid(0)):
        if pid != me:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    names = job_dir / "shm.txt"
    if names.exists():
        for name in names.read_text(encoding="utf-8").split():
            with contextlib.suppress(OSError):
                os.unlink("/dev/shm/" + name.lstrip("/"))
    shutil.rmtree(job_dir, ignore_errors=True)
    os._exit(EXIT_FAILED)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


# --------------------------------------------------------------------------------------------
# Bookkeeping


def _record_shared_memory(path: Path) -> None:
    """Log the name of every shared-memory block created in this process group, so the parent
    can unlink blocks that a killed Lava runtime leaves in /dev/shm."""

    original = shared_memory.SharedMemory.__init__

    def recording_init(self, name=None, create=False, size=0):
        original(self, name=name, create=create, size=size)
        if create:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(self.name + "\n")

    shared_memory.SharedMemory.__init__ = recording_init


def _capture_model_tracebacks() -> None:
    """Keep the process-model tracebacks that Lava's runtime logs at INFO (and its WARNING
    level hides) before raising "N Exception(s) occurred. See output above"."""
    logger = logging.getLogger(RUNTIME_LOGGER)
    original = logger.info

    def info(message, *args, **kwargs):
        MODEL_TRACEBACKS.append(str(message))
        original(message, *args, **kwargs)

    logger.info = info


def _progress(job_dir: Path, event: str, **fields) -> None:
    with open(job_dir / "progress.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"event": event, **fields}) + "\n")


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _one_line(exc: BaseException) -> str:
    """``Type: message``; for a failed Lava run, the process model's own exception line."""
    text = f"{type(exc).__name__}: {exc}"
    lines = [line for tb in MODEL_TRACEBACKS for line in tb.splitlines() if line.strip()]
    if lines:
        text = f"exception in a Lava process model: {lines[-1]}"
    return " ".join(text.split())[:500]


def _fail(job_dir: Path, kind: str, message: str, code: int) -> None:
    try:
        (job_dir / "traceback.txt").write_text(traceback.format_exc())
        tmp = job_dir / "error.json.part"
        tmp.write_text(json.dumps({"kind": kind, "message": message}))
        os.replace(tmp, job_dir / "error.json")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv)
