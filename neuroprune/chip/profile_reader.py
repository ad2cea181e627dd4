"""Validating a profile's YAML: every problem collected with its dotted path, then one
:class:`~neuroprune.chip.schema.ChipProfile`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from neuroprune.chip.arithmetic import ARITHMETICS
from neuroprune.chip.encodings import CAPACITY_MODELS
from neuroprune.chip.formats import WEIGHT_FORMATS
from neuroprune.chip.schema import (
    CEILINGS,
    FAN_OUT_METHODS,
    FAN_OUT_UNITS,
    IMPLEMENTATIONS,
    LAYERS_PER_CORE,
    NEURON_MODELS,
    SCALE_KINDS,
    SCHEMA_VERSION,
    SIGN_MODES,
    STATUSES,
    UNITS,
    ChipProfile,
    CoreSpec,
    EnergySpec,
    NeuronSpec,
    Quantity,
    SynapseEncoding,
    WeightFormat,
)
from neuroprune.core.errors import ProfileError, did_you_mean

# --------------------------------------------------------------------------------------------
# Validation


class _Reader:
    """Reads typed fields from the raw mapping and collects every problem with its dotted path."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self.quantities: dict[str, Quantity] = {}

    def node(self, path: str) -> Any:
        cur: Any = self.raw
        for part in path.split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                return _MISSING
            cur = cur[part]
        return cur

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}")

    def quantity(self, path: str, *, required: bool, kind: type = int, positive: bool = True):
        node = self.node(path)
        if node is _MISSING or node is None:
            if required:
                self.problem(path, "missing (required)")
            return None
        if isinstance(node, Mapping):
            extra = {"rules"} if path == "neuron.arithmetic" else set()
            unknown = set(node) - {"value", "unit", "status", "source", "note"} - extra
            if unknown:
                self.problem(path, f"unknown keys {sorted(unknown)}")
            status = node.get("status")
            if status is not None and status not in STATUSES:
                self.problem(path + ".status", f"must be one of {list(STATUSES)}, got {status!r}")
            unit = node.get("unit")
            if unit is not None and path in UNITS and unit != UNITS[path]:
                want = UNITS[path]
                self.problem(path + ".unit", f"must be {want!r} (convert the value), got {unit!r}")
            quantity = Quantity(
                value=node.get("value"),
                unit=node.get("unit"),
                status=status,
                source=node.get("source"),
                note=node.get("note"),
            )
        else:
            quantity = Quantity(value=node)
        self.quantities[path] = quantity
        value = quantity.value
        if value is None:
            if required:
                self.problem(path, "value is null but the field is required")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(path, f"must be a number, got {value!r}")
            return None
        if not math.isfinite(value):
            self.problem(path, f"must be finite, got {value!r}")
            return None
        if kind is int and (not float(value).is_integer()):
            self.problem(path, f"must be a whole number, got {value!r}")
            return None
        if positive and value <= 0:
            hint = "" if required else " (null for no limit)"
            self.problem(path, f"must be positive{hint}, got {value!r}")
            return None
        ceiling = CEILINGS.get(path)
        if ceiling is not None and value > ceiling:
            unit = UNITS.get(path, "")
            self.problem(
                path,
                f"{value:g} {unit} is beyond any physical chip (at most "
                f"{ceiling:g}): check the unit and the number of digits",
            )
            return None
        if not positive and value < 0:
            self.problem(path, f"must not be negative, got {value!r}")
            return None
        return int(value) if kind is int else float(value)

    def choice(self, path: str, options: tuple[str, ...], *, default: str | None = None):
        node = self.node(path)
        if node is _MISSING or node is None:
            if default is None:
                self.problem(path, f"missing (one of {list(options)})")
            return default
        if node not in options:
            self.problem(path, f"must be one of {list(options)}, got {node!r}")
            return default
        return node

    def declared_name(self, path: str, options: tuple[str, ...]) -> str | None:
        """An optional name from ``options``, bare or as ``{value, unit, status, source, note}``
        (the unit is the schema's, e.g. ``arithmetic``)."""
        node = self.node(path)
        if isinstance(node, Mapping):
            extra = {"rules"} if path == "neuron.arithmetic" else set()
            unknown = set(node) - {"value", "unit", "status", "source", "note"} - extra
            if unknown:
                self.problem(path, f"unknown keys {sorted(unknown)}")
            if node.get("unit") not in (None, UNITS[path]):
                self.problem(path + ".unit", f"must be {UNITS[path]!r}, got {node.get('unit')!r}")
            keys = ("unit", "status", "source", "note")
            self.quantities[path] = Quantity(
                value=node.get("value"), **{k: node.get(k) for k in keys}
            )
            node = node.get("value")
        if node is _MISSING or node is None:
            return None
        if node not in options:
            self.problem(path, f"must be one of {list(options)}, got {node!r}")
            return None
        return node

    def text(self, path: str, *, required: bool = True, default: str = "") -> str:
        node = self.node(path)
        if node is _MISSING or node is None:
            if required:
                self.problem(path, "missing (required)")
            return default
        if not isinstance(node, str):
            self.problem(path, f"must be a string, got {node!r}")
            return default
        return node

    def integer(self, path: str, *, default: int | None = None, positive: bool = False):
        node = self.node(path)
        if node is _MISSING or node is None:
            return default
        if isinstance(node, bool) or not isinstance(node, int):
            self.problem(path, f"must be an integer, got {node!r}")
            return default
        if node < 0 or (positive and node == 0):
            self.problem(path, f"must be {'positive' if positive else 'non-negative'}, got {node}")
            return default
        ceiling = CEILINGS.get(path)
        if ceiling is not None and node > ceiling:
            self.problem(
                path, f"{node} is beyond any physical chip (at most {ceiling}): check the number"
            )
            return default
        return node

    def str_list(self, path: str, options: tuple[str, ...] | None = None) -> tuple[str, ...]:
        node = self.node(path)
        if node is _MISSING or node is None:
            return ()
        if not isinstance(node, list) or not all(isinstance(x, str) for x in node):
            self.problem(path, f"must be a list of strings, got {node!r}")
            return ()
        if options is not None:
            bad = [x for x in node if x not in options]
            if bad:
                self.problem(path, f"unknown entries {bad}; allowed: {list(options)}")
        return tuple(node)


