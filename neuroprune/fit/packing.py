"""Packing: every layer's neurons onto cores, several strategies, the fewest broken limits
and then the fewest cores kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from neuroprune.chip.capacity import (
    INPUT,
    CapacityModel,
    Excess,
    Group,
    Load,
    capacity_model,
    layer_entries,
    sources,
)
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.summary import LayerSummary, NetworkSummary
from neuroprune.fit.core_matching import match_cores
from neuroprune.fit.report import CoreLoad, Packing, Placement, _OpenCore


@dataclass
class _ChipState:
    cores: int = 0
    neurons: int = 0
    synapses: int = 0


class _Packer:
    """Places groups of neurons on cores, asking the capacity model whether a core holds them."""

    def __init__(
        self,
        summary: NetworkSummary,
        model: CapacityModel,
        *,
        first_fit: bool,
        clean_cuts: bool = False,
        by_position: bool = False,
    ):
        self.summary = summary
        self.model = model
        self.profile = model.profile
        self.first_fit = first_fit
        self.clean_cuts = clean_cuts or model.fan_out_cores() is not None
        """Cut a layer only where no input feeds both sides: required where fan-out is limited
        in cores; where it is met by copies, a strategy that keeps copies few."""
        self.by_position = by_position
        """Place a conv layer's neurons position by position (every channel of one output
        position together, :func:`position_order`) instead of channel by channel."""
        self.orders: dict[str, np.ndarray] = {}
        """Layer -> the order its neurons are placed in (placed index -> the layer's index),
        for layers not placed in index order."""
        self.slots: dict[str, np.ndarray] = {}
        """Layer -> neuron slots ``d_j`` of each of its neurons, where fan-out is met by copies
        in the source core (:meth:`CapacityModel.source_slots`); set before the layer is
        placed."""
        self.sources = sources(summary)
        self.cores: list[_OpenCore] = []
        self.not_full: list[_OpenCore] = []  # cores with room for another neuron
        self.chips: list[_ChipState] = [_ChipState()]
        self.placements: list[Placement] = []
        self._spans: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -- cores and chips ----------------------------------------------------------------------
    def _open_core(self, *, new_chip: bool = False) -> _OpenCore:
        if new_chip or self.chips[-1].cores >= self.profile.cores:
            self.chips.append(_ChipState())
        chip = len(self.chips) - 1
        core = _OpenCore(chip * self.profile.cores + self.chips[chip].cores, chip)
        self.chips[chip].cores += 1
        self.cores.append(core)
        self.not_full.append(core)
        return core

    def _drop_if_empty(self, core: _OpenCore) -> None:
        if not core.groups and self.cores and self.cores[-1] is core:
            self.cores.pop()
            self.not_full.remove(core)
            self.chips[core.chip].cores -= 1

    def _chip_holds(self, chip: int, load: Load) -> bool:
        return self._state_holds(self.chips[chip], load)

    def _state_holds(self, state: _ChipState, load: Load) -> bool:
        """Does a chip with ``state`` still hold ``load`` (neurons, shared synapse memory)?"""
        if state.neurons + load.neurons > self.profile.neurons_max:
            return False
        limit = self.profile.chip_memory_bits
        need = self.model.chip_memory_bits(state.synapses + load.synapses)
        return limit is None or need is None or need <= limit

    def group(self, layer: LayerSummary, start: int, stop: int) -> Group:
        """Neurons ``start:stop`` of ``layer``, with their neuron slots where copies count."""
        return Group(layer, self.sources[layer.name], start, stop, self.slots.get(layer.name))

    def holds(self, core: _OpenCore, group: Group) -> bool:
        load = self.model.group_load(group)
        return self.model.holds(core.load + load) and self._chip_holds(core.chip, load)

    def largest(self, core: _OpenCore, layer: LayerSummary, start: int) -> int:
        """Largest ``stop`` with neurons ``start:stop`` held by ``core`` (binary search; every
        cost grows with ``stop``); ``start`` when not even one neuron fits."""
        if not self.model.splits_layers:
            whole = self.group(layer, 0, layer.neurons)
            return layer.neurons if self.holds(core, whole) else start
        lo, hi = start, min(layer.neurons, start + self.model.neurons_max)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.holds(core, self.group(layer, start, mid)):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def put(self, core: _OpenCore, layer: LayerSummary, start: int, stop: int) -> None:
        group = self.group(layer, start, stop)
        load = self.model.group_load(group)
        core.load = core.load + load
        core.groups.append(group)
        state = self.chips[core.chip]
        state.neurons += load.neurons
        state.synapses += load.synapses
        if core.load.neurons >= self.model.neurons_max:
            self.not_full.remove(core)
        order = self.orders.get(layer.name)
        if order is None:
            self.placements.append(Placement(layer.name, core.index, start, stop))
            return
        for first, last in _runs(np.sort(order[start:stop])):
            self.placements.append(Placement(layer.name, core.index, first, last))

    def view(self, layer: LayerSummary) -> LayerSummary:
        """``layer`` with its neurons in placing order (conv layers by position where asked,
        :func:`position_order`; its neuron slots follow); ``layer`` itself otherwise."""
        order = position_order(layer) if self.by_position else None
        if order is None:
            return layer
        self.orders[layer.name] = order
        if layer.name in self.slots:
            self.slots[layer.name] = self.slots[layer.name][order]
        return permute_neurons(layer, order)

    # -- layers -------------------------------------------------------------------------------
    def candidates(self) -> list[_OpenCore]:
        if self.profile.core.layers_per_core == "one":
            return []
        if self.first_fit:
            return list(self.not_full)
        return [c for c in self.cores[-1:] if c in self.not_full]

    def place_layer(self, layer: LayerSummary) -> None:
        """Place ``layer``'s neurons in order; a core that refuses a group of this layer is not
        asked again for the same layer (keeps first-fit linear in the number of cores)."""
        layer = self.view(layer)
        start, first = 0, True
        refused: set[int] = set()
        while start < layer.neurons:
            options = self.candidates() if not first else self._whole_layer_cores(layer)
            stop, core = start, None
            for core in (c for c in options if c.index not in refused):
                stop = self._clean_cut(core, layer, start, self.largest(core, layer, start))
                if stop > start:
                    break
                refused.add(core.index)
            if stop == start:
                core, stop = self._fresh_core(layer, start)
            self.put(core, layer, start, stop)  # type: ignore[arg-type]  # set above
            start, first = stop, False

    def _clean_cut(self, core: _OpenCore, layer: LayerSummary, start: int, stop: int) -> int:
        """With clean cuts (chips that limit fan-out in cores; a strategy where fan-out costs
        copies), end the group where no input of the layer feeds neurons on both sides of the
        cut (so each source keeps its targets in one core): the largest clean cut in
        ``(start, stop]``. A partly used core takes nothing when there is none; an empty core
        keeps ``stop`` (the split is unavoidable)."""
        if (
            not self.clean_cuts
            or stop in (start, layer.neurons)
            or self.sources[layer.name] == INPUT
        ):
            return stop
        first, last = self._target_span(layer)
        spans = (first >= start) & (first < last)
        size = layer.neurons + 2
        marks = np.bincount(first[spans] + 1, minlength=size) - np.bincount(
            last[spans] + 1, minlength=size
        )
        clean = np.flatnonzero(np.cumsum(marks)[start + 1 : stop + 1] == 0)
        if clean.size:
            return start + 1 + int(clean[-1])
        return stop if not core.groups else start

    def _target_span(self, layer: LayerSummary) -> tuple[np.ndarray, np.ndarray]:
        """Per input of ``layer``: its first and last target neuron (cached per layer)."""
        if layer.name not in self._spans:
            coo = layer.connectivity.tocoo()
            first = np.full(layer.inputs, layer.neurons, dtype=np.int64)
            last = np.full(layer.inputs, -1, dtype=np.int64)
            np.minimum.at(first, coo.col, coo.row)
            np.maximum.at(last, coo.col, coo.row)
            self._spans[layer.name] = (first, last)
        return self._spans[layer.name]

    def _whole_layer_cores(self, layer: LayerSummary) -> list[_OpenCore]:
        """Cores for a layer's first group: where the whole layer fits, if it fits an empty
        core at all (splitting it would spread its neurons, and the fan-out of the layer before,
        over more cores than needed); otherwise the usual candidates."""
        options = self.candidates()
        whole = self.model.group_load(self.group(layer, 0, layer.neurons))
        if not (self.model.holds(whole) and self._state_holds(_ChipState(), whole)):
            return options
        return [c for c in options if self.largest(c, layer, 0) == layer.neurons]

    def _fresh_core(self, layer: LayerSummary, start: int) -> tuple[_OpenCore, int]:
        """A new core for neurons from ``start``; on a new chip when the current chip's limits
        block it; alone (one neuron, or the whole layer) when not even an empty core holds it."""
        core = self._open_core()
        stop = self.largest(core, layer, start)
        if stop == start and self.chips[core.chip].neurons:
            self._drop_if_empty(core)
            core = self._open_core(new_chip=True)
            stop = self.largest(core, layer, start)
        if stop == start:
            stop = start + 1 if self.model.splits_layers else layer.neurons
        return core, self._clean_cut(core, layer, start, stop)

    def rows_per_core(self, layer: LayerSummary) -> list[np.ndarray]:
        """The neurons of ``layer`` on each core it is placed on (so far)."""
        rows: dict[int, list[np.ndarray]] = {}
        for p in self.placements:
            if p.layer == layer.name:
                rows.setdefault(p.core, []).append(np.arange(p.start, p.stop))
        return [np.concatenate(parts) for parts in rows.values()]

    def freeze(self, strategy: str) -> Packing:
        """The packing. Where layers were placed last first, cores are renumbered within each
        chip in network order (the core holding the first layer's first neurons first) and
        placements listed in network order, as the other chips report them."""
        used = sorted((c for c in self.cores if c.groups), key=lambda c: c.index)
        loads = tuple(self._core_load(c) for c in used)
        placements = self.placements
        if self.model.copies_in_source_core:
            rank = {layer.name: i for i, layer in enumerate(self.summary.layers)}
            placements = sorted(placements, key=lambda p: (rank[p.layer], p.start))
            number = self._network_order_numbers(placements, loads)
            loads = tuple(
                sorted(
                    (
                        dataclasses.replace(
                            c,
                            index=number[c.index],
                            layers=tuple(sorted(c.layers, key=rank.__getitem__)),
                        )
                        for c in loads
                    ),
                    key=lambda c: c.index,
                )
            )
            placements = [dataclasses.replace(p, core=number[p.core]) for p in placements]
        return Packing(loads, tuple(placements), strategy, self.profile.cores)

    @staticmethod
    def _network_order_numbers(placements: list[Placement], loads: tuple[CoreLoad, ...]):
        """Old core index -> new: within each chip, the chip's indices in the order its cores
        first appear in ``placements`` (network order)."""
        first: dict[int, int] = {}
        for p in placements:
            first.setdefault(p.core, len(first))
        number: dict[int, int] = {}
        for chip in {c.chip for c in loads}:
            cores = sorted((c.index for c in loads if c.chip == chip), key=first.__getitem__)
            for old, new in zip(cores, sorted(cores), strict=True):
                number[old] = new
        return number

    def _core_load(self, core: _OpenCore) -> CoreLoad:
        usage = self.model.usage(core.load)
        layers = tuple(dict.fromkeys(g.layer.name for g in core.groups))
        copies = 0
        if self.model.copies_in_source_core:
            copies = core.load.neurons - sum(g.neurons for g in core.groups)
        return CoreLoad(
            core.index,
            core.chip,
            usage.neurons,
            usage.input_axons,
            usage.memory_bits or 0,
            core.load.synapses,
            layers,
            tuple(self.model.excess(usage)),
            copies,
        )


def position_order(layer: LayerSummary) -> np.ndarray | None:
    """The neurons of a conv layer position by position: placed index ``k = p*C + o`` is the
    layer's neuron ``o*P + p`` (channel ``o`` of ``C``, output position ``p`` of ``P = H*W``),
    so that a core's neurons share one receptive field (Eedn's tiles: a spatial patch with its
    filters). None for a dense layer."""
    if layer.kind != "conv" or len(layer.out_shape) != 3:
        return None
    channels = int(layer.out_shape[0])
    positions = layer.neurons // max(channels, 1)
    return np.arange(layer.neurons).reshape(channels, positions).T.ravel()


def permute_neurons(layer: LayerSummary, order: np.ndarray) -> LayerSummary:
    """``layer`` with neuron ``k`` the layer's neuron ``order[k]`` (every per-neuron matrix)."""
    return dataclasses.replace(
        layer,
        connectivity=layer.connectivity[order],
        negative=None if layer.negative is None else layer.negative[order],
        entries=None if layer.entries is None else layer.entries[order],
    )


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Sorted ``indices`` as ``[(start, stop), ...]`` runs of consecutive integers."""
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    return [(int(run[0]), int(run[-1]) + 1) for run in np.split(indices, breaks) if run.size]


PACKING_STRATEGIES = ("next_fit", "first_fit", "first_fit_decreasing")
"""Placements :func:`pack` tries: next-fit in layer order (only the last opened core takes
more neurons), first-fit in layer order (any open core), first-fit by decreasing layer size."""


COPIES_STRATEGIES = tuple(
    fit + cuts + order
    for order in ("", "_by_position")
    for cuts in ("", "_clean_cuts")
    for fit in ("next_fit", "first_fit")
)
"""Placements :func:`pack` tries where fan-out is met by copies in the source core: layers from
the last to the first (a layer's copies depend on where its consumer sits), next-fit or
first-fit, cutting a layer anywhere or only where no input feeds both sides (fewer copies in
the layer before, perhaps more cores), conv neurons in index order (channel by channel) or
by position (:func:`position_order`)."""


def strategies(profile: ChipProfile, summary: NetworkSummary | None = None) -> tuple[str, ...]:
    """The strategies :func:`pack` tries for ``profile`` (for ``summary``: without the
    position orders where it has no conv layer, which they would place as the others do)."""
    if not capacity_model(profile).copies_in_source_core:
        return PACKING_STRATEGIES
    if summary is not None and all(position_order(x) is None for x in summary.layers):
        return tuple(name for name in COPIES_STRATEGIES if not name.endswith("_by_position"))
    return COPIES_STRATEGIES


def pack_with(summary: NetworkSummary, profile: ChipProfile, strategy: str) -> Packing:
    """Place all neurons on cores with one strategy of :data:`PACKING_STRATEGIES` (or
    :data:`COPIES_STRATEGIES`).

    Where fan-out is met by copies in the source core, layers are placed from the last to the
    first: once layer ``l+1`` sits on its cores, each neuron ``j`` of layer ``l`` takes
    ``d_j`` neuron slots in its own core (:meth:`CapacityModel.source_slots`: one per axon it
    drives on the cores of ``l+1``), and layer ``l`` is placed with those weights, so every
    core's neuron slots ``sum_j d_j <= neurons per core``. The last layer's outputs leave the
    chip and take one slot each."""
    model = capacity_model(profile)
    packer = _Packer(
        summary,
        model,
        first_fit=not strategy.startswith("next_fit"),
        clean_cuts="_clean_cuts" in strategy,
        by_position=strategy.endswith("_by_position"),
    )
    layers = list(summary.layers)
    if model.copies_in_source_core:
        consumer = None
        for layer in reversed(layers):
            if consumer is not None:
                rows = packer.rows_per_core(consumer)
                packer.slots[layer.name] = model.source_slots(consumer, rows)
            packer.place_layer(layer)
            consumer = layer
        return packer.freeze(strategy)
    if strategy == "first_fit_decreasing":
        layers.sort(key=lambda layer: -layer.neurons)
    for layer in layers:
        packer.place_layer(layer)
    return packer.freeze(strategy)


def neuron_copies(
    summary: NetworkSummary, profile: ChipProfile, packing: Packing
) -> dict[str, int]:
    """Copies each layer's neurons need in ``packing`` where fan-out is met by copies in the
    source core: ``sum_j (d_j - 1)`` over the layer's neurons, ``d_j`` from where its consumer
    sits (:meth:`CapacityModel.source_slots`); the last layer needs none. Empty where copies
    are not modelled."""
    model = capacity_model(profile)
    if not model.copies_in_source_core:
        return {}
    out = {summary.layers[-1].name: 0} if summary.layers else {}
    for layer, consumer in zip(summary.layers, summary.layers[1:], strict=False):
        owner = packing.core_of_neuron(consumer)
        rows = [np.flatnonzero(owner == core) for core in np.unique(owner[owner >= 0])]
        out[layer.name] = int((model.source_slots(consumer, rows) - 1).sum())
    return {layer.name: out[layer.name] for layer in summary.layers}


def pack(summary: NetworkSummary, profile: ChipProfile, strategy: str = "best") -> Packing:
    """Place all neurons on cores. ``best`` tries every strategy and keeps the packing with the
    fewest broken per-core limits and fan-out violations, then the fewest cores and chips
    (earlier strategies win ties). A chip whose cores differ in memory (per-core tables of
    ``conv_kernel``, Speck) gets Sinabs' matching instead (:func:`matched_packing`)."""
    matched = matched_packing(summary, profile)
    if matched is not None:
        return matched
    if strategy != "best":
        return pack_with(summary, profile, strategy)
    tried = [pack_with(summary, profile, name) for name in strategies(profile, summary)]
    return min(tried, key=lambda p: _packing_cost(summary, profile, p))


MATCHING = "sinabs_matching"


def matched_packing(summary: NetworkSummary, profile: ChipProfile) -> Packing | None:
    """One whole layer per core, matched to cores as Sinabs' ``get_valid_mapping`` does
    (:mod:`neuroprune.fit.core_matching`): a layer goes only to a core whose kernel and neuron
    memories both hold it. A layer the matching leaves without a core (Sinabs: "No valid
    mapping found") is put on the free core it overflows least, with its excess recorded, so
    the verdict is "does not fit". ``None`` where the profile has no per-core tables or the
    network has more layers than the chip has cores (the usual packing then reports it)."""
    encoding = profile.core.encoding
    kernels, neurons = encoding.core_kernel_entries, encoding.core_neuron_entries
    if kernels is None or neurons is None or len(summary.layers) > len(kernels):
        return None
    model = capacity_model(profile)
    needs = [layer_entries(layer) for layer in summary.layers]
    cores = match_cores(needs, kernels, neurons)
    free = [c for c in range(len(kernels)) if c not in cores]
    for i, core in enumerate(cores):
        if core is None:
            cores[i] = min(free, key=lambda c: (_overflows(needs[i], kernels[c], neurons[c]), c))
            free.remove(cores[i])  # type: ignore[arg-type]
    source = sources(summary)
    loads, placements = [], []
    for layer, need, core in zip(summary.layers, needs, cores, strict=True):
        index = int(core)  # type: ignore[arg-type]  # every layer has one now
        load = model.group_load(Group(layer, source[layer.name], 0, layer.neurons))
        usage = model.usage(load)
        excess = [e for e in model.excess(usage) if e.resource not in ("neurons", "memory_bits")]
        bits = model.memory_bits(load) or 0
        if need[0] > kernels[index]:
            excess.append(Excess("memory_bits", int(bits), int(kernels[index]) * bits // need[0]))
        if need[1] > neurons[index]:
            excess.append(Excess("neurons", int(need[1]), int(neurons[index])))
        loads.append(
            CoreLoad(
                index,
                index // profile.cores,
                usage.neurons,
                usage.input_axons,
                bits,
                load.synapses,
                (layer.name,),
                tuple(excess),
            )
        )
        placements.append(Placement(layer.name, index, 0, layer.neurons))
    loads.sort(key=lambda c: c.index)
    return Packing(tuple(loads), tuple(placements), MATCHING, profile.cores)


def _overflows(need: tuple[int, int], kernel_max: int, neuron_max: int) -> int:
    return int(need[0] > kernel_max) + int(need[1] > neuron_max)


def _packing_cost(summary: NetworkSummary, profile: ChipProfile, packing: Packing):
    broken = sum(len(core.excess) for core in packing.cores)
    cap = profile.neuron.fan_out_max
    fan_out = 0
    limited = (profile.neuron.fan_out_unit or "core") != "layer"
    if cap is not None and limited and not capacity_model(profile).copies_in_source_core:
        fan_out = sum(fan_out_cores(layer, packing) > cap for layer in summary.layers[1:])
    return (broken, fan_out, len(packing.cores), packing.chips_used)


def fan_out_cores(layer: LayerSummary, packing: Packing) -> int:
    """Most distinct cores that one input of ``layer`` drives (its targets' cores)."""
    owner = packing.core_of_neuron(layer)
    csc = layer.connectivity.tocsc()
    worst = 0
    for col in range(layer.inputs):
        rows = csc.indices[csc.indptr[col] : csc.indptr[col + 1]]
        if rows.size:
            worst = max(worst, len(np.unique(owner[rows])))
    return worst


# --------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class FitContext:
    summary: NetworkSummary
    profile: ChipProfile
    packing: Packing
    chips: int
    cores: int
    model: CapacityModel

    @property
    def shared(self) -> bool:
        return self.profile.conv_weight_sharing
