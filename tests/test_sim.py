"""neuroprune.sim: NIR reading, the reference and Lava backends, robustness of the Lava worker.

The oracle chain: SpikingJelly model (torch) == reference float (numpy) == Lava floating_pt,
spike count for spike count per layer; reference fixed == Lava fixed_pt bit for bit on
quantized nets. Lava tests are marked ``lava`` (and ``slow``); each Lava run takes 1-3 s.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from spikingjelly.activation_based import functional, layer, surrogate

from neuroprune.chip.arithmetic import trunc_decay, wrap24
from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import (
    ArtifactError,
    BackendUnavailableError,
    ConfigError,
    DatasetError,
    SimulationError,
    UnsupportedError,
)
from neuroprune.data.encoding import encode
from neuroprune.export import export_nir
from neuroprune.models import neurons
from neuroprune.models.zoo import build_model
from neuroprune.quantize.model import ptq_model
from neuroprune.sim import (
    SIM_BACKENDS,
    LavaBackend,
    SimBackend,
    lava_backend,
    prepare_stimulus,
    read_deployment,
    simulate,
)
from neuroprune.sim.lava_map import LavaLayer, fixed_layer, lava_effective_weights
from neuroprune.sim.lava_worker import OWNER_ENV
from neuroprune.sim.torch_reference import model_counts

torch.set_num_threads(1)

LAVA = [pytest.mark.lava, pytest.mark.slow]
T = 8
N = 40
SHAPE = (1, 8, 8)
WORKER = "neuroprune.sim.lava_worker"


# --------------------------------------------------------------------------------------------
# Models and NIR files (zoo + exporter; weights scaled up so that every layer spikes untrained)


def scaled(model: torch.nn.Module, factor: float) -> torch.nn.Module:
    """Weights times ``factor``; BatchNorm gets non-trivial statistics (a folded bias)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (layer.Linear, layer.Conv2d)):
                module.weight.mul_(factor)
            if isinstance(module, layer.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(size, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(size, generator=gen))
                module.bias.copy_(0.1 * torch.randn(size, generator=gen))
    return model.eval()


def zoo(spec: str, hidden, factor: float, neuron_kind: str = "lif") -> torch.nn.Module:
    model = build_model(spec, SHAPE, 10, hidden=hidden, neuron=neuron_kind, seed=0)
    return scaled(model, factor)


def hand_quantized() -> torch.nn.Module:
    """LIF(tau=2) with bias, then IF with bias; integer weights set by hand (convention §3)."""
    rng = np.random.default_rng(1)
    model = torch.nn.Sequential(
        layer.Flatten(),
        layer.Linear(64, 32, bias=True),
        neurons.LIFNode(
            tau=2.0, v_reset=0.0, detach_reset=True, surrogate_function=surrogate.ATan()
        ),
        layer.Linear(32, 10, bias=True),
        neurons.IFNode(v_reset=0.0, detach_reset=True, surrogate_function=surrogate.ATan()),
    )
    scale, thresholds = 2.0**-5, (60, 40)
    for syn, node, k in ((model[1], model[2], thresholds[0]), (model[3], model[4], thresholds[1])):
        w_int = rng.integers(-40, 41, size=tuple(syn.weight.shape)).astype(np.int32)
        b_int = rng.integers(-4, 5, size=syn.weight.shape[0]).astype(np.int32)
        syn.weight.data = torch.tensor(w_int * scale, dtype=torch.float32)
        syn.bias.data = torch.tensor(b_int * scale, dtype=torch.float32)
        syn.register_buffer("weight_int", torch.tensor(w_int))
        syn.register_buffer("bias_int", torch.tensor(b_int))
        syn.neuroprune_weight_bits = 8
        syn.neuroprune_quant = {
            "format": "loihi",
            "bits": 8,
            "weight_scale": scale,
            "weight_exp": -5,
            "threshold_int": k,
            "notes": [],
        }
        node.v_threshold = k * scale
    functional.set_step_mode(model, "m")
    return model.eval()


def write_nir(model, path: Path, encoding: str = "poisson") -> Path:
    return export_nir(model, path, timesteps=T, encoding=encoding, input_shape=SHAPE)


def without_decay_input(model: torch.nn.Module, path: Path, out: Path):
    """The model with LIF ``decay_input=False`` and its NIR file (``r = tau_sj``, written by
    patching the exported graph: the exporter only takes the convention's decay_input=True)."""
    graph = nir.read(str(path))
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            node.r = node.tau / 2.0**-10
            node.metadata["decay_input"] = False
    nir.write(str(out), graph)
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, neurons.LIFNode):
            module.decay_input = False
    return twin, out


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Float and quantized test nets and their NIR files (exported once per module)."""
    out = tmp_path_factory.mktemp("sim")
    loihi = load_profile("loihi")
    mlp = zoo("mlp", (32,), 6.0)
    conv = zoo("conv", (4, 8), 8.0)
    mlp_if = zoo("mlp", (32,), 2.0, "if")
    qmlp = ptq_model(zoo("mlp", (32,), 6.0), loihi, SHAPE)[0]
    qconv = ptq_model(zoo("conv", (4, 8), 8.0), loihi, SHAPE)[0]
    hand = hand_quantized()
    models = {
        "mlp": mlp,
        "conv": conv,
        "mlp_if": mlp_if,
        "qmlp": qmlp,
        "qconv": qconv,
        "hand": hand,
    }
    files = {name: write_nir(m, out / f"{name}.nir") for name, m in models.items()}
    for name, source in (("nodin", "mlp"), ("hand_nodin", "hand")):
        twin, path = without_decay_input(models[source], files[source], out / f"{name}.nir")
        models[name], files[name] = twin, path
    return models, files


@pytest.fixture(scope="module")
def inputs(digits):
    x = digits.x_test[:N]
    return {"poisson": encode(x, T, "poisson", seed=3), "direct": encode(x, T, "direct")}


def assert_active(counts) -> None:
    """Every layer must spike somewhere, or the comparison would prove nothing."""
    assert all(int(np.sum(c)) > 0 for c in counts), [int(np.sum(c)) for c in counts]


def worker_processes() -> list[int]:
    """Live Lava workers started by this test process and their forked Lava children, whatever
    interpreter runs them: they run the worker module and carry ``NEUROPRUNE_LAVA_OWNER=<this
    pid>`` in their environment (``lava_backend.worker_env``; Lava's children inherit it)."""
    tag = f"{OWNER_ENV}={os.getpid()}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if WORKER.encode() in cmdline and tag in environ and state not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found


def shared_memory_blocks() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


# --------------------------------------------------------------------------------------------
# Package hygiene


def test_sim_package_never_imports_torch():
    code = (
        "import sys, neuroprune.sim as s\n"
        "import neuroprune.sim.api, neuroprune.sim.lava_backend, neuroprune.sim.lava_worker\n"
        "s.simulate; s.SIM_BACKENDS; s.read_deployment\n"
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False", out.stderr


# --------------------------------------------------------------------------------------------
# NIR reader


def test_reader_maps_exported_chain(nets):
    models, files = nets
    spec = read_deployment(files["conv"])
    assert [layer.kind for layer in spec.layers] == ["conv", "conv", "dense"]
    assert [layer.out_shape for layer in spec.layers] == [(4, 8, 8), (8, 4, 4), (10,)]
    assert spec.dt == 2.0**-10 and spec.timesteps == T and spec.encoding == "poisson"
    assert all(layer.neuron.model == "LIF" and layer.neuron.tau == 2.0 for layer in spec.layers)
    assert not spec.quantized and spec.layer_names == (
        "l00_2_neuron",
        "l01_2_neuron",
        "l02_2_neuron",
    )


def test_unrolled_conv_equals_torch_conv(nets):
    _, files = nets
    graph = nir.read(str(files["conv"]))
    node = graph.nodes["l01_1_syn"]
    spec_layer = read_deployment(files["conv"]).layers[1]
    x = np.random.default_rng(0).random((3, 4, 8, 8))
    expected = torch.nn.functional.conv2d(
        torch.tensor(x),
        torch.tensor(node.weight, dtype=torch.float64),
        torch.tensor(node.bias, dtype=torch.float64),
        stride=tuple(node.stride),
        padding=tuple(node.padding),
    )
    got = (spec_layer.weight @ x.reshape(3, -1).T).T + spec_layer.bias
    np.testing.assert_allclose(got, expected.reshape(3, -1).numpy(), rtol=1e-12, atol=1e-12)


def test_reader_recovers_tau_and_decay_input(tmp_path):
    model = torch.nn.Sequential(
        layer.Flatten(),
        layer.Linear(64, 10, bias=False),
        neurons.LIFNode(tau=1.7, v_reset=0.0, detach_reset=True),
    )
    functional.set_step_mode(model, "m")
    path = write_nir(model, tmp_path / "m.nir")
    params = read_deployment(path).layers[0].neuron
    assert (params.model, params.tau, params.decay_input, params.strict) == (
        "LIF",
        1.7,
        True,
        True,
    )
    _, patched = without_decay_input(model, path, tmp_path / "nodin.nir")
    assert read_deployment(patched).layers[0].neuron.decay_input is False


def _graph(meta=None, **overrides):
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "0_syn": nir.Linear(weight=np.ones((3, 4), np.float32)),
        "0_neuron": nir.IF(r=np.full(3, 1024.0), v_threshold=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    nodes.update(overrides)
    edges = [("input", "0_syn"), ("0_syn", "0_neuron"), ("0_neuron", "output")]
    metadata = {"dt": 2.0**-10, "threshold": ">="} if meta is None else meta
    extra = (
        {"type_check": False} if "type_check" in inspect.signature(nir.NIRGraph).parameters else {}
    )
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, **extra)


@pytest.mark.parametrize(
    ("graph", "error", "field"),
    [
        (lambda: _graph(meta={}), UnsupportedError, "metadata.dt"),
        (
            lambda: _graph(
                **{"0_neuron": nir.IF(r=np.full(3, 1024.0), v_threshold=np.arange(3.0))}
            ),
            UnsupportedError,
            "0_neuron.v_threshold",
        ),
        (
            lambda: _graph(**{"0_neuron": nir.Threshold(threshold=np.ones(3))}),
            UnsupportedError,
            "0_neuron.type",
        ),
        (
            lambda: _graph(meta={"dt": 2.0**-10, "reset": "subtract"}),
            UnsupportedError,
            "metadata.reset",
        ),
    ],
)
def test_reader_rejects_what_it_cannot_simulate(tmp_path, graph, error, field):
    path = tmp_path / "g.nir"
    nir.write(str(path), graph())
    with pytest.raises(error) as info:
        read_deployment(path)
    assert info.value.field == field and "\n" not in str(info.value)


def test_reader_rejects_branches_and_missing_files(tmp_path):
    graph = _graph()
    graph.edges.append(("0_syn", "output"))
    nir.write(str(tmp_path / "b.nir"), graph)
    with pytest.raises(UnsupportedError, match="2 inputs"):
        read_deployment(tmp_path / "b.nir")
    with pytest.raises(ArtifactError, match="not found"):
        read_deployment(tmp_path / "missing.nir")


# --------------------------------------------------------------------------------------------
# Reference backend against SpikingJelly


@pytest.mark.parametrize("name", ["mlp", "conv", "mlp_if", "nodin", "hand", "hand_nodin"])
@pytest.mark.parametrize("encoding", ["poisson", "direct"])
def test_reference_float_equals_spikingjelly(nets, inputs, name, encoding):
    models, files = nets
    result = simulate(
        files[name], x=inputs[encoding], backend="reference", reference_model=models[name]
    )
    assert_active(result.counts)
    assert result.layer_agreement == (1.0,) * len(result.counts)
    assert result.prediction_agreement == 1.0 and result.agreement_source == "reference_model"


def test_fixed_if_network_equals_spikingjelly_in_integer_units(tmp_path, inputs):
    """IF with vth = K - 1 is exactly SpikingJelly's >= (v is a multiple of 64 LSB/64)."""
    model = hand_quantized()
    model[2] = neurons.IFNode(v_threshold=model[2].v_threshold, v_reset=0.0, detach_reset=True)
    functional.set_step_mode(model, "m")
    path = write_nir(model, tmp_path / "if.nir")
    result = simulate(
        path, x=inputs["poisson"], backend="reference", fixed_point=True, reference_model=model
    )
    assert_active(result.counts)
    assert result.spike_agreement == 1.0


def test_lava_weight_preprocessing_and_fixed_arithmetic():
    def lava_layer(weights) -> LavaLayer:
        return LavaLayer(
            "l", sp.csr_matrix(np.array([weights])), -1, 8, 4095, 0, 10, np.zeros(1), 6
        )

    # mixed-sign raw odd weights lose their LSB (floor to even); 2*w keeps them exact
    assert lava_effective_weights(lava_layer([3, -5])).toarray().tolist() == [[2, -6]]
    assert lava_effective_weights(lava_layer([6, -10])).toarray().tolist() == [[6, -10]]
    assert lava_effective_weights(lava_layer([3, 5])).toarray().tolist() == [[3, 5]]
    assert lava_effective_weights(lava_layer([300, -300])).toarray().tolist() == [[254, -256]]
    assert trunc_decay(np.array([-5, 5, -4096]), 2048).tolist() == [-2, 2, -2048]
    limit = 2**23
    assert wrap24(np.array([limit + 3, -limit, limit])).tolist() == [-limit + 3, limit, limit]


def test_fixed_mapping_validates_loihi_ranges(nets):
    _, files = nets
    spec = read_deployment(files["qmlp"])
    assert spec.quantized and all(layer.quant.weight_int.nnz for layer in spec.layers)
    big = spec.layers[0]
    big_quant = type(big.quant)(**{**big.quant.__dict__, "weight_int": big.quant.weight_int * 4})
    with pytest.raises(UnsupportedError) as info:
        fixed_layer(type(big)(**{**big.__dict__, "quant": big_quant}))
    assert info.value.field == "weight_int"
    with pytest.raises(UnsupportedError, match="quantized"):
        simulate(files["mlp"], x=np.zeros((T, 1, *SHAPE)), backend="reference", fixed_point=True)


# --------------------------------------------------------------------------------------------
# Input handling and result figures


def test_static_input_is_encoded_like_the_data_module(nets, digits):
    _, files = nets
    spec = read_deployment(files["mlp"])  # exported with encoding="poisson"
    stim = prepare_stimulus(spec, digits.x_test[:5])
    expected = encode(digits.x_test[:5], T, "poisson", seed=0).reshape(T, 5, 64)
    assert stim.kind == "spikes" and np.array_equal(stim.frames, expected.astype(np.uint8))
    analog = prepare_stimulus(spec, encode(digits.x_test[:5], T, "direct"), samples=3)
    assert analog.kind == "current" and analog.frames.shape == (T, 3, 32)
    with pytest.raises(DatasetError) as info:
        prepare_stimulus(spec, np.zeros((T, 2, 3, 8, 8)))
    assert info.value.field == "x.shape"


def test_result_figures(nets, inputs):
    _, files = nets
    loihi = load_profile("loihi")
    result = simulate(
        files["mlp"], x=inputs["poisson"], y=np.zeros(N, int), profile=loihi, backend="reference"
    )
    spec = read_deployment(files["mlp"])
    fan_out = [layer.fan_out for layer in spec.layers]
    pre = [inputs["poisson"].reshape(T, N, -1).sum(0), result.counts[0]]
    synops = float(np.mean(sum(p @ f for p, f in zip(pre, fan_out, strict=True))))
    assert result.synops_per_sample == pytest.approx(synops)
    energy = (23.6 * synops + 81 * spec.neurons * T) * 1e-12
    assert result.energy_per_sample_j == pytest.approx(energy)
    assert result.spike_rates[0] == pytest.approx(result.counts[0].sum() / (N * 32 * T))
    assert result.accuracy == pytest.approx(np.mean(result.predictions == 0))
    assert result.spike_agreement is None and result.agreement_source is None
    record = json.loads(json.dumps(result.as_dict()))
    assert [row["layer"] for row in record["layers"]] == ["l00_2_neuron", "l01_2_neuron"]
    assert {"rate", "spikes_per_sample", "agreement"} <= set(record["layers"][0])
    bare = simulate(files["mlp"], x=inputs["poisson"], backend="reference", profile=None)
    assert bare.energy_per_sample_j is None
    with pytest.raises(ConfigError):
        simulate(
            files["mlp"],
            x=inputs["poisson"],
            backend="reference",
            expected_counts=[np.zeros((N, 3))],
        )
    with pytest.raises(ConfigError):
        simulate(files["mlp"], x=inputs["poisson"], backend="nope")


# --------------------------------------------------------------------------------------------
# Contract over every registered backend


def xylo_contract_net(folder: Path) -> tuple[Path, np.ndarray]:
    """XyloSim runs only what Xylo holds: a 16-12-8 mlp quantized for Xylo (digits-4x4) and
    12 of its samples as poisson spikes."""
    from neuroprune.data.datasets import load_dataset

    shape = (1, 4, 4)
    model = scaled(build_model("mlp", shape, 8, hidden=(12,), seed=0), 6.0)
    qmodel = ptq_model(model, load_profile("xylo"), shape)[0]
    path = export_nir(
        qmodel, folder / "xylo.nir", timesteps=T, encoding="poisson", input_shape=shape
    )
    return path, encode(load_dataset("digits-4x4").x_test[:12], T, "poisson", seed=3)


def chip_contract_net(folder: Path, chip: str) -> tuple[Path, np.ndarray]:
    """A vendor artifact's backend runs one chip's networks: a 64-12-10 mlp post-training
    quantized for ``chip`` (Loihi: netx; SpiNNaker: pynn) and 12 digits as poisson spikes."""
    from neuroprune.data.datasets import load_dataset

    shape = (1, 8, 8)
    model = scaled(build_model("mlp", shape, 10, hidden=(12,), seed=0), 6.0)
    qmodel = ptq_model(model, load_profile(chip), shape)[0]
    path = export_nir(
        qmodel,
        folder / f"{chip}.nir",
        timesteps=T,
        encoding="poisson",
        input_shape=shape,
        chip=chip,
    )
    return path, encode(load_dataset("digits").x_test[:12], T, "poisson", seed=3)


CONTRACT_MARKS = {
    "lava": LAVA,
    "netx": LAVA,
    "xylosim": LAVA,
    "sinabs": [pytest.mark.sinabs],
    "pynn": [pytest.mark.pynn, pytest.mark.slow],
}
CHIP_OF_ARTIFACT_BACKEND = {"netx": "loihi", "pynn": "spinnaker"}
FLOAT_ONLY_BACKENDS = ("pynn",)  # a float simulation of the chip's network description


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=CONTRACT_MARKS.get(n, [])) for n in sorted(SIM_BACKENDS)],
)
def test_backend_contract(nets, inputs, name, tmp_path):
    backend = SIM_BACKENDS[name]
    assert isinstance(backend, SimBackend) and backend.name == name
    _, files = nets
    if name == "sinabs":  # Speck's quantized chains only: tests/test_speck_sinabs.py runs them
        with pytest.raises(UnsupportedError, match="speck_iaf"):
            simulate(files["mlp"], x=inputs["poisson"][:, :12], backend=name, fixed_point=True)
        return
    runs = [
        (files["mlp"], inputs["poisson"][:, :12], False),
        (files["hand"], inputs["poisson"][:, :12], True),
    ]
    if name == "xylosim":  # SynSense's simulator of one chip: a network quantized for it
        runs = [(*xylo_contract_net(tmp_path), True)]
    if name in CHIP_OF_ARTIFACT_BACKEND:  # a vendor artifact of one chip (tests/test_deploy.py)
        with pytest.raises(ConfigError):
            simulate(files["mlp"], x=inputs["poisson"][:, :12], backend=name, fixed_point=True)
        runs = [(*chip_contract_net(tmp_path, CHIP_OF_ARTIFACT_BACKEND[name]), True)]
    for file, x, fixed in runs:
        result = simulate(
            file,
            x=x,
            backend=name,
            fixed_point=fixed,
            expected_counts="reference",
        )
        spec = read_deployment(file)
        assert [c.shape for c in result.counts] == [(12, n.neurons) for n in spec.layers]
        assert all(c.dtype == np.int32 for c in result.counts)
        assert result.samples == 12 and result.spike_agreement is not None
        if name not in FLOAT_ONLY_BACKENDS:
            assert result.spike_agreement == 1.0
        assert result.seconds_per_sample > 0 and result.backend == name


