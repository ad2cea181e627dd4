"""The per-layer vocabulary of a NIR graph (torch-free): Flatten, Pool, Synapse and Neuron
stages, their wiring (``inputs``) and :class:`NirNetwork`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    ``W P`` (k**2 synapses per weight, :func:`neuroprune.core.summary.pooled_layer`).
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


def count_nonzero(network: NirNetwork) -> int:
    """Nonzero weights over all synaptic stages (kernel entries, not unrolled)."""
    return sum(
        int(np.count_nonzero(s.weight)) for s in network.stages if isinstance(s, SynapseStage)
    )
