"""The ``xylosim`` backend's worker: Rockpool's Xylo mapper and XyloSim on neuroprune's integers,
in the ``lava`` backend environment (Python 3.10: xylosim 0.1.3 ships only a cp310 wheel).

Run as ``python -m neuroprune.sim.xylo_worker JOB_DIR`` (:mod:`neuroprune.sim.xylo_backend`
starts it). ``JOB_DIR/job.npz`` holds, per layer ``k``, the integer weights ``w{k}`` (``[in,
out]``, int8), thresholds ``thr{k}``, decays ``dash_mem{k}``/``dash_syn{k}``, weight shift
``shift{k}``, and the input events ``frames`` (``uint8 [T, N, inputs]``). The worker

1. builds the Rockpool network a Rockpool user would (``Sequential(Linear, LIF, ...)`` with
   ``weight = w``, ``threshold = thr``, ``tau = dt 2**dash``), maps it with
   ``rockpool.devices.xylo.syns61201.mapper`` (its design-rule check included) to int8/int16
   specifications, sets the weight shifts, and builds ``XyloSim.from_specification`` from them
   (the configuration object of ``config_from_specification`` is a samna class, which needs
   the SynSense driver: ``from_specification`` takes the same arrays);
2. runs every sample from a reset state for ``T + depth`` steps (hidden-to-hidden and
   hidden-to-readout weights deliver one step later: layer ``k``'s spikes are counted over
   steps ``[k, k + T)``, the window in which it sees the sample's ``T`` input steps);
3. writes ``result.npz`` (``counts{k}``: ``int32 [N, neurons]``) or ``error.json``.

**samna stand-in.** ``import rockpool.devices.xylo`` imports the ``samna`` driver package in
modules this worker never calls (device I/O of other Xylo generations). The PyPI ``samna`` is a
stub that runs ``pip install`` at import, so it is never installed; :func:`stand_in_for_samna`
answers that import with empty modules whose names raise when used. It replaces no behaviour
of the mapper or of XyloSim (neither touches samna), and Rockpool's own check
(``backend_available("samna")``) still reports samna missing.

Imports numpy and Rockpool only (never torch).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np

DT = 1e-3  # seconds per step (Rockpool's default dt; only dash = log2(tau / dt) matters)


class _MissingType(type):
    """Class of the stand-in's names: any attribute is another missing name."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _MissingType(name, (_Missing,), {})


class _Missing(metaclass=_MissingType):
    def __init__(self, *_args, **_kwargs) -> None:
        raise RuntimeError("samna stand-in: the SynSense samna driver is not installed")


