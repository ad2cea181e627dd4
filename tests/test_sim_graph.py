"""Graphs through the simulators: residual ADDs and pooling in sim/spec, the reference
simulators and Lava.

Hand-made stage graphs (``nirgraph.build_graph(stages, inputs=...)``):

* ``residual``: conv -> LIF, then a SEW block (conv -> LIF -> conv -> LIF) whose output is
  ADDed to the block input at a Flatten, read by Affine -> LIF: the readout reads two sources
  at depths 1 and 3;
* ``pooled``: conv -> LIF -> SumPool2d(2) -> conv -> LIF -> Flatten -> Affine -> LIF;
* ``skip``: Affine -> LIF, then Affine reading the LIF and the network input (a skip from the
  input) -> LIF.

Each also quantized: integer weights times ``2**-4``, ``threshold_int`` on the neurons and in
``neuroprune_quant`` (as export/stages.py writes them). Weights are multiples of ``2**-4`` and
``tau = 2``, so every float sum is exact and the oracle (tests/nir_spec.py, NIR's equations,
independent of neuroprune) must agree spike for spike.
"""

from __future__ import annotations

import nir_spec
import numpy as np
import pytest
import scipy.sparse as sp

from neuroprune.core.errors import UnsupportedError
from neuroprune.graph.stages import (
    INPUT,
    FlattenStage,
    NeuronStage,
    PoolStage,
    QuantStage,
    SynapseStage,
)
from neuroprune.graph.write import build_graph, write_graph
from neuroprune.sim import prepare_stimulus, read_deployment, simulate
from neuroprune.sim.lava_map import LavaLayer, lava_effective_weights, lava_layers
from neuroprune.sim.reference import fixed_activation, simulate_float

T = 6
N = 12
SCALE = 2.0**-4
THRESHOLD_INT = 8  # v_th = 0.5


# --------------------------------------------------------------------------------------------
# Hand-made graphs


def _ints(rng, shape, low=-4, high=14) -> np.ndarray:
    """Nonzero integers (so the hand counts below need no zero bookkeeping)."""
    values = rng.integers(low, high, size=shape)
    return np.where(values == 0, 1, values).astype(np.int32)


def _synapse(name, weight_int, in_shape, out_shape, quantized, padding=0) -> SynapseStage:
    quant = None
    if quantized:
        params = {"format": "loihi", "bits": 8, "weight_scale": SCALE, "weight_exp": -4}
        quant = QuantStage(weight_int, None, 8, {**params, "threshold_int": THRESHOLD_INT})
    kind = "conv" if weight_int.ndim == 4 else "dense"
    weight = (weight_int * SCALE).astype(np.float32)
    return SynapseStage(name, kind, weight, None, in_shape, out_shape, 1, padding, quant)


def _lif(name, shape, quantized) -> NeuronStage:
    k = THRESHOLD_INT if quantized else None
    return NeuronStage(name, "LIF", shape, THRESHOLD_INT * SCALE, 2.0, True, k, strict=True)


def residual(quantized: bool, seed: int = 0):
    """Input (1, 6, 6); every conv 3x3, padding 1, 2 channels; readout 72 -> 10."""
    rng = np.random.default_rng(seed)
    c = (2, 6, 6)
    stages = [
        _synapse("conv1", _ints(rng, (2, 1, 3, 3)), (1, 6, 6), c, quantized, 1),
        _lif("lif1", c, quantized),
        _synapse("conv2", _ints(rng, (2, 2, 3, 3), -6, 10), c, c, quantized, 1),
        _lif("lif2", c, quantized),
        _synapse("conv3", _ints(rng, (2, 2, 3, 3), -8, 8), c, c, quantized, 1),
        _lif("lif3", c, quantized),
        FlattenStage("flatten", c),
        _synapse("fc", _ints(rng, (10, 72), -3, 4), (72,), (10,), quantized),
        _lif("lif4", (10,), quantized),
    ]
    inputs = [(INPUT,), (0,), (1,), (2,), (3,), (4,), (1, 5), (6,), (7,)]
    return stages, inputs, (1, 6, 6)


