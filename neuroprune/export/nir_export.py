"""Export a convention model to NIR (layer L2; docs/conventions.md §4).

The graph is a chain ``input -> [<i>_flatten] -> <i>_syn -> <i>_neuron -> ... -> output`` where
``<i>`` counts the synaptic layers from 0 and ``<i>_flatten`` is a Flatten in front of layer
``<i>``. Synapses are ``Linear`` (no bias) or ``Affine`` (bias), and ``Conv2d`` (BN folded, bias
zeros when the layer has none). Weights are float32 and written bit for bit, so pruned zeros stay
exact zeros and quantized weights equal ``weight_int * weight_scale``. HDF5 hands nodes back
sorted by name, so readers must follow ``graph.edges`` (``nir_import.chain_order``), not the
order of ``graph.nodes``.

Neurons, forward Euler with step ``dt = 2**-10`` s (a power of two, so ``tau/dt`` is exact) and
NIR's continuous LIF ``tau dv/dt = (v_leak - v) + r I``, i.e. per step
``v <- v + (dt/tau) (v_leak - v + r I)`` (lava_notes.md §5):

* ``LIFNode(tau_sj, decay_input=True)`` -> ``LIF(tau = tau_sj*dt, r = 1, v_leak = 0,
  v_threshold, v_reset = 0)``;
* ``LIFNode(tau_sj, decay_input=False)`` -> the same with ``r = tau_sj``;
* ``IFNode`` -> ``IF(r = 1/dt, v_threshold, v_reset = 0)``.

NIR neuron parameters are float64 arrays of the layer's shape (exact for Python-float tau and
thresholds). Node metadata adds ``module`` (the torch child name), ``kind`` (dense/conv) on
synapses, ``model``/``tau_steps``/``decay_input`` on neurons, and the quantization fields of
:func:`quant_metadata` (plus ``threshold_int`` on the neuron) for quantized layers.

Metadata. HDF5 (``nir.write``) stores str/int/float/bool/arrays and nested dicts, but not
``None``, and lists come back as numpy arrays. So: ``chip`` is ``""`` when there is none, and
the ``neuroprune_quant`` dict (which holds ``None`` and lists of strings) is a JSON string.
:func:`neuroprune.export.nir_import.graph_metadata` / ``node_metadata`` decode both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_path
from ..data import ENCODINGS
from ..errors import ConfigError
from .stages import (
    FlattenStage,
    NeuronStage,
    Stage,
    SynapseStage,
    check_input_shape,
    check_timesteps,
    model_stages,
)

NIR_DT = 2.0**-10
"""Time step of one SpikingJelly step in NIR seconds; a power of two so tau/dt is exact."""

NIR_FORMAT_VERSION = 1
"""Version of the neuroprune NIR layout (node names and metadata keys) in ``graph.metadata``."""


def export_nir(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    timesteps: int,
    encoding: str,
    input_shape: Sequence[int],
    chip: str | None = None,
    progress: Callable[[dict], None] | None = None,
) -> Path:
    """Write ``model`` to ``path`` as a NIR graph (atomically) and return the path.

    ``input_shape`` is one sample without time and batch, e.g. ``(1, 8, 8)``; ``timesteps`` and
    ``encoding`` (``"direct"``/``"poisson"``) describe how the network is driven and are stored
    in the graph metadata with ``dt``, the threshold/reset semantics and the chip id.
    """
    graph = build_nir_graph(
        model, timesteps=timesteps, encoding=encoding, input_shape=input_shape, chip=chip
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    if progress is not None:
        progress(
            {"event": "exported", "format": "nir", "path": str(path), "nodes": len(graph.nodes)}
        )
    return path


def build_nir_graph(
    model: torch.nn.Module,
    *,
    timesteps: int,
    encoding: str,
    input_shape: Sequence[int],
    chip: str | None = None,
) -> nir.NIRGraph:
    """The in-memory NIR graph that :func:`export_nir` writes (see the module docstring)."""
    shape = check_input_shape(input_shape)
    stages = model_stages(model, shape)
    nodes, edges = chain_nodes(stages, shape)
    quantized = any(isinstance(s, SynapseStage) and s.quant is not None for s in stages)
    metadata = graph_metadata(
        timesteps=check_timesteps(timesteps),
        encoding=_check_encoding(encoding),
        input_shape=shape,
        chip=chip,
        quantized=quantized,
    )
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def graph_metadata(
    *,
    timesteps: int,
    encoding: str,
    input_shape: tuple[int, ...],
    chip: str | None,
    quantized: bool,
) -> dict[str, Any]:
    """Graph metadata of conventions §4 (``chip=None`` is stored as ``""``)."""
    return {
        "neuroprune_version": __version__,
        "neuroprune_nir_format": NIR_FORMAT_VERSION,
        "dt": NIR_DT,
        "integration": "forward_euler",
        "threshold": ">",
        "reset": "hard_zero",
        "timesteps": int(timesteps),
        "encoding": encoding,
        "input_shape": np.asarray(input_shape, dtype=np.int64),
        "chip": "" if chip is None else str(chip),
        "quantized": bool(quantized),
    }


def chain_nodes(
    stages: Sequence[Stage], input_shape: tuple[int, ...]
) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """Name the stages (``<i>_flatten``, ``<i>_syn``, ``<i>_neuron``) and chain them."""
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.asarray(input_shape))}
    index, shape = 0, input_shape
    for stage in stages:
        if isinstance(stage, FlattenStage):
            nodes[f"{index}_flatten"] = flatten_node(stage)
        elif isinstance(stage, SynapseStage):
            nodes[f"{index}_syn"] = synapse_node(stage)
        else:
            nodes[f"{index}_neuron"] = neuron_node(stage)
            index += 1
        shape = _out_shape(stage)
    nodes["output"] = nir.Output(output_type=np.asarray(shape))
    names = list(nodes)
    return nodes, list(zip(names[:-1], names[1:], strict=True))


def _out_shape(stage: Stage) -> tuple[int, ...]:
    return stage.shape if isinstance(stage, NeuronStage) else stage.out_shape


def flatten_node(stage: FlattenStage) -> nir.Flatten:
    """NIR Flatten over the whole sample (NIR shapes exclude the batch, so ``start_dim=0``)."""
    return nir.Flatten(
        input_type={"input": np.asarray(stage.in_shape)},
        start_dim=0,
        end_dim=-1,
        metadata={"module": stage.module},
    )


def synapse_node(stage: SynapseStage) -> nir.NIRNode:
    """Linear/Affine (dense) or Conv2d node; quantized integers go into the node metadata."""
    meta = {"module": stage.module, "kind": stage.kind, **quant_metadata(stage)}
    if stage.kind == "conv":
        bias = stage.bias if stage.bias is not None else np.zeros(stage.weight.shape[0], np.float32)
        return nir.Conv2d(
            input_shape=tuple(stage.in_shape[1:]),
            weight=stage.weight,
            stride=stage.stride,
            padding=stage.padding,
            dilation=1,
            groups=1,
            bias=bias,
            metadata=meta,
        )
    if stage.bias is None:
        return nir.Linear(weight=stage.weight, metadata=meta)
    return nir.Affine(weight=stage.weight, bias=stage.bias, metadata=meta)


def quant_metadata(stage: SynapseStage) -> dict[str, Any]:
    """Node metadata of a quantized layer; empty for a float layer.

    ``weight_int``/``bias_int`` (int32 arrays, same shape as weight/bias), ``weight_scale``
    (float, the value of one LSB), ``bits``, ``format`` and ``neuroprune_quant`` (the full
    conventions §3 dict as a JSON string, since it may hold nulls and lists of strings).
    """
    quant = stage.quant
    if quant is None:
        return {}
    meta: dict[str, Any] = {
        "weight_int": quant.weight_int,
        "weight_scale": quant.weight_scale,
        "bits": int(quant.bits),
        "format": str(quant.params.get("format", "")),
        "neuroprune_quant": json.dumps(quant.params, sort_keys=True, default=_json_default),
    }
    if quant.bias_int is not None:
        meta["bias_int"] = quant.bias_int
    return meta


def neuron_node(stage: NeuronStage, dt: float = NIR_DT) -> nir.NIRNode:
    """NIR LIF/IF for a SpikingJelly node (module docstring table); parameters are float64."""
    full = np.full(stage.shape, 1.0, dtype=np.float64)
    v_th = full * stage.v_threshold
    meta: dict[str, Any] = {"module": stage.module, "model": stage.model}
    if stage.threshold_int is not None:
        meta["threshold_int"] = int(stage.threshold_int)
    if stage.model == "IF":
        return nir.IF(r=full / dt, v_threshold=v_th, v_reset=full * 0.0, metadata=meta)
    meta.update({"tau_steps": float(stage.tau), "decay_input": bool(stage.decay_input)})
    r = full if stage.decay_input else full * stage.tau
    return nir.LIF(
        tau=full * (stage.tau * dt),
        r=r,
        v_leak=full * 0.0,
        v_threshold=v_th,
        v_reset=full * 0.0,
        metadata=meta,
    )


def _check_encoding(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ConfigError(
            "unknown input encoding",
            where="export",
            field="encoding",
            value=encoding,
            fix=f"Use one of: {', '.join(ENCODINGS)}.",
        )
    return encoding


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
