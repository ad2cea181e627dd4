"""NIR files mean what the model computes, under NIR's spec and in the importers users have.

* Spec: ``tests/nir_spec.py`` simulates the file from NIR's equations (not neuroprune's code)
  and must give the SpikingJelly model's spikes, layer by layer, including exact ties.
* Importers (the ``interop`` extra): snnTorch (file written with ``dt=1e-4``, the step its
  importer assumes) and Norse (``dt`` passed from the file) give the model's output counts on
  >= 99 % of samples; Sinabs imports and runs IF graphs (it resets by subtraction, see README).
* Files written on nir 1.0.8 read on 1.0.4 and back (node metadata lives in graph metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from interop_runners import output_counts
from nir_spec import read as spec_read
from nir_spec import simulate as spec_simulate
from spikingjelly.activation_based import functional, layer
from test_export import T, make_active, make_graph, make_model, neuron_spikes, reference

from neuroprune.cli.app import main
from neuroprune.core.errors import UnsupportedError
from neuroprune.data.datasets import load_dataset
from neuroprune.data.encoding import encode
from neuroprune.export import export_nir
from neuroprune.models import neurons
from neuroprune.models.nir_model import load_nir_model
from neuroprune.models.zoo import build_model


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    """Direct-encoded digits test images ``[T, 48, 1, 8, 8]``."""
    return torch.from_numpy(encode(load_dataset("digits").x_test[:48], T))


CASES = [(s, v) for s in ("mlp", "conv") for v in ("float", "pruned", "quantized")]


def _export(model, path, dt=None):
    return export_nir(model, path, timesteps=T, encoding="direct", input_shape=(1, 8, 8), dt=dt)


def _spec_layers(path, x: torch.Tensor) -> list[np.ndarray]:
    import nir

    graph = nir.read(str(path))
    out = spec_simulate(graph, x.numpy(), float(graph.metadata["dt"]))
    names = sorted(k for k in out if k.endswith("_neuron"))
    return [out[k] for k in names]


@pytest.mark.parametrize(("spec", "variant"), CASES)
def test_spec_simulation_of_the_file_equals_the_model(tmp_path, inputs, spec, variant):
    model = make_model(spec, variant, inputs)
    path = _export(model, tmp_path / "m.nir")
    want = [s.numpy() for s in neuron_spikes(reference(model), inputs)]
    got = _spec_layers(path, inputs)
    assert len(got) == len(want) and all(w.sum() > 0 for w in want)
    for g, w in zip(got, want, strict=True):
        assert g.reshape(w.shape).astype(np.float32).tolist() == w.tolist()


def _tie_model() -> torch.nn.Sequential:
    """Integer weights, integer threshold, IF neurons: potentials land exactly on v_th often."""
    gen = torch.Generator().manual_seed(5)
    fc1, fc2 = layer.Linear(64, 24, bias=False), layer.Linear(24, 10, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.randint(-1, 3, (24, 64), generator=gen).float())
        fc2.weight.copy_(torch.randint(-1, 3, (10, 24), generator=gen).float())
    model = torch.nn.Sequential(
        layer.Flatten(),
        fc1,
        neurons.IFNode(v_threshold=4.0, v_reset=0.0),
        fc2,
        neurons.IFNode(v_threshold=3.0, v_reset=0.0),
    )
    functional.set_step_mode(model, "m")
    return model.eval()


def test_ties_on_the_threshold_fire_as_in_the_model(tmp_path):
    """Potentials that land exactly on v_th must not fire, in the model and in the file."""
    x = (torch.rand(T, 32, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    model = _tie_model()
    path = _export(model, tmp_path / "tie.nir")
    want = [s.numpy() for s in neuron_spikes(model, x)]
    got = _spec_layers(path, x)
    hidden = np.cumsum(
        np.einsum("tnf,hf->tnh", x.reshape(T, 32, 64).numpy(), model[1].weight.detach().numpy()), 0
    )
    assert np.any(hidden == 4.0), "the input must produce exact ties for the test to mean anything"
    for g, w in zip(got, want, strict=True):
        assert g.reshape(w.shape).tolist() == w.tolist()


# --------------------------------------------------------------------------------------------
# Importers


def _agreement(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean(np.all(got == want, axis=1)))


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["mlp", "conv"])
@pytest.mark.parametrize(("tool", "dt"), [("snntorch", 1e-4), ("norse", None)])
def test_importer_reproduces_output_counts(tmp_path, inputs, spec, tool, dt):
    pytest.importorskip(tool)
    model = make_model(spec, "float", inputs)
    path = _export(model, tmp_path / "m.nir", dt=dt)
    want = neuron_spikes(reference(model), inputs)[-1].sum(0).numpy().astype(np.int64)
    got = output_counts(tool, path, inputs.numpy())
    assert want.sum() > 0 and _agreement(got, want) >= 0.99


@pytest.mark.slow
def test_snntorch_needs_its_own_dt(tmp_path, inputs):
    """snnTorch ignores the file's dt (it assumes 1e-4 s): the default file disagrees there."""
    pytest.importorskip("snntorch")
    model = make_model("mlp", "float", inputs)
    want = neuron_spikes(model, inputs)[-1].sum(0).numpy().astype(np.int64)
    got = output_counts("snntorch", _export(model, tmp_path / "m.nir"), inputs.numpy())
    assert _agreement(got, want) < 0.99


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["mlp", "conv"])
def test_sinabs_imports_and_runs_if_graphs(tmp_path, inputs, spec):
    pytest.importorskip("sinabs")
    model = build_model(
        spec, (1, 8, 8), 10, neuron="if", hidden=(32,) if spec == "mlp" else (4, 8), seed=1
    )
    make_active(model.eval(), inputs)
    got = output_counts("sinabs", _export(model, tmp_path / "m.nir"), inputs.numpy())
    assert got.shape == (inputs.shape[1], 10) and got.sum() > 0


