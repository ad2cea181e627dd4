"""Import a NIR graph into a runnable SpikingJelly Sequential (layer L2).

Handles the node types neuroprune exports (Input, Output, Linear, Affine, Conv2d, Flatten, LIF,
IF) plus CubaLIF; any other type raises :class:`UnsupportedError` naming the node id and type.
The graph must be one chain from its Input to its Output. Every edge is shape-checked
(:class:`ArtifactError` naming the edge and both shapes), and an unreadable file raises
:class:`ArtifactError` naming the file.

Inverse of the mapping in :mod:`neuroprune.export.nir_export` (forward Euler, step ``dt``):

* ``LIF``: ``tau_sj = tau/dt`` (exact for dt = 2**-10; otherwise snapped to an integer within
  1e-6 relative); ``r == 1`` -> ``decay_input=True``, ``r == tau_sj`` -> ``decay_input=False``;
  ``v_leak`` and ``v_reset`` must be 0 and every parameter uniform over the layer.
* ``IF``: needs ``r*dt == 1`` (``H = V + X``).
* ``CubaLIF``: :class:`neuroprune.export.cuba.CubaLIFNode` (per-neuron parameters allowed).
* Threshold: NIR's strict ``>`` (the default, and what neuroprune writes) keeps ``v_threshold``
  (neuroprune's neurons fire on ``>``); a legacy ``threshold: ">="`` file becomes
  ``nextafter(float32(v_th), -inf)``, since ``v > nextafter(v_th, -inf)`` is ``v >= v_th`` for
  float32 potentials.

A layer with an all-zero bias is imported without bias (adding 0 changes nothing). Quantized
layers get back ``weight_int``/``bias_int`` buffers, ``neuroprune_quant`` and
``neuroprune_weight_bits`` (conventions §3).
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
import torch
from nir.ir.utils import calc_flatten_output, calculate_conv_output
from spikingjelly.activation_based import functional, layer, surrogate

from ..errors import ArtifactError, ConfigError, UnsupportedError
from ..models import neurons
from .cuba import CubaLIFNode

SUPPORTED_NODE_TYPES = (
    "Input",
    "Output",
    "Linear",
    "Affine",
    "Conv2d",
    "Flatten",
    "LIF",
    "IF",
    "CubaLIF",
)
SYNAPSE_NODE_TYPES = (nir.Linear, nir.Affine, nir.Conv2d)
_REEXPORT = "Re-export the model with `neuroprune export RUN_DIR --format nir`."


@dataclass(frozen=True, eq=False)
class ImportedModel:
    """A NIR graph as a multi-step SpikingJelly model (eval mode, states reset).

    ``metadata`` is the decoded graph metadata (:func:`graph_metadata`); ``timesteps`` and
    ``encoding`` come from it (None for graphs written by other tools).
    """

    model: torch.nn.Sequential
    metadata: Mapping[str, Any]
    timesteps: int | None
    encoding: str | None


def import_nir(path: str | os.PathLike, *, dt: float | None = None) -> ImportedModel:
    """Read ``path`` and rebuild the network (module docstring).

    ``dt`` (seconds per step) is needed only for files without ``dt`` in their metadata.
    """
    path = Path(path)
    graph = read_nir(path)
    meta = graph_metadata(graph)
    step = time_step(meta, dt, path)
    strict = strict_threshold(meta, path)
    order = chain_order(graph, path)
    check_chain_shapes(graph, order, path)
    modules: OrderedDict[str, torch.nn.Module] = OrderedDict()
    for name in order[1:-1]:
        node = graph.nodes[name]
        module = build_module(name, node, step, strict, str(path))
        modules[_module_name(name, node, modules)] = module
    model = torch.nn.Sequential(modules)
    functional.set_step_mode(model, "m")
    functional.reset_net(model)
    timesteps = meta.get("timesteps")
    return ImportedModel(
        model.eval(), meta, None if timesteps is None else int(timesteps), meta.get("encoding")
    )


# --------------------------------------------------------------------------------------------
# Reading and checking


def read_nir(path: str | os.PathLike) -> nir.NIRGraph:
    """``nir.read`` with one-line errors: unreadable file -> :class:`ArtifactError`, node type
    outside :data:`SUPPORTED_NODE_TYPES` -> :class:`UnsupportedError` naming node and type."""
    path = Path(path)
    for name, kind in node_types(path).items():
        if kind not in SUPPORTED_NODE_TYPES:
            raise UnsupportedError(
                f"node {name!r} has type {kind}, which neuroprune cannot import",
                where=str(path),
                field=f"{name}.type",
                value=kind,
                fix=f"Use only {', '.join(SUPPORTED_NODE_TYPES)} nodes.",
            )
    try:
        return nir.read(path, type_check=False)
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def node_types(path: Path) -> dict[str, str]:
    """Node id -> NIR type name of the top-level graph, read straight from the HDF5 file."""
    if not path.is_file():
        raise ArtifactError(
            "NIR file not found", where=str(path), fix="Check the path or export the model first."
        )
    try:
        with h5py.File(path, "r") as f:
            root = f["node"]
            if _text(root["type"][()]) != "NIRGraph":
                raise ValueError(f"top-level node is {_text(root['type'][()])}, not NIRGraph")
            return {str(k): _text(v["type"][()]) for k, v in root["nodes"].items()}
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: Exception) -> ArtifactError:
    detail = " ".join(str(exc).split())[:160]
    return ArtifactError(
        f"cannot read NIR file (truncated or corrupt: {type(exc).__name__}: {detail})",
        where=str(path),
        fix=_REEXPORT,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def chain_order(graph: nir.NIRGraph, path: str | os.PathLike) -> list[str]:
    """Node ids from the Input to the Output; :class:`UnsupportedError` unless a single chain."""
    succ: dict[str, str] = {}
    pred: dict[str, str] = {}
    for a, b in graph.edges:
        if a in succ or b in pred:
            raise _not_chain(path, f"node {a if a in succ else b!r} branches or merges")
        succ[a], pred[b] = b, a
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise _not_chain(path, f"{len(inputs)} Input and {len(outputs)} Output nodes")
    order = [inputs[0]]
    while order[-1] in succ and len(order) <= len(graph.nodes):
        order.append(succ[order[-1]])
    if order[-1] != outputs[0] or len(order) != len(graph.nodes):
        raise _not_chain(path, "not every node lies on the Input -> Output path")
    return order


def _not_chain(path, detail: str) -> UnsupportedError:
    return UnsupportedError(
        f"only chain graphs (input -> ... -> output) can be imported: {detail}",
        where=str(path),
        fix="Export a feed-forward Sequential model.",
    )


def check_chain_shapes(graph: nir.NIRGraph, order: list[str], path: str | os.PathLike) -> None:
    """Raise :class:`ArtifactError` naming the first edge whose two ends disagree on shape."""
    shape = _shape(graph.nodes[order[0]].output_type["output"])
    for a, b in zip(order[:-1], order[1:], strict=True):
        expects, produces = node_io(b, graph.nodes[b], shape, str(path))
        if expects != shape:
            raise ArtifactError(
                f"shape mismatch: {a} gives {shape}, {b} expects {expects}",
                where=str(path),
                field="edge",
                value=f"{a} -> {b}",
                fix=_REEXPORT,
            )
        shape = produces


def node_io(
    name: str, node: nir.NIRNode, incoming: tuple[int, ...], where: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(shape the node expects, shape it produces)`` without batch; ``incoming`` fills gaps."""
    if isinstance(node, nir.Output):
        return (_shape(node.output_type["output"]),) * 2
    if isinstance(node, nir.Linear | nir.Affine):
        weight = _matrix(name, node.weight, where)
        return (int(weight.shape[1]),), (int(weight.shape[0]),)
    if isinstance(node, nir.Conv2d):
        return _conv_io(node, incoming)
    if isinstance(node, nir.Flatten):
        return _flatten_io(name, node, incoming, where)
    params = node.v_threshold
    return (_shape(np.shape(params)),) * 2