def pooled(quantized: bool, kind: str = "sum", seed: int = 1):
    """Input (1, 8, 8); conv 3x3 pad 1 -> (2, 8, 8); pool 2 -> (2, 4, 4); conv 3x3 pad 1 ->
    (3, 4, 4); readout 48 -> 10. ``kind="avg"`` multiplies conv2's weights by k**2 = 4, so the
    network computes exactly what the sum-pooled one does."""
    rng = np.random.default_rng(seed)
    gain = 4 if kind == "avg" else 1
    stages = [
        _synapse("conv1", _ints(rng, (2, 1, 3, 3)), (1, 8, 8), (2, 8, 8), quantized, 1),
        _lif("lif1", (2, 8, 8), quantized),
        PoolStage("pool", kind, 2, (2, 8, 8)),
        _synapse(
            "conv2", gain * _ints(rng, (3, 2, 3, 3), -3, 5), (2, 4, 4), (3, 4, 4), quantized, 1
        ),
        _lif("lif2", (3, 4, 4), quantized),
        FlattenStage("flatten", (3, 4, 4)),
        _synapse("fc", _ints(rng, (10, 48), -3, 5), (48,), (10,), quantized),
        _lif("lif3", (10,), quantized),
    ]
    return stages, None, (1, 8, 8)


def skip(quantized: bool, seed: int = 2):
    """Input (8,); Affine 8 -> 8 -> LIF; Affine over (LIF + input) 8 -> 4 -> LIF."""
    rng = np.random.default_rng(seed)
    stages = [
        _synapse("fc1", _ints(rng, (8, 8)), (8,), (8,), quantized),
        _lif("lif1", (8,), quantized),
        _synapse("fc2", _ints(rng, (4, 8)), (8,), (4,), quantized),
        _lif("lif2", (4,), quantized),
    ]
    return stages, [(INPUT,), (0,), (1, INPUT), (2,)], (8,)


GRAPHS = {"residual": residual, "pooled": pooled, "skip": skip}


def graph_of(name: str, quantized: bool, **kwargs):
    stages, inputs, shape = GRAPHS[name](quantized, **kwargs)
    graph = build_graph(stages, input_shape=shape, timesteps=T, encoding="poisson", inputs=inputs)
    return graph, shape


def write(tmp_path, name: str, quantized: bool, **kwargs):
    graph, shape = graph_of(name, quantized, **kwargs)
    path = write_graph(graph, tmp_path / f"{name}_{int(quantized)}.nir")
    return path, graph, shape


def spikes(shape, seed: int = 3, rate: float = 0.4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((T, N, *shape)) < rate).astype(np.uint8)


def oracle_counts(graph, x) -> list[np.ndarray]:
    """Per neuron node (forward order), spike counts ``[N, neurons]`` from tests/nir_spec.py."""
    out = nir_spec.simulate(graph, x, float(graph.metadata["dt"]))
    names = sorted(n for n in out if n.endswith("_neuron"))
    return [out[n].sum(axis=0).reshape(x.shape[1], -1).astype(np.int32) for n in names]


# --------------------------------------------------------------------------------------------
# The spec


def test_residual_spec_wiring_and_synapse_count(tmp_path):
    path, _, _ = write(tmp_path, "residual", quantized=False)
    spec = read_deployment(path)
    assert [layer.sources for layer in spec.layers] == [(INPUT,), (0,), (1,), (0, 2)]
    assert spec.depths() == (1, 2, 3, 4) and not spec.is_chain
    readout = spec.wiring(3)
    # the block input (depth 1) waits 4 - 1 - 1 = 2 steps, the block output (depth 3) none
    assert readout.delays == (2, 0) and readout.columns == ((0, 72), (72, 144))
    # 3x3 conv, padding 1, on 6x6: taps per output position 9 (16 inner), 6 (16 edge), 4
    # (4 corners) = 256 per (in, out) channel pair. conv1 1x2: 512; conv2, conv3 2x2: 1024
    # each; the Affine 10x72 is wired once per summed source: 2 x 720 = 1440. Total 4000.
    assert [layer.synapses for layer in spec.layers] == [512, 1024, 1024, 1440]
    w = spec.layers[3].weight.toarray()
    np.testing.assert_array_equal(w[:, :72], w[:, 72:])  # the same weights, twice
    blocks = lava_layers(spec, fixed_point=False)[3].blocks()
    assert [(j, b.shape, d) for j, b, d in blocks] == [(0, (10, 72), 2), (2, (10, 72), 0)]


