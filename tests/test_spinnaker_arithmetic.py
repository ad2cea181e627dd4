"""SpiNNaker's LIF (``spinnaker_lif``): the training neuron and the reference emulation against an
independent transcription of sPyNNaker's C code.

The transcription below is written from the C sources (SpiNNakerManchester/sPyNNaker
``neural_modelling/src/neuron/``: ``models/neuron_model_lif_impl.h``,
``implementations/neuron_impl_standard.h``, ``threshold_types/threshold_type_static.h``,
``synapse_types/synapse_types_delta_impl.h``, ``synapse_types/exp_synapse_utils.h``,
``decay.h``, ``synapse_row.h``) and GCC's ``accum * accum`` (libgcc ``fixed-bit.c``,
``FIXED_MULHELPER``: add ``1 << (FBITS - 1)``, shift right by ``FBITS``). It is scalar Python on
one neuron at a time and imports nothing from neuroprune.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroprune.chip.arithmetic.spinnaker import SpinnakerNeuron

# ------------------------------------------------------------------------------------------
# The transcription (C semantics on Python ints)


def c_int32(x: int) -> int:
    """What a 32-bit register holds after an operation that overflowed."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def c_accum_mul(x: int, y: int) -> int:
    """``accum * accum`` (s16.15): libgcc's FIXED_MULHELPER with DINT_C_TYPE = int64."""
    dz = x * y
    dz += 1 << 14
    dz >>= 15  # arithmetic shift of a signed int64
    return c_int32(dz)


def c_decay_s1615(x: int, decay: int) -> int:
    """decay.h: ``kbits((int_k_t) ((s * u) >> 32))`` with s = bitsk(x), u = bitsulr(decay)."""
    return c_int32((x * decay) >> 32)


def c_convert_weight_to_input(weight: int, left_shift: int) -> int:
    """synapse_row.h: ``(int_k_t) weight << left_shift`` reinterpreted as s16.15."""
    return c_int32(weight << left_shift)


def c_timestep(n: dict, exc_ring: int, inh_ring: int, left_shift: int, current_offset: int):
    """One timer tick of one neuron (n_steps_per_timestep = 1). ``n`` holds the neuron_t fields
    and the synapse state; returns whether it spiked."""
    # synapses.c transfers the ring buffers (neuron_transfer -> synapse_types_add_neuron_input)
    for key, ring in (("exc", exc_ring), ("inh", inh_ring)):
        if ring > 0:  # neuron_transfer skips empty buffers
            value = c_convert_weight_to_input(ring, left_shift)
            if n["exp"]:  # add_input_exp
                n[key] = c_int32(n[key] + c_decay_s1615(value, n["init"]))
            else:  # delta: input_buffer_..._value += input
                n[key] = c_int32(n[key] + value)
    # neuron_model_state_update
    if n["refract_timer"] <= 0:
        total_exc, total_inh = n["exc"], n["inh"]
        input_this_timestep = c_int32(
            c_int32(c_int32(total_exc - total_inh) + 0) + n["I_offset"] + current_offset
        )
        alpha = c_int32(c_accum_mul(input_this_timestep, n["R_membrane"]) + n["V_rest"])
        n["V_membrane"] = c_int32(
            alpha - c_accum_mul(n["exp_TC"], c_int32(alpha - n["V_membrane"]))
        )
    else:
        n["refract_timer"] -= 1
    # threshold_type_static: REAL_COMPARE(value, >=, threshold)
    spike = n["V_membrane"] >= n["threshold"]
    n["ties"] = n.get("ties", 0) + (n["V_membrane"] == n["threshold"])
    if spike:  # neuron_model_has_spiked
        n["V_membrane"] = n["V_reset"]
        n["refract_timer"] = n["T_refract"]
    # synapse_types_shape_input
    if n["exp"]:
        n["exc"] = c_decay_s1615(n["exc"], n["decay"])
        n["inh"] = c_decay_s1615(n["inh"], n["decay"])
    else:
        n["exc"] = n["inh"] = 0
    return spike


# ------------------------------------------------------------------------------------------


