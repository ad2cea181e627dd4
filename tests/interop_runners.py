"""Run a .nir file in the importers users have: snnTorch, Norse, Sinabs, SpikingJelly 2 (test and
benchmark aid).

Each runner reads the file with ``nir.read`` (nothing of neuroprune's), builds the tool's own
module with its public importer and drives it over the ``T`` steps of ``x [T, N, *shape]``
(reshaped, C-order, to the file's Input shape). It returns the output layer's spike counts
``[N, classes]`` (:func:`output_counts`), or for snnTorch and Norse the output spikes of every
step (:func:`output_spikes`).

* snnTorch ``snntorch.import_nir.import_from_nir(graph)``: ``out, state = net(x_t, state)``.
* Norse ``norse.torch.from_nir(graph, dt=...)``: same calling convention.
* Sinabs ``sinabs.from_nir(graph, batch_size=N)``: input ``[N*T, ...]`` (batch-major). Sinabs
  3.1.3 pins nir <= 1.0.4 and lives in the ``sinabs`` test environment (``neuroprune.envs``,
  ``make test-envs``): :func:`sinabs_run` writes the inputs to a folder and runs this file as a
  script with that environment's interpreter::

      <sinabs python> tests/interop_runners.py sinabs FILE.nir inputs.npy out.npy \
          --expect-nir 1.0.4 [--threads K]

  The child reads the file (written by the tool on nir 1.0.8) with its own nir, runs it,
  saves the output counts to ``out.npy`` and prints one JSON line of facts: the nir version
  and file it read with, the version recorded in the file, the node types and graph-metadata
  keys it read, Sinabs' version, and whether ``samna`` (the PyPI stub that may run pip when
  imported) was imported. It exits 2 when its nir is not ``--expect-nir`` or samna was
  imported, and 1 (with the exception's type in the JSON) when Sinabs cannot run the file.
* SpikingJelly 2 ``spikingjelly.activation_based.nir_exchange.import_from_nir(graph, dt=...,
  step_mode=...)``: a ``torch.fx.GraphModule`` whose forward is ``out, state = net(x, state)``;
  in multi-step mode ``"m"`` (default) ``x`` is the whole ``[T, N, ...]`` sequence, in single-step
  mode ``"s"`` one step ``[N, ...]`` with the state passed back. ``dt`` is the file's
  ``graph.metadata["dt"]`` unless given (its default, 1e-4 s, makes an IF node an error: it
  requires ``r == 1/dt``, and silently changes a LIF's ``tau / dt``). Its neurons fire on
  ``v >= v_threshold`` (NIR and neuroprune: ``v > v_threshold``); :func:`strict_thresholds`
  rewrites a graph so that ``>=`` fires exactly where ``>`` does on float32 potentials.

snnTorch and Norse build ``torch.nn.Flatten(start_dim=0)`` from NIR's Flatten, which merges the
batch into the features, so graphs with a Flatten node run one sample at a time there.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMPORTERS = ("snntorch", "norse", "sinabs", "spikingjelly")
SINABS_ENV = "sinabs"  # the neuroprune.envs test environment Sinabs runs in
CHILD_TIMEOUT_S = 600.0


def output_counts(
    tool: str, path, x: np.ndarray, *, dt: float | None = None, step_mode: str = "m"
) -> np.ndarray:
    """Output spike counts ``[N, classes]`` of the file at ``path`` (or an in-memory
    ``nir.NIRGraph``) run in ``tool``; ``step_mode`` is SpikingJelly's (``"m"``/``"s"``)."""
    if tool == "sinabs":
        return sinabs_run(path, x).counts
    graph = _graph(path)
    x = _as_input(graph, x)
    spikes = output_spikes(tool, graph, x, dt=dt, step_mode=step_mode)
    return np.rint(spikes.sum(0)).astype(np.int64)


def output_spikes(
    tool: str, path, x: np.ndarray, *, dt: float | None = None, step_mode: str = "m"
) -> np.ndarray:
    """Output spikes per step ``[T, N, classes]`` (float64) of the file run in snnTorch or
    Norse (both are driven one step at a time) or SpikingJelly 2 (``step_mode``)."""
    graph = _graph(path)
    x = _as_input(graph, x)
    if tool == "spikingjelly":
        with _quiet():
            return _run_spikingjelly(graph, x, dt, step_mode)
    per_sample = any(type(n).__name__ == "Flatten" for n in graph.nodes.values())
    build = _snntorch_net if tool == "snntorch" else _norse_net(dt)
    with _quiet():
        if not per_sample:
            return _run_stepwise(build(graph), x)
        return np.concatenate(
            [_run_stepwise(build(graph), x[:, i : i + 1]) for i in range(x.shape[1])], axis=1
        )


