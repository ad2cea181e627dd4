"""Speck checked against SynSense's own code, Sinabs 3.1.3 (run in the ``sinabs`` environment
by :func:`neuroprune.sim.sinabs_backend.run_sinabs_job`, one child process per test).

* Fit verdicts: over >= 100 random conv chains (hypothesis: channels, kernel sizes, strides,
  padding, input sizes, sum pooling, plus networks just over a memory limit), neuroprune's
  fits / does-not-fit verdict, each layer's kernel and neuron memory and each layer's core
  equal Sinabs' ``DynapcnnNetwork(...).memory_summary()`` and its mapper
  (``map_layers_to_cores`` = ``get_valid_mapping`` with the Speck 2f constraints).
* The neuron: Sinabs' ``IAFSqueeze`` on random integer currents (ties with the threshold
  included) gives the spikes per step and potentials that ``speck_iaf`` gives in training
  (torch, :class:`~neuroprune.models.neurons.ChipDynamics`) and in the reference (numpy).

samna: ``sinabs.backend.dynapcnn`` imports SynSense's driver ``samna``, whose PyPI package is
a stub that runs pip when imported. The child installs a stand-in for that import only
(:func:`neuroprune.sim.sinabs_env.install_samna_standin`): every attribute is a placeholder
that raises when constructed or called, so none of the code under test is replaced; each test
checks that the real samna was not imported and that no placeholder was called.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import layer

from neuroprune.chip.arithmetic import SPECK, LayerFacts, layer_neuron
from neuroprune.chip.capacity import layer_entries
from neuroprune.chip.profiles import load_profile
from neuroprune.core.summary import conv_output_size
from neuroprune.fit.rules import check_fit
from neuroprune.models.neurons import ChipIFNode
from neuroprune.models.neurons import IFNode as StrictIF
from neuroprune.models.translate import summarize
from neuroprune.sim.sinabs_backend import run_sinabs_job

pytestmark = pytest.mark.sinabs

MAX_UNROLLED = 2_000_000  # unrolled synapses per network, to keep the summaries fast


@st.composite
def conv_chains(draw):
    """A chain of 1-4 conv layers (+ IF, optional sum pooling) on a ``C x H x W`` input; the
    channel counts lean on powers of two and one above, where padded memories double."""
    width = draw(st.integers(4, 48))
    shape = (draw(st.sampled_from([1, 2, 3, 8, 16, 33, 64, 65])), width, width)
    layers, (h, w) = [], shape[1:]
    depth = draw(st.integers(1, 4))
    for index in range(depth):
        kernel = draw(st.integers(1, min(7, h, w)))
        stride = draw(st.sampled_from([1, 1, 2]))
        padding = draw(st.integers(0, min(2, kernel - 1)))
        out = draw(st.sampled_from([1, 4, 8, 15, 16, 17, 32, 33, 64, 65, 128, 129, 256]))
        h_out = conv_output_size(h, kernel, stride, padding)
        w_out = conv_output_size(w, kernel, stride, padding)
        pool = draw(st.sampled_from([1, 1, 2, 4]))
        if h_out // pool < 1 or w_out // pool < 1 or index == depth - 1:
            pool = 1  # neuroprune pools only into a next layer
        layers.append(
            {"out": out, "kernel": kernel, "stride": stride, "padding": padding, "pool": pool}
        )
        h, w = h_out // pool, w_out // pool
    return {"in_shape": list(shape), "layers": layers}


# Networks just over a limit (and the one from issue 24): kernel entries 2**16 + a little
# (only cores 5, 6 hold 2**16), neuron entries just over 2**16 / 2**15 / 2**14, and a layer
# whose kernel needs a 64 Ki core while its neurons need more than those cores' 16 Ki.
EDGE_CASES = [
    {
        "in_shape": [65, 6, 6],
        "layers": [{"out": 64, "kernel": 3, "stride": 1, "padding": 0, "pool": 1}],
    },
    {
        "in_shape": [64, 6, 6],
        "layers": [{"out": 64, "kernel": 3, "stride": 1, "padding": 0, "pool": 1}],
    },
    {
        "in_shape": [64, 6, 6],
        "layers": [{"out": 65, "kernel": 3, "stride": 1, "padding": 0, "pool": 1}],
    },
    {
        "in_shape": [2, 34, 34],
        "layers": [{"out": 64, "kernel": 3, "stride": 1, "padding": 0, "pool": 1}],
    },
    {
        "in_shape": [2, 34, 34],
        "layers": [{"out": 65, "kernel": 3, "stride": 1, "padding": 0, "pool": 1}],
    },
    {
        "in_shape": [64, 34, 34],
        "layers": [
            {"out": 32, "kernel": 3, "stride": 1, "padding": 0, "pool": 2},
            {"out": 8, "kernel": 3, "stride": 1, "padding": 0, "pool": 1},
        ],
    },
    {
        "in_shape": [64, 18, 18],
        "layers": [{"out": 64, "kernel": 3, "stride": 1, "padding": 0, "pool": 1}],
    },
    {
        "in_shape": [64, 19, 19],
        "layers": [{"out": 64, "kernel": 3, "stride": 1, "padding": 0, "pool": 1}],
    },
    {
        "in_shape": [16, 8, 8],
        "layers": [
            {"out": 64, "kernel": 3, "stride": 1, "padding": 1, "pool": 1},
            {"out": 64, "kernel": 4, "stride": 1, "padding": 0, "pool": 1},
            {"out": 64, "kernel": 3, "stride": 1, "padding": 0, "pool": 1},
        ],
    },
    {
        "in_shape": [16, 8, 8],
        "layers": [
            {"out": 64, "kernel": 3, "stride": 1, "padding": 1, "pool": 1},
            {"out": 64, "kernel": 4, "stride": 1, "padding": 0, "pool": 1},
            {"out": 64, "kernel": 3, "stride": 1, "padding": 0, "pool": 1},
            {"out": 64, "kernel": 1, "stride": 1, "padding": 0, "pool": 1},
        ],
    },
]


def _unrolled(case: dict) -> int:
    c, h, w = case["in_shape"]
    total = 0
    for spec in case["layers"]:
        k, s, p = spec["kernel"], spec["stride"], spec["padding"]
        h_out, w_out = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        total += spec["out"] * h_out * w_out * c * k * k
        c, h, w = spec["out"], h_out // spec["pool"], w_out // spec["pool"]
    return total


def _torch_chain(case: dict) -> torch.nn.Sequential:
    modules, channels = [], case["in_shape"][0]
    for spec in case["layers"]:
        modules += [
            layer.Conv2d(
                channels,
                spec["out"],
                spec["kernel"],
                stride=spec["stride"],
                padding=spec["padding"],
                bias=False,
                step_mode="m",
            ),
            StrictIF(step_mode="m"),
        ]
        if spec["pool"] > 1:
            modules.append(layer.AvgPool2d(spec["pool"], step_mode="m"))
        channels = spec["out"]
    return torch.nn.Sequential(*modules)


def _neuroprune_view(case: dict, profile) -> dict:
    model = _torch_chain(case)
    for module in model:  # every weight nonzero: Speck charges kernels whatever they hold
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.constant_(module.weight, 0.5)
    summary = summarize(model, tuple(case["in_shape"]), 4)
    report = check_fit(summary, profile)
    entries = [layer_entries(layer) for layer in summary.layers]
    return {
        "fits": report.fits,
        "kernel": [k for k, _ in entries],
        "neuron": [n for _, n in entries],
        "cores": [report.core_map[layer.name][0] for layer in summary.layers],
        "rules": sorted({v.rule for v in report.violations}),
    }


def _collect_cases(count: int) -> list[dict]:
    cases: list[dict] = []

    @settings(
        max_examples=count * 3,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=conv_chains())
    def collect(case):
        if len(cases) < count and _unrolled(case) <= MAX_UNROLLED and case not in cases:
            cases.append(case)

    collect()
    return cases


def test_fit_verdicts_memories_and_cores_equal_sinabs():
    """>= 100 random chains and the edge cases: verdict, memories and cores are Sinabs'."""
    profile = load_profile("speck")
    cases = EDGE_CASES + _collect_cases(110)
    assert len(cases) >= 100 + len(EDGE_CASES) // 2
    facts, _ = run_sinabs_job("mapping", {"networks": cases}, {})
    assert facts["samna_real_imported"] is False and facts["samna_standin_called"] == []
    verdicts = {"fits": 0, "does not fit": 0}
    for case, theirs in zip(cases, facts["networks"], strict=True):
        assert "error" not in theirs, (case, theirs)
        ours = _neuroprune_view(case, profile)
        sinabs_fits = theirs["cores"] is not None
        assert ours["kernel"] == theirs["memory"]["kernel"], case
        assert ours["neuron"] == theirs["memory"]["neuron"], case
        assert ours["fits"] == sinabs_fits, (case, ours, theirs)
        if sinabs_fits:
            assert ours["cores"] == theirs["cores"], (case, ours, theirs)
        verdicts["fits" if sinabs_fits else "does not fit"] += 1
    assert verdicts["fits"] >= 20 and verdicts["does not fit"] >= 10, verdicts


