"""Read a neuroprune NIR chain into a :class:`~neuroprune.sim.spec.DeploymentSpec` (torch-free).

Supported graph (conventions.md §4): ``Input -> (Affine | Linear | Conv2d) -> (LIF | IF) -> ...
-> Output`` with optional ``Flatten`` nodes between layers. Required graph metadata: ``dt``
(seconds per step). Used when present: ``threshold`` (``">="`` SpikingJelly, as the exporter
writes it; a file without the key keeps NIR's strict ``">"``), ``reset`` (must be ``"hard_zero"``), ``integration`` (must be ``"forward_euler"``),
``timesteps``, ``encoding``, ``input_shape``, ``quantized``.

Neuron mapping back to SpikingJelly units (forward Euler, step ``dt``):

* NIR ``LIF(tau, r)``: ``tau_sj = tau / dt``; ``r == 1`` -> ``decay_input=True``;
  ``r == tau_sj`` -> ``decay_input=False``; any other ``r`` is folded into the weights and bias
  (``W' = r W``) with ``decay_input=True``. ``v_leak`` and ``v_reset`` must be 0.
* NIR ``IF(r)``: ``r * dt == 1`` is SpikingJelly's IF; otherwise ``r * dt`` is folded into W, b.

Per-neuron ``tau`` / ``v_threshold`` must be uniform within a layer (Lava LIF takes one scalar).
Quantized graphs carry ``metadata.neuroprune_quant`` and ``metadata.weight_int`` on every
synaptic node; the file's weights must equal ``weight_int * weight_scale``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from neuroprune.errors import ArtifactError, UnsupportedError
from neuroprune.sim.spec import DeploymentSpec, LayerSpec, NeuronParams, QuantParams
from neuroprune.summary import conv_output_size, unrolled_conv

SYNAPSE_TYPES = ("Affine", "Linear", "Conv2d")
NEURON_TYPES = ("LIF", "IF")
SUPPORTED_TYPES = ("Input", "Output", "Flatten", *SYNAPSE_TYPES, *NEURON_TYPES)
EXPORT_FIX = "Export the model with `neuroprune export RUN_DIR --format nir`."


def read_deployment(path: str | Path) -> DeploymentSpec:
    """Read ``path`` (a ``.nir`` file written by ``nir.write``) into a deployment spec."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            "NIR file not found", where=str(path), field="path", value=str(path), fix=EXPORT_FIX
        )
    try:
        graph = nir.read(str(path))
    except Exception as exc:  # h5py/nir raise many types for a corrupt file
        raise ArtifactError(
            f"cannot read NIR graph: {type(exc).__name__}: {exc}", where=str(path), fix=EXPORT_FIX
        ) from exc
    return spec_from_graph(graph, source=str(path))


def spec_from_graph(graph: Any, *, source: str = "<memory>") -> DeploymentSpec:
    """Convert an in-memory ``nir.NIRGraph`` chain into a :class:`DeploymentSpec`."""
    meta = plain(dict(graph.metadata or {}))
    dt = _graph_dt(meta, source)
    strict = _threshold_semantics(meta, source)
    _check_reset_and_integration(meta, source)
    order = chain_order(graph, source)
    input_shape = _input_shape(graph.nodes[order[0]], meta, source)
    layers = _build_layers(graph, order, input_shape, dt, strict, meta, source)
    return DeploymentSpec(
        layers=tuple(layers),
        input_shape=input_shape,
        dt=dt,
        timesteps=_optional_int(meta.get("timesteps")),
        encoding=meta.get("encoding"),
        quantized=bool(meta.get("quantized", False)),
        source=source,
        metadata=meta,
    )


# --------------------------------------------------------------------------------------------
# Graph structure


