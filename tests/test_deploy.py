"""Deployable artifacts the vendors' own loaders run (issue 26): lava-dl's netx HDF5 file for
Loihi, a PyNN script for SpiNNaker, their backends (`netx`, `pynn`) and `neuroprune deploy`.

The oracles: the netx file is checked against the integers of the NIR file it was written
from (read here with h5py, independently of the writer), and its run in lava-dl's own
``netx.hdf5.Network`` against the numpy reference emulation of Loihi's arithmetic; the PyNN
script's synapse lists against the NIR file's integers, and its NEST run against the
reference emulation of SpiNNaker's arithmetic."""

from __future__ import annotations

import py_compile

import numpy as np
import pytest

from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import ConfigError, NeuropruneError, UnsupportedError


def _quantized_nir(
    tmp_path, digits, chip, *, model="mlp", hidden=(32,), encoding="direct", prune=0.0
):
    """An untrained model with a low threshold (0.1, so that it spikes; ``prune``: that fraction
    of its first layer's weights zeroed, smallest first), post-training quantized for ``chip``,
    exported to NIR."""
    import torch

    from neuroprune.export import export_nir
    from neuroprune.models.zoo import build_model
    from neuroprune.quantize.model import ptq_model

    torch.manual_seed(0)
    net = build_model(
        model, digits.input_shape, digits.num_classes, hidden=hidden, v_threshold=0.1
    ).eval()
    if prune:
        first = next(m for m in net.modules() if hasattr(m, "weight") and m.weight.dim() > 1)
        with torch.no_grad():
            cut = first.weight.abs().flatten().quantile(prune)
            first.weight[first.weight.abs() <= cut] = 0.0
    qmodel, _ = ptq_model(net, load_profile(chip), digits.input_shape)
    path = tmp_path / f"{chip}-{model}-{encoding}.nir"
    export_nir(
        qmodel, path, timesteps=4, encoding=encoding, input_shape=digits.input_shape, chip=chip
    )
    return path


# --------------------------------------------------------------------------------------------
# netx: the file


def test_the_netx_file_holds_the_nir_files_integers_in_netx_layout(tmp_path, digits):
    import h5py

    from neuroprune.sim.netx_file import write_netx
    from neuroprune.sim.spec import read_deployment

    spec = read_deployment(_quantized_nir(tmp_path, digits, "loihi"))
    summary = write_netx(spec, tmp_path / "model.netx")
    with h5py.File(summary.path) as f:
        layers = f["layer"]
        assert [layers[str(i)]["type"][0].decode() for i in range(len(layers))] == [
            "input",
            "dense",
            "dense",
        ]
        assert tuple(layers["0"]["shape"][()]) == tuple(spec.input_shape)
        for k, layer in enumerate(spec.layers, start=1):
            node = layers[str(k)]
            np.testing.assert_array_equal(node["weight"][()], layer.quant.weight_int.toarray())
            assert tuple(node["shape"][()]) == (layer.neurons,)
            neuron = node["neuron"]
            assert neuron["type"][0].decode() == "CUBA"
            assert int(neuron["iDecay"][()]) - 1 == 4095  # netx: du = iDecay - 1; u keeps none
            assert int(neuron["vDecay"][()]) == round(4096 / layer.neuron.tau)
        assert f.attrs["neuroprune_input"] == "current"


def test_netx_reads_the_weights_it_is_given_back_unchanged_except_one_sign_with_minus_128():
    from neuroprune.sim.netx_file import netx_dense_weights

    rng = np.random.default_rng(0)
    for high in (1, 3, 64, 127):
        mixed = rng.integers(-high - 1, high + 1, size=(12, 20))
        mixed[0, :2] = (-high - 1, high)  # both signs present
        np.testing.assert_array_equal(netx_dense_weights(mixed), mixed)
        positive = np.abs(mixed)
        np.testing.assert_array_equal(netx_dense_weights(positive), positive)
    negative = -np.abs(rng.integers(0, 128, size=(4, 8)))
    negative[0, 0] = -128
    assert not np.array_equal(netx_dense_weights(negative), negative)


def test_a_pruned_layer_is_stored_compressed_and_marked_for_sparse_loading(tmp_path, digits):
    from neuroprune.sim.netx_file import write_netx
    from neuroprune.sim.spec import read_deployment

    spec = read_deployment(_quantized_nir(tmp_path, digits, "loihi", hidden=(256,), prune=0.9))
    kept = spec.layers[0].quant.weight_int.nnz
    assert kept <= 0.11 * spec.layers[0].quant.weight_int.shape[0] * spec.input_size
    compressed = write_netx(spec, tmp_path / "c.netx")
    plain = write_netx(spec, tmp_path / "d.netx", compress=False)
    assert compressed.sparse_fc_layer
    assert plain.dense_weight_bytes == sum(layer.neurons * layer.inputs for layer in spec.layers)
    assert compressed.weight_bytes < plain.dense_weight_bytes / 2
    assert compressed.bytes < plain.bytes


