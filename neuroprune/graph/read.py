"""NIR graph -> :class:`~neuroprune.graph.stages.NirNetwork`: node order, wiring and shape
checks, synapse and pooling stages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroprune.core.errors import ArtifactError, ConfigError, UnsupportedError
from neuroprune.graph.files import (
    _plain,
    _shape_error,
    graph_metadata,
    predecessors,
    read_graph,
    topological_order,
    unsupported_node,
)
from neuroprune.graph.neurons import _fold_gain, _neuron_stage
from neuroprune.graph.stages import (
    DT_FIX,
    INPUT,
    NODES_KEY,
    REEXPORT,
    FlattenStage,
    NirNetwork,
    PoolStage,
    QuantStage,
    Stage,
    SynapseStage,
)
from neuroprune.graph.write import _out_shape, check_dt

# --------------------------------------------------------------------------------------------
# Reading: NIR nodes -> stages


def read_network(path: str | os.PathLike, *, dt: float | None = None) -> NirNetwork:
    """Read ``path`` into stages. ``dt`` (seconds per step) is needed for files whose metadata
    has none (files other tools wrote); it must match the file's when both exist."""
    path = Path(path)
    return network_from_graph(read_graph(path), source=str(path), dt=dt)


def network_from_graph(graph, *, source: str = "<memory>", dt: float | None = None) -> NirNetwork:
    """:func:`read_network` for an in-memory ``nir.NIRGraph``.

    Nodes are read in topological order; several edges into a Flatten, pooling or synaptic node
    sum their signals there (a residual ADD of spike maps). A neuron node reads exactly one
    synaptic node. Every node must lead to the single Output.
    """
    _check_finite(graph, list(graph.nodes), source)  # before any other reading of a value
    meta = graph_metadata(graph)
    step = time_step(meta, dt, source)
    _check_semantics(meta, source)
    order = topological_order(graph, source)
    _check_graph(graph, order, source)
    preds = predecessors(graph)
    input_shape = _input_node_shape(graph, order)
    index: dict[str, int] = {order[0]: INPUT}
    stages: list[Stage] = []
    names: list[str] = []
    inputs: list[tuple[int, ...]] = []
    for name in order[1:]:
        node = graph.nodes[name]
        if type(node).__name__ == "Output":
            continue
        sources = tuple(index[p] for p in preds[name])
        shape = _summed_shape(stages, sources, input_shape, name, source)
        stage, gain = _stage(name, node, shape, step, meta, source)
        if gain != 1.0:
            stages = _fold_gain(stages, sources, stage, gain, name, source)
        index[name] = len(stages)
        stages.append(stage)
        names.append(name)
        inputs.append(sources)
    return NirNetwork(
        stages=tuple(stages),
        names=tuple(names),
        input_shape=_declared_input_shape(meta, input_shape),
        dt=step,
        timesteps=None if meta.get("timesteps") is None else int(meta["timesteps"]),
        encoding=meta.get("encoding"),
        quantized=bool(meta.get("quantized", False)),
        source=source,
        metadata=meta,
        inputs=tuple(inputs),
    )


def stage_out_shape(stage: Stage) -> tuple[int, ...]:
    """What one stage puts out, one sample: ``(F,)`` or ``(C, H, W)``."""
    return _out_shape(stage)


def _summed_shape(stages, sources, input_shape, name: str, where: str) -> tuple[int, ...]:
    """The shape of the signals that sum into node ``name``; all of them must agree."""
    shapes = [input_shape if s == INPUT else _out_shape(stages[s]) for s in sources]
    if any(shape != shapes[0] for shape in shapes):
        raise ArtifactError(
            f"node {name!r} sums inputs of different shapes",
            where=where,
            field=f"{name}.inputs",
            value=", ".join(str(s) for s in shapes),
            fix="Only signals of one shape can sum into a node.",
        )
    return shapes[0]


def time_step(meta: Mapping[str, Any], dt: float | None, where: str) -> float:
    """Seconds per step: the file's ``dt``, else the caller's; both given must agree."""
    stored = meta.get("dt")
    if stored is not None and dt is not None and not math.isclose(float(stored), float(dt)):
        raise ConfigError(
            "--nir-dt differs from the time step the file states",
            where=where,
            field="nir_dt",
            value=dt,
            fix=f"Leave --nir-dt out (the file says dt={float(stored)!r}).",
        )
    step = stored if stored is not None else dt
    if step is None:
        raise UnsupportedError(
            "the NIR file does not state its time step",
            where=where,
            field="metadata.dt",
            fix=DT_FIX,
        )
    return check_dt(float(step))


