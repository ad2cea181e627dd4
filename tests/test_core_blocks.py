"""Cores that share axons (issue 23, item 5): on crossbar and dense-matrix chips a core pays for
every input axon it receives, however few of its neurons use it, so the projection prunes every
dense layer (the first included) into core blocks whose neurons share their inputs, and the
packed core count approaches the lower bound.

The 784-input data is a small synthetic MNIST (IDX files written here); the lower bound is
recounted from the profile's fields, without ``neuroprune.chip.capacity``."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from neuroprune.chip.capacity import InputBlocks, capacity_model
from neuroprune.chip.profiles import list_profiles, load_profile
from neuroprune.fit.budget import LayerScores, derive_budget
from neuroprune.fit.rules import check_fit
from neuroprune.pruning.selection import block_mask

# --------------------------------------------------------------------------------------------
# helpers: a synthetic MNIST in IDX files, and the lower bound recounted


def write_idx(path, array: np.ndarray) -> None:
    """IDX: two zero bytes, 0x08 (uint8), ndim, big-endian uint32 sizes, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_synthetic_mnist(folder, n_train: int = 120, n_test: int = 40, seed: int = 0) -> None:
    """28x28 uint8 images: each class lights its own random 5x5 patches, plus noise."""
    rng = np.random.default_rng(seed)
    patterns = np.zeros((10, 28, 28))
    for c in range(10):
        for r, q in rng.integers(0, 23, size=(3, 2)):
            patterns[c, r : r + 5, q : q + 5] = 1.0
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = 200 * patterns[labels] + rng.integers(0, 40, size=(n, 28, 28))
        write_idx(folder / f"{prefix}-images-idx3-ubyte", np.clip(images, 0, 255))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


def recounted_lower_bound(summary, profile) -> int:
    """max(ceil(neurons / per core), ceil(axons used / per core), ceil(memory / per core)):
    an input axon is used when some neuron of the layer keeps it, once per consuming layer,
    times the input copies the sign needs (2 for a sign per axon type or row); dense-matrix
    memory at ``bits_per_synapse`` per kept synapse (hardware_profiles/README.md)."""
    enc = profile.core.encoding
    copies = 2 if profile.weights.sign in ("per_axon_type", "per_row") else 1
    neurons_per_core = min(x for x in (profile.core.neurons_max, enc.cols) if x)
    axons_per_core = min(x for x in (profile.core.input_axons_max, enc.rows) if x)
    neurons = sum(layer.neurons for layer in summary.layers)
    axons = sum(
        int(np.count_nonzero(np.asarray(layer.connectivity.sum(axis=0)).ravel())) * copies
        for layer in summary.layers
    )
    bounds = [math.ceil(neurons / neurons_per_core), math.ceil(axons / axons_per_core)]
    if enc.kind == "dense_matrix":
        synapses = sum(int(layer.connectivity.nnz) for layer in summary.layers)
        bits = enc.bits_per_synapse or profile.weights.bits
        bounds.append(math.ceil(synapses * bits / profile.core.synapse_memory_bits))
    return max(bounds)


# --------------------------------------------------------------------------------------------
# which chips, which blocks


def test_axon_sharing_chips_are_exactly_the_crossbar_and_dense_matrix_ones():
    """Derived from the capacity model (the profile's synapse encoding), never a chip's name."""
    sharing = {p.id for p in list_profiles() if capacity_model(p).shares_axons}
    by_encoding = {
        p.id for p in list_profiles() if p.core.encoding.kind in ("crossbar", "dense_matrix")
    }
    assert sharing == by_encoding
    assert {"truenorth", "tianjic", "brainscales", "brainscales2"} <= sharing
    assert not sharing & {"loihi", "loihi2", "spinnaker", "dynapse", "speck"}


@pytest.mark.parametrize(
    "chip, blocks, per_block, size",
    [("truenorth", 7, 128, 19), ("tianjic", 4, 256, 32)],
)
def test_every_layer_the_first_included_gets_shared_input_blocks(chip, blocks, per_block, size):
    """784-128-10: the first layer cannot sit in one core (784 inputs x copies > 256 axons);
    ``blocks = max(ceil(128 / neurons per block), ceil(784 / inputs per block))``."""
    from neuroprune.core.summary import NetworkSummary, dense_layer

    summary = NetworkSummary(
        (dense_layer("fc0", np.ones((128, 784))), dense_layer("fc1", np.ones((10, 128)))),
        input_shape=(784,),
    )
    budget = derive_budget(load_profile(chip), summary)
    first = budget.input_blocks["fc0"]
    assert first.shared_inputs
    assert (first.blocks, first.inputs_per_block, first.size) == (blocks, per_block, size)
    assert "fc1" not in budget.input_blocks  # 10 neurons x 128 inputs fit one core
    assert first.describe("fc0").startswith(f"layer fc0: {blocks} blocks of <= {size} neurons")