def test_files_need_no_node_metadata_support(tmp_path, inputs):
    """nir 1.0.4's Affine/Conv2d have no metadata: everything neuroprune reads back is in the
    graph metadata, and nodes carry none."""
    import nir

    path = _export(make_model("conv", "quantized", inputs), tmp_path / "q.nir")
    graph = nir.read(str(path))
    assert all(not getattr(node, "metadata", None) for node in graph.nodes.values())
    assert "neuroprune_nodes" in graph.metadata


def test_nirgraph_reads_and_writes_without_torch(tmp_path, inputs):
    """The NIR module is torch-free: a fresh interpreter reads a file and rebuilds its graph."""
    import subprocess
    import sys

    path = _export(make_model("conv", "quantized", inputs), tmp_path / "q.nir")
    code = (
        "import sys\nfrom neuroprune.graph.read import read_network\n"
        "from neuroprune.graph.write import build_graph\n"
        f"net = read_network({str(path)!r})\n"
        "graph = build_graph(net.stages, input_shape=net.input_shape, timesteps=8, "
        "encoding='direct')\n"
        "assert sorted(graph.nodes) == list(graph.nodes), list(graph.nodes)\n"
        "print('torch' in sys.modules, len(net.stages))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "7"]


# --------------------------------------------------------------------------------------------
# Graphs other tools exported (tests/data/make_foreign_nir.py)

FOREIGN = Path(__file__).parent / "data" / "foreign"
FOREIGN_DT = {"snntorch": 1e-4, "norse": 1e-6, "sinabs": 1.0}  # see the README's NIR section


@pytest.mark.parametrize("tool", sorted(FOREIGN_DT))
def test_foreign_graph_is_rebuilt_with_its_weights(tool, inputs):
    """The rebuilt SpikingJelly model spikes as NIR's equations say the file does."""
    path = FOREIGN / f"{tool}_mlp.nir"
    imported = load_nir_model(path, input_shape=(1, 8, 8), num_classes=10, dt=FOREIGN_DT[tool])
    graph = spec_read(path)  # Norse 1.1 writes the batch into the Input shape: no type check
    want = spec_simulate(graph, inputs.numpy().reshape(T, -1, 64), FOREIGN_DT[tool])
    want = next(v for k, v in want.items() if k == "output").sum(0).reshape(-1, 10)
    got = neuron_spikes(imported.model, inputs)[-1].sum(0).numpy()
    assert want.sum() > 0 and _agreement(got, want) >= 0.99


def test_foreign_graph_without_dt_asks_for_it():
    with pytest.raises(UnsupportedError) as err:
        load_nir_model(FOREIGN / "snntorch_mlp.nir", input_shape=(1, 8, 8), num_classes=10)
    assert err.value.field == "metadata.dt" and "--nir-dt" in str(err.value)


def test_check_from_a_foreign_graph_judges_its_synapses():
    result = CliRunner().invoke(
        main,
        [
            "check",
            "--chip",
            "loihi",
            "--from",
            str(FOREIGN / "snntorch_mlp.nir"),
            "--nir-dt",
            "1e-4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"fits": true' in result.output


def test_from_an_unsupported_graph_is_one_line_and_exit_2(tmp_path):
    import nir

    nodes = {
        "input": nir.Input(input_type={"input": np.array([64])}),
        "fc": nir.Affine(weight=np.ones((10, 64), np.float32), bias=np.zeros(10, np.float32)),
        "wait": nir.Delay(delay=np.ones(10)),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    edges = [("input", "fc"), ("fc", "wait"), ("wait", "output")]
    nir.write(tmp_path / "d.nir", make_graph(nodes, edges, dt=1e-3))
    result = CliRunner().invoke(
        main, ["check", "--chip", "loihi", "--from", str(tmp_path / "d.nir")]
    )
    assert result.exit_code == 2
    assert "'wait' (Delay)" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_fit_from_a_snntorch_graph_skips_dense_training(tmp_path):
    args = [
        "fit",
        "--chip",
        "loihi",
        "--cores",
        "1",
        "--from",
        str(FOREIGN / "snntorch_mlp.nir"),
        "--nir-dt",
        "1e-4",
        "--prune-epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--quant-epochs",
        "0",
        "--backend",
        "reference",
        "--samples",
        "40",
        "--out",
        str(tmp_path),
        "--name",
        "r",
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    report = json.loads(result.stdout)
    assert report["dense"]["accuracy"] > 0.5, report["dense"]
    assert report["pruned"]["synapses"] <= report["budget"]["synapses"]
    assert report["artifacts"]["nir"] == "model.nir"
    assert (tmp_path / "r" / "dense.pt").is_file()
    assert "imported" in (tmp_path / "r" / "log.txt").read_text()
