"""Fit analysis (layer L2, torch-free): does a network fit a chip allocation, and how?

1. :func:`pack` places every layer's neurons on cores. Whether a set of layer groups fits a
   core is asked of the profile's capacity model (:mod:`neuroprune.capacity`), which costs the
   core from everything on it (the union of its input axons and all its neurons). Cores are
   numbered across chips (``chip = core // chip.cores``); a chip also caps its neurons and, for
   ``row_list`` chips, its shared synapse memory. Several placements are tried (next-fit in
   layer order, first-fit in layer order, first-fit by decreasing layer size) and the one
   with the fewest broken limits, then the fewest cores, is kept. A neuron (or, on
   ``conv_kernel`` chips, a layer) that does not fit even an empty core is placed alone, and
   the recount of its core reports it.
2. Each rule in :data:`FIT_RULES` is a small named function ``rule(ctx) -> list[Finding]``.
3. :func:`check_fit` runs them all and returns a :class:`FitReport`. "Does not fit" is a report
   and an exit code (1), never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from neuroprune.capacity import (
    INPUT,
    CapacityModel,
    Excess,
    Group,
    Load,
    capacity_model,
    sources,
)
from neuroprune.profiles import ChipProfile
from neuroprune.summary import LayerSummary, NetworkSummary


@dataclass(frozen=True)
class Finding:
    """One violated limit: which rule, where, the limit, the actual value and how to fix it."""

    rule: str
    layer: str
    limit: float | int | str
    actual: float | int | str
    hint: str

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "layer": self.layer,
            "limit": self.limit,
            "actual": self.actual,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class CoreLoad:
    """What one core holds after packing, recounted by the capacity model from its content."""

    index: int
    chip: int
    neurons: int
    input_axons: int
    memory_bits: int
    synapses: int
    layers: tuple[str, ...]
    excess: tuple[Excess, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Neurons ``start:stop`` of ``layer`` live on core ``core``."""

    layer: str
    core: int
    start: int
    stop: int


