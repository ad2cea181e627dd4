"""NIR/ONNX export and NIR import: lossless, sparse, quantization-aware round trips.

Models come from the zoo (mlp, conv with BatchNorm); they are not trained, but each layer's
weights are scaled until it spikes, so that "identical spikes" is not a comparison of zeros.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate

from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import ArtifactError, ConfigError, ModelError, UnsupportedError
from neuroprune.data.datasets import load_dataset
from neuroprune.data.encoding import encode
from neuroprune.export import (
    EXPORTERS,
    count_nir_nonzero,
    export_nir,
    export_onnx,
    get_exporter,
    import_nir,
    run_onnx,
)
from neuroprune.graph.files import graph_metadata, node_metadata, read_graph, topological_order
from neuroprune.graph.stages import NIR_DT, NeuronStage
from neuroprune.graph.write import neuron_node
from neuroprune.models import neurons
from neuroprune.models.translate import fold_batchnorm, summarize
from neuroprune.models.zoo import build_model
from neuroprune.quantize.model import ptq_model

torch.set_num_threads(1)

T = 8
SAMPLES = 48
DATA_DIR = Path(__file__).parent / "data"
# golden_tiny.nir (strict v > v_th). The numpy reference simulator, which shares no code with
# the torch import, reproduces them (test_golden_spikes_equal_the_numpy_reference).
GOLDEN_SPIKES = [
    [[1, 0, 0], [0, 0, 0], [0, 0, 0]],
    [[1, 1, 1], [1, 0, 1], [0, 0, 1]],
    [[0, 0, 0], [1, 1, 1], [1, 1, 1]],
    [[1, 1, 0], [0, 0, 1], [0, 1, 0]],
]
# golden_tiny_ge.nir: the same dyadic network written with threshold ">=" (before the strict
# convention, format 1); potentials land exactly on the threshold, so steps 3 and 4 differ.
GOLDEN_SPIKES_GE = [
    [[1, 0, 0], [0, 0, 0], [0, 0, 0]],
    [[1, 1, 1], [1, 0, 1], [0, 0, 1]],
    [[1, 0, 0], [0, 1, 1], [1, 1, 1]],
    [[0, 1, 0], [1, 0, 1], [0, 1, 0]],
]


# --------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def inputs(digits) -> torch.Tensor:
    """Direct-encoded digits test images ``[T, SAMPLES, 1, 8, 8]``."""
    return torch.from_numpy(encode(digits.x_test[:SAMPLES], T))


def neuron_spikes(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Spikes of every neuron layer, in order, for input ``x``."""
    out: list[torch.Tensor] = []
    nodes = [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: out.append(o.detach().clone())) for m in nodes
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        functional.reset_net(model)
        for hook in hooks:
            hook.remove()
    return out


def synapses(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.children() if isinstance(m, layer.Linear | layer.Conv2d)]


def make_active(model: torch.nn.Sequential, x: torch.Tensor, rate: float = 0.01) -> None:
    """Scale each synaptic layer by 1.5 until its neurons fire on >= ``rate`` of steps."""
    for index, syn in enumerate(synapses(model)):
        for _ in range(15):
            if neuron_spikes(model, x)[index].mean().item() >= rate:
                break
            with torch.no_grad():
                syn.weight.mul_(1.5)


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        n = bn.num_features
        bn.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
        bn.running_var.copy_(0.5 + torch.rand(n, generator=gen))
        with torch.no_grad():
            bn.weight.copy_(0.5 + torch.rand(n, generator=gen))
            bn.bias.copy_(0.1 * torch.randn(n, generator=gen))


def prune_by_magnitude(model: torch.nn.Module, sparsity: float = 0.9) -> None:
    """Zero the smallest ``sparsity`` fraction of every synaptic layer's weights, in place."""
    for syn in synapses(model):
        w = syn.weight.detach()
        k = int(round(sparsity * w.numel()))
        cut = w.abs().flatten().kthvalue(k).values
        with torch.no_grad():
            w[w.abs() <= cut] = 0.0


