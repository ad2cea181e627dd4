"""The one owner of neuroprune's NIR files (layer L1, torch-free): naming, metadata, order, neurons.

Export writes through :func:`build_graph`/:func:`write_graph`; the SpikingJelly importer
(:mod:`neuroprune.models.nir_model`) and the simulators (:mod:`neuroprune.sim.spec`) read through
:func:`read_network`. Between the two sits one per-layer vocabulary, the frozen
:class:`FlattenStage`, :class:`SynapseStage` and :class:`NeuronStage` (SpikingJelly units).

Semantics of a written file (NIR's own; nir 1.0.8 ``nir/ir/neuron.py``):

* forward Euler with step ``dt`` seconds (graph metadata ``dt``), state starting at 0;
* ``Affine``: ``I = W x + b``; ``Conv2d``: cross-correlation with stride/padding, plus bias;
* ``LIF``: ``v <- v + (dt/tau) (v_leak - v + r I)``; ``IF``: ``v <- v + dt r I``;
* spike ``z = v > v_threshold`` (strict), then ``v <- v_reset`` (0) where ``z``;
* shapes exclude the batch; a ``Flatten`` (``start_dim=0``) flattens one sample.

Mapping of a SpikingJelly neuron (tau in steps, forward Euler, ``dt`` seconds per step):
``LIFNode(tau_sj, decay_input=True)`` -> ``LIF(tau = tau_sj dt, r = 1, v_leak = 0)``,
``decay_input=False`` -> ``r = tau_sj``; ``IFNode`` -> ``IF(r = 1/dt)``. SpikingJelly fires
on ``H >= v_th`` in float32; the file then holds ``v_threshold = nextafter32(v_th, -inf)``,
under which NIR's strict ``>`` fires on exactly the same float32 potentials. A model whose
neurons fire on ``>`` keeps ``v_th``.

Storage (works on nir 1.0.4, whose ``Linear``/``Conv2d`` have no ``metadata``, and on 1.0.8):
node metadata is never put on nodes. Graph metadata is flat (HDF5 scalars and strings); the
per-node dicts live in one JSON string ``neuroprune_nodes`` keyed by node name. Dense layers
are always ``Affine`` (zero bias when there is none): Sinabs imports only ``Affine``. A
``Flatten`` right after the input is not written: the ``Input`` node takes the flat shape
(importers apply ``Flatten`` to batched tensors, which would merge the batch), and
``input_shape`` in the metadata keeps the sample's shape.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .atomic import atomic_path
from .errors import ArtifactError, ConfigError, UnsupportedError

NIR_DT = 2.0**-10
"""Default seconds per step; a power of two so ``tau / dt`` is exact."""

FORMAT_VERSION = 2
"""Layout version (names, metadata keys) stored as ``neuroprune_nir_format``."""

NODES_KEY = "neuroprune_nodes"
SUPPORTED_TYPES = (
    "Input",
    "Output",
    "Affine",
    "Linear",
    "Conv2d",
    "Flatten",
    "SumPool2d",
    "AvgPool2d",
    "LIF",
    "IF",
)
MAPPABLE_TYPES = (*SUPPORTED_TYPES, "CubaLIF")
DT_FIX = (
    "Pass the file's time step: --nir-dt SECONDS (snnTorch 1.0 exports: 1e-4; Norse 1.1 "
    "exports: dt squared, 1e-6 for its default dt; Sinabs: 1)."
)
REEXPORT = "Export the model again with `neuroprune export RUN_DIR --format nir`."


# --------------------------------------------------------------------------------------------
# The per-layer vocabulary


@dataclass(frozen=True, eq=False)
class QuantStage:
    """Integer form of one quantized synaptic layer (conventions §3).

    ``weight_int`` int32 with ``weight = weight_int * weight_scale`` exactly; ``bias_int``
    likewise or None; ``bits`` stored width; ``params`` the ``neuroprune_quant`` dict.
    """

    weight_int: np.ndarray
    bias_int: np.ndarray | None
    bits: int
    params: Mapping[str, Any]

    @property
    def weight_scale(self) -> float:
        """Value of one weight LSB (dimensionless potential units)."""
        return float(self.params["weight_scale"])


@dataclass(frozen=True, eq=False)
class FlattenStage:
    """C-order flatten of one sample: ``in_shape`` (C, H, W) -> (C*H*W,)."""

    module: str
    in_shape: tuple[int, ...]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (int(np.prod(self.in_shape)),)


@dataclass(frozen=True, eq=False)
class PoolStage:
    """Square pooling of one spike map with stride = kernel, no padding (NIR ``SumPool2d`` /
    ``AvgPool2d``): ``y[c, i, j] = g * sum_{a,b < k} x[c, i k + a, j k + b]`` with ``g = 1``
    (``kind="sum"``) or ``g = 1/k**2`` (``kind="avg"``); ``in_shape`` (C, H, W) ->
    ``(C, H // k, W // k)`` (floor). Linear, so the synaptic layer that reads it absorbs it as
    ``W P`` (k**2 synapses per weight, :func:`neuroprune.summary.pooled_layer`).
    """

    module: str
    kind: str
    kernel: int
    in_shape: tuple[int, ...]

    @property
    def out_shape(self) -> tuple[int, ...]:
        c, h, w = self.in_shape
        return (int(c), int(h) // self.kernel, int(w) // self.kernel)

    @property
    def gain(self) -> float:
        """Factor on the window sum: 1 (sum) or ``1/k**2`` (average)."""
        return 1.0 if self.kind == "sum" else 1.0 / self.kernel**2


@dataclass(frozen=True, eq=False)
class SynapseStage:
    """A dense (``weight (out, in)``) or conv (``(C_out, C_in, kh, kw)``) layer, float32.

    ``stride``/``padding`` in pixels, equal in both directions (conv only); ``bias`` or None.
    """

    module: str
    kind: str
    weight: np.ndarray
    bias: np.ndarray | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    quant: QuantStage | None = None


@dataclass(frozen=True, eq=False)
class NeuronStage:
    """One layer of LIF/IF neurons with hard reset to 0, in SpikingJelly units.

    LIF (``tau`` in steps): ``H = V + (X - V)/tau`` (decay_input) or ``H = V (1 - 1/tau) + X``;
    IF: ``H = V + X``. Spike ``S = H > v_th`` when ``strict`` else ``H >= v_th``;
    ``V = H (1 - S)``. ``threshold_int`` is ``v_th`` in weight LSBs when quantized.
    """

    module: str
    model: str
    shape: tuple[int, ...]
    v_threshold: float
    tau: float | None = None
    decay_input: bool = True
    threshold_int: int | None = None
    strict: bool = False


Stage = FlattenStage | PoolStage | SynapseStage | NeuronStage

INPUT = -1
"""The index that stands for the network input in :attr:`NirNetwork.inputs`."""


def chain_inputs(count: int) -> tuple[tuple[int, ...], ...]:
    """The predecessors of a chain of ``count`` stages: stage ``i`` reads stage ``i - 1``."""
    return tuple((i - 1,) for i in range(count))


@dataclass(frozen=True, eq=False)
class NirNetwork:
    """A NIR file read as stages in forward order, plus what its metadata says.

    ``names`` are the NIR node names of the stages, in the same order. ``inputs[i]`` are the
    stages whose outputs sum into stage ``i`` (:data:`INPUT` = the network input), each before
    ``i``: a residual ADD of spike maps is a stage with several inputs (NIR: several edges into
    one node). The last stage feeds the Output. ``()`` means a chain (:func:`chain_inputs`).
    ``input_shape`` is one sample's shape; ``dt`` seconds per step; ``timesteps``/``encoding``
    None for files other tools wrote; ``metadata`` the decoded graph metadata.
    """

    stages: tuple[Stage, ...]
    names: tuple[str, ...]
    input_shape: tuple[int, ...]
    dt: float
    timesteps: int | None
    encoding: str | None
    quantized: bool
    source: str
    metadata: Mapping[str, Any]
    inputs: tuple[tuple[int, ...], ...] = ()

    def sources(self, index: int) -> tuple[int, ...]:
        """The stages whose outputs sum into stage ``index`` (:data:`INPUT`: the input)."""
        return self.inputs[index] if self.inputs else (index - 1,)

    @property
    def is_chain(self) -> bool:
        """True when every stage reads exactly the stage before it."""
        return all(self.sources(i) == (i - 1,) for i in range(len(self.stages)))


# --------------------------------------------------------------------------------------------
# Naming and the graph


def node_names(stages: Sequence[Stage]) -> list[str]:
    """``l<i>_0_flatten`` / ``l<i>_0_pool`` / ``l<i>_1_syn`` / ``l<i>_2_neuron``; ``<i>`` counts
    synaptic layers from 0, zero-padded (at least 2 digits) so that sorting by name is forward
    order.

    HDF5 hands nodes back sorted by name, and some importers (nirtorch 2.0's interpreter,
    which snnTorch 1.0 uses) walk them in that order with a small retry budget: names that
    sort as ``input < l00_… < l01_… < output`` make the stored order the forward order.
    """
    layers = sum(isinstance(s, SynapseStage) for s in stages)
    width = max(2, len(str(max(layers - 1, 0))))
    names, index = [], 0
    suffix = {FlattenStage: "0_flatten", PoolStage: "0_pool", SynapseStage: "1_syn"}
    for stage in stages:
        prefix = f"l{index:0{width}d}"
        if isinstance(stage, NeuronStage):
            names.append(f"{prefix}_2_neuron")
            index += 1
        else:
            names.append(f"{prefix}_{suffix[type(stage)]}")
    return names


def threshold_in_file(v_threshold: float, strict: bool) -> float:
    """NIR ``v_threshold`` under which ``v > it`` fires exactly where the model fires.

    A ``>=`` model in float32: ``H >= t`` iff ``H > nextafter32(t, -inf)`` for float32 ``H``.
    """
    if strict:
        return float(v_threshold)
    return float(np.nextafter(np.float32(v_threshold), np.float32(-np.inf)))


def build_graph(
    stages: Sequence[Stage],
    *,
    input_shape: Sequence[int],
    timesteps: int,
    encoding: str,
    chip: str | None = None,
    dt: float = NIR_DT,
    inputs: Sequence[Sequence[int]] | None = None,
):
    """The ``nir.NIRGraph`` of ``stages`` (module docstring); ``dt`` seconds per step.

    ``inputs[i]``: the stages whose outputs sum into stage ``i`` (:data:`INPUT` for the network
    input; default a chain). Each becomes one edge, so a residual ADD is several edges into
    one node, which NIR sums. The last stage feeds the Output.
    """
    import nir

    dt = check_dt(dt)
    shape = tuple(int(s) for s in input_shape)
    stages = list(stages)
    sources = [tuple(int(i) for i in s) for s in (inputs or chain_inputs(len(stages)))]
    _check_sources(stages, sources)
    names = node_names(stages)
    if _leading_flatten(stages, sources):
        stages, names = stages[1:], names[1:]
        sources = [tuple(INPUT if i == 0 else i - 1 for i in s) for s in sources[1:]]
    first = stages[0].in_shape if stages else shape
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.asarray(first)})}
    node_meta: dict[str, dict[str, Any]] = {}
    for name, stage in zip(names, stages, strict=True):
        nodes[name], node_meta[name] = _node(stage, dt)
    last = _out_shape(stages[-1]) if stages else shape
    nodes["output"] = nir.Output(output_type={"output": np.asarray(last)})
    quantized = any(isinstance(s, SynapseStage) and s.quant is not None for s in stages)
    metadata = {
        "neuroprune_version": __version__,
        "neuroprune_nir_format": FORMAT_VERSION,
        "dt": float(dt),
        "integration": "forward_euler",
        "threshold": ">",
        "reset": "hard_zero",
        "timesteps": int(timesteps),
        "encoding": str(encoding),
        "input_shape": np.asarray(shape, dtype=np.int64),
        "chip": "" if chip is None else str(chip),
        "quantized": bool(quantized),
        NODES_KEY: json.dumps(node_meta, sort_keys=True, default=_json_default),
    }
    edges = [
        ("input" if src == INPUT else names[src], name)
        for name, srcs in zip(names, sources, strict=True)
        for src in srcs
    ]
    edges.append((names[-1] if names else "input", "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _check_sources(stages: Sequence[Stage], sources: Sequence[tuple[int, ...]]) -> None:
    """Internal invariant: one non-empty source list per stage, each source before it."""
    ok = len(sources) == len(stages) and all(
        srcs and all(INPUT <= s < i for s in srcs) for i, srcs in enumerate(sources)
    )
    if not ok:
        raise ConfigError(
            "stage inputs must name earlier stages (-1: the network input), one list per stage",
            where="nir export",
            field="inputs",
            value=str(list(sources))[:200],
        )


def _leading_flatten(stages: Sequence[Stage], sources: Sequence[tuple[int, ...]]) -> bool:
    """A Flatten of the input that nothing else reads is dropped (module docstring)."""
    if not stages or not isinstance(stages[0], FlattenStage) or sources[0] != (INPUT,):
        return False
    return all(INPUT not in srcs for srcs in sources[1:])


def _out_shape(stage: Stage) -> tuple[int, ...]:
    return stage.shape if isinstance(stage, NeuronStage) else stage.out_shape


def _node(stage: Stage, dt: float):
    if isinstance(stage, FlattenStage):
        return flatten_node(stage), {"module": stage.module}
    if isinstance(stage, PoolStage):
        return pool_node(stage), {"module": stage.module, "in_shape": list(stage.in_shape)}
    if isinstance(stage, SynapseStage):
        return synapse_node(stage), synapse_metadata(stage)
    return neuron_node(stage, dt), neuron_metadata(stage)


def pool_node(stage: PoolStage):
    """NIR ``SumPool2d`` or ``AvgPool2d``: kernel = stride = ``k``, padding 0."""
    import nir

    kind = nir.SumPool2d if stage.kind == "sum" else nir.AvgPool2d
    k = np.array([stage.kernel, stage.kernel])
    return kind(kernel_size=k, stride=k.copy(), padding=np.zeros(2, dtype=np.int64))


def flatten_node(stage: FlattenStage):
    """NIR Flatten over the whole sample (NIR shapes exclude the batch: ``start_dim=0``)."""
    import nir

    shape = np.asarray(stage.in_shape)
    return nir.Flatten(input_type={"input": shape}, start_dim=0, end_dim=-1)


def synapse_node(stage: SynapseStage):
    """``Affine`` (zero bias when none) or ``Conv2d`` with the float32 weights bit for bit."""
    import nir

    out = stage.weight.shape[0]
    bias = stage.bias if stage.bias is not None else np.zeros(out, np.float32)
    if stage.kind != "conv":
        return nir.Affine(weight=stage.weight, bias=bias)
    return nir.Conv2d(
        input_shape=tuple(int(s) for s in stage.in_shape[1:]),
        weight=stage.weight,
        stride=(stage.stride, stage.stride),
        padding=(stage.padding, stage.padding),
        dilation=(1, 1),
        groups=1,
        bias=bias,
    )


def neuron_node(stage: NeuronStage, dt: float = NIR_DT):
    """NIR ``LIF``/``IF`` of a SpikingJelly neuron (module docstring); float64 parameters.

    ``v_reset`` is not written: nir 1.0.8 defaults it to 0, and nir 1.0.4 (Sinabs' pin) cannot
    read a file that has it. Graph metadata ``reset: "hard_zero"`` states the reset."""
    import nir

    full = np.ones(stage.shape, dtype=np.float64)
    v_th = full * threshold_in_file(stage.v_threshold, stage.strict)
    if stage.model == "IF":
        return nir.IF(r=full / dt, v_threshold=v_th)
    r = full if stage.decay_input else full * stage.tau
    return nir.LIF(tau=full * (stage.tau * dt), r=r, v_leak=full * 0.0, v_threshold=v_th)


def synapse_metadata(stage: SynapseStage) -> dict[str, Any]:
    """``module``, ``kind`` and, when quantized, ``weight_scale``, ``bits``, ``format`` and
    ``neuroprune_quant`` (the integers are ``weight / weight_scale``, checked on reading)."""
    meta: dict[str, Any] = {"module": stage.module, "kind": stage.kind}
    if stage.quant is not None:
        meta.update(
            weight_scale=stage.quant.weight_scale,
            bits=int(stage.quant.bits),
            format=str(stage.quant.params.get("format", "")),
            has_bias_int=stage.quant.bias_int is not None,
            neuroprune_quant=dict(stage.quant.params),
        )
    return meta


def neuron_metadata(stage: NeuronStage) -> dict[str, Any]:
    """``module``, ``model``, the model's own ``v_threshold`` and firing rule, LIF ``tau_steps``
    and ``decay_input``, and ``threshold_int`` when quantized."""
    meta: dict[str, Any] = {
        "module": stage.module,
        "model": stage.model,
        "model_v_threshold": float(stage.v_threshold),
        "model_threshold_rule": ">" if stage.strict else ">=",
    }
    if stage.model == "LIF":
        meta.update(tau_steps=float(stage.tau), decay_input=bool(stage.decay_input))
    if stage.threshold_int is not None:
        meta["threshold_int"] = int(stage.threshold_int)
    return meta


def write_graph(graph, path: str | os.PathLike) -> Path:
    """``nir.write`` to ``path`` atomically (temporary file, then rename)."""
    import nir

    path = Path(path)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return path


def check_dt(dt: Any) -> float:
    """``dt`` as a positive finite float (seconds per step), else :class:`ConfigError`."""
    ok = isinstance(dt, int | float | np.floating) and not isinstance(dt, bool)
    if not ok or not math.isfinite(float(dt)) or not float(dt) > 0:
        raise ConfigError(
            "the NIR time step must be a positive number of seconds",
            where="nir",
            field="nir_dt",
            value=dt,
            fix="Use e.g. --nir-dt 1e-4 (snnTorch) or leave it out (2**-10 s).",
        )
    return float(dt)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --------------------------------------------------------------------------------------------
# Reading: file, metadata, order


def read_graph(path: str | os.PathLike):
    """``nir.read`` with one-line errors: missing/corrupt file -> :class:`ArtifactError`; a node
    type neuroprune cannot map -> :class:`UnsupportedError` naming the node and its type."""
    import nir

    path = Path(path)
    for name, kind in _node_types(path).items():
        if kind not in MAPPABLE_TYPES:
            raise unsupported_node(str(path), name, kind)
    try:
        return nir.read(path, **_no_type_check(nir.read))
    except TypeError:  # a field this nir does not know (a 1.0.8 file, e.g. v_reset, on 1.0.4)
        return _read_newer_file(path)
    except Exception as exc:  # h5py/nir raise many types for a corrupt file
        raise _corrupt(path, exc) from exc


def _read_newer_file(path: Path):
    """Read a file written by a newer nir: drop the fields the installed nir's node classes
    lack, after checking that dropping them changes nothing (``v_reset`` must be 0)."""
    import h5py
    import nir
    from nir.serialization import hdf2dict

    try:
        with h5py.File(path, "r") as f:
            data = hdf2dict(f["node"])
        for name, node in data["nodes"].items():
            _drop_unknown_fields(name, node, str(path))
        return nir.dict2NIRNode(data)
    except UnsupportedError:
        raise
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def _drop_unknown_fields(name: str, node: dict[str, Any], where: str) -> None:
    import nir

    kind = _text(node["type"])
    known = {f.name for f in dataclasses.fields(getattr(nir, kind))} | {"type", "shape"}
    for key in sorted(set(node) - known):
        value = node.pop(key)
        if key == "v_reset" and np.any(np.asarray(value, dtype=np.float64) != 0):
            raise _bad_param(name, kind, "v_reset", "nonzero", "Use 0 (hard reset to zero).", where)


def _no_type_check(func) -> dict[str, bool]:
    """``type_check=False`` where nir has it (1.0.8; shapes are checked here, one line each)."""
    import inspect

    return {"type_check": False} if "type_check" in inspect.signature(func).parameters else {}


def unsupported_node(where: str, name: str, kind: str, why: str = "") -> UnsupportedError:
    """One-line error for a node neuroprune cannot map (names the node and its type)."""
    return UnsupportedError(
        f"node {name!r} ({kind}) cannot be imported{': ' + why if why else ''}",
        where=where,
        field=f"{name}.type",
        value=kind,
        fix=f"Use only {', '.join(SUPPORTED_TYPES)} nodes in a feed-forward chain.",
    )


def _node_types(path: Path) -> dict[str, str]:
    import h5py

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
        fix=REEXPORT,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def graph_metadata(graph) -> dict[str, Any]:
    """Decoded graph metadata: plain Python scalars, ``input_shape`` a tuple, ``chip`` None when
    stored as ``""``, ``neuroprune_nodes`` a dict of node dicts."""
    meta = {str(k): _plain(v) for k, v in (getattr(graph, "metadata", None) or {}).items()}
    if meta.get("chip") == "":
        meta["chip"] = None
    if "input_shape" in meta:
        meta["input_shape"] = tuple(int(s) for s in np.asarray(meta["input_shape"]).ravel())
    nodes = meta.get(NODES_KEY)
    meta[NODES_KEY] = json.loads(nodes) if isinstance(nodes, str) else _legacy_nodes(graph)
    return meta


def _legacy_nodes(graph) -> dict[str, dict[str, Any]]:
    """Format-1 files kept node dicts on the nodes (``neuroprune_quant`` as a JSON string)."""
    nodes = {}
    for name, node in graph.nodes.items():
        meta = {str(k): _plain(v) for k, v in (getattr(node, "metadata", None) or {}).items()}
        if isinstance(meta.get("neuroprune_quant"), str):
            meta["neuroprune_quant"] = json.loads(meta["neuroprune_quant"])
        if meta:
            nodes[name] = meta
    return nodes


def node_metadata(graph, name: str) -> dict[str, Any]:
    """Neuroprune's metadata of node ``name`` (empty for files other tools wrote)."""
    return dict(graph_metadata(graph)[NODES_KEY].get(name, {}))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def topological_order(graph, where: str) -> list[str]:
    """Node names with every node after all its predecessors (Kahn's algorithm).

    Several edges into one node are allowed here (their signals sum); a cycle is a recurrent
    edge and raises :class:`UnsupportedError` naming a node on it. Exactly one Input node.
    """
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    inputs = [name for name, kind in kinds.items() if kind == "Input"]
    if len(inputs) != 1:
        raise UnsupportedError(
            f"the graph has {len(inputs)} Input nodes; neuroprune needs exactly one",
            where=where,
            field="Input",
            value=", ".join(sorted(inputs)) or "none",
            fix="Export a network with a single input.",
        )
    preds = predecessors(graph)
    remaining = {name: len(preds[name]) for name in kinds}
    ready = [inputs[0]] + sorted(n for n, k in remaining.items() if k == 0 and n != inputs[0])
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for dst in successors(graph).get(name, []):
            remaining[dst] -= 1
            if remaining[dst] == 0:
                ready.append(dst)
    if len(order) != len(kinds):
        stuck = sorted(set(kinds) - set(order))[0]
        raise UnsupportedError(
            f"recurrent edge: node {stuck!r} ({kinds[stuck]}) lies on a cycle",
            where=where,
            field=f"{stuck}.edges",
            value=", ".join(f"{a}->{b}" for a, b in graph.edges if b == stuck),
            fix="Use a feed-forward graph (no recurrent connections).",
        )
    return order


def predecessors(graph) -> dict[str, list[str]]:
    """Node -> the nodes with an edge into it (in edge order)."""
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        preds.setdefault(dst, []).append(src)
    return preds


def successors(graph) -> dict[str, list[str]]:
    """Node -> the nodes its edges lead to (in edge order)."""
    succ: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        succ.setdefault(src, []).append(dst)
    return succ


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
    if dense and len(shape) == 2 and shape[0] == 1 and np.shape(first.weight)[-1] == shape[1]:
        return (shape[1],)
    return shape


def _declared_input_shape(meta: Mapping[str, Any], flat: tuple[int, ...]) -> tuple[int, ...]:
    declared = meta.get("input_shape")
    if declared and int(np.prod(declared)) == int(np.prod(flat)):
        return tuple(declared)
    return flat


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in np.asarray(value).ravel())


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
    from .summary import conv_output_size

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


def _shape_error(name, kind, weight_shape, shape, where, what="weight") -> ArtifactError:
    return ArtifactError(
        f"node {name!r} ({kind}): {what} of shape {tuple(weight_shape)} does not fit its "
        f"input {shape}",
        where=where,
        field=f"{name}.{what}",
        value=tuple(weight_shape),
        fix=REEXPORT,
    )


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


def _neuron_stage(
    name, node, shape, dt, node_meta, where, legacy_rule: bool = False
) -> tuple[NeuronStage, float]:
    """Map NIR LIF/IF (and CubaLIF with ``tau_syn == dt``) to SpikingJelly units.

    LIF: ``tau_sj = tau/dt``; ``r == 1`` -> decay_input; ``r == tau_sj`` -> no decay_input;
    another ``r`` is returned as the gain to fold into the synapse before.
    IF: ``H = V + dt r X``. ``v_leak`` and ``v_reset`` must be 0.
    """
    kind = type(node).__name__
    if kind == "CubaLIF":
        node = _cuba_as_lif(name, node, dt, where)
    params = {f: _uniform(name, kind, f, getattr(node, f), where) for f in _neuron_fields(node)}
    for field in ("v_leak", "v_reset"):
        if params.get(field, 0.0) != 0.0:
            raise _bad_param(name, kind, field, params[field], "Use 0 (hard reset to zero).", where)
    v_th, strict = _model_threshold(params["v_threshold"], node_meta, legacy_rule)
    threshold_int = node_meta.get("threshold_int")
    threshold_int = None if threshold_int is None else int(threshold_int)
    module = str(node_meta.get("module", name))
    if isinstance(shape, tuple) and np.size(node.v_threshold) not in (1, int(np.prod(shape))):
        raise _shape_error(name, kind, np.shape(node.v_threshold), shape, where, "v_threshold")
    if kind == "IF":
        gain = _snap(params["r"] * dt)
        return NeuronStage(module, "IF", shape, v_th, None, True, threshold_int, strict), gain
    tau = _tau_steps(params["tau"] / dt, node_meta)
    if not tau >= 1.0:
        raise _bad_param(
            name, kind, "tau", params["tau"], f"tau/dt must be >= 1 (dt={dt!r} s).", where
        )
    r = params["r"]
    if math.isclose(r, 1.0, rel_tol=1e-6):
        return NeuronStage(module, "LIF", shape, v_th, tau, True, threshold_int, strict), 1.0
    if math.isclose(r, tau, rel_tol=1e-6):
        return NeuronStage(module, "LIF", shape, v_th, tau, False, threshold_int, strict), 1.0
    return NeuronStage(module, "LIF", shape, v_th, tau, True, threshold_int, strict), r


def _neuron_fields(node) -> tuple[str, ...]:
    fields = (
        ("r", "v_threshold", "v_reset")
        if type(node).__name__ == "IF"
        else ("tau", "r", "v_leak", "v_threshold", "v_reset")
    )
    return tuple(f for f in fields if getattr(node, f, None) is not None)


def _cuba_as_lif(name, node, dt, where):
    """A CubaLIF whose synapse has ``tau_syn == dt`` passes ``w_in S`` on at once (forward
    Euler: ``I <- I + (dt/tau_syn)(w_in S - I) = w_in S``), so it is a LIF with ``r w_in``."""
    import nir

    tau_syn = np.asarray(node.tau_syn, np.float64)
    if not np.allclose(tau_syn, dt, rtol=1e-6):
        raise unsupported_node(
            where, name, "CubaLIF", f"tau_syn={float(tau_syn.ravel()[0])!r} s is not dt={dt!r} s"
        )
    w_in = np.broadcast_to(np.asarray(node.w_in, np.float64), np.shape(node.r))
    reset = {"v_reset": node.v_reset} if getattr(node, "v_reset", None) is not None else {}
    return nir.LIF(
        tau=np.asarray(node.tau_mem, np.float64),
        r=np.asarray(node.r, np.float64) * w_in,
        v_leak=np.asarray(node.v_leak, np.float64),
        v_threshold=np.asarray(node.v_threshold, np.float64),
        **reset,
    )


def _uniform(name: str, kind: str, field: str, values: Any, where: str) -> float:
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0 or not np.all(flat == flat[0]):
        distinct = len(np.unique(flat))
        raise _bad_param(
            name, kind, field, f"{distinct} distinct values", "Use one value per layer.", where
        )
    return float(flat[0])


def _bad_param(name, kind, field, value, fix, where) -> UnsupportedError:
    return UnsupportedError(
        f"node {name!r} ({kind}): unsupported {field}",
        where=where,
        field=f"{name}.{field}",
        value=value,
        fix=fix,
    )


def _model_threshold(
    in_file: float, node_meta: Mapping[str, Any], legacy_rule: bool = False
) -> tuple[float, bool]:
    """``(v_threshold, strict)`` of the model the file came from: a neuroprune ``>=`` model
    whose ``nextafter32`` is the file's value gets its own threshold back, anything else keeps
    the file's value with NIR's strict rule (``legacy_rule``: a format-1 file saying ``>=``)."""
    if legacy_rule:
        return float(in_file), False
    model = node_meta.get("model_v_threshold")
    own_rule = node_meta.get("model_threshold_rule") == ">=" and model is not None
    if own_rule and threshold_in_file(float(model), strict=False) == in_file:
        return float(model), False
    return float(in_file), True


def _tau_steps(value: float, node_meta: Mapping[str, Any]) -> float:
    """``tau / dt`` in steps: the exporter's ``tau_steps`` when it agrees, else snapped to 12
    significant digits (float noise of float32 files)."""
    stated = node_meta.get("tau_steps")
    if stated is not None and math.isclose(float(stated), value, rel_tol=1e-6):
        return float(stated)
    nearest = round(value)
    return float(nearest) if math.isclose(value, nearest, rel_tol=1e-6) else _snap(value)


def _snap(value: float) -> float:
    return float(f"{value:.12g}")


def _fold_gain(
    stages: list[Stage], sources: tuple[int, ...], stage, gain: float, name: str, where: str
) -> list[Stage]:
    """Fold a neuron's input gain (``r``, or ``dt r`` for IF, when it is not SpikingJelly's)
    into the synapse it reads: ``g (W x + b) = (g W) x + g b``. Not for quantized layers."""
    index = sources[0] if len(sources) == 1 else INPUT
    syn = stages[index] if index != INPUT else None
    if not isinstance(syn, SynapseStage) or syn.quant is not None:
        raise _bad_param(
            name, stage.model, "r", gain, "Put a float synaptic layer right before it.", where
        )
    weight = (syn.weight.astype(np.float64) * gain).astype(np.float32)
    bias = None if syn.bias is None else (syn.bias.astype(np.float64) * gain).astype(np.float32)
    stages = list(stages)
    stages[index] = dataclasses.replace(syn, weight=weight, bias=bias)
    return stages


def with_decay_input(network: NirNetwork) -> NirNetwork:
    """The same network with every LIF in ``decay_input=True`` form (the model convention):
    ``H = V (1 - 1/tau) + X`` is ``H = V + (tau X - V)/tau``, so the synapse before a
    ``decay_input=False`` LIF is scaled by ``tau`` (float layers only)."""
    stages: list[Stage] = []
    for i, (name, stage) in enumerate(zip(network.names, network.stages, strict=True)):
        if isinstance(stage, NeuronStage) and stage.model == "LIF" and not stage.decay_input:
            sources = network.sources(i)
            stages = _fold_gain(stages, sources, stage, float(stage.tau), name, network.source)
            stage = dataclasses.replace(stage, decay_input=True)
        stages.append(stage)
    return dataclasses.replace(network, stages=tuple(stages))


def count_nonzero(network: NirNetwork) -> int:
    """Nonzero weights over all synaptic stages (kernel entries, not unrolled)."""
    return sum(
        int(np.count_nonzero(s.weight)) for s in network.stages if isinstance(s, SynapseStage)
    )
