"""TrueNorth readout pruned for the 4-axon mapping (issue 23): a readout whose neurons fit one
core and whose inputs x 4 axons do not may be pruned to one block of ``256 // 4`` inputs
shared by all its neurons (``CapacityModel.finest_mapping_blocks``), so the quantizer can give
it 15 levels ``k A_i`` per neuron instead of 4.

The oracles use the vendor's figures written here (256 axons and 256 neurons per core, 4 axon
types: Merolla et al., Science 2014) and recount used inputs from the weights in plain numpy;
they do not call the capacity code they check.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from neuroprune.chip.capacity import capacity_model
from neuroprune.chip.formats.base import get_quantizer
from neuroprune.chip.formats.neuron import NeuronParams
from neuroprune.chip.profiles import load_profile

AXONS = 256  # input axons per TrueNorth core
NEURONS = 256  # neurons per TrueNorth core
TYPES = 4  # axon types per core: 4 copies of an input give 15 levels per neuron


def _summary(name: str, shape, classes: int, hidden=None):
    from neuroprune.models import summarize
    from neuroprune.models.zoo import build_model

    model = build_model(name, shape, classes, hidden=hidden, seed=0)
    return model, summarize(model, shape, 4)


def _readout_inputs(model) -> tuple[int, int]:
    """(inputs, neurons) of the model's last Linear, read from its weight."""
    import torch

    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return last.weight.shape[1], last.weight.shape[0]


