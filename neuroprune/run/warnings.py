"""Warnings about a finished run, and the ``--max-accuracy-drop`` gate: data, never printed here.

:func:`run_warnings` reads a :class:`~neuroprune.run.record.RunRecord` (and the chip profile)
and returns one :class:`~neuroprune.run.record.WarningRecord` per finding of the rules in
:data:`WARNING_RULES` (one small function per kind, registered with :func:`warning_rule`):

* ``budget_not_binding``: nothing bound the budget (nothing was pruned), or the user's
  ``--budget``/``--sparsity`` was looser than another limit that set it;
* ``neuron_model``: a neuron model the chip handles poorly: a parameter the model needs (LIF's
  membrane decay) has no published precision in the profile and the chip declares no neuron
  arithmetic, while another model the profile lists needs none (the better choice named);
* ``encoding``: analog (``direct``) input, which the chip cannot receive as spikes, so the first
  synaptic layer runs on the host; the spike encodings are named;
* ``accuracy_drop``: a stage lost more than :data:`DROP_WARN_POINTS` points of test accuracy:
  pruning (dense -> pruned), quantization (pruned -> quantized), or the simulation against the
  model it simulates (the same samples: ``simulation.model_accuracy`` -> ``simulation.accuracy``);
* ``synapses_lost``: quantization rounded kept synapses to zero (quantized < pruned synapses);
* ``qat_reverted``: quantization-aware fine-tuning was reverted to the post-training model;
* ``cores_not_saved``: pruning removed synapses but the network uses as many cores as the dense
  one (and that is more than one); the limit that sets the core count is named
  (``fit.cores_set_by``).

:func:`accuracy_gate` judges ``--max-accuracy-drop``: the deployed model's test accuracy
(:func:`deployed_accuracy`) against the pruned float model's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neuroprune.chip.schema import ChipProfile
from neuroprune.data.encoding import IMAGE_ENCODINGS
from neuroprune.run.record import AccuracyGateRecord, RunRecord, WarningRecord

DROP_WARN_POINTS = 1.0
"""A stage losing more than this many points (percent) of test accuracy is warned about."""

ANALOG_ENCODING = "direct"
"""The encoding whose input is analog (not spikes): the chip's host computes the first layer."""

NEURON_PARAMETERS: dict[str, dict[str, str]] = {
    "LIF": {"decay_bits": "membrane decay"},
    "CubaLIF": {"decay_bits": "current and membrane decays"},
    "IF": {},
}
"""Neuron model -> the profile precision fields (``neuron.<field>``) it needs beyond a threshold,
and what they hold. A model whose field is unpublished (and no ``neuron.arithmetic``) runs on
the chip only approximately."""

CLI_NEURONS = {"LIF": "lif", "IF": "if"}
"""Neuron models the built-in models train, by their ``--neuron`` value."""

Rule = Callable[[RunRecord, ChipProfile | None], list[WarningRecord]]
WARNING_RULES: dict[str, Rule] = {}
"""Warning kind -> its rule (the registry of warning kinds; :func:`warning_rule` adds one)."""


def warning_rule(kind: str) -> Callable[[Rule], Rule]:
    """Register a warning rule under ``kind`` (the kind its warnings carry)."""

    def register(fn: Rule) -> Rule:
        WARNING_RULES[kind] = fn
        return fn

    return register


def run_warnings(record: RunRecord, profile: ChipProfile | None = None) -> list[WarningRecord]:
    """Every warning the rules find in ``record`` (in the order of :data:`WARNING_RULES`)."""
    return [found for rule in WARNING_RULES.values() for found in rule(record, profile)]


def preflight_warnings(record: RunRecord) -> list[WarningRecord]:
    """The warnings known before training (the budget's), said before any epoch runs."""
    return budget_not_binding(record, None)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def _points(before: float, after: float) -> float:
    """Percentage points lost from ``before`` to ``after`` (fractions 0..1), to 1e-6 points (so
    that 96 % -> 95 % is 1 point, not 1.0000000000000009)."""
    return round(100 * (before - after), 6)


# --------------------------------------------------------------------------------------------
# Rules