_MISSING = object()
_TOP_KEYS = {
    "schema_version",
    "id",
    "name",
    "vendor",
    "aliases",
    "implementation",
    "summary",
    "chip",
    "core",
    "neuron",
    "weights",
    "connectivity",
    "energy",
    "sources",
    "notes",
}
_SECTION_KEYS = {
    "chip": {"cores", "neurons_max", "synapses_headline", "memory_bits", "chips_per_system_max"},
    "core": {
        "neurons_max",
        "input_axons_max",
        "output_axons_max",
        "synapse_memory_bits",
        "synapse_encoding",
        "layers_per_core",
    },
    "core.synapse_encoding": {
        "kind",
        "block_synapses",
        "block_header_bits",
        "word_bits",
        "index_bits",
        "extra_bits_per_synapse",
        "bits_per_synapse",
        "max_row_length",
        "rows",
        "cols",
        "core_kernel_entries",
        "core_neuron_entries",
    },
    "neuron": {
        "models",
        "fan_in_max",
        "fan_out_max",
        "fan_out_unit",
        "fan_out_met_by",
        "reset_modes",
        "state_bits",
        "threshold_bits",
        "decay_bits",
        "bias_bits",
        "arithmetic",
    },
    "weights": {
        "format",
        "bits",
        "bits_allowed",
        "sign",
        "sign_costs_bit",
        "scale",
        "distinct_values_per_neuron",
        "params",
    },
    "weights.scale": {"kind", "granularity", "range"},
    "connectivity": {"conv_weight_sharing"},
    "energy": {"synop_pj", "neuron_update_pj"},
}
_PROVENANCE = {"note", "source"}  # allowed in every section: where its non-numeric facts come from