def chain_order(graph: Any, source: str) -> list[str]:
    """Node names from the Input node to the Output node; raises if the graph is not a chain."""
    nodes = graph.nodes
    inputs = [name for name, node in nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        raise UnsupportedError(
            "the graph must have exactly one Input node",
            where=source,
            field="Input nodes",
            value=len(inputs),
            fix=EXPORT_FIX,
        )
    successors: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        successors.setdefault(src, []).append(dst)
    order, current = [inputs[0]], inputs[0]
    while type(nodes[current]).__name__ != "Output":
        nxt = successors.get(current, [])
        if len(nxt) != 1 or nxt[0] in order or nxt[0] not in nodes:
            raise UnsupportedError(
                "the graph is not a simple chain (one successor per node, ending in Output)",
                where=source,
                field=f"successors of {current}",
                value=nxt,
                fix=EXPORT_FIX,
            )
        current = nxt[0]
        order.append(current)
    return order


def _build_layers(graph, order, input_shape, dt, strict, meta, source) -> list[LayerSpec]:
    """Walk the chain, pairing every synaptic node with the neuron node after it."""
    layers: list[LayerSpec] = []
    shape, pending = input_shape, None
    for name in order[1:-1]:
        node = graph.nodes[name]
        kind = type(node).__name__
        if kind == "Flatten":
            shape = (int(np.prod(shape)),)
        elif kind in SYNAPSE_TYPES:
            if pending is not None:
                raise _chain_error(source, name, "two synaptic nodes follow each other")
            pending = _synapse(name, node, shape, meta, source)
        elif kind in NEURON_TYPES:
            if pending is None:
                raise _chain_error(source, name, "a neuron node must follow a synaptic node")
            layers.append(_layer(pending, name, node, dt, strict, source))
            shape, pending = layers[-1].out_shape, None
        else:
            raise UnsupportedError(
                f"node type {kind} is not supported by the simulator",
                where=f"{source}: node {name}",
                field="type",
                value=kind,
                fix=f"Use only {', '.join(SUPPORTED_TYPES)}.",
            )
    if pending is not None or not layers:
        raise _chain_error(source, order[-1], "the chain must end with a neuron layer")
    return layers


def _chain_error(source: str, name: str, text: str) -> UnsupportedError:
    return UnsupportedError(text, where=f"{source}: node {name}", fix=EXPORT_FIX)


# --------------------------------------------------------------------------------------------
# Metadata


def plain(value: Any) -> Any:
    """Metadata as plain Python: numpy scalars -> int/float/bool, bytes -> str, arrays -> lists
    of plain values (2-D+ numeric arrays stay numpy), ``"None"``/``"null"`` -> ``None``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return None if value in ("None", "null", "") else value
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return plain(value.item())
        if value.dtype.kind in "OSU" or value.ndim == 1:
            return [plain(v) for v in value.tolist()]
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _graph_dt(meta: Mapping[str, Any], source: str) -> float:
    dt = meta.get("dt")
    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not dt > 0:
        raise UnsupportedError(
            "graph metadata lacks a positive time step dt (NIR stores none; needed to map tau)",
            where=source,
            field="metadata.dt",
            value=dt,
            fix=EXPORT_FIX,
        )
    return float(dt)


def _threshold_semantics(meta: Mapping[str, Any], source: str) -> bool:
    """``True`` for a strict ``>`` threshold, ``False`` for SpikingJelly's ``>=``."""
    rule = meta.get("threshold", ">")
    if rule not in (">=", ">"):
        raise UnsupportedError(
            "unknown threshold semantics",
            where=source,
            field="metadata.threshold",
            value=rule,
            fix='Use ">=" (SpikingJelly) or ">" (NIR/Lava).',
        )
    return rule == ">"


def _check_reset_and_integration(meta: Mapping[str, Any], source: str) -> None:
    for key, allowed in (("reset", "hard_zero"), ("integration", "forward_euler")):
        value = meta.get(key, allowed)
        if value != allowed:
            raise UnsupportedError(
                f"only {key}={allowed!r} is supported",
                where=source,
                field=f"metadata.{key}",
                value=value,
                fix=EXPORT_FIX,
            )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _input_shape(node: Any, meta: Mapping[str, Any], source: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).ravel())
    declared = meta.get("input_shape")
    if declared is not None:
        declared = tuple(int(s) for s in np.asarray(declared).ravel())
        if int(np.prod(declared)) == int(np.prod(shape)):
            return declared
    if not shape:
        raise ArtifactError("the Input node has no shape", where=source, fix=EXPORT_FIX)
    return shape


# --------------------------------------------------------------------------------------------
# Synaptic nodes