@warning_rule("budget_not_binding")
def budget_not_binding(record: RunRecord, profile: ChipProfile | None) -> list[WarningRecord]:
    """Nothing bound the budget, or the user's own request was looser than what set it."""
    budget = record.budget
    if budget.binds is False:
        return [
            WarningRecord(kind="budget_not_binding", stage="prune", message=nothing_binds(budget))
        ]
    config = getattr(record, "config", None) or {}
    binding = getattr(budget, "binding", None)
    asked = [
        (option, value)
        for option, key in (("--budget", "budget"), ("--sparsity", "sparsity"))
        if (value := config.get(key)) is not None and binding != key
    ]
    return [
        WarningRecord(
            kind="budget_not_binding",
            stage="prune",
            message=f"{option} {value} did not bind: {budget.source} allows "
            f"{budget.synapses:,} synapses, fewer than it asks",
        )
        for option, value in asked
    ]


def nothing_binds(budget: Any) -> str:
    """The one line said before training when no allocation, budget or sparsity binds."""
    cores = (
        f"the dense network fits in {budget.dense_cores:,} of {budget.cores_allocated:,} cores"
        if budget.dense_cores is not None and budget.cores_allocated is not None
        else f"the dense network's {budget.synapses:,} synapses fit the chip"
    )
    return (
        f"{cores}: nothing to prune; give --cores, --budget or --sparsity "
        "(pruning and fine-tuning are skipped)"
    )


@warning_rule("neuron_model")
def neuron_model(record: RunRecord, profile: ChipProfile | None) -> list[WarningRecord]:
    """A neuron model whose parameters the chip's profile does not publish, where a model it
    lists needs none of them (:func:`poorly_handled`)."""
    if profile is None:
        return []
    stage = record.dense or record.pruned
    models = sorted({getattr(row, "neuron_model", None) for row in (stage.layers if stage else [])})
    out = []
    for model in (m for m in models if isinstance(m, str)):
        missing, better = poorly_handled(model, profile)
        if missing and better:
            suggestion = ", ".join(f"--neuron {CLI_NEURONS[b]}" for b in better)
            out.append(
                WarningRecord(
                    kind="neuron_model",
                    stage="dense",
                    message=f"{profile.name} handles {model} poorly: its {missing} has no "
                    f"published precision and the chip's neuron arithmetic is not modelled, "
                    f"so the chip does not run it as trained; {', '.join(better)} needs none: "
                    f"try {suggestion}",
                )
            )
    return out


def poorly_handled(model: str, profile: ChipProfile) -> tuple[str, tuple[str, ...]]:
    """``(what is unpublished, better models)`` for ``model`` on ``profile``: the parameters of
    :data:`NEURON_PARAMETERS` the profile gives no precision for (empty when it declares a
    ``neuron.arithmetic`` or publishes them all), and the models it lists that neuroprune trains
    and that need no unpublished parameter."""
    if profile.neuron.arithmetic is not None:
        return "", ()
    unpublished = _unpublished(model, profile)
    if not unpublished:
        return "", ()
    better = tuple(
        other
        for other in profile.neuron.models
        if other != model and other in CLI_NEURONS and not _unpublished(other, profile)
    )
    return " and ".join(unpublished), better


def _unpublished(model: str, profile: ChipProfile) -> list[str]:
    fields = NEURON_PARAMETERS.get(model, {})
    return [what for name, what in fields.items() if getattr(profile.neuron, name) is None]


@warning_rule("encoding")
def encoding(record: RunRecord, profile: ChipProfile | None) -> list[WarningRecord]:
    """Analog input: the chip receives spikes, so its host computes the first synaptic layer."""
    config = getattr(record, "config", None) or {}
    if config.get("encoding") != ANALOG_ENCODING:
        return []
    first = _first_layer(record)
    spikes = " or ".join(f"--encoding {e}" for e in IMAGE_ENCODINGS if e != ANALOG_ENCODING)
    chip = profile.name if profile is not None else record.chip
    return [
        WarningRecord(
            kind="encoding",
            stage="simulate",
            message=f"{ANALOG_ENCODING} encoding feeds analog values, which {chip} cannot "
            f"receive as spikes: the first synaptic layer{first} is computed on the host every "
            f"step, not on the chip; {spikes} keeps every layer on the chip",
        )
    ]


