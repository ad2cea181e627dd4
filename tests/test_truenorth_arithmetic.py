"""TrueNorth's neuron (``truenorth``): the training neuron, the reference emulation and the Lava
process against an independent transcription of the published equations.

The transcription below is written from Cassidy et al., IJCNN 2013 (the neuron equations and
the reset table, as NeMo's ``src/neuro/tn_neuron.c`` reproduces them in its comments) and
NeMo's deterministic path (``TNIntegrate``: ``V += s[G_i]`` per active axon with its crossbar
bit set; ``TNNumericLeakCalc``: ``omega = sigma_l (1 - eps) + sgn(V) sigma_l eps``, ``V +=
omega lambda``; ``ringing``: with ``eps``, a sign change during the leak sets ``V = 0``;
``overUnderflowCheck``: ``V > 393216`` clamps and spikes, ``V < -393216`` clamps;
``TNfireFloorCelingReset``: ``V >= alpha`` fires and resets by gamma, else ``V < -beta`` resets
by kappa/gamma). It is scalar Python on one neuron at a time and imports nothing it checks.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

# ------------------------------------------------------------------------------------------
# The transcription


def sgn(x: int) -> int:
    return (x > 0) - (x < 0)


def tn_tick(n: dict, active_axons: list[int]) -> bool:
    """One tick of one neuron: ``n`` holds ``V``, ``G`` (axon types), ``w`` (crossbar bits of
    this neuron), ``s`` (4 type weights), ``sigma_l``, ``lam``, ``eps``, ``alpha``, ``beta``,
    ``R``, ``gamma``, ``kappa``; returns whether it spiked."""
    for i in active_axons:  # synaptic integration
        if n["w"][i]:
            n["V"] += n["s"][n["G"][i]]
    before = n["V"]
    omega = n["sigma_l"] * (1 - n["eps"]) + sgn(n["V"]) * n["sigma_l"] * n["eps"]
    n["V"] += omega * n["lam"]  # leak
    if n["eps"] and sgn(n["V"]) != sgn(before):  # ringing
        n["V"] = 0
    if n["V"] > 393216:  # overUnderflowCheck
        n["V"] = 393216
        return True
    if n["V"] < -393216:
        n["V"] = -393216
    if n["V"] >= n["alpha"]:
        n["V"] = {0: n["R"], 1: n["V"] - n["alpha"], 2: n["V"]}[n["gamma"]]
        return True
    if n["V"] < -n["beta"]:
        if n["kappa"]:
            n["V"] = -n["beta"]
        else:
            n["V"] = {0: -n["R"], 1: n["V"] + n["beta"], 2: n["V"]}[n["gamma"]]
    return False


def _one_axon_per_input_neuron(params: dict) -> dict:
    """A neuron with one axon of type 0, always active, whose type weight the caller sets to
    the tick's synaptic sum."""
    return {"V": 0, "G": [0], "w": [1], "s": [0, 0, 0, 0], **params}


def _random_params(rng, gamma: int, kappa: int, eps: int) -> dict:
    lam = int(rng.integers(0, 20))
    return {
        "sigma_l": int(rng.choice([-1, 1])),
        "lam": lam,
        "eps": eps,
        "alpha": int(rng.integers(0, 300)),
        "beta": int(rng.integers(0, 300)),
        "R": int(rng.integers(-50, 50)),
        "gamma": gamma,
        "kappa": kappa,
    }


def _inputs(rng, params: list[dict], steps: int) -> np.ndarray:
    """Synaptic sums ``[steps, neurons]``: mostly small, a share that lands V on alpha from 0
    (ties), a few beyond the ceiling."""
    a = rng.integers(-150, 150, size=(steps, len(params)))
    for j, p in enumerate(params):
        tie = rng.random(steps) < 0.3
        a[tie, j] = p["alpha"] - p["sigma_l"] * p["lam"]  # from V = 0 and eps 0: V = alpha
    a[rng.random(a.shape) < 0.02] = 400_000
    a[rng.random(a.shape) < 0.02] = -400_000
    return a


def _library_neurons(params: list[dict]):
    from neuroprune.chip.arithmetic.truenorth import TrueNorthNeuron

    return [
        TrueNorthNeuron(
            alpha=p["alpha"],
            leak=p["sigma_l"] * p["lam"],
            epsilon=p["eps"],
            gamma=p["gamma"],
            v_reset=p["R"],
            beta=p["beta"],
            kappa=p["kappa"],
        )
        for p in params
    ]