def _synapse(name: str, node: Any, shape: tuple[int, ...], meta, source) -> dict[str, Any]:
    """Weights of one synaptic node as an unrolled CSR, plus bias and integer view."""
    where = f"{source}: node {name}"
    kind = type(node).__name__
    weight = np.asarray(node.weight, dtype=np.float64)
    bias = getattr(node, "bias", None)
    bias = None if bias is None else np.asarray(bias, dtype=np.float64).ravel()
    if kind == "Conv2d":
        geometry = _conv_geometry(node, shape, where)
        matrix, out_shape = _unroll_conv(weight, shape, geometry)
        bias = None if bias is None else np.repeat(bias, int(np.prod(out_shape[1:])))
    else:
        _check_dense_shape(weight, shape, where)
        matrix, out_shape = sp.csr_matrix(weight), (int(weight.shape[0]),)
        matrix.eliminate_zeros()
    if bias is not None and not np.any(bias):
        bias = None
    quant = _quant(node, kind, shape, meta, where) if meta.get("quantized") else None
    return {
        "name": name,
        "kind": "conv" if kind == "Conv2d" else "dense",
        "in_shape": tuple(shape),
        "out_shape": tuple(out_shape),
        "weight": matrix.astype(np.float64).tocsr(),
        "bias": bias,
        "quant": quant,
    }


def _check_dense_shape(weight: np.ndarray, shape: tuple[int, ...], where: str) -> None:
    if weight.ndim != 2 or weight.shape[1] != int(np.prod(shape)):
        raise UnsupportedError(
            f"weight shape does not match the input of size {int(np.prod(shape))}",
            where=where,
            field="weight.shape",
            value=tuple(weight.shape),
            fix=EXPORT_FIX,
        )


def _pair(value: Any) -> tuple[int, int]:
    arr = np.asarray(value).ravel()
    return (int(arr[0]), int(arr[0])) if arr.size == 1 else (int(arr[0]), int(arr[1]))


