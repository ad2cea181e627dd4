"""Lava at scale: the batched Sparse product and memory-based space batching.

Oracles: ``scipy.sparse.kron(I_B, W) @ s`` (what Lava's own Sparse computes on a block-diagonal
matrix), and hand-computed byte counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from neuroprune.sim.batching import batched_dot
from neuroprune.sim.inputs import prepare_stimulus
from neuroprune.sim.lava_backend import (
    BYTES_PER_NEURON_SAMPLE,
    LavaBackend,
    chunk_size,
    sample_bytes,
)
from neuroprune.sim.lava_map import lava_layers
from neuroprune.sim.spec import DeploymentSpec, LayerNeurons, LayerSpec

T = 8


def random_spec(sizes=(64, 100, 10), density=0.3, seed=0) -> DeploymentSpec:
    """A float LIF chain with random sparse weights that spike without training."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        weight = sp.random(n_out, n_in, density=density, random_state=rng, format="csr")
        weight.data = rng.normal(0.0, 1.0, weight.nnz) * 3.0 / np.sqrt(density * n_in)
        neuron = LayerNeurons("LIF", 1.0, 2.0, True)
        layers.append(
            LayerSpec(f"{i}_syn", f"{i}_neuron", "dense", (n_in,), (n_out,), weight, None, neuron)
        )
    return DeploymentSpec(tuple(layers), (sizes[0],), 2**-10, T, "direct")


@pytest.mark.parametrize("rate", [0.05, 0.6])  # sparse x sparse path, dense path
def test_batched_dot_equals_lava_block_diagonal_product(rate):
    rng = np.random.default_rng(3)
    batch, n_in, n_out = 5, 40, 30
    weights = sp.random(n_out, n_in, density=0.4, random_state=rng, format="csr")
    spikes = (rng.random(batch * n_in) < rate).astype(np.float64)
    block = sp.kron(sp.identity(batch), weights, format="csr")
    expected = block.dot(spikes)
    assert np.array_equal(batched_dot(weights, spikes, batch), expected)
    integer = weights.copy()
    integer.data = rng.integers(-128, 128, integer.nnz)
    block_int = sp.kron(sp.identity(batch, dtype=np.int64), integer, format="csr")
    spikes_int = spikes.astype(np.int32)
    assert np.array_equal(batched_dot(integer, spikes_int, batch), block_int.dot(spikes_int))


def test_space_batching_is_chosen_from_memory():
    spec = random_spec()
    x = np.random.default_rng(1).random((23, 64))
    stimulus = prepare_stimulus(spec, x)  # current into layer 0: input width 100
    layers = lava_layers(spec, False)
    # neurons 100 + 10 plus the 100-wide injected current; frames 8 steps x 100 x 8 bytes
    per_sample = BYTES_PER_NEURON_SAMPLE * (110 + 100) + 8 * T * 100
    assert sample_bytes(layers, 100, T) == per_sample == 60_160
    assert chunk_size(per_sample, 10 * per_sample + 1) == 10
    assert chunk_size(per_sample, 1) == 1
    chunks = LavaBackend(max_chunk_bytes=10 * per_sample).chunks(layers, stimulus)
    assert chunks == [(0, 10), (10, 20), (20, 23)]
    assert LavaBackend().chunks(layers, stimulus) == [(0, 23)]  # GBs available: one network