def fake_quantize(model: torch.nn.Sequential, bits: int = 8) -> torch.nn.Sequential:
    """Quantize by hand per conventions §3: BN folded, power-of-two scale per layer."""
    model = (
        fold_batchnorm(model) if any(isinstance(m, torch.nn.BatchNorm2d) for m in model) else model
    )
    children = list(model.children())
    qmax = 2 ** (bits - 1) - 1
    for i, syn in enumerate(children):
        if not isinstance(syn, layer.Linear | layer.Conv2d):
            continue
        node = children[i + 1]
        w = syn.weight.detach().double()
        exp = math.floor(math.log2(qmax / w.abs().max().item()))
        scale = 2.0**-exp
        w_int = torch.clamp(torch.round(w / scale), -qmax, qmax).to(torch.int32)
        threshold_int = round(float(node.v_threshold) / scale)
        with torch.no_grad():
            syn.weight.copy_(w_int.double() * scale)
            syn.register_buffer("weight_int", w_int)
            if syn.bias is not None:
                b_int = torch.round(syn.bias.detach().double() / scale).to(torch.int32)
                syn.bias.copy_(b_int.double() * scale)
                syn.register_buffer("bias_int", b_int)
        node.v_threshold = threshold_int * scale
        syn.neuroprune_weight_bits = bits
        syn.neuroprune_quant = {
            "format": "loihi",
            "bits": bits,
            "weight_scale": scale,
            "weight_exp": -exp,
            "threshold_int": threshold_int,
            "decay_v": 2048,
            "decay_u": None,
            "bias_exp": None,
            "clipped_fraction": 0.0,
            "max_abs_error": 0.0,
            "mean_abs_error": 0.0,
            "notes": ["made by hand in tests"],
        }
    return model


def make_model(spec: str, variant: str, x: torch.Tensor) -> torch.nn.Sequential:
    """``mlp``/``conv`` from the zoo as ``float``, ``pruned`` (90 %) or ``quantized``."""
    model = build_model(spec, (1, 8, 8), 10, hidden=(32,) if spec == "mlp" else (4, 8), seed=1)
    model.eval()
    randomize_batchnorm(model)
    if variant in ("pruned", "quantized"):
        prune_by_magnitude(model, 0.9)
    make_active(model, x)
    return fake_quantize(model) if variant == "quantized" else model


def reference(model: torch.nn.Sequential) -> torch.nn.Sequential:
    """What the exported graph must reproduce: the model with BatchNorm folded."""
    return (
        fold_batchnorm(model) if any(isinstance(m, torch.nn.BatchNorm2d) for m in model) else model
    )


def nonzero_weights(model: torch.nn.Module) -> int:
    return sum(int(torch.count_nonzero(s.weight)) for s in synapses(reference(model)))


CASES = [(s, v) for s in ("mlp", "conv") for v in ("float", "pruned", "quantized")]


# --------------------------------------------------------------------------------------------
# NIR round trip


@pytest.mark.parametrize(("spec", "variant"), CASES)
def test_nir_round_trip_gives_identical_spikes_in_every_layer(tmp_path, inputs, spec, variant):
    model = make_model(spec, variant, inputs)
    path = export_nir(
        model, tmp_path / "m.nir", timesteps=T, encoding="direct", input_shape=(1, 8, 8)
    )
    imported = import_nir(path)
    expected = neuron_spikes(reference(model), inputs)
    got = neuron_spikes(imported.model, inputs)
    assert len(got) == len(expected)
    for layer_spikes, want in zip(got, expected, strict=True):
        assert torch.equal(layer_spikes, want)
    assert all(s.sum() > 0 for s in expected), "every layer must spike for a meaningful test"
    assert (imported.timesteps, imported.encoding) == (T, "direct")


@pytest.mark.parametrize("spec", ["mlp", "conv"])
def test_nir_nonzero_count_equals_model_and_summary(tmp_path, inputs, spec):
    model = make_model(spec, "pruned", inputs)
    path = export_nir(
        model, tmp_path / "m.nir", timesteps=T, encoding="direct", input_shape=(1, 8, 8)
    )
    dense_total = sum(s.weight.numel() for s in synapses(model))
    summary = summarize(model, (1, 8, 8), T)
    assert count_nir_nonzero(path) == nonzero_weights(model)
    assert count_nir_nonzero(path) == sum(layer.kernel_nonzeros for layer in summary.layers)
    assert count_nir_nonzero(path) <= 0.11 * dense_total


