"""Packing: every layer's neurons onto cores, several strategies, the fewest broken limits
and then the fewest cores kept.
"""

from __future__ import annotations

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

    def __init__(self, summary: NetworkSummary, model: CapacityModel, *, first_fit: bool):
        self.summary = summary
        self.model = model
        self.profile = model.profile
        self.first_fit = first_fit
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

    def holds(self, core: _OpenCore, group: Group) -> bool:
        load = self.model.group_load(group)
        return self.model.holds(core.load + load) and self._chip_holds(core.chip, load)

    def largest(self, core: _OpenCore, layer: LayerSummary, start: int) -> int:
        """Largest ``stop`` with neurons ``start:stop`` held by ``core`` (binary search; every
        cost grows with ``stop``); ``start`` when not even one neuron fits."""
        source = self.sources[layer.name]
        if not self.model.splits_layers:
            whole = Group(layer, source, 0, layer.neurons)
            return layer.neurons if self.holds(core, whole) else start
        lo, hi = start, min(layer.neurons, start + self.model.neurons_max)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.holds(core, Group(layer, source, start, mid)):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def put(self, core: _OpenCore, layer: LayerSummary, start: int, stop: int) -> None:
        group = Group(layer, self.sources[layer.name], start, stop)
        load = self.model.group_load(group)
        core.load = core.load + load
        core.groups.append(group)
        state = self.chips[core.chip]
        state.neurons += load.neurons
        state.synapses += load.synapses
        if core.load.neurons >= self.model.neurons_max:
            self.not_full.remove(core)
        self.placements.append(Placement(layer.name, core.index, start, stop))

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
        """On chips that limit fan-out in cores, end the group where no input of the layer
        feeds neurons on both sides of the cut (so each source keeps its targets in one core):
        the largest clean cut in ``(start, stop]``. A partly used core takes nothing when there
        is none; an empty core keeps ``stop`` (the split is unavoidable)."""
        limited = self.model.fan_out_cores() is not None
        if not limited or stop in (start, layer.neurons) or self.sources[layer.name] == INPUT:
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
        whole = self.model.group_load(Group(layer, self.sources[layer.name], 0, layer.neurons))
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

    def freeze(self, strategy: str) -> Packing:
        used = sorted((c for c in self.cores if c.groups), key=lambda c: c.index)
        loads = tuple(self._core_load(c) for c in used)
        return Packing(loads, tuple(self.placements), strategy, self.profile.cores)

    def _core_load(self, core: _OpenCore) -> CoreLoad:
        usage = self.model.usage(core.load)
        layers = tuple(dict.fromkeys(g.layer.name for g in core.groups))
        return CoreLoad(
            core.index,
            core.chip,
            usage.neurons,
            usage.input_axons,
            usage.memory_bits or 0,
            core.load.synapses,
            layers,
            tuple(self.model.excess(usage)),
        )


PACKING_STRATEGIES = ("next_fit", "first_fit", "first_fit_decreasing")
"""Placements :func:`pack` tries: next-fit in layer order (only the last opened core takes
more neurons), first-fit in layer order (any open core), first-fit by decreasing layer size."""


def pack_with(summary: NetworkSummary, profile: ChipProfile, strategy: str) -> Packing:
    """Place all neurons on cores with one strategy of :data:`PACKING_STRATEGIES`."""
    model = capacity_model(profile)
    packer = _Packer(summary, model, first_fit=strategy != "next_fit")
    layers = list(summary.layers)
    if strategy == "first_fit_decreasing":
        layers.sort(key=lambda layer: -layer.neurons)
    for layer in layers:
        packer.place_layer(layer)
    return packer.freeze(strategy)


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
    tried = [pack_with(summary, profile, name) for name in PACKING_STRATEGIES]
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
    if cap is not None and (profile.neuron.fan_out_unit or "core") != "layer":
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