def _conv_io(node: nir.Conv2d, incoming: tuple[int, ...]):
    c_out, c_in = int(node.weight.shape[0]), int(node.weight.shape[1])
    spatial = node.input_shape if node.input_shape is not None else incoming[1:]
    expects = (c_in, *_shape(spatial))
    if len(expects) != 3:
        return expects, expects
    out = calculate_conv_output(
        expects[1:], node.padding, node.dilation, node.weight.shape[2:], node.stride
    )
    return expects, (c_out, *_shape(out))


def _flatten_io(name: str, node: nir.Flatten, incoming: tuple[int, ...], where: str):
    given = node.input_type.get("input") if node.input_type else None
    expects = incoming if given is None else _shape(given)
    out = _shape(calc_flatten_output(expects, int(node.start_dim), int(node.end_dim)))
    if len(out) != 1:
        raise UnsupportedError(
            f"Flatten node {name!r} must flatten the whole sample, gives {out}",
            where=where,
            field=f"{name}.start_dim",
            value=int(node.start_dim),
            fix="Use start_dim=0, end_dim=-1 (NIR shapes exclude the batch).",
        )
    return expects, out


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in np.asarray(value).ravel())


def _matrix(name: str, weight: np.ndarray, where: str) -> np.ndarray:
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise UnsupportedError(
            f"node {name!r}: only 2-D weight matrices are supported",
            where=where,
            field=f"{name}.weight",
            value=weight.shape,
        )
    return weight