def _check_semantics(meta: Mapping[str, Any], where: str) -> None:
    allowed = {"integration": "forward_euler", "reset": "hard_zero", "threshold": ">"}
    for key, value in allowed.items():
        legacy = key == "threshold" and meta.get(key) == ">="  # neuroprune format 1 files
        if meta.get(key, value) != value and not legacy:
            raise UnsupportedError(
                f"unsupported {key} {meta[key]!r}",
                where=where,
                field=f"metadata.{key}",
                value=meta[key],
                fix=f"Use {key}={value!r} (NIR's semantics). {REEXPORT}",
            )


def _check_graph(graph, order: list[str], where: str) -> None:
    """One Output, reading one node, reached from every node; a neuron reads one synaptic
    node, and a node with several inputs is linear (Flatten, pooling, Affine/Linear, Conv2d),
    so that the sum of its inputs is a sum of spike maps (a residual ADD)."""
    preds = predecessors(graph)
    kinds = {name: type(graph.nodes[name]).__name__ for name in order}
    outputs = [n for n in order if kinds[n] == "Output"]
    if len(outputs) != 1:
        raise UnsupportedError(
            f"the graph has {len(outputs)} Output nodes; neuroprune needs one",
            where=where,
            field="Output",
            value=", ".join(outputs) or "none",
            fix="Export a network with a single output.",
        )
    if len(preds[outputs[0]]) != 1:
        raise UnsupportedError(
            f"the Output node has {len(preds[outputs[0]])} inputs; neuroprune needs one",
            where=where,
            field=f"{outputs[0]}.inputs",
            value=", ".join(preds[outputs[0]]),
            fix="Export a network whose last neuron layer alone feeds the Output.",
        )
    summing = ("Flatten", "SumPool2d", "AvgPool2d", "Affine", "Linear", "Conv2d")
    for name in order[1:]:
        count, kind = len(preds[name]), kinds[name]
        if count == 0 or (count > 1 and kind not in summing):
            raise UnsupportedError(
                f"node {name!r} ({kind}) has {count} inputs; neuroprune sums several inputs "
                "only into Flatten, pooling and synaptic nodes (an ADD of spike maps)",
                where=where,
                field=f"{name}.inputs",
                value=", ".join(preds[name]) or "none",
                fix="Give every neuron node one synaptic node as its input.",
            )
        _check_input_kinds(name, kind, [kinds[p] for p in preds[name]], preds[name], where)
    _check_reaches_output(graph, order, outputs[0], where)


SYNAPSE_TYPES = ("Affine", "Linear", "Conv2d")
NEURON_TYPES = ("LIF", "IF", "CubaLIF")


def _check_input_kinds(name: str, kind: str, pred_kinds, preds, where: str) -> None:
    """A neuron reads a synaptic node; a synaptic, Flatten or pooling node reads spike maps
    (the Input, neurons, Flatten or pooling), never another synaptic node's current."""
    if kind in NEURON_TYPES:
        bad = [p for p, k in zip(preds, pred_kinds, strict=True) if k not in SYNAPSE_TYPES]
        why = "a neuron node must read a synaptic node (Affine, Linear, Conv2d)"
    elif kind == "Output":
        return
    else:
        bad = [p for p, k in zip(preds, pred_kinds, strict=True) if k in SYNAPSE_TYPES]
        why = "two synaptic nodes follow each other (a current cannot drive a synapse)"
    if bad:
        raise UnsupportedError(
            f"node {name!r} ({kind}): {why}",
            where=where,
            field=f"{name}.inputs",
            value=", ".join(bad),
            fix="Export (synapse, neuron) pairs; sum spike maps only (a residual ADD).",
        )


def _check_reaches_output(graph, order: list[str], output: str, where: str) -> None:
    """Every node lies on a path to the Output (so the Output's input is the last stage)."""
    preds = predecessors(graph)
    reached, todo = {output}, [output]
    while todo:
        for pred in preds[todo.pop()]:
            if pred not in reached:
                reached.add(pred)
                todo.append(pred)
    dead = [name for name in order if name not in reached]
    if dead:
        raise UnsupportedError(
            f"node {dead[0]!r} does not lead to the Output",
            where=where,
            field=f"{dead[0]}.edges",
            fix="Remove nodes whose signals no output reads.",
        )


