"""``export --format rockpool-nir``: a NIR graph of a Xylo run that Rockpool's NIR importer
(``rockpool.nn.modules.torch.nir.from_nir``, Rockpool 3.1.0) reads, and whose import Rockpool's
Xylo mapper maps to the integers XyloSim runs.

Rockpool 3.1.0 reads ``Linear``, ``Affine``, ``LIF`` (by the pre-1.0 field ``tau_mem``, which
NIR 1.0 files no longer have), ``CubaLIF`` and ``LI`` nodes, nothing else (no ``Flatten``).
Xylo's neuron is current based, so the file is a chain ``Input (inputs,) -> Linear -> CubaLIF
-> ... -> Output`` holding, per layer, the chip's integers under the ``xylo_lif`` arithmetic
(:mod:`neuroprune.chip.arithmetic.xylo`, the same the training neuron, the reference and the
``xylosim`` backend run):

* ``Linear.weight`` = the layer's int8 weights ``W_int`` (``[out, in]``);
* ``CubaLIF``: ``tau_syn = dt 2**dash_syn``, ``tau_mem = dt 2**dash_mem``, ``r = 2**dash_mem -
  1`` (Rockpool takes its ``dt`` as ``tau_mem / (1 + r)``, so ``dt`` comes back exactly and
  the mapper's ``dash = log2(tau / dt)`` gives the chip's decays), ``v_threshold = thr``,
  ``v_leak = 0``, ``w_in = 1``.

Rockpool's own float ``LIFTorch`` simulation of the import is not Xylo's arithmetic; its
``as_graph()`` -> ``mapper`` -> ``XyloSim`` path is what a Rockpool user deploys, and what
``benchmarks/nir_interop.py`` measures. The input is flattened (``inputs = prod(input_shape)``,
C-order, as neuroprune's own ``Flatten``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

from neuroprune.chip.arithmetic import LayerFacts, get_arithmetic
from neuroprune.chip.arithmetic.xylo import XYLO
from neuroprune.core.errors import UnsupportedError
from neuroprune.graph.read import network_from_graph
from neuroprune.graph.stages import FlattenStage, NeuronStage, NirNetwork, SynapseStage
from neuroprune.graph.write import write_graph

WHERE = "export --format rockpool-nir"
INT8 = 127


def _unsupported(text: str, field: str, value: Any) -> UnsupportedError:
    return UnsupportedError(
        text, where=WHERE, field=field, value=value, fix="Export a run fitted with --chip xylo."
    )


def xylo_layers(network: NirNetwork) -> list[tuple[SynapseStage, NeuronStage]]:
    """The (synapse, neuron) pairs of a chain of dense layers quantized for Xylo."""
    stages = [s for s in network.stages if not isinstance(s, FlattenStage)]
    pairs = list(zip(stages[::2], stages[1::2], strict=False))
    shapes_ok = len(stages) % 2 == 0 and all(
        isinstance(syn, SynapseStage) and syn.kind == "dense" and isinstance(neu, NeuronStage)
        for syn, neu in pairs
    )
    if not shapes_ok or not pairs:
        raise _unsupported("Xylo takes a chain of dense layers", "model", "not a dense chain")
    for syn, _ in pairs:
        quant = syn.quant
        if quant is None or quant.params.get("format") != "xylo":
            value = None if quant is None else quant.params.get("format")
            raise _unsupported("the file is not quantized for Xylo", "quantized format", value)
        if quant.bias_int is not None and np.any(quant.bias_int):
            raise _unsupported("Xylo runs here without biases", "bias", True)
        if np.abs(quant.weight_int).max(initial=0) > INT8:
            raise _unsupported("Xylo stores int8 weights", "weight_int", True)
    return pairs


def rockpool_graph(network: NirNetwork) -> nir.NIRGraph:
    """The Rockpool-readable graph of a network quantized for Xylo (module docstring)."""
    pairs = xylo_layers(network)
    dt = float(network.dt)
    arithmetic = get_arithmetic(XYLO)
    inputs = int(np.prod(network.input_shape))
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([inputs])})}
    edges = []
    previous = "input"
    for k, (syn, neu) in enumerate(pairs):
        assert syn.quant is not None  # xylo_layers raised otherwise
        facts = LayerFacts(
            model=neu.model,
            tau=neu.tau,
            decay_input=neu.decay_input,
            threshold_int=int(neu.threshold_int if neu.threshold_int is not None else 0),
            readout=k == len(pairs) - 1,
        )
        neuron = arithmetic.layer(facts).neuron  # type: ignore[attr-defined]
        weight = np.asarray(syn.quant.weight_int, dtype=np.float64).reshape(syn.weight.shape)
        n = weight.shape[0]
        ones = np.ones(n)
        nodes[f"linear{k}"] = nir.Linear(weight=weight.reshape(n, -1))
        nodes[f"cubalif{k}"] = nir.CubaLIF(
            tau_syn=dt * 2.0**neuron.dash_syn * ones,
            tau_mem=dt * 2.0**neuron.dash_mem * ones,
            r=(2.0**neuron.dash_mem - 1.0) * ones,
            v_leak=np.zeros(n),
            v_threshold=float(neuron.threshold) * ones,
            w_in=ones,
        )
        edges += [(previous, f"linear{k}"), (f"linear{k}", f"cubalif{k}")]
        previous = f"cubalif{k}"
    nodes["output"] = nir.Output(output_type={"output": np.array([n])})
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"chip": "xylo", "dt": dt})


def export_rockpool_nir(
    model,
    path: str | os.PathLike,
    *,
    timesteps: int,
    encoding: str,
    input_shape,
    chip: str | None = None,
    progress=None,
    dt: float | None = None,
) -> Path:
    """The exporter of ``--format rockpool-nir``: the model's NIR graph as neuroprune builds
    it, read back (its integers, :func:`~neuroprune.graph.read.network_from_graph`), then
    :func:`rockpool_graph`."""
    from neuroprune.export.nir_export import build_nir_graph  # deferred: imports torch

    graph = build_nir_graph(
        model, timesteps=timesteps, encoding=encoding, input_shape=input_shape, chip=chip, dt=dt
    )
    written = write_graph(rockpool_graph(network_from_graph(graph)), path)  # atomically
    if progress is not None:
        progress({"event": "exported", "format": "rockpool-nir", "path": str(written)})
    return written