def test_nir_weights_are_exact_float32_copies(tmp_path, inputs):
    model = make_model("conv", "pruned", inputs)
    path = export_nir(
        model, tmp_path / "m.nir", timesteps=T, encoding="direct", input_shape=(1, 8, 8)
    )
    graph = read_graph(path)
    weights = [n.weight for k, n in graph.nodes.items() if k.endswith("_syn")]
    for stored, syn in zip(weights, synapses(reference(model)), strict=True):
        assert stored.dtype == np.float32
        assert np.array_equal(stored, syn.weight.detach().numpy())


def test_nir_metadata_follows_conventions(tmp_path, inputs):
    model = make_model("conv", "float", inputs)
    path = export_nir(
        model,
        tmp_path / "m.nir",
        timesteps=T,
        encoding="poisson",
        input_shape=(1, 8, 8),
        chip="loihi",
    )
    graph = read_graph(path)
    meta = graph_metadata(graph)
    assert meta["dt"] == NIR_DT == 2.0**-10
    assert meta["integration"] == "forward_euler" and meta["threshold"] == ">"
    assert meta["reset"] == "hard_zero" and meta["quantized"] is False
    assert (meta["timesteps"], meta["encoding"], meta["chip"]) == (T, "poisson", "loihi")
    assert meta["input_shape"] == (1, 8, 8) and isinstance(meta["neuroprune_version"], str)
    names = topological_order(
        graph, str(path)
    )  # HDF5 returns nodes sorted by name; edges give order
    layers = [f"l0{i}_{part}" for i in range(3) for part in ("1_syn", "2_neuron")]
    assert names == ["input", *layers[:4], "l02_0_flatten", *layers[4:], "output"]
    assert names == sorted(graph.nodes), "names sort in forward order (nirtorch 2.0 needs it)"
    lif = graph.nodes["l00_2_neuron"]
    assert np.all(lif.tau / meta["dt"] == 2.0) and np.all(lif.r == 1.0)
    assert np.all(lif.v_leak == 0.0) and np.all(getattr(lif, "v_reset", 0.0) == 0.0)
    v_th = next(m for m in model if isinstance(m, neuron.BaseNode)).v_threshold
    assert np.all(lif.v_threshold == v_th)  # the model fires on v > v_th, as NIR does
    assert lif.v_threshold.shape == (4, 8, 8)
    assert graph.nodes["l02_0_flatten"].start_dim == 0


def test_nir_files_leave_out_zero_resets_that_nir_1_0_4_cannot_read(tmp_path, inputs):
    """nir 1.0.8 writes every LIF/IF node's ``v_reset`` (zeros when none was given); nir 1.0.4
    (Sinabs' pin) has no such field and refuses the whole file. Export leaves the zeros out and
    1.0.8 reads them back as 0; a nonzero ``v_reset`` in a graph is kept (only zeros mean the
    same when absent). The Sinabs tests read the files on 1.0.4 itself."""
    import h5py

    from neuroprune.graph.write import write_graph

    path = export_nir(
        make_model("conv", "quantized", inputs),
        tmp_path / "q.nir",
        timesteps=T,
        encoding="direct",
        input_shape=(1, 8, 8),
    )
    with h5py.File(path, "r") as handle:
        nodes = handle["node/nodes"]
        kinds = {name: nodes[name]["type"][()].decode() for name in nodes}
        spiking = [name for name, kind in kinds.items() if kind in ("LIF", "IF")]
        assert len(spiking) == 3 and not any("v_reset" in nodes[name] for name in spiking)
    graph = nir.read(path)
    assert all(
        np.array_equal(graph.nodes[n].v_reset, np.zeros(graph.nodes[n].v_threshold.shape))
        for n in spiking
    )

    weight = np.ones((3, 2), np.float32)
    ones = np.ones(3)
    for reset, kept in ((0.0, False), (0.5, True)):
        node = nir.IF(r=ones, v_threshold=ones, v_reset=ones * reset)
        written = write_graph(_single_layer_graph(node, weight, dt=1.0), tmp_path / f"{reset}.nir")
        with h5py.File(written, "r") as handle:
            assert ("v_reset" in handle["node/nodes/0_neuron"]) is kept
        assert np.all(nir.read(written).nodes["0_neuron"].v_reset == reset)


