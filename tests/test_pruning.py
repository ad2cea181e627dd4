"""Pruning methods: contract over the registry, reparameterisations, schedules, LATS, Grad R."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import layer
from torch.nn.utils import parametrize

from neuroprune.core.errors import ConfigError
from neuroprune.data.datasets import load_dataset
from neuroprune.fit.budget import Budget, derive_budget, fan_in_capacity
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.prune_loop import prune_config, prune_to_budget
from neuroprune.pruning import METHODS, SCHEDULERS, freeze_mask
from neuroprune.pruning.gradr import prior_centre, prior_step
from neuroprune.pruning.registry import method_class, split_method_spec
from neuroprune.pruning.reparam import signed_relu, soft_threshold
from neuroprune.pruning.schedulers import get_scheduler, gmp_sparsity, pgh
from neuroprune.pruning.selection import KnobControl
from neuroprune.pruning.soft_threshold import layer_thresholds
from neuroprune.pruning.targets import find_targets
from neuroprune.train.loop import TrainConfig, lr_at, train

torch.set_num_threads(1)
T = 2
CAP = 12
CONFIG = TrainConfig(epochs=1, batch_size=64, timesteps=T, lr=3e-3)


@pytest.fixture(scope="module")
def data():
    full = load_dataset("digits")
    return dataclasses.replace(
        full,
        x_train=full.x_train[:192],
        y_train=full.y_train[:192],
        x_test=full.x_test[:64],
        y_test=full.y_test[:64],
    )


def tiny_model(kind: str, data, seed: int = 0):
    hidden = (16,) if kind == "mlp" else (2, 4)
    return build_model(kind, data.input_shape, data.num_classes, hidden=hidden, seed=seed)


def tiny_budget(model, data, *, sparsity=0.8, cap=None, sharing=False) -> Budget:
    summary = summarize(model, data.input_shape, T)
    budget = derive_budget(None, summary, sparsity=sparsity)
    if cap is not None:
        room = fan_in_capacity(summary, cap, conv_weight_sharing=False)
        budget = dataclasses.replace(budget, synapses=min(budget.synapses, room))
    if sharing:
        dense = summary.dense_positions(True)
        budget = dataclasses.replace(
            budget,
            conv_weight_sharing=True,
            dense_synapses=dense,
            synapses=math.floor((1 - sparsity) * dense),
        )
    return dataclasses.replace(budget, fan_in_cap=cap)


def no_parametrizations_or_hooks(model) -> bool:
    for module in model.modules():
        if parametrize.is_parametrized(module):
            return False
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            if type(module) not in (layer.Linear, layer.Conv2d):
                return False
            if module.weight._backward_hooks:
                return False
    return True


# --------------------------------------------------------------------------------------------
# Contract over every registered method


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name, kind, data):
    structured = getattr(METHODS[name], "structured", False)
    model = tiny_model(kind, data)
    # channel removal cannot lower the fan-in that the input image or the readout imposes, so
    # structured methods get no fan-in cap here (tests/test_sca.py covers their budgets)
    budget = (
        tiny_budget(model, data, sparsity=0.5) if structured else tiny_budget(model, data, cap=CAP)
    )
    events = []
    result = prune_to_budget(
        model,
        data,
        CONFIG,
        method=name,
        budget=budget,
        epochs=2,
        finetune_epochs=1,
        progress=events.append,
    )
    summary = summarize(result.model, data.input_shape, T)
    assert result.synapses == summary.synapses() <= budget.synapses
    if structured:  # whole channels removed: at most B (sca+stds fills B, see test_sca.py)
        assert summary.neurons < summarize(tiny_model(kind, data), data.input_shape, T).neurons
    else:
        assert result.synapses >= 0.99 * budget.synapses
        assert summary.max_fan_in <= CAP and result.max_fan_in <= CAP
    assert all(row["synapses"] >= budget.per_layer_min[row["layer"]] for row in result.per_layer)
    weights = [m.weight for m in result.model.modules() if isinstance(m, torch.nn.Linear)]
    assert structured or any(bool((w == 0).any()) for w in weights)
    assert no_parametrizations_or_hooks(result.model)
    assert [row["stage"] for row in result.history] == ["prune", "prune", "finetune"]
    assert {"sparsity", "nonzero", "knob", "test_accuracy"} <= set(result.history[-1])
    assert result.history[-1]["nonzero"] == sum(result.projected_counts.values())
    assert {"prune_begin", "projected", "prune_end", "epoch"} <= {e["event"] for e in events}
    assert 0.0 <= result.accuracy <= 1.0


def test_conv_counts_agree_with_summarize_under_weight_sharing(data):
    model = tiny_model("conv", data)
    budget = tiny_budget(model, data, sharing=True)
    result = prune_to_budget(
        model, data, CONFIG, method="magnitude", budget=budget, epochs=1, finetune_epochs=0
    )
    assert result.synapses == summarize(result.model, data.input_shape, T).synapses(True)
    assert budget.synapses * 0.99 <= result.synapses <= budget.synapses


def test_method_counts_match_summarize_for_unrolled_conv(data):
    model = tiny_model("conv", data)
    budget = tiny_budget(model, data, sparsity=0.7)
    method = METHODS["magnitude"](budget, input_shape=data.input_shape)
    method.attach(model)
    counted = sum(method.counts().values())
    plain = method.finalize(model)
    assert counted == summarize(plain, data.input_shape, T).synapses() <= budget.synapses


def test_tap_costs_sum_to_the_dense_unrolled_positions(data):
    model = tiny_model("conv", data)
    targets = find_targets(model, data.input_shape, conv_weight_sharing=False)
    summary = summarize(model, data.input_shape, T)
    assert [t.dense for t in targets] == [layer.dense_positions() for layer in summary.layers]


def test_freeze_mask_keeps_zeros_through_training(data):
    model = tiny_model("mlp", data)
    with torch.no_grad():
        model[1].weight[:, ::2] = 0.0
    zeros = model[1].weight == 0
    freezer = freeze_mask(model)
    train(model, data, CONFIG.replace(weight_decay=1e-2), callbacks=[freezer])
    freezer.release()
    assert bool((model[1].weight[zeros] == 0).all())
    assert not model[1].weight._backward_hooks


def test_gmp_reaches_b_before_the_projection(data):
    model = tiny_model("mlp", data)
    budget = tiny_budget(model, data, sparsity=0.9)
    result = prune_to_budget(
        model, data, CONFIG, method="gmp", budget=budget, epochs=2, finetune_epochs=0
    )
    assert result.history[-1]["nonzero"] == budget.synapses


# --------------------------------------------------------------------------------------------
# Reparameterisations


def test_soft_threshold_forward_and_straight_through_backward():
    theta = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], requires_grad=True)
    w = soft_threshold(theta, 0.4)
    assert torch.allclose(w, torch.tensor([-1.6, -0.1, 0.0, 0.0, 1.1]))
    w.backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert theta.grad.tolist() == [1.0, 2.0, 0.0, 4.0, 5.0]


def test_signed_relu_passes_the_rewiring_gradient_to_pruned_connections():
    theta = torch.tensor([0.5, -0.2, 0.3], requires_grad=True)
    sign = torch.tensor([1.0, -1.0, -1.0])
    w = signed_relu(theta, sign)
    assert w.tolist() == pytest.approx([0.5, 0.0, -0.3])
    w.backward(torch.tensor([2.0, 3.0, 4.0]))
    assert theta.grad.tolist() == [2.0, -3.0, -4.0]


def test_attaching_keeps_the_weights(data):
    for name in ("stds", "lats", "gradr", "gmp"):
        model = tiny_model("mlp", data)
        before = model[1].weight.detach().clone()
        METHODS[name](tiny_budget(model, data), input_shape=data.input_shape).attach(model)
        assert torch.allclose(model[1].weight, before)


# --------------------------------------------------------------------------------------------
# Schedulers


@settings(max_examples=50, deadline=None)
@given(a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_every_scheduler_is_monotone_from_0_to_1(a, b):
    a, b = sorted((a, b))
    for name, f in SCHEDULERS.items():
        assert f(0.0) == pytest.approx(0.0, abs=1e-12), name
        assert f(1.0) == pytest.approx(1.0, abs=1e-12), name
        assert f(a) <= f(b) + 1e-12, name


@settings(max_examples=50, deadline=None)
@given(beta=st.floats(0.5, 200.0), a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_pgh_is_monotone_for_any_beta(beta, a, b):
    a, b = sorted((a, b))
    assert pgh(0.0, beta) == pytest.approx(0.0, abs=1e-9)
    assert pgh(1.0, beta) == pytest.approx(1.0, abs=1e-9)
    assert pgh(a, beta) <= pgh(b, beta) + 1e-9


def test_scheduler_shapes():
    assert get_scheduler("sine")(0.5) == pytest.approx(0.5)
    assert get_scheduler("sinp")(0.5) == pytest.approx(0.5 + 1 / math.pi)
    assert gmp_sparsity(0, t0=0, span=10, initial=0.0, final=0.9) == 0.0
    assert gmp_sparsity(5, t0=0, span=10, initial=0.0, final=0.9) == pytest.approx(0.9 * 7 / 8)
    assert gmp_sparsity(12, t0=0, span=10, initial=0.0, final=0.9) == pytest.approx(0.9)


# --------------------------------------------------------------------------------------------
# LATS follows the learning rate actually used


def drive(method, model, lrs, steps_per_epoch, epochs, steps):
    method.on_train_begin(model, None, steps_per_epoch, epochs)
    for k in range(steps):
        method.before_step()
        method.after_step(k, lrs[k])


@settings(max_examples=10, deadline=None)
@given(lrs=st.lists(st.floats(1e-5, 1e-1), min_size=8, max_size=8), steps=st.integers(0, 8))
def test_lats_threshold_is_d_times_the_lr_fraction(lrs, steps):
    data = load_dataset("digits")
    model = tiny_model("mlp", data)
    budget = tiny_budget(model, data)
    method = METHODS["lats"](
        budget,
        input_shape=data.input_shape,
        lr_schedule=lambda k: lrs[k],
        control=KnobControl(freeze_after=0.0),
    )
    method.attach(model)
    drive(method, model, lrs, steps_per_epoch=4, epochs=2, steps=steps)
    expected = method.knob * sum(lrs[:steps]) / sum(lrs)
    for value in layer_thresholds(method).values():
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_lats_estimates_the_total_online_for_a_constant_lr(data):
    model = tiny_model("mlp", data)
    method = METHODS["lats"](
        tiny_budget(model, data),
        input_shape=data.input_shape,
        control=KnobControl(freeze_after=0.0),
    )
    method.attach(model)
    drive(method, model, [0.01] * 10, steps_per_epoch=5, epochs=2, steps=4)
    assert method.threshold == pytest.approx(method.knob * 0.4)


def test_stds_threshold_follows_its_schedule(data):
    model = tiny_model("mlp", data)
    method = METHODS["stds"](
        tiny_budget(model, data),
        input_shape=data.input_shape,
        scheduler="linear",
        control=KnobControl(freeze_after=0.0),
    )
    method.attach(model)
    drive(method, model, [0.01] * 10, steps_per_epoch=5, epochs=2, steps=3)
    assert list(layer_thresholds(method).values()) == pytest.approx([method.knob * 0.3] * 2)


# --------------------------------------------------------------------------------------------
# Grad R


def test_prior_centre_and_step():
    assert prior_centre(1.0, 0.9) == pytest.approx(math.log(0.2))
    assert prior_centre(1.0, 0.25) == pytest.approx(-math.log(0.5))
    theta = torch.tensor([1.0, -3.0, 0.5])
    old = torch.tensor([1.0, -3.0, -2.0])
    prior_step(theta, old, lr=0.1, alpha=2.0, mu=-1.0)
    assert theta.tolist() == pytest.approx([0.8, -2.8, 0.7])


def test_gradr_freezes_signs_and_shrinks_by_the_prior(data):
    model = tiny_model("mlp", data)
    initial = torch.sign(model[1].weight.detach().clone())
    method = METHODS["gradr"](tiny_budget(model, data), input_shape=data.input_shape)
    method.attach(model)
    train(model, data, CONFIG.replace(epochs=2), callbacks=[method])
    signs = method.frozen_signs()["1"]
    assert torch.equal(signs, torch.where(initial == 0, torch.ones_like(initial), initial))
    w = model[1].weight.detach()
    assert bool(((torch.sign(w) == signs) | (w == 0)).all())
    assert method.knob > 0 and method.shrink_total > 0


def test_gradr_prior_is_applied_after_the_optimizer_step(data):
    model = tiny_model("mlp", data)
    method = METHODS["gradr"](
        tiny_budget(model, data),
        input_shape=data.input_shape,
        control=KnobControl(freeze_after=0.0),
    )
    method.attach(model)
    method.on_train_begin(model, None, 4, 1)
    theta = method._theta(method.targets[0])
    before = theta.detach().clone()
    method.before_step()
    method.after_step(0, 0.01)
    expected = before - 0.01 * method.knob * torch.sign(before - method.mu)
    assert torch.allclose(theta.detach(), expected)


# --------------------------------------------------------------------------------------------
# Errors


def test_unknown_method_and_scheduler_raise_config_errors(data):
    with pytest.raises(ConfigError) as info:
        method_class("stsd")
    assert "stds" in info.value.fix
    with pytest.raises(ConfigError):
        split_method_spec("stds-cosine")
    model = tiny_model("mlp", data)
    with pytest.raises(ConfigError):
        METHODS["gradr"](tiny_budget(model, data), input_shape=data.input_shape, scheduler="sine")
    assert split_method_spec("stds-linear") == ("stds", "linear")


def test_projection_under_a_binding_cap_keeps_one_input_per_neuron(data):
    model = tiny_model("mlp", data)
    method = METHODS["magnitude"](tiny_budget(model, data), input_shape=data.input_shape)
    method.attach(model)
    tight = Budget(synapses=200, source="test", per_layer_min={"1": 1, "3": 10}, fan_in_cap=1)
    counts = method.project(tight)
    assert counts == {"1": 16, "3": 10}
    assert model[1].weight.ne(0).sum(1).tolist() == [1] * 16
    assert model[3].weight.ne(0).sum(1).tolist() == [1] * 10


def test_layerwise_gmp_gives_every_layer_the_same_sparsity(data):
    model = tiny_model("mlp", data)
    budget = tiny_budget(model, data, sparsity=0.75)
    result = prune_to_budget(
        model,
        data,
        CONFIG,
        method="gmp",
        budget=budget,
        epochs=2,
        finetune_epochs=0,
        options={"scope": "layer"},
    )
    assert [row["synapses"] for row in result.per_layer] == [256, 40]
    assert result.synapses == budget.synapses


@pytest.mark.parametrize("name", ["stds", "gradr", "gmp"])
def test_fan_in_cap_holds_during_pruning(name, data):
    model = tiny_model("mlp", data)
    method = METHODS[name](tiny_budget(model, data, cap=3), input_shape=data.input_shape)
    method.attach(model)
    method.on_train_begin(model, None, 4, 1)
    assert model[1].weight.ne(0).sum(1).max() <= 3
    assert model[3].weight.ne(0).sum(1).max() <= 3


# --------------------------------------------------------------------------------------------
# Accuracy fixes (docs/benchmarks_pruning.md): projection values, output excitation, STDS lr


@pytest.mark.parametrize("name", ["stds", "lats", "gradr"])
def test_projection_keeps_the_effective_weights_the_network_trained_with(name, data):
    model = tiny_model("mlp", data)
    method = METHODS[name](
        tiny_budget(model, data, sparsity=0.5),
        input_shape=data.input_shape,
        control=KnobControl(freeze_after=0.0),
    )
    method.attach(model)
    drive(method, model, [0.05] * 8, steps_per_epoch=4, epochs=2, steps=6)
    before = [model[i].weight.detach().clone() for i in (1, 3)]
    method.project()
    for i, old in zip((1, 3), before, strict=True):
        kept = (model[i].weight != 0) & (old != 0)
        assert bool(kept.any())
        assert torch.equal(model[i].weight[kept], old[kept])


def test_every_output_unit_keeps_an_excitatory_input(data):
    model = tiny_model("mlp", data)
    with torch.no_grad():  # the largest output weights are inhibitory, as in trained nets
        model[3].weight.copy_(-model[3].weight.abs())
        model[3].weight[:, 0] = 0.01
    budget = tiny_budget(model, data, sparsity=0.95)
    method = METHODS["magnitude"](budget, input_shape=data.input_shape)
    plain = method.finalize(method.attach(model))
    assert bool((plain[3].weight > 0).any(1).all())
    assert summarize(plain, data.input_shape, T).synapses() <= budget.synapses


def test_stds_prunes_at_a_constant_rate_with_the_schedules_total(data):
    config = CONFIG.replace(lr=0.02, lr_schedule="cosine")
    flat = prune_config(config, 5, constant=True)
    assert flat.lr_schedule == "none" and flat.epochs == 5
    cosine = prune_config(config, 5)
    assert flat.lr * 5 == pytest.approx(sum(lr_at(cosine, e) for e in range(5)))
    assert METHODS["stds"].constant_lr and not METHODS["lats"].constant_lr
    model = tiny_model("mlp", data)
    result = prune_to_budget(
        model,
        data,
        config,
        method="stds",
        budget=tiny_budget(model, data),
        epochs=2,
        finetune_epochs=1,
    )
    prune_lrs = [row["lr"] for row in result.history if row["stage"] == "prune"]
    expected = prune_config(config, 2, constant=True).lr
    assert prune_lrs == pytest.approx([expected, expected])