def parse_profile(raw: Any, *, path: str = "<memory>", sha256: str = "") -> ChipProfile:
    """Validate a raw (YAML-decoded) profile; raise one :class:`ProfileError` naming every problem."""
    if not isinstance(raw, Mapping):
        raise ProfileError(
            "profile must be a YAML mapping at the top level",
            where=path,
            fix="See hardware_profiles/README.md for the schema.",
        )
    r = _Reader(raw)
    _check_keys(r, raw, "", _TOP_KEYS)
    for section, keys in _SECTION_KEYS.items():
        node = r.node(section)
        if node is not _MISSING and node is not None:
            _check_keys(r, node, section + ".", keys | _PROVENANCE)
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        r.problem("schema_version", f"must be {SCHEMA_VERSION}, got {version!r}")
    profile_id = r.text("id")
    name = r.text("name")
    vendor = r.text("vendor", required=False, default="unknown")
    aliases = tuple(a.lower() for a in r.str_list("aliases"))
    implementation = r.choice("implementation", IMPLEMENTATIONS, default="digital_sync")

    cores = r.quantity("chip.cores", required=True)
    neurons_max = r.quantity("chip.neurons_max", required=True)
    headline = r.quantity("chip.synapses_headline", required=False)
    chip_memory = r.quantity("chip.memory_bits", required=False)
    chips_max = r.quantity("chip.chips_per_system_max", required=False)

    encoding = _parse_encoding(r)
    core_neurons = r.quantity("core.neurons_max", required=True)
    core = CoreSpec(
        neurons_max=core_neurons or 1,
        input_axons_max=r.quantity("core.input_axons_max", required=False),
        output_axons_max=r.quantity("core.output_axons_max", required=False),
        synapse_memory_bits=r.quantity("core.synapse_memory_bits", required=False),
        encoding=encoding,
        layers_per_core=r.declared_name("core.layers_per_core", LAYERS_PER_CORE) or "many",
    )
    neuron = NeuronSpec(
        models=r.str_list("neuron.models", NEURON_MODELS),
        fan_in_max=r.quantity("neuron.fan_in_max", required=False),
        fan_out_max=r.quantity("neuron.fan_out_max", required=False),
        fan_out_unit=r.choice("neuron.fan_out_unit", FAN_OUT_UNITS, default="") or None,
        fan_out_met_by=r.declared_name("neuron.fan_out_met_by", FAN_OUT_METHODS),
        reset_modes=r.str_list("neuron.reset_modes") or ("zero",),
        state_bits=r.quantity("neuron.state_bits", required=False),
        threshold_bits=r.quantity("neuron.threshold_bits", required=False),
        decay_bits=r.quantity("neuron.decay_bits", required=False),
        bias_bits=r.quantity("neuron.bias_bits", required=False),
        arithmetic=r.declared_name("neuron.arithmetic", tuple(ARITHMETICS)),
        arithmetic_unpublished=_unpublished_arithmetic(r),
    )
    if not neuron.models:
        r.problem("neuron.models", f"missing: list at least one of {list(NEURON_MODELS)}")
    weights = _parse_weights(r)
    sharing = r.node("connectivity.conv_weight_sharing")
    if sharing is _MISSING:
        sharing = False
    if not isinstance(sharing, bool):
        r.problem("connectivity.conv_weight_sharing", f"must be true or false, got {sharing!r}")
        sharing = False
    energy = EnergySpec(
        synop_pj=r.quantity("energy.synop_pj", required=False, kind=float),
        neuron_update_pj=r.quantity("energy.neuron_update_pj", required=False, kind=float),
    )
    sources = raw.get("sources") or {}
    if not isinstance(sources, Mapping):
        r.problem("sources", "must be a mapping of source id to citation")
        sources = {}
    cited = {qpath: q.source for qpath, q in r.quantities.items()}
    cited.update({sec: r.node(sec + ".source") for sec in _SECTION_KEYS})
    for qpath, source in cited.items():
        if source is not None and source is not _MISSING:
            for ref in str(source).replace(",", " ").split():
                if ref not in sources:
                    r.problem(qpath + ".source", f"cites {ref!r}, which is not under 'sources'")
    _check_arithmetic_rules(r, neuron.arithmetic, sources)
    _check_consistency(r, cores, neurons_max, core_neurons)
    _check_fan_out_copies(r, neuron)
    _check_encoding_memory(r, core)
    if r.problems:
        raise ProfileError(
            f"invalid profile ({len(r.problems)} problem{'s' * (len(r.problems) > 1)}): "
            + "; ".join(r.problems),
            where=path,
            fix="See hardware_profiles/README.md for the schema.",
        )
    return ChipProfile(
        id=profile_id,
        name=name,
        vendor=vendor,
        aliases=aliases,
        implementation=implementation,
        cores=cores,
        neurons_max=neurons_max,
        synapses_headline=headline,
        chip_memory_bits=chip_memory,
        chips_per_system_max=chips_max,
        core=core,
        neuron=neuron,
        weights=weights,
        conv_weight_sharing=sharing,
        energy=energy,
        sources=dict(sources),
        quantities=dict(r.quantities),
        path=path,
        sha256=sha256,
    )


