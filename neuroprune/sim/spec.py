"""Deployment spec (layer L5, torch-free): what the simulators run, compiled from a NIR graph.

:func:`read_deployment` reads the file through :mod:`neuroprune.graph` (the one NIR reader)
and compiles its stages: conv layers unrolled to CSR, integer views for quantized layers.

A :class:`DeploymentSpec` is a feed-forward graph of layers, each one synaptic node and the
neuron node it drives, in forward order. Layer ``i`` reads the spikes of its ``sources``
(earlier layers; ``-1`` = the network input). Its synaptic layer is ONE
``neurons x inputs`` CSR matrix over the CONCATENATION of its sources' spike vectors (C-order
``(channel, row, column)`` each, conv layers unrolled, exact zeros dropped)::

    weight = [W L_1  W L_2  ...]        X[t] = weight [s_1[t]; s_2[t]; ...] + b

where ``W`` is the synaptic node's own matrix and ``L_j`` the linear map from source ``j``'s
neurons to the synaptic node's input: identity through Flatten, the pooling matrix ``P``
(entries 1 for SumPool2d, ``1/k**2`` for AvgPool2d) through pooling, and a residual ADD (several
edges into a linear node, which NIR sums) gives every summed source its own block. So
``weight.nnz`` is what a chip stores: ``k`` summed sources are ``k`` projections of the same
weights, a pooled map ``k**2`` synapses per weight. A chain has ``sources = (i - 1,)`` and the
matrix of the synaptic node alone. Every layer has one uniform neuron model in SpikingJelly
units (conventions.md §1, §4):

* ``LIF`` with ``decay_input=True``:  ``H = V + (X - V) / tau``
* ``LIF`` with ``decay_input=False``: ``H = V - V / tau + X``
* ``IF``:                             ``H = V + X``

with ``X[t] = W s[t] + b`` (dimensionless per step), spike ``S = H > v_th`` (NIR's strict rule,
what neuroprune writes; ``>=`` for a legacy file that says ``threshold: ">="``), hard reset ``V = H (1 - S)``. ``tau`` is in time steps
(``tau_sj = tau_nir / dt``).

A quantized spec also holds each layer's integer weights (weight LSBs), integer bias and the
threshold in weight LSBs (conventions.md §3), which the fixed-point simulators use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from neuroprune.core.errors import ArtifactError, UnsupportedError
from neuroprune.core.summary import pool_projection, unrolled_conv
from neuroprune.graph.read import network_from_graph, read_network
from neuroprune.graph.stages import (
    INPUT,
    FlattenStage,
    NeuronStage,
    NirNetwork,
    PoolStage,
    SynapseStage,
)

NEURON_MODELS = ("LIF", "IF")


@dataclass(frozen=True)
class LayerNeurons:
    """One layer's neurons, SpikingJelly semantics.

    Attributes:
        model: ``"LIF"`` or ``"IF"``.
        v_threshold: firing threshold (same units as ``X``).
        tau: membrane time constant in time steps (``None`` for IF).
        decay_input: LIF only: whether the input is divided by ``tau``.
        strict: ``True`` fires on ``H > v_th`` (NIR/Lava/neuroprune's neurons), ``False`` on
            ``H >= v_th`` (legacy files written for SpikingJelly's own nodes).
    """

    model: str
    v_threshold: float
    tau: float | None = None
    decay_input: bool = True
    strict: bool = True

    @property
    def leak(self) -> float:
        """Fraction of V lost per step: ``1 / tau`` for LIF, 0 for IF."""
        return 0.0 if self.model == "IF" else 1.0 / float(self.tau)

    @property
    def input_gain(self) -> float:
        """Factor on ``X`` in ``V(1 - leak) + gain X``: ``1/tau`` with decay_input, else 1."""
        if self.model == "LIF" and self.decay_input:
            return 1.0 / float(self.tau)
        return 1.0


@dataclass(frozen=True, eq=False)
class QuantParams:
    """Integer view of a quantized layer (conventions.md §3).

    Attributes:
        weight_int: ``neurons x inputs`` CSR of stored integers (weight LSBs), same sparsity
            as the float weight.
        bias_int: per-neuron integer bias in weight LSBs, or ``None``.
        weight_scale: float value of one LSB (``weight == weight_int * weight_scale``).
        threshold_int: the following neuron's threshold in weight LSBs.
        bits: stored weight width.
        format: weight format name (``"loihi"``, ...).
        input_shift: first layer only: ``k`` of a host-injected analog current, in ``2**-k``
            weight LSB, fixed at quantization (chip-arithmetic training used it); ``None``:
            chosen from the simulated data.
    """

    weight_int: sp.csr_matrix
    bias_int: np.ndarray | None
    weight_scale: float
    threshold_int: int
    bits: int
    format: str
    input_shift: int | None = None


@dataclass(frozen=True, eq=False)
class LayerSpec:
    """One synaptic layer and the spiking neurons it feeds.

    Attributes:
        name: synaptic node name in the NIR graph (``"l00_1_syn"``).
        neuron_name: neuron node name (``"l00_2_neuron"``).
        kind: ``"dense"`` or ``"conv"``.
        in_shape / out_shape: shapes of the synaptic node's (summed, pooled) input and of its
            output, without time and batch (``(64,)``, ``(8, 8, 8)``).
        weight: ``neurons x inputs`` float64 CSR over the concatenated source spikes
            (module docstring: ``[W L_1  W L_2 ...]``, conv unrolled), zeros dropped.
        bias: per-neuron float64 bias, or ``None``.
        neuron: the neuron model.
        quant: integer view when the graph is quantized, else ``None``.
        sources: the layers whose spikes this layer reads, in column-block order
            (``-1``: the network input). ``()`` when built by hand means a chain: the
            :class:`DeploymentSpec` holding the layer fills in ``(i - 1,)``.
    """

    name: str
    neuron_name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: sp.csr_matrix
    bias: np.ndarray | None
    neuron: LayerNeurons
    quant: QuantParams | None = None
    sources: tuple[int, ...] = ()

    @property
    def neurons(self) -> int:
        return int(self.weight.shape[0])

    @property
    def inputs(self) -> int:
        return int(self.weight.shape[1])

    @property
    def synapses(self) -> int:
        """Nonzero (physical) synapses, conv unrolled."""
        return int(self.weight.nnz)

    @property
    def fan_out(self) -> np.ndarray:
        """Nonzero targets per presynaptic input (int64, length ``inputs``)."""
        return np.bincount(self.weight.indices, minlength=self.inputs).astype(np.int64)


@dataclass(frozen=True)
class LayerWiring:
    """Where one layer's input comes from, and when (the one place that derives it).

    Attributes:
        sources: source layers in column-block order (``-1``: the network input).
        columns: ``(start, stop)`` of each source's block of weight columns.
        depth: longest path from the input in synaptic layers: ``1 + max(depth(sources))``,
            the input at depth 0. The whole graph runs within one step in this order.
        delays: per source, the whole steps a projection must wait on a pipelined simulator
            (Lava: one step per connection) so that every source's spikes of one step arrive
            together: ``depth - 1 - depth(source)`` (all 0 in a chain).
    """

    sources: tuple[int, ...]
    columns: tuple[tuple[int, int], ...]
    depth: int
    delays: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class DeploymentSpec:
    """A feed-forward graph of :class:`LayerSpec` read from a NIR file, in forward order
    (every source of layer ``i`` comes before it).

    Attributes:
        layers: synaptic layers in forward order, ``sources`` filled in.
        input_shape: one sample's shape (``(1, 8, 8)``).
        dt: seconds per step (graph metadata).
        timesteps: ``T`` from the metadata (``None`` when absent).
        encoding: ``"direct"`` / ``"poisson"`` / ``None``.
        quantized: whether integer views are present.
        source: file the spec was read from.
        metadata: the graph metadata as plain Python values.
        network: the stages it was compiled from (``None`` when built by hand): what a
            deployment file that keeps conv kernels and pooling (netx) reads.
    """

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...]
    dt: float
    timesteps: int | None = None
    encoding: str | None = None
    quantized: bool = False
    source: str = "<memory>"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    network: NirNetwork | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Give hand-built chain layers ``sources = (i - 1,)`` and check every layer's
        columns against its sources' widths."""
        layers = tuple(
            layer if layer.sources else replace(layer, sources=(i - 1,))
            for i, layer in enumerate(self.layers)
        )
        object.__setattr__(self, "layers", layers)
        for i, layer in enumerate(layers):
            self._check_sources(i, layer)

    def _check_sources(self, index: int, layer: LayerSpec) -> None:
        ok = all(INPUT <= j < index for j in layer.sources)
        if not ok or sum(self.source_widths(index)) != layer.inputs:
            raise ArtifactError(
                f"layer {layer.neuron_name} reads {layer.inputs} inputs, its sources "
                f"{layer.sources} do not give that",
                where=self.source,
                field=f"{layer.name}.sources",
                value=layer.sources,
                fix="Build each layer's weight over its sources' concatenated spikes.",
            )

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def neurons(self) -> int:
        return sum(layer.neurons for layer in self.layers)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.neuron_name for layer in self.layers)

    @property
    def is_chain(self) -> bool:
        """True when every layer reads only the layer before it (the first: the input)."""
        return all(layer.sources == (i - 1,) for i, layer in enumerate(self.layers))

    def width(self, source: int) -> int:
        """Spike-vector length of a source: the input size for ``-1``, else its neurons."""
        return self.input_size if source == INPUT else self.layers[source].neurons

    def source_widths(self, index: int) -> tuple[int, ...]:
        return tuple(self.width(j) for j in self.layers[index].sources)

    def depths(self) -> tuple[int, ...]:
        """Per layer, the longest path from the input in layers (first layer: 1)."""
        depth: list[int] = []
        for layer in self.layers:
            depth.append(1 + max(0 if j == INPUT else depth[j] for j in layer.sources))
        return tuple(depth)

    def wiring(self, index: int) -> LayerWiring:
        """Layer ``index``'s :class:`LayerWiring` (column blocks, depth, per-source delays)."""
        depths = self.depths()
        sources = self.layers[index].sources
        stops = np.cumsum(self.source_widths(index)).tolist()
        starts = [0, *stops[:-1]]
        depth = depths[index]
        return LayerWiring(
            sources=sources,
            columns=tuple((int(a), int(b)) for a, b in zip(starts, stops, strict=True)),
            depth=depth,
            delays=tuple(depth - 1 - (0 if j == INPUT else depths[j]) for j in sources),
        )

    def layer_input(
        self, index: int, network_input: np.ndarray, outputs: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Layer ``index``'s presynaptic vector: its sources' arrays ``[..., width]``
        (``network_input`` for ``-1``, ``outputs[j]`` for layer ``j``) concatenated along the
        last axis, in column-block order."""
        parts = [network_input if j == INPUT else outputs[j] for j in self.layers[index].sources]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


# --------------------------------------------------------------------------------------------
# Compiling a NIR network


def read_deployment(path: str | os.PathLike) -> DeploymentSpec:
    """Read ``path`` (a ``.nir`` file) into a deployment spec."""
    return spec_from_network(read_network(path))


def spec_from_graph(graph: Any, *, source: str = "<memory>") -> DeploymentSpec:
    """Compile an in-memory ``nir.NIRGraph`` (a chain or a graph of layers)."""
    return spec_from_network(network_from_graph(graph, source=source))


def spec_from_network(network: NirNetwork) -> DeploymentSpec:
    """Compile every neuron stage with the synaptic stage it reads into a :class:`LayerSpec`
    whose matrix spans the spike sources behind that synaptic stage (module docstring)."""
    layer_of: dict[int, int] = {}
    layers: list[LayerSpec] = []
    for index, stage in enumerate(network.stages):
        if isinstance(stage, NeuronStage):
            layers.append(_compile_neuron(network, index, layer_of))
            layer_of[index] = len(layers) - 1
    if not layers or not isinstance(network.stages[-1], NeuronStage):
        raise _chain_error(network.source, "output", "the graph must end with a neuron layer")
    _check_every_synapse_used(network)
    return DeploymentSpec(
        layers=tuple(layers),
        input_shape=network.input_shape,
        dt=network.dt,
        timesteps=network.timesteps,
        encoding=network.encoding,
        quantized=network.quantized,
        source=network.source,
        metadata=network.metadata,
        network=network,
    )


def _compile_neuron(network: NirNetwork, index: int, layer_of: dict[int, int]) -> LayerSpec:
    """The layer of neuron stage ``index``: its one synaptic stage over the spike maps behind."""
    name = network.names[index]
    sources = network.sources(index)
    syn_index = sources[0] if len(sources) == 1 else None
    syn = None if syn_index is None or syn_index == INPUT else network.stages[syn_index]
    if not isinstance(syn, SynapseStage):
        raise _chain_error(network.source, name, "a neuron node must read one synaptic node")
    syn_name = network.names[syn_index]
    pool = _reads_average_pool(network, network.sources(syn_index))
    if syn.quant is not None and pool is not None:
        raise UnsupportedError(
            f"quantized layer {syn_name} reads AvgPool2d {pool}: its integer weights times "
            "1/k**2 are not integers",
            where=f"{network.source}: node {syn_name}",
            field=f"{pool}.type",
            value="AvgPool2d",
            fix="Quantize with sum pooling (SumPool2d; the 1/k**2 folds into the weights).",
        )
    maps = spike_maps(network, network.sources(syn_index), layer_of, syn_name)
    return compile_layer(syn_name, syn, name, network.stages[index], network.source, maps)


def _check_every_synapse_used(network: NirNetwork) -> None:
    """Each synaptic stage drives exactly one neuron stage (its current reaches nothing else)."""
    readers: dict[int, int] = {}
    for index in range(len(network.stages)):
        for j in network.sources(index):
            if j != INPUT and isinstance(network.stages[j], SynapseStage):
                readers[j] = readers.get(j, 0) + 1
    for j, stage in enumerate(network.stages):
        if isinstance(stage, SynapseStage) and readers.get(j, 0) != 1:
            raise _chain_error(
                network.source,
                network.names[j],
                f"a synaptic node must drive exactly one neuron node, not {readers.get(j, 0)}",
            )


SpikeMaps = dict[int, "sp.csr_matrix | None"]
"""Spike source (layer index, ``-1`` the input) -> linear map from its spikes to a stage's
output (``None``: the identity)."""


def spike_maps(
    network: NirNetwork, stage_sources: Sequence[int], layer_of: Mapping[int, int], name: str
) -> SpikeMaps:
    """The linear maps ``L_j`` from every spike source ``j`` to the SUM of ``stage_sources``'
    outputs (NIR sums several edges into a node): Flatten is the identity, pooling its
    matrix ``P`` (``gain * 0/1``), and a source reached twice adds its maps."""
    total: SpikeMaps = {}
    for index in stage_sources:
        for source, matrix in _maps_of(network, index, layer_of, name).items():
            if source in total:
                total[source] = _identity_or(total[source], network, source, layer_of) + (
                    _identity_or(matrix, network, source, layer_of)
                )
            else:
                total[source] = matrix
    return total


def _maps_of(network: NirNetwork, index: int, layer_of: Mapping[int, int], name: str) -> SpikeMaps:
    """:func:`spike_maps` of one stage's output."""
    if index == INPUT:
        return {INPUT: None}
    stage = network.stages[index]
    if isinstance(stage, NeuronStage):
        return {layer_of[index]: None}
    if isinstance(stage, SynapseStage):
        raise _chain_error(network.source, name, "two synaptic nodes follow each other")
    inner = spike_maps(network, network.sources(index), layer_of, network.names[index])
    if isinstance(stage, FlattenStage):
        return inner
    pool = (pool_projection(stage.in_shape, stage.kernel) * stage.gain).tocsr()
    return {j: pool if m is None else (pool @ m).tocsr() for j, m in inner.items()}


def _identity_or(matrix, network: NirNetwork, source: int, layer_of: Mapping[int, int]):
    if matrix is not None:
        return matrix
    if source == INPUT:
        size = int(np.prod(network.input_shape))
    else:
        stage = next(network.stages[i] for i, k in layer_of.items() if k == source)
        size = int(np.prod(stage.shape))
    return sp.identity(size, format="csr")


def _reads_average_pool(network: NirNetwork, stage_sources: Sequence[int]) -> str | None:
    """Name of an AvgPool2d between ``stage_sources`` and their spike sources, or None."""
    for index in stage_sources:
        if index == INPUT or isinstance(network.stages[index], NeuronStage | SynapseStage):
            continue
        stage = network.stages[index]
        if isinstance(stage, PoolStage) and stage.kind == "avg":
            return network.names[index]
        found = _reads_average_pool(network, network.sources(index))
        if found is not None:
            return found
    return None


def _chain_error(source: str, name: str, text: str) -> UnsupportedError:
    return UnsupportedError(
        text,
        where=f"{source}: node {name}",
        fix="Export (synapse, neuron) pairs: `neuroprune export RUN --format nir`.",
    )


def compile_layer(
    syn_name: str,
    syn: SynapseStage,
    name: str,
    node: NeuronStage,
    source: str,
    maps: SpikeMaps,
) -> LayerSpec:
    """One synaptic stage and its neurons as a :class:`LayerSpec` (conv unrolled, C-order),
    its matrix ``[W L_1 W L_2 ...]`` over the spike ``maps`` (:func:`spike_maps`)."""
    weight = _over_sources(_matrix(syn, syn.weight).astype(np.float64), maps)
    bias = syn.bias
    if bias is not None and syn.kind == "conv":
        bias = np.repeat(bias, int(np.prod(syn.out_shape[1:])))
    params = LayerNeurons(node.model, node.v_threshold, node.tau, node.decay_input, node.strict)
    return LayerSpec(
        name=syn_name,
        neuron_name=name,
        kind=syn.kind,
        in_shape=syn.in_shape,
        out_shape=syn.out_shape,
        weight=weight,
        bias=None if bias is None else bias.astype(np.float64),
        neuron=params,
        quant=_quant_params(syn, node, f"{source}: node {name}", maps),
        sources=tuple(maps),
    )


def _over_sources(matrix: sp.csr_matrix, maps: SpikeMaps) -> sp.csr_matrix:
    """``[W L_1  W L_2 ...]`` (``W`` itself for one identity map), zeros dropped."""
    blocks = [matrix if m is None else (matrix @ m.astype(matrix.dtype)) for m in maps.values()]
    out = blocks[0].tocsr() if len(blocks) == 1 else sp.hstack(blocks, format="csr")
    out.eliminate_zeros()
    return out


def _matrix(syn: SynapseStage, weight: np.ndarray) -> sp.csr_matrix:
    if syn.kind == "conv":
        matrix, _ = unrolled_conv(weight, tuple(syn.in_shape), syn.stride, syn.padding)
    else:
        matrix = sp.csr_matrix(weight)
    matrix = matrix.tocsr()
    matrix.eliminate_zeros()
    return matrix


def _quant_params(
    syn: SynapseStage, node: NeuronStage, where: str, maps: SpikeMaps
) -> QuantParams | None:
    quant = syn.quant
    if quant is None:
        return None
    threshold_int = node.threshold_int
    if threshold_int is None:
        threshold_int = quant.params.get("threshold_int")
    if threshold_int is None:
        raise ArtifactError(
            "quantized layer without threshold_int metadata",
            where=where,
            field="metadata.threshold_int",
            fix="Re-export the quantized model with `neuroprune export RUN --format nir`.",
        )
    shift = quant.params.get("input_shift")
    bias_int = quant.bias_int
    if bias_int is not None and not np.any(bias_int):
        bias_int = None
    if bias_int is not None and syn.kind == "conv":
        bias_int = np.repeat(bias_int, int(np.prod(syn.out_shape[1:])))
    return QuantParams(
        weight_int=_over_sources(_matrix(syn, quant.weight_int.astype(np.int64)), maps).astype(
            np.int64
        ),
        bias_int=None if bias_int is None else bias_int.astype(np.int64),
        weight_scale=quant.weight_scale,
        threshold_int=int(threshold_int),
        bits=int(quant.bits or 8),
        format=str(quant.params.get("format") or "int"),
        input_shift=None if shift is None else int(shift),
    )