# --------------------------------------------------------------------------------------------
# Metadata


def graph_metadata(graph: nir.NIRGraph) -> dict[str, Any]:
    """Decoded graph metadata: Python scalars, ``input_shape`` as a tuple, ``chip`` None when
    stored as ``""`` (HDF5 cannot store null)."""
    return decode_metadata(graph.metadata or {})


def node_metadata(node: nir.NIRNode) -> dict[str, Any]:
    """Decoded node metadata: ``neuroprune_quant`` parsed from JSON, arrays kept as numpy."""
    return decode_metadata(node.metadata or {})


def decode_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Undo the HDF5 storage rules of conventions §4 (see :func:`graph_metadata`)."""
    return {str(k): _decode_value(str(k), v) for k, v in meta.items()}


def _decode_value(key: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return decode_metadata(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        value = value.item()
    if key == "neuroprune_quant" and isinstance(value, str):
        return json.loads(value)
    if key == "chip" and value == "":
        return None
    if key == "input_shape":
        return _shape(value)
    return value


def time_step(meta: Mapping[str, Any], dt: float | None, path: Path) -> float:
    """Seconds per step: the file's ``dt``, or the caller's ``dt`` for files without one."""
    stored = meta.get("dt")
    if stored is not None and dt is not None and float(stored) != float(dt):
        raise ConfigError(
            "dt given but the file stores a different dt",
            where=str(path),
            field="dt",
            value=dt,
            fix=f"Omit dt= (the file says dt={float(stored)!r}).",
        )
    step = stored if stored is not None else dt
    if step is None or not float(step) > 0:
        raise UnsupportedError(
            "the NIR file does not say its time step",
            where=str(path),
            field="dt",
            value=step,
            fix="Pass dt= (seconds per simulation step) to import_nir.",
        )
    for key, allowed in (("integration", "forward_euler"), ("reset", "hard_zero")):
        if meta.get(key, allowed) != allowed:
            raise UnsupportedError(
                f"unsupported {key}", where=str(path), field=key, value=meta[key],
                fix=f"Only {key}={allowed!r} is supported.",
            )  # fmt: skip
    return float(step)


def strict_threshold(meta: Mapping[str, Any], path: Path) -> bool:
    """True when spikes need ``v > v_th`` (NIR default), False for SpikingJelly's ``>=``."""
    rule = meta.get("threshold", ">")
    if rule not in (">", ">="):
        raise UnsupportedError(
            "unknown threshold rule", where=str(path), field="threshold", value=rule,
            fix="Use '>=' (SpikingJelly) or '>' (NIR).",
        )  # fmt: skip
    return rule == ">"