def _parse_encoding(r: _Reader) -> SynapseEncoding:
    base = "core.synapse_encoding"
    kind = r.choice(base + ".kind", CAPACITY_MODELS.names(), default="dense_matrix")
    enc = SynapseEncoding(
        kind=kind,
        block_synapses=r.integer(base + ".block_synapses", positive=True),
        block_header_bits=r.integer(base + ".block_header_bits", default=0),
        word_bits=r.integer(base + ".word_bits", default=1, positive=True),
        index_bits=r.integer(base + ".index_bits", default=0),
        extra_bits_per_synapse=r.integer(base + ".extra_bits_per_synapse", default=0),
        bits_per_synapse=r.integer(base + ".bits_per_synapse", positive=True),
        max_row_length=r.integer(base + ".max_row_length", positive=True),
        rows=r.integer(base + ".rows", positive=True),
        cols=r.integer(base + ".cols", positive=True),
        core_kernel_entries=_per_core(r, base + ".core_kernel_entries"),
        core_neuron_entries=_per_core(r, base + ".core_neuron_entries"),
    )
    needs = CAPACITY_MODELS.get(kind).required_fields if kind in CAPACITY_MODELS else ()
    for name in needs:
        if getattr(enc, name) is None:
            r.problem(f"{base}.{name}", f"required when kind is {kind!r}")
    return enc


def _per_core(r: _Reader, path: str) -> tuple[int, ...] | None:
    """A per-core table: ``{value: [n_core0, n_core1, ...], unit, status, source}`` or a bare
    list of positive integers, one per core (``chip.cores`` of them)."""
    node = r.node(path)
    if node is _MISSING or node is None:
        return None
    values = node.get("value") if isinstance(node, Mapping) else node
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        r.problem(path, f"must be a list of positive integers (one per core), got {values!r}")
        return None
    cores = r.node("chip.cores")
    count = cores.get("value") if isinstance(cores, Mapping) else cores
    if isinstance(count, int) and len(values) != count:
        r.problem(path, f"has {len(values)} entries, chip.cores is {count}")
    return tuple(values)


def _parse_weights(r: _Reader) -> WeightFormat:
    fmt = r.choice("weights.format", WEIGHT_FORMATS.names(), default="int")
    bits = r.quantity("weights.bits", required=True)
    allowed_node = r.node("weights.bits_allowed")
    allowed: tuple[int, ...] = (bits or 1,)
    if allowed_node is not _MISSING and allowed_node is not None:
        if not isinstance(allowed_node, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in allowed_node
        ):
            r.problem(
                "weights.bits_allowed", f"must be a list of positive integers, got {allowed_node!r}"
            )
        else:
            allowed = tuple(allowed_node)
            if bits and bits not in allowed:
                r.problem("weights.bits", f"{bits} is not in weights.bits_allowed {list(allowed)}")
    scale_range = r.node("weights.scale.range")
    if scale_range is _MISSING or scale_range is None:
        scale_range = None
    elif not (
        isinstance(scale_range, list)
        and len(scale_range) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in scale_range)
        and scale_range[0] <= scale_range[1]
    ):
        r.problem(
            "weights.scale.range", f"must be [low, high] with low <= high, got {scale_range!r}"
        )
        scale_range = None
    params = r.node("weights.params")
    if params is _MISSING or params is None:
        params = {}
    if not isinstance(params, Mapping):
        r.problem("weights.params", "must be a mapping")
        params = {}
    costs = r.node("weights.sign_costs_bit")
    if costs is not _MISSING and not isinstance(costs, bool):
        r.problem("weights.sign_costs_bit", f"must be true or false, got {costs!r}")
    return WeightFormat(
        format=fmt,
        bits=bits or 1,
        bits_allowed=allowed,
        sign=r.choice("weights.sign", SIGN_MODES, default="signed"),
        sign_costs_bit=costs is True,
        scale_kind=r.choice("weights.scale.kind", SCALE_KINDS, default="none"),
        scale_granularity=r.text("weights.scale.granularity", required=False, default="") or None,
        scale_range=tuple(scale_range) if scale_range else None,
        distinct_values_per_neuron=r.quantity("weights.distinct_values_per_neuron", required=False),
        params=dict(params),
    )