@pytest.mark.parametrize("as_torch", [False, True])
@pytest.mark.parametrize(
    ("gamma", "kappa", "eps"), list(itertools.product((0, 1, 2), (0, 1), (0, 1)))
)
def test_truenorth_neuron_equals_the_transcription(gamma, kappa, eps, as_torch):
    rng = np.random.default_rng(100 * gamma + 10 * kappa + eps)
    params = [_random_params(rng, gamma, kappa, eps) for _ in range(12)]
    a = _inputs(rng, params, 60)
    neurons = _library_neurons(params)
    oracle = [_one_axon_per_input_neuron(p) for p in params]
    ties = 0
    for j, (neuron, n) in enumerate(zip(neurons, oracle, strict=True)):
        v = torch.zeros(1, dtype=torch.int64) if as_torch else np.zeros(1, np.int64)
        for t in range(a.shape[0]):
            n["s"][0] = int(a[t, j])
            want = tn_tick(n, [0])
            step_in = torch.tensor([a[t, j]]) if as_torch else np.array([a[t, j]])
            charged = neuron.integrate_and_leak(v, step_in)
            ties += int(int(charged[0]) == n["alpha"])
            fired = neuron.fire(charged)
            v = neuron.reset(charged, fired)
            assert bool(fired[0]) == want, (t, j, params[j])
            assert int(v[0]) == n["V"], (t, j, params[j])
    assert ties > 0, "no potential reached alpha exactly: the >= rule was not exercised"


def test_a_tie_at_alpha_fires_and_one_below_does_not():
    from neuroprune.chip.arithmetic import LayerFacts, layer_neuron

    layer = layer_neuron("truenorth", LayerFacts("IF", None, True, 40))
    state = layer.zero_state(np.zeros(2, np.int64))
    state, fired = layer.step(state, np.array([40, 39]))
    assert fired.tolist() == [True, False]
    assert state[0].tolist() == [0, 39]


# ------------------------------------------------------------------------------------------
# A network: the trained quantized model = the reference = the transcription (crossbar level)

T = 8
SHAPE = (1, 8, 8)


def _truenorth_model(neuron: str, images=None, hidden=(80,)):
    from neuroprune.chip.profiles import load_profile
    from neuroprune.models.zoo import build_model
    from neuroprune.quantize.chip import use_chip_arithmetic
    from neuroprune.quantize.model import ptq_model

    profile = load_profile("truenorth")
    model = build_model("mlp", SHAPE, 10, neuron=neuron, tau=2.0, hidden=hidden, seed=3)
    masks = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for depth, m in enumerate(
            (m for m in model.modules() if isinstance(m, torch.nn.Linear)), 1
        ):
            m.weight.mul_(3.0 * depth**2 * (torch.rand(m.weight.shape, generator=masks) < 0.5))
    qmodel, layers = ptq_model(model.eval(), profile, SHAPE)
    layers, name, _ = use_chip_arithmetic(qmodel, layers, profile, analog_images=images)
    assert name == "truenorth"
    return qmodel, layers


def _type_weights(levels: np.ndarray) -> np.ndarray:
    """The mapping's type weights per neuron, as the format documents them: 15 levels k A
    (k = -7..7) -> (A, 2A, 4A, -7A) on 4 axons; 4 levels {-N, P-N, 0, P} -> (P, -N) on 2."""
    if levels.shape[1] == 15:
        a = levels[:, 8]
        return np.stack([a, 2 * a, 4 * a, -7 * a], axis=1)
    assert levels.shape[1] == 4
    return np.stack([levels[:, 3], levels[:, 0]], axis=1)


def _crossbar(weight_int: np.ndarray, type_weights: np.ndarray) -> np.ndarray:
    """Crossbar bits ``[out, in * d]`` (input j on axons j*d .. j*d + d - 1, types 0..d-1)
    whose type-weight sums give ``weight_int``: brute force over the subsets."""
    out_n, in_n = weight_int.shape
    d = type_weights.shape[1]
    bits = np.zeros((out_n, in_n * d), np.int64)
    for i in range(out_n):
        for j in range(in_n):
            for subset in itertools.product((0, 1), repeat=d):
                if int(np.dot(subset, type_weights[i])) == int(weight_int[i, j]):
                    bits[i, j * d : (j + 1) * d] = subset
                    break
            else:
                raise AssertionError(
                    f"weight {weight_int[i, j]} is no subset sum of {type_weights[i]}"
                )
    return bits


