"""Chip-arithmetic neurons: the trained quantized model is the model the chip runs.

The Loihi arithmetic is checked against hand-computed steps; the chip-arithmetic torch model is
checked against the numpy emulation of the exported NIR file (per layer, every sample's counts
identical); tests/test_sim.py::test_chip_model_equals_lava_fixed_point checks it against Lava's
own bit-accurate fixed point, which shares no code with neuroprune (it lives there because
test_sim counts this checkout's Lava workers).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroprune.chip import arithmetic
from neuroprune.chip.profiles import load_profile
from neuroprune.export import export_nir
from neuroprune.models.neurons import CHIP_TYPES
from neuroprune.models.zoo import build_model
from neuroprune.quantize.chip import FLOAT_NOTE, use_chip_arithmetic
from neuroprune.quantize.model import ptq_model
from neuroprune.sim import simulate
from neuroprune.sim.torch_reference import model_counts

T = 6
SHAPE = (1, 8, 8)


def test_loihi_step_by_hand():
    # dv = 1024 keeps 3/4 of v: v = -100 * 3072 / 4096 = -75; -5 * 3072 / 4096 = -3.75 -> -3
    # (toward zero). u = a << 6 (du = 4095 clears u); vth = 2 -> fires when v > 128.
    neuron = arithmetic.LoihiNeuron(du=4095, dv=1024, vth=2)
    u = np.zeros(3, np.int64)
    v = np.array([-100, -5, 100], np.int64)
    a = np.array([0, 0, 1], np.int64)
    u, v, fired = neuron.step(u, v, a)
    assert u.tolist() == [0, 0, 64]
    assert v.tolist() == [-75, -3, 0]  # 75 + 64 = 139 > 128 fired and reset
    assert fired.tolist() == [False, False, True]
    tu, tv, tf = neuron.step(
        *(torch.as_tensor(z) for z in (np.zeros(3, np.int64), [-100, -5, 100], a))
    )
    assert tv.tolist() == [-75, -3, 0] and tf.tolist() == [False, False, True]


def test_tie_does_not_fire_and_states_saturate_and_wrap():
    neuron = arithmetic.LoihiNeuron(du=4095, dv=0, vth=1)
    _, v, fired = neuron.step(np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, np.int64))
    assert v.tolist() == [64] and not fired[0]  # v == vth << 6: strict rule, no spike
    assert arithmetic.wrap24(np.array([2**23 + 1, -(2**23), 5])).tolist() == [
        -(2**23) + 1,
        2**23,
        5,
    ]
    big = arithmetic.LoihiNeuron(du=4095, dv=0, vth=2**17)  # vth << 6 = 2**23: never fires
    _, v, _ = big.step(np.zeros(1, np.int64), np.array([2**23 - 10]), np.array([1]))
    assert v.tolist() == [2**23 - 1]  # clipped to the 24-bit range


# Every layer of every case spikes with the masks of seeds 0, 1, 2, 4 and 5 (not 3): the test
# asserts that (comparing silent layers would prove nothing).
MASK_SEED = 0


def _chip_model(model_kind, neuron, tau, images, hidden):
    profile = load_profile("loihi")
    model = build_model(model_kind, SHAPE, 10, neuron=neuron, tau=tau, hidden=hidden, seed=3)
    # Pruned-looking layers (about half zero), gain rising with depth. The masks come from their
    # own generator: drawn from torch's global one, they depended on the tests that ran before
    # in the same worker, and some draws left a layer silent.
    masks = torch.Generator().manual_seed(MASK_SEED)
    with torch.no_grad():
        synapses = [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
        for depth, m in enumerate(synapses, start=1):
            m.weight.mul_(8.0 * depth * (torch.rand(m.weight.shape, generator=masks) < 0.5))
    qmodel, layers = ptq_model(model.eval(), profile, SHAPE)
    layers, name, _ = use_chip_arithmetic(qmodel, layers, profile, analog_images=images)
    assert name == "loihi_fixed_pt"
    assert all(isinstance(layer.block.neuron, CHIP_TYPES) for layer in layers)
    return qmodel


def _images(kind: str, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(5)
    if kind == "digits":  # sklearn digits: 17 grey levels k/16
        return (rng.integers(0, 17, (n, *SHAPE)) / 16).astype(np.float32)
    return (rng.integers(0, 256, (n, *SHAPE)) / 255).astype(np.float32)  # MNIST-scaled x/255


@pytest.mark.parametrize(
    ("model_kind", "neuron", "tau", "pixels", "hidden"),
    [
        ("mlp", "lif", 2.0, "digits", (24,)),
        ("mlp", "lif", 3.3, "digits", (24,)),
        ("mlp", "lif", 2.0, "mnist", (24,)),
        ("mlp", "lif", 5.0, "mnist", (24, 16)),
        ("mlp", "if", None, "mnist", (24,)),
        ("conv", "lif", 2.7, "mnist", (4, 6)),
    ],
)
def test_chip_model_equals_the_fixed_point_emulation(
    tmp_path, model_kind, neuron, tau, pixels, hidden
):
    images = _images(pixels)
    qmodel = _chip_model(model_kind, neuron, tau or 2.0, images, hidden)
    path = export_nir(
        qmodel, tmp_path / "m.nir", timesteps=T, encoding="direct", input_shape=SHAPE, chip="loihi"
    )
    result = simulate(path, x=images, backend="reference", fixed_point=True, reference_model=qmodel)
    assert result.agreement_source == "reference_model"
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)
    assert all(count > 0 for count in result.spike_counts), result.spike_counts  # all active
    counts = model_counts(qmodel, np.broadcast_to(images, (T, *images.shape)))
    for got, want in zip(counts, result.counts, strict=True):
        np.testing.assert_array_equal(got, want)


def test_poisson_input_needs_no_shift(tmp_path):
    rng = np.random.default_rng(1)
    spikes = (rng.random((T, 30, *SHAPE)) < 0.3).astype(np.float32)
    qmodel = _chip_model("mlp", "lif", 2.5, None, (20,))
    path = export_nir(
        qmodel, tmp_path / "p.nir", timesteps=T, encoding="poisson", input_shape=SHAPE, chip="loihi"
    )
    result = simulate(path, x=spikes, backend="reference", fixed_point=True, reference_model=qmodel)
    assert result.spike_agreement == 1.0


def test_chip_without_declared_arithmetic_keeps_float_neurons():
    profile = load_profile("tianjic")
    model = build_model("mlp", SHAPE, 10, hidden=(8,), seed=0)
    qmodel, layers = ptq_model(model.eval(), profile, SHAPE)
    same, name, notes = use_chip_arithmetic(qmodel, layers, profile, analog_images=None)
    assert name is None and notes == [FLOAT_NOTE]
    assert not any(isinstance(m, CHIP_TYPES) for m in qmodel.modules())


def test_chip_model_trains_through_the_surrogate():
    qmodel = _chip_model("mlp", "lif", 2.0, _images("digits"), (16,))
    x = torch.as_tensor(np.broadcast_to(_images("digits", 8), (T, 8, *SHAPE)).copy())
    qmodel.train()
    out = qmodel(x)
    out.sum().backward()
    grads = [m.weight.grad for m in qmodel.modules() if isinstance(m, torch.nn.Linear)]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_chip_model_survives_save_and_load(tmp_path):
    from neuroprune.run.artifacts import load_model, save_model

    images = _images("mnist")
    qmodel = _chip_model("mlp", "lif", 3.3, images, (24,))
    save_model(tmp_path / "q.pt", qmodel, {})
    loaded, _ = load_model(tmp_path / "q.pt")
    assert isinstance(loaded[2], CHIP_TYPES) and loaded[2].chip == qmodel[2].chip
    assert loaded[1].weight.dtype == torch.float64  # the injected first layer, as the simulator
    x = np.broadcast_to(images, (T, *images.shape))
    for a, b in zip(model_counts(qmodel, x), model_counts(loaded, x), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_qat_decisions_never_look_at_the_test_split():
    """Scrambling the test labels changes the reported test accuracies, never the decision or
    the weights kept (validation split carved from the training data)."""
    import dataclasses

    from neuroprune.data.datasets import load_dataset
    from neuroprune.quantize.api import quantize_model
    from neuroprune.train.loop import default_config, train

    data = load_dataset("digits")
    data = dataclasses.replace(
        data,
        x_train=data.x_train[:300],
        y_train=data.y_train[:300],
        x_test=data.x_test[:100],
        y_test=data.y_test[:100],
    )
    scrambled = dataclasses.replace(data, y_test=np.roll(data.y_test, 1))
    config = default_config(timesteps=4, batch_size=64, seed=0)
    model = build_model("mlp", SHAPE, 10, hidden=(32,), seed=0)
    train(model, data, config.replace(epochs=3))
    runs = [
        quantize_model(model, load_profile("loihi"), d, config, finetune_epochs=2)
        for d in (data, scrambled)
    ]
    decided = ("kept", "reverted", "skipped")  # skipped: PTQ lost nothing on validation
    assert runs[0].qat == runs[1].qat and runs[0].qat["decision"] in decided
    assert runs[0].accuracy_ptq != runs[1].accuracy_ptq  # the test split did change
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert runs[0].arithmetic == "loihi_fixed_pt"


@pytest.mark.parametrize("comparison", [">=", ">"])
@pytest.mark.parametrize("most", [None, 1, 3])
@pytest.mark.parametrize("as_torch", [False, True])
def test_spike_count_fires_once_per_whole_threshold(comparison, most, as_torch):
    """``rules.spike_count`` + ``rules.reset`` (subtract) against spiking one threshold at a
    time while the comparison holds (the definition of several spikes per step), ties and
    negative potentials included, on numpy and torch alike."""
    rules = arithmetic.rules
    threshold = 7
    potentials = list(range(-20, 60))
    lib = torch.tensor if as_torch else np.array
    count = rules.spike_count(lib(potentials), threshold, comparison, most)
    after = rules.reset(lib(potentials), count, rules.SUBTRACT, threshold=threshold)
    for p, c, v in zip(potentials, count.tolist(), after.tolist(), strict=True):
        expected, left = 0, p
        while (left >= threshold if comparison == ">=" else left > threshold) and (
            most is None or expected < most
        ):
            expected, left = expected + 1, left - threshold
        assert (int(c), v) == (expected, left), (p, comparison, most)
