"""Quantization: property tests per format, contract tests over every shipped profile, the
quantized-model contract (docs/conventions.md §3), fine-tuning with the pruning mask kept,
profile errors, and the run-directory entry point."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from spikingjelly.activation_based import functional, layer, surrogate

from neuroprune.chip.formats.grid import Grid
from neuroprune.chip.profiles import list_profiles, load_profile, profiles_dir
from neuroprune.chip.schema import WeightFormat
from neuroprune.core.errors import EXIT_BAD_INPUT, ProfileError
from neuroprune.models import neurons
from neuroprune.quantize import QUANTIZERS, NeuronParams, get_quantizer, snap, validate_format
from neuroprune.quantize.model import ptq_model
from neuroprune.quantize.qat import project

torch.set_num_threads(1)

LOIHI_PARAMS = {
    "mantissa_bits": 8,
    "exponent_range": [-8, 7],
    "mixed_sign_drops_lsb": True,
    "threshold_mantissa_bits": 17,
    "threshold_shift": 6,
    "decay_bits": 12,
    "bias_mantissa_bits": 13,
    "bias_exponent_bits": 3,
    "state_bits": 24,
}
FORMATS = {
    "loihi": (8, LOIHI_PARAMS),
    "loihi2": (8, LOIHI_PARAMS),
    "truenorth": (1, {"axon_types": 4, "type_weight_bits": 9, "mapping": "ternary_duplicate"}),
    "spinnaker": (16, {"weight_bits": 16, "scale": "pow2_per_projection", "sign": "per_receptor"}),
    "int": (8, {"bits": 8}),
    "speck": (8, {"bits": 8}),
    "xylo": (8, {"bits": 8}),
    "int4": (4, {"bits": 4}),
    "dynapse": (1, {"shared_values_per_core": 4, "connection_bits": 1}),
    "dynapse_mask": (4, {"shared_values_per_core": 4, "connection_bits": 4}),
    "dynapse_cam": (
        1,
        {"shared_values_per_core": 4, "connection_bits": 1, "cam_slots_per_neuron": 64},
    ),
    "brainscales": (6, {"magnitude_bits": 6, "sign": "per_row"}),
}
"""Test formats: every registry entry at least once (name -> (bits, params))."""


def weight_format(name: str) -> WeightFormat:
    bits, params = FORMATS[name]
    registry_name = {"int4": "int", "dynapse_mask": "dynapse", "dynapse_cam": "dynapse"}.get(
        name, name
    )
    return WeightFormat(
        format=registry_name, bits=bits, bits_allowed=(bits,), sign="signed", params=dict(params)
    )


def test_every_registered_format_is_tested():
    tested = {weight_format(name).format for name in FORMATS}
    assert tested == set(QUANTIZERS)


# --------------------------------------------------------------------------------------------
# Property tests (every format)

magnitudes = st.floats(2.0**-20, 2.0, width=32)
weights_2d = arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 9)),
    elements=st.one_of(st.just(0.0), magnitudes, magnitudes.map(lambda x: -x)),
)
"""Weight matrices with exact zeros (pruned) and float32 values of normal magnitude."""


def nearest_level_distance(w: np.ndarray, grid: Grid) -> np.ndarray:
    """Distance of every weight to its nearest allowed level (in weight units); on a uniform
    grid, to its nearest nonzero level (a kept synapse never rounds to 0)."""
    if grid.levels is None:
        inside = np.clip(w, grid.int_min * grid.scale, grid.int_max * grid.scale)
        steps = np.rint(inside / grid.scale)
        steps[(steps == 0) & (w > 0)], steps[(steps == 0) & (w < 0)] = 1, -1
        return np.abs(w - inside) + np.abs(inside - steps * grid.scale)
    levels = grid.row_levels(w.shape[0]).astype(np.float64) * grid.scale
    dist = np.abs(w[:, :, None] - levels[:, None, :])
    if grid.keep_nonzero:  # a kept synapse's nearest nonzero level
        dist = np.where((levels[:, None, :] == 0) & (w[:, :, None] != 0), np.inf, dist)
    return dist.min(axis=2)


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=40, deadline=None)
@given(w=weights_2d)
def test_quantizer_properties(name, w):
    fmt = weight_format(name)
    quantizer = get_quantizer(fmt)
    lq = quantizer.quantize_layer(w, None, NeuronParams(), fmt)
    ints, grid = lq.weight_int, lq.grid
    assert ints.shape == w.shape and ints.dtype == np.int64
    assert ints.min() >= grid.int_min and ints.max() <= grid.int_max
    assert lq.int_bits >= max(abs(grid.int_min), grid.int_max).bit_length() + 1
    if grid.levels is not None:
        allowed = grid.row_levels(w.shape[0])
        assert all(set(ints[i]) <= set(allowed[i]) for i in range(w.shape[0]))
    assert np.all(ints[w == 0] == 0), "a pruned synapse was revived"
    assert np.count_nonzero(ints) <= np.count_nonzero(w), "synapse count rose"
    deq, _ = quantizer.dequantize(lq)
    assert np.array_equal(deq.astype(np.float32).astype(np.float64), deq), "not exact in float32"
    nonzero = w != 0
    err = np.abs(deq - w)[nonzero]
    assert np.all(err <= nearest_level_distance(w, grid)[nonzero] + 1e-12 * grid.scale)
    if grid.levels is None or grid.keep_nonzero:
        assert np.count_nonzero(ints) == np.count_nonzero(w), "a kept synapse rounded to 0"
    if grid.levels is None:
        tiny = nonzero & (np.abs(w) < grid.scale / 2)
        assert np.array_equal(ints[tiny], np.where(w[tiny] > 0, 1, -1))
        inside = nonzero & ~tiny & (np.abs(w) <= grid.int_max * grid.scale)
        assert np.all(np.abs(deq - w)[inside] <= grid.scale / 2 * (1 + 1e-12))
    again = quantizer.quantize_layer(deq, None, NeuronParams(), fmt, grid=grid)
    assert np.array_equal(again.weight_int, ints), "re-projection is not idempotent"
    refit = quantizer.refit_grid(w * 0.7, grid, quantizer.read_params(fmt, "test"))
    assert (refit.scale, refit.int_min, refit.int_max) == (grid.scale, grid.int_min, grid.int_max)
    assert refit.levels is None or np.all(np.abs(refit.levels) <= grid.int_max)
    assert lq.stats["nonzero_after"] <= lq.stats["nonzero_before"]


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=25, deadline=None)
@given(w=weights_2d)
def test_torch_projection_matches_numpy_snap(name, w):
    fmt = weight_format(name)
    grid = get_quantizer(fmt).quantize_layer(w, None, NeuronParams(), fmt).grid
    torch_values = project(torch.from_numpy(w), grid).numpy()
    assert np.array_equal(torch_values, snap(w, grid) * grid.scale)


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=25, deadline=None)
@given(
    v_threshold=st.floats(0.05, 5.0),
    bias=arrays(np.float64, 3, elements=st.floats(-1.0, 1.0, width=32)),
)
def test_threshold_and_bias_are_integers_in_weight_lsbs(name, v_threshold, bias):
    fmt = weight_format(name)
    w = np.array([[0.5, -0.25, 0.0], [0.125, 0.0, -1.0], [0.3, 0.2, 0.1]])
    lq = get_quantizer(fmt).quantize_layer(w, bias, NeuronParams(v_threshold=v_threshold), fmt)
    assert lq.threshold_int >= 1
    assert lq.v_threshold == lq.threshold_int * lq.scale
    low, high = lq.extra["bias_range"]
    assert lq.bias_int.min() >= low and lq.bias_int.max() <= high
    assert np.all(
        np.abs(lq.bias_int * lq.scale - bias)[np.abs(bias) <= high * lq.scale]
        <= lq.scale / 2 * (1 + 1e-12)
    )


# --------------------------------------------------------------------------------------------
# Format specifics


def test_loihi_mixed_sign_uses_seven_bit_magnitude_and_lava_mapping():
    fmt = weight_format("loihi")
    w = np.array([[1.0, -0.5, 0.0, 0.25], [0.003, -1.0, 0.5, 0.0]])
    lq = get_quantizer(fmt).quantize_layer(w, None, NeuronParams(tau=2.0), fmt)
    assert np.abs(lq.weight_int).max() <= 127
    assert lq.scale == 2.0**lq.weight_exp
    assert lq.quant_dict()["lava"] == {"weights_factor": 2, "weight_exp": -1, "num_weight_bits": 8}
    assert (lq.decay_v, lq.decay_u, lq.tau) == (2048, 4095, 2.0)
    assert lq.threshold_int * 2 <= 2**17 - 1


def test_loihi_inexact_tau_is_rounded_and_noted():
    fmt = weight_format("loihi")
    lq = get_quantizer(fmt).quantize_layer(np.eye(2), None, NeuronParams(tau=3.0), fmt)
    assert lq.decay_v == round(4096 / 3) == 1365
    assert lq.tau == 4096 / 1365
    assert any("not exact" in note for note in lq.notes)


def test_loihi_threshold_is_clipped_to_the_17_bit_mantissa():
    fmt = weight_format("loihi")
    w = np.array([[1e-4, -1e-4]])
    lq = get_quantizer(fmt).quantize_layer(w, None, NeuronParams(v_threshold=10.0), fmt)
    assert lq.threshold_int * lq.tau <= 2**17 - 1
    assert any("clipped" in note for note in lq.notes)


def test_if_neuron_has_no_decay_on_loihi():
    fmt = weight_format("loihi")
    neuron_if = NeuronParams(model="IF", tau=None)
    lq = get_quantizer(fmt).quantize_layer(np.eye(2), None, neuron_if, fmt)
    assert (lq.decay_v, lq.tau) == (0, None)


def test_truenorth_is_ternary_per_neuron_with_axon_duplication():
    fmt = weight_format("truenorth")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 20)) * (rng.random((8, 20)) > 0.5)
    lq = get_quantizer(fmt).quantize_layer(w, None, NeuronParams(), fmt)
    for row in lq.weight_int:
        assert len(set(np.abs(row[row != 0]))) <= 1
    assert np.abs(lq.weight_int).max() <= 255
    assert lq.quant_dict()["axon_duplication"] == 2
    assert any("axon_duplication=2" in note for note in lq.notes)


def test_dynapse_uses_at_most_the_shared_values_split_by_sign():
    fmt = weight_format("dynapse")
    rng = np.random.default_rng(1)
    w = rng.normal(size=(10, 30))
    lq = get_quantizer(fmt).quantize_layer(w, None, NeuronParams(), fmt)
    values = set(lq.weight_int[lq.weight_int != 0])
    assert len(values) <= 4
    assert len([v for v in values if v > 0]) <= 2 and len([v for v in values if v < 0]) <= 2


def test_brainscales_reports_row_duplication_for_mixed_sign_inputs():
    fmt = weight_format("brainscales")
    quantizer = get_quantizer(fmt)
    mixed = quantizer.quantize_layer(np.array([[1.0], [-1.0]]), None, NeuronParams(), fmt)
    one_sign = quantizer.quantize_layer(np.array([[1.0, -1.0]]), None, NeuronParams(), fmt)
    assert mixed.extra["row_duplication"] == 2 and one_sign.extra["row_duplication"] == 1


# --------------------------------------------------------------------------------------------
# Profile errors


def test_missing_loihi_parameter_names_the_field_and_file():
    params = {k: v for k, v in LOIHI_PARAMS.items() if k != "mantissa_bits"}
    fmt = WeightFormat("loihi", 8, (8,), "sign_mode", params=params)
    with pytest.raises(ProfileError) as info:
        validate_format(fmt, where="chips/my_loihi.yaml")
    err = info.value
    assert err.field == "weights.params.mantissa_bits" and err.where == "chips/my_loihi.yaml"
    assert err.exit_code == EXIT_BAD_INPUT and err.fix


@pytest.mark.parametrize(
    ("fmt_name", "params", "field"),
    [
        ("int", {"bits": 0}, "weights.params.bits"),
        (
            "spinnaker",
            {"weight_bits": 16, "scale": "float", "sign": "per_receptor"},
            "weights.params.scale",
        ),
        (
            "truenorth",
            {"axon_types": 4, "type_weight_bits": 9, "mapping": "binary"},
            "weights.params.mapping",
        ),
        (
            "dynapse",
            {"shared_values_per_core": 2, "connection_bits": 4},
            "weights.params.connection_bits",
        ),
        ("loihi", {**LOIHI_PARAMS, "exponent_range": [7, -8]}, "weights.params.exponent_range"),
        ("nope", {}, "weights.format"),
    ],
)
def test_inconsistent_formats_raise_profile_error(fmt_name, params, field):
    fmt = WeightFormat(fmt_name, 8, (8,), "signed", params=params)
    with pytest.raises(ProfileError) as info:
        validate_format(fmt, where="x.yaml")
    assert info.value.field == field


def test_profile_with_zero_weight_bits_is_rejected_at_load(tmp_path):
    shipped = sorted(profiles_dir().glob("*.yaml"))
    assert shipped, "no shipped profiles found"
    raw = yaml.safe_load(shipped[0].read_text())
    raw["weights"]["bits"] = 0
    bad = tmp_path / "zero_bits.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "weights.bits" in str(info.value) and str(bad) in str(info.value)


# --------------------------------------------------------------------------------------------
# Contract over every shipped profile (docs/conventions.md §3)


def tiny_pruned_model(conv: bool, seed: int = 0) -> torch.nn.Sequential:
    """A 1x8x8 -> 10 convention model with about half its weights pruned to exact zeros."""
    torch.manual_seed(seed)

    def lif():
        return neurons.LIFNode(
            tau=2.0,
            v_threshold=1.0,
            v_reset=0.0,
            detach_reset=True,
            surrogate_function=surrogate.ATan(),
        )

    if conv:
        bn = layer.BatchNorm2d(4)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        modules = [
            layer.Conv2d(1, 4, 3, stride=2, padding=1, bias=False),
            bn,
            lif(),
            layer.Flatten(),
            layer.Linear(64, 10, bias=False),
            lif(),
        ]
    else:
        modules = [
            layer.Flatten(),
            layer.Linear(64, 16, bias=False),
            lif(),
            layer.Linear(16, 10, bias=False),
            neurons.IFNode(v_reset=0.0),
        ]
    model = torch.nn.Sequential(*modules)
    functional.set_step_mode(model, "m")
    with torch.no_grad():
        for m in model:
            if isinstance(m, (layer.Linear, layer.Conv2d)):
                m.weight.mul_(torch.rand_like(m.weight) > 0.5)
    return model.eval()


SHIPPED = list_profiles()


@pytest.mark.skipif(not SHIPPED, reason="no shipped profiles yet")
@pytest.mark.parametrize("profile", SHIPPED, ids=[p.id for p in SHIPPED])
@pytest.mark.parametrize("conv", [False, True], ids=["mlp", "conv"])
def test_shipped_profiles_quantize_a_pruned_model(profile, conv):
    model = tiny_pruned_model(conv)
    before = copy.deepcopy(model.state_dict())
    qmodel, layers = ptq_model(model, profile, (1, 8, 8))
    assert qmodel is not model
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), "the input model was changed"
    for q in layers:
        syn, node, params = q.block.synapse, q.block.neuron, q.block.synapse.neuroprune_quant
        assert syn.weight_int.dtype == torch.int32 and syn.weight_int.shape == syn.weight.shape
        scale = params["weight_scale"]
        assert torch.equal(syn.weight.double(), syn.weight_int.double() * scale)
        if syn.bias is not None:
            assert torch.equal(syn.bias.double(), syn.bias_int.double() * scale)
        assert float(node.v_threshold) == params["threshold_int"] * scale
        assert params["int_min"] <= int(syn.weight_int.min()) <= int(syn.weight_int.max())
        assert int(syn.weight_int.max()) <= params["int_max"]
        assert max(abs(params["int_min"]), params["int_max"]) < 2 ** (params["int_bits"] - 1)
        assert syn.neuroprune_weight_bits == params["bits"] == profile.weights.bits
        assert params["format"] == profile.weights.format
        float_zero = torch.from_numpy(q.float_weight == 0)
        assert not syn.weight_int[float_zero].any(), "a pruned synapse was revived"
        assert params["nonzero_after"] <= params["nonzero_before"]
        if params["weight_exp"] is not None:
            assert scale == math.ldexp(1.0, params["weight_exp"])
        if profile.weights.format == "truenorth":
            assert params["axon_duplication"] in (2, 4)
        yaml.safe_dump(params)  # JSON/YAML-serialisable plain values
    stages = pytest.importorskip("neuroprune.export.stages")
    stages.model_stages(qmodel, (1, 8, 8))  # the exporter accepts the contract


@pytest.mark.skipif(not SHIPPED, reason="no shipped profiles yet")
def test_quantized_model_is_counted_by_summarize():
    from neuroprune.models import summarize

    profile = next(p for p in SHIPPED if p.weights.format == "loihi")
    qmodel, _ = ptq_model(tiny_pruned_model(conv=True), profile, (1, 8, 8))
    summary = summarize(qmodel, (1, 8, 8), timesteps=4)
    assert all(layer.weight_bits == profile.weights.bits for layer in summary.layers)


# --------------------------------------------------------------------------------------------
# End to end: PTQ + quantization-aware fine-tuning


def small_digits(train: int = 240, test: int = 120):
    from neuroprune.data.dataset import Dataset
    from neuroprune.data.datasets import load_dataset

    full = load_dataset("digits")
    return Dataset(
        "digits-small",
        full.x_train[:train],
        full.y_train[:train],
        full.x_test[:test],
        full.y_test[:test],
        full.num_classes,
    )


@pytest.fixture
def always_fine_tune(monkeypatch):
    """Fine-tune even when post-training quantization lost nothing on validation (the
    skip of :func:`neuroprune.quantize.api.ptq_lost_nothing`): these tests check the
    fine-tuning path itself."""
    from neuroprune.quantize import api

    monkeypatch.setattr(api, "ptq_lost_nothing", lambda val_float, val_ptq: False)


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped profiles yet")
@pytest.mark.parametrize("fmt", ["loihi", "truenorth", "dynapse"])
def test_quantize_model_finetunes_and_keeps_the_mask(fmt, always_fine_tune):
    from neuroprune.quantize import quantize_model
    from neuroprune.train.loop import TrainConfig

    profile = next(p for p in SHIPPED if p.weights.format == fmt)
    model = tiny_pruned_model(conv=False)
    events = []
    result = quantize_model(
        model,
        profile,
        small_digits(),
        TrainConfig(epochs=1, timesteps=4),
        finetune_epochs=1,
        progress=events.append,
    )
    assert result.model is not model and result.format == fmt and result.chip == profile.id
    for acc in (result.accuracy_float, result.accuracy_ptq, result.accuracy_qat):
        assert 0.0 <= acc <= 1.0
    pruned = [m for m in model if isinstance(m, layer.Linear)]
    quantized = [m for m in result.model if isinstance(m, layer.Linear)]
    for row, old, new in zip(result.layers, pruned, quantized, strict=True):
        assert not new.weight_int[old.weight == 0].any(), "fine-tuning revived a synapse"
        assert row["nonzero_after"] <= row["ptq"]["nonzero_after"] <= row["nonzero_before"]
        scale = new.neuroprune_quant["weight_scale"]
        assert torch.equal(new.weight.double(), new.weight_int.double() * scale)
    kinds = {e.get("event") for e in events}
    assert {"quantize_layer", "ptq", "epoch"} <= kinds
    assert set(result.as_dict()) >= {"accuracy_float", "accuracy_ptq", "accuracy_qat", "layers"}


def test_importing_the_package_does_not_import_torch():
    code = "import sys, neuroprune.quantize; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root)},
        check=True,
    )
    assert out.stdout.strip() == "False"
