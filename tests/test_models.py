"""Models: convention, user factories, encodings, summary, BN folding, training, checkpoints."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer

from neuroprune.core.errors import ArtifactError, ConfigError, ModelError
from neuroprune.data.dataset import Dataset
from neuroprune.models import encode, fold_batchnorm, make_generator, neurons, summarize
from neuroprune.models.walker import parse_blocks
from neuroprune.models.zoo import MODELS, build_model
from neuroprune.train.checkpoint import CheckpointCallback, load_checkpoint, save_checkpoint
from neuroprune.train.loop import (
    DEFAULTS,
    Callback,
    TrainConfig,
    default_config,
    evaluate,
    lr_at,
    predict,
    train,
)

torch.set_num_threads(1)

TINY = {"epochs": 1, "batch_size": 64, "timesteps": 4, "lr": 0.02}


@pytest.fixture(scope="module")
def small_digits(digits):
    """A 400/200 subset of digits so training tests stay well under a second per epoch."""
    return Dataset(
        "digits-small",
        digits.x_train[:400],
        digits.y_train[:400],
        digits.x_test[:200],
        digits.y_test[:200],
        10,
    )


def layer_types(model):
    return [type(m) for m in model]


# --------------------------------------------------------------------------------------------
# encodings


def test_torch_encodings():
    x = torch.rand(6, 1, 3, 3, generator=make_generator(0))
    direct = encode(x, 4, "direct")
    assert direct.shape == (4, 6, 1, 3, 3) and torch.equal(direct[2], x)
    a = encode(x, 300, "poisson", generator=make_generator(3))
    b = encode(x, 300, "poisson", generator=make_generator(3))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(a.mean(0), x, atol=0.12)


# --------------------------------------------------------------------------------------------
# built-in models and the convention


def test_mlp_follows_convention():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    assert layer_types(model) == [
        layer.Flatten,
        layer.Linear,
        neurons.LIFNode,
        layer.Linear,
        neurons.LIFNode,
    ]
    assert all(m.step_mode == "m" for m in model)
    assert model[1].bias is None and model[1].out_features == 128
    lif = model[2]
    assert (lif.tau, lif.v_threshold, lif.v_reset, lif.decay_input) == (2.0, 1.0, 0.0, True)
    assert lif.detach_reset
    out = model(torch.rand(3, 2, 1, 8, 8))
    assert out.shape == (3, 2, 10)
    blocks = parse_blocks(model, (1, 8, 8), 10)
    assert [(b.in_shape, b.out_shape) for b in blocks] == [((64,), (128,)), ((128,), (10,))]


def test_conv_uses_strided_conv_and_bn():
    model = build_model("conv", (1, 8, 8), 10, seed=0)
    types = layer_types(model)
    assert types.count(layer.Conv2d) == 2 and layer.MaxPool2d not in types
    assert [model[i].stride for i in (0, 3)] == [(1, 1), (2, 2)]
    blocks = parse_blocks(model, (1, 8, 8), 10)
    assert [b.out_shape for b in blocks] == [(8, 8, 8), (16, 4, 4), (10,)]
    assert all(b.batchnorm is not None for b in blocks[:2])
    assert model(torch.rand(2, 3, 1, 8, 8)).shape == (2, 3, 10)


def test_build_options_and_seed():
    model = build_model("mlp", (1, 8, 8), 10, neuron="if", hidden=(16, 12), seed=1)
    assert [type(m) for m in model[2::2]] == [neurons.IFNode] * 3
    same = build_model("mlp", (1, 8, 8), 10, neuron="if", hidden=(16, 12), seed=1)
    assert torch.equal(model[1].weight, same[1].weight)
    state = torch.random.get_rng_state()
    build_model("mlp", (1, 8, 8), 10, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"spec": "mpl"}, "model"), ({"neuron": "izh"}, "neuron"), ({"tau": 1.0}, "tau")],
)
def test_build_errors(kwargs, field):
    kwargs = {"spec": "mlp", **kwargs}
    with pytest.raises(ModelError) as err:
        build_model(kwargs.pop("spec"), (1, 8, 8), 10, **kwargs)
    assert err.value.field == field
    if field == "model":
        assert "'mlp'" in err.value.fix


def lif():
    return neurons.LIFNode(tau=2.0, v_reset=0.0, detach_reset=True)


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        ([layer.Flatten(), layer.Linear(64, 10), lif()], "bias=False"),
        ([layer.Flatten(), layer.Linear(64, 10, bias=False)], "no neuron"),
        ([layer.Flatten(), lif()], "neuron node without"),
        ([layer.Conv2d(1, 2, 3, bias=False), layer.MaxPool2d(2)], "max pooling is not supported"),
        ([layer.Flatten(), layer.Linear(64, 10, bias=False), layer.BatchNorm2d(10)], "follow"),
        ([layer.Linear(64, 10, bias=False), lif()], "Flatten"),
        ([layer.Flatten(), layer.Linear(64, 7, bias=False), lif()], "10 neurons"),
        (
            [layer.Flatten(), layer.Linear(64, 10, bias=False), neurons.LIFNode(v_reset=None)],
            "hard-reset",
        ),
    ],
)
def test_convention_violations(modules, message):
    model = torch.nn.Sequential(*modules)
    functional.set_step_mode(model, "m")
    with pytest.raises(ModelError, match=message):
        parse_blocks(model, (1, 8, 8), 10)


# --------------------------------------------------------------------------------------------
# user factories

GOOD = """
from spikingjelly.activation_based import layer, neuron
import torch