def test_netx_refuses_another_chip_and_pooling_in_one_line_writing_nothing(tmp_path, digits):
    from neuroprune.sim.netx_file import write_netx
    from neuroprune.sim.spec import read_deployment

    target = tmp_path / "model.netx"
    spinnaker = read_deployment(_quantized_nir(tmp_path, digits, "spinnaker"))
    with pytest.raises(ConfigError) as wrong_chip:
        write_netx(spinnaker, target)
    assert "spinnaker" in wrong_chip.value.one_line() and "\n" not in wrong_chip.value.one_line()
    vgg = read_deployment(_quantized_nir(tmp_path, digits, "loihi", model="vgg", hidden=(4, 4)))
    with pytest.raises(UnsupportedError) as pooled:
        write_netx(vgg, target)
    assert "pool" in pooled.value.one_line() and "layer" in pooled.value.one_line()
    assert wrong_chip.value.exit_code == pooled.value.exit_code == 2
    assert not target.exists() and list(tmp_path.glob("*.netx")) == []


# --------------------------------------------------------------------------------------------
# PyNN: the script


def test_the_pynn_script_lists_only_kept_synapses_with_their_integers(tmp_path, digits):
    from neuroprune.sim.pynn_script import write_pynn
    from neuroprune.sim.spec import read_deployment

    spec = read_deployment(_quantized_nir(tmp_path, digits, "spinnaker", encoding="latency"))
    files = write_pynn(spec, tmp_path / "model_pynn.py", max_atoms_per_core=256)
    py_compile.compile(str(files.script), doraise=True)
    text = files.script.read_text()
    assert "MAX_ATOMS_PER_CORE = 256" in text and "FromListConnector" in text
    with np.load(files.weights, allow_pickle=False) as data:
        for k, layer in enumerate(spec.layers):
            dense = np.zeros((layer.neurons, layer.inputs))
            for receptor, sign in (("excitatory", 1), ("inhibitory", -1)):
                weights = data[f"weight{k}_{receptor}"]
                assert np.all(sign * weights > 0)
                dense[data[f"post{k}_{receptor}"], data[f"pre{k}_{receptor}"]] = weights
            integers = layer.quant.weight_int.toarray()
            assert np.count_nonzero(dense) == np.count_nonzero(integers)
            lsb = np.min(np.abs(dense[dense != 0]) / np.abs(integers[integers != 0]))
            np.testing.assert_allclose(dense, integers * lsb)
            assert np.log2(lsb) == int(np.log2(lsb))  # a power of two: the s16.15 shift


def test_pynn_refuses_loihi_and_analog_input(tmp_path, digits):
    from neuroprune.sim.pynn_script import write_pynn
    from neuroprune.sim.spec import read_deployment

    for chip, encoding, error in (
        ("loihi", "latency", ConfigError),
        ("spinnaker", "direct", UnsupportedError),
    ):
        spec = read_deployment(_quantized_nir(tmp_path, digits, chip, encoding=encoding))
        with pytest.raises(error) as refused:
            write_pynn(spec, tmp_path / "model_pynn.py")
        assert refused.value.exit_code == 2 and "\n" not in refused.value.one_line()
    assert not (tmp_path / "model_pynn.py").exists()


def test_deploy_plan_names_the_artifact_and_the_vendor_tool(tmp_path):
    from neuroprune.pipeline.deploy import deploy_plan

    loihi = deploy_plan(tmp_path, load_profile("loihi2"))
    assert loihi.artifact.endswith("model.netx") and "netx.hdf5.Network" in loihi.steps[-2].command
    spinnaker = deploy_plan(tmp_path, load_profile("spinnaker"), files=["model_pynn.py"])
    assert spinnaker.artifact.endswith("model_pynn.py") and "pyNN.spiNNaker" in spinnaker.tool
    assert all("export" not in step.what for step in spinnaker.steps)
    other = deploy_plan(tmp_path, load_profile("truenorth"))
    assert other.artifact.endswith("model.nir")


def test_a_missing_backend_environment_is_one_line_and_exit_3(tmp_path, digits, monkeypatch):
    from neuroprune.sim import simulate

    monkeypatch.setenv("NEUROPRUNE_ENVS", str(tmp_path / "no-envs"))
    for chip, backend, encoding in (("loihi", "netx", "direct"), ("spinnaker", "pynn", "latency")):
        path = _quantized_nir(tmp_path, digits, chip, encoding=encoding)
        with pytest.raises(NeuropruneError) as missing:
            simulate(path, x=digits.x_test[:4], profile=chip, backend=backend, fixed_point=True)
        assert missing.value.exit_code == 3
        assert f"backends install {'lava' if backend == 'netx' else 'pynn'}" in (
            missing.value.one_line()
        )


# --------------------------------------------------------------------------------------------
# The backends: lava-dl's netx loader in Lava, the PyNN script on NEST and pyNN.mock