def _first_layer(record: RunRecord) -> str:
    """`` (NAME, N synapses)`` of the network's first layer, from the last stage that ran."""
    stage = record.quantized or record.pruned or record.dense
    if stage is None or not stage.layers:
        return ""
    row = stage.layers[0]
    synapses = getattr(row, "synapses", None) or getattr(row, "nonzero_after", None)
    count = f", {synapses:,} synapses" if isinstance(synapses, int) else ""
    return f" (layer {row.layer}{count})"


@warning_rule("accuracy_drop")
def accuracy_drop(record: RunRecord, profile: ChipProfile | None) -> list[WarningRecord]:
    """Pruning, quantization or the simulation lost more than :data:`DROP_WARN_POINTS`."""
    out = []
    dense, pruned, quant, sim = record.dense, record.pruned, record.quantized, record.simulation
    if dense is not None and pruned is not None and pruned.skipped is None:
        lost = _points(dense.accuracy, pruned.accuracy)
        if lost > DROP_WARN_POINTS:
            out.append(
                WarningRecord(
                    kind="accuracy_drop",
                    stage="prune",
                    message=f"pruning lost {lost:.2f} points of test accuracy "
                    f"({_pct(dense.accuracy)} dense -> {_pct(pruned.accuracy)} pruned)",
                )
            )
    if pruned is not None and quant is not None:
        lost = _points(pruned.accuracy, quant.accuracy)
        if lost > DROP_WARN_POINTS:
            ptq = (
                f"; {_pct(quant.accuracy_ptq)} before fine-tuning"
                if quant.accuracy_ptq is not None
                else ""
            )
            out.append(
                WarningRecord(
                    kind="accuracy_drop",
                    stage="quantize",
                    message=f"quantization to {_weights_of(record)} lost {lost:.2f} points of test "
                    f"accuracy ({_pct(pruned.accuracy)} pruned -> {_pct(quant.accuracy)} "
                    f"quantized{ptq})",
                )
            )
    if sim is not None and sim.accuracy is not None and sim.model_accuracy is not None:
        lost = _points(sim.model_accuracy, sim.accuracy)
        if lost > DROP_WARN_POINTS:
            kind = f"; {sim.verification.kind}" if sim.verification is not None else ""
            out.append(
                WarningRecord(
                    kind="accuracy_drop",
                    stage="simulate",
                    message=f"the {sim.backend} simulation lost {lost:.2f} points against the "
                    f"model it simulates on the same {sim.samples} samples "
                    f"({_pct(sim.model_accuracy)} -> {_pct(sim.accuracy)}{kind})",
                )
            )
    return out


def _weights_of(record: RunRecord) -> str:
    """``Tianjic's weights``: the chip's weight format by the chip's name (the format's id,
    such as ``int``, means nothing to a reader)."""
    return f"{record.chip_name or record.chip}'s weights"


@warning_rule("synapses_lost")
def synapses_lost(record: RunRecord, profile: ChipProfile | None) -> list[WarningRecord]:
    """Quantization rounded synapses that pruning kept to zero (the chip stores fewer)."""
    pruned, quant = record.pruned, record.quantized
    if pruned is None or quant is None or quant.synapses >= pruned.synapses:
        return []
    lost = pruned.synapses - quant.synapses
    worst = _worst_layer_loss(quant.layers)
    where = f"; most in layer {worst}" if worst else ""
    budget = record.budget.synapses
    return [
        WarningRecord(
            kind="synapses_lost",
            stage="quantize",
            message=f"quantization to {_weights_of(record)} rounded {lost:,} of {pruned.synapses:,} "
            f"kept synapses to zero ({100 * lost / pruned.synapses:.2f} %): the chip stores "
            f"{quant.synapses:,}, the budget was {budget:,}{where}",
        )
    ]


def _worst_layer_loss(layers: list[Any]) -> str | None:
    """``"NAME (before -> after)"`` of the quantized layer that lost most nonzero weights
    (the quantizer's ``nonzero_before``/``nonzero_after``), or None."""
    best: tuple[int, str] | None = None
    for row in layers:
        before, after = getattr(row, "nonzero_before", None), getattr(row, "nonzero_after", None)
        if isinstance(before, int) and isinstance(after, int) and before > after:
            text = f"{row.layer} ({before:,} -> {after:,})"
            if best is None or before - after > best[0]:
                best = (before - after, text)
    return None if best is None else best[1]


