"""SCA structured pruning: channel groups, costs, knapsack, regrowth, physical removal, SEW."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional
from torch.nn.utils import parametrize

from neuroprune.core.errors import BudgetError, ConfigError, UnsupportedError
from neuroprune.data.datasets import load_dataset
from neuroprune.fit.budget import Budget, derive_budget
from neuroprune.models import encode, summarize
from neuroprune.models.sew import SEWResNet, build_sew, summarize_model
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.prune_loop import PruneResult, prune_to_budget
from neuroprune.pipeline.structured import prune_structured
from neuroprune.pruning import METHODS
from neuroprune.pruning.channel_surgery import remove_channels, zero_channels
from neuroprune.pruning.channels import (
    ChannelCosts,
    ChannelGraph,
    ChannelLimits,
    channel_graph,
    select_channels,
)
from neuroprune.pruning.sca import SCA, ActivityMonitor, regrow
from neuroprune.train.loop import TrainConfig, predict, train

torch.set_num_threads(1)
T = 4
CONFIG = TrainConfig(epochs=2, batch_size=32, timesteps=T, lr=1e-2)


@pytest.fixture(scope="module")
def data():
    """256 training images; the whole digits test split (360) for the equality checks."""
    full = load_dataset("digits")
    return dataclasses.replace(full, x_train=full.x_train[:256], y_train=full.y_train[:256])


def conv_model(data, hidden=(8, 16)):
    return build_model("conv", data.input_shape, data.num_classes, hidden=hidden)


def sew_model(data):
    return build_sew(data.input_shape, data.num_classes, stages=((4, 1), (8, 1)))


def loose_budget(model, data, sparsity=0.5) -> Budget:
    return derive_budget(None, summarize_model(model, data.input_shape, T), sparsity=sparsity)


def sca_pruned(model, data, **options):
    """3 dense epochs, then 2 SCA epochs (one mask update + the final one).

    Returns ``(masked model, removed model, the SCA instance)``.
    """
    train(model, data, CONFIG.replace(epochs=3))
    pruner = SCA(loose_budget(model, data), input_shape=data.input_shape, **options)
    pruner.attach(model)
    train(model, data, CONFIG, callbacks=[pruner])
    pruner.project()
    masked = pruner.finalize(model, remove=False)
    return masked, remove_channels(masked, pruner.graph, pruner.keep), pruner


@pytest.fixture(scope="module")
def pruned_conv(data):
    return sca_pruned(conv_model(data), data, q=0.2)


@pytest.fixture(scope="module")
def pruned_sew(data):
    return sca_pruned(sew_model(data), data, p=0.3, q=0.1)


def neuron_spikes(model, x) -> dict[str, torch.Tensor]:
    """Output spikes of every neuron node (by module path) on input ``x``."""
    nodes = {n: m for n, m in model.named_modules() if hasattr(m, "v_threshold")}
    out, handles = {}, []
    for name, node in nodes.items():
        handles.append(node.register_forward_hook(lambda m, i, o, n=name: out.__setitem__(n, o)))
    model.eval()
    with torch.no_grad():
        out["output"] = model(x)
    functional.reset_net(model)
    for handle in handles:
        handle.remove()
    return out


# --------------------------------------------------------------------------------------------
# Physical removal is exact


@pytest.mark.parametrize("fixture", ["pruned_conv", "pruned_sew"])
def test_removed_model_spikes_equal_the_masked_model(fixture, data, request):
    masked, removed, pruner = request.getfixturevalue(fixture)
    assert any(not k.all() for k in pruner.keep.values()), "something must be pruned"
    x = encode(torch.as_tensor(data.x_test), T, "direct")
    big, small = neuron_spikes(masked, x), neuron_spikes(removed, x)
    assert torch.equal(big["output"], small["output"])
    assert big["output"].sum() > 0
    for wired in pruner.graph.layers:
        if wired.out_space is None:
            continue
        kept = torch.as_tensor(np.flatnonzero(pruner.keep[wired.out_space]))
        assert torch.equal(big[wired.neuron].index_select(2, kept), small[wired.neuron])
        gone = torch.as_tensor(np.flatnonzero(~pruner.keep[wired.out_space]))
        assert big[wired.neuron].index_select(2, gone).sum() == 0


def test_removed_conv_model_is_smaller_exports_and_simulates(pruned_conv, data, tmp_path):
    from neuroprune.export import export_nir
    from neuroprune.sim import simulate

    masked, removed, pruner = pruned_conv
    before = summarize(conv_model(data), data.input_shape, T)
    after = summarize(removed, data.input_shape, T)
    assert after.neurons < before.neurons and after.synapses() < before.synapses()
    for old, new in zip(before.layers, after.layers, strict=True):
        assert new.neurons <= old.neurons and new.synapses() <= old.synapses()
        assert new.max_fan_in <= old.max_fan_in
    assert after.synapses() == sum(pruner.counts().values())
    path = export_nir(
        removed,
        tmp_path / "narrow.nir",
        timesteps=T,
        encoding="direct",
        input_shape=data.input_shape,
    )
    sim = simulate(path, x=data.x_test[:40], y=data.y_test[:40], backend="reference")
    torch_predictions, _ = predict(removed, data.x_test[:40], T)
    assert np.mean(np.asarray(sim.predictions) == torch_predictions) >= 0.95


def test_linear_after_flatten_loses_h_times_w_columns_per_channel(data):
    model = conv_model(data, hidden=(2, 3))
    graph = channel_graph(model, data.input_shape)
    keep = {"0": np.array([True, True]), "3": np.array([True, False, True])}
    narrow = remove_channels(model, graph, keep)
    columns = np.r_[0:16, 32:48]  # channels 0 and 2 of a 3x4x4 map, C-order
    assert narrow[7].in_features == 2 * 16
    assert torch.equal(narrow[7].weight, model[7].weight[:, columns])
    assert torch.equal(narrow[3].weight, model[3].weight[[0, 2]])
    assert torch.equal(narrow[4].running_var, model[4].running_var[[0, 2]])


# --------------------------------------------------------------------------------------------
# Residual groups


def test_channels_joined_by_a_residual_add_are_one_group(data):
    model = sew_model(data)
    graph = channel_graph(model, data.input_shape)
    stream = "stages.0"
    assert [w.name for w in graph.producers(stream)] == ["stages.0.conv", "stages.0.blocks.0.conv2"]
    assert graph.coupled(stream) and not graph.coupled("stages.0.blocks.0")
    assert {w.name: w.sources for w in graph.consumers(stream)} == {
        "stages.0.blocks.0.conv1": 1,
        "stages.1.conv": 2,
    }
    x = encode(torch.as_tensor(data.x_test[:64]), T, "direct")
    train(model, data, CONFIG.replace(epochs=1))
    channel = int(stream_spikes(model, x).sum((0, 1, 3, 4)).argmax())
    one_path = copy.deepcopy(model)
    with torch.no_grad():
        one_path.stages[0].blocks[0].bn2.weight[channel] = 0.0
        one_path.stages[0].blocks[0].bn2.bias[channel] = 0.0
    assert stream_spikes(one_path, x)[:, :, channel].sum() > 0, "the stem still feeds the ADD"
    keep = {s: np.ones(graph.width(s), dtype=bool) for s in graph.spaces}
    keep[stream][channel] = False
    grouped = zero_channels(copy.deepcopy(model), graph, keep)
    assert stream_spikes(grouped, x)[:, :, channel].sum() == 0
    narrow = remove_channels(grouped, graph, keep)
    assert narrow.stages[0].conv.out_channels == narrow.stages[0].blocks[0].conv2.out_channels == 3
    assert narrow.stages[1].conv.in_channels == narrow.stages[0].blocks[0].conv1.in_channels == 3


def stream_spikes(model: SEWResNet, x) -> torch.Tensor:
    """The residual stream of stage 0 (stem spikes + block spikes), ``[T, B, C, H, W]``."""
    model.eval()
    with torch.no_grad():
        out = model.stages[0](x)
    functional.reset_net(model)
    return out


def test_sca_masks_every_member_of_a_pruned_group(pruned_sew):
    masked, removed, pruner = pruned_sew
    for space in pruner.graph.spaces:
        gone = torch.as_tensor(~pruner.keep[space])
        for wired in pruner.graph.producers(space):
            bn = masked.get_submodule(wired.batchnorm)
            assert bn.weight[gone].abs().sum() == 0 and bn.bias[gone].abs().sum() == 0
            assert masked.get_submodule(wired.name).weight[gone].abs().sum() == 0
            assert removed.get_submodule(wired.name).out_channels == int(pruner.keep[space].sum())


def test_sew_summary_counts_an_add_as_one_weight_copy_per_source(data):
    model = sew_model(data)
    summary = summarize_model(model, data.input_shape, T)
    single = summary.layer("stages.0.blocks.0.conv1")  # reads the stem only
    double = summary.layer("stages.1.conv")  # reads stem + block spikes
    assert double.in_shape == (8, 8, 8) and single.in_shape == (4, 8, 8)
    conv = model.stages[1].conv
    assert double.kernel_nonzeros == 2 * int(conv.weight.ne(0).sum())
    assert summary.layer("fc").inputs == 2 * 8 * 4 * 4
    assert summary.neurons == 3 * 4 * 64 + 3 * 8 * 16 + 10


@pytest.mark.parametrize("sharing", [False, True])
@pytest.mark.parametrize("kind", ["conv", "sew", "mlp"])
def test_channel_costs_match_the_summary_of_the_removed_model(kind, sharing, data):
    model = {"conv": conv_model, "sew": sew_model}.get(
        kind, lambda d: build_model("mlp", d.input_shape, d.num_classes, hidden=(12, 6))
    )(data)
    graph = channel_graph(model, data.input_shape)
    costs = ChannelCosts.from_model(model, graph, conv_weight_sharing=sharing)
    rng = np.random.default_rng(0)
    keep = {s: rng.random(graph.width(s)) < 0.6 for s in graph.spaces}
    for k in keep.values():
        k[0] = True
    summary = summarize_model(remove_channels(model, graph, keep), data.input_shape, T)
    assert costs.layer_synapses(keep) == {lay.name: lay.synapses(sharing) for lay in summary.layers}
    assert costs.layer_neurons(keep) == {lay.name: lay.neurons for lay in summary.layers}


# --------------------------------------------------------------------------------------------
# Knapsack and regrowth


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=24, max_size=24),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_knapsack_meets_budgets_with_the_minimum_widths_and_is_maximal(values, syn, neu):
    costs = knapsack_costs()
    graph = costs.graph
    minimum = {s: 2 for s in graph.spaces}
    floor = costs.totals({s: np.arange(graph.width(s)) < 2 for s in graph.spaces})
    dense = costs.totals(costs.full())
    limits = ChannelLimits(
        synapses=int(floor["synapses"] + syn * (dense["synapses"] - floor["synapses"])),
        neurons=int(floor["neurons"] + neu * (dense["neurons"] - floor["neurons"])),
        min_width=minimum,
    )
    split = {"0": np.array(values[:8]), "3": np.array(values[8:])}
    keep = select_channels(costs, split, limits)
    totals = costs.totals(keep)
    assert totals["synapses"] <= limits.synapses and totals["neurons"] <= limits.neurons
    assert all(int(keep[s].sum()) >= 2 for s in graph.spaces)
    for space in graph.spaces:
        for channel in np.flatnonzero(~keep[space]):
            if split[space][channel] > 0:
                keep[space][channel] = True
                assert limits.excess(costs.totals(keep)), "the fill pass left room unused"
                keep[space][channel] = False


_KNAPSACK_COSTS: list[ChannelCosts] = []


def knapsack_costs() -> ChannelCosts:
    if not _KNAPSACK_COSTS:
        full = load_dataset("digits")
        model = build_model("conv", full.input_shape, full.num_classes, hidden=(8, 16))
        graph = channel_graph(model, full.input_shape)
        _KNAPSACK_COSTS.append(ChannelCosts.from_model(model, graph))
    return _KNAPSACK_COSTS[0]


def test_knapsack_removes_the_least_valuable_channel_per_synapse_saved():
    costs = knapsack_costs()
    values = {"0": np.ones(8), "3": np.ones(16)}
    values["3"][5] = 0.01
    dense = costs.totals(costs.full())["synapses"]
    keep = select_channels(costs, values, ChannelLimits(synapses=dense - 1))
    assert not keep["3"][5] and int(keep["3"].sum()) == 15 and keep["0"].all()
    keep = select_channels(costs, values, ChannelLimits(channels=20))
    assert int(keep["0"].sum()) + int(keep["3"].sum()) == 20 and not keep["3"][5]


def test_infeasible_limits_raise_budget_errors_before_training(data):
    model = conv_model(data)
    budget = loose_budget(model, data)
    with pytest.raises(BudgetError) as info:
        SCA(budget, input_shape=data.input_shape, neuron_budget=50).attach(model)
    assert info.value.field == "neurons" and "sca+stds" in info.value.fix
    mlp = build_model("mlp", data.input_shape, data.num_classes, hidden=(16,))
    capped = dataclasses.replace(loose_budget(mlp, data), fan_in_cap=12)
    with pytest.raises(BudgetError) as info:
        SCA(capped, input_shape=data.input_shape).attach(mlp)
    assert info.value.field == "fan_in_cap"


def test_fan_in_cap_limits_the_kept_input_channels(data):
    model = conv_model(data)
    budget = dataclasses.replace(loose_budget(model, data, sparsity=0.0), fan_in_cap=40)
    pruner = SCA(budget, input_shape=data.input_shape, q=0.0)
    pruner.attach(model)
    masked = pruner.finalize(model, remove=False)
    narrow = remove_channels(masked, pruner.graph, pruner.keep)
    assert summarize(narrow, data.input_shape, T).max_fan_in <= 40


def test_regrow_takes_the_largest_gradients_within_the_limits():
    graph = knapsack_costs().graph
    provisional = {"0": np.array([1, 1, 0, 0, 1, 1, 1, 1], bool), "3": np.ones(16, bool)}
    provisional["3"][[3, 4]] = False
    scores = {"0": np.array([0, 0, 0.5, 0.0, 0, 0, 0, 0]), "3": np.zeros(16)}
    scores["3"][[3, 4]] = [0.9, 0.7]
    keep = regrow(graph, provisional, scores, 2)
    assert keep["3"][3] and keep["3"][4] and not keep["0"][2]
    keep = regrow(graph, provisional, scores, 5)
    assert keep["0"][2] and not keep["0"][3], "a zero gradient never regrows"
    keep = regrow(graph, provisional, scores, 2, fits=lambda k: int(k["3"].sum()) <= 15)
    assert keep["3"][3] and not keep["3"][4] and keep["0"][2]


def test_mask_update_keeps_the_top_1_minus_p_minus_q_and_regrows_q(data):
    model = conv_model(data)
    pruner = SCA(
        loose_budget(model, data, sparsity=0.0),
        input_shape=data.input_shape,
        p=0.25,
        q=0.25,
        min_fraction=0.0,
    )
    pruner.attach(model)
    activity = {"0": np.linspace(1.0, 0.3, 8), "3": np.linspace(0.95, 0.05, 16)}
    pruner.monitor = StubMonitor(activity)
    pruner.grad_sum = {"0": np.zeros(8), "3": np.zeros(16)}
    pruner.grad_sum["3"][9:16] = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    pruner.grad_steps = 1
    pruner._update(final=False)
    # 24 channels: keep 24 * (1 - p - q) = 12 by activity, then regrow 6 by gradient.
    ranked = sorted(((v, s, c) for s, a in activity.items() for c, v in enumerate(a)), reverse=True)
    top = {(s, c) for _, s, c in ranked[:12]}
    kept = {(s, int(c)) for s, k in pruner.keep.items() for c in np.flatnonzero(k)}
    assert kept == top | {("3", c) for c in range(10, 16)}
    bn = model[1]
    assert bn.weight[torch.as_tensor(~pruner.keep["0"])].abs().sum() == 0


class StubMonitor:
    """Stands in for :class:`ActivityMonitor` with fixed scores."""

    def __init__(self, scores):
        self.scores = scores

    def space_scores(self):
        return self.scores

    def reset(self):
        pass


def test_activity_score_is_the_mean_of_spikes_plus_abs_potential(data):
    model = conv_model(data, hidden=(3, 4))
    graph = channel_graph(model, data.input_shape)
    monitor = ActivityMonitor(model, graph)
    x = encode(torch.as_tensor(data.x_train[:16]), T, "direct")
    model.train()
    spikes = model[:3](x)
    expected = (spikes + model[2].v_seq.abs()).mean(dim=(0, 1, 3, 4))
    functional.reset_net(model)
    model(x)
    functional.reset_net(model)
    assert np.allclose(monitor.channel_scores("2"), expected.detach().numpy())
    monitor.remove()
    assert not model[2]._forward_hooks and model[2].store_v_seq is False


def test_l1_is_added_to_conv_weight_gradients(data):
    model = conv_model(data, hidden=(3, 4))
    pruner = SCA(loose_budget(model, data), input_shape=data.input_shape, l1=1e-3)
    pruner.attach(model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    pruner.before_step()
    assert torch.equal(model[0].weight.grad, 1e-3 * torch.sign(model[0].weight))
    assert model[7].weight.grad.abs().sum() == 0  # the readout Linear gets none


# --------------------------------------------------------------------------------------------
# Entry points


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_sca_honours_the_pruning_method_contract(kind, data, monkeypatch):
    monkeypatch.setitem(METHODS, "sca", SCA)
    hidden = (16,) if kind == "mlp" else (4, 8)
    model = build_model(kind, data.input_shape, data.num_classes, hidden=hidden)
    budget = loose_budget(model, data, sparsity=0.6)
    events = []
    result = prune_to_budget(
        model,
        data,
        CONFIG,
        method="sca",
        budget=budget,
        epochs=2,
        finetune_epochs=1,
        progress=events.append,
    )
    summary = summarize(result.model, data.input_shape, T)
    assert result.synapses == summary.synapses() <= budget.synapses
    assert all(row["synapses"] >= budget.per_layer_min[row["layer"]] for row in result.per_layer)
    assert [row["stage"] for row in result.history] == ["prune", "prune", "finetune"]
    assert result.history[-1]["nonzero"] == sum(result.projected_counts.values())
    assert {"prune_begin", "projected", "prune_end", "epoch"} <= {e["event"] for e in events}
    for module in result.model.modules():
        assert not parametrize.is_parametrized(module) and not module._forward_hooks
        assert getattr(module, "store_v_seq", False) is False


def test_prune_structured_reports_the_structure_and_sca_stds_hits_the_budget(data):
    from neuroprune.chip.profiles import load_profile

    profile = load_profile("loihi")
    dense = conv_model(data, hidden=(4, 8))
    train(dense, data, CONFIG.replace(epochs=1))
    budget = loose_budget(dense, data, sparsity=0.7)
    sca, both = (
        prune_structured(
            copy.deepcopy(dense),
            data,
            CONFIG,
            budget=budget,
            epochs=2,
            finetune_epochs=1,
            then_stds=stds,
            profile=profile,
        )
        for stds in (False, True)
    )
    assert isinstance(sca, PruneResult) and sca.method == "sca" and both.method == "sca+stds"
    assert sca.synapses <= budget.synapses and sca.neurons < sca.neurons_before
    assert 0.99 * budget.synapses <= both.synapses <= budget.synapses
    assert sca.accuracy_masked == sca.accuracy_removed
    for result in (sca, both):
        assert result.synapses == summarize(result.model, data.input_shape, T).synapses()
        assert [row["layer"] for row in result.per_layer] == ["0", "3", "7"]
        row = result.per_layer[0]
        assert row["channels_before"] == 4 and row["channels_after"] <= 4
        assert isinstance(row["cores_before"], int) and isinstance(result.cores, int)
        assert sum(r["neurons_after"] for r in result.per_layer) == result.neurons
    assert both.stds is not None and both.stds.method == "stds"


def test_prune_structured_prunes_a_sew_resnet_and_meets_a_neuron_budget(data):
    model = sew_model(data)
    before = summarize_model(model, data.input_shape, T)
    budget = loose_budget(model, data, sparsity=0.5)
    result = prune_structured(
        model,
        data,
        CONFIG,
        budget=budget,
        epochs=1,
        finetune_epochs=1,
        neuron_budget=int(0.7 * before.neurons),
    )
    assert result.neurons <= 0.7 * before.neurons and result.synapses <= budget.synapses
    assert result.accuracy_masked == result.accuracy_removed
    assert isinstance(result.model, SEWResNet)


def test_sca_then_stds_prunes_a_sew_resnet_to_the_exact_budget(data):
    model = sew_model(data)
    budget = loose_budget(model, data)
    result = prune_structured(
        model, data, CONFIG, budget=budget, epochs=2, finetune_epochs=0, then_stds=True
    )
    assert isinstance(result.model, SEWResNet) and result.stds is not None
    # exact to within the cheapest entry: a weight on k ADDed sources costs k synapses
    counted = summarize_model(result.model, data.input_shape, T).synapses()
    assert 0 <= budget.synapses - counted < 3
    # translate.summarize follows the model's own wiring for residual models
    wired = summarize(result.model, data.input_shape, T)
    assert wired.synapses() == counted


@pytest.mark.parametrize(
    "options", [{"p": 1.2}, {"p": 0.6, "q": 0.5}, {"interval": 0}, {"neuron_budget": -3}]
)
def test_invalid_options_raise_config_errors(options, data):
    model = conv_model(data)
    with pytest.raises(ConfigError):
        SCA(loose_budget(model, data), input_shape=data.input_shape, **options)


def test_a_graph_without_hidden_channels_is_unsupported(data):
    model = build_model("mlp", data.input_shape, data.num_classes, hidden=())
    assert channel_graph(model, data.input_shape).spaces == ()
    with pytest.raises(UnsupportedError):
        SCA(loose_budget(model, data), input_shape=data.input_shape).attach(model)
    assert isinstance(channel_graph(model, data.input_shape), ChannelGraph)


def test_zero_prune_epochs_choose_the_structure_from_filter_magnitudes(data):
    model = conv_model(data, hidden=(4, 8))
    budget = loose_budget(model, data, sparsity=0.7)
    result = prune_structured(model, data, CONFIG, budget=budget, epochs=0, finetune_epochs=0)
    assert result.history == () and result.synapses <= budget.synapses
    assert result.accuracy_masked == result.accuracy_removed
