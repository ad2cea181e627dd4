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