def make(input_shape, num_classes):
    c, h, w = input_shape
    return torch.nn.Sequential(
        layer.Flatten(), layer.Linear(c * h * w, 20, bias=False), neuron.IFNode(v_reset=0.0),
        layer.Linear(20, num_classes, bias=False), neuron.IFNode(v_reset=0.0),
    )

def biased(input_shape, num_classes):
    return torch.nn.Sequential(layer.Flatten(), layer.Linear(64, num_classes), neuron.IFNode())

def not_sequential(input_shape, num_classes):
    return layer.Linear(64, num_classes)

def broken(input_shape, num_classes):
    raise ValueError("boom")
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(textwrap.dedent(GOOD))
    return path


def test_user_factory(user_file):
    model = build_model(f"{user_file}:make", (1, 8, 8), 10, seed=0)
    assert model[0].step_mode == "m" and model(torch.rand(2, 1, 1, 8, 8)).shape == (2, 1, 10)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("nothere", "no factory function 'nothere'"),
        ("biased", "bias=False"),
        ("not_sequential", "not torch.nn.Sequential"),
        ("broken", "boom"),
    ],
)
def test_user_factory_errors(user_file, factory, message):
    with pytest.raises(ModelError, match=message) as err:
        build_model(f"{user_file}:{factory}", (1, 8, 8), 10)
    assert str(user_file) in err.value.one_line()


def test_user_file_errors(tmp_path):
    with pytest.raises(ModelError, match="not found") as err:
        build_model(f"{tmp_path}/missing.py:make", (1, 8, 8), 10)
    assert err.value.where.endswith("missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_xyz\n")
    with pytest.raises(ModelError, match="importing the model file failed"):
        build_model(f"{bad}:make", (1, 8, 8), 10)
    with pytest.raises(ModelError, match="PATH.py:FACTORY"):
        build_model(str(bad), (1, 8, 8), 10)


# --------------------------------------------------------------------------------------------
# summary and BN folding