def test_a_shared_block_keeps_the_inputs_its_neurons_score_highest():
    rng = np.random.default_rng(3)
    neurons, inputs = 12, 30
    scores = rng.random((neurons, inputs))
    blocks = InputBlocks(3, 5, neurons, inputs, shared_inputs=True)
    layer = LayerScores("l", scores.reshape(-1), np.ones(scores.size), np.repeat(range(12), 30))
    allowed = block_mask(layer, blocks).reshape(neurons, inputs)
    for b in range(3):
        rows = slice(4 * b, 4 * b + 4)
        best = set(np.argsort(scores[rows].sum(axis=0))[-5:])  # distinct random sums
        for row in allowed[rows]:
            assert set(np.flatnonzero(row)) == best


# --------------------------------------------------------------------------------------------
# end to end: a 784-128-10 mlp pruned to the chip's budget


@pytest.fixture(scope="module")
def trained_784(tmp_path_factory):
    from neuroprune.data.datasets import load_dataset
    from neuroprune.models import summarize
    from neuroprune.models.zoo import build_model
    from neuroprune.train.loop import default_config, train

    folder = tmp_path_factory.mktemp("mnist")
    write_synthetic_mnist(folder)
    dataset = load_dataset("mnist", folder)
    assert dataset.input_shape == (1, 28, 28)
    config = default_config("mlp", epochs=1, timesteps=4, seed=0)
    model = build_model("mlp", dataset.input_shape, dataset.num_classes, hidden=(128,), seed=0)
    train(model, dataset, config)
    return dataset, config, model, summarize(model, dataset.input_shape, 4)


def _pruned_cores(trained_784, profile, budget):
    from neuroprune.models import summarize
    from neuroprune.pipeline.prune_loop import prune_to_budget

    dataset, config, model, _ = trained_784
    result = prune_to_budget(
        copy.deepcopy(model),
        dataset,
        config,
        method="gmp",
        budget=budget,
        epochs=1,
        finetune_epochs=0,
    )
    pruned = summarize(result.model, dataset.input_shape, 4)
    assert result.synapses == budget.synapses
    return check_fit(pruned, profile).cores_used, recounted_lower_bound(pruned, profile)


@pytest.mark.parametrize("chip", ["truenorth", "tianjic", "brainscales", "brainscales2"])
def test_cores_used_are_within_twice_the_lower_bound(trained_784, chip):
    profile = load_profile(chip)
    budget = derive_budget(profile, trained_784[3])
    assert any(b.shared_inputs for b in budget.input_blocks.values())
    cores, bound = _pruned_cores(trained_784, profile, budget)
    assert cores <= 2 * bound, f"{chip}: {cores} cores, lower bound {bound}"


def test_stds_prunes_every_block_to_its_shared_inputs(trained_784):
    """The benchmarked method (stds, blocks narrowing during pruning): after the projection
    and fine-tuning each contiguous block of first-layer neurons uses at most its inputs per
    block, recounted from the weights; cores within twice the recounted bound."""
    from neuroprune.models import summarize
    from neuroprune.pipeline.prune_loop import prune_to_budget

    dataset, config, model, summary = trained_784
    profile = load_profile("truenorth")
    budget = derive_budget(profile, summary)
    name, blocks = next((n, b) for n, b in budget.input_blocks.items() if b.shared_inputs)
    result = prune_to_budget(
        copy.deepcopy(model),
        dataset,
        config,
        method="stds",
        budget=budget,
        epochs=2,
        finetune_epochs=1,
    )
    weight = result.model.get_submodule(name).weight.detach().numpy()
    size = math.ceil(weight.shape[0] / blocks.blocks)
    for start in range(0, weight.shape[0], size):
        used = np.count_nonzero(np.abs(weight[start : start + size]).sum(axis=0))
        assert used <= blocks.inputs_per_block
    pruned = summarize(result.model, dataset.input_shape, 4)
    assert check_fit(pruned, profile).cores_used <= 2 * recounted_lower_bound(pruned, profile)