class ImporterError(RuntimeError):
    """A tool in a test environment could not run a file; ``kind`` is the exception type the
    tool raised there (e.g. ``"ValueError"``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class SinabsRun:
    """What :func:`sinabs_run` brings back from the sinabs environment.

    Attributes:
        counts: output spike counts ``[N, classes]`` (int64).
        facts: the child's JSON line (module docstring): ``python``, ``prefix``, ``nir``,
            ``nir_file``, ``file_nir_version``, ``nodes`` ({name: type}), ``metadata_keys``,
            ``sinabs``, ``samna_imported``.
    """

    counts: np.ndarray
    facts: dict = field(default_factory=dict)


def pinned_version(environment: str, distribution: str) -> str:
    """The ``distribution==VERSION`` pin of a ``neuroprune.envs`` environment's requirements."""
    from neuroprune.envs import environment_spec

    for requirement in environment_spec(environment).requirements:
        name, _, version = requirement.partition("==")
        if name.strip().lower() == distribution and version:
            return version.strip()
    raise LookupError(f"environment {environment!r} does not pin {distribution}")


def sinabs_run(path, x: np.ndarray) -> SinabsRun:
    """Run the file at ``path`` (or an in-memory ``nir.NIRGraph``, written here with the tool's
    nir) in Sinabs, in a child process of the sinabs test environment; its output counts and
    facts. Raises ``BackendUnavailableError`` (one line naming ``make test-envs``) when the
    environment is not ready, :class:`ImporterError` when Sinabs cannot run the file, and
    ``RuntimeError`` when the child's checks fail (wrong nir, samna imported)."""
    from neuroprune.envs import require

    python = require(SINABS_ENV, what="Sinabs 3.1.3 (the Sinabs interoperability tests)")
    with tempfile.TemporaryDirectory(prefix="np-sinabs-") as tmp:
        folder = Path(tmp)
        if not isinstance(path, str | os.PathLike):
            import nir

            nir.write(folder / "graph.nir", path)
            path = folder / "graph.nir"
        np.save(folder / "inputs.npy", np.ascontiguousarray(x, dtype=np.float32))
        command = [
            str(python),
            str(Path(__file__).resolve()),
            "sinabs",
            str(path),
            str(folder / "inputs.npy"),
            str(folder / "out.npy"),
            "--expect-nir",
            pinned_version(SINABS_ENV, "nir"),
            "--threads",
            str(_threads()),
        ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            timeout=CHILD_TIMEOUT_S,
        )
        report = _last_json(done.stdout)
        if done.returncode == 1 and "error" in report:
            raise ImporterError(report["error"], report.get("message", ""))
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(
                f"the Sinabs run in {python} exited {done.returncode}: {' | '.join(tail)}"
            )
        return SinabsRun(np.load(folder / "out.npy"), report)


def _threads() -> int:
    """The parent's torch thread count (1 when torch is not loaded)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 1


def _child_env() -> dict[str, str]:
    """This environment without ``PYTHONPATH``/``PYTHONHOME``: the child sees its own
    site-packages, then the tool environment's (the layered environment's ``.pth``)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _last_json(text: str) -> dict:
    """The last line of ``text`` that is a JSON object (``{}`` if none)."""
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return {}


def strict_thresholds(graph):
    """A copy of ``graph`` whose LIF/IF thresholds are the next float32 above each ``v_th``.

    For float32 potentials ``v`` and a float32 ``v_th`` (neuroprune writes float32 values),
    ``v >= nextafter32(v_th, +inf)`` holds exactly when ``v > v_th``: run in a tool that fires
    on ``>=`` (SpikingJelly 2), the copy fires where NIR's ``v > v_th`` does, ties included.
    """
    import copy

    graph = copy.deepcopy(graph)
    for node in graph.nodes.values():
        if type(node).__name__ in ("LIF", "IF"):
            threshold = np.asarray(node.v_threshold, dtype=np.float32)
            node.v_threshold = np.nextafter(threshold, np.float32(np.inf)).astype(np.float64)
    return graph


def _graph(path):
    """``path`` read with ``nir.read``, or ``path`` itself when it already is a graph."""
    import nir

    return path if isinstance(path, nir.NIRGraph) else nir.read(str(path))