@dataclass(frozen=True)
class Packing:
    """Cores used (in index order), where every neuron lives, and the strategy that won."""

    cores: tuple[CoreLoad, ...]
    placements: tuple[Placement, ...]
    strategy: str = "next_fit"
    cores_per_chip: int = 1

    def core_map(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for p in self.placements:
            cores = out.setdefault(p.layer, [])
            if p.core not in cores:
                cores.append(p.core)
        return out

    def chip_map(self) -> dict[str, list[int]]:
        """Layer -> chips its neurons live on."""
        return {
            layer: sorted({c // self.cores_per_chip for c in cores})
            for layer, cores in self.core_map().items()
        }

    def cores_per_chip_used(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for core in self.cores:
            out[core.chip] = out.get(core.chip, 0) + 1
        return out

    @property
    def chips_used(self) -> int:
        return len({core.chip for core in self.cores})

    def core_of_neuron(self, layer: LayerSummary) -> np.ndarray:
        owner = np.full(layer.neurons, -1, dtype=np.int64)
        for p in self.placements:
            if p.layer == layer.name:
                owner[p.start : p.stop] = p.core
        return owner


@dataclass(frozen=True)
class FitReport:
    """Verdict of :func:`check_fit`. ``fits`` is True iff there are no violations."""

    chip: str
    fits: bool
    violations: tuple[Finding, ...]
    cores_used: int
    cores_allocated: int
    chips_needed: int
    chips_allocated: int
    core_map: dict[str, list[int]]
    utilisation: dict[str, float]
    synapses: int
    neurons: int
    packing: Packing = field(repr=False)
    cores_lower_bound: int = 1

    def as_dict(self) -> dict:
        """JSON-ready dict (report.json ``fit.*``)."""
        return {
            "chip": self.chip,
            "fits": self.fits,
            "cores": self.cores_used,
            "cores_allocated": self.cores_allocated,
            "cores_lower_bound": self.cores_lower_bound,
            "chips": self.chips_needed,
            "chips_allocated": self.chips_allocated,
            "synapses": self.synapses,
            "neurons": self.neurons,
            "violations": [v.as_dict() for v in self.violations],
            "core_map": self.core_map,
            "chip_map": self.packing.chip_map(),
            "cores_per_chip": {str(k): v for k, v in self.packing.cores_per_chip_used().items()},
            "packing": self.packing.strategy,
            "utilisation": self.utilisation,
            "placements": [
                {"layer": p.layer, "core": p.core, "start": p.start, "stop": p.stop}
                for p in self.packing.placements
            ],
            "per_core": [
                {
                    "core": c.index,
                    "chip": c.chip,
                    "neurons": c.neurons,
                    "input_axons": c.input_axons,
                    "memory_bits": c.memory_bits,
                    "synapses": c.synapses,
                    "layers": list(c.layers),
                }
                for c in self.packing.cores
            ],
        }


# --------------------------------------------------------------------------------------------
# Packing


@dataclass
class _OpenCore:
    index: int
    chip: int
    load: Load = field(default_factory=Load)
    groups: list[Group] = field(default_factory=list)


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
            self.put(core, layer, start, stop)
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
    (earlier strategies win ties)."""
    if strategy != "best":
        return pack_with(summary, profile, strategy)
    tried = [pack_with(summary, profile, name) for name in PACKING_STRATEGIES]
    return min(tried, key=lambda p: _packing_cost(summary, profile, p))


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


Rule = Callable[[FitContext], list[Finding]]
FIT_RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    """Register a fit rule under ``name`` (the name findings carry)."""

    def register(fn: Rule) -> Rule:
        FIT_RULES[name] = fn
        return fn

    return register


@rule("neuron_model")
def neuron_model(ctx: FitContext) -> list[Finding]:
    """Every layer's neuron model must be one the chip runs."""
    models = ctx.profile.neuron.models
    return [
        Finding(
            "neuron_model",
            layer.name,
            "/".join(models),
            layer.neuron_model,
            f"use a neuron model the chip runs ({', '.join(models)}), e.g. --neuron if",
        )
        for layer in ctx.summary.layers
        if layer.neuron_model not in models
    ]


@rule("chip_neurons")
def chip_neurons(ctx: FitContext) -> list[Finding]:
    """Neurons on each chip <= chip.neurons_max, and in all <= neurons per chip x chips."""
    limit = ctx.profile.neurons_max
    hint = "remove channels/neurons (sca) or allocate more chips (--chips)"
    out = []
    if ctx.summary.neurons > limit * ctx.chips:
        out.append(Finding("chip_neurons", "network", limit * ctx.chips, ctx.summary.neurons, hint))
    per_chip: dict[int, int] = {}
    for core in ctx.packing.cores:
        per_chip[core.chip] = per_chip.get(core.chip, 0) + core.neurons
    for chip, neurons in sorted(per_chip.items()):
        if neurons > limit:
            out.append(Finding("chip_neurons", f"chip {chip}", limit, neurons, hint))
    return out


@rule("cores")
def cores(ctx: FitContext) -> list[Finding]:
    """Cores used by the packing <= cores allocated; chips used <= chips allocated."""
    used, chips = len(ctx.packing.cores), ctx.packing.chips_used
    hint = "prune harder (lower --budget/--sparsity) or allocate more cores/chips"
    out = []
    if used > ctx.cores:
        out.append(Finding("cores", "network", ctx.cores, used, hint))
    if chips > ctx.chips:
        out.append(Finding("cores", "network (chips)", ctx.chips, chips, hint))
    return out


@rule("core_input_axons")
def core_input_axons(ctx: FitContext) -> list[Finding]:
    """Distinct input axons of every core (union over all it holds) <= the core's limit."""
    return _core_findings(
        ctx,
        "input_axons",
        "core_input_axons",
        "lower this layer's fan-in (prune it, or split the layer)",
    )


@rule("core_memory")
def core_memory(ctx: FitContext) -> list[Finding]:
    """Synaptic memory of every core (costed from everything on it) <= the core's memory."""
    if ctx.model.kind == "conv_kernel":
        return []
    return _core_findings(
        ctx, "memory_bits", "core_memory", "prune this layer or use fewer weight bits"
    )


def _core_findings(ctx: FitContext, resource: str, name: str, hint: str) -> list[Finding]:
    """One finding per core whose recount breaks ``resource`` (such a core holds a neuron, or a
    layer, that does not fit even an empty core)."""
    out = []
    for core in ctx.packing.cores:
        for excess in core.excess:
            if excess.resource == resource:
                where = ",".join(core.layers)
                out.append(
                    Finding(name, where, excess.limit, excess.used, f"core {core.index}: {hint}")
                )
    return out


@rule("fan_in")
def fan_in(ctx: FitContext) -> list[Finding]:
    """Largest fan-in per neuron, in axons (inputs x input copies), <= neuron.fan_in_max."""
    cap = ctx.profile.neuron.fan_in_max
    if cap is None:
        return []
    out = []
    for layer in ctx.summary.layers:
        copies = ctx.model.input_copies(layer)
        actual = layer.max_fan_in * copies
        if actual > cap:
            over = int(np.count_nonzero(layer.fan_in * copies > cap))
            out.append(
                Finding(
                    "fan_in",
                    layer.name,
                    cap,
                    actual,
                    f"{over} neuron(s) over the cap: prune with the fan-in cap on",
                )
            )
    return out


@rule("fan_out")
def fan_out(ctx: FitContext) -> list[Finding]:
    """Destinations per neuron <= neuron.fan_out_max, counted in ``fan_out_unit``.

    Units ``axon``/``core``: distinct cores that a neuron's targets live on (TrueNorth: a neuron
    drives one axon, i.e. one core). Unit ``layer``: distinct destination layers (1 in a chain).
    Inputs of the first layer come from off-chip and are not counted.
    """
    cap = ctx.profile.neuron.fan_out_max
    unit = ctx.profile.neuron.fan_out_unit or "core"
    if cap is None:
        return []
    out = []
    if unit == "layer":
        return (
            out if cap >= 1 else [Finding("fan_out", "network", cap, 1, "chip cannot chain layers")]
        )
    for layer in ctx.summary.layers[1:]:
        worst = fan_out_cores(layer, ctx.packing)
        if worst > cap:
            out.append(
                Finding(
                    "fan_out",
                    layer.name,
                    cap,
                    worst,
                    "targets of one neuron span several cores: add splitter neurons "
                    "or prune so each source feeds one core",
                )
            )
    return out


@rule("chip_memory")
def chip_memory(ctx: FitContext) -> list[Finding]:
    """Chip-level synapse memory (SpiNNaker SDRAM rows), per chip: synapses stored on the
    chip's cores x bits <= chip.memory_bits."""
    limit = ctx.profile.chip_memory_bits
    if limit is None:
        return []
    per_chip: dict[int, int] = {}
    for core in ctx.packing.cores:
        per_chip[core.chip] = per_chip.get(core.chip, 0) + core.synapses
    out = []
    for chip, synapses in sorted(per_chip.items()):
        need = ctx.model.chip_memory_bits(synapses)
        if need is not None and need > limit:
            out.append(
                Finding(
                    "chip_memory",
                    f"chip {chip}",
                    limit,
                    need,
                    "prune to fewer synapses or add chips",
                )
            )
    return out


@rule("weight_bits")
def weight_bits(ctx: FitContext) -> list[Finding]:
    """Quantized weight width <= the chip's stored width (float layers are not judged yet)."""
    cap = ctx.profile.weights.bits
    return [
        Finding(
            "weight_bits",
            layer.name,
            cap,
            layer.weight_bits,
            f"quantize to the chip format ({ctx.profile.weights.format}, {cap} bits)",
        )
        for layer in ctx.summary.layers
        if layer.weight_bits is not None and layer.weight_bits > cap
    ]


@rule("distinct_weights")
def distinct_weights(ctx: FitContext) -> list[Finding]:
    """Distinct nonzero weight values per neuron <= weights.distinct_values_per_neuron."""
    cap = ctx.profile.weights.distinct_values_per_neuron
    if cap is None:
        return []
    return [
        Finding(
            "distinct_weights",
            layer.name,
            cap,
            layer.distinct_values_max,
            "quantize with the chip's per-neuron value table (e.g. ternary)",
        )
        for layer in ctx.summary.layers
        if layer.distinct_values_max is not None and layer.distinct_values_max > cap
    ]


@rule("layer_memory")
def layer_memory(ctx: FitContext) -> list[Finding]:
    """Per-layer kernel and neuron-state memory on ``conv_kernel`` chips (DYNAP-CNN), from the
    capacity model's recount of each core (one whole layer per core):
    kernel ``c_in * 2^(ceil log2(kh*kw) + ceil log2 c_out)`` entries of ``w`` bits,
    neurons ``c_out * 2^(ceil log2 H_out + ceil log2 W_out)``; a dense layer is a 1x1 conv."""
    if ctx.model.kind != "conv_kernel":
        return []
    out = []
    for core in ctx.packing.cores:
        for excess in core.excess:
            if excess.resource == "memory_bits":
                out.append(
                    Finding(
                        "layer_memory",
                        ",".join(core.layers),
                        excess.limit,
                        excess.used,
                        "remove channels (sca) or shrink the kernel",
                    )
                )
            elif excess.resource == "neurons":
                out.append(
                    Finding(
                        "layer_neurons",
                        ",".join(core.layers),
                        excess.limit,
                        excess.used,
                        "remove channels or lower the feature-map size",
                    )
                )
    return out


def check_fit(
    summary: NetworkSummary,
    profile: ChipProfile,
    *,
    chips: int | None = None,
    cores: int | None = None,
    strategy: str = "best",
) -> FitReport:
    """Judge ``summary`` against ``profile`` for an allocation of ``chips`` or ``cores``.

    Default allocation: one chip. ``cores`` (if given) caps the cores; ``chips`` multiplies the
    chip-level limits. Returns a :class:`FitReport`; never raises for "does not fit".
    """
    chips_alloc = chips or (math.ceil(cores / profile.cores) if cores else 1)
    cores_alloc = cores or chips_alloc * profile.cores
    model = capacity_model(profile)
    packing = pack(summary, profile, strategy)
    ctx = FitContext(summary, profile, packing, chips_alloc, cores_alloc, model)
    violations = tuple(f for fn in FIT_RULES.values() for f in fn(ctx))
    chips_needed = max(packing.chips_used, math.ceil(summary.neurons / profile.neurons_max))
    return FitReport(
        chip=profile.id,
        fits=not violations,
        violations=violations,
        cores_used=len(packing.cores),
        cores_allocated=cores_alloc,
        chips_needed=chips_needed,
        chips_allocated=chips_alloc,
        core_map=packing.core_map(),
        utilisation=_utilisation(model, packing),
        synapses=summary.synapses(ctx.shared),
        neurons=summary.neurons,
        packing=packing,
        cores_lower_bound=model.cores_lower_bound(summary),
    )


def _utilisation(model: CapacityModel, packing: Packing) -> dict[str, float]:
    """Fractions of the used cores' (and chips') capacity: neurons, input axons, memory."""
    n = max(len(packing.cores), 1)
    out = {"neurons": sum(k.neurons for k in packing.cores) / (n * model.neurons_max)}
    if model.input_axons_max:
        out["input_axons"] = sum(k.input_axons for k in packing.cores) / (n * model.input_axons_max)
    if model.memory_bits_max:
        out["synapse_memory"] = sum(k.memory_bits for k in packing.cores) / (
            n * model.memory_bits_max
        )
    chip_limit = model.profile.chip_memory_bits
    need = model.chip_memory_bits(sum(k.synapses for k in packing.cores))
    if chip_limit and need is not None:
        out["chip_memory"] = need / (chip_limit * max(packing.chips_used, 1))
    return {k: round(v, 6) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Capacity of an allocation for a given network shape

CAPACITY_RULES = ("cores", "core_memory", "core_input_axons", "chip_memory", "chip_neurons")


def thinned(
    summary: NetworkSummary, density: float, seed: int = 0, cap: int | None = None
) -> NetworkSummary:
    """A copy of ``summary`` keeping each synapse with probability ``density`` (seeded), and
    at most ``cap`` (random) synapses per neuron when ``cap`` is given (as pruning with the
    budget's fan-in cap does)."""
    rng = np.random.default_rng(seed)
    layers = []
    for layer in summary.layers:
        conn = layer.connectivity.copy()
        keep = rng.random(conn.nnz) < density
        if cap is not None:
            rows = np.repeat(np.arange(layer.neurons), np.diff(conn.indptr))
            order = np.lexsort((rng.random(conn.nnz), ~keep, rows))
            rank = np.empty(conn.nnz, dtype=np.int64)
            rank[order] = np.arange(conn.nnz) - conn.indptr[rows[order]]
            keep &= rank < cap
        conn.data = conn.data & keep
        conn.eliminate_zeros()
        layers.append(replace(layer, connectivity=conn, kernel_nonzeros=int(conn.nnz)))
    return replace(summary, layers=tuple(layers))


def allocation_capacity(
    summary: NetworkSummary,
    profile: ChipProfile,
    *,
    chips: int | None = None,
    cores: int | None = None,
    margin: float = 0.97,
) -> int | None:
    """Most synapses this network shape keeps while fitting the allocation's resources.

    Bisection on the density ``d`` of a uniformly thinned copy (:func:`thinned`, with the
    per-neuron input cap the budget will impose, :meth:`CapacityModel.neuron_input_cap`): the
    largest ``d`` whose copy breaks none of :data:`CAPACITY_RULES` under next-fit packing (a
    placement the final check can only improve on) gives ``B = margin * synapses``.
    Unlike cores x synapses-per-core, this counts block headers, word alignment and partly
    filled lists of the real layer shapes. ``None`` when even the dense network fits (the
    allocation does not bind); 0 when not even a nearly empty network fits.
    """

    cap = capacity_model(profile).neuron_input_cap()

    def fits(density: float) -> tuple[bool, int]:
        net = thinned(summary, density, cap=cap)
        report = check_fit(net, profile, chips=chips, cores=cores, strategy="next_fit")
        broken = {v.rule for v in report.violations} & set(CAPACITY_RULES)
        return not broken, net.synapses(profile.conv_weight_sharing)

    if fits(1.0)[0]:
        return None
    lo, hi, best = 0.0, 1.0, 0
    for _ in range(12):
        mid = (lo + hi) / 2
        ok, synapses = fits(mid)
        if ok:
            lo, best = mid, synapses
        else:
            hi = mid
    return int(best * margin)


# --------------------------------------------------------------------------------------------
# Multi-chip partition: where layers live and the spikes that cross chip boundaries


def chip_traffic(
    summary: NetworkSummary, packing: Packing, spikes_per_sample: Sequence[np.ndarray]
) -> dict:
    """Layer -> chips, cores per chip, and spikes per sample crossing chip boundaries.

    ``spikes_per_sample[k]``: mean spike count per sample of each neuron of layer ``k`` (from a
    simulation). A spike of source neuron ``j`` (on chip ``c_j``) is sent once to every other
    chip that holds a target of ``j`` in the reading layer:

        crossing = sum_j r_j * |chips(targets of j) - {c_j}|   (spikes / sample)

    The sources of a layer are the layer before it, or its ``sources`` (the layers whose spikes
    a residual ADD sums, one block of input columns each). Links ``"a->b"`` sum the same spikes
    per ordered chip pair. Spikes into the first layer come from off-chip and are not counted.
    """
    chip_of = {}
    for layer in summary.layers:
        owner = packing.core_of_neuron(layer)
        chip_of[layer.name] = np.where(owner >= 0, owner // packing.cores_per_chip, -1)
    index = {layer.name: k for k, layer in enumerate(summary.layers)}
    per_layer: dict[str, float] = {}
    links: dict[str, float] = {}
    skipped: list[str] = []
    for k, layer in enumerate(summary.layers):
        blocks = _source_blocks(summary, k)
        if not blocks:
            continue
        if sum(summary.layers[index[name]].neurons for name in blocks) != layer.inputs:
            skipped.append(layer.name)  # columns that are not the sources' neurons
            continue
        csc, offset, total = layer.connectivity.tocsc(), 0, 0.0
        for name in blocks:
            rates = np.asarray(spikes_per_sample[index[name]], dtype=np.float64)
            homes = chip_of[name]
            for j in range(len(rates)):
                rows = csc.indices[csc.indptr[offset + j] : csc.indptr[offset + j + 1]]
                home = int(homes[j])
                for chip in {int(c) for c in chip_of[layer.name][rows]} - {home}:
                    key = f"{home}->{chip}"
                    links[key] = links.get(key, 0.0) + float(rates[j])
                    total += float(rates[j])
            offset += len(rates)
        per_layer[layer.name] = round(total, 6)
    return {
        "chips_used": packing.chips_used,
        "layer_chips": packing.chip_map(),
        "cores_per_chip": {str(k): v for k, v in packing.cores_per_chip_used().items()},
        "inter_chip_spikes_per_sample": round(sum(per_layer.values()), 6),
        "per_layer": per_layer,
        "links": {k: round(v, 6) for k, v in sorted(links.items())},
        "not_counted": skipped,
    }


def _source_blocks(summary: NetworkSummary, k: int) -> tuple[str, ...]:
    """The layers whose neurons are layer ``k``'s input columns, block after block (``()``:
    the network input)."""
    layer = summary.layers[k]
    if layer.sources:
        return tuple(layer.sources)
    return (summary.layers[k - 1].name,) if k > 0 else ()