# --------------------------------------------------------------------------------------------
# Lava


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("mlp", "poisson"),
        ("mlp", "direct"),
        ("conv", "poisson"),
        ("conv", "direct"),
        ("nodin", "poisson"),
    ],
)
def test_lava_float_equals_reference_and_spikingjelly(nets, inputs, name, encoding):
    models, files = nets
    x = inputs[encoding]
    reference = simulate(files[name], x=x, backend="reference")
    lava = simulate(files[name], x=x, backend="lava", reference_model=models[name])
    assert_active(lava.counts)
    assert lava.layer_agreement == (1.0,) * len(lava.counts)  # Lava == SpikingJelly
    assert all(np.array_equal(a, b) for a, b in zip(lava.counts, reference.counts, strict=True))
    assert lava.stimulus == ("spikes" if encoding == "poisson" else "current")


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("qmlp", "poisson"),
        ("qmlp", "direct"),
        ("qconv", "poisson"),
        ("hand", "direct"),
        ("hand_nodin", "poisson"),
    ],
)
def test_lava_fixed_equals_reference_bit_for_bit(nets, inputs, name, encoding):
    _, files = nets
    reference = simulate(files[name], x=inputs[encoding], backend="reference", fixed_point=True)
    lava = simulate(
        files[name],
        x=inputs[encoding],
        backend="lava",
        fixed_point=True,
        expected_counts=reference.counts,
    )
    assert_active(lava.counts)
    assert lava.layer_agreement == (1.0,) * len(lava.counts) and lava.mode == "fixed"