def _random_neurons(rng, count: int, exponential: bool):
    """Per-neuron parameters on coarse grids (ties at the threshold are common)."""
    one = 1 << 15
    params = []
    for _ in range(count):
        params.append(
            {
                "exp_TC": int(
                    rng.choice([0, one // 2, one // 4 * 3, int(rng.integers(0, one + 1))])
                ),
                "R_membrane": int(rng.choice([one, 2 * one, int(rng.integers(1, 4 * one))])),
                "threshold": int(rng.integers(1, 40)) << 12,
                "V_reset": int(rng.choice([0, -(3 << 12), int(rng.integers(-(1 << 16), 1 << 16))])),
                "V_rest": int(rng.choice([0, 1 << 12])),
                "T_refract": int(rng.integers(0, 3)),
                "I_offset": int(rng.choice([0, 1 << 12, -(1 << 11)])),
                "decay": int(rng.integers(0, 1 << 32)) if exponential else None,
                "init": int(rng.integers(0, 1 << 32)) if exponential else None,
            }
        )
    return params


def _run_transcription(params, exc, inh, shift, offsets):
    steps, count = exc.shape
    fired = np.zeros((steps, count), bool)
    final_v, ties = [], 0
    for i, p in enumerate(params):
        n = {
            **p,
            "V_membrane": 0,
            "refract_timer": 0,
            "exc": 0,
            "inh": 0,
            "exp": p["decay"] is not None,
        }
        for t in range(steps):
            fired[t, i] = c_timestep(n, int(exc[t, i]), int(inh[t, i]), shift, int(offsets[t, i]))
        final_v.append(n["V_membrane"])
        ties += n["ties"]
    return fired, final_v, ties


def _run_library(params, exc, inh, shift, offsets, as_torch: bool):
    """The implementation under test, vectorised over neurons, one neuron object per column."""
    steps, count = exc.shape
    fired = np.zeros((steps, count), bool)
    final_v = []
    for i, p in enumerate(params):
        neuron = SpinnakerNeuron(
            exp_tc=p["exp_TC"],
            r_membrane=p["R_membrane"],
            v_thresh=p["threshold"],
            v_reset=p["V_reset"],
            v_rest=p["V_rest"],
            t_refract=p["T_refract"],
            syn_decay=p["decay"],
            syn_init=p["init"],
        )

        def arr(x):
            return torch.tensor([x], dtype=torch.int64) if as_torch else np.array([x], np.int64)

        state = (arr(0), arr(0), arr(0), arr(0))
        for t in range(steps):
            in_e = arr(int(exc[t, i])) << shift
            in_i = arr(int(inh[t, i])) << shift
            state, f = neuron.step(state, in_e, in_i, arr(int(p["I_offset"] + offsets[t, i])))
            fired[t, i] = bool(f[0])
        final_v.append(int(state[0][0]))
    return fired, final_v


@pytest.mark.parametrize("exponential", [False, True])
@pytest.mark.parametrize("as_torch", [False, True])
def test_spinnaker_neuron_equals_the_c_transcription(exponential, as_torch):
    rng = np.random.default_rng(7 + exponential)
    steps, count, shift = 12, 40, 3
    params = _random_neurons(rng, count, exponential)
    exc = rng.integers(0, 1 << 13, (steps, count)) * (rng.random((steps, count)) < 0.6)
    inh = rng.integers(0, 1 << 12, (steps, count)) * (rng.random((steps, count)) < 0.4)
    offsets = rng.integers(-(1 << 10), 1 << 10, (steps, count)) * (rng.random((steps, count)) < 0.3)
    coarse = slice(count // 2, count)  # inputs on a grid of 2**12 (V_thresh's grid): ties
    exc[:, coarse] = rng.integers(0, 12, (steps, count - count // 2)) << 9
    inh[:, coarse] = rng.integers(0, 4, (steps, count - count // 2)) << 9
    exc[:, :4] = 0xFFFF  # the largest ring-buffer word
    offsets[:, coarse] = 0
    for p in params[coarse]:  # V stays on the 2**11 grid: exact R, no offsets, halving leak
        p.update(exp_TC=int(rng.choice([0, 1 << 14])), R_membrane=1 << 15, V_rest=0)
        p.update(I_offset=0, V_reset=0, threshold=int(rng.integers(1, 10)) << 12)
        if exponential:  # halving init and decay keep the grid too
            p.update(init=1 << 31, decay=1 << 31)
    want, want_v, ties = _run_transcription(params, exc, inh, shift, offsets)
    got, got_v = _run_library(params, exc, inh, shift, offsets, as_torch)
    np.testing.assert_array_equal(got, want)
    assert got_v == want_v
    assert want.any() and not want.all()
    assert ties > 0  # V == V_thresh happened: the >= rule was exercised


def test_a_tie_at_the_threshold_fires():
    """exp_TC = 0: V = alpha = I R exactly; I R == threshold fires (>=), one LSB less does not."""
    one = 1 << 15
    neuron = SpinnakerNeuron(exp_tc=0, r_membrane=one, v_thresh=5 << 15)
    zero = np.zeros(2, np.int64)
    state, fired = neuron.step((zero,) * 4, np.array([5 << 15, (5 << 15) - 1]), zero)
    assert fired.tolist() == [True, False]
    assert state[0].tolist() == [0, (5 << 15) - 1]
    n = {"V_membrane": 0, "refract_timer": 0, "exc": 0, "inh": 0, "exp": False, "exp_TC": 0}
    n.update(R_membrane=one, V_rest=0, threshold=5 << 15, V_reset=0, T_refract=0, I_offset=0)
    assert c_timestep(dict(n), 5, 0, 15, 0) is True
    assert c_timestep(dict(n), 0, 0, 15, (5 << 15) - 1) is False


# ------------------------------------------------------------------------------------------
# The trained quantized model (chip-arithmetic neurons) = the reference emulation = the
# transcription, on a network


T = 8
SHAPE = (1, 8, 8)


def _spinnaker_model(tau: float, images):
    from neuroprune.chip.profiles import load_profile
    from neuroprune.models.zoo import build_model
    from neuroprune.quantize.chip import use_chip_arithmetic
    from neuroprune.quantize.model import ptq_model

    profile = load_profile("spinnaker")
    model = build_model("mlp", SHAPE, 10, neuron="lif", tau=tau, hidden=(24,), seed=3)
    masks = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for depth, m in enumerate(
            (m for m in model.modules() if isinstance(m, torch.nn.Linear)), 1
        ):
            m.weight.mul_(6.0 * depth * (torch.rand(m.weight.shape, generator=masks) < 0.5))
    qmodel, layers = ptq_model(model.eval(), profile, SHAPE)
    layers, name, _ = use_chip_arithmetic(qmodel, layers, profile, analog_images=images)
    assert name == "spinnaker_lif"
    return qmodel, layers


def _transcribed_network(layers, spikes_in, tau: float, decay_input: bool):
    """The network on the transcription: each layer's ring buffers from the integer weights of
    the spikes of the step, the constants as the mapping documents them (exp_TC = round(2**15
    (1 - 1/tau)), R = 1 or tau, s = the largest shift <= 15 with 2**17 R << s and K << s below
    2**31, V_thresh = K << s)."""
    one = 1 << 15
    r = one if decay_input else int(round(one * tau))
    exp_tc = int(round(one * (1 - 1 / tau)))
    counts, pre = [], spikes_in  # [T, N, inputs] 0/1
    for layer in layers:
        w = layer.quant.weight_int.reshape(layer.quant.weight_int.shape[0], -1).astype(np.int64)
        k = int(layer.quant.threshold_int)
        shift = next(
            s for s in range(15, -1, -1) if (-(-r // one) << (17 + s)) < 2**31 and (k << s) < 2**31
        )
        steps, samples = pre.shape[:2]
        out = np.zeros((steps, samples, w.shape[0]), np.uint8)
        for j in range(samples):
            neurons = [
                {
                    "V_membrane": 0,
                    "refract_timer": 0,
                    "exc": 0,
                    "inh": 0,
                    "exp": False,
                    "exp_TC": exp_tc,
                    "R_membrane": r,
                    "V_rest": 0,
                    "threshold": k << shift,
                    "V_reset": 0,
                    "T_refract": 0,
                    "I_offset": 0,
                }
                for _ in range(w.shape[0])
            ]
            for t in range(steps):
                s_pre = pre[t, j].reshape(-1).astype(np.int64)
                exc = np.where(w > 0, w, 0) @ s_pre
                inh = np.where(w < 0, -w, 0) @ s_pre
                for i, n in enumerate(neurons):
                    out[t, j, i] = c_timestep(
                        n, min(int(exc[i]), 0xFFFF), min(int(inh[i]), 0xFFFF), shift, 0
                    )
        counts.append(out.sum(axis=0))
        pre = out
    return counts


@pytest.mark.parametrize("tau", [2.5, 4.0])
def test_spinnaker_model_equals_reference_and_transcription(tmp_path, tau):
    from neuroprune.export import export_nir
    from neuroprune.sim import simulate
    from neuroprune.sim.torch_reference import model_counts

    rng = np.random.default_rng(1)
    spikes = (rng.random((T, 24, *SHAPE)) < 0.3).astype(np.float32)
    qmodel, layers = _spinnaker_model(tau, None)
    path = export_nir(
        qmodel,
        tmp_path / "s.nir",
        timesteps=T,
        encoding="poisson",
        input_shape=SHAPE,
        chip="spinnaker",
    )
    result = simulate(path, x=spikes, backend="reference", fixed_point=True, reference_model=qmodel)
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)
    assert all(count > 0 for count in result.spike_counts), result.spike_counts
    model = model_counts(qmodel, spikes)
    transcribed = _transcribed_network(layers, spikes, tau, decay_input=True)
    for got, sim, want in zip(model, result.counts, transcribed, strict=True):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(sim, want)


def test_spinnaker_analog_first_layer_equals_the_reference(tmp_path):
    from neuroprune.export import export_nir
    from neuroprune.sim import simulate
    from neuroprune.sim.torch_reference import model_counts

    rng = np.random.default_rng(5)
    images = (rng.integers(0, 17, (30, *SHAPE)) / 16).astype(np.float32)
    qmodel, _ = _spinnaker_model(3.0, images)
    path = export_nir(
        qmodel,
        tmp_path / "a.nir",
        timesteps=T,
        encoding="direct",
        input_shape=SHAPE,
        chip="spinnaker",
    )
    result = simulate(path, x=images, backend="reference", fixed_point=True, reference_model=qmodel)
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)
    assert all(count > 0 for count in result.spike_counts), result.spike_counts
    counts = model_counts(qmodel, np.broadcast_to(images, (T, *images.shape)))
    for got, want in zip(counts, result.counts, strict=True):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------
# The profile states every rule with its source; the reader holds it to the registry


def _profile_with(tmp_path, edit):
    import yaml

    from neuroprune.chip.profiles import shipped_profile_paths

    raw = yaml.safe_load(shipped_profile_paths()["spinnaker"].read_text())
    edit(raw["neuron"]["arithmetic"])
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a["rules"].update(threshold={"value": ">", "source": "S46"}), "implements '>='"),
        (lambda a: a["rules"].pop("reset"), "rules.reset: missing"),
        (lambda a: a["rules"].update(colour={"value": 1, "source": "S46"}), "not a rule of"),
        (lambda a: a["rules"]["leak"].update(source="S99"), "cites 'S99'"),
        (lambda a: a.update(value="spinnaker_float"), "must be one of"),
    ],
)
def test_profile_rules_must_match_the_registry(tmp_path, edit, message):
    from neuroprune.chip.profiles import load_profile
    from neuroprune.core.errors import ProfileError

    assert load_profile("spinnaker").neuron.arithmetic == "spinnaker_lif"
    with pytest.raises(ProfileError, match=message):
        load_profile(_profile_with(tmp_path, edit))


def test_spinnaker_quantizer_keeps_ring_buffer_sums_within_16_bits():
    """Dense rows of large weights: the power-of-two scale grows until every neuron's summed
    excitatory and summed inhibitory integer weights fit one 16-bit word."""
    from neuroprune.chip.formats import get_quantizer
    from neuroprune.chip.profiles import load_profile

    profile = load_profile("spinnaker")
    quantizer = get_quantizer(profile.weights, profile.path)
    params = quantizer.read_params(profile.weights, profile.path)
    rng = np.random.default_rng(0)
    weight = rng.normal(0.0, 1.0, (16, 200))
    grid, _, notes = quantizer.choose_grid(weight, params)
    ints = np.clip(np.rint(weight / grid.scale), -0xFFFF, 0xFFFF)
    largest = max(
        np.where(ints > 0, ints, 0).sum(axis=1).max(),
        np.where(ints < 0, -ints, 0).sum(axis=1).max(),
    )
    assert 0xFFFF // 2 < largest <= 0xFFFF  # fits, and half the scale would not
    assert any("ring buffer" in note for note in notes)


def test_an_if_network_for_spinnaker_is_refused_before_training():
    from neuroprune.chip.profiles import load_profile
    from neuroprune.core.errors import UnsupportedError
    from neuroprune.models.zoo import build_model
    from neuroprune.pipeline.preflight import check_arithmetic_models

    if_model = build_model("mlp", SHAPE, 10, neuron="if", hidden=(8,), seed=0)
    lif_model = build_model("mlp", SHAPE, 10, neuron="lif", hidden=(8,), seed=0)
    with pytest.raises(UnsupportedError, match="no IF neuron.*--neuron lif"):
        check_arithmetic_models(if_model, load_profile("spinnaker"))
    check_arithmetic_models(lif_model, load_profile("spinnaker"))
    check_arithmetic_models(if_model, load_profile("loihi"))  # Loihi's arithmetic has IF
    check_arithmetic_models(if_model, load_profile("tianjic"))  # no arithmetic declared


def test_requantized_weights_keep_the_ring_buffer_bound():
    """Fine-tuned weights re-projected onto the frozen PTQ grid: where they outgrew a 16-bit
    receptor sum, the scale doubles again (other formats keep their grid)."""
    from neuroprune.chip.formats import get_quantizer
    from neuroprune.chip.profiles import load_profile

    profile = load_profile("spinnaker")
    quantizer = get_quantizer(profile.weights, profile.path)
    rng = np.random.default_rng(2)
    weight = rng.normal(0.0, 1.0, (8, 100))
    neuron = {"model": "LIF", "tau": 2.0, "decay_input": True, "v_threshold": 1.0}
    ptq = quantizer.quantize_layer(weight, None, neuron, profile.weights, where="t")
    grown = quantizer.quantize_layer(
        3.0 * weight, None, neuron, profile.weights, grid=ptq.grid, where="t"
    )
    same = quantizer.quantize_layer(
        0.5 * weight, None, neuron, profile.weights, grid=ptq.grid, where="t"
    )
    assert same.grid == ptq.grid and grown.grid.scale == 4 * ptq.grid.scale
    for lq in (ptq, grown, same):
        ints = lq.weight_int.reshape(8, -1)
        assert np.where(ints > 0, ints, 0).sum(axis=1).max() <= 0xFFFF
        assert np.where(ints < 0, -ints, 0).sum(axis=1).max() <= 0xFFFF


def test_exponential_synapse_words_spread_one_input_over_time():
    """IF_curr_exp's init = (tau/dt)(1 - e^(-dt/tau)) and decay = e^(-dt/tau) as u0.32 words:
    one input of value x injects x init/2**32 now and the total charge over time is about
    x (tau/dt)(1 - e^(-dt/tau)) / (1 - e^(-dt/tau)) = x tau/dt."""
    import math

    from neuroprune.chip.arithmetic.spinnaker import spinnaker_exp_synapse

    for tau in (2.0, 5.0, 10.0):
        decay, init = spinnaker_exp_synapse(tau)
        assert abs(decay / 2**32 - math.exp(-1 / tau)) < 2**-31
        assert abs(init / 2**32 - tau * (1 - math.exp(-1 / tau))) < 2**-14
        n = {"exc": 0, "inh": 0, "exp": True, "decay": decay, "init": init}
        n.update(V_membrane=0, refract_timer=0, exp_TC=0, R_membrane=0, V_rest=0)
        n.update(threshold=2**30, V_reset=0, T_refract=0, I_offset=0)
        total = 0
        for t in range(400):
            c_timestep(n, 1000 if t == 0 else 0, 0, 15, 0)
            total += n["exc"] / decay * 2**32 if decay else 0  # the value the neuron read
        assert abs(total / (1000 << 15) - tau) < 0.01 * tau