def test_summarize_pruned_dense_layer():
    model = build_model("mlp", (1, 2, 2), 3, hidden=(2,), neuron="if", seed=0)
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]))
        model[3].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.5, 0.0]]))
    model[3].neuroprune_weight_bits = 4
    summary = summarize(model, (1, 2, 2), 8, name="tiny")
    first, second = summary.layers
    assert (first.name, first.kind, first.neurons, first.inputs) == ("1", "dense", 2, 4)
    assert first.synapses() == 2 and list(first.fan_in) == [2, 0]
    assert second.synapses() == 4 and second.max_fan_in == 2 and second.weight_bits == 4
    assert first.weight_bits is None and first.neuron_model == "IF"
    assert summary.synapses() == 6 and summary.neurons == 5 and summary.timesteps == 8


def test_summarize_conv_unrolled_and_bn_gamma_zero():
    model = torch.nn.Sequential(
        layer.Conv2d(1, 2, 3, padding=1, bias=False),
        layer.BatchNorm2d(2),
        lif(),
        layer.Flatten(),
        layer.Linear(32, 10, bias=False),
        lif(),
    )
    functional.set_step_mode(model, "m")
    with torch.no_grad():
        model[0].weight.fill_(0.5)
        model[1].weight.copy_(torch.tensor([1.0, 0.0]))  # channel 1 silenced by gamma = 0
    conv = summarize(model, (1, 4, 4), 4).layers[0]
    # 4x4 input, 3x3 kernel, pad 1: in-bounds taps per axis 2+3+3+2 = 10 -> 100 per channel.
    assert conv.kind == "conv" and conv.out_shape == (2, 4, 4)
    assert conv.synapses() == 100 and conv.dense_positions() == 200
    assert conv.synapses(conv_weight_sharing=True) == 9
    assert conv.neuron_params == {
        "tau": 2.0,
        "v_threshold": 1.0,
        "v_reset": 0.0,
        "decay_input": True,
    }


def test_fold_batchnorm_is_equivalent_in_eval():
    model = build_model("conv", (1, 8, 8), 10, seed=0)
    gen = make_generator(1)
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.2 + 0.8)
        model[7].weight.abs_().mul_(4.0)  # make every layer of the untrained net spike
    model.eval()
    model[0].neuroprune_weight_bits = 8
    folded = fold_batchnorm(model)
    assert layer.BatchNorm2d not in layer_types(folded) and folded[0].bias is not None
    assert folded[0].neuroprune_weight_bits == 8
    x = torch.rand(4, 16, 1, 8, 8, generator=gen) * 2
    with torch.no_grad():
        pre = model[1](model[0](x))
        assert torch.allclose(folded[0](x), pre, atol=1e-5)
        out, out_folded = model(x), folded(x)
    assert 0 < out.mean() < 1 and torch.equal(out, out_folded)
    assert summarize(folded, (1, 8, 8), 4).synapses() == summarize(model, (1, 8, 8), 4).synapses()


# --------------------------------------------------------------------------------------------
# training


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, model, optimizer, steps_per_epoch, epochs):
        self.events.append(("begin", steps_per_epoch, epochs))

    def regularize(self, loss):
        self.events.append("reg")
        return loss + 0.0

    def before_step(self):
        self.events.append("before")

    def after_step(self, iteration, lr):
        self.events.append(("after", iteration))

    def on_epoch_end(self, epoch, metrics):
        return {"sparsity": 0.5, "seen_epoch": epoch}


def test_training_improves_accuracy_and_calls_callbacks(digits):
    model = build_model("mlp", (1, 8, 8), 10, hidden=(64,), seed=0)
    before = evaluate(model, digits.x_test, digits.y_test, 4)
    recorder, events = Recorder(), []
    config = TrainConfig(epochs=2, batch_size=32, timesteps=4, lr=0.02)
    result = train(model, digits, config, callbacks=[recorder], progress=events.append)
    assert result.test_accuracy > max(0.8, before + 0.5)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[-1]["sparsity"] == 0.5 and result.history[-1]["seen_epoch"] == 2
    assert recorder.events[0] == ("begin", 45, 2)
    assert recorder.events[1:4] == ["reg", "before", ("after", 0)]
    assert recorder.events[-1] == ("after", 89)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "train_begin" and kinds.count("batch") == 90 and kinds.count("epoch") == 2