def test_pooled_spec_synapse_count(tmp_path):
    path, _, _ = write(tmp_path, "pooled", quantized=True)
    spec = read_deployment(path)
    assert [layer.sources for layer in spec.layers] == [(INPUT,), (0,), (1,)]
    assert spec.is_chain and all(spec.wiring(k).delays == (0,) for k in range(3))
    # conv1 3x3 pad 1 on 8x8: 36 x 9 + 24 x 6 + 4 x 4 = 484 per pair, 1x2 pairs: 968.
    # conv2 on the pooled 4x4: 4 x 9 + 8 x 6 + 4 x 4 = 100 per pair, 2x3 pairs = 600, each
    # weight wired to the k**2 = 4 pre-pool neurons it sums: 2400. Affine 10 x 48 = 480.
    assert [layer.synapses for layer in spec.layers] == [968, 2400, 480]
    conv2 = spec.layers[1]
    assert conv2.inputs == 2 * 8 * 8 and conv2.quant.weight_int.nnz == 2400
    assert np.array_equal(conv2.quant.weight_int.toarray() * SCALE, conv2.weight.toarray())


def test_avg_pool_spec_divides_by_k_squared(tmp_path):
    sum_spec = read_deployment(write(tmp_path, "pooled", quantized=False)[0])
    avg_path, _, _ = write(tmp_path, "pooled", quantized=False, kind="avg")
    avg_spec = read_deployment(avg_path)
    # avg: (4 W) (P / 4) == W P, entry for entry
    np.testing.assert_array_equal(
        avg_spec.layers[1].weight.toarray(), sum_spec.layers[1].weight.toarray()
    )


def test_quantized_avg_pool_is_refused_in_one_line(tmp_path):
    path, _, _ = write(tmp_path, "pooled", quantized=True, kind="avg")
    with pytest.raises(UnsupportedError, match="AvgPool2d") as info:
        read_deployment(path)
    assert "\n" not in str(info.value) and info.value.value == "AvgPool2d"


def test_chain_compiles_as_a_chain(tmp_path):
    stages, _, shape = skip(quantized=False)
    chain = [FlattenStage("flat", shape), stages[0], stages[1]]
    chain.append(_synapse("fc2", np.ones((4, 8), np.int32), (8,), (4,), False))
    chain.append(_lif("lif2", (4,), False))
    graph = build_graph(chain, input_shape=shape, timesteps=T, encoding="poisson")
    spec = read_deployment(write_graph(graph, tmp_path / "chain.nir"))
    assert spec.is_chain and [layer.sources for layer in spec.layers] == [(INPUT,), (0,)]
    assert spec.depths() == (1, 2) and spec.wiring(1).delays == (0,)
    np.testing.assert_array_equal(spec.layers[0].weight.toarray(), stages[0].weight)


# --------------------------------------------------------------------------------------------
# Reference simulators against the NIR oracle


