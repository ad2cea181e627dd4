"""The budget survives quantization (issue 23, item 7): on a uniform grid (every >= 8-bit format:
Loihi, Loihi 2, SpiNNaker, Tianjic) a synapse the projection kept never rounds to 0, so the chip
stores exactly the ``B`` synapses the budget kept; a level grid (TrueNorth's ternary levels) may
zero some, and the run's warnings name the shortfall and the format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroprune.chip.formats import get_quantizer
from neuroprune.chip.formats.neuron import NeuronParams
from neuroprune.chip.profiles import load_profile
from neuroprune.quantize.qat import project

EIGHT_BITS_OR_MORE = ("loihi", "loihi2", "spinnaker", "tianjic")


def weights_with_tiny_synapses(seed: int = 0) -> np.ndarray:
    """A pruned (rows, inputs) weight: half the entries 0, a quarter large, a quarter tiny
    (1e-7 of the largest: below half a step of any >= 8-bit grid)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(16, 40))
    w[rng.random(w.shape) < 0.5] = 0.0
    tiny = (w != 0) & (rng.random(w.shape) < 0.5)
    w[tiny] = np.sign(w[tiny]) * 1e-7 * np.abs(w).max()
    return w


@pytest.mark.parametrize("chip", EIGHT_BITS_OR_MORE)
def test_every_kept_synapse_survives_post_training_quantization(chip):
    profile = load_profile(chip)
    w = weights_with_tiny_synapses()
    quantizer = get_quantizer(profile.weights)
    lq = quantizer.quantize_layer(w, None, NeuronParams(), profile.weights)
    assert lq.grid.levels is None
    ints = lq.weight_int
    assert np.count_nonzero(ints) == np.count_nonzero(w)
    assert lq.stats["nonzero_after"] == lq.stats["nonzero_before"] == np.count_nonzero(w)
    assert np.array_equal(np.sign(ints), np.sign(w)), "a synapse changed sign"
    tiny = (w != 0) & (np.abs(w) < lq.grid.scale / 2)
    assert tiny.any(), "the fixture must hold synapses below half a step"
    assert np.all(np.abs(ints[tiny]) == 1), "a tiny synapse is not at its nearest nonzero level"


def test_spinnaker_ring_buffer_doubling_keeps_every_synapse():
    """The ring-buffer rule doubles the scale until each neuron's summed excitatory weights fit
    16 bits: the coarser step must not zero the small synapses (9,472 -> 9,463 before)."""
    profile = load_profile("spinnaker")
    rng = np.random.default_rng(1)
    w = np.abs(rng.normal(size=(4, 300)))  # 300 excitatory inputs: the sum overflows 16 bits
    w[:, :30] = 1e-3
    lq = get_quantizer(profile.weights).quantize_layer(w, None, NeuronParams(), profile.weights)
    assert any("ring buffer" in note for note in lq.notes), "the fixture must force doubling"
    assert np.count_nonzero(lq.weight_int) == w.size
    sums = lq.weight_int.sum(axis=1)
    assert sums.max() <= 2**16 - 1, "receptor sums must still fit the ring buffer"


@pytest.mark.parametrize("chip", EIGHT_BITS_OR_MORE)
def test_quantization_aware_projection_keeps_the_same_synapses(chip):
    """Fine-tuning projects with the same rule: every kept weight stays nonzero and equals the
    post-training integer times the scale."""
    profile = load_profile(chip)
    w = weights_with_tiny_synapses(2)
    lq = get_quantizer(profile.weights).quantize_layer(w, None, NeuronParams(), profile.weights)
    projected = project(torch.from_numpy(w), lq.grid).numpy()
    assert np.array_equal(projected, lq.weight_int * lq.grid.scale)
    assert np.count_nonzero(projected) == np.count_nonzero(w)


def test_a_ternary_format_may_zero_synapses_and_the_warning_names_it():
    """TrueNorth's per-neuron levels (multiples of one step per neuron) cannot hold a tiny
    synapse: the shortfall is the format's, and ``synapses_lost`` says how many and on which
    chip's weights."""
    from types import SimpleNamespace

    from neuroprune.run.warnings import synapses_lost

    profile = load_profile("truenorth")
    w = weights_with_tiny_synapses(3)
    lq = get_quantizer(profile.weights).quantize_layer(w, None, NeuronParams(), profile.weights)
    kept, stored = np.count_nonzero(w), int(np.count_nonzero(lq.weight_int))
    assert lq.grid.levels is not None and stored < kept
    record = SimpleNamespace(
        pruned=SimpleNamespace(synapses=kept),
        quantized=SimpleNamespace(synapses=stored, format=lq.format, layers=[]),
        budget=SimpleNamespace(synapses=kept),
        chip=profile.id,
        chip_name=profile.name,
    )
    (found,) = synapses_lost(record, profile)
    assert f"{kept - stored:,} of {kept:,}" in found.message
    assert f"{profile.name}'s weights" in found.message