# --------------------------------------------------------------------------------------------
# The neuron


def _speck_training_run(current: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Spikes per step and ``v`` after each step of the training neuron (torch) on integer
    currents ``[T, N, M]`` (weight scale 1, so the current is the integer input)."""
    node = ChipIFNode(
        {"arithmetic": SPECK, "threshold_int": threshold, "weight_scale": 1.0, "input_shift": 0},
        v_threshold=float(threshold),
        v_reset=None,
        step_mode="m",
    )
    spikes, potentials = [], []
    with torch.no_grad():
        for t in range(current.shape[0]):
            spikes.append(node(torch.from_numpy(current[t : t + 1]).double())[0].numpy())
            potentials.append(node.chip_state[0].numpy().copy())
    return np.stack(spikes), np.stack(potentials)


def _speck_reference_run(current: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    neuron = layer_neuron(SPECK, LayerFacts("IF", None, True, threshold))
    state = neuron.zero_state(np.zeros(current.shape[1:], dtype=np.int64))
    spikes, potentials = [], []
    for t in range(current.shape[0]):
        state, fired = neuron.step(state, current[t].astype(np.int64))
        spikes.append(np.asarray(fired))
        potentials.append(state[0].copy())
    return np.stack(spikes), np.stack(potentials)


@pytest.mark.parametrize("threshold", [1, 7, 64])
def test_speck_neuron_equals_sinabs_iafsqueeze(threshold):
    """Random integer currents (about a third of the steps land exactly on a multiple of the
    threshold, the rest anywhere in +-4 thresholds, some far below the 16-bit floor): Sinabs'
    IAFSqueeze (spike_threshold = threshold_int, min_v_mem = -threshold_int as neuroprune
    sets threshold_low and Sinabs' from_nir does) spikes and potentials equal the training
    neuron's and the reference's at every step."""
    rng = np.random.default_rng(threshold)
    steps, samples, width = 12, 6, 50
    current = rng.integers(-4 * threshold, 4 * threshold + 1, size=(steps, samples, width))
    on_tie = rng.random(current.shape) < 0.33
    current = np.where(on_tie, threshold * rng.integers(-2, 4, size=current.shape), current)
    current[3, 0, :10] = -3 * threshold - 5  # pushes v below min_v_mem: the floor holds it
    current = current.astype(np.float64)
    job = {"spike_threshold": threshold, "min_v_mem": -threshold}
    facts, out = run_sinabs_job("neurons", job, {"current": current})
    assert facts["samna_real_imported"] is False and facts["samna_standin_called"] == []
    train_s, train_v = _speck_training_run(current, threshold)
    ref_s, ref_v = _speck_reference_run(current, threshold)
    assert np.array_equal(out["spikes"], train_s)
    assert np.array_equal(out["v_mem"], train_v)
    assert np.array_equal(out["spikes"], ref_s)
    assert np.array_equal(out["v_mem"], ref_v)
    assert out["spikes"].max() >= 2  # several spikes in one step happened
    assert np.any((train_v == 0) & (out["spikes"] > 0))  # landed exactly on a threshold
    assert out["v_mem"].min() == -threshold  # the floor was reached


# --------------------------------------------------------------------------------------------
# A quantized Speck network: --backend sinabs and Sinabs' NIR importer

SHAPE = (1, 8, 8)
T = 8


def _speck_model():
    """A conv net quantized for Speck with chip-arithmetic (speck_iaf) neurons; gains rising
    with depth so that every layer spikes, several times per step somewhere."""
    from neuroprune.models.zoo import build_model
    from neuroprune.quantize.chip import use_chip_arithmetic
    from neuroprune.quantize.model import ptq_model

    profile = load_profile("speck")
    model = build_model("conv", SHAPE, 10, neuron="if", hidden=(4, 6), seed=3)
    masks = torch.Generator().manual_seed(0)
    with torch.no_grad():
        synapses = [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
        for depth, m in enumerate(synapses, start=1):
            m.weight.mul_(4.0 * depth * (torch.rand(m.weight.shape, generator=masks) < 0.7))
    qmodel, layers = ptq_model(model.eval(), profile, SHAPE)
    layers, name, _ = use_chip_arithmetic(qmodel, layers, profile, analog_images=None)
    assert name == SPECK
    return qmodel


def _spike_input(samples: int = 48) -> np.ndarray:
    from neuroprune.data.encoding import encode

    rng = np.random.default_rng(7)
    images = (rng.integers(0, 17, (samples, *SHAPE)) / 16).astype(np.float32)
    return encode(images, T, "latency")


def test_sinabs_backend_and_nir_importer_equal_the_trained_speck_model(tmp_path):
    """The quantized model (speck_iaf in torch) exported to NIR: --backend sinabs (Sinabs'
    DynapcnnNetwork on the integers) equals the bit-exact reference in every layer and the
    model in every layer; Sinabs' own NIR importer (sinabs.from_nir, in its environment)
    gives the model's output counts for every sample."""
    import sys
    from pathlib import Path

    from neuroprune.export import export_nir
    from neuroprune.sim import simulate
    from neuroprune.sim.torch_reference import model_counts

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from interop_runners import sinabs_run

    qmodel = _speck_model()
    x = _spike_input()
    path = export_nir(
        qmodel,
        tmp_path / "speck.nir",
        timesteps=T,
        encoding="latency",
        input_shape=SHAPE,
        chip="speck",
    )
    result = simulate(
        path,
        x=x,
        backend="sinabs",
        fixed_point=True,
        expected_counts="reference",
        reference_model=qmodel,
    )
    assert result.agreement_source == "reference" and result.spike_agreement == 1.0
    want = model_counts(qmodel, x)
    for got, model in zip(result.counts, want, strict=True):
        np.testing.assert_array_equal(got, model)
    assert all(c.sum() > 0 for c in result.counts)
    assert max(int(c.max()) for c in result.counts) > T  # several spikes in one step
    imported = sinabs_run(path, x)
    assert imported.facts["samna_imported"] is False
    same = np.mean(np.all(imported.counts == want[-1].astype(np.int64), axis=1))
    assert same == 1.0, same
