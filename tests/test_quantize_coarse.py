"""The coarse analog formats (issue 23, item 6): DYNAP-SE1 integer weights by repeated CAM
entries, BrainScaleS rows counted per input, and quantization-aware fine-tuning that keeps both
on their grids.

Oracles are written here from the facts (docs/chip_profiles.md §9-10): on DYNAP-SE1 a weight of
``m`` units of a synapse type repeats its connection in ``m`` of the neuron's 64 CAM slots; on
BrainScaleS the sign belongs to the synapse row, so an input takes one row per sign it uses.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroprune.chip.profiles import load_profile
from neuroprune.chip.schema import WeightFormat
from neuroprune.core.summary import NetworkSummary, dense_layer
from neuroprune.fit.rules import check_fit
from neuroprune.quantize import NeuronParams, get_quantizer
from neuroprune.quantize.model import ptq_model
from neuroprune.quantize.qat import QuantAwareCallback

torch.set_num_threads(1)

SLOTS = 64
CAM = WeightFormat(
    "dynapse",
    1,
    (1,),
    "per_receptor",
    params={"shared_values_per_core": 4, "connection_bits": 1, "cam_slots_per_neuron": SLOTS},
)
ONE_SLOT = WeightFormat(
    "dynapse", 1, (1,), "per_receptor", params={"shared_values_per_core": 4, "connection_bits": 1}
)


def slots_taken(weight_int: np.ndarray, units) -> np.ndarray:
    """Oracle: CAM slots of every weight, the fewest repeats ``m`` with ``w = m * u`` over the
    units ``u`` of its sign, in plain loops (None where no unit divides it)."""
    out = np.zeros(weight_int.shape, dtype=object)
    for idx, w in np.ndenumerate(weight_int):
        if w == 0:
            continue
        fits = [w // u for u in units if u != 0 and (w > 0) == (u > 0) and w % u == 0]
        out[idx] = min(fits) if fits else None
    return out


def sparse_layer(rng, rows, cols, density):
    w = rng.normal(size=(rows, cols))
    w[rng.random(w.shape) > density] = 0
    return w


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 12),
    cols=st.integers(1, 90),
    density=st.floats(0.02, 1.0),
)
def test_dynapse_repeats_fit_the_cam_and_keep_every_synapse(seed, rows, cols, density):
    w = sparse_layer(np.random.default_rng(seed), rows, cols, density)
    lq = get_quantizer(CAM).quantize_layer(w, None, NeuronParams(), CAM)
    units = lq.extra.get("cam_types_int", [])
    taken = slots_taken(lq.weight_int, units)
    assert all(t is not None for t in taken[w != 0].ravel()), "a weight is no multiple of a type"
    assert np.count_nonzero(lq.weight_int) == np.count_nonzero(w), "a kept synapse was lost"
    assert not lq.weight_int[w == 0].any(), "a pruned synapse was revived"
    assert len(units) <= 4
    for i, row in enumerate(w):
        used = int(sum(taken[i][row != 0]))
        if np.count_nonzero(row) <= SLOTS:
            assert used <= SLOTS, (i, used)
    assert lq.extra.get("cam_slots_max", 0) == max(
        (int(sum(t for t in r if t)) for r in taken), default=0
    )


def test_dynapse_repeats_use_free_slots_and_cut_the_error():
    rng = np.random.default_rng(3)
    errors = {}
    for name, fmt in (("repeats", CAM), ("one slot", ONE_SLOT)):
        total, lost = 0.0, 0
        for _ in range(5):
            w = sparse_layer(rng, 32, 64, 0.1)
            lq = get_quantizer(fmt).quantize_layer(w, None, NeuronParams(), fmt)
            total += float(np.abs(w - lq.weight_int * lq.scale)[w != 0].mean())
            lost += int(np.count_nonzero(w) - np.count_nonzero(lq.weight_int))
        errors[name] = (total / 5, lost)
    assert errors["repeats"][0] < 0.75 * errors["one slot"][0], errors
    assert errors["repeats"][1] == 0 and errors["one slot"][1] > 0, errors


def test_fit_counts_cam_slots_not_synapses():
    profile = load_profile("dynapse")
    w = np.ones((4, 40))
    single = NetworkSummary((dense_layer("fc0", w, weight_bits=1),), input_shape=(40,))
    assert not [v for v in check_fit(single, profile).violations if v.rule == "fan_in"]
    twice = NetworkSummary(
        (dense_layer("fc0", w, weight_bits=1, entries=np.full(w.shape, 2)),), input_shape=(40,)
    )
    found = [v for v in check_fit(twice, profile).violations if v.rule == "fan_in"]
    assert found and found[0].actual == 80 and found[0].limit == SLOTS


def test_brainscales_fit_counts_one_row_per_sign_an_input_uses():
    profile = load_profile("brainscales2")
    rng = np.random.default_rng(0)
    w = np.abs(rng.normal(size=(8, 200)))
    w[:, 100:] *= -1  # 200 one-signed inputs: 200 rows <= 256
    one_signed = NetworkSummary((dense_layer("fc0", w),), input_shape=(200,))
    report = check_fit(one_signed, profile)
    assert report.fits and [c.input_axons for c in report.packing.cores] == [200]
    w[0, :] *= -1  # every input now feeds both signs: 400 rows > 256 on one core, so neuron
    # 0 goes to a core of its own, where each input again takes one row: 2 cores of 200 rows
    mixed = NetworkSummary((dense_layer("fc0", w),), input_shape=(200,))
    split = check_fit(mixed, profile)
    assert split.fits and split.cores_used == 2
    assert sorted((c.neurons, c.input_axons) for c in split.packing.cores) == [(1, 200), (7, 200)]


def tiny_model(seed: int = 0) -> torch.nn.Sequential:
    from spikingjelly.activation_based import layer, surrogate

    from neuroprune.models import neurons

    torch.manual_seed(seed)
    modules = [layer.Flatten()]
    for n_in, n_out in ((64, 24), (24, 10)):
        modules.append(layer.Linear(n_in, n_out, bias=False))
        modules.append(
            neurons.LIFNode(
                tau=2.0, v_threshold=1.0, detach_reset=True, surrogate_function=surrogate.ATan()
            )
        )
    model = torch.nn.Sequential(*modules)
    with torch.no_grad():
        for m in model:
            if isinstance(m, layer.Linear):
                m.weight.mul_((torch.rand_like(m.weight) < 0.2).float())
    from spikingjelly.activation_based import functional

    functional.set_step_mode(model, "m")
    return model


@pytest.mark.parametrize("chip", ["dynapse", "brainscales", "brainscales2"])
def test_qat_keeps_weights_on_the_coarse_grids(chip):
    from neuroprune.data.dataset import Dataset
    from neuroprune.data.datasets import load_dataset
    from neuroprune.models import summarize
    from neuroprune.quantize.model import requantize_layer
    from neuroprune.train.loop import TrainConfig, train

    full = load_dataset("digits")
    data = Dataset(
        "d", full.x_train[:160], full.y_train[:160], full.x_test[:40], full.y_test[:40], 10
    )
    profile = load_profile(chip)
    model = tiny_model()
    masks = [m.weight != 0 for m in model if hasattr(m, "weight")]
    qmodel, layers = ptq_model(model, profile, (1, 8, 8))
    before = [layer.block.synapse.weight.detach().clone() for layer in layers]
    callback = QuantAwareCallback(layers, profile)
    train(qmodel, data, TrainConfig(epochs=1, timesteps=4, lr=0.05), callbacks=(callback,))
    moved, finals = False, []
    for layer, mask, old in zip(layers, masks, before, strict=True):
        weight = layer.block.synapse.weight.detach().double().numpy()
        state, grid = callback.state_of(layer.block.synapse.weight)
        steps = weight / grid.scale
        ints = np.rint(steps).astype(np.int64)
        assert np.array_equal(steps, ints), "a weight left the integer grid"
        assert np.array_equal(ints != 0, mask.numpy()), "the mask changed"
        moved |= not torch.equal(torch.as_tensor(weight), old.double())
        if chip == "dynapse":
            taken = slots_taken(ints, grid.units)
            assert all(t is not None for t in taken[ints != 0])
            assert max(int(sum(t for t in r if t)) for r in taken) <= SLOTS
        else:
            assert np.abs(ints).max() <= 2**profile.weights.bits - 1
        final = requantize_layer(layer, profile, state, None, grid)
        assert np.count_nonzero(final.quant.weight_int) == int(mask.sum())
        finals.append(final)
    assert moved, "fine-tuning changed nothing"
    summary = summarize(qmodel, (1, 8, 8), timesteps=4)
    if chip == "dynapse":
        for final, s in zip(finals, summary.layers, strict=True):
            ints = final.quant.weight_int
            oracle = [
                int(sum(t for t in r if t)) for r in slots_taken(ints, final.quant.grid.units)
            ]
            assert s.fan_in_entries.tolist() == oracle  # the fit counts these slots
            assert (s.fan_in_entries >= s.fan_in).all() and s.fan_in_entries.max() <= SLOTS
        assert not [v for v in check_fit(summary, profile).violations if v.rule == "fan_in"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), neurons=st.integers(1, 12), inputs=st.integers(1, 20))
def test_one_sign_projection_keeps_each_input_one_signed_and_the_budget(seed, neurons, inputs):
    from neuroprune.fit.budget import Budget, LayerScores
    from neuroprune.pruning.selection import select_synapses

    w = np.random.default_rng(seed).normal(size=(neurons, inputs))
    # oracle: per input the sign with the larger summed magnitude (positive on a tie)
    positive_wins = np.where(w > 0, np.abs(w), 0).sum(0) >= np.where(w < 0, np.abs(w), 0).sum(0)
    eligible = int(((w > 0) == positive_wins[None, :]).sum())
    budget_size = max(1, eligible // 2)
    layer = LayerScores(
        "fc0",
        np.abs(w).ravel(),
        np.ones(w.size, dtype=np.int64),
        np.repeat(np.arange(neurons), inputs),
        positive=(w > 0).ravel(),
    )
    budget = Budget(
        budget_size, "test", one_sign_per_input=True, one_sign_layers=frozenset({"fc0"})
    )
    keep = select_synapses([layer], budget)
    kept = keep["fc0"].reshape(neurons, inputs)
    assert int(kept.sum()) == budget_size
    for j in range(inputs):
        signs = set(np.sign(w[kept[:, j], j]))
        assert signs <= ({1.0} if positive_wins[j] else {-1.0}), (j, signs)
    expected = np.sort(np.abs(w)[(w > 0) == positive_wins[None, :]])[::-1][:budget_size]
    assert np.allclose(np.sort(np.abs(w)[kept])[::-1], expected)


def test_one_sign_layers_are_the_hidden_layers_too_wide_for_two_rows_per_input():
    from neuroprune.fit.budget import derive_budget

    profile = load_profile("brainscales2")  # 256 rows per core
    rng = np.random.default_rng(0)
    sizes = (64, 512, 256, 10)
    layers = tuple(
        dense_layer(f"fc{i}", rng.normal(size=(n_out, n_in)))
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False))
    )
    net = NetworkSummary(layers, input_shape=(64,))
    plain = derive_budget(profile, net, chips=2, sparsity=0.9)
    signed = derive_budget(profile, net, chips=2, sparsity=0.9, one_sign_per_input=True)
    # fc0: 2 x 64 = 128 rows fit one core; fc1: 2 x 512 > 256; fc2 (256 inputs) is the readout
    assert signed.one_sign_layers == frozenset({"fc1"}) and not plain.one_sign_layers
    assert plain.input_blocks["fc1"].inputs_per_block == 256 // 2
    assert signed.input_blocks["fc1"].inputs_per_block == 256
    assert signed.input_blocks["fc2"].inputs_per_block == plain.input_blocks["fc2"].inputs_per_block