def test_shared_blocks_narrow_geometrically_from_every_input_to_their_width():
    """``K_t = K (N / K) ** (1 - g)``, ``g = min(1, t / settle)``: every input at the start,
    the geometric mean of N and K half-way to the settling point, K from it on."""
    from neuroprune.pruning.base import BLOCKS_SETTLE, block_inputs_now

    final, inputs = 128, 784
    blocks = InputBlocks(7, final, 128, inputs, shared_inputs=True)
    widths = [block_inputs_now(blocks, t / 100).inputs_per_block for t in range(0, 101)]
    assert widths[0] == inputs
    assert all(a >= b for a, b in zip(widths, widths[1:], strict=False))
    half = block_inputs_now(blocks, BLOCKS_SETTLE / 2).inputs_per_block
    assert abs(half - math.sqrt(final * inputs)) <= 0.5
    assert block_inputs_now(blocks, BLOCKS_SETTLE).inputs_per_block == final
    assert widths[-1] == final
    disjoint = InputBlocks(7, final, 128, inputs, shared_inputs=False)
    assert block_inputs_now(disjoint, 0.0) == disjoint


def test_without_blocks_the_first_layer_spreads_over_a_core_per_neuron(trained_784):
    """The contrast (the projection before issue 23): unstructured first layer on TrueNorth."""
    import dataclasses

    profile = load_profile("truenorth")
    budget = derive_budget(profile, trained_784[3])
    unstructured = dataclasses.replace(budget, input_blocks={})
    cores, bound = _pruned_cores(trained_784, profile, unstructured)
    assert cores > 2 * bound


# --------------------------------------------------------------------------------------------
# neurons that share inputs, side by side


def test_cluster_order_gathers_neurons_that_prefer_the_same_inputs():
    """Four interleaved groups of neurons, each preferring its own 10 inputs: every contiguous
    block of the order holds one group."""
    from neuroprune.pruning.clustering import cluster_order

    rng = np.random.default_rng(0)
    group = np.arange(32) % 4
    importance = rng.random((32, 40)) * 0.1
    for i, g in enumerate(group):
        importance[i, 10 * g : 10 * g + 10] += 1.0
    order = cluster_order(importance, size=8, inputs=10)
    assert sorted(order) == list(range(32))
    for b in range(4):
        assert len(set(group[order[8 * b : 8 * b + 8]])) == 1


def test_reordering_keeps_the_function_and_moves_the_next_layers_columns():
    import torch

    from neuroprune.models.zoo import build_model
    from neuroprune.pruning.clustering import cluster_for_blocks
    from neuroprune.pruning.targets import find_targets

    model = build_model("mlp", (1, 28, 28), 10, hidden=(128,), seed=1)
    blocks = InputBlocks(7, 128, 128, 784, shared_inputs=True)
    budget = derive_budget(None, _summary_784())
    budget = budget.__class__(**{**budget.__dict__, "input_blocks": {"1": blocks}})
    first, second = (t.module for t in find_targets(model, (1, 28, 28), conv_weight_sharing=False))
    w1, w2 = first.weight.detach().clone(), second.weight.detach().clone()
    x = torch.rand(4, 3, 1, 28, 28)
    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    before = model(x).detach()
    done = cluster_for_blocks(model, budget, (1, 28, 28))
    functional.reset_net(model)
    after = model(x).detach()
    perm = torch.as_tensor(done["1"])
    assert sorted(done["1"].tolist()) == list(range(128))
    assert torch.equal(first.weight, w1[perm]) and torch.equal(second.weight, w2[:, perm])
    assert torch.equal(before, after)


def _summary_784():
    from neuroprune.core.summary import NetworkSummary, dense_layer

    return NetworkSummary(
        (dense_layer("1", np.ones((128, 784))), dense_layer("3", np.ones((10, 128)))),
        input_shape=(784,),
    )


def test_report_names_the_core_blocks():
    """report.md says the projection used core blocks, with the layer and the reason; a run
    without them says nothing of the kind."""
    from neuroprune.reports.markdown import report_markdown
    from neuroprune.run.record import BudgetRecord, RunRecord

    blocks = InputBlocks(
        7, 128, 128, 784, shared_inputs=True, reason="crossbar: a core's input axons are shared"
    )
    line = blocks.describe("fc0")

    def run(core_blocks):
        budget = BudgetRecord(synapses=17664, source="chip", core_blocks=core_blocks)
        return report_markdown(RunRecord(chip="truenorth", budget=budget))

    text = run([line])
    assert "Core blocks" in text and line in text
    assert "layer fc0: 7 blocks of <= 19 neurons x <= 128 inputs" in text
    assert "Core blocks" not in run(None)
