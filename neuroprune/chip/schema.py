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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
STATUSES = ("verified", "derived", "secondary", "estimate")
SIGN_MODES = ("signed", "sign_mode", "per_receptor", "per_row", "per_axon_type", "unsigned")
SCALE_KINDS = ("pow2_exponent", "pow2_shift", "per_layer_float", "analog_bias", "none")
IMPLEMENTATIONS = ("digital_sync", "digital_async", "mixed_signal", "analog")
NEURON_MODELS = ("LIF", "CubaLIF", "IF", "LI", "AdEx", "Izhikevich", "programmable")
LAYERS_PER_CORE = ("many", "one")
FAN_OUT_UNITS = ("axon", "core", "layer", "chip")
FAN_OUT_METHODS = ("limit", "source_copies")
"""How a chip meets a fan-out beyond ``neuron.fan_out_max``: ``limit`` (it cannot: the placement
must keep every neuron's targets within the limit) or ``source_copies`` (the neuron is
duplicated inside its own core, one copy per ``fan_out_max`` destinations; the copies share the
core's axons and cost neuron slots, TrueNorth as Eedn maps it)."""
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
    "neuron.fan_out_met_by": "method",
    "core.layers_per_core": "placement",
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
      ``core_kernel_entries`` / ``core_neuron_entries``: each core's kernel and neuron-state
      memory (entries, core 0 first) where cores differ; a layer then needs one core that
      holds both of its memories, and layers are matched to cores as Sinabs'
      ``get_valid_mapping`` does (:mod:`neuroprune.fit.core_matching`).
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
    core_kernel_entries: tuple[int, ...] | None = None
    core_neuron_entries: tuple[int, ...] | None = None


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
    fan_out_met_by: str | None = None
    """:data:`FAN_OUT_METHODS`; None: ``limit``."""
    reset_modes: tuple[str, ...] = ("zero",)
    state_bits: int | None = None
    threshold_bits: int | None = None
    decay_bits: int | None = None
    bias_bits: int | None = None
    arithmetic: str | None = None  # neuroprune.chip.arithmetic.ARITHMETICS; None: float neurons
    arithmetic_unpublished: str | None = None
    """Set when the profile declares ``neuron.arithmetic: {value: null, source, note}``: no public
    source defines the chip's neuron arithmetic bit for bit; the note says which sources were
    checked and what they lack (the chip then keeps float neurons, said in every report)."""


@dataclass(frozen=True)
class WeightFormat:
    """How the chip stores a synaptic weight.

    ``bits`` is the stored width per synapse used for memory accounting; ``format`` names the
    quantizer (``neuroprune.chip.formats.QUANTIZERS``); ``params`` holds format-specific settings.
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