@pytest.mark.parametrize("name", ["residual", "pooled", "skip"])
@pytest.mark.parametrize("quantized", [False, True])
def test_reference_float_equals_nir_oracle(tmp_path, name, quantized):
    path, graph, shape = write(tmp_path, name, quantized)
    x = spikes(shape)
    spec = read_deployment(path)
    counts = simulate_float(spec, prepare_stimulus(spec, x))
    expected = oracle_counts(graph, x)
    assert all(c.sum() > 0 for c in counts), [int(c.sum()) for c in counts]
    for got, want in zip(counts, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_reference_float_avg_pool_equals_nir_oracle(tmp_path):
    path, graph, shape = write(tmp_path, "pooled", quantized=False, kind="avg")
    x = spikes(shape)
    spec = read_deployment(path)
    counts = simulate_float(spec, prepare_stimulus(spec, x))
    assert all(c.sum() > 0 for c in counts)
    for got, want in zip(counts, oracle_counts(graph, x), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["residual", "pooled", "skip"])
def test_reference_float_equals_the_imported_torch_graph(tmp_path, name):
    """The same file as a torch GraphNet (models/nir_model.py, the lead's importer), counted
    by ``simulate(reference_model=...)`` (sim/torch_reference.py): every layer agrees."""
    from neuroprune.export import import_nir

    path, _, shape = write(tmp_path, name, quantized=False)
    model = import_nir(path).model
    result = simulate(path, x=spikes(shape), backend="reference", reference_model=model)
    assert all(count > 0 for count in result.spike_counts)
    assert result.layer_agreement == (1.0,) * len(result.counts)


def test_fixed_point_split_into_projections_is_exact():
    """Lava sends ``(W_eff,j s_j) >> 1`` per projection; with ``W_eff = 2 w_int`` every product
    is even, so the per-source sum equals the one-matrix activation. The one exception is
    Lava's own: a block whose weights are all <= 0 (inhibitory sign mode) clips
    ``2 * -128 = -256`` to -255; the reference preprocesses each block as Lava does."""
    rng = np.random.default_rng(0)
    w_int = rng.integers(-128, 128, size=(20, 30))
    w_int[:, 10:20] = np.abs(w_int[:, 10:20]) % 128  # an all-excitatory block
    w_int[:, 20:] = -(np.abs(w_int[:, 20:]) % 128)  # all-inhibitory, without -128
    s = (rng.random((50, 30)) < 0.5).astype(np.uint8)

    def effective(block):
        layer = LavaLayer("l", sp.csr_matrix(2 * block), -1, 8, 4095, 0, 10, np.zeros(20), 6)
        return lava_effective_weights(layer)

    whole = fixed_activation(effective(w_int), -1, s)
    split = sum(
        fixed_activation(effective(w_int[:, a:b]), -1, s[:, a:b])
        for a, b in ((0, 10), (10, 20), (20, 30))
    )
    np.testing.assert_array_equal(split, whole)
    np.testing.assert_array_equal(whole, s.astype(np.int64) @ w_int.T)  # exactly W_int s
    assert effective(np.array([[-128, -1]])).toarray().tolist() == [[-255, -2]]


def test_analog_input_into_a_later_layer_is_refused(tmp_path):
    path, _, shape = write(tmp_path, "skip", quantized=False)
    spec = read_deployment(path)
    with pytest.raises(UnsupportedError, match="direct") as info:
        prepare_stimulus(spec, np.full((T, 2, *shape), 0.5))
    assert info.value.field == "l01_2_neuron.sources"


def test_synops_count_every_source(tmp_path):
    path, _, shape = write(tmp_path, "residual", quantized=False)
    x = spikes(shape)
    result = simulate(path, x=x, backend="reference")
    spec = read_deployment(path)
    c = result.counts
    pre = [x.sum(axis=0).reshape(N, -1), c[0], c[1], np.hstack([c[0], c[2]])]
    per_sample = sum(p @ layer.fan_out for p, layer in zip(pre, spec.layers, strict=True))
    # the readout's part: every spike of lif1 or lif3 reaches all 10 readout neurons
    readout = 10 * (c[0].sum() + c[2].sum()) / N
    assert np.mean(pre[3] @ spec.layers[3].fan_out) == pytest.approx(readout)
    assert result.synops_per_sample == pytest.approx(float(np.mean(per_sample)))


# --------------------------------------------------------------------------------------------
# Lava (float and fixed point) against the reference


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("name", ["residual", "pooled", "skip"])
@pytest.mark.parametrize("fixed_point", [False, True])
def test_lava_equals_reference_on_graphs(tmp_path, name, fixed_point):
    path, _, shape = write(tmp_path, name, quantized=True)
    x = spikes(shape)
    reference = simulate(path, x=x, backend="reference", fixed_point=fixed_point)
    result = simulate(
        path, x=x, backend="lava", fixed_point=fixed_point, expected_counts=reference.counts
    )
    assert all(int(c.sum()) > 0 for c in reference.counts), reference.spike_counts
    assert result.layer_agreement == (1.0,) * len(result.counts)
    assert result.spike_counts == reference.spike_counts


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("fixed_point", [False, True])
def test_lava_equals_reference_with_analog_input(tmp_path, fixed_point):
    """Direct (analog) input: the first layer's current is injected (depth 1, no Sparse), the
    residual readout's delays still align its two sources."""
    path, _, shape = write(tmp_path, "residual", quantized=True)
    x = np.random.default_rng(5).random((T, N, *shape)) * 0.8
    reference = simulate(path, x=x, backend="reference", fixed_point=fixed_point)
    result = simulate(
        path, x=x, backend="lava", fixed_point=fixed_point, expected_counts=reference.counts
    )
    assert reference.stimulus == "current" and all(c > 0 for c in reference.spike_counts)
    assert result.layer_agreement == (1.0,) * len(result.counts)
