"""Fit analysis: packing limits (property tests) and one broken network per rule."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroprune.chip.capacity import capacity_model
from neuroprune.chip.profile_reader import parse_profile
from neuroprune.chip.profiles import shipped_profile_paths
from neuroprune.core.summary import NetworkSummary, conv_layer, dense_layer
from neuroprune.fit.packing import pack
from neuroprune.fit.rules import FIT_RULES, check_fit

BASE = {
    "schema_version": 1,
    "id": "toy",
    "name": "Toy chip",
    "chip": {"cores": 4, "neurons_max": 64},
    "core": {
        "neurons_max": 16,
        "input_axons_max": 32,
        "synapse_memory_bits": 4096,
        "synapse_encoding": {
            "kind": "blocked_list",
            "block_synapses": 8,
            "block_header_bits": 4,
            "word_bits": 16,
            "index_bits": 4,
        },
    },
    "neuron": {"models": ["LIF", "IF"]},
    "weights": {"format": "int", "bits": 8, "sign": "signed"},
}


def profile(**patch):
    raw = copy.deepcopy(BASE)
    for dotted, value in patch.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_profile(raw)


def mlp(*sizes, density=1.0, seed=0, model="LIF", bits=None):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w = rng.normal(size=(n_out, n_in))
        w[rng.random(w.shape) > density] = 0
        if bits is not None:
            w = np.round(w * 4)
        layers.append(dense_layer(f"fc{i}", w, neuron_model=model, weight_bits=bits))
    return NetworkSummary(tuple(layers), input_shape=(sizes[0],))


def test_small_network_fits():
    report = check_fit(mlp(8, 8, 4), profile())
    assert report.fits, report.violations
    assert report.cores_used == 1
    assert report.synapses == 8 * 8 + 8 * 4


# One network per rule, built to break exactly that rule. A new rule without an entry here fails.
BREAKERS = {
    "neuron_model": lambda: (mlp(8, 4, model="AdEx"), profile(), {}),
    "chip_neurons": lambda: (mlp(8, 40, 40), profile(), {}),
    "cores": lambda: (mlp(8, 16, 16, 16), profile(), {"cores": 2}),
    "core_input_axons": lambda: (mlp(40, 4), profile(), {}),
    "core_memory": lambda: (mlp(30, 2), profile(**{"core.synapse_memory_bits": 64}), {}),
    "fan_in": lambda: (mlp(20, 4), profile(**{"neuron.fan_in_max": 10}), {}),
    "fan_out": lambda: (
        mlp(8, 4, 32),
        profile(**{"neuron.fan_out_max": 1, "neuron.fan_out_unit": "core"}),
        {},
    ),
    "chip_memory": lambda: (  # one neuron's 40 synapses x 32 bits > a whole chip's 1000 bits
        mlp(40, 2),
        profile(
            **{
                "core.synapse_encoding": {"kind": "row_list", "bits_per_synapse": 32},
                "chip.memory_bits": 1000,
            }
        ),
        {},
    ),
    "weight_bits": lambda: (mlp(8, 4, bits=16), profile(), {}),
    "distinct_weights": lambda: (
        mlp(8, 4, bits=8),
        profile(**{"weights.distinct_values_per_neuron": 2}),
        {},
    ),
    "layer_memory": lambda: (
        mlp(16, 16),
        profile(
            **{
                "core.synapse_encoding": {"kind": "conv_kernel"},
                "core.synapse_memory_bits": 512,
                "core.layers_per_core": "one",
            }
        ),
        {},
    ),
    "population": lambda: (  # Xylo's shape: 20 input channels > rows = 16
        mlp(20, 4, 2),
        profile(**{"core.synapse_encoding": {"kind": "population", "rows": 16, "cols": 8}}),
        {},
    ),
}


def test_every_rule_has_a_breaker():
    assert set(BREAKERS) == set(FIT_RULES)


@pytest.mark.parametrize("rule", sorted(BREAKERS))
def test_rule_reports_its_breaker(rule):
    summary, prof, alloc = BREAKERS[rule]()
    report = check_fit(summary, prof, **alloc)
    assert not report.fits
    rules = {v.rule for v in report.violations}
    assert rule in rules or (rule == "layer_memory" and "layer_neurons" in rules), rules
    for v in report.violations:
        assert v.hint and v.layer


def test_fan_out_ok_when_targets_share_a_core():
    prof = profile(**{"neuron.fan_out_max": 1, "neuron.fan_out_unit": "core"})
    assert check_fit(mlp(8, 4, 4), prof).fits


def test_conv_unrolled_vs_shared_counts():
    w = np.ones((2, 1, 3, 3))
    layer = conv_layer("c", w, (1, 4, 4), padding=1)
    assert layer.neurons == 2 * 16
    assert layer.synapses(False) == 2 * (4 * 4 + 8 * 6 + 4 * 9)  # corners, edges, inner taps
    assert layer.synapses(True) == 18


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=2, max_size=4),
    density=st.floats(0.05, 1.0),
    seed=st.integers(0, 10_000),
    neurons_max=st.integers(1, 20),
    axons_max=st.integers(1, 64),
    memory=st.integers(64, 8192),
)
def test_packing_never_exceeds_a_core_limit(sizes, density, seed, neurons_max, axons_max, memory):
    prof = profile(
        **{
            "core.neurons_max": neurons_max,
            "core.input_axons_max": axons_max,
            "core.synapse_memory_bits": memory,
            "chip.neurons_max": neurons_max,
            "chip.cores": 1,
        }
    )
    summary = mlp(*sizes, density=density, seed=seed)
    packing = pack(summary, prof)
    placed = sum(p.stop - p.start for p in packing.placements)
    assert placed == summary.neurons
    for core in packing.cores:
        assert core.neurons <= neurons_max
        in_core = [p for p in packing.placements if p.core == core.index]
        alone = len(in_core) == 1 and in_core[0].stop - in_core[0].start == 1
        if not alone:  # only a neuron that no empty core holds may break a limit, alone
            assert core.input_axons <= axons_max
            assert core.memory_bits <= memory
            assert not core.excess


def test_core_modules_do_not_import_torch():
    code = (
        "import sys; import neuroprune.chip.profiles, neuroprune.core.summary, neuroprune.fit.rules, "
        "neuroprune.chip.capacity, neuroprune.core.errors; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_allocation_capacity_counts_block_overhead():
    """The packed capacity is below cores x per-core bound, and a thinned net at it fits."""
    from neuroprune.fit.allocation import allocation_capacity, thinned

    prof = profile(**{"chip.cores": 1, "chip.neurons_max": 16, "core.input_axons_max": 64})
    summary = mlp(40, 12, 4, seed=3)
    cap = allocation_capacity(summary, prof, cores=1)
    assert cap is not None and 0 < cap < summary.synapses()
    assert cap <= capacity_model(prof).synapses_per_core()
    density = cap / summary.synapses()
    assert check_fit(thinned(summary, density), prof, cores=1).fits
    assert allocation_capacity(mlp(8, 4), prof, cores=1) is None  # dense fits: not binding


@pytest.mark.parametrize("chip", sorted(shipped_profile_paths()))
def test_every_shipped_profile_judges_a_tiny_network(chip):
    """Contract over the profile registry: a tiny 16-8-4 LIF network fits every chip (as a
    dense layer, or a 1x1 conv on one-layer-per-core chips), and a network far beyond one chip's
    neurons is reported, not crashed on."""
    from neuroprune.chip.profiles import load_profile

    prof = load_profile(chip)
    model = "LIF" if "LIF" in prof.neuron.models else prof.neuron.models[0]
    tiny = mlp(16, 8, 4, density=0.5, seed=1, model=model)
    report = check_fit(tiny, prof)
    assert report.fits, (chip, [v.as_dict() for v in report.violations])
    assert report.cores_used >= 1 and report.chips_needed == 1
    huge = NetworkSummary((dense_layer("wide", np.eye(prof.neurons_max + 1, 4)),), input_shape=(4,))
    verdict = check_fit(huge, prof)
    assert not verdict.fits and "chip_neurons" in {v.rule for v in verdict.violations}


def test_a_layer_that_fits_one_core_is_not_split_across_two():
    """Next-fit would put a few output neurons in the partly used core and the rest in a new
    one; a layer that fits an empty core starts there instead (fan-out stays 1 core)."""
    prof = profile(
        **{"core.input_axons_max": 22, "neuron.fan_out_max": 1, "neuron.fan_out_unit": "core"}
    )
    net = mlp(16, 8, 6, density=0.6, seed=2)
    for strategy in ("next_fit", "first_fit", "best"):
        report = check_fit(net, prof, strategy=strategy)
        assert report.core_map["fc1"] == [1] and report.fits, (strategy, report.violations)


def test_first_fit_fills_earlier_cores_where_next_fit_opens_new_ones():
    # Core: 16 neurons, 32 input axons (memory does not bind). fc0 (4 -> 20): core 0 takes 16
    # neurons, core 1 the other 4 (4 axons). fc1 (20 -> 14) fits an empty core but not core 1
    # (18 neurons): core 2 (20 axons). fc2 (14 -> 2): next-fit only tries core 2 (20 + 14 = 34
    # axons > 32) and opens core 3: 4 cores. First-fit puts fc2 on core 1 (6 neurons, 18 axons):
    # 3 cores = the lower bound ceil(36 neurons / 16).
    net = mlp(4, 20, 14, 2)
    prof = profile(**{"core.synapse_memory_bits": 10**6})
    assert check_fit(net, prof, strategy="next_fit").cores_used == 4
    best = check_fit(net, prof)
    assert best.cores_used == 3 == best.cores_lower_bound and best.fits
    assert best.core_map["fc2"] == [1]


# --------------------------------------------------------------------------------------------
# Budgets that anticipate what comes after pruning (TrueNorth: duplicated inputs, one target
# core per neuron)


def test_truenorth_budget_halves_the_fan_in_for_duplicated_inputs():
    """fan_in_max 256 axons, and the ternary quantizer drives 2 axons per input: 128 inputs."""
    from neuroprune.chip.profiles import load_profile
    from neuroprune.fit.budget import derive_budget

    prof = load_profile("truenorth")
    net = mlp(784, 128, 10)
    budget = derive_budget(prof, net)
    assert budget.fan_in_cap == 128
    assert budget.synapses == 128 * 128 + 10 * 128
    assert budget.source == "chip:truenorth fan-in cap 128 (fan_in_max 256 / 2 input copies)"
    # fc1: 128 hidden sources x 2 axons = 256 axons and 10 neurons: one core holds it whole, so
    # it needs no blocks (its sources then drive that one core); fc0 (784 inputs x 2 axons)
    # cannot, and the crossbar's shared axons prune it into blocks of 128 shared inputs
    assert set(budget.input_blocks) == {"fc0"}
    assert budget.input_blocks["fc0"].shared_inputs
    assert budget.input_blocks["fc0"].inputs_per_block == 128


def test_blocks_keep_each_source_in_one_core():
    """A layer pruned into its input blocks packs one block per core: every source's targets
    sit in one core (TrueNorth's fan-out), and the recount agrees."""
    from neuroprune.chip.capacity import capacity_model
    from neuroprune.chip.profiles import load_profile
    from neuroprune.fit.budget import Budget, LayerScores
    from neuroprune.pruning.selection import select_synapses

    prof = load_profile("truenorth")
    net = mlp(64, 512, 256, 10, seed=4)
    blocks = capacity_model(prof).input_blocks(net)
    # 512 sources -> 256 neurons: 128 inputs per block (256 axons / 2 copies), 4 blocks of 64
    # neurons; 256 -> 10: 2 blocks of 5 neurons.
    assert {k: (v.blocks, v.size) for k, v in blocks.items()} == {"fc1": (4, 64), "fc2": (2, 5)}
    rng = np.random.default_rng(0)
    layers = [
        LayerScores(
            layer.name,
            rng.random(layer.neurons * layer.inputs),
            np.ones(layer.neurons * layer.inputs, np.int64),
            np.repeat(np.arange(layer.neurons), layer.inputs),
        )
        for layer in net.layers
    ]
    budget = Budget(10**6, "test", fan_in_cap=128, input_blocks=blocks)
    masks = select_synapses(layers, budget)
    pruned = NetworkSummary(
        tuple(
            dense_layer(
                layer.name, masks[layer.name].reshape(layer.neurons, layer.inputs).astype(float)
            )
            for layer in net.layers
        ),
        input_shape=(64,),
    )
    report = check_fit(pruned, prof)
    assert report.fits, report.violations
    assert sorted(len(report.core_map[name]) for name in ("fc1", "fc2")) == [2, 4]


def test_no_budget_makes_too_many_neurons_fit():
    from neuroprune.core.errors import BudgetError
    from neuroprune.fit.budget import derive_budget

    prof = profile(**{"chip.neurons_max": 20, "chip.cores": 2, "core.neurons_max": 16})
    with pytest.raises(BudgetError) as info:
        derive_budget(prof, mlp(8, 30, 4))
    assert info.value.field == "chip.neurons_max" and "34 neurons > 20" in str(info.value)


MNIST_LIKE = {"dataset": "mnist", "hidden": None}
DIGITS_WIDE = {"dataset": "digits", "hidden": (512, 256)}


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", [MNIST_LIKE, DIGITS_WIDE], ids=["mnist-784-128-10", "digits-512-256"]
)
def test_truenorth_runs_fit_with_default_options(tmp_path, case):
    """Issue 11: TrueNorth runs with default options (small epochs) end with a network that
    fits: 784-128-10 on MNIST-shaped input (a synthetic IDX fixture), and 64-512-256-10."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_data import write_mnist

    from neuroprune.pipeline.config import RunConfig
    from neuroprune.pipeline.run import run_fit

    data_dir = None
    if case["dataset"] == "mnist":
        data_dir = tmp_path / "mnist"
        write_mnist(data_dir, n_train=60, n_test=20, size=28)
    cfg = RunConfig(
        chip="truenorth",
        dataset=case["dataset"],
        data_dir=data_dir and str(data_dir),
        hidden=case["hidden"],
        epochs=1,
        prune_epochs=1,
        finetune_epochs=1,
        quant_epochs=1,
        backend="none",
        out=str(tmp_path),
        name="tn",
    )
    fit = run_fit(cfg).report["fit"]
    assert fit["fits"], fit["violations"]
    assert fit["chips"] == 1 and fit["cores"] <= 4096


def test_chip_traffic_counts_spikes_crossing_chips():
    # Chip: 2 cores of 4 neurons, but only 4 neurons per chip, so each layer fills a chip.
    # fc0: 2 -> 4 neurons (chip 0); fc1: 4 -> 4 neurons (chip 1). Source neuron j of fc0 fires
    # r_j = (1, 2, 0, 3) spikes/sample; fc1 is dense, so each source sends its spikes once to
    # chip 1: 1 + 2 + 0 + 3 = 6 spikes/sample cross, all on link 0->1.
    from neuroprune.fit.traffic import chip_traffic

    prof = profile(**{"chip.cores": 2, "chip.neurons_max": 4, "core.neurons_max": 4})
    net = mlp(2, 4, 4)
    report = check_fit(net, prof, chips=2)
    assert report.fits and report.packing.chip_map() == {"fc0": [0], "fc1": [1]}
    traffic = chip_traffic(net, report.packing, [np.array([1, 2, 0, 3]), np.zeros(4)])
    assert traffic["inter_chip_spikes_per_sample"] == 6.0
    assert traffic["links"] == {"0->1": 6.0} and traffic["per_layer"] == {"fc1": 6.0}
    assert traffic["cores_per_chip"] == {"0": 1, "1": 1}
