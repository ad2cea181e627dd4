"""Residual graphs and pooling through the NIR importer (GraphNet) and ONNX.

Graphs are made by hand as stages + inputs and written with ``nirgraph.build_graph``. Oracle:
``tests/nir_spec.py`` (NumPy, from NIR's spec text) on the written file; it shares no code
with the importer or the ONNX unroll. Every weight is a small integer times 2**-3 (or the
quantized layer's power-of-two scale), inputs are 0/1 and LIF taus are 2 or 4, so float32
(torch, onnxruntime) and float64 (oracle) potentials are the same dyadic numbers and the
spikes must agree exactly, step by step.

Worked example of the ADD (case "residual", stage 6): the Flatten reads
``inputs[6] == (5, 1)``, so per step it flattens ``s5 + s1``, the SEW block's output spikes
plus the block's input spikes, values in {0, 1, 2} (NIR: two edges into one node sum).
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from interop_runners import output_spikes
from nir_spec import read as spec_read
from nir_spec import simulate as spec_simulate
from spikingjelly.activation_based import functional, layer, neuron

from neuroprune.core.errors import ConfigError, ModelError, UnsupportedError
from neuroprune.export import export_onnx, export_onnx_graph, import_nir, run_onnx
from neuroprune.graph.read import read_network
from neuroprune.graph.stages import (
    NIR_DT,
    FlattenStage,
    NeuronStage,
    PoolStage,
    QuantStage,
    Stage,
    SynapseStage,
)
from neuroprune.graph.write import build_graph, write_graph
from neuroprune.models.graph_net import GraphNet
from neuroprune.models.nir_model import load_nir_model, model_from_network
from neuroprune.sim.torch_reference import model_counts

torch.set_num_threads(1)

T = 8
N = 5
STEP = 2.0**-3  # float layers: weights are integers times STEP
QSCALE = 2.0**-4  # quantized layers: weight_scale (integers doubled)


# --------------------------------------------------------------------------------------------
# Hand-made stage graphs


def _quant(weight_int: np.ndarray, threshold_int: int) -> QuantStage:
    """Conventions §3 integers and the ``neuroprune_quant`` dict export/stages.py carries."""
    params = {
        "format": "loihi",
        "bits": 8,
        "weight_scale": QSCALE,
        "weight_exp": -4,
        "threshold_int": threshold_int,
        "decay_v": None,
        "decay_u": None,
        "bias_exp": None,
        "clipped_fraction": 0.0,
        "max_abs_error": 0.0,
        "mean_abs_error": 0.0,
        "notes": [],
    }
    return QuantStage(weight_int.astype(np.int32), None, 8, params)


class Maker:
    """(synapse, neuron) pairs with dyadic weights; ``quantized`` adds the integers, with
    ``v_th = threshold_int * weight_scale``. ``neuron`` is ``(model, v_th, tau)``."""

    def __init__(self, seed: int, quantized: bool) -> None:
        self.rng = np.random.default_rng(seed)
        self.quantized = quantized
        self.count = 0

    def conv(self, c_in, c_out, hw, neuron, low=-2, high=4) -> list[Stage]:
        shapes = {"in_shape": (c_in, hw, hw), "out_shape": (c_out, hw, hw), "padding": 1}
        return self._pair("conv", (c_out, c_in, 3, 3), low, high, neuron, shapes)

    def dense(self, n_in, n_out, neuron, low=-3, high=3) -> list[Stage]:
        shapes = {"in_shape": (n_in,), "out_shape": (n_out,)}
        return self._pair("dense", (n_out, n_in), low, high, neuron, shapes)

    def _pair(self, kind, shape, low, high, neuron, shapes) -> list[Stage]:
        model, v_th, tau = neuron
        name = f"syn{self.count}"
        self.count += 1
        integers = self.rng.integers(low, high + 1, size=shape)
        weight = (integers * STEP).astype(np.float32)
        quant, threshold_int = None, None
        if self.quantized:  # the same values: integers * 2, weight_scale = STEP / 2
            threshold_int = int(v_th / QSCALE)
            quant = _quant(2 * integers, threshold_int)
        syn = SynapseStage(name, kind, weight, None, quant=quant, **shapes)
        return [
            syn,
            NeuronStage(f"{name}_sn", model, syn.out_shape, v_th, tau, True, threshold_int, True),
        ]


def residual(quantized: bool = False):
    """conv -> LIF, SEW block (conv -> LIF -> conv -> IF) ADDed to its input, Flatten ->
    Affine -> LIF. Input (2, 6, 6)."""
    m = Maker(1, quantized)
    stages = [
        *m.conv(2, 4, 6, ("LIF", 1.0, 2.0), -1, 6),
        *m.conv(4, 4, 6, ("LIF", 0.75, 4.0), -2, 4),
        *m.conv(4, 4, 6, ("IF", 1.5, None), -2, 3),
        FlattenStage("flatten", (4, 6, 6)),
        *m.dense(144, 5, ("LIF", 1.0, 2.0), -3, 4),
    ]
    inputs = [(-1,), (0,), (1,), (2,), (3,), (4,), (5, 1), (6,), (7,)]
    return stages, inputs, (2, 6, 6)


def input_add():
    """conv -> LIF whose spikes are ADDed to the network input, read by conv -> LIF ->
    Flatten -> Affine -> IF. Input (2, 6, 6)."""
    m = Maker(2, False)
    stages = [
        *m.conv(2, 2, 6, ("LIF", 1.0, 2.0), -1, 6),
        *m.conv(2, 3, 6, ("LIF", 1.25, 2.0), -1, 5),
        FlattenStage("flatten", (3, 6, 6)),
        *m.dense(108, 4, ("IF", 1.0, None)),
    ]
    inputs = [(-1,), (0,), (1, -1), (2,), (3,), (4,), (5,)]
    return stages, inputs, (2, 6, 6)


def dense_residual():
    """Flatten -> Affine -> LIF -> Affine -> LIF, whose spikes are ADDed to the first LIF's,
    read by Affine -> IF. Input (1, 4, 4); the file has no Flatten node (its Input is flat),
    the importer puts it back from the metadata's input_shape."""
    m = Maker(4, False)
    stages = [
        FlattenStage("flatten", (1, 4, 4)),
        *m.dense(16, 12, ("LIF", 1.0, 2.0), -1, 6),
        *m.dense(12, 12, ("LIF", 0.75, 2.0), -2, 5),
        *m.dense(12, 4, ("IF", 1.0, None), -2, 4),
    ]
    inputs = [(-1,), (0,), (1,), (2,), (3,), (4, 2), (5,)]
    return stages, inputs, (1, 4, 4)