def _agreement(path, digits, backend, chip, samples=40):
    from neuroprune.sim import simulate

    x = digits.x_test[:samples]
    result = simulate(path, x=x, profile=chip, backend="reference", fixed_point=True)
    ran = simulate(path, x=x, profile=chip, backend=backend, fixed_point=True)
    assert sum(int(c.sum()) for c in result.counts) > 0  # the comparison sees spikes
    return result, ran


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "hidden", "encoding", "prune"),
    [
        ("mlp", (32,), "direct", 0.0),
        ("mlp", (64,), "latency", 0.9),
        ("conv", (4, 8), "direct", 0.0),
    ],
)
def test_lava_dls_netx_loader_runs_the_file_as_the_reference_emulation(
    tmp_path, digits, model, hidden, encoding, prune
):
    path = _quantized_nir(
        tmp_path, digits, "loihi", model=model, hidden=hidden, encoding=encoding, prune=prune
    )
    reference, netx = _agreement(path, digits, "netx", "loihi")
    for expected, got in zip(reference.counts, netx.counts, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert netx.as_dict()["verification"]["kind"] == "chip-exact"


@pytest.mark.pynn
@pytest.mark.slow
def test_the_pynn_script_on_nest_predicts_as_the_spinnaker_emulation(tmp_path, digits):
    path = _quantized_nir(tmp_path, digits, "spinnaker", hidden=(64,), encoding="latency")
    reference, pynn = _agreement(path, digits, "pynn", "spinnaker")
    same = np.mean(np.argmax(reference.counts[-1], axis=1) == np.argmax(pynn.counts[-1], axis=1))
    assert same >= 0.99
    assert pynn.as_dict()["verification"]["kind"] == "float stand-in"
    assert any("pyNN.mock" in note for note in pynn.notes)


# --------------------------------------------------------------------------------------------
# The command line: fit writes the chip's artifact, export refuses another chip's format


@pytest.mark.slow
def test_fit_writes_the_netx_file_and_export_and_deploy_answer_per_chip(tmp_path):
    import json

    from click.testing import CliRunner
    from fit_args import tiny_fit_args

    from neuroprune.cli.app import main

    def cli(*args):
        return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200"})

    fit = cli(
        "fit",
        "--chip",
        "loihi",
        *tiny_fit_args(),
        "--backend",
        "reference",
        "--out",
        tmp_path,
        "--name",
        "tiny",
    )
    assert fit.exit_code in (0, 1), fit.output
    run = tmp_path / "tiny"
    report = json.loads((run / "report.json").read_text())
    assert report["artifacts"]["netx"] == "model.netx" and (run / "model.netx").is_file()
    assert report["artifacts"]["pynn"] is None
    before = sorted(p.name for p in run.iterdir())
    refused = cli("export", run, "--format", "pynn")
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.exit_code == 2 and len(lines) == 1 and "--format netx" in lines[0]
    assert sorted(p.name for p in run.iterdir()) == before
    plan = cli("deploy", run)
    assert plan.exit_code == 0 and "netx.hdf5.Network" in plan.output
    assert f"neuroprune simulate {run} --backend netx" in plan.output


def test_fit_refuses_a_vendor_backend_of_another_chip_before_anything_is_written(tmp_path):
    from click.testing import CliRunner

    from neuroprune.cli.app import main

    for chip, backend, right in (("spinnaker", "netx", "pynn"), ("truenorth", "pynn", None)):
        result = CliRunner().invoke(
            main,
            ["fit", "--chip", chip, "--backend", backend, "--out", str(tmp_path), "--name", "x"],
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert f"--backend {backend}" in lines[0]
        assert (f"--backend {right}" if right else "--backend lava or reference") in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.lava
def test_lava_dls_netx_imports_in_the_lava_environment_without_torch(tmp_path):
    import subprocess

    from neuroprune.envs import environment_python
    from neuroprune.sim.lava_backend import worker_env

    code = (
        "import sys; from neuroprune.sim.netx_worker import import_netx; names = import_netx(); "
        "print(names['Network'].__module__, 'torch' in sys.modules)"
    )
    done = subprocess.run(
        [str(environment_python("lava")), "-c", code],
        env=worker_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["lava.lib.dl.netx.hdf5", "False"]


def test_netx_refuses_a_residual_sum_naming_the_layer(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_sim_graph import residual

    from neuroprune.graph.write import build_graph, write_graph
    from neuroprune.sim.netx_file import write_netx
    from neuroprune.sim.spec import read_deployment

    stages, inputs, shape = residual(True)
    graph = build_graph(
        stages, input_shape=shape, timesteps=4, encoding="poisson", chip="loihi", inputs=inputs
    )
    spec = read_deployment(write_graph(graph, tmp_path / "residual.nir"))
    with pytest.raises(UnsupportedError) as refused:
        write_netx(spec, tmp_path / "model.netx")
    line = refused.value.one_line()
    assert "residual" in line and spec.layers[3].neuron_name in line and "\n" not in line
    assert not (tmp_path / "model.netx").exists()