def _as_input(graph, x: np.ndarray) -> np.ndarray:
    """``x [T, N, ...]`` reshaped (C order) to the file's Input shape."""
    shape = tuple(int(s) for s in np.asarray(graph.nodes["input"].input_type["input"]).ravel())
    return np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], x.shape[1], *shape)


@contextlib.contextmanager
def _quiet():
    """The importers print and log warnings for every node; keep test output readable."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _snntorch_net(graph):
    from snntorch.import_nir import import_from_nir

    return import_from_nir(graph)


def _norse_net(dt: float | None):
    def build(graph):
        import norse.torch

        step = float(dt if dt is not None else graph.metadata.get("dt", 1e-3))
        return norse.torch.from_nir(graph, dt=step)

    return build


def _run_stepwise(net, x: np.ndarray) -> np.ndarray:
    """Per-step outputs ``[T, N, classes]`` (float64), the state carried between steps."""
    import torch

    state, steps = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = net(torch.from_numpy(x[t]), state)
            steps.append(out.reshape(x.shape[1], -1).double().numpy())
    return np.stack(steps)


def _run_sinabs(graph, x: np.ndarray) -> np.ndarray:
    import sinabs
    import torch

    steps, n = x.shape[:2]
    net = sinabs.from_nir(graph, batch_size=n)
    batch_major = np.swapaxes(x, 0, 1).reshape(n * steps, *x.shape[2:])
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(batch_major)))
    out = out[0] if isinstance(out, tuple) else out
    return np.rint(out.reshape(n, steps, -1).sum(1).double().numpy()).astype(np.int64)


def _file_nir_version(path) -> str:
    """The nir version that wrote the file (its ``version`` dataset, read with h5py)."""
    import h5py

    with h5py.File(path, "r") as handle:
        if "version" not in handle:
            return ""
        value = handle["version"][()]
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _sinabs_child(argv: list[str]) -> int:
    """The script's body in the sinabs environment (module docstring); its exit code."""
    parser = argparse.ArgumentParser(prog="interop_runners.py sinabs")
    parser.add_argument("file")
    parser.add_argument("inputs")
    parser.add_argument("out")
    parser.add_argument("--expect-nir", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import importlib.metadata as metadata

    import nir
    import torch

    torch.set_num_threads(max(1, args.threads))
    facts = {
        "python": sys.executable,
        "prefix": sys.prefix,
        "nir": metadata.version("nir"),
        "nir_attribute": getattr(nir, "__version__", ""),
        "nir_file": str(Path(nir.__file__).resolve()),
        "file_nir_version": _file_nir_version(args.file),
    }
    try:
        graph = nir.read(args.file)
        facts["nodes"] = {name: type(node).__name__ for name, node in graph.nodes.items()}
        facts["metadata_keys"] = sorted(graph.metadata)
        x = _as_input(graph, np.load(args.inputs))
        with _quiet():
            counts = _run_sinabs(graph, x)
    except Exception as exc:  # Sinabs cannot run this file: say what it raised
        facts.update(error=type(exc).__name__, message=str(exc)[:500])
        print(json.dumps(facts))
        return 1
    facts["sinabs"] = metadata.version("sinabs")
    facts["samna_imported"] = "samna" in sys.modules
    np.save(args.out, counts)
    print(json.dumps(facts))
    problems = []
    if facts["nir"] != args.expect_nir or facts["nir_attribute"] != args.expect_nir:
        problems.append(f"nir {facts['nir']} ({facts['nir_file']}), expected {args.expect_nir}")
    if facts["samna_imported"]:
        problems.append("samna was imported")
    if problems:
        print("; ".join(problems), file=sys.stderr)
        return 2
    return 0


def _run_spikingjelly(graph, x: np.ndarray, dt: float | None, step_mode: str) -> np.ndarray:
    """Output spikes ``[T, N, classes]`` (float64) of SpikingJelly 2's import of ``graph``."""
    import torch
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    step = float(dt if dt is not None else graph.metadata["dt"])
    net = import_from_nir(graph, dt=step, step_mode=step_mode)
    with torch.no_grad():
        if step_mode == "m":
            out, _ = net(torch.from_numpy(x))
            return out.reshape(x.shape[0], x.shape[1], -1).double().numpy()
    return _run_stepwise(net, x)


if __name__ == "__main__":
    if sys.argv[1:2] != ["sinabs"]:
        sys.exit("usage: interop_runners.py sinabs FILE.nir inputs.npy out.npy --expect-nir V")
    sys.exit(_sinabs_child(sys.argv[2:]))
