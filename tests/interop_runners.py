"""Run a .nir file in the importers users have: snnTorch, Norse, Sinabs, SpikingJelly 2 (test and
benchmark aid).

Each runner reads the file with ``nir.read`` (nothing of neuroprune's), builds the tool's own
module with its public importer and drives it over the ``T`` steps of ``x [T, N, *shape]``
(reshaped, C-order, to the file's Input shape). It returns the output layer's spike counts
``[N, classes]`` (:func:`output_counts`), or for snnTorch and Norse the output spikes of every
step (:func:`output_spikes`).

* snnTorch ``snntorch.import_nir.import_from_nir(graph)``: ``out, state = net(x_t, state)``.
* Norse ``norse.torch.from_nir(graph, dt=...)``: same calling convention.
* Sinabs ``sinabs.from_nir(graph, batch_size=N)``: input ``[N*T, ...]`` (batch-major).
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

import contextlib
import io
import logging
import warnings

import numpy as np

IMPORTERS = ("snntorch", "norse", "sinabs", "spikingjelly")


def output_counts(
    tool: str, path, x: np.ndarray, *, dt: float | None = None, step_mode: str = "m"
) -> np.ndarray:
    """Output spike counts ``[N, classes]`` of the file at ``path`` (or an in-memory
    ``nir.NIRGraph``) run in ``tool``; ``step_mode`` is SpikingJelly's (``"m"``/``"s"``)."""
    graph = _graph(path)
    x = _as_input(graph, x)
    with _quiet():
        if tool == "sinabs":
            return _run_sinabs(graph, x)
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