def test_nir_chip_none_is_stored_as_empty_string_and_decoded(tmp_path, inputs):
    model = make_model("mlp", "float", inputs)
    path = export_nir(
        model, tmp_path / "m.nir", timesteps=T, encoding="direct", input_shape=(1, 8, 8)
    )
    assert nir.read(path).metadata["chip"] == ""
    assert import_nir(path).metadata["chip"] is None


def test_quantized_nir_stores_integers_that_reproduce_the_weights(tmp_path, inputs):
    model = make_model("conv", "quantized", inputs)
    path = export_nir(
        model, tmp_path / "q.nir", timesteps=T, encoding="direct", input_shape=(1, 8, 8)
    )
    graph = read_graph(path)
    assert graph_metadata(graph)["quantized"] is True
    syn_nodes = sorted(k for k in graph.nodes if k.endswith("_syn"))
    for name, syn in zip(syn_nodes, synapses(model), strict=True):
        node, meta = graph.nodes[name], node_metadata(graph, name)
        scale = meta["weight_scale"]
        assert meta["neuroprune_quant"] == syn.neuroprune_quant
        weight_int = syn.weight_int.numpy().astype(np.float64)
        assert np.array_equal(node.weight.astype(np.float64), weight_int * scale)
        if syn.bias is not None:
            assert np.array_equal(node.bias.astype(np.float64), syn.bias_int.numpy() * scale)
    neuron_meta = node_metadata(graph, "l00_2_neuron")
    assert neuron_meta["threshold_int"] == synapses(model)[0].neuroprune_quant["threshold_int"]
    imported = import_nir(path).model
    for got, want in zip(synapses(imported), synapses(model), strict=True):
        assert torch.equal(got.weight_int, want.weight_int)
        assert got.neuroprune_quant == want.neuroprune_quant
        assert got.neuroprune_weight_bits == want.neuroprune_weight_bits


def test_export_rejects_a_quantized_layer_whose_weights_disagree_with_its_integers(
    tmp_path, inputs
):
    model = make_model("mlp", "quantized", inputs)
    with torch.no_grad():
        synapses(model)[0].weight[0, 0] += 1e-3
    with pytest.raises(ModelError) as err:
        export_nir(model, tmp_path / "q.nir", timesteps=T, encoding="direct", input_shape=(1, 8, 8))
    assert "weight_int" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "q.nir").exists()


# --------------------------------------------------------------------------------------------
# Neuron mapping details


def make_graph(nodes: dict, edges: list, **meta) -> nir.NIRGraph:
    """A NIRGraph on nir 1.0.4 and 1.0.8 (only 1.0.8 type-checks, and can be told not to)."""
    extra = (
        {"type_check": False} if "type_check" in inspect.signature(nir.NIRGraph).parameters else {}
    )
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, **extra)


def _single_layer_graph(neuron_node_: nir.NIRNode, weight: np.ndarray, **meta) -> nir.NIRGraph:
    nodes = {
        "input": nir.Input(input_type={"input": np.array([weight.shape[1]])}),
        "0_syn": nir.Affine(weight=weight, bias=np.zeros(weight.shape[0], np.float32)),
        "0_neuron": neuron_node_,
        "output": nir.Output(output_type={"output": np.array([weight.shape[0]])}),
    }
    edges = [("input", "0_syn"), ("0_syn", "0_neuron"), ("0_neuron", "output")]
    return make_graph(nodes, edges, **meta)


@pytest.mark.parametrize(
    ("model", "tau", "decay_input"), [("LIF", 3.0, False), ("LIF", 1.7, True), ("IF", None, True)]
)
def test_neuron_mapping_round_trips_spikes(tmp_path, model, tau, decay_input):
    """LIF (both decay_input forms, non-integer tau) and IF through NIR match SpikingJelly."""
    gen = torch.Generator().manual_seed(3)
    weight = (torch.rand(6, 5, generator=gen) * 0.8).numpy().astype(np.float32)
    stage = NeuronStage("1", model, (6,), 1.0, tau, decay_input)
    graph = _single_layer_graph(neuron_node(stage), weight, dt=NIR_DT)
    nir.write(tmp_path / "n.nir", graph)
    imported = import_nir(tmp_path / "n.nir").model
    common = {"v_threshold": 1.0, "v_reset": 0.0, "surrogate_function": surrogate.ATan()}
    node = (
        neurons.IFNode(**common)
        if model == "IF"
        else neurons.LIFNode(tau=tau, decay_input=decay_input, **common)
    )
    fc = layer.Linear(5, 6, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(weight))
    ref = torch.nn.Sequential(fc, node)
    functional.set_step_mode(ref, "m")
    x = (torch.rand(12, 4, 5, generator=gen) < 0.6).float()
    assert torch.equal(neuron_spikes(imported, x)[0], neuron_spikes(ref, x)[0])
    assert neuron_spikes(ref, x)[0].sum() > 0