@pytest.mark.lava
@pytest.mark.slow
def test_lava_chunks_samples_into_several_networks(nets, inputs):
    _, files = nets
    events = []
    result = simulate(
        files["hand"],
        x=inputs["poisson"][:, :20],
        fixed_point=True,
        backend=LavaBackend(chunk_samples=7),
        expected_counts="reference",
        progress=events.append,
    )
    assert result.spike_agreement == 1.0 and "3 network(s)" in result.notes[0]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("chunk_done") == 3
    assert all(event["stage"] == "simulate" for event in events)


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "timeout", "text"), [("hang", 4.0, "timed out"), ("raise", 30.0, "fault injected")]
)
def test_lava_failure_is_one_line_and_leaves_nothing(
    nets, inputs, fault, timeout, text, monkeypatch
):
    """No worker process and none of the shared-memory blocks the worker's group created (the
    names it logged, read just before the parent unlinks them) outlive the call. Only this
    run's blocks are checked: other Lava runs on the machine create and hold their own."""
    _, files = nets
    created: list[str] = []

    def recording_unlink(names_file: Path) -> None:
        if names_file.exists():
            created.extend(names_file.read_text(encoding="utf-8").split())
        unlink(names_file)

    unlink = lava_backend.unlink_shared_memory
    monkeypatch.setattr(lava_backend, "unlink_shared_memory", recording_unlink)
    start = time.perf_counter()
    with pytest.raises(SimulationError) as info:
        simulate(
            files["mlp"],
            x=inputs["poisson"][:, :10],
            backend=LavaBackend(fault=fault),
            timeout=timeout,
        )
    elapsed = time.perf_counter() - start
    assert elapsed < timeout + 3.0
    message = str(info.value)
    assert text in message and "\n" not in message and info.value.exit_code == 3
    assert worker_processes() == []
    assert created and not {name.lstrip("/") for name in created} & shared_memory_blocks()