def pooled(kind: str, quantized: bool = False):
    """conv -> LIF -> {Sum,Avg}Pool2d(2) -> conv -> LIF -> Flatten -> Affine -> LIF (a chain).
    Input (2, 8, 8)."""
    m = Maker(3, quantized)
    stages = [
        *m.conv(2, 4, 8, ("LIF", 1.0, 2.0), -1, 6),
        PoolStage("pool", kind, 2, (4, 8, 8)),
        *m.conv(4, 4, 4, ("LIF", 1.0, 2.0), -2, 3 if kind == "sum" else 8),
        FlattenStage("flatten", (4, 4, 4)),
        *m.dense(64, 5, ("LIF", 0.75, 2.0), -3, 4),
    ]
    return stages, [(i - 1,) for i in range(len(stages))], (2, 8, 8)


CASES = {
    "residual": lambda: residual(False),
    "residual_quantized": lambda: residual(True),
    "input_add": input_add,
    "dense_residual": dense_residual,
    "sumpool": lambda: pooled("sum"),
    "avgpool": lambda: pooled("avg"),
    "sumpool_quantized": lambda: pooled("sum", True),
}


def write(case: str, path, dt: float = NIR_DT):
    stages, inputs, shape = CASES[case]()
    graph = build_graph(
        stages, input_shape=shape, timesteps=T, encoding="direct", inputs=inputs, dt=dt
    )
    write_graph(graph, path)
    return stages, inputs, shape


