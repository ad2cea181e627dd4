"""The pieces the fit preflight is made of give what their parts gave (issue 21: the run
configuration travels down once)."""

from __future__ import annotations

import numpy as np
import pytest

from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import DatasetError, ModelError
from neuroprune.core.summary import NetworkSummary, dense_layer
from neuroprune.data.datasets import canonical_name, load_dataset
from neuroprune.fit.allocation import Allocation, allocation_budget, allocation_capacity
from neuroprune.fit.budget import derive_budget


def _summary(n_in: int = 400, hidden: int = 300, classes: int = 10) -> NetworkSummary:
    rng = np.random.default_rng(0)
    layers = (
        dense_layer("1", rng.normal(size=(hidden, n_in))),
        dense_layer("3", rng.normal(size=(classes, hidden))),
    )
    return NetworkSummary(layers=layers, input_shape=(1, 20, 20), timesteps=4)


@pytest.mark.parametrize(
    "allocation",
    [Allocation(cores=1), Allocation(chips=1, sparsity=0.5), Allocation(cores=2, budget=5000)],
)
def test_allocation_budget_is_derive_budget_with_the_packed_capacity(allocation):
    profile, summary = load_profile("loihi"), _summary()
    capacity = allocation_capacity(summary, profile, chips=allocation.chips, cores=allocation.cores)
    expected = derive_budget(
        profile,
        summary,
        chips=allocation.chips,
        cores=allocation.cores,
        budget=allocation.budget,
        sparsity=allocation.sparsity,
        capacity=capacity,
    )
    assert allocation_budget(summary, profile, allocation) == expected


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