def _check_keys(r: _Reader, node: Any, prefix: str, allowed: set[str]) -> None:
    """Report keys of ``node`` that the schema does not know, with the closest known key."""
    if not isinstance(node, Mapping):
        r.problem(prefix.rstrip("."), f"must be a mapping, got {node!r}")
        return
    for key in sorted((k for k in node if k not in allowed), key=str):
        hint = did_you_mean(key, allowed).strip().replace("Did", "did", 1)
        r.problem(f"{prefix}{key}", "unknown key" + (f" ({hint})" if hint else ""))


def _unpublished_arithmetic(r: _Reader) -> str | None:
    """``neuron.arithmetic: {value: null, source, note}`` declares that no public source defines
    the chip's neuron arithmetic bit for bit: ``source`` names the sources checked, ``note`` what
    they lack (returned). The declaration needs both and states no ``rules``."""
    node = r.node("neuron.arithmetic")
    if not isinstance(node, Mapping) or node.get("value") is not None:
        return None
    path = "neuron.arithmetic"
    note, source = node.get("note"), node.get("source")
    if not isinstance(note, str) or not note.strip() or not source:
        r.problem(
            path,
            "value null declares that no public source defines the arithmetic: give the "
            "sources checked (source) and what they lack (note), or name an arithmetic",
        )
        return None
    if "rules" in node:
        r.problem(path + ".rules", "no rules without an arithmetic (value is null)")
    return note.strip()


def _check_arithmetic_rules(r: _Reader, name: str | None, sources: Mapping) -> None:
    """``neuron.arithmetic.rules``: every rule of the registry's spec, each ``{value, source}``,
    with the implementation's value and a source listed under ``sources``."""
    node = r.node("neuron.arithmetic")
    if name is None or not isinstance(node, Mapping):
        return
    stated = node.get("rules")
    path = "neuron.arithmetic.rules"
    if not isinstance(stated, Mapping):
        r.problem(path, "missing: state every rule of the arithmetic with its source")
        return
    expected = ARITHMETICS[name].spec.rules()
    for rule in sorted(set(stated) - set(expected)):
        r.problem(f"{path}.{rule}", f"not a rule of {name}; its rules are {sorted(expected)}")
    for rule, value in expected.items():
        entry = stated.get(rule)
        if not isinstance(entry, Mapping) or "value" not in entry or "source" not in entry:
            r.problem(f"{path}.{rule}", "missing: {value, source}")
            continue
        if entry["value"] != value:
            r.problem(f"{path}.{rule}", f"{name} implements {value!r}, got {entry['value']!r}")
        for ref in str(entry["source"]).replace(",", " ").split():
            if ref not in sources:
                r.problem(f"{path}.{rule}.source", f"cites {ref!r}, which is not under 'sources'")


def _check_consistency(r: _Reader, cores, neurons_max, core_neurons) -> None:
    if cores and neurons_max and core_neurons and cores * core_neurons < neurons_max:
        r.problem(
            "chip.neurons_max",
            f"{neurons_max} exceeds chip.cores x core.neurons_max = {cores * core_neurons}",
        )


def _check_fan_out_copies(r: _Reader, neuron: NeuronSpec) -> None:
    """``neuron.fan_out_met_by: source_copies`` counts copies per destination axon: it needs
    ``fan_out_max`` in ``axon`` units (the axons one neuron, or one copy, drives)."""
    if neuron.fan_out_met_by != "source_copies":
        return
    if neuron.fan_out_max is None or neuron.fan_out_unit != "axon":
        r.problem(
            "neuron.fan_out_met_by",
            "source_copies needs neuron.fan_out_max with fan_out_unit: axon "
            f"(got {neuron.fan_out_max!r} {neuron.fan_out_unit!r})",
        )


def _check_encoding_memory(r: _Reader, core: CoreSpec) -> None:
    kind = core.encoding.kind
    model = CAPACITY_MODELS.get(kind) if kind in CAPACITY_MODELS else None
    if model is not None and model.needs_core_memory and core.synapse_memory_bits is None:
        r.problem("core.synapse_memory_bits", f"required when synapse_encoding.kind is {kind!r}")