def test_lava_that_does_not_import_in_the_worker_is_backend_unavailable(nets, inputs):
    """The worker run on an interpreter without lava-nc (the tool's own: lava-nc 0.10.0 does
    not install on Python 3.11+) reports ``unavailable``: exit code 3, one line, the rebuild
    command, and no process left."""
    _, files = nets
    no_lava = LavaBackend(python=sys.executable)
    with pytest.raises(BackendUnavailableError, match="cannot be imported") as info:
        simulate(files["mlp"], x=inputs["poisson"][:, :2], backend=no_lava, timeout=60)
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    assert "neuroprune backends install lava --force" in str(info.value)
    assert worker_processes() == []


def test_lava_without_its_environment_is_backend_unavailable(nets, inputs, tmp_path, monkeypatch):
    """No lava environment where the location rule points: the check answers before any
    worker starts, naming the install command and the reference backend."""
    _, files = nets
    monkeypatch.setenv("NEUROPRUNE_ENVS", str(tmp_path / "envs"))
    with pytest.raises(BackendUnavailableError) as info:
        simulate(files["mlp"], x=inputs["poisson"][:, :2], backend="lava")
    message = str(info.value)
    assert info.value.exit_code == 3 and "\n" not in message
    assert "neuroprune backends install lava" in message and "--backend reference" in message
    assert not (tmp_path / "envs").exists()
    assert worker_processes() == []


