"""``lava`` backend (parent side): real lava-nc in a child process with a hard timeout.

Lava's runtime hangs in several ways (docs/lava.md §5), so it never runs in this interpreter:

1. the job (Lava-unit weights, LIF parameters, input frames) is written as ``.npz``/``.npy``
   files to a fresh temporary directory;
2. ``python -m neuroprune.sim.lava_worker DIR`` starts in a new session (its own process
   group) on the interpreter of the Python 3.10 backend environment ``lava``
   (:mod:`neuroprune.envs`; lava-nc 0.10.0 imports only on Python 3.10 with numpy < 2). Its
   ``PYTHONPATH`` is one folder in the job directory holding a symlink ``neuroprune`` to this
   package, so it imports the torch-free worker modules and none of the tool environment's
   packages; it never imports torch;
3. the parent polls it until ``timeout`` seconds (``fit``'s default: :func:`scaled_timeout`,
   from the network's measured cost on the numpy reference), forwards
   its progress events, then kills the whole process group with SIGKILL (always, so no Lava
   child outlives the call), unlinks shared-memory blocks the group created, and deletes the
   directory;
4. a timeout or a failed worker raises :class:`~neuroprune.core.errors.SimulationError` with one
   line; a backend environment that is not ready (or lava-nc that does not import in it)
   raises :class:`~neuroprune.core.errors.BackendUnavailableError` (exit 3) saying how to
   install it (``neuroprune backends install lava``).

Samples are space-batched: each chunk of ``B`` samples is one network computing what a Sparse
process with weights ``kron(I_B, W)`` computes, with ``W`` stored once
(:class:`~neuroprune.sim.lavaext.process.BatchedSparse`). The weights no longer grow with ``B``,
so a chunk's memory is the per-sample state: ``B`` is chosen from a measured cost per neuron and
sample (:data:`BYTES_PER_NEURON_SAMPLE`) and the memory available now (:func:`chunk_size`).
Fewer chunks mean fewer Lava compilations, so simulation time grows with synapses, not faster.

One model of Lava's cost sets the time limit: :func:`scaled_timeout` (the pipeline measures the
numpy reference on a few samples of the same network and passes its seconds per sample).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

import neuroprune
from neuroprune.chip.arithmetic import LOIHI, SPECK
from neuroprune.chip.arithmetic.spinnaker import SPINNAKER
from neuroprune.chip.arithmetic.truenorth import TRUENORTH
from neuroprune.core.errors import BackendUnavailableError, SimulationError
from neuroprune.core.processes import process_alive
from neuroprune.envs import environment_python, require
from neuroprune.sim.base import BackendRun, Progress, emit
from neuroprune.sim.inputs import CURRENT, Stimulus
from neuroprune.sim.lava_map import LavaLayer, chip_lava_layers, lava_layers, spec_arithmetic
from neuroprune.sim.lava_worker import OWNER_ENV, WATCHDOG_ENV
from neuroprune.sim.spec import DeploymentSpec

BASE_TIMEOUT_S = 20.0
TIMEOUT_PER_SAMPLE_S = 0.05
POLL_S = 0.02
GROUP_EXIT_WAIT_S = 5.0
WORKER_MODULE = "neuroprune.sim.lava_worker"
SHM_DIR = Path("/dev/shm")
JOB_PREFIX = "neuroprune-lava-"
OWNER_FILE = "owner.json"
WHERE = "--backend lava"
WORKER_PATH = "pythonpath"  # folder of the job directory: the worker's whole PYTHONPATH
TIMEOUT_FIX = (
    "Pass a larger time limit (simulate --timeout, fit --sim-timeout) or fewer samples (--samples)."
)
# Peak PSS of the worker's process tree grows by about 1.4 MB per sample for a 64-4096-4096-10
# net (8,266 neurons: 545 MB from 128 to 512 samples, benchmarks/lava_scale.py): ~170 B per
# neuron and sample (channel slots, LIF state, products). 256 B leaves a margin.
BYTES_PER_NEURON_SAMPLE = 256
MEMORY_FRACTION = 0.5  # of MemAvailable a chunk may take
FALLBACK_MEMORY_BYTES = 2 * 2**30  # when /proc/meminfo cannot be read


def default_timeout(samples: int) -> float:
    """``20 s + 50 ms x samples``: Lava import, compile and ~5 ms/sample leave a wide margin
    for small networks (``simulate --backend lava`` without ``--timeout``)."""
    return BASE_TIMEOUT_S + TIMEOUT_PER_SAMPLE_S * samples


LAVA_OVER_REFERENCE = 40.0  # measured 10x over the numpy reference (docs/lava.md §6), 4x margin
SCALED_BASE_S = 60.0


def scaled_timeout(samples: int, reference_seconds_per_sample: float) -> float:
    """Time limit from the network's measured cost (``fit`` without ``--sim-timeout``):

    ``60 s + samples x max(50 ms, 40 x t_ref)`` where ``t_ref`` (s/sample) is the numpy
    reference's measured time on a few samples of the same network.
    """
    per_sample = max(
        TIMEOUT_PER_SAMPLE_S, LAVA_OVER_REFERENCE * float(reference_seconds_per_sample)
    )
    return SCALED_BASE_S + samples * per_sample


@dataclass(frozen=True)
class LavaBackend:
    """Runs the spec on lava-nc 0.10.0 (``Loihi2SimCfg``, floating_pt or fixed_pt).

    Attributes:
        name: registry key.
        max_chunk_bytes: bound on one network's per-sample memory (``None``: half of the
            memory available when the run starts).
        chunk_samples: force ``B`` (``None``: :func:`chunk_size`).
        message_bits: Sparse ``num_message_bits``. 0 takes Lava's binary path
            ``W[:, s].sum(axis=1)``; >0 its graded path ``W.dot(s)``, which for 0/1 spikes adds
            the same weights in the same (column) order, so counts are identical, and is faster.
        fault: tests only: ``"raise"`` or ``"hang"`` inside a Lava process model.
        python: interpreter for the worker (default: the ``lava`` backend environment's,
            :func:`neuroprune.envs.environment_python`).
        chip_arithmetics: chip arithmetics it runs bit for bit in fixed point (Lava's
            ``fixed_pt`` LIF is Loihi's; SpiNNaker's and Speck's (spike counts) run in a
            ``ChipNeuron`` process,
            :func:`neuroprune.sim.lava_map.chip_words`; :mod:`neuroprune.sim.verification`).
    """

    name: str = "lava"
    chip_arithmetics: ClassVar[tuple[str, ...]] = (LOIHI, SPINNAKER, TRUENORTH, SPECK)
    max_chunk_bytes: int | None = None
    chunk_samples: int | None = None
    message_bits: int = 1
    fault: str = ""
    python: str | None = None

    def check_available(self) -> None:
        """Raise :class:`BackendUnavailableError` (one line) when the worker's interpreter
        cannot run Lava: the ``lava`` backend environment is not ready (the fix says how to get
        Python 3.10 when this machine has none, then ``neuroprune backends install lava``),
        or an explicit ``python`` does not exist. Whether lava-nc imports there is the
        worker's to say (``kind: unavailable`` in its ``error.json``)."""
        if self.python is None:
            require(
                "lava",
                what="Lava (lava-nc 0.10.0)",
                where=WHERE,
                otherwise="or use --backend reference",
            )
            return
        if not os.access(self.python, os.X_OK) or not Path(self.python).is_file():
            raise BackendUnavailableError(
                "the Lava worker's interpreter does not exist",
                where=WHERE,
                field="python",
                value=self.python,
                fix="Pass an executable Python 3.10 with lava-nc, or leave python unset to use "
                "the lava backend environment.",
            )

    def interpreter(self) -> Path:
        """The worker's interpreter: ``python``, else the lava environment's."""
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
        """Simulate in a Lava worker; see the module docstring."""
        self.check_available()
        name = spec_arithmetic(spec) if fixed_point else None
        if name not in (None, LOIHI):  # another chip arithmetic: ChipNeuron, float Sparse
            layers = chip_lava_layers(spec, name, stimulus.current_shift)  # type: ignore[arg-type]
            fixed_point = False
        else:
            layers = lava_layers(spec, fixed_point, stimulus.current_shift)
        limit = default_timeout(stimulus.samples) if timeout is None else float(timeout)
        chunks = self.chunks(layers, stimulus)
        sweep_stale_jobs()
        job_dir = Path(tempfile.mkdtemp(prefix=JOB_PREFIX))
        try:
            write_job(job_dir, layers, stimulus, chunks, fixed_point, self)
            emit(
                progress,
                "backend_start",
                backend=self.name,
                samples=stimulus.samples,
                chunks=len(chunks),
                timeout=limit,
            )
            result, wall = run_worker(job_dir, limit, progress, str(self.interpreter()))
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
        counts = tuple(result[f"counts{k}"].astype(np.int32) for k in range(len(layers)))
        timings = {key[5:]: float(result[key]) for key in result if key.startswith("time_")}
        timings["total"] = wall
        notes = (
            f"lava space batching: {len(chunks)} network(s) of up to "
            f"{max(stop - start for start, stop in chunks)} samples",
        )
        return BackendRun(counts=counts, timings=timings, notes=notes)

    def chunks(self, layers: tuple[LavaLayer, ...], stimulus: Stimulus) -> list[tuple[int, int]]:
        """``[(start, stop), ...]`` sample ranges, one Lava network each."""
        width = stimulus.frames[0, 0].size
        per_sample = sample_bytes(layers, width, stimulus.timesteps)
        budget = self.max_chunk_bytes or int(MEMORY_FRACTION * available_memory())
        size = self.chunk_samples or chunk_size(per_sample, budget)
        size = max(1, min(int(size), stimulus.samples))
        return [(a, min(a + size, stimulus.samples)) for a in range(0, stimulus.samples, size)]