def _conv_geometry(node: Any, shape: tuple[int, ...], where: str) -> dict[str, int]:
    """Stride and padding of a Conv2d (square, dilation 1, groups 1 only)."""
    c_out, c_in, kh, kw = node.weight.shape
    if len(shape) != 3 or shape[0] != c_in:
        raise UnsupportedError(
            f"a Conv2d needs a (C={c_in}, H, W) input",
            where=where,
            field="input",
            value=shape,
            fix=EXPORT_FIX,
        )
    stride, dilation = _pair(node.stride), _pair(node.dilation)
    padding = node.padding
    if isinstance(padding, (str, bytes)):
        padding = padding.decode() if isinstance(padding, bytes) else padding
        padding = (0, 0) if padding == "valid" else ((kh - 1) // 2, (kw - 1) // 2)
    padding = _pair(padding)
    groups = int(np.asarray(node.groups).ravel()[0])
    square = stride[0] == stride[1] and padding[0] == padding[1] and kh == kw
    if not square or dilation != (1, 1) or groups != 1:
        raise UnsupportedError(
            "only square kernels with equal stride/padding, dilation 1 and groups 1 are supported",
            where=where,
            field="stride/padding/dilation/groups",
            value=(stride, padding, dilation, groups),
            fix="Use plain layer.Conv2d(k, stride=s, padding=p) in the model.",
        )
    return {"stride": stride[0], "padding": padding[0]}


def _unroll_conv(kernel: np.ndarray, shape, geometry) -> tuple[sp.csr_matrix, tuple[int, ...]]:
    """Unrolled ``(C_out*H_out*W_out) x (C_in*H*W)`` CSR (C-order) and the output shape."""
    stride, padding = geometry["stride"], geometry["padding"]
    matrix, _ = unrolled_conv(kernel, tuple(shape), stride, padding)
    h_out = conv_output_size(shape[1], kernel.shape[2], stride, padding)
    w_out = conv_output_size(shape[2], kernel.shape[3], stride, padding)
    return matrix.tocsr(), (int(kernel.shape[0]), h_out, w_out)


def _quant(node: Any, kind: str, shape, meta, where: str) -> dict[str, Any]:
    """Integer view of a quantized synaptic node (conventions.md §3, §4), without the threshold
    (which the exporter puts on the neuron node)."""
    node_meta = node_metadata(node)
    info = node_meta.get("neuroprune_quant") or {}
    scale = node_meta.get("weight_scale", info.get("weight_scale"))
    if node_meta.get("weight_int") is None or scale is None:
        raise ArtifactError(
            "quantized graph without weight_int/weight_scale metadata on a synaptic node",
            where=where,
            field="metadata",
            value=sorted(node_meta),
            fix=EXPORT_FIX,
        )
    scale = float(scale)
    w_int = np.asarray(node_meta["weight_int"], dtype=np.int64).reshape(np.shape(node.weight))
    _check_exact(np.asarray(node.weight, np.float64), w_int * scale, where, "weight")
    if kind == "Conv2d":
        matrix, _ = _unroll_conv(w_int, shape, _conv_geometry(node, shape, where))
    else:
        matrix = sp.csr_matrix(w_int)
        matrix.eliminate_zeros()
    return {
        "weight_int": matrix.astype(np.int64).tocsr(),
        "bias_int": _bias_int(node, node_meta, scale, kind, shape, where),
        "weight_scale": scale,
        "threshold_int": info.get("threshold_int"),
        "bits": int(node_meta.get("bits", info.get("bits", 8))),
        "format": str(node_meta.get("format") or info.get("format") or "int"),
        "input_shift": None if info.get("input_shift") is None else int(info["input_shift"]),
    }


def node_metadata(node: Any) -> dict[str, Any]:
    """A node's metadata as plain values; ``neuroprune_quant`` decoded from JSON if a string."""
    meta = plain(dict(getattr(node, "metadata", None) or {}))
    info = meta.get("neuroprune_quant")
    if isinstance(info, str):
        try:
            meta["neuroprune_quant"] = json.loads(info)
        except ValueError:
            meta["neuroprune_quant"] = {}
    return meta


def _bias_int(node: Any, node_meta: Mapping[str, Any], scale: float, kind, shape, where: str):
    """Per-neuron integer bias (conv: repeated over positions), or ``None`` when all zero."""
    bias = getattr(node, "bias", None)
    if bias is None or not np.any(bias):
        return None
    bias = np.asarray(bias, dtype=np.float64).ravel()
    stored = node_meta.get("bias_int")
    b_int = np.rint(bias / scale) if stored is None else np.asarray(stored, np.float64).ravel()
    _check_exact(bias, b_int * scale, where, "bias")
    if kind == "Conv2d":
        geometry = _conv_geometry(node, shape, where)
        _, out_shape = _unroll_conv(np.zeros(np.shape(node.weight)), shape, geometry)
        b_int = np.repeat(b_int, int(np.prod(out_shape[1:])))
    return b_int.astype(np.int64)


def _check_exact(actual: np.ndarray, expected: np.ndarray, where: str, what: str) -> None:
    if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=1e-6, atol=0):
        raise ArtifactError(
            f"{what} in the file differs from {what}_int * weight_scale",
            where=where,
            field=what,
            value=float(np.max(np.abs(actual - expected)))
            if actual.shape == expected.shape
            else actual.shape,
            fix="Re-run quantize and export; the quantized model must hold exact integers.",
        )


# --------------------------------------------------------------------------------------------
# Neuron nodes


def _layer(syn: dict, name: str, node: Any, dt: float, strict: bool, source: str) -> LayerSpec:
    where = f"{source}: node {name}"
    size = int(np.prod(syn["out_shape"]))
    neuron, fold = _neuron(node, dt, strict, size, where)
    weight, bias = syn["weight"], syn["bias"]
    if fold != 1.0:
        if syn["quant"] is not None:
            raise UnsupportedError(
                "a quantized layer needs r = 1 (decay_input) or r = tau (no decay_input)",
                where=where,
                field="r",
                value=fold,
                fix=EXPORT_FIX,
            )
        weight = (weight * fold).tocsr()
        bias = None if bias is None else bias * fold
    quant = None if syn["quant"] is None else _complete_quant(syn["quant"], node, where)
    if quant is not None:
        _check_threshold(neuron.v_threshold, quant, where)
    return LayerSpec(
        name=syn["name"],
        neuron_name=name,
        kind=syn["kind"],
        in_shape=syn["in_shape"],
        out_shape=syn["out_shape"],
        weight=weight,
        bias=bias,
        neuron=neuron,
        quant=quant,
    )