# --------------------------------------------------------------------------------------------
# Node -> module


def build_module(
    name: str, node: nir.NIRNode, dt: float, strict: bool, where: str
) -> torch.nn.Module:
    """The SpikingJelly module for one NIR node (module docstring)."""
    if isinstance(node, nir.Flatten):
        return layer.Flatten(step_mode="m")
    if isinstance(node, nir.Linear | nir.Affine):
        return linear_module(name, node, where)
    if isinstance(node, nir.Conv2d):
        return conv_module(name, node, where)
    if isinstance(node, nir.LIF):
        return lif_module(name, node, dt, strict, where)
    if isinstance(node, nir.IF):
        return if_module(name, node, dt, strict, where)
    return cuba_module(name, node, dt, strict)


def linear_module(name: str, node: nir.Linear | nir.Affine, where: str) -> torch.nn.Module:
    """``layer.Linear`` with the file's float32 weights (bias only when nonzero)."""
    weight = _matrix(name, node.weight, where)
    bias = _nonzero_bias(node)
    module = layer.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, step_mode="m")
    _load_parameters(module, weight, bias)
    _restore_quant(module, node)
    return module


def conv_module(name: str, node: nir.Conv2d, where: str) -> torch.nn.Module:
    """``layer.Conv2d`` with the file's kernel, stride, padding, dilation and groups."""
    weight = np.asarray(node.weight)
    padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
    bias = _nonzero_bias(node)
    try:
        module = layer.Conv2d(
            int(weight.shape[1]) * int(node.groups),
            int(weight.shape[0]),
            tuple(int(k) for k in weight.shape[2:]),
            stride=_pair(node.stride),
            padding=padding,
            dilation=_pair(node.dilation),
            groups=int(node.groups),
            bias=bias is not None,
            step_mode="m",
        )
    except (ValueError, RuntimeError) as exc:
        raise UnsupportedError(
            f"Conv2d node {name!r} cannot be built in torch: {exc}",
            where=where,
            field=f"{name}.padding",
            value=node.padding,
        ) from exc
    _load_parameters(module, weight, bias)
    _restore_quant(module, node)
    return module


def _pair(value: Any) -> tuple[int, int]:
    flat = [int(v) for v in np.asarray(value).ravel()]
    return (flat[0], flat[0]) if len(flat) == 1 else (flat[0], flat[1])


def _nonzero_bias(node: nir.NIRNode) -> np.ndarray | None:
    bias = getattr(node, "bias", None)
    if bias is None or not np.any(np.asarray(bias) != 0):
        return None
    return np.asarray(bias)


def _load_parameters(module: torch.nn.Module, weight: np.ndarray, bias: np.ndarray | None):
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)))
        if bias is not None:
            module.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))


def _restore_quant(module: torch.nn.Module, node: nir.NIRNode) -> None:
    meta = node_metadata(node)
    if "weight_int" not in meta:
        return
    module.register_buffer("weight_int", torch.from_numpy(np.asarray(meta["weight_int"], np.int32)))
    if "bias_int" in meta:
        module.register_buffer("bias_int", torch.from_numpy(np.asarray(meta["bias_int"], np.int32)))
    quant = meta.get("neuroprune_quant", {})
    module.neuroprune_quant = quant
    module.neuroprune_weight_bits = int(meta.get("bits", quant.get("bits", 0)))