@warning_rule("qat_reverted")
def qat_reverted(record: RunRecord, profile: ChipProfile | None) -> list[WarningRecord]:
    """Quantization-aware fine-tuning did not lower the validation loss of PTQ and was undone
    (a tie keeps the simpler PTQ model; the message says "tie: kept PTQ")."""
    quant = record.quantized
    if quant is None or quant.qat.decision != "reverted":
        return []
    qat = quant.qat
    why = f" ({qat.reason.split(' (')[0]})" if qat.reason else ""
    ran = f"{qat.epochs_run} of {qat.epochs_asked}" if qat.epochs_asked else f"{qat.epochs_run}"
    return [
        WarningRecord(
            kind="qat_reverted",
            stage="quantize",
            message=f"quantization-aware fine-tuning was reverted{why}: validation "
            f"{_pct(qat.val_qat)} fine-tuned vs {_pct(qat.val_ptq)} after post-training "
            f"quantization{_losses(qat)} ({ran} epoch(s) run); the deployed model is the "
            "post-training one",
        )
    ]


def _losses(qat) -> str:
    """``", validation loss A vs B"`` (fine-tuned vs PTQ) where both are recorded."""
    if qat.val_loss_qat is None or qat.val_loss_ptq is None:
        return ""
    return f", validation loss {qat.val_loss_qat:.4f} vs {qat.val_loss_ptq:.4f}"


@warning_rule("cores_not_saved")
def cores_not_saved(record: RunRecord, profile: ChipProfile | None) -> list[WarningRecord]:
    """Pruning removed synapses but the network needs as many cores as the dense one (and the
    dense one needs more than one, the least there is): the core count is set by another limit
    (``fit.cores_set_by``: neurons, input axons, fan-out...)."""
    dense, pruned, fit = record.dense, record.pruned, record.fit
    dense_cores = record.budget.dense_cores
    if dense is None or pruned is None or fit is None or dense_cores is None or dense_cores < 2:
        return []
    if pruned.skipped is not None or pruned.synapses >= dense.synapses or fit.cores < dense_cores:
        return []
    limit = fit.cores_set_by.detail if fit.cores_set_by is not None else "not recorded"
    return [
        WarningRecord(
            kind="cores_not_saved",
            stage="fit",
            message=f"pruning {dense.synapses:,} -> {pruned.synapses:,} synapses saved no cores "
            f"({dense_cores:,} dense, {fit.cores:,} after): the core count is set by {limit}",
        )
    ]


# --------------------------------------------------------------------------------------------
# The gate


def deployed_accuracy(record: RunRecord) -> float | None:
    """Test accuracy (0..1) of the model as deployed: the quantized model's, corrected by what
    the simulation measured against that model on the same samples
    (``quantized.accuracy + simulation.accuracy - simulation.model_accuracy``; with every test
    sample simulated, the simulator's own accuracy). None before quantization."""
    quant, sim = record.quantized, record.simulation
    if quant is None:
        return None
    if sim is None or sim.accuracy is None or sim.model_accuracy is None:
        return quant.accuracy
    return quant.accuracy + sim.accuracy - sim.model_accuracy


def accuracy_gate(record: RunRecord, max_drop: float) -> AccuracyGateRecord:
    """``--max-accuracy-drop max_drop`` (points): passed when the deployed model
    (:func:`deployed_accuracy`) loses at most ``max_drop`` points against the pruned float model;
    the one-line ``reason`` says by how much it did not."""
    deployed = deployed_accuracy(record)
    if record.pruned is None or deployed is None:
        return AccuracyGateRecord(max_drop=max_drop)
    drop = _points(record.pruned.accuracy, deployed)
    if drop <= max_drop:
        return AccuracyGateRecord(max_drop=max_drop, drop=drop, passed=True)
    return AccuracyGateRecord(
        max_drop=max_drop,
        drop=drop,
        passed=False,
        reason=f"ran but does not meet --max-accuracy-drop {max_drop:g}: the deployed model "
        f"loses {drop:.2f} points against the pruned float model "
        f"({_pct(record.pruned.accuracy)} -> {_pct(deployed)})",
    )