def sample_bytes(layers: tuple[LavaLayer, ...], input_width: int, timesteps: int) -> int:
    """Memory one sample adds to a chunk: ``BYTES_PER_NEURON_SAMPLE x (neurons + inputs)``
    plus its input frames (``T x input_width x 8`` bytes) and the delay FIFOs of a graph
    (``8`` bytes per delayed step and target neuron)."""
    neurons = sum(layer.neurons for layer in layers) + input_width
    delayed = sum(
        layer.neurons * sum(layer.wiring.delays) for layer in layers if layer.wiring is not None
    )
    return BYTES_PER_NEURON_SAMPLE * neurons + 8 * timesteps * input_width + 8 * delayed


def chunk_size(per_sample_bytes: int, budget_bytes: int) -> int:
    """Samples per network: as many as ``budget_bytes`` holds (at least 1)."""
    return max(1, budget_bytes // max(per_sample_bytes, 1))


def available_memory() -> int:
    """``MemAvailable`` from /proc/meminfo in bytes (2 GiB when it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return FALLBACK_MEMORY_BYTES


# --------------------------------------------------------------------------------------------
# Job files


def write_job(job_dir: Path, layers, stimulus: Stimulus, chunks, fixed_point: bool, backend):
    """``job.json``, ``layers.npz`` and one ``frames_c<i>.npy`` ``[T, B * width]`` per chunk."""
    arrays = {}
    for k, layer in enumerate(layers):
        w = layer.weights.tocsr()
        arrays[f"w{k}_data"] = w.data.astype(np.int32 if fixed_point else np.float64)
        arrays[f"w{k}_indices"] = w.indices
        arrays[f"w{k}_indptr"] = w.indptr
        arrays[f"w{k}_shape"] = np.array(w.shape)
        arrays[f"bias{k}"] = layer.bias_mant
    np.savez(job_dir / "layers.npz", **arrays)
    for index, (start, stop) in enumerate(chunks):
        frames = _worker_frames(stimulus, layers[0], start, stop, fixed_point)
        np.save(job_dir / f"frames_c{index}.npy", frames)
    job = {
        "mode": "fixed" if fixed_point else "float",
        "stimulus": stimulus.kind,
        "timesteps": stimulus.timesteps,
        "chunks": [list(c) for c in chunks],
        "message_bits": int(backend.message_bits),
        "input_width": int(stimulus.frames[0, 0].size),
        "fault": backend.fault,
        "layers": [_layer_scalars(layer) for layer in layers],
    }
    (job_dir / "job.json").write_text(json.dumps(job))


def _worker_frames(stimulus: Stimulus, first: LavaLayer, start: int, stop: int, fixed: bool):
    """Frames of samples ``start:stop`` flattened sample-major per step, in Lava units."""
    frames = stimulus.frames[:, start:stop]
    frames = frames.reshape(frames.shape[0], -1)
    if stimulus.kind != CURRENT:
        return np.ascontiguousarray(frames, dtype=np.uint8)
    if fixed:
        return np.ascontiguousarray(frames, dtype=np.int32)
    return np.ascontiguousarray(frames * first.input_gain, dtype=np.float64)


def _layer_scalars(layer: LavaLayer) -> dict:
    """Scalars and wiring of one layer (sources, column blocks, depth, per-source delays)."""
    wiring = layer.wiring
    if wiring is None:
        raise ValueError(f"layer {layer.name} has no wiring (build it with lava_layers)")
    return {
        "sources": list(wiring.sources),
        "columns": [list(c) for c in wiring.columns],
        "delays": list(wiring.delays),
        "depth": int(wiring.depth),
        "du": layer.du,
        "dv": layer.dv,
        "vth": layer.vth,
        "weight_exp": int(layer.weight_exp),
        "num_weight_bits": int(layer.num_weight_bits),
        "bias_exp": int(layer.bias_exp),
        "chip": layer.chip,
    }


# --------------------------------------------------------------------------------------------
# The child process


def run_worker(
    job_dir: Path,
    timeout: float,
    progress: Progress,
    python: str,
    module: str = WORKER_MODULE,
    where: str = WHERE,
):
    """Run the worker (``python -m module JOB_DIR``) to completion or kill its group at
    ``timeout``; ``(result, seconds)``. ``where`` names the backend in its errors."""
    start = time.perf_counter()
    watch_read, watch_write = os.pipe()  # the worker dies when this process's end closes
    try:
        with open(job_dir / "worker.log", "wb") as log:
            proc = subprocess.Popen(
                [python, "-m", module, str(job_dir)],
                cwd=job_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**worker_env(job_dir), WATCHDOG_ENV: str(watch_read)},
                pass_fds=(watch_read,),
                start_new_session=True,
            )
    finally:
        os.close(watch_read)
    _write_owner(job_dir, proc.pid)
    try:
        status = _wait_unreaped(proc.pid, start + timeout, job_dir, progress)
    finally:
        kill_group(proc.pid)
        proc.wait()
        os.close(watch_write)
        unlink_shared_memory(job_dir / "shm.txt")
    wall = time.perf_counter() - start
    if status is None:
        raise SimulationError(
            f"Lava run timed out after {timeout:.1f} s; the worker and its processes were killed",
            where=where,
            field="timeout",
            value=timeout,
            fix=TIMEOUT_FIX,
        )
    _raise_on_failure(job_dir, status, where)
    with np.load(job_dir / "result.npz") as data:
        return {key: data[key] for key in data.files}, wall


def _write_owner(job_dir: Path, worker_pid: int) -> None:
    """``owner.json``: whose job this is, so a later run can prove it dead and sweep it."""
    data = {"parent": os.getpid(), "worker_group": worker_pid}
    (job_dir / OWNER_FILE).write_text(json.dumps(data), encoding="utf-8")


def sweep_stale_jobs(root: Path | None = None) -> list[Path]:
    """Remove job directories (and the shared memory they list) of runs proven dead: the
    parent pid is gone and no process of the worker's group is alive. Returns what went."""
    swept = []
    for job_dir in Path(root or tempfile.gettempdir()).glob(f"{JOB_PREFIX}*"):
        try:
            owner = json.loads((job_dir / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not started yet, or not ours: leave it
        if process_alive(int(owner["parent"])) or group_members(int(owner["worker_group"])):
            continue
        unlink_shared_memory(job_dir / "shm.txt")
        shutil.rmtree(job_dir, ignore_errors=True)
        swept.append(job_dir)
    return swept


def worker_env(job_dir: Path) -> dict[str, str]:
    """The worker's environment: ``PYTHONPATH`` is only :func:`worker_path` (this package,
    nothing of the tool environment: its packages are built for another Python), no
    ``PYTHONHOME``; one BLAS/OpenMP thread per Lava process; the parent's pid for the
    watchdog."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(worker_path(job_dir))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    env[OWNER_ENV] = str(os.getpid())  # inherited by Lava's children: whose worker this is
    return env


def worker_path(job_dir: Path) -> Path:
    """``JOB_DIR/pythonpath`` holding one symlink, ``neuroprune`` -> this package's folder: the
    worker imports :mod:`neuroprune.sim.lava_worker` and the modules it needs from here (they
    stay valid Python 3.10) and nothing else of the tool's environment. Removed with the job
    directory (the link, not the package)."""
    folder = job_dir / WORKER_PATH
    folder.mkdir(exist_ok=True)
    link = folder / "neuroprune"
    if not link.is_symlink():
        link.symlink_to(Path(neuroprune.__file__).resolve().parent, target_is_directory=True)
    return folder


def _wait_unreaped(pid: int, deadline: float, job_dir: Path, progress: Progress):
    """Poll until the worker exits (returns its waitid result, not reaped, so its pid - the
    group id - cannot be reused before the group is killed) or the deadline passes (None)."""
    seen = 0
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        seen = _forward_progress(job_dir, seen, progress)
        if info is not None and info.si_pid == pid:
            return info
        if time.perf_counter() > deadline:
            return None
        time.sleep(POLL_S)


def _forward_progress(job_dir: Path, seen: int, progress: Progress) -> int:
    path = job_dir / "progress.jsonl"
    if progress is None or not path.exists():
        return seen
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines[seen:]:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            emit(progress, event.pop("event", "worker"), backend="lava", **event)
    return len(lines)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the worker's group and wait (up to 5 s) until none is alive."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.perf_counter() + GROUP_EXIT_WAIT_S
    while group_members(pgid) and time.perf_counter() < deadline:
        time.sleep(0.005)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of group ``pgid``, read from /proc (Linux)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


def unlink_shared_memory(names_file: Path) -> None:
    """Remove shared-memory blocks the worker's group created and did not release."""
    if not names_file.exists():
        return
    for name in names_file.read_text(encoding="utf-8").split():
        with contextlib.suppress(FileNotFoundError, PermissionError):
            (SHM_DIR / name.lstrip("/")).unlink()


def _raise_on_failure(job_dir: Path, status, where: str = WHERE) -> None:
    code = status.si_status if status.si_code == os.CLD_EXITED else -status.si_status
    error_file = job_dir / "error.json"
    if error_file.exists():
        error = json.loads(error_file.read_text())
        if error.get("kind") == "unavailable":
            raise BackendUnavailableError(
                f"Lava worker failed: {error.get('message')}",
                where=where,
                fix="Rebuild the backend environment (`neuroprune backends install lava "
                "--force`) or use --backend reference.",
            )
        raise SimulationError(
            f"Lava worker failed: {error.get('message')}",
            where=where,
            fix="Check the model with --backend reference; see docs/lava.md §5.",
        )
    if code != 0 or not (job_dir / "result.npz").exists():
        raise SimulationError(
            f"Lava worker died ({_describe_exit(code)}) without a result: {_last_line(job_dir)}",
            where=where,
            fix="Check the model with --backend reference; see docs/lava.md §5.",
        )


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _last_line(job_dir: Path) -> str:
    log = job_dir / "worker.log"
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1][:300] if lines else "no output"
