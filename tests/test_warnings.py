"""Warnings and the accuracy gate (issue 25, item 2): each warning kind found and not found in a
run record; ``--max-accuracy-drop`` passes below the drop and fails above it; the limit that sets
the core count (item 3)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from neuroprune.chip.profile_reader import parse_profile
from neuroprune.chip.profiles import load_profile
from neuroprune.core.summary import NetworkSummary, dense_layer
from neuroprune.fit.rules import check_fit
from neuroprune.run.record import (
    BudgetRecord,
    FitRecord,
    QatRecord,
    QuantizedRecord,
    RunRecord,
    SimulationRecord,
    StageRecord,
)
from neuroprune.run.warnings import (
    WARNING_RULES,
    accuracy_gate,
    deployed_accuracy,
    preflight_warnings,
    run_warnings,
)

DENSE_SYNAPSES = 1000


def record(
    *,
    dense=0.95,
    pruned=0.95,
    quantized=0.95,
    pruned_synapses=500,
    quantized_synapses=500,
    skipped=None,
    binds=True,
    binding="sparsity",
    config=None,
    neuron_model="LIF",
    qat="kept",
    dense_cores=3,
    fit_cores=2,
    sim=None,
) -> RunRecord:
    """A finished run's record with every figure a warning rule reads set by the arguments."""
    rows = [
        {
            "layer": "fc0",
            "neurons": 10,
            "synapses": pruned_synapses,
            "dense": DENSE_SYNAPSES,
            "sparsity": 0.5,
            "neuron_model": neuron_model,
        }
    ]
    out = RunRecord(
        chip="truenorth",
        budget=BudgetRecord(
            synapses=500 if binds else DENSE_SYNAPSES,
            source="user --sparsity 0.5"
            if binds
            else "every dense synapse: nothing asked for fewer",
            binding=binding if binds else "dense",
            binds=binds,
            dense_cores=dense_cores,
            cores_allocated=4096,
        ),
        config={"encoding": "poisson", "sparsity": 0.5, "budget": None, **(config or {})},
    )
    out.dense = StageRecord(
        accuracy=dense, synapses=DENSE_SYNAPSES, neurons=10, layers=[{**rows[0], "synapses": 1000}]
    )
    out.pruned = StageRecord(
        accuracy=pruned, synapses=pruned_synapses, neurons=10, layers=rows, skipped=skipped
    )
    out.quantized = QuantizedRecord(
        accuracy=quantized,
        synapses=quantized_synapses,
        neurons=10,
        format="truenorth",
        accuracy_ptq=quantized - 0.1,
        qat=QatRecord(decision=qat, val_ptq=0.9, val_qat=0.8, epochs_run=2),
        layers=[
            {"layer": "fc0", "nonzero_before": pruned_synapses, "nonzero_after": quantized_synapses}
        ],
    )
    out.fit = FitRecord(
        fits=True,
        cores=fit_cores,
        chips=1,
        violations=[],
        cores_set_by={"resource": "input_axons", "cores": 2, "detail": "input axons: 300 in all"},
    )
    if sim is not None:
        out.simulation = SimulationRecord(backend="reference", samples=100, **sim)
    return out


def kinds(found) -> list[str]:
    return [w.kind for w in found]


TRUENORTH = replace(
    load_profile("truenorth"),
    neuron=replace(load_profile("truenorth").neuron, arithmetic=None),
)
"""TrueNorth's profile as it was before its neuron arithmetic was modelled (LIF and IF listed,
no decay precision): the case every warning rule below is read against."""


def test_a_clean_run_has_no_warning():
    assert run_warnings(record(neuron_model="IF"), TRUENORTH) == []


# Each rule: a record that triggers it, and one that differs only in what the rule reads.
CASES = {
    "budget_not_binding": (
        record(binds=False, dense_cores=1),
        record(binds=True, binding="sparsity"),
    ),
    "neuron_model": (record(neuron_model="LIF"), record(neuron_model="IF")),
    "encoding": (record(config={"encoding": "direct"}), record(config={"encoding": "poisson"})),
    "accuracy_drop": (record(pruned=0.95, quantized=0.93), record(pruned=0.95, quantized=0.945)),
    "synapses_lost": (record(quantized_synapses=480), record(quantized_synapses=500)),
    "qat_reverted": (record(qat="reverted"), record(qat="kept")),
    "cores_not_saved": (record(dense_cores=2, fit_cores=2), record(dense_cores=3, fit_cores=2)),
}


def test_every_warning_kind_has_a_case():
    assert set(CASES) == set(WARNING_RULES)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_warning_is_found_and_not_found(kind):
    triggers, clean = CASES[kind]
    assert kind in kinds(run_warnings(triggers, TRUENORTH))
    assert kind not in kinds(run_warnings(clean, TRUENORTH))