def test_foreign_nir_without_dt_needs_dt_and_uses_strict_threshold(tmp_path):
    weight = np.eye(3, dtype=np.float32)
    lif = nir.LIF(
        tau=np.full(3, 2e-3),
        r=np.ones(3),
        v_leak=np.zeros(3),
        v_threshold=np.ones(3),
    )
    nir.write(tmp_path / "f.nir", _single_layer_graph(lif, weight))
    with pytest.raises(UnsupportedError) as err:
        import_nir(tmp_path / "f.nir")
    assert err.value.field == "metadata.dt"
    imported = import_nir(tmp_path / "f.nir", dt=1e-3)
    node = imported.model[1]
    assert node.tau == 2.0 and node.decay_input is True
    assert node.v_threshold == 1.0  # NIR and neuroprune both fire on v > v_th


def _cuba(tau_syn: float) -> nir.CubaLIF:
    return nir.CubaLIF(
        tau_syn=np.full(2, tau_syn),
        tau_mem=np.full(2, 4 * NIR_DT),
        r=np.full(2, 1.0),
        v_leak=np.zeros(2),
        v_threshold=np.ones(2),
        w_in=np.full(2, 2.0),
    )


def test_cuba_lif_with_an_instant_synapse_is_a_lif(tmp_path):
    """tau_syn = dt: forward Euler gives I = w_in S at once, so CubaLIF is LIF with r*w_in."""
    weight = np.full((2, 2), 0.4, dtype=np.float32)
    nir.write(tmp_path / "c.nir", _single_layer_graph(_cuba(NIR_DT), weight, dt=NIR_DT))
    model = import_nir(tmp_path / "c.nir").model
    spikes = neuron_spikes(model, torch.ones(6, 1, 2))[0][:, 0, 0].tolist()
    v, expected = 0.0, []
    for _ in range(6):  # tau_mem = 4 steps, input current w_in * (0.4 + 0.4) = 1.6
        v += (1.6 - v) / 4
        expected.append(float(v > 1.0 - 1e-9))
        v = 0.0 if expected[-1] else v
    assert spikes == expected and sum(expected) > 0


def test_cuba_lif_with_a_slow_synapse_is_named_as_unsupported(tmp_path):
    weight = np.full((2, 2), 0.3, dtype=np.float32)
    nir.write(tmp_path / "c.nir", _single_layer_graph(_cuba(2 * NIR_DT), weight, dt=NIR_DT))
    with pytest.raises(UnsupportedError) as err:
        import_nir(tmp_path / "c.nir")
    assert "'0_neuron' (CubaLIF)" in _one_line(err)


# --------------------------------------------------------------------------------------------
# ONNX


@pytest.mark.parametrize(
    ("spec", "variant"), [("mlp", "float"), ("conv", "pruned"), ("conv", "quantized")]
)
def test_onnx_runtime_matches_torch(tmp_path, inputs, spec, variant):
    onnx = pytest.importorskip("onnx")
    model = make_model(spec, variant, inputs)
    path = export_onnx(model, tmp_path / "m.onnx", timesteps=T, input_shape=(1, 8, 8))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["timesteps"] == str(T)
    got = run_onnx(path, inputs.numpy())  # batch 48, exported with an example batch of 2
    want = neuron_spikes(reference(model), inputs)[-1].numpy()
    assert got.shape == (T, SAMPLES, 10)
    assert float(np.max(np.abs(got - want))) <= 1e-5
    assert want.sum() > 0


# --------------------------------------------------------------------------------------------
# Golden file