def _complete_quant(parts: dict[str, Any], node: Any, where: str) -> QuantParams:
    """Add the threshold in weight LSBs (neuron node metadata, else the synapse's quant dict)."""
    threshold_int = node_metadata(node).get("threshold_int", parts["threshold_int"])
    if threshold_int is None:
        raise ArtifactError(
            "quantized layer without threshold_int metadata",
            where=where,
            field="metadata.threshold_int",
            value=None,
            fix=EXPORT_FIX,
        )
    return QuantParams(**{**parts, "threshold_int": int(threshold_int)})


def _neuron(node: Any, dt: float, strict: bool, size: int, where: str):
    """``(NeuronParams, fold)``; ``fold`` multiplies W and b to reach SpikingJelly form."""
    kind = type(node).__name__
    threshold = _uniform(node.v_threshold, "v_threshold", size, where)
    _require_zero(node.v_reset, "v_reset", where)
    r = _uniform(node.r, "r", size, where)
    if kind == "IF":
        params = NeuronParams("IF", v_threshold=threshold, strict=strict)
        return params, _snap(r * dt)
    _require_zero(node.v_leak, "v_leak", where)
    tau = recover_steps(_uniform(node.tau, "tau", size, where), dt, np.asarray(node.tau).dtype)
    stated = node_metadata(node).get("tau_steps")
    if stated is not None and math.isclose(float(stated), tau, rel_tol=1e-6):
        tau = float(stated)  # the exporter's exact value (e.g. 1.7, not float32 noise)
    if math.isclose(r, 1.0, rel_tol=1e-6):
        return NeuronParams("LIF", threshold, tau=tau, decay_input=True, strict=strict), 1.0
    if math.isclose(r, tau, rel_tol=1e-6):
        return NeuronParams("LIF", threshold, tau=tau, decay_input=False, strict=strict), 1.0
    return NeuronParams("LIF", threshold, tau=tau, decay_input=True, strict=strict), float(r)


def _uniform(values: Any, field: str, size: int, where: str) -> float:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size not in (1, size) or not np.all(arr == arr[0]):
        raise UnsupportedError(
            f"per-neuron {field} is not supported (Lava LIF takes one scalar per layer)",
            where=where,
            field=field,
            value=f"{arr.size} values, {len(np.unique(arr))} distinct",
            fix="Use one value per layer.",
        )
    return float(arr[0])


def _require_zero(values: Any, field: str, where: str) -> None:
    arr = np.asarray(values, dtype=np.float64)
    if np.any(arr != 0):
        raise UnsupportedError(
            f"{field} must be 0 (hard reset to zero, no leak offset)",
            where=where,
            field=field,
            value=float(arr.ravel()[np.flatnonzero(arr.ravel())[0]]),
            fix="Use neuron nodes with v_reset=0.0 and v_leak=0.",
        )


def recover_steps(seconds: float, dt: float, dtype: np.dtype) -> float:
    """``tau / dt`` in time steps, undoing float32 storage: the shortest decimal that rounds to
    the same float32 (``1.7`` stored as float32 reads back as 1.7, not 1.70000005)."""
    steps = float(seconds) / dt
    if np.dtype(dtype) == np.float32:
        return float(str(np.float32(steps)))
    return _snap(steps)


def _snap(value: float) -> float:
    """Round away float noise: 12 significant digits (``0.9999999999999`` -> ``1.0``)."""
    return float(f"{value:.12g}")


def _check_threshold(v_threshold: float, quant: QuantParams, where: str) -> None:
    expected = quant.threshold_int * quant.weight_scale
    if not math.isclose(v_threshold, expected, rel_tol=1e-6):
        raise ArtifactError(
            "v_threshold differs from threshold_int * weight_scale",
            where=where,
            field="v_threshold",
            value=v_threshold,
            fix="Re-run quantize and export so the threshold is in weight LSBs.",
        )