def test_accuracy_drop_names_each_stage_over_one_point():
    found = run_warnings(
        record(
            dense=0.97,
            pruned=0.95,
            quantized=0.82,
            sim={"accuracy": 0.78, "model_accuracy": 0.80},
        ),
        TRUENORTH,
    )
    stages = [w.stage for w in found if w.kind == "accuracy_drop"]
    assert stages == ["prune", "quantize", "simulate"]
    quant = next(w.message for w in found if w.stage == "quantize" and w.kind == "accuracy_drop")
    assert "13.00 points" in quant and "95.00 % pruned -> 82.00 % quantized" in quant
    assert "72.00 % before fine-tuning" in quant
    exactly_one = record(dense=0.96, pruned=0.95, quantized=0.94)
    assert "accuracy_drop" not in kinds(run_warnings(exactly_one, TRUENORTH))


def test_a_skipped_prune_is_never_a_drop():
    skipped = record(dense=0.97, pruned=0.90, skipped="nothing to prune")
    assert not [
        w
        for w in run_warnings(skipped, TRUENORTH)
        if w.stage == "prune" and w.kind == "accuracy_drop"
    ]


def test_neuron_model_warns_only_where_the_chip_lists_a_better_model():
    lif = record(neuron_model="LIF")
    (warning,) = [w for w in run_warnings(lif, TRUENORTH) if w.kind == "neuron_model"]
    assert "membrane decay" in warning.message and "--neuron if" in warning.message
    assert "neuron_model" not in kinds(run_warnings(lif, load_profile("loihi")))  # arithmetic
    assert "neuron_model" not in kinds(run_warnings(lif, load_profile("truenorth")))
    assert "neuron_model" not in kinds(run_warnings(lif, load_profile("tianjic")))  # LIF only


def test_a_user_budget_looser_than_the_chip_did_not_bind():
    looser = record(binding="chip", config={"budget": 900, "sparsity": None})
    (warning,) = [w for w in run_warnings(looser, TRUENORTH) if w.kind == "budget_not_binding"]
    assert warning.message.startswith("--budget 900 did not bind")


def test_nothing_binds_is_said_before_training_with_the_cores():
    (warning,) = preflight_warnings(record(binds=False, dense_cores=1))
    assert warning.message.startswith(
        "the dense network fits in 1 of 4,096 cores: nothing to prune"
    )
    assert "give --cores, --budget or --sparsity" in warning.message
    assert preflight_warnings(record(binds=True)) == []


def test_deployed_accuracy_corrects_the_quantized_accuracy_by_the_simulation():
    assert deployed_accuracy(record(quantized=0.9)) == 0.9
    simulated = record(quantized=0.9, sim={"accuracy": 0.85, "model_accuracy": 0.88})
    assert deployed_accuracy(simulated) == pytest.approx(0.87)


def test_the_gate_fails_above_the_drop_and_passes_at_or_below_it():
    run = record(pruned=0.95, quantized=0.90)  # 5 points lost
    failed = accuracy_gate(run, 4.9)
    assert not failed.passed and failed.drop == pytest.approx(5.0)
    assert failed.reason.startswith("ran but does not meet --max-accuracy-drop 4.9")
    assert "loses 5.00 points" in failed.reason
    assert accuracy_gate(run, 5.1).passed
    gained = record(pruned=0.90, quantized=0.92)
    assert accuracy_gate(gained, 0).passed and not accuracy_gate(gained, -3).passed


# --------------------------------------------------------------------------------------------
# The limit that sets the core count

TOY = {
    "schema_version": 1,
    "id": "toy",
    "name": "Toy chip",
    "chip": {"cores": 16, "neurons_max": 256},
    "core": {
        "neurons_max": 16,
        "input_axons_max": 32,
        "synapse_memory_bits": 1 << 20,
        "synapse_encoding": {"kind": "blocked_list", "block_synapses": 8, "word_bits": 16},
    },
    "neuron": {"models": ["LIF"]},
    "weights": {"format": "int", "bits": 8, "sign": "signed"},
}


def toy(**patch):
    raw = copy.deepcopy(TOY)
    for dotted, value in patch.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_profile(raw)


def chain(*sizes):
    rng = np.random.default_rng(0)
    layers = [
        dense_layer(f"fc{i}", rng.normal(size=(n_out, n_in)))
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False))
    ]
    return NetworkSummary(tuple(layers), input_shape=(sizes[0],))


def test_the_core_count_is_set_by_neurons_or_by_input_axons():
    # 64 neurons in cores of 16: 4 cores by neurons; 8 + 8 axons fit any core
    by_neurons = check_fit(chain(8, 64), toy())
    assert by_neurons.cores_set_by.resource == "neurons" and by_neurons.cores_used == 4
    assert by_neurons.cores_set_by.cores == 4
    # 8 neurons reading 15 inputs each, 120 distinct inputs, 32 axons per core: 2 neurons fill
    # a core's axons, so ceil(120 / 32) = 4 cores, while 8 neurons would fit one
    weights = np.kron(np.eye(8), np.ones((1, 15)))
    blocks = NetworkSummary((dense_layer("fc0", weights),), input_shape=(120,))
    by_axons = check_fit(blocks, toy())
    assert by_axons.cores_used == 4
    assert by_axons.cores_set_by.resource == "input_axons" and by_axons.cores_set_by.cores == 4
    assert by_axons.as_dict()["cores_set_by"]["detail"].startswith("input axons: 120 in all")
