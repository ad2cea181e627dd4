"""Synapse budgets (layer L2, torch-free): how many synapses a pruned network may keep.

A :class:`Budget` is the cap ``B`` on physical synapses (nonzero weights as the chip stores
them, :data:`neuroprune.core.summary.COUNTING_CONVENTION`) plus the hard per-neuron fan-in cap and
the per-layer minimums that keep every layer alive. :func:`derive_budget` takes

    B = min(chip allocation, --budget N, floor((1 - S) * dense positions), fan-in capacity)

and names the constraint that won (``binding``). Infeasible requests raise
:class:`neuroprune.core.errors.BudgetError` before any training starts.

The rest of the module is the pure logic of budget targeting (docs/pruning.md §6):

* :func:`select_synapses` — the exact end-of-training projection: keep the highest-scoring
  connections whose summed cost is at most ``B``, respecting per-layer minimums and the fan-in
  cap (greedy over one global order, ties broken by index);
* :func:`threshold_for_count` / :func:`count_above` — the knob ``D`` whose predicted final count
  ``sum(cost[|theta| > D])`` lands on a target, and that prediction;
* :func:`planned_count` — the geometric count path the controller steers along;
* :func:`steer_knob` — the slow multiplicative controller that moves a knob toward its ideal.

Per-layer minimum (our choice): the output layer keeps one synapse per output unit (a class
neuron with no input can never fire); every other layer keeps at least
``max(1, ceil(LAYER_MIN_FRACTION * dense positions))`` synapses, so no layer is cut off.
Hidden neurons may lose all inputs: forcing one synapse per hidden neuron would make 99 %
sparsity infeasible for small networks (e.g. 64-input MLPs).

This module never imports torch (a test checks it in a fresh interpreter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuroprune.chip.capacity import InputBlocks, capacity_model
from neuroprune.core.errors import BudgetError
from neuroprune.core.summary import COUNTING_CONVENTION, LayerSummary, NetworkSummary

LAYER_MIN_FRACTION = 0.001
BINDINGS = ("budget", "sparsity", "params", "chip", "fan_in_cap", "dense")


@dataclass(frozen=True)
class Budget:
    """The synapse budget a pruning run must meet.

    Attributes:
        synapses: ``B``, the most physical synapses the pruned network may keep (count).
        source: how ``B`` was derived, e.g. ``"chip:loihi cores=2"``, ``"user --budget"``,
            ``"user --sparsity 0.9"``.
        fan_in_cap: most nonzero inputs per neuron (``profile.neuron.fan_in_max``); ``None``
            when the chip sets no per-neuron limit.
        per_layer_min: layer name -> fewest synapses that layer keeps (see module docstring).
        counting: the counting convention (:data:`neuroprune.core.summary.COUNTING_CONVENTION`).
        conv_weight_sharing: True when a conv layer's synapses are its nonzero kernel entries
            (the chip shares conv weights); False when conv layers are counted unrolled.
        binding: which constraint set ``B``: one of :data:`BINDINGS`.
        dense_synapses: synapses of the unpruned network under the same convention.
        input_blocks: layer name -> the core blocks the projection prunes it into
            (:class:`neuroprune.chip.capacity.InputBlocks`: every input feeds one block, a block
            keeps at most ``inputs_per_block`` inputs), on chips whose fan-out is limited in
            cores (TrueNorth: a neuron's targets all sit in one core).
        one_sign_per_input: the projection keeps the synapses of each input of the dense
            layers in ``one_sign_layers`` one-signed (the sign whose eligible entries score
            more, :func:`neuroprune.pruning.selection.select_synapses`), so a chip that sets the
            sign per synapse row (BrainScaleS) gives those inputs one row; their core blocks then
            anticipate 1 row per input instead of 2 (the fan-in cap still anticipates 2).
        one_sign_layers: the dense hidden layers kept one-signed per input: those whose inputs
            would need more rows than one core has with 2 rows each (``2 x inputs > input axons
            per core``); a layer whose two rows per input fit one core, and the readout layer,
            keep both signs.
    """

    synapses: int
    source: str
    fan_in_cap: int | None = None
    per_layer_min: Mapping[str, int] = field(default_factory=dict)
    counting: str = COUNTING_CONVENTION
    conv_weight_sharing: bool = False
    binding: str = "budget"
    dense_synapses: int | None = None
    input_blocks: Mapping[str, InputBlocks] = field(default_factory=dict)
    one_sign_per_input: bool = False
    one_sign_layers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check_positive_int(self.synapses, where="budget", field_name="synapses")
        if self.fan_in_cap is not None:
            _check_fan_in_cap(self.fan_in_cap, where="budget")
        if self.binding not in BINDINGS:
            raise BudgetError(
                "unknown binding constraint",
                where="budget",
                field="binding",
                value=self.binding,
                fix=f"Use one of {list(BINDINGS)}.",
            )
        needed = sum(self.per_layer_min.values())
        if needed > self.synapses:
            raise _too_small_error(self, needed)

    @property
    def binds(self) -> bool:
        """False when ``B`` is at least the dense network's synapses: nothing to prune."""
        return self.dense_synapses is None or self.synapses < self.dense_synapses

    @property
    def sparsity(self) -> float | None:
        """Target sparsity ``1 - B / dense`` (None when the dense count is unknown)."""
        if not self.dense_synapses:
            return None
        return max(0.0, 1.0 - self.synapses / self.dense_synapses)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (report.json ``budget.*``)."""
        return {
            "synapses": self.synapses,
            "source": self.source,
            "binding": self.binding,
            "fan_in_cap": self.fan_in_cap,
            "per_layer_min": dict(self.per_layer_min),
            "counting": self.counting,
            "conv_weight_sharing": self.conv_weight_sharing,
            "dense_synapses": self.dense_synapses,
            "input_blocks": {k: v.as_dict() for k, v in self.input_blocks.items()},
        }


# --------------------------------------------------------------------------------------------
# Deriving B


@dataclass(frozen=True)
class _Limit:
    """One candidate for B: its value, the source text, the binding key and the CLI option."""

    synapses: int
    source: str
    binding: str
    option: str
    value: object


def derive_budget(
    profile: Any | None,
    summary: NetworkSummary,
    *,
    chips: int | None = None,
    cores: int | None = None,
    budget: int | None = None,
    sparsity: float | None = None,
    capacity: int | None = None,
    one_sign_per_input: bool = False,
) -> Budget:
    """Derive ``B`` for ``summary`` on ``profile`` (a ChipProfile, or None for no chip).

    ``capacity`` (optional) is what the allocation holds for this network's layer shapes, as
    measured by ``neuroprune.fit.allocation.allocation_capacity``; when given it tightens the chip limit
    (the per-core figure assumes perfectly filled synapse lists).

    ``B = min(chip limit, budget, floor((1 - sparsity) * dense), fan-in capacity, dense)``:

    * chip limit = allocated cores x :meth:`neuroprune.chip.capacity.CapacityModel.synapses_per_core` (sparse form,
      profile weight bits); ``--cores`` wins over ``--chips``; with neither, one whole chip.
      Where the encoding does not bound synapses per core, the chip headline synapse count is
      used (scaled to the allocation), else there is no chip limit;
    * dense = :meth:`NetworkSummary.dense_positions` under the chip's conv counting.

    Raises BudgetError when ``budget <= 0``, ``sparsity`` is outside ``[0, 1)``, the profile's
    fan-in cap is 0, the allocation is not positive, or B is below the per-layer minimums.
    """
    _check_request(chips=chips, cores=cores, budget=budget, sparsity=sparsity)
    one_sign = _one_sign_layers(profile, summary) if one_sign_per_input else frozenset()
    cap = _profile_fan_in_cap(profile, summary)
    blocks = (
        capacity_model(profile, one_sign_layers=one_sign).input_blocks(summary)
        if profile is not None
        else {}
    )
    if profile is not None:
        _check_prunable(profile, summary, chips=chips, cores=cores)
    sharing = bool(getattr(profile, "conv_weight_sharing", False)) if profile else False
    dense = summary.dense_positions(sharing)
    limits = _candidate_limits(profile, summary, chips, cores, budget, sparsity, cap, sharing)
    if capacity is not None and profile is not None:
        label = f"cores={cores}" if cores is not None else f"chips={chips or 1}"
        limits.append(
            _Limit(
                int(capacity),
                f"chip:{profile.id} {label} (packed)",
                "chip",
                "--cores" if cores is not None else "--chips",
                capacity,
            )
        )
    chosen = min(limits, key=lambda lim: (lim.synapses, limits.index(lim)))
    minimums = per_layer_minimums(summary, conv_weight_sharing=sharing)
    if chosen.synapses <= 0:
        raise BudgetError(
            f"{chosen.source} leaves no synapse to keep",
            where=chosen.option,
            field="synapses",
            value=chosen.synapses,
            fix=f"Allow at least {sum(minimums.values())} synapses.",
        )
    needed = sum(minimums.values())
    if chosen.synapses < needed:
        raise _infeasible_error(chosen, needed, minimums, dense)
    return Budget(
        synapses=int(chosen.synapses),
        source=chosen.source,
        fan_in_cap=cap,
        per_layer_min=minimums,
        counting=COUNTING_CONVENTION,
        conv_weight_sharing=sharing,
        binding=chosen.binding,
        dense_synapses=int(dense),
        input_blocks=blocks,
        one_sign_per_input=one_sign_per_input,
        one_sign_layers=one_sign,
    )


def _one_sign_layers(profile: Any | None, summary: NetworkSummary) -> frozenset[str]:
    """Dense hidden layers whose inputs, at 2 rows each, need more rows than one core has (the
    only ones a one-sign projection saves cores on; ``Budget.one_sign_layers``). The readout
    layer keeps both signs: a hidden unit that may only excite, or only inhibit, every class
    cost 11-27 points of validation accuracy on digits (docs/benchmarks.md)."""
    if profile is None:
        return frozenset()
    rows = capacity_model(profile).input_axons_max or profile.neuron.fan_in_max
    if rows is None:
        return frozenset()
    return frozenset(
        layer.name
        for layer in summary.layers[:-1]
        if layer.kind == "dense" and 2 * layer.inputs > rows
    )


def _candidate_limits(profile, summary, chips, cores, budget, sparsity, cap, sharing):
    """Every limit that applies, in tie-break order (user requests first)."""
    dense = summary.dense_positions(sharing)
    limits: list[_Limit] = []
    if budget is not None:
        limits.append(_Limit(int(budget), "user --budget", "budget", "--budget", budget))
    if sparsity is not None:
        kept = math.floor((1.0 - float(sparsity)) * dense)
        limits.append(
            _Limit(kept, f"user --sparsity {sparsity:g}", "sparsity", "--sparsity", sparsity)
        )
    if profile is not None:
        chip = chip_synapse_limit(profile, chips=chips, cores=cores)
        if chip is not None:
            limits.append(chip)
    if cap is not None:
        capacity = fan_in_capacity(summary, cap, conv_weight_sharing=sharing)
        if capacity < dense:
            source = _fan_in_source(profile, cap)
            limits.append(_Limit(capacity, source, "fan_in_cap", "--chip", cap))
    limits.append(_Limit(int(dense), DENSE_SOURCE, "dense", "--budget", dense))
    return limits


DENSE_SOURCE = "every dense synapse: nothing asked for fewer"
"""The budget's ``source`` when no allocation, --budget or --sparsity holds fewer synapses."""


def chip_synapse_limit(profile: Any, *, chips: int | None = None, cores: int | None = None):
    """Synapses the allocation holds: ``cores x synapses_per_core(profile, sparse=True)``.

    Without a per-core figure, ``chips x synapses_headline`` (or the core share of it).
    Returns None when the profile bounds neither.
    """
    per_core = capacity_model(profile).synapses_per_core(sparse=True)
    if cores is not None:
        alloc, label = int(cores), f"cores={int(cores)}"
    else:
        chips = 1 if chips is None else int(chips)
        alloc, label = chips * int(profile.cores), f"chips={chips}"
    option = "--cores" if cores is not None else "--chips"
    source = f"chip:{profile.id} {label}"
    if per_core is not None:
        return _Limit(alloc * int(per_core), source, "chip", option, alloc)
    headline = getattr(profile, "synapses_headline", None)
    if headline:
        total = int(headline) * alloc // max(int(profile.cores), 1)
        return _Limit(total, source, "chip", option, alloc)
    return None


def per_layer_minimums(summary: NetworkSummary, *, conv_weight_sharing: bool) -> dict[str, int]:
    """Fewest synapses each layer keeps (see the module docstring for the rule)."""
    minimums = {}
    last = len(summary.layers) - 1
    for index, layer in enumerate(summary.layers):
        dense = layer.dense_positions(conv_weight_sharing)
        if index == last:
            need = output_units(layer, conv_weight_sharing=conv_weight_sharing)
        else:
            need = max(1, math.ceil(LAYER_MIN_FRACTION * dense))
        minimums[layer.name] = int(min(need, dense))
    return minimums


def output_units(layer: LayerSummary, *, conv_weight_sharing: bool) -> int:
    """Synapses needed to give every output unit one input: neurons, or channels if shared."""
    if layer.kind == "conv" and conv_weight_sharing and layer.conv:
        return int(layer.conv["out_channels"])
    return layer.neurons


def fan_in_capacity(summary: NetworkSummary, cap: int, *, conv_weight_sharing: bool) -> int:
    """Most synapses the network can keep when no neuron has more than ``cap`` inputs.

    Dense: ``rows * min(cap, inputs)``. Conv: ``units * min(cap, C_in*kh*kw)`` where units are
    neurons (unrolled) or output channels (shared), never above the dense positions. For
    unrolled conv this is an upper bound (border neurons see fewer taps).
    """
    return sum(_layer_capacity(layer, cap, conv_weight_sharing) for layer in summary.layers)


def _layer_capacity(layer: LayerSummary, cap: int, sharing: bool) -> int:
    dense = layer.dense_positions(sharing)
    if layer.kind == "conv" and layer.conv:
        kh, kw = layer.conv["kernel"]
        taps = int(layer.conv["in_channels"]) * int(kh) * int(kw)
        return int(min(dense, output_units(layer, conv_weight_sharing=sharing) * min(cap, taps)))
    return int(min(dense, layer.neurons * min(cap, layer.inputs)))


# --------------------------------------------------------------------------------------------
# Validation and error text


def _check_positive_int(value: object, *, where: str, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise BudgetError(
            "the synapse budget must be a positive whole number",
            where=where,
            field=field_name,
            value=value,
            fix="Pass a positive integer, e.g. --budget 5000.",
        )


def _check_fan_in_cap(cap: object, *, where: str) -> None:
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap <= 0:
        raise BudgetError(
            "fan-in cap must be a positive number of inputs per neuron: no neuron could keep "
            "a synapse",
            where=where,
            field="neuron.fan_in_max",
            value=cap,
            fix="Set neuron.fan_in_max to a positive integer, or null for no limit.",
        )


def _check_request(*, chips, cores, budget, sparsity) -> None:
    if budget is not None:
        _check_positive_int(budget, where="--budget", field_name="budget")
    if sparsity is not None:
        ok = isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool)
        if not ok or not (0.0 <= float(sparsity) < 1.0) or math.isnan(float(sparsity)):
            raise BudgetError(
                "sparsity must be in [0, 1)",
                where="--sparsity",
                field="sparsity",
                value=sparsity,
                fix="Pass the fraction of synapses to remove, e.g. --sparsity 0.9.",
            )
    for option, value in (("--chips", chips), ("--cores", cores)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value <= 0
        ):
            raise BudgetError(
                "the allocation must be a positive number",
                where=option,
                field=option.lstrip("-"),
                value=value,
                fix=f"Pass {option} 1 or more.",
            )


def _profile_fan_in_cap(profile: Any | None, summary: NetworkSummary) -> int | None:
    """Inputs one neuron may keep on this chip, anticipating what comes after pruning:
    :meth:`neuroprune.chip.capacity.CapacityModel.neuron_input_cap` (fan-in and core input axons,
    divided by the input copies the quantizer will make, e.g. TrueNorth's positive and negative
    axon per input). None when the chip sets no cap that this network could reach."""
    if profile is None:
        return None
    cap = profile.neuron.fan_in_max
    if cap is not None:
        _check_fan_in_cap(cap, where=str(getattr(profile, "path", profile.id)))
    effective = capacity_model(profile).neuron_input_cap()
    widest = max((layer.inputs for layer in summary.layers), default=0)
    if cap is None and (effective is None or effective >= widest):
        return None
    return effective


def _fan_in_source(profile: Any, cap: int) -> str:
    """``chip:ID fan-in cap N`` and where N comes from when input copies halve it."""
    copies = capacity_model(profile).input_copies()
    limit = profile.neuron.fan_in_max or profile.core.input_axons_max
    why = f" (fan_in_max {limit} / {copies} input copies)" if copies > 1 else ""
    return f"chip:{profile.id} fan-in cap {cap}{why}"


def _check_prunable(profile: Any, summary: NetworkSummary, *, chips, cores) -> None:
    """Say before training when no synapse budget can make the network fit (the limit named)."""
    cores_alloc = cores if cores is not None else (chips or 1) * profile.cores
    chips_alloc = chips if chips is not None else -(-cores_alloc // profile.cores)
    problems = capacity_model(profile).unprunable_excess(summary, cores_alloc, chips_alloc)
    if problems:
        raise BudgetError(
            f"no synapse budget can make this network fit {profile.id}: " + "; ".join(problems),
            where="--chip",
            field=problems[0].split(":")[0],
            value=profile.id,
            fix="Use a narrower model (--hidden), allocate more cores/chips, or remove "
            "channels (--method sca).",
        )


def _infeasible_error(chosen: _Limit, needed: int, minimums: Mapping[str, int], dense: int):
    layer, most = max(minimums.items(), key=lambda item: item[1])
    fixes = {
        "budget": f"Pass --budget {needed} or more.",
        "sparsity": f"Pass --sparsity {1 - needed / dense:.4f} or less.",
        "chip": "Allocate more cores (--cores/--chips) or use a larger chip.",
        "fan_in_cap": "Use a chip with a larger fan-in limit or a narrower model.",
        "dense": "The model is too small to prune.",
    }
    return BudgetError(
        f"budget infeasible: {chosen.source} allows {chosen.synapses} synapses but the layers "
        f"need at least {needed} (layer {layer!r} alone needs {most})",
        where=chosen.option,
        field="synapses",
        value=chosen.synapses,
        fix=fixes[chosen.binding],
    )


def _too_small_error(budget: Budget, needed: int) -> BudgetError:
    return BudgetError(
        f"budget infeasible: {budget.source} allows {budget.synapses} synapses but the layers "
        f"need at least {needed}",
        where="budget",
        field="synapses",
        value=budget.synapses,
        fix=f"Allow at least {needed} synapses.",
    )


# --------------------------------------------------------------------------------------------
# Exact projection


@dataclass(frozen=True, eq=False)
class LayerScores:
    """One prunable tensor, flattened, as the projection sees it.

    Attributes:
        name: layer name (key of ``Budget.per_layer_min``).
        scores: importance per entry (higher is kept first): ``|theta|`` or ``theta``.
        costs: physical synapses per entry (1 for dense layers; in-bounds output positions of
            the tap for unrolled conv).
        groups: postsynaptic group per entry (output row, or output channel for conv); the
            fan-in cap limits selected entries per group.
        keep_every_group: give every group its best entry first (the output layer).
        excitatory: optional boolean per entry, True where the synapse is excitatory (positive
            weight: inputs are non-negative spikes or pixels, so only these can drive the unit
            toward its threshold). Where given, the entry forced per group is the group's best
            *excitatory* entry (its best entry when it has none): an output unit whose inputs
            are all inhibitory can never fire, so its class could never be predicted.
        positive: optional boolean per entry of a dense layer (flattened ``(neurons, inputs)``),
            True where the weight is positive; given where the budget keeps one sign per input
            (``Budget.one_sign_per_input``).
        input_similarity: optional ``(inputs, inputs)`` similarity of a dense layer's inputs
            (``pruning.selection.input_similarity``), given for layers pruned into
            shared-input core blocks: each block then keeps inputs that are not copies of
            each other (``pruning.selection.diverse_top``).
    """

    name: str
    scores: np.ndarray
    costs: np.ndarray
    groups: np.ndarray
    keep_every_group: bool = False
    excitatory: np.ndarray | None = None
    positive: np.ndarray | None = None
    input_similarity: np.ndarray | None = None