def _golden_module():
    spec = importlib.util.spec_from_file_location("make_golden", DATA_DIR / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("file", "expected"),
    [("golden_tiny.nir", GOLDEN_SPIKES), ("golden_tiny_ge.nir", GOLDEN_SPIKES_GE)],
)
def test_golden_tiny_nir_imports_to_the_expected_spikes(file, expected):
    golden = _golden_module()
    imported = import_nir(DATA_DIR / file)
    spikes = neuron_spikes(imported.model, golden.golden_input())[-1]
    assert spikes.to(torch.int64).tolist() == expected
    assert imported.metadata["chip"] == "loihi" and imported.metadata["quantized"] is True


@pytest.mark.parametrize(
    ("file", "expected"),
    [("golden_tiny.nir", GOLDEN_SPIKES), ("golden_tiny_ge.nir", GOLDEN_SPIKES_GE)],
)
def test_golden_spikes_equal_the_numpy_reference(file, expected):
    from neuroprune.sim.reference import float_current, float_step
    from neuroprune.sim.spec import read_deployment

    spec = read_deployment(DATA_DIR / file)
    x = _golden_module().golden_input().numpy().reshape(4, 3, -1)
    v = [np.zeros((3, layer.neurons)) for layer in spec.layers]
    out = []
    for t in range(4):
        spikes = x[t]
        for k, spec_layer in enumerate(spec.layers):
            spikes = float_step(spec_layer, v[k], float_current(spec_layer, spikes))
        out.append(spikes.astype(np.int64).tolist())
    assert out == expected


def test_exporter_still_writes_the_golden_graph(tmp_path):
    golden = _golden_module()
    fresh = read_graph(golden.export_golden(tmp_path / "g.nir"))
    stored = read_graph(DATA_DIR / "golden_tiny.nir")
    assert list(fresh.nodes) == list(stored.nodes) and fresh.edges == stored.edges
    for name, node in stored.nodes.items():
        for key in ("weight", "bias", "tau", "r", "v_threshold", "v_leak", "v_reset"):
            if hasattr(node, key):
                assert np.array_equal(getattr(fresh.nodes[name], key), getattr(node, key)), (
                    name,
                    key,
                )
    old, new = graph_metadata(stored), graph_metadata(fresh)
    old.pop("neuroprune_version"), new.pop("neuroprune_version")
    assert old == new


# --------------------------------------------------------------------------------------------
# Bad files: one-line errors


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_truncated_nir_is_an_artifact_error_naming_the_file(tmp_path):
    data = (DATA_DIR / "golden_tiny.nir").read_bytes()
    bad = tmp_path / "truncated.nir"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError) as err:
        import_nir(bad)
    assert str(bad) in _one_line(err)


def test_missing_nir_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError) as err:
        import_nir(tmp_path / "nope.nir")
    assert "nope.nir" in _one_line(err)


def test_unsupported_node_type_is_named(tmp_path):
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "0_syn": nir.Affine(weight=np.eye(3, dtype=np.float32), bias=np.zeros(3, np.float32)),
        "wait": nir.Delay(delay=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "0_syn"), ("0_syn", "wait"), ("wait", "output")]
    nir.write(tmp_path / "d.nir", make_graph(nodes, edges))
    with pytest.raises(UnsupportedError) as err:
        import_nir(tmp_path / "d.nir")
    text = _one_line(err)
    assert "'wait'" in text and "Delay" in text
    assert (err.value.field, err.value.value) == ("wait.type", "Delay")


def test_mismatched_shapes_name_the_edge_and_both_shapes(tmp_path):
    lif = neuron_node(NeuronStage("1", "LIF", (16,), 1.0, 2.0, True))
    graph = _single_layer_graph(lif, np.ones((32, 64), np.float32), dt=NIR_DT)
    graph.nodes["output"] = nir.Output(output_type={"output": np.array([16])})
    nir.write(tmp_path / "s.nir", graph)
    with pytest.raises(ArtifactError) as err:
        import_nir(tmp_path / "s.nir")
    text = _one_line(err)
    assert "'0_neuron' (LIF)" in text and "(32,)" in text and "(16,)" in text


# --------------------------------------------------------------------------------------------
# Registry contract and argument checks


CHIP_OF_FORMAT = {"rockpool-nir": "xylo", "netx": "loihi", "pynn": "spinnaker"}
"""Formats that hold one chip's integers: Rockpool's Xylo file, lava-dl's netx, sPyNNaker's."""
SPIKE_INPUT_FORMATS = ("pynn",)  # a SpikeSourceArray feeds the first population


