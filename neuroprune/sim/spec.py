"""Deployment spec (layer L2, torch-free): what the simulators run, compiled from a NIR chain.

:func:`read_deployment` reads the file through :mod:`neuroprune.nirgraph` (the one NIR reader)
and compiles its stages: conv layers unrolled to CSR, integer views for quantized layers.

A :class:`DeploymentSpec` is the chain ``input -> (syn -> neuron) x L -> output`` with every
synaptic layer as one ``neurons x inputs`` CSR matrix (conv layers unrolled, C-order
``(channel, row, column)`` on both sides, exact zeros dropped) and one uniform neuron model per
layer in SpikingJelly units (conventions.md §1, §4):

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from neuroprune.errors import ArtifactError, UnsupportedError
from neuroprune.nirgraph import (
    FlattenStage,
    NeuronStage,
    NirNetwork,
    SynapseStage,
    network_from_graph,
    read_network,
)
from neuroprune.summary import unrolled_conv

NEURON_MODELS = ("LIF", "IF")


@dataclass(frozen=True)
class NeuronParams:
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
        in_shape / out_shape: shapes without time and batch (``(64,)``, ``(8, 8, 8)``).
        weight: ``neurons x inputs`` float64 CSR (conv unrolled), zeros dropped.
        bias: per-neuron float64 bias, or ``None``.
        neuron: the neuron model.
        quant: integer view when the graph is quantized, else ``None``.
    """

    name: str
    neuron_name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: sp.csr_matrix
    bias: np.ndarray | None
    neuron: NeuronParams
    quant: QuantParams | None = None

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


@dataclass(frozen=True, eq=False)
class DeploymentSpec:
    """A feed-forward chain of :class:`LayerSpec` read from a NIR file.

    Attributes:
        layers: synaptic layers in order.
        input_shape: one sample's shape (``(1, 8, 8)``).
        dt: seconds per step (graph metadata).
        timesteps: ``T`` from the metadata (``None`` when absent).
        encoding: ``"direct"`` / ``"poisson"`` / ``None``.
        quantized: whether integer views are present.
        source: file the spec was read from.
        metadata: the graph metadata as plain Python values.
    """

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...]
    dt: float
    timesteps: int | None = None
    encoding: str | None = None
    quantized: bool = False
    source: str = "<memory>"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def neurons(self) -> int:
        return sum(layer.neurons for layer in self.layers)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.neuron_name for layer in self.layers)


# --------------------------------------------------------------------------------------------
# Compiling a NIR network


def read_deployment(path: str | os.PathLike) -> DeploymentSpec:
    """Read ``path`` (a ``.nir`` file) into a deployment spec."""
    return spec_from_network(read_network(path))


def spec_from_graph(graph: Any, *, source: str = "<memory>") -> DeploymentSpec:
    """Compile an in-memory ``nir.NIRGraph`` chain."""
    return spec_from_network(network_from_graph(graph, source=source))


def spec_from_network(network: NirNetwork) -> DeploymentSpec:
    """Pair every synaptic stage with the neuron stage after it and compile the pair."""
    layers: list[LayerSpec] = []
    pending: tuple[str, SynapseStage] | None = None
    for name, stage in zip(network.names, network.stages, strict=True):
        if isinstance(stage, FlattenStage):
            continue
        if isinstance(stage, SynapseStage):
            if pending is not None:
                raise _chain_error(network.source, name, "two synaptic nodes follow each other")
            pending = (name, stage)
        elif pending is None:
            raise _chain_error(network.source, name, "a neuron node must follow a synaptic node")
        else:
            layers.append(compile_layer(*pending, name, stage, network.source))
            pending = None
    if pending is not None or not layers:
        raise _chain_error(network.source, "output", "the chain must end with a neuron layer")
    return DeploymentSpec(
        layers=tuple(layers),
        input_shape=network.input_shape,
        dt=network.dt,
        timesteps=network.timesteps,
        encoding=network.encoding,
        quantized=network.quantized,
        source=network.source,
        metadata=network.metadata,
    )


def _chain_error(source: str, name: str, text: str) -> UnsupportedError:
    return UnsupportedError(
        text,
        where=f"{source}: node {name}",
        fix="Export a chain of (synapse, neuron) pairs: `neuroprune export RUN --format nir`.",
    )


def compile_layer(
    syn_name: str, syn: SynapseStage, name: str, node: NeuronStage, source: str
) -> LayerSpec:
    """One synaptic stage and its neurons as a :class:`LayerSpec` (conv unrolled, C-order)."""
    weight, bias = _matrix(syn, syn.weight), syn.bias
    if bias is not None and syn.kind == "conv":
        bias = np.repeat(bias, int(np.prod(syn.out_shape[1:])))
    params = NeuronParams(node.model, node.v_threshold, node.tau, node.decay_input, node.strict)
    return LayerSpec(
        name=syn_name,
        neuron_name=name,
        kind=syn.kind,
        in_shape=syn.in_shape,
        out_shape=syn.out_shape,
        weight=weight.astype(np.float64),
        bias=None if bias is None else bias.astype(np.float64),
        neuron=params,
        quant=_quant_params(syn, node, f"{source}: node {name}"),
    )


def _matrix(syn: SynapseStage, weight: np.ndarray) -> sp.csr_matrix:
    if syn.kind == "conv":
        matrix, _ = unrolled_conv(weight, tuple(syn.in_shape), syn.stride, syn.padding)
    else:
        matrix = sp.csr_matrix(weight)
    matrix = matrix.tocsr()
    matrix.eliminate_zeros()
    return matrix


def _quant_params(syn: SynapseStage, node: NeuronStage, where: str) -> QuantParams | None:
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
        weight_int=_matrix(syn, quant.weight_int.astype(np.int64)).astype(np.int64),
        bias_int=None if bias_int is None else bias_int.astype(np.int64),
        weight_scale=quant.weight_scale,
        threshold_int=int(threshold_int),
        bits=int(quant.bits or 8),
        format=str(quant.params.get("format") or "int"),
        input_shift=None if shift is None else int(shift),
    )
