"""Chip profiles (layer L1, torch-free).

A profile is a YAML file in ``hardware_profiles/`` (shipped inside the package) or any path the
user names. It states a chip's hard limits with units and sources; ``load_profile`` validates it
and returns a frozen :class:`ChipProfile`. All problems in a file are collected and reported at
once with dotted paths (``core.neurons_max: must be a positive integer, got -4``).

The schema is documented in ``hardware_profiles/README.md``. A numeric field is either a bare
number or a quantity mapping ``{value, unit, status, source, note}``; shipped profiles use the
mapping form everywhere (a contract test enforces that).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from neuroprune.arithmetic import ARITHMETICS
from neuroprune.errors import ProfileError, UnknownChipError, did_you_mean

SCHEMA_VERSION = 1
STATUSES = ("verified", "derived", "secondary", "estimate")
ENCODINGS = ("blocked_list", "crossbar", "row_list", "cam", "dense_matrix", "conv_kernel")
WEIGHT_FORMATS = ("loihi", "loihi2", "truenorth", "spinnaker", "int", "dynapse", "brainscales")
SIGN_MODES = ("signed", "sign_mode", "per_receptor", "per_row", "per_axon_type", "unsigned")
SCALE_KINDS = ("pow2_exponent", "pow2_shift", "per_layer_float", "analog_bias", "none")
IMPLEMENTATIONS = ("digital_sync", "digital_async", "mixed_signal", "analog")
NEURON_MODELS = ("LIF", "CubaLIF", "IF", "LI", "AdEx", "Izhikevich", "programmable")
LAYERS_PER_CORE = ("many", "one")
FAN_OUT_UNITS = ("axon", "core", "layer", "chip")
UNITS = {
    "chip.cores": "cores",
    "chip.neurons_max": "neurons",
    "chip.synapses_headline": "synapses",
    "chip.memory_bits": "bits",
    "chip.chips_per_system_max": "chips",
    "core.neurons_max": "neurons",
    "core.input_axons_max": "axons",
    "core.output_axons_max": "axons",
    "core.synapse_memory_bits": "bits",
    "neuron.fan_in_max": "synapses",
    "neuron.state_bits": "bits",
    "neuron.threshold_bits": "bits",
    "neuron.decay_bits": "bits",
    "neuron.bias_bits": "bits",
    "weights.bits": "bits",
    "neuron.arithmetic": "arithmetic",
    "weights.distinct_values_per_neuron": "values",
    "energy.synop_pj": "pJ",
    "energy.neuron_update_pj": "pJ",
}
"""The unit each numeric field must be written in (``neuron.fan_out_max``: ``<fan_out_unit>s``)."""

CEILINGS = {
    "chip.cores": 10**6,
    "chip.neurons_max": 10**9,
    "chip.synapses_headline": 10**12,
    "chip.memory_bits": 2**43,
    "chip.chips_per_system_max": 10**6,
    "core.neurons_max": 10**7,
    "core.input_axons_max": 10**7,
    "core.output_axons_max": 10**7,
    "core.synapse_memory_bits": 2**36,
    "neuron.fan_in_max": 10**7,
    "neuron.fan_out_max": 10**7,
    "neuron.state_bits": 64,
    "neuron.threshold_bits": 64,
    "neuron.decay_bits": 64,
    "neuron.bias_bits": 64,
    "weights.bits": 64,
    "weights.distinct_values_per_neuron": 2**32,
    "energy.synop_pj": 10**6,
    "energy.neuron_update_pj": 10**6,
    "core.synapse_encoding.block_synapses": 2**20,
    "core.synapse_encoding.block_header_bits": 2**16,
    "core.synapse_encoding.word_bits": 2**16,
    "core.synapse_encoding.index_bits": 64,
    "core.synapse_encoding.extra_bits_per_synapse": 64,
    "core.synapse_encoding.bits_per_synapse": 256,
    "core.synapse_encoding.max_row_length": 2**20,
    "core.synapse_encoding.rows": 2**20,
    "core.synapse_encoding.cols": 2**20,
}
"""Largest plausible value of each field, far above any physical chip (largest known: 4,096
TrueNorth cores, 1 Mbit of synaptic memory per Loihi core, 1 GiB of SDRAM per SpiNNaker board,
150,000 neurons in Darwin II's one modelled core). A value above it is a unit slip or a typo
(bytes or KiB for bits, an extra zero); the error says so."""


@dataclass(frozen=True)
class Quantity:
    """A number with its unit and provenance, as written in a profile."""

    value: float | int | None
    unit: str | None = None
    status: str | None = None
    source: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class SynapseEncoding:
    """How synapses consume a core's synaptic memory.

    Kinds and their cost models (bits charged per core):

    - ``blocked_list`` (Loihi): each input axon's synapse list is cut into blocks of at most
      ``block_synapses``; a block of n synapses costs
      ``ceil((n * (w + index_bits + extra) + block_header_bits) / word_bits) * word_bits``;
      an axon that reaches every neuron of the core may use the dense form (no index bits).
    - ``row_list`` (SpiNNaker): ``bits_per_synapse`` per stored synapse, rows of at most
      ``max_row_length`` targets; memory is the chip's shared ``chip.memory_bits``.
    - ``crossbar`` (TrueNorth): a fixed ``rows x cols`` tile per core; pruned cells still occupy it.
    - ``cam`` (DYNAP-SE): a fixed number of CAM entries per neuron (= fan-in limit).
    - ``dense_matrix`` (Tianjic, BrainScaleS): every (input, neuron) position of a core costs
      ``bits_per_synapse`` whether zero or not.
    - ``conv_kernel`` (Speck/DYNAP-CNN): kernel memory per layer, padded to powers of two.
    """

    kind: str
    block_synapses: int | None = None
    block_header_bits: int = 0
    word_bits: int = 1
    index_bits: int = 0
    extra_bits_per_synapse: int = 0
    bits_per_synapse: int | None = None
    max_row_length: int | None = None
    rows: int | None = None
    cols: int | None = None


@dataclass(frozen=True)
class CoreSpec:
    """Per-core limits. ``None`` means the profile sets no such limit."""

    neurons_max: int
    input_axons_max: int | None
    output_axons_max: int | None
    synapse_memory_bits: int | None
    encoding: SynapseEncoding
    layers_per_core: str = "many"


@dataclass(frozen=True)
class NeuronSpec:
    """Neuron models the chip runs and the precision of their parameters (bits)."""

    models: tuple[str, ...]
    fan_in_max: int | None = None
    fan_out_max: int | None = None
    fan_out_unit: str | None = None
    reset_modes: tuple[str, ...] = ("zero",)
    state_bits: int | None = None
    threshold_bits: int | None = None
    decay_bits: int | None = None
    bias_bits: int | None = None
    arithmetic: str | None = None  # neuroprune.arithmetic.ARITHMETICS; None: float neurons


@dataclass(frozen=True)
class WeightFormat:
    """How the chip stores a synaptic weight.

    ``bits`` is the stored width per synapse used for memory accounting; ``format`` names the
    quantizer (see ``neuroprune.quantize``); ``params`` holds format-specific settings.
    """

    format: str
    bits: int
    bits_allowed: tuple[int, ...]
    sign: str
    sign_costs_bit: bool = False
    scale_kind: str = "none"
    scale_granularity: str | None = None
    scale_range: tuple[int, int] | None = None
    distinct_values_per_neuron: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnergySpec:
    """Energy per event in picojoules, where published (``None`` when not)."""

    synop_pj: float | None = None
    neuron_update_pj: float | None = None


@dataclass(frozen=True)
class ChipProfile:
    """A validated chip profile. Build it with :func:`load_profile`."""

    id: str
    name: str
    vendor: str
    aliases: tuple[str, ...]
    implementation: str
    cores: int
    neurons_max: int
    synapses_headline: int | None
    chip_memory_bits: int | None
    chips_per_system_max: int | None
    core: CoreSpec
    neuron: NeuronSpec
    weights: WeightFormat
    conv_weight_sharing: bool
    energy: EnergySpec
    sources: Mapping[str, str]
    quantities: Mapping[str, Quantity]
    path: str
    sha256: str


# --------------------------------------------------------------------------------------------
# Locating profiles


def profiles_dir() -> Path:
    """Folder of the shipped profiles (inside the installed package)."""
    return Path(str(resources.files("neuroprune") / "hardware_profiles"))


def shipped_profile_paths() -> dict[str, Path]:
    """Map of profile id (file stem) to path, for every shipped profile."""
    return {p.stem: p for p in sorted(profiles_dir().glob("*.yaml"))}


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(" ", "_")


def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for stem, path in shipped_profile_paths().items():
        table[stem] = stem
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        aliases = raw.get("aliases") if isinstance(raw, Mapping) else None
        for alias in aliases if isinstance(aliases, list) else []:
            table.setdefault(_norm(str(alias)), stem)
    return table


def resolve_chip(chip: str) -> Path:
    """Turn a chip name, alias or a path to a YAML file into the profile's path.

    Raises :class:`UnknownChipError` with the closest shipped names when nothing matches.
    """
    candidate = Path(chip)
    if chip.endswith((".yaml", ".yml")) or candidate.is_file():
        if not candidate.is_file():
            raise ProfileError(
                "profile file not found",
                where=str(candidate),
                fix="Check the path, or name a shipped chip (neuroprune profiles list).",
            )
        return candidate
    table = _alias_table()
    key = _norm(chip)
    for name in (key, key.replace("_", "")):
        if name in table:
            return shipped_profile_paths()[table[name]]
    hint = did_you_mean(key, table, n=3, cutoff=0.5)
    raise UnknownChipError(
        f"unknown chip {chip!r}",
        where="--chip",
        fix=f"{hint}Run 'neuroprune profiles list' for the shipped chips, or pass a YAML path.",
    )


def list_profiles() -> list[ChipProfile]:
    """Load every shipped profile, sorted by id."""
    return [load_profile(path) for path in shipped_profile_paths().values()]


def load_profile(chip: str | Path) -> ChipProfile:
    """Load and validate a profile by chip name, alias or path."""
    path = resolve_chip(str(chip))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile: {exc.strerror}", where=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"not a UTF-8 text file (byte {exc.start})",
            where=str(path),
            fix="Pass a profile YAML file (see hardware_profiles/README.md).",
        ) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProfileError(
            f"malformed YAML{line}: {getattr(exc, 'problem', exc)}",
            where=str(path),
            fix="Fix the YAML syntax (see hardware_profiles/README.md).",
        ) from exc
    digest = hashlib.sha256(text.encode()).hexdigest()
    return parse_profile(raw, path=str(path), sha256=digest)


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
            unknown = set(node) - {"value", "unit", "status", "source", "note"}
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
            unknown = set(node) - {"value", "unit", "status", "source", "note"}
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
    },
    "neuron": {
        "models",
        "fan_in_max",
        "fan_out_max",
        "fan_out_unit",
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
        layers_per_core=r.choice("core.layers_per_core", LAYERS_PER_CORE, default="many"),
    )
    neuron = NeuronSpec(
        models=r.str_list("neuron.models", NEURON_MODELS),
        fan_in_max=r.quantity("neuron.fan_in_max", required=False),
        fan_out_max=r.quantity("neuron.fan_out_max", required=False),
        fan_out_unit=r.choice("neuron.fan_out_unit", FAN_OUT_UNITS, default="") or None,
        reset_modes=r.str_list("neuron.reset_modes") or ("zero",),
        state_bits=r.quantity("neuron.state_bits", required=False),
        threshold_bits=r.quantity("neuron.threshold_bits", required=False),
        decay_bits=r.quantity("neuron.decay_bits", required=False),
        bias_bits=r.quantity("neuron.bias_bits", required=False),
        arithmetic=r.declared_name("neuron.arithmetic", ARITHMETICS),
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
    _check_consistency(r, cores, neurons_max, core_neurons)
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
    kind = r.choice(base + ".kind", ENCODINGS, default="dense_matrix")
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
    )
    needs = {
        "blocked_list": ("block_synapses",),
        "row_list": ("bits_per_synapse",),
        "crossbar": ("rows", "cols"),
        "dense_matrix": ("bits_per_synapse",),
    }.get(kind, ())
    for name in needs:
        if getattr(enc, name) is None:
            r.problem(f"{base}.{name}", f"required when kind is {kind!r}")
    return enc


def _parse_weights(r: _Reader) -> WeightFormat:
    fmt = r.choice("weights.format", WEIGHT_FORMATS, default="int")
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


def _check_consistency(r: _Reader, cores, neurons_max, core_neurons) -> None:
    if cores and neurons_max and core_neurons and cores * core_neurons < neurons_max:
        r.problem(
            "chip.neurons_max",
            f"{neurons_max} exceeds chip.cores x core.neurons_max = {cores * core_neurons}",
        )


def _check_encoding_memory(r: _Reader, core: CoreSpec) -> None:
    enc = core.encoding
    if enc.kind == "blocked_list" and core.synapse_memory_bits is None:
        r.problem(
            "core.synapse_memory_bits", "required when synapse_encoding.kind is 'blocked_list'"
        )
    if enc.kind == "dense_matrix" and core.synapse_memory_bits is None:
        r.problem(
            "core.synapse_memory_bits", "required when synapse_encoding.kind is 'dense_matrix'"
        )
