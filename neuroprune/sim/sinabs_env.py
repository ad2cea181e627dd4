"""What runs inside the ``sinabs`` environment (Sinabs 3.1.3, layered on the tool's torch):
Sinabs' own layers and DYNAP-CNN mapper on neuroprune's integers, one JSON job in, one
``.npz`` and one JSON line out. ``python -m neuroprune.sim.sinabs_env JOB.json`` (the parent
sets ``PYTHONPATH`` to this package only).

``samna``: ``sinabs.backend.dynapcnn`` imports SynSense's hardware driver ``samna``; the PyPI
``samna`` is a stub that runs ``pip install`` from another index when imported, and the real
binary is not available. Before importing Sinabs, :func:`install_samna_standin` puts a
stand-in for that import only in ``sys.modules``: every attribute is a placeholder class whose
construction or call raises, so no code path that needs the driver (``make_config``, devices,
``specksim``) can run on it, and the code used here (``DynapcnnNetwork`` with ``discretize``,
``memory_summary``, ``get_valid_mapping``, the layers' forward) does not touch it. The JSON
line says whether the real module was imported (it never is) and which stand-in names were
called (none: the run fails otherwise).

Jobs (``job["kind"]``):

* ``"mapping"``: ``job["networks"]``, each a chain of conv layers (``in_shape``, ``layers``:
  ``{out, kernel, stride, padding, pool}``) -> per network Sinabs' ``memory_summary()``
  (kernel, neuron, bias per layer) and ``map_layers_to_cores`` (``get_valid_mapping`` with
  the Speck 2f constraints), or the error Sinabs raises.
* ``"simulate"``: a chain (``ops``: conv / linear / flatten / sumpool / iaf, weights in
  ``JOB.npz``; ``IAFSqueeze(spike_threshold=thr, min_v_mem=-thr)``) run as
  ``DynapcnnNetwork(nn.Sequential(...), discretize=True)`` on
  ``inputs [T, N, C, H, W]`` -> per-layer spike counts ``[N, neurons]`` and the discretize
  scale of every layer (1.0 when the integers are kept as they are).
* ``"neurons"``: one ``IAFSqueeze`` (Sinabs' defaults: MultiSpike, MembraneSubtract) with
  ``spike_threshold`` and ``min_v_mem`` on integer input currents ``[T, N, M]`` -> its spikes
  per step and ``v_mem`` after each step.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path

STANDIN_ROOTS = ("samna", "samnagui")
CALLED: list[str] = []


class _PlaceholderType(type):
    """Placeholders nest (``samna.device.DeviceInfo``): unknown attributes are placeholders."""

    def __getattr__(cls, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = _placeholder(f"{cls.__qualname__}.{attr}")
        setattr(cls, attr, value)
        return value


def _placeholder(name: str) -> type:
    """A stand-in attribute: usable in annotations, ``isinstance`` and attribute chains; its
    construction (or call) is recorded and raises."""

    def refuse(*_args, **_kwargs):
        CALLED.append(name)
        raise RuntimeError(f"samna stand-in {name} was called: this path needs the driver")

    cls = _PlaceholderType(name, (), {"__new__": refuse, "__call__": refuse})
    cls.__qualname__ = name
    return cls


class _StandinModule(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = _placeholder(f"{self.__name__}.{attr}")
        setattr(self, attr, value)
        return value


class _StandinFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``samna``, ``samna.*``, ``samnagui`` before the installed stub."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in STANDIN_ROOTS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _StandinModule(spec.name)
        module.__path__ = []  # a package: submodules import through this finder too
        module.__neuroprune_standin__ = True
        return module

    def exec_module(self, module) -> None:
        return None


def install_samna_standin() -> None:
    """Put the stand-in finder first on ``sys.meta_path`` (module docstring)."""
    if not any(isinstance(f, _StandinFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _StandinFinder())


def standin_facts() -> dict:
    """Whether a real samna got imported, and which stand-in names were called."""
    module = sys.modules.get("samna")
    real = module is not None and not getattr(module, "__neuroprune_standin__", False)
    return {"samna_real_imported": real, "samna_standin_called": list(CALLED)}


# --------------------------------------------------------------------------------------------
# Jobs


def _speck_builder():
    from sinabs.backend.dynapcnn.chip_factory import ChipFactory

    return ChipFactory("speck2fdevkit").get_config_builder()


def mapping_job(job: dict) -> dict:
    """Sinabs' memory summary and core mapping of every network of ``job["networks"]``."""
    import sinabs.layers as sl
    import torch
    from sinabs.backend.dynapcnn import DynapcnnNetwork

    builder = _speck_builder()
    out = []
    for net in job["networks"]:
        modules, channels = [], int(net["in_shape"][0])
        for layer in net["layers"]:
            modules.append(
                torch.nn.Conv2d(
                    channels,
                    int(layer["out"]),
                    int(layer["kernel"]),
                    stride=int(layer["stride"]),
                    padding=int(layer["padding"]),
                    bias=False,
                )
            )
            modules.append(sl.IAFSqueeze(batch_size=1))
            if int(layer["pool"]) > 1:
                modules.append(sl.SumPool2d(int(layer["pool"])))
            channels = int(layer["out"])
        entry: dict = {}
        try:
            dynapcnn = DynapcnnNetwork(
                torch.nn.Sequential(*modules),
                input_shape=tuple(int(v) for v in net["in_shape"]),
                batch_size=1,
                discretize=True,
            )
            summary = dynapcnn.memory_summary()
            entry["memory"] = {
                key: [int(summary[key][i]) for i in sorted(summary[key])] for key in summary
            }
            try:
                cores = builder.map_layers_to_cores(dynapcnn.dynapcnn_layers)
                entry["cores"] = [int(cores[i]) for i in sorted(cores)]
            except ValueError as exc:
                entry["cores"] = None
                entry["mapping_error"] = str(exc)[:200]
        except Exception as exc:  # Sinabs refuses the network itself: say what it raised
            entry["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        out.append(entry)
    return {"networks": out}


def neurons_job(job: dict, arrays) -> dict:
    """One ``IAFSqueeze`` with Sinabs' defaults on integer currents ``[T, N, M]``."""
    import numpy as np
    import sinabs.layers as sl
    import torch

    current = np.asarray(arrays["current"], dtype=np.float32)
    steps, samples, width = current.shape
    layer = sl.IAFSqueeze(
        batch_size=samples,
        spike_threshold=float(job["spike_threshold"]),
        min_v_mem=None if job.get("min_v_mem") is None else float(job["min_v_mem"]),
    )
    spikes, potentials = [], []
    with torch.no_grad():
        for t in range(steps):
            out = layer(torch.from_numpy(current[t]).reshape(samples, width))
            spikes.append(out.double().numpy())
            potentials.append(layer.v_mem.detach().double().numpy().reshape(samples, width))
    return {"spikes": np.stack(spikes), "v_mem": np.stack(potentials)}


def simulate_job(job: dict, arrays) -> tuple[dict, dict]:
    """The chain as ``DynapcnnNetwork(..., discretize=True)``: per-layer counts and scales."""
    import numpy as np
    import sinabs.layers as sl
    import torch
    from sinabs.backend.dynapcnn import DynapcnnNetwork
    from sinabs.backend.dynapcnn.discretize import (
        DYNAPCNN_STATE_PRECISION_BITS,
        DYNAPCNN_WEIGHT_PRECISION_BITS,
        determine_discretization_scale,
    )

    inputs = np.asarray(arrays["inputs"], dtype=np.float32)
    steps, samples = inputs.shape[:2]
    batch = samples
    modules, weights = [], []
    for k, op in enumerate(job["ops"]):
        kind = op["op"]
        if kind == "conv":
            w = torch.from_numpy(np.asarray(arrays[f"w{k}"], dtype=np.float32))
            conv = torch.nn.Conv2d(
                w.shape[1],
                w.shape[0],
                tuple(w.shape[2:]),
                stride=int(op["stride"]),
                padding=int(op["padding"]),
                bias=f"b{k}" in arrays,
            )
            modules.append(_with_params(conv, w, arrays.get(f"b{k}")))
            weights.append((w, arrays.get(f"b{k}")))
        elif kind == "linear":
            w = torch.from_numpy(np.asarray(arrays[f"w{k}"], dtype=np.float32))
            linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=f"b{k}" in arrays)
            modules.append(_with_params(linear, w, arrays.get(f"b{k}")))
            weights.append((w, arrays.get(f"b{k}")))
        elif kind == "flatten":
            modules.append(torch.nn.Flatten())
        elif kind == "sumpool":
            modules.append(sl.SumPool2d(int(op["kernel"])))
        elif kind == "iaf":
            threshold = float(op["threshold"])
            modules.append(
                sl.IAFSqueeze(batch_size=batch, spike_threshold=threshold, min_v_mem=-threshold)
            )
        else:
            raise ValueError(f"unknown op {kind!r}")
    # The scale discretize will apply to each layer (Sinabs' own function, before it runs).
    thresholds = [float(op["threshold"]) for op in job["ops"] if op["op"] == "iaf"]
    scales = []
    for (w, b), thr in zip(weights, thresholds, strict=True):
        low = -thr  # the layer's min_v_mem
        bias = torch.zeros(w.shape[0]) if b is None else torch.from_numpy(np.asarray(b))
        scales.append(
            float(
                min(
                    determine_discretization_scale(w, DYNAPCNN_WEIGHT_PRECISION_BITS),
                    determine_discretization_scale(bias, DYNAPCNN_WEIGHT_PRECISION_BITS),
                    determine_discretization_scale(
                        torch.tensor((float(low), thr)), DYNAPCNN_STATE_PRECISION_BITS
                    ),
                )
            )
        )
    net = DynapcnnNetwork(
        torch.nn.Sequential(*modules),
        input_shape=tuple(int(v) for v in inputs.shape[2:]),
        batch_size=batch,
        discretize=True,
    )
    spiking = [
        layer.spk_layer for _, layer in sorted(net.dynapcnn_layers.items())
    ]  # one IAFSqueeze per DynapcnnLayer, in layer order
    outputs: list[list] = [[] for _ in spiking]
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, k=k: outputs[k].append(out.detach()))
        for k, layer in enumerate(spiking)
    ]
    # IAFSqueeze: batch-major [N*T, ...]
    x = np.swapaxes(inputs, 0, 1).reshape(samples * steps, *inputs.shape[2:])
    with torch.no_grad():
        net(torch.from_numpy(np.ascontiguousarray(x)))
    for hook in hooks:
        hook.remove()
    counts = {}
    for k, out in enumerate(outputs):
        spikes = torch.cat(out).reshape(samples, steps, -1).double().numpy()
        counts[f"counts{k}"] = np.rint(spikes.sum(1)).astype(np.int64)
    facts = {
        "layers": len(spiking),
        "discretize_scale": scales,
        "spike_threshold": [float(s.spike_threshold) for s in spiking],
        "min_v_mem": [None if s.min_v_mem is None else float(s.min_v_mem) for s in spiking],
    }
    return facts, counts


