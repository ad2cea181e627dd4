"""Budget derivation, infeasibility errors, the exact projection and the knob controller."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import BudgetError
from neuroprune.core.summary import COUNTING_CONVENTION, NetworkSummary, conv_layer, dense_layer
from neuroprune.fit.budget import (
    Budget,
    LayerScores,
    derive_budget,
    fan_in_capacity,
    per_layer_minimums,
)
from neuroprune.pruning.knob import planned_count, steer_knob
from neuroprune.pruning.selection import (
    KnobControl,
    count_above,
    select_synapses,
    threshold_for_count,
)


def mlp_summary(n_in: int = 64, hidden: int = 32, classes: int = 10) -> NetworkSummary:
    rng = np.random.default_rng(0)
    layers = (
        dense_layer("1", rng.normal(size=(hidden, n_in))),
        dense_layer("3", rng.normal(size=(classes, hidden))),
    )
    return NetworkSummary(layers=layers, input_shape=(1, 8, 8), timesteps=4)


def conv_summary() -> NetworkSummary:
    rng = np.random.default_rng(1)
    layers = (
        conv_layer("0", rng.normal(size=(4, 1, 3, 3)), (1, 8, 8), stride=1, padding=1),
        dense_layer("4", rng.normal(size=(10, 256))),
    )
    return NetworkSummary(layers=layers, input_shape=(1, 8, 8), timesteps=4)


@pytest.fixture(scope="module")
def loihi():
    return load_profile("loihi")


# --------------------------------------------------------------------------------------------
# Layering


def test_budget_module_never_imports_torch():
    code = "import sys, neuroprune.fit.budget; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------------------------
# derive_budget


def test_user_budget_sets_b():
    budget = derive_budget(None, mlp_summary(), budget=500)
    assert (budget.synapses, budget.binding, budget.source) == (500, "budget", "user --budget")
    assert budget.counting == COUNTING_CONVENTION
    assert budget.dense_synapses == 64 * 32 + 32 * 10


def test_sparsity_floors_the_kept_fraction():
    summary = mlp_summary()
    budget = derive_budget(None, summary, sparsity=0.9)
    assert budget.synapses == math.floor(0.1 * summary.dense_positions())
    assert (budget.binding, budget.source) == ("sparsity", "user --sparsity 0.9")


def test_smaller_request_wins():
    summary = mlp_summary()
    assert derive_budget(None, summary, budget=100, sparsity=0.5).binding == "budget"
    assert derive_budget(None, summary, budget=2000, sparsity=0.9).binding == "sparsity"


def test_no_limit_keeps_the_dense_network():
    budget = derive_budget(None, mlp_summary())
    assert budget.binding == "dense" and budget.synapses == budget.dense_synapses


def test_chip_allocation_binds_a_large_network(loihi):
    from neuroprune.chip.capacity import capacity_model

    summary = mlp_summary(n_in=400, hidden=300)
    budget = derive_budget(loihi, summary, cores=1)
    assert budget.synapses == capacity_model(loihi).synapses_per_core()
    assert (budget.binding, budget.source) == ("chip", "chip:loihi cores=1")
    assert derive_budget(loihi, summary, cores=1, budget=1000).binding == "budget"


def test_default_allocation_is_one_chip(loihi):
    budget = derive_budget(loihi, mlp_summary())
    assert budget.binding == "dense" and budget.fan_in_cap is None


def test_fan_in_cap_limits_b(loihi):
    profile = dataclasses.replace(loihi, neuron=dataclasses.replace(loihi.neuron, fan_in_max=4))
    summary = mlp_summary()
    budget = derive_budget(profile, summary)
    assert budget.fan_in_cap == 4
    assert (
        budget.synapses == fan_in_capacity(summary, 4, conv_weight_sharing=False) == 32 * 4 + 10 * 4
    )
    assert budget.binding == "fan_in_cap"


def test_conv_weight_sharing_counts_kernel_entries(loihi):
    profile = dataclasses.replace(loihi, conv_weight_sharing=True)
    budget = derive_budget(profile, conv_summary())
    assert budget.conv_weight_sharing and budget.dense_synapses == 36 + 2560
    unrolled = derive_budget(loihi, conv_summary())
    assert unrolled.dense_synapses == conv_summary().dense_positions(False) > 36 + 2560


def test_per_layer_minimums_keep_every_class_neuron():
    minimums = per_layer_minimums(mlp_summary(), conv_weight_sharing=False)
    assert minimums == {"1": math.ceil(0.001 * 64 * 32), "3": 10}


# --------------------------------------------------------------------------------------------
# Infeasible requests


@pytest.mark.parametrize(
    ("kwargs", "where", "field"),
    [
        ({"budget": 0}, "--budget", "budget"),
        ({"budget": -5}, "--budget", "budget"),
        ({"sparsity": 1.0}, "--sparsity", "sparsity"),
        ({"sparsity": -0.1}, "--sparsity", "sparsity"),
        ({"sparsity": float("nan")}, "--sparsity", "sparsity"),
        ({"cores": 0}, "--cores", "cores"),
        ({"budget": 5}, "--budget", "synapses"),
        ({"sparsity": 0.999}, "--sparsity", "synapses"),
    ],
)
def test_infeasible_request_raises_budget_error(kwargs, where, field):
    with pytest.raises(BudgetError) as info:
        derive_budget(None, mlp_summary(), **kwargs)
    assert (info.value.where, info.value.field) == (where, field)
    assert info.value.fix


def test_too_small_budget_names_the_binding_constraint():
    with pytest.raises(BudgetError) as info:
        derive_budget(None, mlp_summary(), budget=5)
    assert "user --budget" in info.value.message and "'3'" in info.value.message
    assert "--budget 13" in info.value.fix


def test_fan_in_cap_of_zero_is_infeasible(loihi):
    profile = dataclasses.replace(loihi, neuron=dataclasses.replace(loihi.neuron, fan_in_max=0))
    with pytest.raises(BudgetError) as info:
        derive_budget(profile, mlp_summary(), budget=500)
    assert info.value.field == "neuron.fan_in_max" and info.value.value == 0


def test_budget_dataclass_validates_itself():
    with pytest.raises(BudgetError):
        Budget(synapses=0, source="test")
    with pytest.raises(BudgetError):
        Budget(synapses=5, source="test", per_layer_min={"a": 3, "b": 3})
    with pytest.raises(BudgetError):
        Budget(synapses=5, source="test", fan_in_cap=0)
    budget = Budget(synapses=5, source="test", dense_synapses=50)
    assert budget.sparsity == pytest.approx(0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.synapses = 3


# --------------------------------------------------------------------------------------------
# Properties of derive_budget

layer_sizes = st.tuples(
    st.integers(1, 40), st.integers(1, 40), st.integers(1, 12)
)  # (inputs, hidden, classes)


@settings(max_examples=60, deadline=None)
@given(sizes=layer_sizes, sparsity=st.floats(0.0, 0.9999), user=st.integers(1, 5000))
def test_b_is_the_smallest_limit_or_infeasible(sizes, sparsity, user):
    summary = mlp_summary(*sizes)
    dense = summary.dense_positions()
    needed = sum(per_layer_minimums(summary, conv_weight_sharing=False).values())
    expected = min(user, math.floor((1 - sparsity) * dense), dense)
    if expected < needed:
        with pytest.raises(BudgetError):
            derive_budget(None, summary, budget=user, sparsity=sparsity)
        return
    budget = derive_budget(None, summary, budget=user, sparsity=sparsity)
    assert budget.synapses == expected
    assert needed <= budget.synapses <= dense


@settings(max_examples=40, deadline=None)
@given(sizes=layer_sizes, low=st.floats(0.0, 0.99), high=st.floats(0.0, 0.99))
def test_higher_sparsity_never_raises_b(sizes, low, high):
    low, high = sorted((low, high))
    summary = mlp_summary(*sizes)
    try:
        sparse = derive_budget(None, summary, sparsity=high).synapses
    except BudgetError:
        return
    assert derive_budget(None, summary, sparsity=low).synapses >= sparse


@settings(max_examples=40, deadline=None)
@given(sizes=layer_sizes, cap=st.integers(1, 50))
def test_cap_capacity_bounds_b(sizes, cap):
    summary = mlp_summary(*sizes)
    capacity = fan_in_capacity(summary, cap, conv_weight_sharing=False)
    expected = sum(layer.neurons * min(cap, layer.inputs) for layer in summary.layers)
    assert capacity == expected <= summary.dense_positions()


# --------------------------------------------------------------------------------------------
# Exact projection


def random_layers(rng, shapes, costs=None):
    layers = []
    for i, (rows, cols) in enumerate(shapes):
        n = rows * cols
        cost = np.ones(n, np.int64) if costs is None else rng.integers(1, costs + 1, n)
        layers.append(
            LayerScores(
                name=str(i),
                scores=rng.random(n),
                costs=cost,
                groups=np.repeat(np.arange(rows), cols),
                keep_every_group=i == len(shapes) - 1,
            )
        )
    return layers


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shapes=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=3),
    fraction=st.floats(0.05, 1.0),
    cap=st.one_of(st.none(), st.integers(1, 12)),
)
def test_projection_is_exact_and_respects_every_constraint(seed, shapes, fraction, cap):
    rng = np.random.default_rng(seed)
    layers = random_layers(rng, shapes)
    last_rows = shapes[-1][0]
    capacity = sum(r * (c if cap is None else min(cap, c)) for r, c in shapes)
    synapses = max(last_rows, math.floor(fraction * capacity))
    budget = Budget(
        synapses=synapses,
        source="test",
        fan_in_cap=cap,
        per_layer_min={str(len(shapes) - 1): last_rows},
    )
    masks = select_synapses(layers, budget)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == synapses
    for layer in layers:
        per_group = np.bincount(layer.groups[masks[layer.name]], minlength=layer.groups.max() + 1)
        if cap is not None:
            assert per_group.max() <= cap
        if layer.keep_every_group:
            assert per_group.min() >= 1


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 10),
    cols=st.integers(1, 10),
    cap=st.one_of(st.none(), st.integers(1, 10)),
)
def test_every_output_unit_with_an_excitatory_candidate_keeps_one(seed, rows, cols, cap):
    rng = np.random.default_rng(seed)
    (layer,) = random_layers(rng, [(rows, cols)])
    excitatory = rng.random(rows * cols) < 0.3
    layer = dataclasses.replace(layer, excitatory=excitatory)
    budget = Budget(synapses=rows, source="test", fan_in_cap=cap)
    keep = select_synapses([layer], budget)[layer.name]
    assert int(keep.sum()) == rows
    for group in range(rows):
        members = layer.groups == group
        order = np.argsort(-layer.scores[members], kind="stable")
        eligible = np.zeros(cols, dtype=bool)
        eligible[order[: cols if cap is None else cap]] = True
        if (excitatory[members] & eligible).any():
            assert (keep[members] & excitatory[members]).any()


def test_output_unit_keeps_its_best_excitatory_input_not_its_largest():
    layer = LayerScores(
        "out",
        scores=np.array([5.0, 4.0, 1.0, 3.0, 2.0, 0.5]),
        costs=np.ones(6, np.int64),
        groups=np.array([0, 0, 0, 1, 1, 1]),
        keep_every_group=True,
        excitatory=np.array([False, False, True, False, False, False]),
    )
    keep = select_synapses([layer], Budget(synapses=3, source="test"))["out"]
    # unit 0: its excitatory entry 2 (not the larger inhibitory 0/1); unit 1 has no excitatory
    # entry, so its best one (3); the rest of B goes by score (entry 0).
    assert keep.tolist() == [True, False, True, True, False, False]


def test_projection_keeps_the_top_scores_with_ties_by_index():
    layer = LayerScores(
        "a", np.array([0.5, 0.9, 0.5, 0.1, 0.5]), np.ones(5, np.int64), np.zeros(5, np.int64)
    )
    masks = select_synapses([layer], Budget(synapses=3, source="test"))
    assert masks["a"].tolist() == [True, True, True, False, False]


def test_projection_with_costs_never_exceeds_b():
    rng = np.random.default_rng(3)
    layers = random_layers(rng, [(6, 9), (4, 5)], costs=64)
    budget = Budget(synapses=900, source="test", per_layer_min={"0": 1, "1": 4})
    masks = select_synapses(layers, budget)
    cost = sum(int(layer.costs[masks[layer.name]].sum()) for layer in layers)
    assert budget.synapses - 64 < cost <= budget.synapses


def test_projection_meets_layer_minimums():
    rng = np.random.default_rng(4)
    big, small = random_layers(rng, [(10, 10), (2, 3)])
    small = dataclasses.replace(small, scores=small.scores * 1e-3, keep_every_group=False)
    budget = Budget(synapses=20, source="test", per_layer_min={"1": 5})
    masks = select_synapses([big, small], budget)
    assert masks["1"].sum() == 5 and masks["0"].sum() == 15


# --------------------------------------------------------------------------------------------
# Knob calibration and control


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 200), target=st.integers(0, 250))
def test_threshold_for_count_leaves_the_target_above_it(seed, n, target):
    magnitudes = np.random.default_rng(seed).random(n)
    costs = np.ones(n, np.int64)
    threshold = threshold_for_count(magnitudes, costs, target)
    assert count_above(magnitudes, costs, threshold) == min(target, n)


@settings(max_examples=60, deadline=None)
@given(knob=st.floats(1e-6, 1e6), ideal=st.floats(1e-6, 1e6))
def test_steer_knob_moves_toward_ideal_within_bounds(knob, ideal):
    control = KnobControl(gain=0.5, max_ratio=1.2)
    new = steer_knob(knob, ideal, control)
    assert knob / 1.2 * (1 - 1e-9) <= new <= knob * 1.2 * (1 + 1e-9)
    assert (new - knob) * (ideal - knob) >= 0


@settings(max_examples=60, deadline=None)
@given(dense=st.integers(1, 10**7), keep=st.floats(1e-4, 1.0), a=st.floats(0, 1), b=st.floats(0, 1))
def test_planned_count_falls_geometrically_from_dense_to_the_target(dense, keep, a, b):
    final = keep * dense
    a, b = sorted((a, b))
    assert planned_count(dense, final, 0.0) == pytest.approx(dense)
    assert planned_count(dense, final, 1.0) == pytest.approx(final)
    assert planned_count(dense, final, a) >= planned_count(dense, final, b) * (1 - 1e-12)
    assert planned_count(dense, final, 0.5) == pytest.approx(math.sqrt(dense * final))
    assert planned_count(dense, 2 * dense, 0.7) == pytest.approx(dense)


def test_knob_control_rejects_bad_settings():
    with pytest.raises(BudgetError):
        KnobControl(margin=0.9)
    with pytest.raises(BudgetError):
        KnobControl(gain=0.0)
    assert KnobControl(margin=1.05).target(1000) == pytest.approx(1050)
