"""Deployment spec (layer L2, torch-free): what the simulators run, read from a NIR chain.

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

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
        name: synaptic node name in the NIR graph (``"0_syn"``).
        neuron_name: neuron node name (``"0_neuron"``).
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