def _input_node_shape(graph, order: list[str]) -> tuple[int, ...]:
    """The Input node's sample shape. Exporters that keep a leading batch of 1 there (Norse
    1.1 writes ``[1, 64]`` into a dense network) get it dropped when the first node is dense."""
    shape = _shape(graph.nodes[order[0]].input_type["input"])
    first = graph.nodes[order[1]] if len(order) > 1 else None
    dense = type(first).__name__ in ("Affine", "Linear")
    weight: Any = getattr(first, "weight", None)  # read only when dense
    if dense and len(shape) == 2 and shape[0] == 1 and np.shape(weight)[-1] == shape[1]:
        return (shape[1],)
    return shape


def _declared_input_shape(meta: Mapping[str, Any], flat: tuple[int, ...]) -> tuple[int, ...]:
    declared = meta.get("input_shape")
    if declared and int(np.prod(declared)) == int(np.prod(flat)):
        return tuple(declared)
    return flat


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in np.asarray(value).ravel())


def _check_finite(graph, order: list[str], where: str) -> None:
    """Every number a node holds (weights, biases, thresholds, time constants, gains, ...) is
    finite: a NaN weight trains to chance and an ``inf`` threshold never fires, so neither is
    read. ``ArtifactError`` naming the node, its field and the first such value."""
    for name in order:
        for field, value in vars(graph.nodes[name]).items():
            if isinstance(value, (Mapping, str)) or value is None:
                continue
            try:
                numbers = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                continue
            bad = ~np.isfinite(numbers)
            if bad.any():
                raise ArtifactError(
                    f"node {name!r} ({type(graph.nodes[name]).__name__}) holds "
                    f"{int(bad.sum())} non-finite value(s) in {field}",
                    where=where,
                    field=f"{name}.{field}",
                    value=float(numbers[bad].ravel()[0]),
                    fix="Export the network again from a model with finite parameters.",
                )


def _stage(name: str, node, shape, dt: float, meta, where: str) -> tuple[Stage, float]:
    """The node as a stage, and the input gain to fold into the synapse before (1 if none)."""
    kind = type(node).__name__
    node_meta = meta[NODES_KEY].get(name, {})
    if kind == "Flatten":
        return _flatten_stage(name, node, shape, node_meta, where), 1.0
    if kind in ("SumPool2d", "AvgPool2d"):
        return _pool_stage(name, node, shape, node_meta, where), 1.0
    if kind in ("Affine", "Linear"):
        return _dense_stage(name, node, shape, node_meta, where), 1.0
    if kind == "Conv2d":
        return _conv_stage(name, node, shape, node_meta, where), 1.0
    if kind in ("LIF", "IF", "CubaLIF"):
        legacy = meta.get("threshold") == ">="
        return _neuron_stage(name, node, shape, dt, node_meta, where, legacy)
    raise unsupported_node(where, name, kind)


def _flatten_stage(name, node, shape, node_meta, where) -> FlattenStage:
    start, end = int(node.start_dim), int(node.end_dim)
    end = end if end >= 0 else len(shape) + end
    if start != 0 or end != len(shape) - 1:
        raise UnsupportedError(
            f"Flatten node {name!r} must flatten the whole sample (start_dim=0, end_dim=-1)",
            where=where,
            field=f"{name}.start_dim",
            value=f"{start}..{int(node.end_dim)} over {shape}",
            fix="Use start_dim=0, end_dim=-1 (NIR shapes exclude the batch).",
        )
    return FlattenStage(str(node_meta.get("module", name)), shape)


def _pool_stage(name, node, shape, node_meta, where) -> PoolStage:
    kind = type(node).__name__
    kernel, stride = _pair(node.kernel_size), _pair(node.stride)
    padding = _pair(node.padding)
    regular = kernel[0] == kernel[1] == stride[0] == stride[1] and padding == (0, 0)
    if not regular or len(shape) != 3 or min(shape[1:]) < kernel[0]:
        raise UnsupportedError(
            f"node {name!r} ({kind}): only square pooling of a (C, H, W) map with stride = "
            "kernel and no padding is supported",
            where=where,
            field=f"{name}.kernel_size/stride/padding",
            value=f"{kernel}/{stride}/{padding} on {shape}",
            fix="Use SumPool2d/AvgPool2d(k) with stride k and padding 0.",
        )
    module = str(node_meta.get("module", name))
    return PoolStage(module, "sum" if kind == "SumPool2d" else "avg", kernel[0], shape)