class _SamnaStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import samna`` and ``import samna.*`` with empty packages (no ``__version__``,
    so Rockpool's ``check_samna_available`` stays False)."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "samna" or fullname.startswith("samna."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def __getattr__(name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return _MissingType(name, (_Missing,), {})

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        return module

    def exec_module(self, module) -> None:
        return None


def stand_in_for_samna() -> None:
    """Install the samna stand-in (module docstring) unless samna is already imported."""
    if "samna" not in sys.modules and not any(
        isinstance(finder, _SamnaStandIn) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _SamnaStandIn())


def rockpool_network(layers: list[dict]):
    """``Sequential(Linear, LIF, ...)`` with the layers' integer weights and thresholds."""
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIF, Linear

    modules = []
    for layer in layers:
        w = np.asarray(layer["w"], dtype=float)
        n = w.shape[1]
        modules.append(Linear(w.shape, weight=w, has_bias=False))
        modules.append(
            LIF(
                n,
                tau_mem=DT * 2.0 ** np.asarray(layer["dash_mem"], dtype=float) * np.ones(n),
                tau_syn=DT * 2.0 ** np.asarray(layer["dash_syn"], dtype=float) * np.ones(n),
                threshold=np.asarray(layer["thr"], dtype=float) * np.ones(n),
                bias=np.zeros(n),
                dt=DT,
            )
        )
    return Sequential(*modules)


def map_network(layers: list[dict]) -> dict:
    """Rockpool's mapper (DRC warnings raised as errors) -> the XyloSim specification, with
    the weight shifts set: input matrix = layer 0's, readout = the last layer's, recurrent =
    the hidden layers' after the first (one shift per matrix: they must agree)."""
    from rockpool.devices.xylo.syns61201 import DRCWarning, mapper

    with warnings.catch_warnings():
        warnings.simplefilter("error", DRCWarning)
        spec = mapper(
            rockpool_network(layers).as_graph(),
            weight_dtype="int8",
            threshold_dtype="int16",
            dash_dtype="uint8",
        )
    recurrent = {int(layer["shift"]) for layer in layers[1:-1]}
    if len(recurrent) > 1:
        raise ValueError(
            f"hidden layers after the first share Xylo's recurrent weight shift; got {recurrent}"
        )
    spec["weight_shift_in"] = int(layers[0]["shift"])
    spec["weight_shift_rec"] = recurrent.pop() if recurrent else 0
    spec["weight_shift_out"] = int(layers[-1]["shift"])
    return spec


def xylosim_module(spec: dict):
    """``XyloSim.from_specification`` of a mapped specification."""
    from rockpool.devices.xylo.syns61201 import XyloSim

    keys = [
        "weights_in",
        "weights_out",
        "weights_rec",
        "dash_mem",
        "dash_mem_out",
        "dash_syn",
        "dash_syn_2",
        "dash_syn_out",
        "threshold",
        "threshold_out",
        "bias",
        "bias_out",
        "weight_shift_in",
        "weight_shift_rec",
        "weight_shift_out",
    ]
    return XyloSim.from_specification(**{key: spec[key] for key in keys}, dt=DT)


def hidden_ranges(spec: dict, layers: list[dict]) -> list[np.ndarray]:
    """The hidden-population rows of each hidden layer (Rockpool's allocation, read from the
    mapped graph's ``hw_ids`` in the order the layers were built)."""
    from rockpool.devices.xylo.syns61201.xylo_graph_modules import Xylo2HiddenNeurons
    from rockpool.graph import find_modules_of_subclass

    hidden = list(find_modules_of_subclass(spec["mapped_graph"], Xylo2HiddenNeurons))
    by_size: list = sorted(hidden, key=lambda m: min(m.hw_ids))
    if len(by_size) != len(layers) - 1:
        raise ValueError(f"mapper made {len(by_size)} hidden populations, not {len(layers) - 1}")
    return [np.asarray(module.hw_ids, dtype=np.int64) for module in by_size]


def simulate(layers: list[dict], frames: np.ndarray) -> list[np.ndarray]:
    """Per-layer spike counts ``int32 [N, neurons]`` (module docstring, step 2)."""
    spec = map_network(layers)
    module = xylosim_module(spec)
    rows = hidden_ranges(spec, layers)
    steps, samples = frames.shape[0], frames.shape[1]
    depth = len(layers) - 1
    padded = np.zeros((steps + depth, frames.shape[2]), dtype=np.int64)
    counts = [np.zeros((samples, np.shape(layer["w"])[1]), np.int32) for layer in layers]
    for n in range(samples):
        padded[:steps] = frames[:, n, :]
        module.reset_state()
        out, _, record = module.evolve(padded, record=True)
        hidden = np.asarray(record["Spikes"])
        for k, ids in enumerate(rows):
            counts[k][n] = hidden[k : k + steps][:, ids].sum(axis=0)
        counts[-1][n] = np.asarray(out)[depth : depth + steps].sum(axis=0)
    return counts


def main(job_dir: str) -> int:
    folder = Path(job_dir)
    try:
        stand_in_for_samna()
        with np.load(folder / "job.npz") as data:
            depth = int(data["layers"])
            layers = [
                {key: data[f"{key}{k}"] for key in ("w", "thr", "dash_mem", "dash_syn", "shift")}
                for k in range(depth)
            ]
            frames = data["frames"]
        counts = simulate(layers, frames)
    except ImportError as exc:
        _error(folder, "unavailable", f"{type(exc).__name__}: {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        lines = str(exc).strip().splitlines() or [""]
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        _error(folder, "failed", f"{type(exc).__name__}: {lines[0]}{cause}")
        return 1
    np.savez(folder / "result.npz", **{f"counts{k}": c for k, c in enumerate(counts)})
    return 0


def _error(folder: Path, kind: str, message: str) -> None:
    (folder / "error.json").write_text(json.dumps({"kind": kind, "message": message}))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
