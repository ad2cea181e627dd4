"""Fit analysis (layer L2, torch-free): does a network fit a chip allocation, and how?

1. :func:`pack` places every layer's neurons on cores, first-fit in layer order: a core takes
   consecutive neurons while its neuron count, distinct input axons and synaptic memory stay
   within the profile's per-core limits (``layers_per_core: one`` opens a new core per layer).
   A neuron that cannot fit even an empty core is recorded as unplaceable.
2. Each rule in :data:`FIT_RULES` is a small named function ``rule(ctx) -> list[Finding]``.
3. :func:`check_fit` runs them all and returns a :class:`FitReport`. "Does not fit" is a report
   and an exit code (1), never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from neuroprune.memory import (
    chip_memory_bits,
    conv_kernel_entries,
    conv_neuron_entries,
    core_memory_bits,
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
    """What one core holds after packing."""

    index: int
    neurons: int
    input_axons: int
    memory_bits: int
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Placement:
    """Neurons ``start:stop`` of ``layer`` live on core ``core``."""

    layer: str
    core: int
    start: int
    stop: int


@dataclass(frozen=True)
class Packing:
    cores: tuple[CoreLoad, ...]
    placements: tuple[Placement, ...]
    unplaceable: tuple[tuple[str, int, str], ...]  # (layer, neuron index, reason)

    def core_map(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for p in self.placements:
            cores = out.setdefault(p.layer, [])
            if p.core not in cores:
                cores.append(p.core)
        return out

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

    def as_dict(self) -> dict:
        """JSON-ready dict (report.json ``fit.*``)."""
        return {
            "chip": self.chip,
            "fits": self.fits,
            "cores": self.cores_used,
            "cores_allocated": self.cores_allocated,
            "chips": self.chips_needed,
            "chips_allocated": self.chips_allocated,
            "synapses": self.synapses,
            "neurons": self.neurons,
            "violations": [v.as_dict() for v in self.violations],
            "core_map": self.core_map,
            "utilisation": self.utilisation,
            "per_core": [
                {
                    "core": c.index,
                    "neurons": c.neurons,
                    "input_axons": c.input_axons,
                    "memory_bits": c.memory_bits,
                    "layers": list(c.layers),
                }
                for c in self.packing.cores
            ],
        }


# --------------------------------------------------------------------------------------------
# Packing


def _input_copies(layer: LayerSummary) -> int:
    """Axons per input (2 when a ternary TrueNorth mapping duplicates every input axon)."""
    return int(layer.neuron_params.get("input_copies", 1)) if layer.neuron_params else 1


def _group_cost(
    profile: ChipProfile, layer: LayerSummary, start: int, stop: int
) -> tuple[int, int]:
    """(distinct input axons, memory bits) of neurons ``start:stop`` of ``layer`` in one core."""
    conn = layer.connectivity
    cols = conn.indices[conn.indptr[start] : conn.indptr[stop]]
    per_axon = np.bincount(cols, minlength=layer.inputs)
    copies = _input_copies(layer)
    if copies > 1:  # each input drives `copies` axons (upper bound: every copy used)
        per_axon = np.repeat(per_axon, copies)
    axons = int(np.count_nonzero(per_axon))
    return axons, core_memory_bits(profile, per_axon, stop - start)


@dataclass
class _OpenCore:
    index: int
    neurons: int = 0
    axons: int = 0
    memory: int = 0
    layers: list[str] = field(default_factory=list)

    def freeze(self) -> CoreLoad:
        return CoreLoad(self.index, self.neurons, self.axons, self.memory, tuple(self.layers))


def _fits(profile: ChipProfile, core: _OpenCore, neurons: int, axons: int, memory: int) -> bool:
    c = profile.core
    if core.neurons + neurons > c.neurons_max:
        return False
    if c.input_axons_max is not None and core.axons + axons > c.input_axons_max:
        return False
    return not (c.synapse_memory_bits is not None and core.memory + memory > c.synapse_memory_bits)


def _largest_group(profile: ChipProfile, layer: LayerSummary, core: _OpenCore, start: int) -> int:
    """Largest ``stop`` such that neurons ``start:stop`` still fit in ``core`` (binary search;
    every cost is monotone in ``stop``). Returns ``start`` when not even one neuron fits."""
    lo, hi = start, min(layer.neurons, start + profile.core.neurons_max - core.neurons)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        axons, memory = _group_cost(profile, layer, start, mid)
        if _fits(profile, core, mid - start, axons, memory):
            lo = mid
        else:
            hi = mid - 1
    return lo


def pack(summary: NetworkSummary, profile: ChipProfile) -> Packing:
    """Place all neurons on cores (first-fit, layer order). See the module docstring."""
    cores: list[_OpenCore] = [_OpenCore(0)]
    placements: list[Placement] = []
    unplaceable: list[tuple[str, int, str]] = []
    for layer in summary.layers:
        if cores[-1].neurons and _starts_fresh(profile, layer, cores[-1]):
            cores.append(_OpenCore(len(cores)))
        start = 0
        while start < layer.neurons:
            core = cores[-1]
            stop = _largest_group(profile, layer, core, start)
            if stop == start and core.neurons:
                cores.append(_OpenCore(len(cores)))
                continue
            if stop == start:  # one neuron alone exceeds an empty core
                stop = start + 1
                unplaceable.append((layer.name, start, _why_unplaceable(profile, layer, start)))
            axons, memory = _group_cost(profile, layer, start, stop)
            core.neurons += stop - start
            core.axons += axons
            core.memory += memory
            if layer.name not in core.layers:
                core.layers.append(layer.name)
            placements.append(Placement(layer.name, core.index, start, stop))
            start = stop
    used = [c.freeze() for c in cores if c.neurons]
    return Packing(tuple(used), tuple(placements), tuple(unplaceable))


def _starts_fresh(profile: ChipProfile, layer: LayerSummary, core: _OpenCore) -> bool:
    """Open a new core for ``layer`` when the chip wants one layer per core, or when the whole
    layer fits an empty core but not what is left of ``core`` (splitting it there would spread
    its neurons, and the fan-out of the layer before, over more cores than needed)."""
    if profile.core.layers_per_core == "one":
        return True
    empty = _OpenCore(-1)
    whole = layer.neurons
    if _largest_group(profile, layer, empty, 0) < whole:
        return False  # the layer spans several cores anyway
    return _largest_group(profile, layer, core, 0) < whole


def _why_unplaceable(profile: ChipProfile, layer: LayerSummary, neuron: int) -> str:
    axons, memory = _group_cost(profile, layer, neuron, neuron + 1)
    c = profile.core
    if c.input_axons_max is not None and axons > c.input_axons_max:
        return "input_axons"
    if c.synapse_memory_bits is not None and memory > c.synapse_memory_bits:
        return "memory"
    return "neurons"


# --------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class FitContext:
    summary: NetworkSummary
    profile: ChipProfile
    packing: Packing
    chips: int
    cores: int

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
    """Total neurons <= neurons per chip x chips."""
    limit = ctx.profile.neurons_max * ctx.chips
    if ctx.summary.neurons <= limit:
        return []
    return [
        Finding(
            "chip_neurons",
            "network",
            limit,
            ctx.summary.neurons,
            "remove channels/neurons (sca) or allocate more chips (--chips)",
        )  # fmt: skip
    ]


@rule("cores")
def cores(ctx: FitContext) -> list[Finding]:
    """Cores used by the packing <= cores allocated."""
    used = len(ctx.packing.cores)
    if used <= ctx.cores:
        return []
    return [
        Finding(
            "cores",
            "network",
            ctx.cores,
            used,
            "prune harder (lower --budget/--sparsity) or allocate more cores/chips",
        )  # fmt: skip
    ]


@rule("core_input_axons")
def core_input_axons(ctx: FitContext) -> list[Finding]:
    """A single neuron's inputs must fit one core's input axons."""
    return _unplaceable_findings(ctx, "input_axons", "core_input_axons",
                                 ctx.profile.core.input_axons_max,
                                 "lower this layer's fan-in (prune it, or split the layer)")  # fmt: skip


@rule("core_memory")
def core_memory(ctx: FitContext) -> list[Finding]:
    """A single neuron's synapses must fit one core's synaptic memory."""
    return _unplaceable_findings(ctx, "memory", "core_memory",
                                 ctx.profile.core.synapse_memory_bits,
                                 "prune this layer or use fewer weight bits")  # fmt: skip


def _unplaceable_findings(
    ctx: FitContext, reason: str, name: str, limit, hint: str
) -> list[Finding]:
    out = []
    for layer_name in dict.fromkeys(n for n, _, r in ctx.packing.unplaceable if r == reason):
        layer = ctx.summary.layer(layer_name)
        bad = [i for n, i, r in ctx.packing.unplaceable if n == layer_name and r == reason]
        actual = max(_group_cost(ctx.profile, layer, i, i + 1)[0 if reason == "input_axons" else 1]
                     for i in bad)  # fmt: skip
        out.append(Finding(name, layer_name, limit, actual, f"{len(bad)} neuron(s): {hint}"))
    return out


@rule("fan_in")
def fan_in(ctx: FitContext) -> list[Finding]:
    """Largest fan-in per neuron <= neuron.fan_in_max."""
    cap = ctx.profile.neuron.fan_in_max
    if cap is None:
        return []
    out = []
    for layer in ctx.summary.layers:
        actual = layer.max_fan_in * _input_copies(layer)
        if actual > cap:
            over = int(np.count_nonzero(layer.fan_in * _input_copies(layer) > cap))
            out.append(Finding("fan_in", layer.name, cap, actual,
                               f"{over} neuron(s) over the cap: prune with the fan-in cap on"))  # fmt: skip
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
        owner = ctx.packing.core_of_neuron(layer)
        csc = layer.connectivity.tocsc()
        worst = 0
        for col in range(layer.inputs):
            rows = csc.indices[csc.indptr[col] : csc.indptr[col + 1]]
            if rows.size:
                worst = max(worst, len(np.unique(owner[rows])))
        if worst > cap:
            out.append(Finding("fan_out", layer.name, cap, worst,
                               "targets of one neuron span several cores: add splitter neurons "
                               "or prune so each source feeds one core"))  # fmt: skip
    return out


@rule("chip_memory")
def chip_memory(ctx: FitContext) -> list[Finding]:
    """Chip-level synapse memory (SpiNNaker SDRAM rows) <= chip memory x chips."""
    if ctx.profile.chip_memory_bits is None:
        return []
    need = chip_memory_bits(ctx.profile, ctx.summary.synapses(ctx.shared))
    limit = ctx.profile.chip_memory_bits * ctx.chips
    if need <= limit:
        return []
    return [Finding("chip_memory", "network", limit, need, "prune to fewer synapses or add chips")]


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
        )  # fmt: skip
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
        )  # fmt: skip
        for layer in ctx.summary.layers
        if layer.distinct_values_max is not None and layer.distinct_values_max > cap
    ]


@rule("layer_memory")
def layer_memory(ctx: FitContext) -> list[Finding]:
    """Per-layer kernel and neuron-state memory (``conv_kernel`` encodings, e.g. DYNAP-CNN).

    Kernel entries ``c_in * 2^(ceil log2(kh*kw) + ceil log2 c_out)``; neuron entries
    ``c_out * 2^(ceil log2 H_out + ceil log2 W_out)``; a dense layer counts as a 1x1 conv.
    """
    if ctx.profile.core.encoding.kind != "conv_kernel":
        return []
    mem = ctx.profile.core.synapse_memory_bits
    out = []
    for layer in ctx.summary.layers:
        if layer.kind == "conv":
            c_out, h, w = layer.out_shape
            kh, kw = layer.conv["kernel"]
            kernel = conv_kernel_entries(layer.conv["in_channels"], c_out, kh, kw)
        else:
            c_out, h, w = layer.neurons, 1, 1
            kernel = conv_kernel_entries(layer.inputs, c_out, 1, 1)
        bits = kernel * ctx.profile.weights.bits
        if mem is not None and bits > mem:
            out.append(Finding("layer_memory", layer.name, mem, bits,
                               "remove channels (sca) or shrink the kernel"))  # fmt: skip
        entries = conv_neuron_entries(c_out, h, w)
        if entries > ctx.profile.core.neurons_max:
            out.append(Finding("layer_neurons", layer.name, ctx.profile.core.neurons_max,
                               entries, "remove channels or lower the feature-map size"))  # fmt: skip
    return out


def check_fit(
    summary: NetworkSummary,
    profile: ChipProfile,
    *,
    chips: int | None = None,
    cores: int | None = None,
) -> FitReport:
    """Judge ``summary`` against ``profile`` for an allocation of ``chips`` or ``cores``.

    Default allocation: one chip. ``cores`` (if given) caps the cores; ``chips`` multiplies the
    chip-level limits. Returns a :class:`FitReport`; never raises for "does not fit".
    """
    chips_alloc = chips or (math.ceil(cores / profile.cores) if cores else 1)
    cores_alloc = cores or chips_alloc * profile.cores
    packing = pack(summary, profile)
    ctx = FitContext(summary, profile, packing, chips_alloc, cores_alloc)
    violations = tuple(f for fn in FIT_RULES.values() for f in fn(ctx))
    used = len(packing.cores)
    chips_needed = max(
        math.ceil(used / profile.cores),
        math.ceil(summary.neurons / profile.neurons_max),
    )
    return FitReport(
        chip=profile.id,
        fits=not violations,
        violations=violations,
        cores_used=used,
        cores_allocated=cores_alloc,
        chips_needed=chips_needed,
        chips_allocated=chips_alloc,
        core_map=packing.core_map(),
        utilisation=_utilisation(profile, packing, summary, ctx.shared),
        synapses=summary.synapses(ctx.shared),
        neurons=summary.neurons,
        packing=packing,
    )


def _utilisation(
    profile: ChipProfile, packing: Packing, summary: NetworkSummary, shared: bool
) -> dict[str, float]:
    """Fractions of the used cores' capacity: neurons, input axons, synaptic memory."""
    n = max(len(packing.cores), 1)
    c = profile.core
    out = {"neurons": sum(k.neurons for k in packing.cores) / (n * c.neurons_max)}
    if c.input_axons_max:
        out["input_axons"] = sum(k.input_axons for k in packing.cores) / (n * c.input_axons_max)
    if c.synapse_memory_bits and profile.core.encoding.kind in ("blocked_list", "dense_matrix"):
        out["synapse_memory"] = sum(k.memory_bits for k in packing.cores) / (
            n * c.synapse_memory_bits
        )
    if profile.chip_memory_bits:
        out["chip_memory"] = (
            chip_memory_bits(profile, summary.synapses(shared)) / profile.chip_memory_bits
        )
    return {k: round(v, 6) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Capacity of an allocation for a given network shape

CAPACITY_RULES = ("cores", "core_memory", "core_input_axons", "chip_memory", "chip_neurons")


def thinned(summary: NetworkSummary, density: float, seed: int = 0) -> NetworkSummary:
    """A copy of ``summary`` keeping each synapse with probability ``density`` (seeded)."""
    rng = np.random.default_rng(seed)
    layers = []
    for layer in summary.layers:
        conn = layer.connectivity.copy()
        keep = rng.random(conn.nnz) < density
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

    Bisection on the density ``d`` of a uniformly thinned copy (:func:`thinned`): the largest
    ``d`` whose copy breaks none of :data:`CAPACITY_RULES` gives ``B = margin * synapses``.
    Unlike cores x synapses-per-core, this counts block headers, word alignment and partly
    filled lists of the real layer shapes. ``None`` when even the dense network fits (the
    allocation does not bind); 0 when not even a nearly empty network fits.
    """

    def fits(density: float) -> tuple[bool, int]:
        net = thinned(summary, density)
        report = check_fit(net, profile, chips=chips, cores=cores)
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