@pytest.mark.parametrize("name", sorted(EXPORTERS))
def test_every_exporter_writes_one_file_atomically_and_reports_progress(tmp_path, inputs, name):
    fmt = get_exporter(name)
    assert fmt.name == name and fmt.suffix.startswith(".")
    events: list[dict] = []
    model = make_model("mlp", "float", inputs)
    chip = CHIP_OF_FORMAT.get(name)
    if chip is not None:
        model = ptq_model(model, load_profile(chip), (1, 8, 8))[0]
    target = tmp_path / f"model{fmt.suffix}"
    out = fmt.export(
        model,
        target,
        timesteps=4,
        encoding="latency" if name in SPIKE_INPUT_FORMATS else "direct",
        input_shape=(1, 8, 8),
        chip=chip,
        progress=events.append,
    )
    assert out == target and target.stat().st_size > 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([target.name, *(target.stem + c for c in fmt.companions)])
    assert len(events) == 1 and events[0]["format"] == name and events[0]["path"] == str(target)


def test_unknown_format_and_bad_arguments_are_config_errors(tmp_path, inputs):
    with pytest.raises(ConfigError) as err:
        get_exporter("onx")
    assert "onnx" in _one_line(err)
    model = make_model("mlp", "float", inputs)
    bad = [{"timesteps": 0}, {"encoding": "rate"}, {"input_shape": ()}]
    for override in bad:
        kwargs = {"timesteps": T, "encoding": "direct", "input_shape": (1, 8, 8), **override}
        with pytest.raises(ConfigError):
            export_nir(model, tmp_path / "m.nir", **kwargs)
    assert not (tmp_path / "m.nir").exists()


def test_models_outside_the_convention_are_rejected(tmp_path):
    model = torch.nn.Sequential(layer.Flatten(), layer.Linear(64, 10, bias=False), torch.nn.ReLU())
    functional.set_step_mode(model, "m")
    with pytest.raises(ModelError):
        export_nir(model, tmp_path / "m.nir", timesteps=T, encoding="direct", input_shape=(1, 8, 8))


def _lif(n: int) -> nir.LIF:
    return nir.LIF(
        tau=np.full(n, 2 * NIR_DT), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n)
    )


def _affine(n_out: int, n_in: int) -> nir.Affine:
    return nir.Affine(weight=np.ones((n_out, n_in), np.float32), bias=np.zeros(n_out, np.float32))


@pytest.mark.parametrize(
    ("case", "node", "kind"),
    [
        ("recurrent", "0_neuron", "LIF"),
        ("two_inputs", "Input", "Input"),
        ("merge", "0_syn", "Affine"),
    ],
)
def test_graphs_that_are_not_one_chain_are_named(tmp_path, case, node, kind):
    """A recurrent edge, a second input, or two edges into one node: one line naming the node."""
    nodes = {"input": nir.Input(input_type={"input": np.array([3])}), "0_syn": _affine(3, 3)}
    nodes |= {"0_neuron": _lif(3), "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "0_syn"), ("0_syn", "0_neuron"), ("0_neuron", "output")]
    if case == "recurrent":
        nodes["rec"] = _affine(3, 3)
        edges += [("0_neuron", "rec"), ("rec", "0_neuron")]
    elif case == "two_inputs":
        nodes["input2"] = nir.Input(input_type={"input": np.array([3])})
        edges.append(("input2", "0_syn"))
    else:
        nodes["skip"] = _affine(3, 3)
        edges += [("input", "skip"), ("skip", "0_syn")]
    nir.write(tmp_path / "g.nir", make_graph(nodes, edges, dt=NIR_DT))
    with pytest.raises(UnsupportedError) as err:
        import_nir(tmp_path / "g.nir")
    text = _one_line(err)
    assert node in text and kind in text


def test_per_neuron_thresholds_are_named(tmp_path):
    lif = _lif(3)
    lif.v_threshold = np.array([1.0, 2.0, 1.0])
    nir.write(tmp_path / "p.nir", _single_layer_graph(lif, np.eye(3, dtype=np.float32), dt=NIR_DT))
    with pytest.raises(UnsupportedError) as err:
        import_nir(tmp_path / "p.nir")
    assert "'0_neuron' (LIF)" in _one_line(err) and err.value.field == "0_neuron.v_threshold"
