"""Deep networks end to end (issue 14's "must show"): the SEW-ResNet (residual ADDs) and the
spiking VGG (average pooling) through ``neuroprune fit`` on digits and on a synthetic
CIFAR-shaped folder: exact budget, quantization, a NIR round trip, Lava agreement of 100 %.

Oracles, none of which calls the code under test:

* the budget: :func:`neuroprune.pruning.targets.find_targets` cost of the cheapest entry
  bounds the gap (a weight on ``k`` ADDed sources costs ``k`` synapses);
* the NIR file: ``tests/nir_spec.py``, a simulator written from NIR's specification text,
  runs ``model.nir`` and must give the spikes of the model imported from it, layer by layer;
* Lava: its per-layer spike counts against the bit-exact integer emulation and against the
  trained quantized PyTorch model (chip arithmetic), both 100 %.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuroprune.cli.app import main
from neuroprune.models.sew import build_sew
from neuroprune.models.zoo import build_model
from neuroprune.pruning.targets import find_targets

sys.path.insert(0, str(Path(__file__).parent))
import nir_spec  # noqa: E402
from test_pooling import CIFAR_FILES  # noqa: E402

torch.set_num_threads(1)
FAST = ["--epochs", "2", "--prune-epochs", "1", "--finetune-epochs", "1", "--quant-epochs", "1"]


def write_striped_cifar_folder(folder: Path, n: int = 24) -> None:
    """CIFAR-10 python batches (the real on-disk format) that a net can learn in two epochs:
    class ``c`` lights rows ``3c .. 3c+2`` (value 230) over dim noise (0..63), so the trained
    network spikes; random images leave a pruned, quantized net silent, which proves nothing."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR_FILES:
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 64, (n, 3, 32, 32), dtype=np.uint8)
        for image, label in zip(images, labels, strict=True):
            image[:, 3 * label : 3 * label + 3, :] = 230
        batch = {b"data": images.reshape(n, 3072), b"labels": [int(v) for v in labels]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def run_fit(tmp_path: Path, model: str, dataset: str) -> tuple[Path, dict]:
    data = []
    if dataset == "cifar10":  # 120 images: 8 epochs of batch 16 before the net spikes
        write_striped_cifar_folder(tmp_path / "data" / "cifar-10-batches-py")
        data = ["--data-dir", str(tmp_path / "data"), "--epochs", "8", "--batch-size", "16"]
    argv = ["fit", "--chip", "loihi", "--model", model, "--hidden", "4,8", "--method", "stds"]
    argv += ["--sparsity", "0.7", "--dataset", dataset, *FAST, *data, "--seed", "0"]
    argv += ["--backend", "lava", "--samples", "12", "--json"]
    argv += ["--out", str(tmp_path), "--name", "run"]
    result = CliRunner().invoke(main, argv, env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return tmp_path / "run", json.loads((tmp_path / "run" / "report.json").read_text())


def assert_exact_budget(report: dict, model: str, shape: tuple[int, ...]) -> None:
    built = build_model(model, shape, 10, hidden=(4, 8))
    targets = find_targets(built, shape, conv_weight_sharing=False)
    cheapest = min(float(t.cost.min()) for t in targets)
    gap = report["budget"]["synapses"] - report["pruned"]["synapses"]
    assert 0 <= gap < cheapest


def assert_nir_round_trip(nir_path: Path, shape: tuple[int, ...]) -> None:
    """The file runs in the spec simulator exactly as the model neuroprune imports from it."""
    from neuroprune.models.nir_model import import_nir
    from neuroprune.sim.torch_reference import model_counts

    graph = nir_spec.read(nir_path)
    rng = np.random.default_rng(0)
    x = rng.random((graph.metadata["timesteps"], 6, *shape)).astype(np.float32)
    oracle = nir_spec.simulate(graph, x, float(graph.metadata["dt"]))
    neuron_names = sorted(name for name in oracle if name.endswith("_neuron"))
    imported = import_nir(nir_path).model
    counts = model_counts(imported, x)
    assert len(counts) == len(neuron_names)
    for name, count in zip(neuron_names, counts, strict=True):
        expected = oracle[name].sum(axis=0).reshape(count.shape[0], -1)
        assert np.array_equal(expected, count), name


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("model", ["sew", "vgg"])
@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_deep_models_fit_quantize_export_and_verify_on_lava(tmp_path, model, dataset):
    run_dir, report = run_fit(tmp_path, model, dataset)
    shape = (3, 32, 32) if dataset == "cifar10" else (1, 8, 8)
    assert_exact_budget(report, model, shape)
    quantized = report["quantized"]
    assert quantized["format"] and all(row["weight_scale"] > 0 for row in quantized["layers"])
    assert report["fit"]["fits"] is True
    assert_nir_round_trip(run_dir / "model.nir", shape)
    sim = report["simulation"]
    assert sim["backend"] == "lava" and sim["mode"] == "fixed"
    assert sim["spike_agreement"] == 1.0 and sim["agreement_source"] == "reference"
    assert sim["model_spike_agreement"] == 1.0
    assert sum(layer["spikes"] for layer in sim["layers"]) > 0, "silence would prove nothing"
    assert not report["stages_not_run"]


def test_average_pooling_becomes_sum_pooling_exactly():
    """``W avg(S) = (W / k**2) sum(S)``: the quantizer's rewrite changes no spike (the
    unchanged model is the oracle)."""
    from spikingjelly.activation_based import functional

    from neuroprune.models.zoo import model_blocks
    from neuroprune.quantize.model import sum_pooling

    model = build_model("vgg", (1, 8, 8), 10, hidden=(4, 8), seed=3).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                module.weight.abs_().mul_(4.0)  # loud enough that every layer spikes
    x = torch.rand(6, 5, 1, 8, 8) * 2
    expected = [m for m in model.modules() if hasattr(m, "v_threshold")]
    before = _spikes(model, x, expected)
    functional.reset_net(model)
    for block in model_blocks(model, (1, 8, 8), where="test"):
        sum_pooling(block)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.AvgPool2d)]
    assert pools and all(p.divisor_override == 1 for p in pools)
    after = _spikes(model, x, expected)
    assert all(b.sum() > 0 for b in before)
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))


