"""The pieces the fit preflight is made of give what their parts gave (issue 21: the run
configuration travels down once)."""

from __future__ import annotations

import numpy as np
import pytest

from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import DatasetError, ModelError
from neuroprune.core.summary import NetworkSummary, dense_layer
from neuroprune.data.datasets import canonical_name, load_dataset
from neuroprune.fit.allocation import Allocation, allocation_budget


def _summary(n_in: int = 400, hidden: int = 300, classes: int = 10) -> NetworkSummary:
    rng = np.random.default_rng(0)
    layers = (
        dense_layer("1", rng.normal(size=(hidden, n_in))),
        dense_layer("3", rng.normal(size=(classes, hidden))),
    )
    return NetworkSummary(layers=layers, input_shape=(1, 20, 20), timesteps=4)


def _demo_summary() -> NetworkSummary:
    """The demo's dense 64-512-256-10 mlp: 32,768 + 131,072 + 2,560 = 166,400 synapses."""
    rng = np.random.default_rng(0)
    sizes = (64, 512, 256, 10)
    layers = tuple(
        dense_layer(str(2 * i + 1), rng.normal(size=(n_out, n_in)))
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    )
    return NetworkSummary(layers=layers, input_shape=(1, 8, 8), timesteps=8)


def test_allocation_budget_gives_the_demo_budget_recorded_before_the_house():
    """Oracle: report.json of ``make demo`` at 7338f0a (before the preflight was reordered)
    held budget 52,492 synapses, binding "chip", source "chip:loihi cores=1 (packed)"."""
    summary = _demo_summary()
    assert summary.synapses(False) == 166_400  # the hand count above
    budget = allocation_budget(summary, load_profile("loihi"), Allocation(cores=1))
    assert (budget.synapses, budget.binding, budget.source) == (
        52_492,
        "chip",
        "chip:loihi cores=1 (packed)",
    )


def test_allocation_budget_takes_the_smallest_request():
    """400*300 + 300*10 = 123,000 dense positions, counted by hand; a whole Loihi chip holds
    far more, so the user's request binds: floor(0.5 * 123,000) = 61,500, or --budget 5000."""
    profile, summary = load_profile("loihi"), _summary()
    half = allocation_budget(summary, profile, Allocation(chips=1, sparsity=0.5))
    assert (half.synapses, half.binding) == (61_500, "sparsity")
    capped = allocation_budget(summary, profile, Allocation(cores=2, budget=5000))
    assert (capped.synapses, capped.binding) == (5000, "budget")


def test_an_unknown_dataset_is_the_same_error_from_both_entry_points():
    with pytest.raises(DatasetError) as loading:
        load_dataset("mnsit")
    with pytest.raises(DatasetError) as naming:
        canonical_name("mnsit")
    assert str(loading.value) == str(naming.value)
    assert (loading.value.field, loading.value.value) == ("name", "mnsit")


def test_an_unknown_model_is_the_registry_error():
    from neuroprune.core.registry import lookup
    from neuroprune.models.registry import MODEL_ZOO
    from neuroprune.models.zoo import build_model

    with pytest.raises(ModelError) as building:
        build_model("vg", (1, 8, 8), 10)
    with pytest.raises(ModelError) as looking_up:
        lookup(MODEL_ZOO, "vg")
    assert str(building.value) == str(looking_up.value)
