"""Core blocks keep inputs that are not copies of each other (issue 23, item 5).

On crossbar and dense-matrix chips the neurons of one core share its input axons, so the
projection prunes a dense layer into blocks that share ``inputs_per_block`` inputs. Each block
takes its most important inputs, skipping inputs that are near copies of ones it already has
(``pruning.selection.diverse_top`` over ``input_similarity`` of the trained weights). The
oracles here are built from planted copies and recounted from the weights, never through
``neuroprune.chip.capacity`` or the packer."""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------
# a block's inputs: the most important, without copies of inputs it already has


def test_a_block_takes_one_copy_of_each_input_before_any_second_copy():
    """Inputs 0..5 are distinct signals; inputs 6..17 are copies of inputs 0..2 (identical
    weight columns). The block's affinity is highest on the copies, so plain top-6 would take
    only copies of inputs 0..2; the diverse choice takes each signal once."""
    from neuroprune.pruning.selection import diverse_top, input_similarity

    rng = np.random.default_rng(4)
    distinct = rng.normal(size=(20, 6))
    copies_of = np.array([0, 1, 2] * 4)
    weight = np.concatenate([distinct, distinct[:, copies_of]], axis=1)
    affinity = np.r_[np.full(6, 1.0), np.full(12, 2.0)]
    similarity = input_similarity(weight)
    chosen = np.flatnonzero(diverse_top(affinity, similarity, 6))
    signals = [j if j < 6 else int(copies_of[j - 6]) for j in chosen]
    assert sorted(signals) == list(range(6))
    plain = np.argsort(-affinity, kind="stable")[:6]
    assert {j if j < 6 else int(copies_of[j - 6]) for j in plain} == {0, 1, 2}


def test_input_similarity_is_the_absolute_cosine_of_weight_columns():
    from neuroprune.pruning.selection import input_similarity

    weight = np.array([[1.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 1.0]])
    sim = input_similarity(weight)
    assert sim[0, 1] == 1.0  # parallel columns
    assert sim[0, 2] == 0.0  # a zero column resembles nothing
    assert abs(sim[0, 3] - 1 / np.sqrt(2)) < 1e-12
    assert np.allclose(sim, sim.T)


def test_without_similar_inputs_the_diverse_choice_is_the_plain_top_k():
    from neuroprune.pruning.selection import diverse_top

    rng = np.random.default_rng(5)
    affinity = rng.random(30)
    chosen = diverse_top(affinity, np.eye(30), 7)
    assert set(np.flatnonzero(chosen)) == set(np.argsort(-affinity)[:7])


def test_the_projection_keeps_each_blocks_diverse_inputs():
    """``block_mask`` with the layer's similarity: every neuron of a block may keep exactly
    the block's diverse choice over its summed scores, recomputed here block by block."""
    from neuroprune.chip.capacity import InputBlocks
    from neuroprune.fit.budget import LayerScores
    from neuroprune.pruning.selection import block_mask, diverse_top, input_similarity

    rng = np.random.default_rng(6)
    neurons, inputs = 12, 24
    weight = rng.normal(size=(neurons, inputs))
    weight[:, 12:] = weight[:, :12] * 1.5  # inputs 12.. copy inputs 0..11
    scores = np.abs(weight)
    similarity = input_similarity(weight)
    blocks = InputBlocks(3, 8, neurons, inputs, shared_inputs=True)
    layer = LayerScores(
        "l",
        scores.reshape(-1),
        np.ones(scores.size),
        np.repeat(range(neurons), inputs),
        input_similarity=similarity,
    )
    allowed = block_mask(layer, blocks).reshape(neurons, inputs)
    for b in range(3):
        rows = slice(4 * b, 4 * b + 4)
        expected = diverse_top(scores[rows].sum(axis=0), similarity, 8)
        assert (allowed[rows] == expected).all()
        kept = np.flatnonzero(expected)
        assert len({j % 12 for j in kept}) == 8  # no input together with its copy


# --------------------------------------------------------------------------------------------
# end to end on Tianjic: a 784-128-10 mlp pruned by stds to the chip's budget


def placement_cores(model, profile, blocks) -> int:
    """Cores of a placement built from the weights alone: each contiguous block of the first
    layer on its own core, the readout on one core; each core checked against the profile's
    axons and dense 8-bit memory (``inputs used x neurons x bits``)."""
    first, second = (m.weight.detach().numpy() for m in model.modules() if hasattr(m, "weight"))
    axons = profile.core.input_axons_max
    memory = profile.core.synapse_memory_bits
    bits = profile.core.encoding.bits_per_synapse
    cores = 0
    for part in (
        *(first[s : s + blocks.size] for s in range(0, first.shape[0], blocks.size)),
        second,
    ):
        used = int(np.count_nonzero(np.abs(part).sum(axis=0)))
        assert used <= axons and used * part.shape[0] * bits <= memory
        cores += 1
    return cores


def test_tianjic_blocks_pack_within_twice_the_recounted_bound(tmp_path):
    import copy

    from test_core_blocks import recounted_lower_bound, write_synthetic_mnist

    from neuroprune.chip.profiles import load_profile
    from neuroprune.data.datasets import load_dataset
    from neuroprune.fit.budget import derive_budget
    from neuroprune.fit.rules import check_fit
    from neuroprune.models import summarize
    from neuroprune.models.zoo import build_model
    from neuroprune.pipeline.prune_loop import prune_to_budget
    from neuroprune.train.loop import default_config, train

    write_synthetic_mnist(tmp_path)
    dataset = load_dataset("mnist", tmp_path)
    config = default_config("mlp", epochs=1, timesteps=4, seed=0)
    model = build_model("mlp", dataset.input_shape, dataset.num_classes, hidden=(128,), seed=0)
    train(model, dataset, config)
    profile = load_profile("tianjic")
    budget = derive_budget(profile, summarize(model, dataset.input_shape, 4))
    blocks = budget.input_blocks["1"]
    result = prune_to_budget(
        copy.deepcopy(model),
        dataset,
        config,
        method="stds",
        budget=budget,
        epochs=2,
        finetune_epochs=1,
    )
    assert result.synapses == budget.synapses
    weight = result.model.get_submodule("1").weight.detach().numpy()
    for start in range(0, weight.shape[0], blocks.size):
        rows = weight[start : start + blocks.size]
        assert np.count_nonzero(np.abs(rows).sum(axis=0)) <= blocks.inputs_per_block
    pruned = summarize(result.model, dataset.input_shape, 4)
    placed = placement_cores(result.model, profile, blocks)
    assert check_fit(pruned, profile).cores_used <= placed
    assert placed <= 2 * recounted_lower_bound(pruned, profile)