def _spikes(model, x, nodes):
    out = []
    hooks = [n.register_forward_hook(lambda m, i, o: out.append(o.detach().clone())) for n in nodes]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return out


@pytest.mark.slow
def test_fit_starts_from_a_pooled_nir_chain(tmp_path):
    from neuroprune.export import export_nir

    model = build_model("vgg", (1, 8, 8), 10, hidden=(4, 8), seed=1)
    path = export_nir(
        model, tmp_path / "vgg.nir", timesteps=8, encoding="direct", input_shape=(1, 8, 8)
    )
    argv = ["fit", "--chip", "loihi", "--from", str(path), "--sparsity", "0.5"]
    argv += ["--prune-epochs", "1", "--finetune-epochs", "0", "--quant-epochs", "0"]
    argv += ["--backend", "reference", "--samples", "20", "--json"]
    argv += ["--out", str(tmp_path), "--name", "run"]
    result = CliRunner().invoke(main, argv, env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.stdout, result.stderr)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["simulation"]["spike_agreement"] == 1.0
    graph = nir_spec.read(tmp_path / "run" / "model.nir")
    assert any(type(node).__name__ == "SumPool2d" for node in graph.nodes.values())


def test_chip_traffic_counts_spikes_into_residual_layers():
    """Spikes crossing chips, recounted from the deployment spec (graph form: each layer's
    input columns are its ADDed sources, block after block), not from the summary."""
    from test_fit import profile

    from neuroprune.export import build_nir_graph
    from neuroprune.fit.packing import pack
    from neuroprune.fit.traffic import chip_traffic
    from neuroprune.sim.spec import spec_from_graph

    model = build_sew((1, 8, 8), 10, stages=((4, 1), (8, 1)), seed=4).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                module.weight.mul_(torch.rand(module.weight.shape) < 0.3)  # sparse, like pruned
    summary = model.summary((1, 8, 8), 8)
    chip = profile(**{"chip.cores": 2, "chip.neurons_max": 256, "core.neurons_max": 128})
    packing = pack(summary, chip)
    assert packing.chips_used >= 4
    rng = np.random.default_rng(1)
    rates = [rng.random(layer.neurons) * 3 for layer in summary.layers]
    traffic = chip_traffic(summary, packing, rates)

    spec = spec_from_graph(
        build_nir_graph(model, timesteps=8, encoding="direct", input_shape=(1, 8, 8))
    )
    chips = [packing.core_of_neuron(layer) // packing.cores_per_chip for layer in summary.layers]
    expected = 0.0
    for i, layer in enumerate(spec.layers):
        columns = [(s, j) for s in layer.sources if s >= 0 for j in range(len(rates[s]))]
        if not columns:
            continue  # the network input comes from off-chip
        weights = layer.weight.tocsc()
        for c, (s, j) in enumerate(columns):
            targets = weights.indices[weights.indptr[c] : weights.indptr[c + 1]]
            far = {int(chips[i][t]) for t in targets} - {int(chips[s][j])}
            expected += rates[s][j] * len(far)
    assert traffic["not_counted"] == []
    assert traffic["inter_chip_spikes_per_sample"] == pytest.approx(expected, rel=1e-9)
    assert expected > 0