@pytest.mark.parametrize(
    ("name", "shape", "classes", "hidden"),
    [
        ("conv", (1, 8, 8), 10, None),  # readout 10 x 256
        ("mlp", (1, 8, 8), 10, (512, 256)),  # the demo: 10 x 256
        ("mlp", (1, 8, 8), 10, (64,)),  # 64 x 4 = 256 axons: fits unpruned
        ("mlp", (1, 8, 8), 10, (65,)),  # one input too many
        ("mlp", (1, 8, 8), 300, (100,)),  # 300 readout neurons: more than one core holds
        ("mlp", (1, 8, 8), 256, (100,)),  # exactly one core of neurons
    ],
)
def test_the_readout_gets_one_shared_block_exactly_where_4_copies_do_not_fit(
    name, shape, classes, hidden
):
    model, summary = _summary(name, shape, classes, hidden)
    inputs, neurons = _readout_inputs(model)
    expected = inputs * TYPES > AXONS and neurons <= NEURONS
    blocks = capacity_model(load_profile("truenorth")).finest_mapping_blocks(summary)
    readout = summary.layers[-1].name
    assert set(blocks) == ({readout} if expected else set())
    if expected:
        block = blocks[readout]
        assert (block.blocks, block.inputs_per_block) == (1, AXONS // TYPES)
        assert (block.neurons, block.inputs) == (neurons, inputs)
        assert block.shared_inputs


@pytest.mark.parametrize("chip", ["loihi", "tianjic", "spinnaker", "brainscales"])
def test_chips_with_one_mapping_get_no_readout_block(chip):
    _, summary = _summary("conv", (1, 8, 8), 10)
    assert capacity_model(load_profile(chip)).finest_mapping_blocks(summary) == {}


def test_the_ternary_mapping_has_no_finer_mapping_to_anticipate():
    profile = load_profile("truenorth")
    params = {**profile.weights.params, "mapping": "ternary_duplicate"}
    ternary = dataclasses.replace(
        profile, weights=dataclasses.replace(profile.weights, params=params)
    )
    _, summary = _summary("conv", (1, 8, 8), 10)
    assert capacity_model(ternary).finest_mapping_blocks(summary) == {}
    assert capacity_model(profile).finest_mapping_blocks(summary)  # the shipped mapping does


def test_a_readout_pruned_into_the_block_takes_the_4_axon_mapping():
    """End to end on digits: the pruned readout uses at most 64 inputs (recounted from its
    weight), shared by all its neurons, so the TrueNorth quantizer offers 4 axons per input
    and maps it with them; the same pruning without the block keeps more than 64 inputs (the
    block is what made the difference)."""
    import torch

    from neuroprune.data.datasets import load_dataset
    from neuroprune.fit.budget import derive_budget
    from neuroprune.models import summarize
    from neuroprune.models.zoo import build_model
    from neuroprune.pipeline.prune_loop import prune_to_budget
    from neuroprune.train.loop import default_config, train

    dataset = load_dataset("digits", None)
    config = default_config("mlp", epochs=1, timesteps=4, seed=0)
    model = build_model("mlp", dataset.input_shape, 10, hidden=(128,), seed=0)
    train(model, dataset, config)
    summary = summarize(model, dataset.input_shape, 4)
    profile = load_profile("truenorth")
    blocks = capacity_model(profile).finest_mapping_blocks(summary)
    assert blocks
    plain = derive_budget(None, summary, sparsity=0.5)
    used = {}
    for label, budget in (
        ("plain", plain),
        ("block", dataclasses.replace(plain, input_blocks=blocks)),
    ):
        pruned = prune_to_budget(
            copy.deepcopy(model),
            dataset,
            config,
            method="gmp",
            budget=budget,
            epochs=1,
            finetune_epochs=0,
        ).model
        last = [m for m in pruned.modules() if isinstance(m, torch.nn.Linear)][-1]
        weight = last.weight.detach().double().numpy()
        used[label] = int(np.count_nonzero(np.any(weight != 0, axis=0)))
        if label == "block":
            quantizer = get_quantizer(profile.weights)
            params = quantizer.read_params(profile.weights, "truenorth")
            assert quantizer.option_names(weight, params) == ("4x", "2x")
            lq = quantizer.quantize_layer(weight, None, NeuronParams(), profile.weights)
            assert lq.extra["axon_duplication"] == TYPES
            assert used[label] * TYPES <= AXONS
    assert used["plain"] > AXONS // TYPES


# --------------------------------------------------------------------------------------------
# the 2-axon levels {-N_i, P_i - N_i, 0, P_i}: P_i and N_i fitted jointly


def _pair_error(row: np.ndarray, p: float, n: float) -> float:
    """Squared error of the nonzero entries of ``row`` snapped to the nearest of
    ``{-n, p - n, 0, p}`` (plain loop)."""
    total = 0.0
    for w in row:
        if w != 0:
            total += min((w - q) ** 2 for q in (-n, p - n, 0.0, p))
    return total


def test_weights_on_a_4_level_set_are_recovered_exactly():
    """Entries drawn from ``{-2, 1, 3}`` (``P = 3``, ``N = 2``, ``P - N = 1``): the joint fit
    finds ``P``, ``N`` with zero error; fitting each sign alone cannot (its positive level
    averages 1 and 3)."""
    from neuroprune.chip.formats.truenorth import signed_pair_magnitudes, ternary_magnitudes

    rng = np.random.default_rng(1)
    row = rng.choice([-2.0, 1.0, 3.0, 0.0], size=60)
    p, n = signed_pair_magnitudes(row[None, :])
    assert (p[0], n[0]) == pytest.approx((3.0, 2.0))
    alone_p = ternary_magnitudes(np.where(row > 0, row, 0.0)[None, :])[0]
    alone_n = ternary_magnitudes(np.where(row < 0, -row, 0.0)[None, :])[0]
    assert _pair_error(row, alone_p, alone_n) > 1.0
    assert _pair_error(row, p[0], n[0]) == pytest.approx(0.0, abs=1e-18)


@pytest.mark.parametrize("seed", range(5))
def test_the_joint_fit_never_has_more_error_than_the_per_sign_fit(seed):
    from neuroprune.chip.formats.truenorth import signed_pair_magnitudes, ternary_magnitudes

    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(8, 40)) * (rng.random((8, 40)) < 0.4)
    rows[0] = np.abs(rows[0])  # one row with positive weights only
    p, n = signed_pair_magnitudes(rows)
    alone_p = ternary_magnitudes(np.where(rows > 0, rows, 0.0))
    alone_n = ternary_magnitudes(np.where(rows < 0, -rows, 0.0))
    for i, row in enumerate(rows):
        assert _pair_error(row, p[i], n[i]) <= _pair_error(row, alone_p[i], alone_n[i]) + 1e-12
