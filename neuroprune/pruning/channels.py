"""Channel structure for structured pruning: groups, costs, the budget knapsack, removal.

**Channel spaces and groups.** A *channel space* is a set of output channels that must keep the
same width: the output channels of every layer that writes it (its *producers*) and the input
channels of every layer that reads it (its *consumers*). In a chain each hidden layer's output
is its own space with one producer. In a SEW-ResNet the stage conv and every block's ``conv2``
write the same residual stream (their spikes are added), so channel ``c`` of all of them is
**one group**: pruning it removes filter ``c`` of every producer, and input channel ``c`` of
every consumer. Removing only one member would leave the sum's channel ``c`` alive, so the
consumers' input slice could not go. Every group of a space is pruned or kept as a whole.

**Costs** (:class:`ChannelCosts`), per synaptic layer ``l`` a matrix ``C_l[o, i]``: the
physical synapses between its output channel ``o`` and input channel ``i`` under the budget's
counting convention (``neuroprune.core.summary``), times ``sources_l`` (the spike tensors summed at
its input by residual ADDs)::

    conv, unrolled:      C[o, i] = sources * sum_{ky,kx} n_y(ky) n_x(kx) [W'[o, i, ky, kx] != 0]
    conv, shared kernel: C[o, i] = sources * #{(ky, kx): W'[o, i, ky, kx] != 0}
    dense after Flatten: C[o, c] = sources * #{p < H*W: W[o, c*H*W + p] != 0}    (C-order)
    dense:               C[o, i] = sources * [W[o, i] != 0]

``W'`` is the BN-folded weight ``W * gamma / sqrt(var + eps)`` and ``n_y(ky)`` the output rows
where kernel row ``ky`` lands inside the input. With kept masks ``m`` (1 = kept) the network
keeps ``synapses = sum_l m_out,l^T C_l m_in,l`` and ``neurons = sum_l |m_out,l| * H_l W_l``:
a quadratic function of the widths, known before physical removal (docs/pruning.md §6.5).

**Knapsack** (:func:`select_channels`): greedy removal. While a limit is exceeded (synapses,
neurons, kept channels), remove the kept group with the smallest
``value / sum_{j exceeded} saving_j / limit_j`` (importance per share of the exceeded limits it
frees; savings recomputed after every removal because costs couple neighbouring layers), never
below a space's minimum width nor a layer's minimum synapses. Then a fill pass re-adds removed
groups of positive value, most important first, wherever every limit still holds.

**Removal** (:func:`remove_channels`): a copy with narrower ``Conv2d``/``BatchNorm2d``/``Linear``
modules holding the kept filters, BN parameters and running statistics, and the matching input
slices of the consumers (a Linear after a Flatten loses ``H*W`` columns per removed channel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from neuroprune.core.errors import BudgetError, ModelError, UnsupportedError
from neuroprune.core.summary import conv_output_size
from neuroprune.models.reader import CHAIN, WIRED, SynapseLayer, model_kind, model_wiring
from neuroprune.models.sew import folded_weight_of

Keep = dict[str, np.ndarray]
LIMIT_NAMES = ("synapses", "neurons", "channels")


# --------------------------------------------------------------------------------------------
# Channel graph


@dataclass(frozen=True)
class ChannelGraph:
    """The synaptic layers of a model and the channel spaces they write and read."""

    layers: tuple[SynapseLayer, ...]

    @property
    def spaces(self) -> tuple[str, ...]:
        """Prunable channel spaces in forward order (first producer)."""
        seen: dict[str, None] = {}
        for wired in self.layers:
            if wired.out_space is not None:
                seen.setdefault(wired.out_space, None)
        return tuple(seen)

    def producers(self, space: str) -> tuple[SynapseLayer, ...]:
        return tuple(w for w in self.layers if w.out_space == space)

    def consumers(self, space: str) -> tuple[SynapseLayer, ...]:
        return tuple(w for w in self.layers if w.in_space == space)

    def width(self, space: str) -> int:
        """Channels of the space (output channels of its producers)."""
        return int(self.producers(space)[0].out_shape[0])

    def members(self, space: str) -> int:
        """Output channels removed with one group: the number of producers."""
        return len(self.producers(space))

    def coupled(self, space: str) -> bool:
        """True when residual ADDs join the channels of several producers."""
        return self.members(space) > 1

    def min_widths(self, fraction: float) -> dict[str, int]:
        """Fewest groups each space keeps: ``max(1, ceil(fraction * width))``."""
        return {s: max(1, math.ceil(fraction * self.width(s))) for s in self.spaces}

    def total_members(self) -> int:
        """Prunable output channels of the whole model (groups times their members)."""
        return sum(self.width(s) * self.members(s) for s in self.spaces)


def channel_graph(model: torch.nn.Module, input_shape: Sequence[int]) -> ChannelGraph:
    """The channel graph of a chain model or of a wired model, as
    :func:`neuroprune.models.reader.model_wiring` reads its layers."""
    if model_kind(model) not in (CHAIN, WIRED):
        raise UnsupportedError(
            "structured pruning needs a Sequential chain or a model with a wiring() method",
            where="pruning sca",
            field="model",
            value=type(model).__name__,
            fix="Use a zoo model (mlp, conv, SEW-ResNet) or add wiring() to the model.",
        )
    reading = model_wiring(model, input_shape, where="pruning sca", allow_bias=False)
    graph = ChannelGraph(reading.layers)
    _check_widths(graph)
    return graph


def _check_widths(graph: ChannelGraph) -> None:
    for space in graph.spaces:
        widths = {int(w.out_shape[0]) for w in graph.producers(space)}
        widths |= {w.in_channels for w in graph.consumers(space)}
        if len(widths) != 1:
            raise ModelError(
                "layers joined in one channel space disagree on its width",
                where=f"pruning sca [{space}]",
                field="widths",
                value=sorted(widths),
                fix="Residual ADDs need equal channel counts on both paths.",
            )


# --------------------------------------------------------------------------------------------
# Costs


@dataclass(frozen=True, eq=False)
class LayerCost:
    """``matrix[o, i]``: synapses between output channel ``o`` and input channel ``i``."""

    layer: SynapseLayer
    matrix: np.ndarray

    @property
    def name(self) -> str:
        return self.layer.name


@dataclass(frozen=True)
class Savings:
    """What removing each group of one space frees (arrays over the space's channels)."""

    synapses: np.ndarray
    per_layer: Mapping[str, np.ndarray]
    neurons: int
    channels: int


class ChannelCosts:
    """Synapse and neuron counts of every kept-channel choice (module docstring)."""

    def __init__(self, graph: ChannelGraph, layers: Sequence[LayerCost]) -> None:
        self.graph = graph
        self.layers = tuple(layers)

    @classmethod
    def from_model(
        cls, model: torch.nn.Module, graph: ChannelGraph, *, conv_weight_sharing: bool = False
    ) -> ChannelCosts:
        costs = [
            LayerCost(w, channel_matrix(model, w, conv_weight_sharing=conv_weight_sharing))
            for w in graph.layers
        ]
        return cls(graph, costs)

    def full(self) -> Keep:
        """Every channel kept."""
        return {s: np.ones(self.graph.width(s), dtype=bool) for s in self.graph.spaces}

    def _mask(self, keep: Mapping[str, np.ndarray], space: str | None, size: int) -> np.ndarray:
        if space is None:
            return np.ones(size, dtype=np.int64)
        return np.asarray(keep[space], dtype=np.int64)

    def layer_synapses(self, keep: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Synapses per layer: ``m_out^T C m_in``."""
        out = {}
        for cost in self.layers:
            m_out = self._mask(keep, cost.layer.out_space, cost.matrix.shape[0])
            m_in = self._mask(keep, cost.layer.in_space, cost.matrix.shape[1])
            out[cost.name] = int(m_out @ cost.matrix @ m_in)
        return out

    def layer_neurons(self, keep: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Neurons per layer: kept output channels times ``H_out * W_out``."""
        return {
            c.name: int(self._mask(keep, c.layer.out_space, c.matrix.shape[0]).sum())
            * c.layer.positions
            for c in self.layers
        }

    def totals(self, keep: Mapping[str, np.ndarray]) -> dict[str, int]:
        """``{"synapses", "neurons", "channels"}``; channels = kept prunable output channels."""
        channels = sum(int(keep[s].sum()) * self.graph.members(s) for s in self.graph.spaces)
        return {
            "synapses": sum(self.layer_synapses(keep).values()),
            "neurons": sum(self.layer_neurons(keep).values()),
            "channels": channels,
        }

    def savings(self, keep: Mapping[str, np.ndarray], space: str) -> Savings:
        """Synapses (total and per layer), neurons and channels freed by removing each group."""
        m = np.asarray(keep[space], dtype=np.int64)
        per_layer: dict[str, np.ndarray] = {}
        neurons = 0
        for cost in self.layers:
            lay = cost.layer
            if space not in (lay.in_space, lay.out_space):
                continue
            m_out = self._mask(keep, lay.out_space, cost.matrix.shape[0])
            m_in = self._mask(keep, lay.in_space, cost.matrix.shape[1])
            freed = np.zeros(len(m), dtype=np.int64)
            if lay.out_space == space:
                freed += cost.matrix @ m_in
                neurons += lay.positions
            if lay.in_space == space:
                freed += m_out @ cost.matrix
            if lay.in_space == lay.out_space == space:
                freed -= np.diag(cost.matrix) * m
            per_layer[cost.name] = freed
        total = sum(per_layer.values(), np.zeros(len(m), dtype=np.int64))
        return Savings(total, per_layer, neurons, self.graph.members(space))


def channel_matrix(
    model: torch.nn.Module, wired: SynapseLayer, *, conv_weight_sharing: bool = False
) -> np.ndarray:
    """``C[o, i]`` of one layer (module docstring), int64, ``sources`` included; a layer
    reading ``k x k``-pooled spikes costs ``k**2`` per unrolled synapse (``W P``)."""
    nonzero = folded_weight_of(model, wired) != 0
    if wired.kind == "conv":
        if conv_weight_sharing:
            per_pair = nonzero.sum(axis=(2, 3))
        else:
            taps = tap_positions(model.get_submodule(wired.name), wired.in_shape)
            per_pair = (nonzero * taps).sum(axis=(2, 3)) * wired.pool_kernel**2
    elif wired.flatten:
        per_pair = nonzero.reshape(nonzero.shape[0], wired.in_channels, -1).sum(axis=2)
    else:
        per_pair = nonzero
    return per_pair.astype(np.int64) * int(wired.sources)


def tap_positions(conv: torch.nn.Module, in_shape: Sequence[int]) -> np.ndarray:
    """``(kh, kw)`` array: output positions where kernel tap ``(ky, kx)`` reads inside the input."""
    kh, kw = conv.kernel_size
    stride, pad = int(conv.stride[0]), int(conv.padding[0])
    rows = _landing(int(in_shape[1]), kh, stride, pad)
    cols = _landing(int(in_shape[2]), kw, stride, pad)
    return np.outer(rows, cols).astype(np.int64)


def _landing(size: int, kernel: int, stride: int, pad: int) -> np.ndarray:
    starts = np.arange(conv_output_size(size, kernel, stride, pad)) * stride - pad
    return np.array(
        [np.count_nonzero((starts + k >= 0) & (starts + k < size)) for k in range(kernel)]
    )


def max_tap_fan_in(model: torch.nn.Module, wired: SynapseLayer) -> int:
    """Most inputs one neuron of ``wired`` takes from one channel of one source, times sources.

    Conv: nonzero taps of a filter slice (all in bounds for an interior neuron); dense after a
    Flatten: nonzero columns of one channel block; dense: 1.
    """
    nonzero = folded_weight_of(model, wired) != 0
    if wired.kind == "conv":
        per = nonzero.sum(axis=(2, 3))
    elif wired.flatten:
        per = nonzero.reshape(nonzero.shape[0], wired.in_channels, -1).sum(axis=2)
    else:
        per = nonzero.astype(np.int64)
    return int(per.max(initial=0)) * int(wired.sources)


# --------------------------------------------------------------------------------------------
# Knapsack


@dataclass(frozen=True)
class ChannelLimits:
    """Limits the kept structure must meet.

    Attributes:
        synapses: most physical synapses (None: no limit).
        neurons: most spiking neurons (None: no limit).
        channels: most kept prunable output channels (coupled groups count every member).
        min_width: space -> fewest kept groups (so no layer dies).
        max_width: space -> most kept groups (e.g. from a fan-in cap).
        layer_min_synapses: layer -> fewest synapses (``Budget.per_layer_min``).
    """

    synapses: int | None = None
    neurons: int | None = None
    channels: int | None = None
    min_width: Mapping[str, int] = field(default_factory=dict)
    max_width: Mapping[str, int] = field(default_factory=dict)
    layer_min_synapses: Mapping[str, int] = field(default_factory=dict)

    def excess(self, totals: Mapping[str, int]) -> dict[str, int]:
        """Limit name -> amount over it, for the exceeded limits only."""
        out = {}
        for name in LIMIT_NAMES:
            limit = getattr(self, name)
            if limit is not None and totals[name] > limit:
                out[name] = int(totals[name] - limit)
        return out


def select_channels(
    costs: ChannelCosts, values: Mapping[str, np.ndarray], limits: ChannelLimits
) -> Keep:
    """Kept groups per space meeting ``limits`` (greedy knapsack, module docstring).

    ``values[space]``: importance per group (>= 0, higher kept first). Raises
    :class:`BudgetError` naming the binding limit when even the minimum widths exceed it.
    """
    keep = costs.full()
    order = {s: i for i, s in enumerate(costs.graph.spaces)}
    _trim_to_max_width(keep, values, limits, costs.graph)
    while excess := limits.excess(costs.totals(keep)):
        choice = _cheapest_removal(costs, keep, values, limits, excess, order)
        if choice is None:
            raise _infeasible(costs, keep, limits, excess)
        keep[choice[0]][choice[1]] = False
    return _fill(costs, keep, values, limits, order)


def _trim_to_max_width(keep: Keep, values, limits: ChannelLimits, graph: ChannelGraph) -> None:
    for space, most in limits.max_width.items():
        floor = limits.min_width.get(space, 1)
        if most < floor:
            raise BudgetError(
                f"the fan-in cap allows at most {most} channels in {space!r}, below its "
                f"minimum width {floor}",
                where="pruning sca",
                field="max_width",
                value=most,
                fix="Lower min_fraction, or use sca+stds (unstructured pruning enforces the cap).",
            )
        ranked = _ranked(values[space])
        keep[space][ranked[most:]] = False


def _ranked(values: np.ndarray) -> np.ndarray:
    """Indices by value descending, ties by lower index."""
    return np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")


def _cheapest_removal(costs, keep, values, limits, excess, order) -> tuple[str, int] | None:
    """The kept group with the least value per weighted saving, or None if none may go."""
    layer_now = costs.layer_synapses(keep)
    best: tuple[float, int, int] | None = None
    for space in costs.graph.spaces:
        saving = costs.savings(keep, space)
        allowed = _removable(keep, space, saving, limits, layer_now)
        if not allowed.any():
            continue
        weighted = _weighted_saving(saving, limits, excess, len(allowed))
        ratio = np.where(weighted > 0, values[space] / np.maximum(weighted, 1e-300), np.inf)
        ratio = np.where(allowed, ratio, np.inf)
        index = int(np.argmin(ratio))
        key = (float(ratio[index]), order[space], index)
        if np.isfinite(key[0]) and (best is None or key < best):
            best = key
    if best is None:
        return None
    return costs.graph.spaces[best[1]], best[2]


def _removable(keep, space, saving: Savings, limits: ChannelLimits, layer_now) -> np.ndarray:
    """Kept groups of ``space`` that may go (min width, per-layer minimum synapses)."""
    allowed = keep[space].copy()
    if int(keep[space].sum()) <= limits.min_width.get(space, 1):
        return np.zeros_like(allowed)
    if limits.layer_min_synapses:
        for name, freed in saving.per_layer.items():
            floor = limits.layer_min_synapses.get(name, 0)
            allowed &= layer_now[name] - freed >= floor
    return allowed


def _weighted_saving(saving: Savings, limits: ChannelLimits, excess, size: int) -> np.ndarray:
    """``sum_j saving_j / limit_j`` over the exceeded limits ``j``."""
    weighted = np.zeros(size, dtype=np.float64)
    per_name = {"synapses": saving.synapses, "neurons": saving.neurons, "channels": saving.channels}
    for name in excess:
        weighted += np.asarray(per_name[name], dtype=np.float64) / max(getattr(limits, name), 1)
    return weighted


def _fill(costs, keep: Keep, values, limits: ChannelLimits, order) -> Keep:
    """Re-add removed groups of positive value, most valuable first, where every limit holds."""
    removed = [
        (-float(values[s][c]), order[s], int(c), s)
        for s in costs.graph.spaces
        for c in np.flatnonzero(~keep[s])
        if values[s][c] > 0
    ]
    for _, _, channel, space in sorted(removed):
        most = limits.max_width.get(space)
        if most is not None and int(keep[space].sum()) >= most:
            continue
        keep[space][channel] = True
        if limits.excess(costs.totals(keep)):
            keep[space][channel] = False
    return keep


def _infeasible(costs, keep, limits: ChannelLimits, excess) -> BudgetError:
    name = next(iter(excess))
    limit = getattr(limits, name)
    actual = costs.totals(keep)[name]
    return BudgetError(
        f"structured pruning cannot meet the {name} limit: at the minimum widths the network "
        f"still has {actual} {name} (limit {limit})",
        where="pruning sca",
        field=name,
        value=limit,
        fix=f"Allow more {name}, lower min_fraction, or use sca+stds "
        "(unstructured pruning inside the kept channels).",
    )


def kept_members(graph: ChannelGraph, keep: Mapping[str, np.ndarray]) -> int:
    """Kept prunable output channels (groups times members)."""
    return sum(int(keep[s].sum()) * graph.members(s) for s in graph.spaces)


def with_channel_limit(limits: ChannelLimits, channels: int) -> ChannelLimits:
    """``limits`` with the kept-channel limit lowered to ``channels``."""
    current = limits.channels if limits.channels is not None else channels
    return replace(limits, channels=int(min(current, channels)))