def _dense_stage(name, node, shape, node_meta, where) -> SynapseStage:
    weight = np.asarray(node.weight, dtype=np.float32)
    if weight.ndim != 2 or weight.shape[1] != int(np.prod(shape)) or len(shape) != 1:
        raise _shape_error(name, type(node).__name__, weight.shape, shape, where)
    bias = _bias(node)
    quant = _quant(name, weight, bias, node_meta, where)
    module = str(node_meta.get("module", name))
    return SynapseStage(module, "dense", weight, bias, shape, (weight.shape[0],), quant=quant)


def _conv_stage(name, node, shape, node_meta, where) -> SynapseStage:
    from neuroprune.core.summary import conv_output_size  # deferred: imports scipy

    weight = np.asarray(node.weight, dtype=np.float32)
    if weight.ndim != 4 or len(shape) != 3 or shape[0] != weight.shape[1]:
        raise _shape_error(name, "Conv2d", weight.shape, shape, where)
    stride, padding = _pair(node.stride), _conv_padding(node.padding, weight.shape[2:])
    square = (
        stride[0] == stride[1] and padding[0] == padding[1] and weight.shape[2] == weight.shape[3]
    )
    if not square or _pair(node.dilation) != (1, 1) or int(np.asarray(node.groups)) != 1:
        raise UnsupportedError(
            f"node {name!r} (Conv2d): only square kernels with equal stride and padding, "
            "dilation 1 and groups 1 are supported",
            where=where,
            field=f"{name}.stride/padding/dilation/groups",
            value=f"{stride}/{padding}/{_pair(node.dilation)}/{int(np.asarray(node.groups))}",
            fix="Use a plain Conv2d(k, stride=s, padding=p).",
        )
    size = [conv_output_size(s, weight.shape[2], stride[0], padding[0]) for s in shape[1:]]
    bias = _bias(node)
    quant = _quant(name, weight, bias, node_meta, where)
    out = (int(weight.shape[0]), *size)
    module = str(node_meta.get("module", name))
    return SynapseStage(module, "conv", weight, bias, shape, out, stride[0], padding[0], quant)


def _pair(value: Any) -> tuple[int, int]:
    flat = [int(v) for v in np.asarray(value).ravel()]
    return (flat[0], flat[0]) if len(flat) == 1 else (flat[0], flat[1])


def _conv_padding(value: Any, kernel: Sequence[int]) -> tuple[int, int]:
    value = _plain(value)
    if isinstance(value, str):
        return (0, 0) if value == "valid" else ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    return _pair(value)


def _bias(node) -> np.ndarray | None:
    bias = getattr(node, "bias", None)
    if bias is None or not np.any(np.asarray(bias) != 0):
        return None
    return np.asarray(bias, dtype=np.float32).ravel()


def _quant(name, weight, bias, node_meta, where) -> QuantStage | None:
    """Integers of a quantized layer: ``weight / weight_scale``, required to be exact."""
    if "weight_scale" not in node_meta:
        return None
    scale = float(node_meta["weight_scale"])
    weight_int = _exact_integers(name, "weight", weight, scale, where)
    bias_int = None
    if bias is not None or node_meta.get("has_bias_int"):
        values = bias if bias is not None else np.zeros(weight.shape[0], np.float32)
        bias_int = _exact_integers(name, "bias", values, scale, where)
    params = dict(node_meta.get("neuroprune_quant") or {})
    bits = int(node_meta.get("bits", params.get("bits", 0)))
    return QuantStage(weight_int, bias_int, bits, {**params, "weight_scale": scale})


def _exact_integers(name, what, values, scale, where) -> np.ndarray:
    integers = np.rint(np.asarray(values, np.float64) / scale)
    if not np.array_equal(integers * scale, np.asarray(values, np.float64)):
        raise ArtifactError(
            f"node {name!r}: {what} is not an exact multiple of weight_scale",
            where=where,
            field=f"{name}.{what}",
            value=f"weight_scale={scale!r}",
            fix=REEXPORT,
        )
    return integers.astype(np.int32)