def _transcribed_network(layers, spikes_in, neuron: str):
    """Each layer on the transcription, through its crossbar: alpha = K (IF) or round(K tau)
    (LIF, tau = 2, decay_input), LIF leak reversal toward 0 by min(255, max(1, round(alpha /
    (2 tau)))),
    gamma 0 to R = 0, kappa 1 at beta = 2**18 - 1."""
    counts, pre = [], spikes_in
    for layer in layers:
        w = layer.quant.weight_int.reshape(layer.quant.weight_int.shape[0], -1).astype(np.int64)
        tw = _type_weights(np.asarray(layer.quant.grid.levels))
        d = tw.shape[1]
        bits = _crossbar(w, tw)
        k = int(layer.quant.threshold_int)
        alpha = k if neuron == "if" else int(round(k * 2.0))
        lam = 0 if neuron == "if" else min(255, max(1, int(round(alpha / 4.0))))
        steps, samples = pre.shape[:2]
        out = np.zeros((steps, samples, w.shape[0]), np.uint8)
        for sample in range(samples):
            cells = [
                {
                    "V": 0,
                    "G": [axon % d for axon in range(bits.shape[1])],
                    "w": bits[i].tolist(),
                    "s": [*tw[i].tolist(), 0, 0][:4],
                    "sigma_l": -1,
                    "lam": lam,
                    "eps": 0 if neuron == "if" else 1,
                    "alpha": alpha,
                    "beta": 2**18 - 1,
                    "R": 0,
                    "gamma": 0,
                    "kappa": 1,
                }
                for i in range(w.shape[0])
            ]
            for t in range(steps):
                active = np.flatnonzero(pre[t, sample].reshape(-1))
                axons = [int(j) * d + c for j in active for c in range(d)]
                for i, n in enumerate(cells):
                    out[t, sample, i] = tn_tick(n, axons)
        counts.append(out.sum(axis=0))
        pre = out
    return counts


@pytest.mark.parametrize("neuron", ["if", "lif"])
def test_truenorth_model_equals_reference_and_transcription(tmp_path, neuron):
    from neuroprune.export import export_nir
    from neuroprune.sim import simulate
    from neuroprune.sim.torch_reference import model_counts

    rng = np.random.default_rng(1)
    spikes = (rng.random((T, 16, *SHAPE)) < 0.3).astype(np.float32)
    qmodel, layers = _truenorth_model(neuron)
    assert {layer.quant.extra["axon_duplication"] for layer in layers} == {2, 4}
    path = export_nir(
        qmodel,
        tmp_path / "t.nir",
        timesteps=T,
        encoding="poisson",
        input_shape=SHAPE,
        chip="truenorth",
    )
    result = simulate(path, x=spikes, backend="reference", fixed_point=True, reference_model=qmodel)
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)
    assert all(count > 0 for count in result.spike_counts), result.spike_counts
    model = model_counts(qmodel, spikes)
    transcribed = _transcribed_network(layers, spikes, neuron)
    for got, sim, want in zip(model, result.counts, transcribed, strict=True):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(sim, want)


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.parametrize("encoding", ["poisson", "direct"])
def test_truenorth_model_equals_lava_chip_neuron(tmp_path, encoding):
    """``truenorth`` in Lava (a ChipNeuron behind float Sparse processes of the integer weights)
    against the trained quantized model: every layer 100 %."""
    from neuroprune.export import export_nir
    from neuroprune.sim import simulate

    rng = np.random.default_rng(3)
    if encoding == "poisson":
        x = (rng.random((T, 20, *SHAPE)) < 0.3).astype(np.float32)
        qmodel, _ = _truenorth_model("lif")
    else:
        x = (rng.integers(0, 17, (20, *SHAPE)) / 16).astype(np.float32)
        qmodel, _ = _truenorth_model("if", x)
    path = export_nir(
        qmodel,
        tmp_path / "t.nir",
        timesteps=T,
        encoding=encoding,
        input_shape=SHAPE,
        chip="truenorth",
    )
    result = simulate(path, x=x, backend="lava", fixed_point=True, reference_model=qmodel)
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)
    assert all(count > 0 for count in result.spike_counts), result.spike_counts