def _with_params(module, weight, bias):
    """``module`` holding ``weight`` (and ``bias``, float32 integers)."""
    import numpy as np
    import torch

    module.weight.data = weight
    if bias is not None:
        module.bias.data = torch.from_numpy(np.asarray(bias, dtype=np.float32))
    return module


def main(argv: list[str]) -> int:
    """Run ``argv[1]`` (a job JSON; arrays in the ``.npz`` beside it); print one JSON line."""
    install_samna_standin()
    import importlib.metadata as metadata

    import numpy as np

    job_path = Path(argv[1])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    arrays_path = job_path.with_suffix(".npz")
    arrays = dict(np.load(arrays_path)) if arrays_path.exists() else {}
    facts: dict = {"sinabs": metadata.version("sinabs"), "python": sys.executable}
    try:
        if job["kind"] == "mapping":
            facts.update(mapping_job(job))
        elif job["kind"] == "neurons":
            np.savez(job_path.with_suffix(".out.npz"), **neurons_job(job, arrays))
        elif job["kind"] == "simulate":
            more, counts = simulate_job(job, arrays)
            facts.update(more)
            np.savez(job_path.with_suffix(".out.npz"), **counts)
        else:
            raise ValueError(f"unknown job kind {job['kind']!r}")
    except Exception as exc:
        facts.update(standin_facts(), error=type(exc).__name__, message=str(exc)[:500])
        print(json.dumps(facts))
        return 1
    facts.update(standin_facts())
    print(json.dumps(facts))
    return 2 if facts["samna_real_imported"] or facts["samna_standin_called"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