def lif_module(name: str, node: nir.LIF, dt: float, strict: bool, where: str) -> torch.nn.Module:
    """``neurons.LIFNode``: ``tau_sj = tau/dt``; ``r`` 1 or ``tau_sj`` picks ``decay_input``."""
    _require_zero(name, node, ("v_leak", "v_reset"), where)
    tau = _steps(_uniform(name, "tau", node.tau, where) / dt)
    r = _uniform(name, "r", node.r, where)
    if not tau > 1.0:
        raise _unsupported_param(name, "tau", tau * dt, where, "tau/dt must be > 1 step.")
    if math.isclose(r, 1.0, rel_tol=1e-6):
        decay_input = True
    elif math.isclose(r, tau, rel_tol=1e-6):
        decay_input = False
    else:
        raise _unsupported_param(name, "r", r, where, "Use r = 1 or r = tau/dt.")
    return neurons.LIFNode(
        tau=tau,
        decay_input=decay_input,
        v_threshold=_threshold(name, node, strict, where),
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(),
        step_mode="m",
    )


def if_module(name: str, node: nir.IF, dt: float, strict: bool, where: str) -> torch.nn.Module:
    """``neurons.IFNode`` (``H = V + X``); needs ``r*dt == 1``."""
    _require_zero(name, node, ("v_reset",), where)
    r = _uniform(name, "r", node.r, where)
    if not math.isclose(r * dt, 1.0, rel_tol=1e-6):
        raise _unsupported_param(name, "r", r, where, f"Use r = 1/dt = {1 / dt!r}.")
    return neurons.IFNode(
        v_threshold=_threshold(name, node, strict, where),
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(),
        step_mode="m",
    )


def cuba_module(name: str, node: nir.CubaLIF, dt: float, strict: bool) -> torch.nn.Module:
    """:class:`CubaLIFNode` with time constants in steps."""
    return CubaLIFNode(
        tau_syn=np.asarray(node.tau_syn, np.float64) / dt,
        tau_mem=np.asarray(node.tau_mem, np.float64) / dt,
        r=node.r,
        v_leak=node.v_leak,
        v_threshold=node.v_threshold,
        v_reset=node.v_reset,
        w_in=node.w_in,
        strict=strict,
    )


def _threshold(name: str, node: nir.NIRNode, strict: bool, where: str) -> float:
    v_th = _uniform(name, "v_threshold", node.v_threshold, where)
    if not strict:
        v_th = float(np.nextafter(np.float32(v_th), np.float32(-np.inf)))
    return v_th


def _uniform(name: str, field: str, values: Any, where: str) -> float:
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0 or not np.all(flat == flat[0]):
        raise _unsupported_param(
            name, field, "per-neuron values", where, "Use one value per layer."
        )
    return float(flat[0])


def _require_zero(name: str, node: nir.NIRNode, fields: tuple[str, ...], where: str) -> None:
    for field in fields:
        values = np.asarray(getattr(node, field), dtype=np.float64)
        if np.any(values != 0):
            raise _unsupported_param(name, field, float(values.ravel()[0]), where, "Use 0.")


def _unsupported_param(name: str, field: str, value: Any, where: str, fix: str):
    return UnsupportedError(
        f"node {name!r}: unsupported {field}", where=where, field=f"{name}.{field}",
        value=value, fix=fix,
    )  # fmt: skip


def _steps(value: float) -> float:
    """``tau/dt``; snapped to the nearest integer when within 1e-6 (float32 files)."""
    nearest = round(value)
    return float(nearest) if math.isclose(value, nearest, rel_tol=1e-6) else float(value)


def _module_name(name: str, node: nir.NIRNode, taken: Mapping[str, Any]) -> str:
    """The torch child name stored by the exporter (``metadata.module``), else the node id."""
    stored = node_metadata(node).get("module")
    if isinstance(stored, str) and stored and "." not in stored and stored not in taken:
        return stored
    return name


# --------------------------------------------------------------------------------------------
# Counting


def count_nir_nonzero(path: str | os.PathLike) -> int:
    """Nonzero weights over all Linear/Affine/Conv2d nodes of the file (kernel entries, not
    unrolled; biases are not synapses)."""
    graph = read_nir(path)
    return sum(
        int(np.count_nonzero(node.weight))
        for node in graph.nodes.values()
        if isinstance(node, SYNAPSE_NODE_TYPES)
    )
