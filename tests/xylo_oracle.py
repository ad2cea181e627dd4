"""SynSense's own code as the oracle of the Xylo tests; runs in the ``lava`` backend environment
(Python 3.10: xylosim 0.1.3 ships only a cp310 wheel) as ``python xylo_oracle.py COMMAND`` with
a JSON job on stdin and a JSON answer on stdout. Imports numpy, xylosim and Rockpool, never
neuroprune (an oracle must not call the code it checks).

Commands:

* ``xylosim``: for each configuration (one hidden population, one readout: int8 weights
  ``w_in [I, H]`` and ``w_out [H, O]``, thresholds, dashes, weight shifts) and input events
  ``[T, I]``, XyloSim's recorded states: hidden ``isyn``, ``vmem``, ``spikes`` and readout
  ``isyn_out``, ``vmem_out``, ``out`` per step (``xylosim.v2.XyloLayer``, the simulator
  itself).
* ``mapper``: for each mlp shape ``[inputs, *hidden, outputs]``, Rockpool 3.1.0's verdict:
  ``"fits"`` when ``rockpool.devices.xylo.syns61201.mapper`` maps the network
  (``Sequential(Linear, LIF, ...)``) without a ``DRCError`` or ``DRCWarning``, else the
  error's first line.
* ``import-nir FILE SPEC.npz`` (in the ``rockpool`` test environment: Rockpool's NIR importer
  needs torch): ``rockpool.nn.modules.torch.nir.from_nir(FILE)``, its ``as_graph()`` mapped by
  the Xylo mapper; the specification's arrays saved to ``SPEC.npz``.
* ``run-spec SPEC.npz FRAMES.npy OUT.npy`` (lava environment): ``XyloSim.from_specification``
  of that specification on input events ``[T, N, inputs]``, each sample from a reset state for
  ``T + 1`` steps; the readout's spike counts over steps ``[1, T + 1)`` (hidden spikes reach
  the readout one step later) saved as ``[N, outputs]``. One hidden layer.

**samna stand-in** (``mapper`` only): ``import rockpool.devices.xylo`` imports the ``samna``
driver in modules the mapper never calls; the PyPI ``samna`` is a stub that runs ``pip
install`` at import, so it is not installed, and :func:`stand_in_for_samna` answers the import
with empty modules whose names raise when used. No behaviour of the mapper is replaced (it does
not use samna).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import types
import warnings

import numpy as np


def run_xylosim(configs: list[dict]) -> list[dict]:
    from xylosim.v2 import XyloLayer, XyloSynapse

    out = []
    for c in configs:
        w_in, w_out = np.asarray(c["w_in"], int), np.asarray(c["w_out"], int)
        hidden, readout = w_in.shape[1], w_out.shape[1]
        # XyloLayer keeps pointers to the synapse objects: hold them while it runs
        keep = {
            "synapses_in": [
                [XyloSynapse(int(h), 0, int(w_in[i, h])) for h in np.nonzero(w_in[i])[0]]
                for i in range(w_in.shape[0])
            ],
            "synapses_rec": [[] for _ in range(hidden)],
            "synapses_out": [
                [XyloSynapse(int(o), 0, int(w_out[h, o])) for o in np.nonzero(w_out[h])[0]]
                for h in range(hidden)
            ],
        }
        layer = XyloLayer(
            **keep,
            aliases=[[] for _ in range(hidden)],
            threshold=[int(c["thr"])] * hidden,
            threshold_out=[int(c["thr_out"])] * readout,
            has_bias=False,
            bias=[0] * hidden,
            bias_out=[0] * readout,
            weight_shift_inp=int(c["shift"]),
            weight_shift_rec=0,
            weight_shift_out=int(c["shift_out"]),
            dash_mem=[int(c["dash_mem"])] * hidden,
            dash_mem_out=[int(c["dash_mem_out"])] * readout,
            dash_syns=[[int(c["dash_syn"])] * 2] * hidden,
            dash_syns_out=[[int(c["dash_syn_out"])]] * readout,
            name="oracle",
        )
        spikes_out = np.asarray(layer.evolve(np.asarray(c["events"], int).tolist()))
        out.append(
            {
                "isyn": np.asarray(layer.rec_i_syn).T.tolist(),
                "vmem": np.asarray(layer.rec_v_mem).T.tolist(),
                "spikes": np.asarray(layer.rec_recurrent_spikes).tolist(),
                "isyn_out": np.asarray(layer.rec_i_syn_out).T.tolist(),
                "vmem_out": np.asarray(layer.rec_v_mem_out).T.tolist(),
                "out": spikes_out.tolist(),
            }
        )
        del layer, keep
    return out


class _MissingType(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _MissingType(name, (_Missing,), {})


class _Missing(metaclass=_MissingType):
    def __init__(self, *_args, **_kwargs):
        raise RuntimeError("samna stand-in: the SynSense samna driver is not installed")


class _SamnaStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "samna" or fullname.startswith("samna."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def __getattr__(name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _MissingType(name, (_Missing,), {})

        module.__getattr__ = __getattr__
        return module

    def exec_module(self, module):
        return None


def stand_in_for_samna() -> None:
    sys.meta_path.insert(0, _SamnaStandIn())


def run_mapper(shapes: list[list[int]]) -> list[str]:
    stand_in_for_samna()
    from rockpool.devices.xylo.syns61201 import DRCError, DRCWarning, mapper
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIF, Linear

    verdicts = []
    for sizes in shapes:
        modules = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            modules += [Linear((n_in, n_out)), LIF(n_out, dt=1e-3)]
        graph = Sequential(*modules).as_graph()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DRCWarning)
            try:
                mapper(graph, weight_dtype="int8", threshold_dtype="int16", dash_dtype="uint8")
                verdicts.append("fits")
            except DRCError as exc:
                cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
                verdicts.append((str(exc).strip().splitlines() or [""])[0] + cause)
    return verdicts


SPEC_KEYS = [
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


def import_nir(path: str, out: str) -> None:
    stand_in_for_samna()
    from rockpool.devices.xylo.syns61201 import DRCWarning, mapper
    from rockpool.nn.modules.torch.nir import from_nir

    network = from_nir(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DRCWarning)
        spec = mapper(
            network.as_graph(), weight_dtype="int8", threshold_dtype="int16", dash_dtype="uint8"
        )
    np.savez(out, **{key: np.asarray(spec[key]) for key in SPEC_KEYS})


def run_spec(spec_file: str, frames_file: str, out: str) -> None:
    stand_in_for_samna()
    from rockpool.devices.xylo.syns61201 import XyloSim

    with np.load(spec_file) as data:
        spec = {key: data[key] for key in SPEC_KEYS}
    for key in ("weight_shift_in", "weight_shift_rec", "weight_shift_out"):
        spec[key] = int(spec[key])
    module = XyloSim.from_specification(**spec)
    frames = np.load(frames_file)
    steps, samples = frames.shape[:2]
    padded = np.zeros((steps + 1, frames.shape[2]), dtype=np.int64)
    counts = []
    for n in range(samples):
        padded[:steps] = frames[:, n]
        module.reset_state()
        output, _, _ = module.evolve(padded)
        counts.append(np.asarray(output)[1:].sum(axis=0))
    np.save(out, np.asarray(counts, dtype=np.int64))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "import-nir":
        import_nir(sys.argv[2], sys.argv[3])
    elif command == "run-spec":
        run_spec(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        job = json.load(sys.stdin)
        answer = run_xylosim(job) if command == "xylosim" else run_mapper(job)
        json.dump(answer, sys.stdout)