def test_training_is_deterministic(small_digits):
    config = TrainConfig(**{**TINY, "encoding": "poisson", "seed": 3})
    states = []
    for _ in range(2):
        model = build_model("conv", (1, 8, 8), 10, hidden=(4, 4), seed=3)
        train(model, small_digits, config)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_predict_ties_go_to_lowest_class():
    model = build_model("mlp", (1, 8, 8), 10, hidden=(4,), seed=0)
    with torch.no_grad():
        model[3].weight.zero_()  # no output spikes: all counts 0
    preds, counts = predict(model, np.random.rand(5, 1, 8, 8).astype(np.float32), 4)
    assert counts.shape == (5, 10) and counts.dtype == np.int64 and not counts.any()
    assert preds.tolist() == [0] * 5


def test_config_validation_and_defaults():
    with pytest.raises(ConfigError) as err:
        TrainConfig(optimizer="rmsprop")
    assert err.value.field == "optimizer"
    with pytest.raises(ConfigError):
        TrainConfig(epochs=0)
    assert default_config("conv").epochs == 10 and default_config("x.py:f") == TrainConfig()
    assert default_config("mlp", epochs=3).epochs == 3
    assert set(DEFAULTS) == set(MODELS)


def test_lr_schedules():
    cosine = TrainConfig(epochs=4, lr=1.0)
    assert [lr_at(cosine, e) for e in range(4)] == pytest.approx([1.0, 0.8536, 0.5, 0.1464], 1e-3)
    step = cosine.replace(lr_schedule="step")
    assert [lr_at(step, e) for e in range(4)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert lr_at(cosine.replace(lr_schedule="none"), 3) == 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable_is_a_clear_error(small_digits):
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    with pytest.raises(ModelError, match="CUDA is not available"):
        train(model, small_digits, TrainConfig(device="cuda"))


# --------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_round_trip_and_resume(tmp_path, small_digits):
    config = TrainConfig(**{**TINY, "epochs": 2})
    straight = build_model("mlp", (1, 8, 8), 10, hidden=(16,), seed=0)
    train(straight, small_digits, config)

    first = build_model("mlp", (1, 8, 8), 10, hidden=(16,), seed=0)
    first[1].neuroprune_weight_bits = 6
    ckpt_path = tmp_path / "run" / "dense.pt"
    saver = CheckpointCallback(ckpt_path, meta={"model": "mlp", "np": np.float32(1.5)})
    train(first, small_digits, config.replace(epochs=1), callbacks=[saver])

    ckpt = load_checkpoint(ckpt_path)
    assert ckpt.epoch == 1 and ckpt.meta["model"] == "mlp" and ckpt.meta["np"] == 1.5
    assert len(ckpt.meta["history"]) == 1
    resumed = ckpt.restore(build_model("mlp", (1, 8, 8), 10, hidden=(16,), seed=99))
    assert resumed[1].neuroprune_weight_bits == 6
    train(
        resumed, small_digits, config, start_epoch=ckpt.epoch, optimizer_state=ckpt.optimizer_state
    )
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key

    with pytest.raises(ArtifactError, match="does not match the model"):
        ckpt.restore(build_model("mlp", (1, 8, 8), 10, hidden=(8,), seed=0))


def test_corrupt_checkpoints(tmp_path):
    model = build_model("mlp", (1, 8, 8), 10, hidden=(8,), seed=0)
    path = save_checkpoint(tmp_path / "c.pt", model, None, 3, {"a": 1})
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="corrupt, truncated") as err:
        load_checkpoint(truncated)
    assert err.value.where == str(truncated) and err.value.fix
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": model.state_dict()}, foreign)
    with pytest.raises(ArtifactError, match="not a neuroprune checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(ArtifactError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    assert load_checkpoint(path).epoch == 3 and load_checkpoint(path).optimizer_state is None