def test_model_counts_match_model_output(nets, inputs):
    models, _ = nets
    counts = model_counts(models["mlp"], inputs["poisson"], batch=16)
    functional.reset_net(models["mlp"])
    with torch.no_grad():
        out = models["mlp"](torch.tensor(inputs["poisson"])).sum(0).numpy()
    functional.reset_net(models["mlp"])
    assert np.array_equal(counts[-1], out.astype(np.int32))


@pytest.mark.slow
def test_chip_model_equals_lava_fixed_point(tmp_path):
    """The chip-arithmetic trained model (issue 12) against Lava's bit-accurate Loihi model,
    the independent oracle: tau != 2 and MNIST-scaled x/255 input, every layer 100 %."""
    import test_chip_arithmetic as chip

    images = chip._images("mnist", 24)
    qmodel = chip._chip_model("mlp", "lif", 3.3, images, (20,))
    path = export_nir(
        qmodel,
        tmp_path / "l.nir",
        timesteps=chip.T,
        encoding="direct",
        input_shape=chip.SHAPE,
        chip="loihi",
    )
    result = simulate(path, x=images, backend="lava", fixed_point=True, reference_model=qmodel)
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.parametrize("encoding", ["poisson", "direct"])
def test_spinnaker_model_equals_lava_chip_neuron(tmp_path, encoding):
    """SpiNNaker's arithmetic in Lava (``ChipNeuron`` running ``spinnaker_lif`` behind float
    Sparse processes of the integer weights) against the trained quantized model: every layer
    100 %, for spike input and a host-injected analog first layer."""
    import test_spinnaker_arithmetic as spin

    rng = np.random.default_rng(3)
    if encoding == "poisson":
        x = (rng.random((spin.T, 20, *spin.SHAPE)) < 0.3).astype(np.float32)
        qmodel, _ = spin._spinnaker_model(2.5, None)
    else:
        x = (rng.integers(0, 17, (20, *spin.SHAPE)) / 16).astype(np.float32)
        qmodel, _ = spin._spinnaker_model(3.0, x)
    path = export_nir(
        qmodel,
        tmp_path / "s.nir",
        timesteps=spin.T,
        encoding=encoding,
        input_shape=spin.SHAPE,
        chip="spinnaker",
    )
    result = simulate(path, x=x, backend="lava", fixed_point=True, reference_model=qmodel)
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)
    assert all(count > 0 for count in result.spike_counts), result.spike_counts


@pytest.mark.slow
@pytest.mark.lava
def test_speck_multi_spike_model_equals_lava_chip_neuron(tmp_path):
    """Speck's arithmetic in Lava: a ``ChipNeuron`` running ``speck_iaf`` from its layer facts
    sends spike counts (several per step), the float Sparse weights them and the graded sink
    adds them up; every layer equals the trained quantized model."""
    import test_speck_sinabs as speck

    qmodel = speck._speck_model()
    x = speck._spike_input(16)
    path = export_nir(
        qmodel,
        tmp_path / "speck.nir",
        timesteps=speck.T,
        encoding="latency",
        input_shape=speck.SHAPE,
        chip="speck",
    )
    result = simulate(path, x=x, backend="lava", fixed_point=True, reference_model=qmodel)
    assert list(result.layer_agreement) == [1.0] * len(result.layer_agreement)
    assert max(int(c.max()) for c in result.counts) > speck.T  # several spikes in one step