def test_analog_first_layer_equals_the_reference(tmp_path):
    from neuroprune.export import export_nir
    from neuroprune.sim import simulate
    from neuroprune.sim.torch_reference import model_counts

    rng = np.random.default_rng(5)
    images = (rng.integers(0, 17, (30, *SHAPE)) / 16).astype(np.float32)
    qmodel, _ = _truenorth_model("lif", images)
    path = export_nir(
        qmodel,
        tmp_path / "a.nir",
        timesteps=T,
        encoding="direct",
        input_shape=SHAPE,
        chip="truenorth",
    )
    result = simulate(path, x=images, backend="reference", fixed_point=True, reference_model=qmodel)
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)
    counts = model_counts(qmodel, np.broadcast_to(images, (T, *images.shape)))
    for got, want in zip(counts, result.counts, strict=True):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------
# The mapping: type weights, duplication where the core's axons allow, the profile's rules


def _quantize(shape, seed=0):
    from neuroprune.chip.formats.base import get_quantizer
    from neuroprune.chip.formats.neuron import NeuronParams
    from neuroprune.chip.profiles import load_profile

    profile = load_profile("truenorth")
    rng = np.random.default_rng(seed)
    w = rng.normal(size=shape) * (rng.random(shape) < 0.6)
    return w, get_quantizer(profile.weights).quantize_layer(
        w, None, NeuronParams(), profile.weights
    )


@pytest.mark.parametrize(("inputs", "copies"), [(64, 4), (65, 2), (128, 2)])
def test_inputs_get_4_axons_only_where_the_core_holds_them(inputs, copies):
    w, lq = _quantize((30, inputs))
    used = int(np.count_nonzero(np.any(w != 0, axis=0)))
    assert lq.extra["axon_duplication"] == copies == (4 if used * 4 <= 256 else 2)
    tw = _type_weights(np.asarray(lq.grid.levels))
    assert np.abs(tw).max() <= 255 and tw.shape[1] == copies
    _crossbar(lq.weight_int, tw)  # every weight is a subset sum of its neuron's type weights
    distinct = max(len(set(row[row != 0].tolist())) for row in lq.weight_int)
    assert 4 < distinct <= 2**copies - 1 if copies == 4 else distinct <= 3


def test_four_axon_levels_keep_more_weights_than_ternary():
    from neuroprune.chip.formats.base import get_quantizer
    from neuroprune.chip.formats.neuron import NeuronParams
    from neuroprune.chip.profiles import load_profile

    profile = load_profile("truenorth")
    w, lq = _quantize((30, 60), seed=2)
    ternary = profile.weights.__class__(
        **{
            **profile.weights.__dict__,
            "params": {**profile.weights.params, "mapping": "ternary_duplicate"},
        }
    )
    old = get_quantizer(ternary).quantize_layer(w, None, NeuronParams(), ternary)
    error = np.abs(lq.weight_int * lq.scale - w).mean()
    old_error = np.abs(old.weight_int * old.scale - w).mean()
    assert np.count_nonzero(lq.weight_int) > np.count_nonzero(old.weight_int)
    assert error < old_error / 2


def test_profile_declares_the_truenorth_arithmetic():
    from neuroprune.chip.arithmetic import ARITHMETICS
    from neuroprune.chip.profiles import load_profile

    profile = load_profile("truenorth")
    assert profile.neuron.arithmetic == "truenorth"
    assert ARITHMETICS["truenorth"].spec.threshold == ">="


def test_the_fit_check_allows_the_subset_sums_of_duplicated_inputs():
    """A layer on 4 axons per input gives a neuron up to 15 distinct nonzero weights; the
    distinct-weights rule allows 2**copies - 1 of them, and still refuses more."""
    from dataclasses import replace

    from neuroprune.chip.profiles import load_profile
    from neuroprune.fit.rules import check_fit
    from neuroprune.models import summarize

    qmodel, layers = _truenorth_model("if")
    profile = load_profile("truenorth")
    summary = summarize(qmodel, SHAPE, timesteps=T)
    widest = max(layer.distinct_values_max or 0 for layer in summary.layers)
    assert widest > profile.weights.distinct_values_per_neuron  # the 4-axon layer has more
    found = [f for f in check_fit(summary, profile).violations if f.rule == "distinct_weights"]
    assert found == []
    two_copies = replace(
        summary,
        layers=tuple(
            replace(layer, neuron_params={**(layer.neuron_params or {}), "input_copies": 2})
            for layer in summary.layers
        ),
    )
    found = [f for f in check_fit(two_copies, profile).violations if f.rule == "distinct_weights"]
    assert found and all(f.limit == 4 for f in found)