def spikes_in(shape) -> np.ndarray:
    """0/1 input ``[T, N, *shape]`` at a rate of 0.3."""
    rng = np.random.default_rng(7)
    return (rng.random((T, N, *shape)) < 0.3).astype(np.float32)


def oracle(path, x: np.ndarray) -> list[np.ndarray]:
    """Per spiking node, in forward (= sorted name) order, spikes ``[T, N, ...]``."""
    graph = spec_read(path)
    out = spec_simulate(graph, x, float(graph.metadata["dt"]))
    names = sorted(n for n, node in graph.nodes.items() if type(node).__name__ in ("LIF", "IF"))
    return [out[n] for n in names]


def neuron_spikes(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    """Spikes of every SpikingJelly neuron module, in registration order."""
    out: list[np.ndarray] = []
    nodes = [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    hooks = [n.register_forward_hook(lambda _m, _i, o: out.append(o.numpy().copy())) for n in nodes]
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(x))
    finally:
        functional.reset_net(model)
        for hook in hooks:
            hook.remove()
    return out


def assert_active(layers: list[np.ndarray]) -> None:
    """Every layer fires sometimes and is silent sometimes: equality is not of zeros."""
    rates = [float(s.mean()) for s in layers]
    assert all(0.0 < r < 1.0 for r in rates), rates


# --------------------------------------------------------------------------------------------
# Importer: NIR file -> GraphNet / Sequential, spikes == oracle


@pytest.mark.parametrize("case", list(CASES))
def test_imported_model_spikes_equal_the_oracle_per_layer_and_step(tmp_path, case):
    stages, _, shape = write(case, tmp_path / "g.nir")
    x = spikes_in(shape)
    want = oracle(tmp_path / "g.nir", x)
    model = import_nir(tmp_path / "g.nir").model
    got = neuron_spikes(model, x)
    assert len(got) == len(want) == sum(isinstance(s, NeuronStage) for s in stages)
    for layer_got, layer_want in zip(got, want, strict=True):
        assert np.array_equal(layer_got, layer_want)
    assert_active(want)


def test_a_residual_graph_becomes_a_graphnet_and_a_pooled_chain_a_sequential(tmp_path):
    write("residual", tmp_path / "r.nir")
    write("sumpool", tmp_path / "s.nir")
    write("avgpool", tmp_path / "a.nir")
    assert isinstance(import_nir(tmp_path / "r.nir").model, GraphNet)
    pools = []
    for name in ("s", "a"):
        model = import_nir(tmp_path / f"{name}.nir").model
        assert isinstance(model, torch.nn.Sequential)
        pools += [m for m in model if isinstance(m, layer.AvgPool2d)]
    assert [(p.kernel_size, p.stride, p.divisor_override) for p in pools] == [
        (2, 2, 1),  # SumPool2d: the window sum
        (2, 2, None),  # AvgPool2d: the window mean
    ]


def test_a_flat_input_graph_gets_its_flatten_back(tmp_path):
    write("dense_residual", tmp_path / "g.nir")
    kinds = {type(n).__name__ for n in nir.read(tmp_path / "g.nir").nodes.values()}
    model = import_nir(tmp_path / "g.nir").model
    assert "Flatten" not in kinds and isinstance(model, GraphNet)
    assert isinstance(next(iter(model.layers.values())), layer.Flatten)
    assert model.inputs == tuple(dense_residual()[1])  # the graph written, Flatten included


def test_model_counts_hooks_the_graph_in_nir_layer_order(tmp_path):
    write("residual", tmp_path / "g.nir")
    x = spikes_in((2, 6, 6))
    want = [s.sum(0).reshape(N, -1) for s in oracle(tmp_path / "g.nir", x)]
    counts = model_counts(import_nir(tmp_path / "g.nir").model, x)
    assert [c.shape for c in counts] == [w.shape for w in want]
    assert all(np.array_equal(c, w) for c, w in zip(counts, want, strict=True))


# --------------------------------------------------------------------------------------------
# ONNX: the unrolled graph in onnxruntime == oracle


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_of_the_stage_graph_equals_the_oracle(tmp_path, case):
    pytest.importorskip("onnxruntime")
    stages, inputs, shape = write(case, tmp_path / "g.nir")
    path = export_onnx_graph(stages, inputs, tmp_path / "g.onnx", timesteps=T, input_shape=shape)
    x = spikes_in(shape)
    want = oracle(tmp_path / "g.nir", x)[-1]
    got = run_onnx(path, x)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert 0 < want.mean() < 1


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_of_an_imported_graphnet_equals_the_oracle(tmp_path, case):
    pytest.importorskip("onnxruntime")
    *_, shape = write(case, tmp_path / "g.nir")
    model = model_from_network(read_network(tmp_path / "g.nir"), as_graph=True).model
    path = export_onnx(model, tmp_path / "g.onnx", timesteps=T, input_shape=shape)
    x = spikes_in(shape)
    assert np.array_equal(run_onnx(path, x), oracle(tmp_path / "g.nir", x)[-1])


# --------------------------------------------------------------------------------------------
# GraphNet.stage_graph -> build_graph -> the same file


def _fields(node) -> dict:
    return {k: v for k, v in vars(node).items() if k not in ("metadata",)}


def assert_same_graph(a, b) -> None:
    """Node for node: names, types, every array field bit for bit; edges; metadata."""
    assert sorted(a.nodes) == sorted(b.nodes)
    for name in a.nodes:
        fa, fb = _fields(a.nodes[name]), _fields(b.nodes[name])
        assert type(a.nodes[name]) is type(b.nodes[name]) and fa.keys() == fb.keys(), name
        for key in fa:
            va, vb = fa[key], fb[key]
            if isinstance(va, dict):
                assert va.keys() == vb.keys()
                assert all(np.array_equal(va[k], vb[k]) for k in va), (name, key)
            else:
                va, vb = np.asarray(va), np.asarray(vb)
                assert va.dtype == vb.dtype and va.tobytes() == vb.tobytes(), (name, key)
    assert sorted(a.edges) == sorted(b.edges)
    assert {k: str(v) for k, v in a.metadata.items()} == {k: str(v) for k, v in b.metadata.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_stage_graph_writes_the_same_file_back(tmp_path, case):
    *_, shape = write(case, tmp_path / "a.nir")
    network = read_network(tmp_path / "a.nir")
    model = model_from_network(network, as_graph=True).model
    stages, inputs = model.stage_graph(shape)
    graph = build_graph(
        stages, input_shape=shape, timesteps=T, encoding="direct", inputs=inputs, dt=NIR_DT
    )
    write_graph(graph, tmp_path / "b.nir")
    assert_same_graph(nir.read(tmp_path / "a.nir"), nir.read(tmp_path / "b.nir"))


def test_stage_graph_carries_changed_weights(tmp_path):
    written, _, shape = write("residual", tmp_path / "a.nir")
    model = import_nir(tmp_path / "a.nir").model
    with torch.no_grad():
        model.layers["syn0"].weight.mul_(0.5)
        model.layers["syn0_sn"].v_threshold = 0.5
    stages, _ = model.stage_graph(shape)
    assert np.array_equal(stages[0].weight, written[0].weight * 0.5)
    assert stages[1].v_threshold == 0.5 and stages[1].tau == 2.0


# --------------------------------------------------------------------------------------------
# Other tools' importers: only what runs identically (README, "NIR files in other tools")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["residual", "input_add", "sumpool", "sumpool_quantized"])
def test_norse_runs_residual_adds_and_sum_pooling_identically(tmp_path, case):
    """Norse 1.1 (nirtorch's GraphExecutor sums the edges into a node; SumPool2d becomes
    LPPool2d(norm_type=1), a sum for spikes): output spikes == oracle, step by step."""
    pytest.importorskip("norse")
    *_, shape = write(case, tmp_path / "g.nir")
    x = spikes_in(shape)
    want = oracle(tmp_path / "g.nir", x)[-1].reshape(T, N, -1)
    assert np.array_equal(output_spikes("norse", tmp_path / "g.nir", x, dt=NIR_DT), want)


@pytest.mark.slow
def test_snntorch_runs_an_avgpool_chain_identically(tmp_path):
    """snnTorch 1.0 maps AvgPool2d (not SumPool2d) and, with its own dt = 1e-4 s, LIF."""
    pytest.importorskip("snntorch")
    *_, shape = write("avgpool", tmp_path / "g.nir", dt=1e-4)
    x = spikes_in(shape)
    want = oracle(tmp_path / "g.nir", x)[-1].reshape(T, N, -1)
    assert np.array_equal(output_spikes("snntorch", tmp_path / "g.nir", x), want)


# --------------------------------------------------------------------------------------------
# One-line errors


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_residual_graph_cannot_start_a_run_yet(tmp_path):
    *_, shape = write("residual", tmp_path / "g.nir")
    with pytest.raises(UnsupportedError) as err:
        load_nir_model(tmp_path / "g.nir", input_shape=shape, num_classes=5)
    assert "residual ADD" in _one_line(err) and err.value.value == "l03_0_flatten"


def test_a_pooled_chain_starts_a_run(tmp_path):
    *_, shape = write("sumpool", tmp_path / "g.nir")
    imported = load_nir_model(tmp_path / "g.nir", input_shape=shape, num_classes=5)
    pools = [m for m in imported.model.modules() if isinstance(m, torch.nn.AvgPool2d)]
    assert len(pools) == 1 and pools[0].divisor_override == 1


def test_stage_graph_names_a_wrong_input_shape_and_broken_integers(tmp_path):
    write("residual_quantized", tmp_path / "g.nir")
    model = import_nir(tmp_path / "g.nir").model
    with pytest.raises(ConfigError) as err:
        model.stage_graph((2, 8, 8))
    assert "syn0" in _one_line(err)
    with torch.no_grad():
        model.layers["syn1"].weight.add_(2.0**-9)
    with pytest.raises(ModelError) as err:
        model.stage_graph((2, 6, 6))
    assert "syn1" in _one_line(err) and err.value.field == "weight_int"


def test_onnx_graph_rejects_forward_references_and_mismatched_sums(tmp_path):
    stages, inputs, shape = residual()
    bad = [list(s) for s in inputs]
    bad[2] = [3]  # reads a later stage
    with pytest.raises(ConfigError) as err:
        export_onnx_graph(stages, bad, tmp_path / "g.onnx", timesteps=T, input_shape=shape)
    assert err.value.field == "inputs" and "\n" not in str(err.value)
    bad = [list(s) for s in inputs]
    bad[7] = [6, 5]  # a flat (144,) map plus a (4, 6, 6) map
    with pytest.raises(ConfigError) as err:
        export_onnx_graph(stages, bad, tmp_path / "g.onnx", timesteps=T, input_shape=shape)
    assert err.value.field == "inputs[7]" and "syn3" in _one_line(err)
    assert not (tmp_path / "g.onnx").exists()


def test_graphnet_rejects_sources_that_are_not_earlier_stages():
    stages, inputs, _ = residual()
    modules = {f"m{i}": torch.nn.Identity() for i in range(len(stages))}
    with pytest.raises(ConfigError) as err:
        GraphNet(modules, stages, [*inputs[:-1], (8,)])
    assert err.value.field == "inputs"


def test_pooling_the_importer_cannot_build_is_named(tmp_path):
    write("sumpool", tmp_path / "g.nir")
    graph = nir.read(tmp_path / "g.nir")
    graph.nodes["l01_0_pool"].stride = np.array([1, 1])
    nir.write(tmp_path / "bad.nir", graph)
    with pytest.raises(UnsupportedError) as err:
        import_nir(tmp_path / "bad.nir")
    assert "'l01_0_pool' (SumPool2d)" in _one_line(err)
