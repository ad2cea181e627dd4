"""The detector on a chip: pruned by sca+stds to exactly half its synapses, quantized for Loihi, exported as NIR and ONNX, and
run by the spec simulator (bit-exact against the quantized torch model) and by Lava."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional

from neuroprune.chip.profiles import load_profile
from neuroprune.data.spikecam import SpikecamOptions, make_spikecam_digits
from neuroprune.export.nir_export import export_nir
from neuroprune.export.onnx_export import export_onnx, run_onnx
from neuroprune.models.detector import build_detector
from neuroprune.pipeline.detect import prune_detector_sca_stds, shared_synapses
from neuroprune.quantize.model import ptq_model
from neuroprune.sim.api import simulate
from neuroprune.train.detect import DetectTrainConfig, parameter_count, train_detector

TINY = SpikecamOptions(train_scenes=16, test_scenes=4, canvas=16, timesteps=4, max_digits=2)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A trained detector pruned to half its synapses, quantized for Loihi, as NIR."""
    data = make_spikecam_digits(TINY)
    # IF neurons at threshold 0.5: every layer spikes after a few steps (checked below)
    model = build_detector(
        data.input_shape, 10, stages=((6, 1), (6, 1)), neuron="if", v_threshold=0.5
    )
    config = DetectTrainConfig(epochs=3, batch_size=2, lr=1e-2)
    train_detector(model, data, config)
    dense = shared_synapses(model, data.input_shape)
    pruned = prune_detector_sca_stds(
        model, data, config, params_fraction=0.5, epochs=2, finetune_epochs=1
    )
    pruned.eval()
    profile = load_profile("loihi")
    quantized, _ = ptq_model(pruned, profile, data.input_shape)
    nir_path = export_nir(
        quantized,
        tmp_path_factory.mktemp("nir") / "model.nir",
        timesteps=data.timesteps,
        encoding="events",
        input_shape=data.input_shape,
        chip="loihi",
    )
    x = np.asarray(data.x_test).transpose(1, 0, 2, 3, 4).astype(np.float32)  # [T, N, C, H, W]
    return data, dense, pruned, quantized, profile, nir_path, x


def test_sca_stds_meets_the_budget_exactly(deployed):
    data, dense, pruned, *_ = deployed
    assert shared_synapses(pruned, data.input_shape) == dense // 2
    quantized = deployed[3]
    kept = sum(
        int(m.weight_int.count_nonzero()) for m in quantized.modules() if hasattr(m, "weight_int")
    )
    assert kept <= parameter_count(pruned)  # quantization adds no synapse


def test_quantized_weights_are_integers_on_the_loihi_grid(deployed):
    quantized = deployed[3]
    for module in quantized.modules():
        if isinstance(module, torch.nn.Conv2d):
            scale = module.neuroprune_quant["weight_scale"]
            assert torch.equal(module.weight.double(), module.weight_int.double() * scale)
            assert module.weight_int.abs().max() <= 255  # Loihi: 8-bit signed magnitudes


def test_nir_graph_runs_bit_exact_in_the_spec_simulator(deployed):
    _, _, _, quantized, profile, nir_path, x = deployed
    result = simulate(
        nir_path, x=x, profile=profile, backend="reference", fixed_point=True,
        reference_model=quantized,
    )  # fmt: skip
    assert result.spike_agreement == 1.0 and set(result.layer_agreement) == {1.0}
    spikes_per_layer = [int(np.sum(c)) for c in result.counts]
    assert all(n > 0 for n in spikes_per_layer), spikes_per_layer  # no silent layer compared


def test_onnx_export_emits_the_same_head_spikes(deployed, tmp_path):
    data, _, pruned, *_, x = deployed
    path = export_onnx(pruned, tmp_path / "model.onnx", timesteps=data.timesteps,
                       input_shape=data.input_shape)  # fmt: skip
    functional.reset_net(pruned)
    with torch.no_grad():
        expected = pruned(torch.as_tensor(x)).numpy()
    functional.reset_net(pruned)
    assert np.array_equal(run_onnx(path, x), expected)


@pytest.mark.lava
@pytest.mark.slow
def test_lava_agrees_with_the_spec_simulator_on_every_spike(deployed):
    _, _, _, _, profile, nir_path, x = deployed
    result = simulate(
        nir_path, x=x, profile=profile, backend="lava", fixed_point=True,
        expected_counts="reference",
    )  # fmt: skip
    assert result.spike_agreement == 1.0 and set(result.layer_agreement) == {1.0}
