"""The fit rules: small named functions ``rule(ctx) -> list[Finding]`` and
:func:`check_fit`, which runs them all and returns a :class:`~neuroprune.fit.report.FitReport`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from neuroprune.chip.capacity import (
    CapacityModel,
    Population,
    capacity_model,
)
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import ConfigError
from neuroprune.core.summary import NetworkSummary
from neuroprune.fit.packing import FitContext, fan_out_cores, neuron_copies, pack
from neuroprune.fit.report import CoreCountLimit, Finding, FitReport, Packing

Rule = Callable[[FitContext], list[Finding]]
FIT_RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    """Register a fit rule under ``name`` (the name findings carry)."""

    def register(fn: Rule) -> Rule:
        FIT_RULES[name] = fn
        return fn

    return register


def foreign_neuron_layers(summary: NetworkSummary, profile: ChipProfile) -> list:
    """The layers of ``summary`` whose neuron model ``profile`` does not run
    (``neuron.models``): no pruning or quantization changes a neuron model, so ``fit`` refuses
    them before training (:func:`neuroprune.pipeline.preflight._preflight`)."""
    return [layer for layer in summary.layers if layer.neuron_model not in profile.neuron.models]


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
        for layer in foreign_neuron_layers(ctx.summary, ctx.profile)
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
    if ctx.model.memory_per_layer:  # reported per layer (layer_memory)
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
    """Largest fan-in per neuron, in axons or entries, <= neuron.fan_in_max: inputs x input
    copies; on per-row-sign chips one row per synapse (the row of its sign: the core check
    charges a mixed input's second row where both signs share a core); on DYNAP-SE1 the CAM
    slots (a weight of ``m`` units takes ``m``) (:meth:`CapacityModel.neuron_axons`)."""
    cap = ctx.profile.neuron.fan_in_max
    if cap is None:
        return []
    out = []
    for layer in ctx.summary.layers:
        per_neuron = ctx.model.neuron_axons(layer)
        actual = int(per_neuron.max(initial=0))
        if actual > cap:
            over = int(np.count_nonzero(per_neuron > cap))
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

    Units ``axon``/``core``: distinct cores that a neuron's targets live on. Unit ``layer``:
    distinct destination layers (1 in a chain). Inputs of the first layer come from off-chip
    and are not counted.

    Where a larger fan-out is met by copies in the source core (``neuron.fan_out_met_by:
    source_copies``, TrueNorth: a neuron drives one axon), fan-out is no limit but a cost, and
    this rule is the neuron-slot check (:func:`_copy_slot_findings`).
    """
    cap = ctx.profile.neuron.fan_out_max
    unit = ctx.profile.neuron.fan_out_unit or "core"
    if cap is None:
        return []
    if ctx.model.copies_in_source_core:
        return _copy_slot_findings(ctx)
    out: list[Finding] = []
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


def _copy_slot_findings(ctx: FitContext) -> list[Finding]:
    """Neuron slots of every core, copies included, <= neurons per core:
    ``sum over the core's neurons j of d_j <= core.neurons_max``, with
    ``d_j = max(1, ceil(A_j / fan_out_max))`` and ``A_j`` the axons neuron ``j`` drives on the
    cores of the next layer (:meth:`CapacityModel.source_slots`). The packer keeps this where
    it can; a core over it holds a neuron whose copies alone do not fit an empty core."""
    out = []
    for core in ctx.packing.cores:
        for excess in core.excess:
            if excess.resource != "neurons":
                continue
            own = excess.used - core.copies
            out.append(
                Finding(
                    "fan_out",
                    ",".join(core.layers),
                    excess.limit,
                    excess.used,
                    f"core {core.index}: {own} neuron(s) + {core.copies} copies (one per axon a "
                    f"neuron drives; fan_out_max {ctx.profile.neuron.fan_out_max} "
                    f"{ctx.profile.neuron.fan_out_unit}) > {excess.limit} neuron slots: prune so "
                    "each source feeds fewer cores",
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
    """Distinct nonzero weight values per neuron <= weights.distinct_values_per_neuron, or
    ``2**c - 1`` where each input drives ``c`` axons of different types (TrueNorth): a neuron
    then receives any nonempty subset sum of its ``c`` type weights."""
    cap = ctx.profile.weights.distinct_values_per_neuron
    if cap is None:
        return []
    out = []
    for layer in ctx.summary.layers:
        copies = ctx.model.input_copies(layer)
        layer_cap = max(cap, 2**copies - 1) if copies > 1 else cap
        if layer.distinct_values_max is not None and layer.distinct_values_max > layer_cap:
            out.append(
                Finding(
                    "distinct_weights",
                    layer.name,
                    layer_cap,
                    layer.distinct_values_max,
                    "quantize with the chip's per-neuron value table (e.g. type_levels)",
                )
            )
    return out


@rule("layer_memory")
def layer_memory(ctx: FitContext) -> list[Finding]:
    """Per-layer kernel and neuron-state memory on ``conv_kernel`` chips (DYNAP-CNN), from the
    capacity model's recount of each core (one whole layer per core):
    kernel ``c_in * 2^(ceil log2(kh*kw) + ceil log2 c_out)`` entries of ``w`` bits,
    neurons ``c_out * 2^(ceil log2 H_out + ceil log2 W_out)``; a dense layer is a 1x1 conv."""
    if not ctx.model.memory_per_layer:
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


@rule("population")
def population(ctx: FitContext) -> list[Finding]:
    """Xylo's network shape (``population`` encoding), the design rules of Rockpool's
    ``syns61201`` mapper: a chain of dense layers, at least one hidden layer (two neuron
    layers), input channels <= ``rows``, hidden neurons (all layers but the last) <=
    ``core.neurons_max - cols``, readout neurons (the last layer) <= ``cols``."""
    model = ctx.model
    if not isinstance(model, Population):
        return []
    layers = ctx.summary.layers
    out = [
        Finding(
            "population",
            layer.name,
            "dense",
            layer.kind,
            "the mapper takes dense (linear) layers only: use --model mlp",
        )
        for layer in layers
        if layer.kind != "dense"
    ]
    if len(layers) < 2:
        out.append(
            Finding(
                "population",
                "network",
                "2 neuron layers",
                len(layers),
                "add a hidden layer (--hidden): inputs reach the readout through hidden neurons",
            )
        )
    inputs, hidden, readout = model.split(ctx.summary)
    checks = (
        (
            "input channels",
            inputs,
            model.inputs_max,
            "reduce the input to fewer channels (--dataset digits-4x4: digits pooled to 16)",
        ),
        ("hidden neurons", hidden, model.hidden_max, "use fewer or narrower hidden layers"),
        (
            "readout neurons",
            readout,
            model.readout_max,
            "use fewer classes (--dataset digits-4x4 keeps digits 0-7)",
        ),
    )
    for what, actual, cap, hint in checks:
        if actual > cap:
            out.append(Finding("population", f"network ({what})", cap, actual, hint))
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
    check_allocation(profile, chips=chips, cores=cores)
    chips_alloc = chips or (math.ceil(cores / profile.cores) if cores else 1)
    cores_alloc = cores or chips_alloc * profile.cores
    model = capacity_model(profile)
    packing = pack(summary, profile, strategy)
    ctx = FitContext(summary, profile, packing, chips_alloc, cores_alloc, model)
    copies = neuron_copies(summary, profile, packing)
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
        cores_lower_bound=model.cores_lower_bound(summary),
        synapses=summary.synapses(ctx.shared),
        neurons=summary.neurons,
        packing=packing,
        cores_set_by=core_count_limit(summary, model, len(packing.cores)),
        copies=copies or None,
    )


def check_allocation(profile: ChipProfile, *, chips: int | None, cores: int | None) -> None:
    """Refuse an allocation no system of ``profile`` has: ``chips`` or ``cores`` below 1, or
    more chips (``cores`` / cores per chip, rounded up) than the profile's
    ``chip.chips_per_system_max`` (when it states one). A ``ConfigError`` (exit 2) naming the
    option, the value and the most the profile allows."""
    for option, value in (("chips", chips), ("cores", cores)):
        if value is not None and value < 1:
            raise ConfigError(
                "an allocation holds at least one",
                where="command line",
                field=option,
                value=value,
                fix=f"Give --{option} 1 or more, or leave it out for one whole chip.",
            )
    most = profile.chips_per_system_max
    if most is None:
        return
    if chips is not None and chips > most:
        raise ConfigError(
            f"{profile.name} systems hold at most {most} chips (chip.chips_per_system_max)",
            where="command line",
            field="chips",
            value=chips,
            fix=f"Give --chips {most} or fewer.",
        )
    if cores is not None and cores > most * profile.cores:
        raise ConfigError(
            f"{profile.name} systems hold at most {most} chips of {profile.cores} cores "
            f"({most * profile.cores} cores; chip.chips_per_system_max)",
            where="command line",
            field="cores",
            value=cores,
            fix=f"Give --cores {most * profile.cores} or fewer.",
        )


RESOURCE_WORDS = {
    "neurons": "neurons",
    "input_axons": "input axons",
    "memory_bits": "synaptic memory bits",
}
"""How a per-core resource of :meth:`CapacityModel.core_resources` is named in a sentence."""


def core_count_limit(
    summary: NetworkSummary, model: CapacityModel, cores_used: int
) -> CoreCountLimit:
    """The limit that sets the core count of ``summary`` packed onto ``cores_used`` cores.

    Per resource ``r`` of :meth:`CapacityModel.core_resources` (neurons, input axons, synaptic
    memory), ``ratio_r = total_r / per-core capacity_r``, and ``ceil(ratio_r)`` cores is what
    ``r`` alone needs. When ``cores_used`` is no more than the largest ``ceil(ratio_r)``, that
    resource sets the count. Otherwise the packing needs more cores than any total does, and
    the cause is named by the chip's placement rules: ``fan_out`` where a neuron's targets must
    sit in a limited number of cores, ``layers`` where a core holds one layer, else
    ``packing`` (each layer's slices leave cores partly filled).
    """
    ratios = {
        name: total / cap for name, (total, cap) in model.core_resources(summary).items() if cap
    }
    name, ratio = max(ratios.items(), key=lambda item: item[1], default=("neurons", 0.0))
    need = max(1, math.ceil(ratio))
    layer_cores = model.layer_slice_cores(summary)
    if layer_cores is not None and layer_cores > need and cores_used <= layer_cores:
        return _layers_limit(summary, model, layer_cores)
    if cores_used <= need:
        total, cap = model.core_resources(summary)[name]
        word = _resource_word(model, name)
        return CoreCountLimit(
            name,
            need,
            f"{word}: {total:,} in all, {cap:,} per core, so {need} core(s) at least",
        )
    fan_out = model.fan_out_cores()
    if fan_out is not None:
        return CoreCountLimit(
            "fan_out",
            need,
            f"fan-out: a neuron's targets must sit in {fan_out} core(s), so layers are cut "
            f"where no input feeds both sides ({cores_used} cores; {_resource_word(model, name)} "
            f"alone need {need})",
        )
    if layer_cores is not None:
        return _layers_limit(summary, model, layer_cores)
    if not model.splits_layers:
        return CoreCountLimit(
            "layers",
            len(summary.layers),
            f"layers: a core holds one whole layer, {len(summary.layers)} layer(s)",
        )
    return CoreCountLimit(
        "packing",
        need,
        f"packing: layers split into partly filled cores ({cores_used} cores; "
        f"{_resource_word(model, name)} alone need {need})",
    )


def _resource_word(model: CapacityModel, name: str) -> str:
    """A resource in a sentence; neurons are neuron slots where copies count."""
    if name == "neurons" and model.copies_in_source_core:
        return "neuron slots (neurons and their fewest copies)"
    return RESOURCE_WORDS.get(name, name)


def _layers_limit(summary: NetworkSummary, model: CapacityModel, cores: int) -> CoreCountLimit:
    """The ``layers`` limit where a core holds one layer: one whole layer per core, or (where
    layers split) slices of one layer, ``ceil(n_l / neurons_max)`` cores per layer."""
    if not model.splits_layers:
        detail = f"layers: a core holds one whole layer, {len(summary.layers)} layer(s)"
        return CoreCountLimit("layers", cores, detail)
    per_layer = " + ".join(
        str(max(1, math.ceil(layer.neurons / model.neurons_max))) for layer in summary.layers
    )
    detail = (
        f"layers: a core holds a slice of one layer, at most {model.neurons_max:,} neurons, "
        f"so {per_layer} = {cores} core(s)"
    )
    return CoreCountLimit("layers", cores, detail)


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
