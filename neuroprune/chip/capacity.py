"""Capacity models (layer L1, torch-free): what one core and one chip of a profile hold.

One object per chip family (as Sinabs has one class per chip): :func:`capacity_model` builds the
:class:`CapacityModel` subclass registered for the profile's ``core.synapse_encoding.kind``.
Packing (``neuroprune.fit.packing.pack``), the fit rules and the budget all ask it; nothing else costs
synapses.

The question it answers is always about a whole core: *does this set of layer groups fit this
core?* A :class:`Load` is what a set of groups puts on a core (neurons, synapses per input axon
keyed by the source that drives the axon, per-layer fixed memory). Loads are added together
first and costed once (:meth:`CapacityModel.usage`): a core's cost comes from the union of its
input axons and all its neurons, never from groups costed separately and summed (that
under-counts ``dense_matrix`` memory, the positions between one group's inputs and another
group's neurons, and over-counts axons shared by two groups).

Definitions (``hardware_profiles/README.md``, "Synapse encodings"), with ``w = weights.bits``:

- ``blocked_list``: per input axon with ``n`` synapses in the core, ``ceil(n / B)`` blocks; a
  block of ``k`` synapses costs ``ceil((k*(w + index_bits + extra) + header) / word) * word``
  bits; an axon that reaches every neuron of the core may use the dense form (no index bits).
- ``dense_matrix``: ``inputs used x neurons x bits_per_synapse`` bits per core.
- ``crossbar``: at most ``rows`` input axons and ``cols`` neurons per core; no memory charge.
- ``cam``: ``neuron.fan_in_max`` CAM entries per neuron (the fan-in rule); no core memory.
- ``row_list``: ``bits_per_synapse`` per synapse, charged to the chip's shared memory.
- ``conv_kernel``: per layer, ``c_in * 2^(ceil log2(kh*kw) + ceil log2 c_out)`` kernel entries of
  ``w`` bits and ``c_out * 2^(ceil log2 H_out + ceil log2 W_out)`` neuron entries (Sinabs'
  ``DynapcnnLayer.memory_summary``); a layer is never split over cores.
- ``population`` (Xylo): ``rows`` input channels -> a hidden population of
  ``core.neurons_max`` -> ``cols`` readout neurons, dense fixed-size matrices; no memory charge.

Input copies: after quantization some formats need several axons per input (TrueNorth's ternary
mapping drives a positive-type and a negative-type axon; BrainScaleS sets the sign per synapse
row). :meth:`CapacityModel.input_copies` anticipates that from the profile so that the budget
and the dense check already count the duplicated axons.

Rows per sign (``weights.sign: per_row``, BrainScaleS): an input takes one synapse row per sign
its synapses into the core use, counted per input and per core from the layer's signs
(``LayerSummary.negative``): an input whose synapses on a core share one sign takes 1 row
there, a mixed one 2 (:meth:`CapacityModel.group_load`; an axon is keyed ``(input, sign)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, cast

import numpy as np
import scipy.sparse as sp

from neuroprune.chip.encodings import CAPACITY_MODELS
from neuroprune.chip.formats.base import get_quantizer
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.summary import LayerSummary, NetworkSummary

INPUT = "input"
"""Source name of the network input (off-chip spikes)."""


@dataclass(frozen=True)
class Group:
    """Neurons ``start:stop`` of ``layer`` (the unit the packer places).

    ``slots``: where the chip meets fan-out by copies in the source core
    (:attr:`CapacityModel.copies_in_source_core`), the neuron slots ``d_j`` of every neuron of
    the layer (the neuron and its copies, :meth:`CapacityModel.source_slots`); None: one slot
    per neuron."""

    layer: LayerSummary
    source: str
    start: int
    stop: int
    slots: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def neurons(self) -> int:
        return self.stop - self.start

    @property
    def neuron_slots(self) -> int:
        """Neuron slots the group takes in its core: ``sum_{j in start:stop} d_j`` (copies
        included), or its neurons where no copies are modelled."""
        if self.slots is None:
            return self.neurons
        return int(self.slots[self.start : self.stop].sum())


@dataclass(frozen=True, eq=False)
class Load:
    """What a set of groups puts on one core.

    Attributes:
        neurons: neurons charged (conv_kernel: padded neuron-state entries).
        axons: source name -> synapses per input axon of that source (copies expanded).
        fixed_bits: memory charged per layer whatever its sparsity (conv_kernel kernels), keyed
            by layer name so a layer is charged once per core.
        synapses: synapses placed (for the chip-level ``row_list`` memory).
    """

    neurons: int = 0
    axons: Mapping[str, np.ndarray] = field(default_factory=dict)
    fixed_bits: Mapping[str, int] = field(default_factory=dict)
    synapses: int = 0

    def __add__(self, other: Load) -> Load:
        axons = dict(self.axons)
        for source, counts in other.axons.items():
            axons[source] = axons[source] + counts if source in axons else counts
        return Load(
            neurons=self.neurons + other.neurons,
            axons=axons,
            fixed_bits={**self.fixed_bits, **other.fixed_bits},
            synapses=self.synapses + other.synapses,
        )

    def per_axon(self) -> np.ndarray:
        """Synapses of every input axon with at least one synapse into the core."""
        if not self.axons:
            return np.zeros(0, dtype=np.int64)
        counts = np.concatenate([np.asarray(c, dtype=np.int64) for c in self.axons.values()])
        return counts[counts > 0]


@dataclass(frozen=True)
class CoreUsage:
    """Resources one core uses (``memory_bits`` None: the encoding has no core memory)."""

    neurons: int
    input_axons: int
    memory_bits: int | None


@dataclass(frozen=True)
class InputBlocks:
    """Core blocks a layer is pruned into, so that each block sits in one core.

    The layer's ``neurons`` are cut into ``blocks`` contiguous blocks (block ``b`` holds
    neurons ``b*size : (b+1)*size`` with ``size = ceil(neurons / blocks)``) and a block keeps at
    most ``inputs_per_block`` distinct inputs, so one core holds a block:
    ``inputs_per_block x input copies <= input axons per core``.

    ``shared_inputs`` False (fan-out limited in cores, TrueNorth's one target core): every input
    feeds one block only, so each source's targets sit in one core. True (axons shared by a
    core's neurons, crossbar and dense-matrix cores): blocks choose their inputs independently
    (an input may feed several blocks); the block's neurons share its axons, so the layer needs
    about ``blocks`` cores instead of one per neuron. ``reason`` says which rule made them.
    """

    blocks: int
    inputs_per_block: int
    neurons: int
    inputs: int
    shared_inputs: bool = False
    reason: str = "fan-out"

    @property
    def size(self) -> int:
        return -(-self.neurons // self.blocks)

    def as_dict(self) -> dict[str, int | bool | str]:
        return {
            "blocks": self.blocks,
            "inputs_per_block": self.inputs_per_block,
            "shared_inputs": self.shared_inputs,
            "reason": self.reason,
        }

    def describe(self, layer: str) -> str:
        """One line for reports, e.g. ``layer fc0: 7 blocks of <= 19 neurons x <= 128 inputs
        (inputs shared between blocks; crossbar: a core's input axons are shared by its
        neurons)``."""
        inputs = "inputs shared between blocks" if self.shared_inputs else "disjoint inputs"
        return (
            f"layer {layer}: {self.blocks} blocks of <= {self.size} neurons x <= "
            f"{self.inputs_per_block} inputs ({inputs}; {self.reason})"
        )


@dataclass(frozen=True)
class Excess:
    """One resource over its per-core limit."""

    resource: str  # "neurons" | "input_axons" | "memory_bits"
    used: int
    limit: int


class CapacityModel:
    """Capacity of one core and one chip of ``profile`` (base: no per-core memory)."""

    kind: ClassVar[str] = ""
    """The ``core.synapse_encoding.kind`` a profile names to use this model."""
    splits_layers: ClassVar[bool] = True
    """False when a layer must sit whole on one core (conv_kernel)."""
    memory_per_layer: ClassVar[bool] = False
    """True when core memory is charged per whole layer (conv_kernel): a memory excess is then
    the layer's (fit rule ``layer_memory``), not the core's (``core_memory``)."""
    required_fields: ClassVar[tuple[str, ...]] = ()
    """``core.synapse_encoding`` fields a profile of this kind must give."""
    needs_core_memory: ClassVar[bool] = False
    """True when the profile must give ``core.synapse_memory_bits``."""
    shares_axons: ClassVar[bool] = False
    """True when a core pays for every input axon it receives across all its neurons, however
    few of them the axon reaches (a crossbar row, a dense-matrix row): neurons placed on one
    core should then share their inputs, and the projection prunes every dense layer into core
    blocks (:meth:`input_blocks`)."""

    def __init__(
        self, profile: ChipProfile, *, one_sign_layers: frozenset[str] = frozenset()
    ) -> None:
        self.profile = profile
        self.w = profile.weights.bits
        self.one_sign_layers = one_sign_layers
        """Layers whose inputs the projection keeps one-signed (``Budget.one_sign_layers``): a
        per-row-sign chip anticipates 1 row per input for them, not 2."""

    # -- limits -------------------------------------------------------------------------------
    @property
    def neurons_max(self) -> int:
        return self.profile.core.neurons_max

    @property
    def input_axons_max(self) -> int | None:
        return self.profile.core.input_axons_max

    @property
    def memory_bits_max(self) -> int | None:
        return None

    @property
    def signs_per_row(self) -> bool:
        """True when the sign is a property of the synapse row (``weights.sign: per_row``):
        rows are then counted per input and sign (module docstring)."""
        return self.profile.weights.sign == "per_row"

    def _rows_known(self, layer: LayerSummary | None) -> bool:
        return self.signs_per_row and layer is not None and layer.negative is not None

    def input_copies(self, layer: LayerSummary | None = None) -> int:
        """Axons per input: on a per-row-sign chip whose layer signs are known, the most rows
        any input of the layer takes (1 when every input is one-signed, else 2); otherwise the
        layer's own (set by its quantizer) or, before quantization, what the profile's sign
        handling will need (2 for ``per_axon_type`` and ``per_row``). Counts of axons use
        :meth:`input_rows` (per input), this one number anticipates them (blocks, budget)."""
        if self.signs_per_row and layer is not None and layer.name in self.one_sign_layers:
            return 1
        if layer is not None and self._rows_known(layer):
            return max(1, int(self.input_rows(layer).max(initial=1)))
        params = layer.neuron_params if layer is not None else None
        if params and params.get("input_copies"):
            return int(params["input_copies"])
        return 2 if self.profile.weights.sign in ("per_axon_type", "per_row") else 1

    def input_rows(self, layer: LayerSummary) -> np.ndarray:
        """Axons each input of ``layer`` takes where all its neurons sit together (length
        ``inputs``; 0 for an input without synapses): per-row-sign chips 1 or 2 by the signs
        the input uses (``LayerSummary.rows_per_input``), else :meth:`input_copies`."""
        rows = layer.rows_per_input() if self._rows_known(layer) else None
        if rows is not None:
            return rows
        return (layer.fan_out > 0).astype(np.int64) * self.input_copies(layer)

    def neuron_axons(self, layer: LayerSummary) -> np.ndarray:
        """Input axons (or CAM entries) each neuron of ``layer`` needs at least (length
        ``neurons``): per-row-sign chips one row per synapse (each input's row of the weight's
        own sign; the other sign's row is charged only to a core that also holds a neuron using
        it, by the core check); otherwise its chip entries (``LayerSummary.fan_in_entries``:
        DYNAP-SE1 CAM slots, else synapses) x input copies."""
        if self._rows_known(layer):
            return layer.fan_in
        return layer.fan_in_entries * self.input_copies(layer)

    def neuron_input_cap(self) -> int | None:
        """Most inputs one neuron may keep once its inputs are duplicated:
        ``min(neuron.fan_in_max, input axons per core) // input copies`` (None: no cap)."""
        caps = [c for c in (self.profile.neuron.fan_in_max, self.input_axons_max) if c]
        if not caps:
            return None
        return max(1, min(caps) // self.input_copies())

    def fan_out_cores(self) -> int | None:
        """Most cores one neuron's targets may span (None: unlimited, counted per layer, or met
        by copies in the source core, :attr:`copies_in_source_core`)."""
        neuron = self.profile.neuron
        if neuron.fan_out_max is None or (neuron.fan_out_unit or "core") not in ("core", "axon"):
            return None
        if self.copies_in_source_core:
            return None
        return neuron.fan_out_max

    # -- fan-out by copies in the source core -------------------------------------------------
    @property
    def copies_in_source_core(self) -> bool:
        """True where a neuron drives ``neuron.fan_out_max`` axons and a larger fan-out is met
        by copies of the neuron inside its own core (``neuron.fan_out_met_by: source_copies``,
        TrueNorth as Eedn maps it): fan-out then costs neuron slots, not a placement limit."""
        return self.profile.neuron.fan_out_met_by == "source_copies"

    def input_axons_on_core(self, layer: LayerSummary, rows: np.ndarray) -> np.ndarray:
        """Input axons each input of ``layer`` takes on a core holding neurons ``rows`` of the
        layer (length ``inputs``): per-row-sign chips one per sign its synapses there use,
        otherwise ``input copies`` for an input some of those neurons use, else 0."""
        conn = layer.connectivity[np.asarray(rows, dtype=np.int64)]
        per_input = np.bincount(conn.indices, minlength=layer.inputs)
        if not self._rows_known(layer):
            return (per_input > 0).astype(np.int64) * self.input_copies(layer)
        negative = cast(sp.csr_matrix, layer.negative)[np.asarray(rows, dtype=np.int64)]
        minus = np.bincount(negative.indices, minlength=layer.inputs)
        return (per_input - minus > 0).astype(np.int64) + (minus > 0).astype(np.int64)

    def source_slots(
        self, consumer: LayerSummary, rows_per_core: Iterable[np.ndarray]
    ) -> np.ndarray:
        """Neuron slots of each source neuron ``j`` of ``consumer`` (its input ``j``; length
        ``consumer.inputs``) where fan-out is met by copies in the source core:

            A_j = sum over cores c holding neurons of consumer (rows_per_core) of
                  the axons input j takes on c (:meth:`input_axons_on_core`)
            d_j = max(1, ceil(A_j / fan_out_max))

        one slot per ``fan_out_max`` destination axons; a neuron no core reads keeps its own
        slot. ``d_j - 1`` of them are copies. Everyone 1 where copies are not modelled."""
        slots = np.zeros(consumer.inputs, dtype=np.int64)
        if not self.copies_in_source_core:
            return slots + 1
        for rows in rows_per_core:
            slots += self.input_axons_on_core(consumer, rows)
        per_copy = max(1, self.profile.neuron.fan_out_max or 1)
        return np.maximum(1, -(-slots // per_copy))

    def least_source_slots(self, consumer: LayerSummary) -> np.ndarray:
        """The fewest slots each source neuron of ``consumer`` needs in any placement: every
        neuron of ``consumer`` on one core, ``d_j = max(1, ceil(rows_j / fan_out_max))`` with
        ``rows_j`` the axons input ``j`` takes there (:meth:`input_rows`); a lower bound since
        each core that reads ``j`` adds its axons to ``A_j``."""
        if not self.copies_in_source_core:
            return np.ones(consumer.inputs, dtype=np.int64)
        per_copy = max(1, self.profile.neuron.fan_out_max or 1)
        return np.maximum(1, -(-self.input_rows(consumer) // per_copy))

    def neuron_slots_total(self, summary: NetworkSummary) -> int:
        """Neuron slots of the network at least: its neurons, plus where fan-out is met by
        copies, ``sum_j (least d_j - 1)`` over every on-chip source neuron (the last layer's
        outputs and the off-chip inputs need no copies)."""
        total = summary.neurons
        if self.copies_in_source_core:
            for consumer in summary.layers[1:]:
                total += int((self.least_source_slots(consumer) - 1).sum())
        return total

    def input_blocks(self, summary: NetworkSummary) -> dict[str, InputBlocks]:
        """Core blocks each dense layer is pruned into (layers that fit one core need none).

        Fan-out limited in cores (TrueNorth): every dense layer with on-chip sources that
        cannot sit in one core gets disjoint blocks (:meth:`_fan_out_blocks`). Axons shared by
        a core's neurons (:attr:`shares_axons`): every other dense layer, the first included,
        gets blocks with shared inputs (:meth:`_shared_axon_blocks`)."""
        out = self._fan_out_blocks(summary)
        if self.shares_axons:
            for layer in summary.layers:
                if layer.kind == "dense" and layer.name not in out:
                    blocks = self._shared_axon_blocks(layer)
                    if blocks is not None:
                        out[layer.name] = blocks
        return out

    def _fan_out_blocks(self, summary: NetworkSummary) -> dict[str, InputBlocks]:
        """Block structure each dense layer with on-chip sources needs when the chip limits
        fan-out in cores and the layer cannot sit in one core (too many neurons, or more
        input axons than a core has): ``blocks = max(ceil(neurons / neurons_max),
        ceil(inputs / inputs_per_block))`` (at most one block per neuron), with
        ``inputs_per_block = input axons per core // copies``. Disjoint inputs per block keep
        every source's targets in one core (conservative where ``fan_out_max > 1``); where
        fan-out is met by copies in the source core they keep each source at its fewest copies
        (one core's axon copies, :meth:`least_source_slots`)."""
        axons = self.input_axons_max
        limited = self.fan_out_cores() is not None or self.copies_in_source_core
        if not limited or axons is None:
            return {}
        per_block = max(1, axons // self.input_copies())
        out = {}
        for layer in summary.layers[1:]:
            if layer.kind != "dense":
                continue
            in_one_core = layer.neurons <= self.neurons_max and layer.inputs <= per_block
            if in_one_core:
                continue
            blocks = max(-(-layer.neurons // self.neurons_max), -(-layer.inputs // per_block))
            out[layer.name] = InputBlocks(
                min(blocks, layer.neurons), per_block, layer.neurons, layer.inputs
            )
        return out

    def finest_mapping_blocks(self, summary: NetworkSummary) -> dict[str, InputBlocks]:
        """One block of ``K = input axons per core // c`` inputs shared by all the readout's
        neurons, where ``c`` (:meth:`Quantizer.finest_input_copies`: TrueNorth's 4 axons per
        input, 15 levels ``k A_i`` per neuron, against 2 axons and 4 levels) is more copies
        than the readout's inputs fit (``inputs x c > axons``) and its neurons fit one core.

        The readout (the last layer, dense) only: its neurons are the classes, so ``K``
        shared inputs still leave it ``neurons x K`` synapses (640 for 10 classes), while its
        coarse mapping costs accuracy (TrueNorth LIF on the conv: restoring the readout's float
        weights gave back 2.7 points); a hidden layer keeps the wide fields its many neurons
        need. One block in one core also keeps every source's targets in that core (the
        fan-out rule).

        Not part of :meth:`input_blocks`: the cap itself can cost more than the coarse mapping
        (docs/benchmarks.md, "TrueNorth LIF on conv: a readout pruned for the 4-axon mapping"),
        so a caller prunes both ways and keeps the better on validation
        (``benchmarks/quantize.py --anticipate-mapping choose``)."""
        axons = self.input_axons_max
        readout = summary.layers[-1] if summary.layers else None
        if axons is None or readout is None or readout.kind != "dense":
            return {}
        fmt = self.profile.weights
        quantizer = get_quantizer(fmt, self.profile.path)
        copies = quantizer.finest_input_copies(quantizer.read_params(fmt, self.profile.path))
        if copies is None or readout.neurons > self.neurons_max:
            return {}
        per_block = max(1, axons // copies)
        if readout.inputs <= per_block:
            return {}  # every input may stay: the finest mapping fits unpruned
        blocks = InputBlocks(
            1,
            per_block,
            readout.neurons,
            readout.inputs,
            shared_inputs=True,
            reason=f"{fmt.format}: {copies} axons per input (its finest mapping) fit one core",
        )
        return {readout.name: blocks}

    def _shared_axon_blocks(self, layer: LayerSummary) -> InputBlocks | None:
        """Blocks with shared inputs for one dense layer on a core whose axons its neurons
        share: ``K = min(inputs, input axons per core // copies)`` inputs per block,
        ``blocks = max(ceil(neurons / block_neurons_max(K)), ceil(inputs / K))`` (at most one
        per neuron): the fewest cores that still let every input be used by some block. None
        when a block may keep every input of the layer (nothing to impose)."""
        axons = self.input_axons_max
        if axons is None:
            return None
        per_block = max(1, min(layer.inputs, axons // self.input_copies(layer)))
        if per_block >= layer.inputs:
            return None  # every block may keep every input: no structure to impose
        most = max(1, self.block_neurons_max(per_block))
        blocks = max(-(-layer.neurons // most), -(-layer.inputs // per_block))
        return InputBlocks(
            min(blocks, layer.neurons),
            per_block,
            layer.neurons,
            layer.inputs,
            shared_inputs=True,
            reason=f"{self.kind}: a core's input axons are shared by its neurons",
        )

    def block_neurons_max(self, inputs: int) -> int:
        """Most neurons one core holds when they share ``inputs`` inputs (base: the core's
        neuron limit)."""
        return self.neurons_max

    def unprunable_excess(self, summary: NetworkSummary, cores: int, chips: int) -> list[str]:
        """Limits that no pruning of synapses can meet (neurons stay): one line each, naming
        the limit. Pruning removes synapses only, so neurons per chip, the cores the neurons
        alone need, and padded per-layer memory are fixed before training."""
        out = []
        limit = self.profile.neurons_max * chips
        if summary.neurons > limit:
            out.append(
                f"chip.neurons_max: {summary.neurons} neurons > {limit} "
                f"({chips} chip(s) x {self.profile.neurons_max})"
            )
        need = -(-summary.neurons // self.neurons_max)
        if self.splits_layers and need > cores:
            out.append(
                f"core.neurons_max: {summary.neurons} neurons need {need} cores of "
                f"{self.neurons_max}, {cores} allocated"
            )
        layer_cores = self.layer_slice_cores(summary)
        if self.splits_layers and layer_cores is not None and max(need, cores) < layer_cores:
            out.append(
                f"core.layers_per_core: one layer per core, slices of at most "
                f"{self.neurons_max} neurons: {layer_cores} cores, {cores} allocated"
            )
        return out

    def layer_slice_cores(self, summary: NetworkSummary) -> int | None:
        """Cores the layers need when a core holds neurons of one layer only
        (``core.layers_per_core: one``): ``sum over layers of max(1, ceil(n_l / neurons_max))``
        where the chip splits layers into slices (sPyNNaker's fixed slices of one population),
        one core per layer where it does not (Speck). None when layers may share a core."""
        if self.profile.core.layers_per_core != "one":
            return None
        if not self.splits_layers:
            return len(summary.layers)
        return sum(max(1, -(-layer.neurons // self.neurons_max)) for layer in summary.layers)

    # -- loads --------------------------------------------------------------------------------
    def group_load(self, group: Group) -> Load:
        """Load of one group: its neuron slots (its neurons, and their copies where fan-out is
        met by copies, :attr:`Group.neuron_slots`) and the synapses it takes from each input
        axon."""
        conn = group.layer.connectivity
        cols = conn.indices[conn.indptr[group.start] : conn.indptr[group.stop]]
        per_input = np.bincount(cols, minlength=group.layer.inputs).astype(np.int64)
        if self._rows_known(group.layer):
            rows = self._signed_rows(group)
            return Load(group.neuron_slots, {group.source: rows}, {}, int(cols.size))
        copies = self.input_copies(group.layer)
        per_axon = np.repeat(per_input, copies) if copies > 1 else per_input
        return Load(group.neuron_slots, {group.source: per_axon}, {}, int(cols.size))

    @staticmethod
    def _signed_rows(group: Group) -> np.ndarray:
        """Synapses of the group per (input, sign) row: ``[positive rows..., negative rows...]``
        (length ``2 x inputs``; a row without synapses is no axon, :meth:`Load.per_axon`)."""
        layer = group.layer
        negative = cast(sp.csr_matrix, layer.negative)  # _rows_known checked it
        conn, neg = layer.connectivity, negative
        cols = conn.indices[conn.indptr[group.start] : conn.indptr[group.stop]]
        neg_cols = neg.indices[neg.indptr[group.start] : neg.indptr[group.stop]]
        total = np.bincount(cols, minlength=layer.inputs).astype(np.int64)
        minus = np.bincount(neg_cols, minlength=layer.inputs).astype(np.int64)
        return np.concatenate([total - minus, minus])

    def load(self, groups: Iterable[Group]) -> Load:
        total = Load()
        for group in groups:
            total = total + self.group_load(group)
        return total

    # -- costs --------------------------------------------------------------------------------
    def memory_bits(self, load: Load) -> int | None:
        """Synaptic memory (bits) the load uses in one core; None: not charged per core."""
        return None

    def usage(self, load: Load) -> CoreUsage:
        return CoreUsage(load.neurons, int(load.per_axon().size), self.memory_bits(load))

    def excess(self, usage: CoreUsage) -> list[Excess]:
        """Every per-core limit that ``usage`` breaks."""
        out = []
        limits = (
            ("neurons", usage.neurons, self.neurons_max),
            ("input_axons", usage.input_axons, self.input_axons_max),
            ("memory_bits", usage.memory_bits, self.memory_bits_max),
        )
        for resource, used, limit in limits:
            if used is not None and limit is not None and used > limit:
                out.append(Excess(resource, int(used), int(limit)))
        return out

    def holds(self, load: Load) -> bool:
        """Does one core hold ``load``?"""
        return not self.excess(self.usage(load))

    def synapses_per_core(self, sparse: bool = True) -> int | None:
        """Most synapses one core can store (an upper bound for budgets); None: unbounded.
        ``sparse`` picks the sparse storage form where the encoding has two (blocked_list)."""
        return None

    # -- chip level ---------------------------------------------------------------------------
    def chip_memory_bits(self, synapses: int) -> int | None:
        """Chip-level synaptic memory (bits) for ``synapses`` stored synapses; None: none."""
        return None

    def core_resources(self, summary: NetworkSummary) -> dict[str, tuple[int, int | None]]:
        """Totals of each per-core resource and the per-core capacity: ``{name: (total, cap)}``.

        Each axon is counted once per consuming layer (a lower bound: a layer split over cores
        repeats its axons); neurons are neuron slots, the fewest copies included where fan-out
        is met by copies (:meth:`neuron_slots_total`). Used for the lower bound
        ``max ceil(total / cap)`` on cores.
        """
        out: dict[str, tuple[int, int | None]] = {
            "neurons": (self.neuron_slots_total(summary), self.neurons_max)
        }
        if self.input_axons_max:
            axons = sum(int(self.input_rows(layer).sum()) for layer in summary.layers)
            out["input_axons"] = (axons, self.input_axons_max)
        return out

    def cores_lower_bound(self, summary: NetworkSummary) -> int:
        """``max over resources of ceil(total / per-core capacity)`` (at least 1), and at least
        :meth:`layer_slice_cores` where a core holds one layer only."""
        totals = self.core_resources(summary).values()
        bounds = [1] + [math.ceil(total / cap) for total, cap in totals if cap]
        return max(bounds + [self.layer_slice_cores(summary) or 1])


def register_capacity_model(cls: type[CapacityModel]) -> type[CapacityModel]:
    """Register ``cls`` under ``cls.kind`` in :data:`CAPACITY_MODELS` (a class decorator). A
    new chip family is one subclass registered with this and one profile YAML."""
    return CAPACITY_MODELS.register(cls.kind, cls)


def capacity_model(
    profile: ChipProfile, *, one_sign_layers: frozenset[str] = frozenset()
) -> CapacityModel:
    """The capacity model of ``profile`` (by ``core.synapse_encoding.kind``);
    ``one_sign_layers``: layers the projection will keep one-signed per input (anticipation of
    rows on per-row-sign chips, :attr:`CapacityModel.one_sign_layers`)."""
    return CAPACITY_MODELS.get(profile.core.encoding.kind)(profile, one_sign_layers=one_sign_layers)


@register_capacity_model
class BlockedList(CapacityModel):
    """Loihi's blocked synapse lists (nengo-loihi's ``SynapseConfig.bits_per_axon``)."""

    kind = "blocked_list"
    required_fields = ("block_synapses",)
    needs_core_memory = True

    @property
    def memory_bits_max(self) -> int | None:
        return self.profile.core.synapse_memory_bits

    def _block_bits(self, n: np.ndarray | np.integer, bits_per_synapse: int) -> np.ndarray:
        """Bits of blocks of ``n`` synapses: ``ceil((n*s + header) / word) * word`` (0 if n=0)."""
        enc = self.profile.core.encoding
        raw = n * bits_per_synapse + enc.block_header_bits
        return np.where(n > 0, -(-raw // enc.word_bits) * enc.word_bits, 0)

    def _axon_bits(self, per_axon: np.ndarray, bits_per_synapse: int) -> np.ndarray:
        """Bits of each axon's list: full blocks of ``B`` plus one partial block."""
        b = self.profile.core.encoding.block_synapses or 64
        full, rest = np.divmod(per_axon, b)
        return full * self._block_bits(np.int64(b), bits_per_synapse) + self._block_bits(
            rest, bits_per_synapse
        )

    def memory_bits(self, load: Load) -> int:
        per_axon = load.per_axon()
        if per_axon.size == 0:
            return 0
        enc = self.profile.core.encoding
        sparse = self._axon_bits(per_axon, self.w + enc.extra_bits_per_synapse + enc.index_bits)
        dense = self._axon_bits(per_axon, self.w + enc.extra_bits_per_synapse)
        reaches_all = per_axon >= load.neurons
        return int(np.where(reaches_all, np.minimum(sparse, dense), sparse).sum())

    def synapses_per_core(self, sparse: bool = True) -> int | None:
        """``floor(M / block bits) * B`` with full blocks of ``B`` synapses (sparse: with the
        index bits; dense form: without)."""
        enc = self.profile.core.encoding
        b = enc.block_synapses or 64
        s = self.w + enc.extra_bits_per_synapse + (enc.index_bits if sparse else 0)
        memory_bits = cast(int, self.memory_bits_max)  # required for this kind (profile_reader)
        return memory_bits // int(self._block_bits(np.int64(b), s)) * b

    def core_resources(self, summary: NetworkSummary) -> dict[str, tuple[int, int | None]]:
        out = super().core_resources(summary)
        enc = self.profile.core.encoding
        s = self.w + enc.extra_bits_per_synapse
        out["memory_bits"] = (summary.synapses(False) * s, self.memory_bits_max)
        return out


@register_capacity_model
class DenseMatrix(CapacityModel):
    """Tianjic / BrainScaleS: every (input axon used, neuron) position of a core costs bits."""

    kind = "dense_matrix"
    required_fields = ("bits_per_synapse",)
    needs_core_memory = True
    shares_axons = True

    def block_neurons_max(self, inputs: int) -> int:
        """``min(neurons_max, memory // (inputs x copies x bits_per_position))``: a block's
        matrix must fit the core's memory."""
        memory = self.memory_bits_max
        if memory is None:
            return self.neurons_max
        row_bits = inputs * self.input_copies() * self.bits_per_position
        return min(self.neurons_max, memory // max(row_bits, 1))

    @property
    def bits_per_position(self) -> int:
        return self.profile.core.encoding.bits_per_synapse or self.w

    @property
    def memory_bits_max(self) -> int | None:
        return self.profile.core.synapse_memory_bits

    def memory_bits(self, load: Load) -> int:
        return int(load.per_axon().size) * load.neurons * self.bits_per_position

    def synapses_per_core(self, sparse: bool = True) -> int | None:
        memory_bits = cast(int, self.memory_bits_max)  # required for this kind (profile_reader)
        return memory_bits // self.bits_per_position

    def core_resources(self, summary: NetworkSummary) -> dict[str, tuple[int, int | None]]:
        out = super().core_resources(summary)
        out["memory_bits"] = (
            summary.synapses(False) * self.bits_per_position,
            self.memory_bits_max,
        )
        return out


@register_capacity_model
class Crossbar(CapacityModel):
    """TrueNorth: a fixed ``rows x cols`` tile per core, however sparse."""

    kind = "crossbar"
    required_fields = ("rows", "cols")
    shares_axons = True

    @property
    def neurons_max(self) -> int:
        cols = self.profile.core.encoding.cols
        return min(self.profile.core.neurons_max, cols) if cols else self.profile.core.neurons_max

    @property
    def input_axons_max(self) -> int | None:
        rows, cap = self.profile.core.encoding.rows, self.profile.core.input_axons_max
        return min(x for x in (rows, cap) if x is not None) if (rows or cap) else None

    def synapses_per_core(self, sparse: bool = True) -> int | None:
        return (self.input_axons_max or 0) * self.neurons_max or None


@register_capacity_model
class Cam(CapacityModel):
    """DYNAP-SE: ``fan_in_max`` CAM entries per neuron (checked by the fan-in rule)."""

    kind = "cam"

    def synapses_per_core(self, sparse: bool = True) -> int | None:
        cap = self.profile.neuron.fan_in_max
        return self.neurons_max * cap if cap else None


@register_capacity_model
class RowList(CapacityModel):
    """SpiNNaker: ``bits_per_synapse`` per stored synapse in the chip's shared memory."""

    kind = "row_list"
    required_fields = ("bits_per_synapse",)

    @property
    def bits_per_synapse(self) -> int:
        return self.profile.core.encoding.bits_per_synapse or 32

    def chip_memory_bits(self, synapses: int) -> int | None:
        return synapses * self.bits_per_synapse

    def synapses_per_core(self, sparse: bool = True) -> int | None:
        memory = self.profile.chip_memory_bits
        return memory // self.bits_per_synapse // self.profile.cores if memory else None


@register_capacity_model
class ConvKernel(CapacityModel):
    """Speck / DYNAP-CNN: one whole layer per core, kernel and neuron memory padded to 2^k."""

    kind = "conv_kernel"
    splits_layers = False
    memory_per_layer = True

    @property
    def memory_bits_max(self) -> int | None:
        return self.profile.core.synapse_memory_bits

    def group_load(self, group: Group) -> Load:
        base = super().group_load(group)
        kernel, neurons = layer_entries(group.layer)
        return Load(neurons, base.axons, {group.layer.name: kernel * self.w}, base.synapses)

    def memory_bits(self, load: Load) -> int:
        return int(sum(load.fixed_bits.values()))

    def usage(self, load: Load) -> CoreUsage:
        return CoreUsage(load.neurons, 0, self.memory_bits(load))

    def unprunable_excess(self, summary: NetworkSummary, cores: int, chips: int) -> list[str]:
        """Padded kernel and neuron memory depend on shapes only: no unstructured pruning
        changes them (only removing channels does)."""
        out = super().unprunable_excess(summary, cores, chips)
        for layer in summary.layers:
            kernel, neurons = layer_entries(layer)
            if self.memory_bits_max is not None and kernel * self.w > self.memory_bits_max:
                out.append(
                    f"core.synapse_memory_bits: layer {layer.name} kernel "
                    f"{kernel * self.w} bits > {self.memory_bits_max}"
                )
            if neurons > self.neurons_max:
                out.append(
                    f"core.neurons_max: layer {layer.name} needs {neurons} neuron "
                    f"entries > {self.neurons_max}"
                )
        if len(summary.layers) > cores:
            out.append(
                f"chip.cores: {len(summary.layers)} layers need one core each, {cores} allocated"
            )
        return out


@register_capacity_model
class Population(CapacityModel):
    """Xylo: off-chip input channels -> one recurrent hidden population -> readout neurons, on
    one core with dense weight matrices (Rockpool's ``syns61201`` mapper).

    ``core.synapse_encoding.rows`` is the input channels, ``cols`` the readout neurons;
    ``core.neurons_max`` the core's neurons, hidden population and readout together (the
    hidden population is ``neurons_max - cols``). A chain of dense layers maps as Rockpool's
    mapper maps it: the last layer's neurons are the readout, every other layer's neurons are
    slices of the hidden population (layer to layer through the recurrent matrix); the fit
    rule ``population`` checks each part. The matrices are dense and fixed in size: pruning
    frees nothing (no synapse budget)."""

    kind = "population"
    required_fields = ("rows", "cols")

    @property
    def inputs_max(self) -> int:
        return cast(int, self.profile.core.encoding.rows)  # required for this kind

    @property
    def readout_max(self) -> int:
        return cast(int, self.profile.core.encoding.cols)  # required for this kind

    @property
    def hidden_max(self) -> int:
        return self.profile.core.neurons_max - self.readout_max

    @staticmethod
    def split(summary: NetworkSummary) -> tuple[int, int, int]:
        """``(input channels, hidden neurons, readout neurons)`` of a chain as the mapper
        allocates it (the first layer's inputs; all layers but the last; the last)."""
        layers = summary.layers
        if not layers:
            return 0, 0, 0
        return layers[0].inputs, sum(layer.neurons for layer in layers[:-1]), layers[-1].neurons


def conv_kernel_entries(c_in: int, c_out: int, kh: int, kw: int) -> int:
    """Kernel memory entries: ``c_in * 2^(ceil(log2(kh*kw)) + ceil(log2(c_out)))`` (Sinabs)."""
    return c_in * 2 ** (math.ceil(math.log2(kh * kw)) + math.ceil(math.log2(max(c_out, 1))))


def conv_neuron_entries(c_out: int, h_out: int, w_out: int) -> int:
    """Neuron-state entries: ``c_out * 2^(ceil(log2 H_out) + ceil(log2 W_out))`` (Sinabs)."""
    return c_out * 2 ** (math.ceil(math.log2(max(h_out, 1))) + math.ceil(math.log2(max(w_out, 1))))


def layer_entries(layer: LayerSummary) -> tuple[int, int]:
    """(kernel entries, neuron entries) of a layer on a conv_kernel core. A dense layer is a
    conv as Sinabs' ``convert_linear_to_conv`` makes it: over a flattened ``(C, H, W)`` map
    (``flat_shape``) an ``H x W`` kernel on ``C`` channels, otherwise a 1x1 conv with
    ``inputs`` channels; its output is ``neurons x 1 x 1``."""
    if layer.kind == "conv" and layer.conv:
        c_out, h, w = layer.out_shape
        kh, kw = layer.conv["kernel"]
        kernel = conv_kernel_entries(int(layer.conv["in_channels"]), c_out, kh, kw)
        return kernel, conv_neuron_entries(c_out, h, w)
    if layer.flat_shape is not None and len(layer.flat_shape) == 3:
        c, h, w = layer.flat_shape
        return conv_kernel_entries(c, layer.neurons, h, w), layer.neurons
    return conv_kernel_entries(layer.inputs, layer.neurons, 1, 1), layer.neurons


def sources(summary: NetworkSummary) -> dict[str, str]:
    """Layer name -> the source that drives its input axons: the previous layer in the chain
    (the network input for the first). A graph with several consumers of one source would
    give them the same source name, so their axons are shared on a core."""
    names = [INPUT] + [layer.name for layer in summary.layers]
    return {layer.name: names[i] for i, layer in enumerate(summary.layers)}
