"""NeuroBench 2.3.0's metrics of a neuroprune-pruned model against neuroprune's own counts.

NeuroBench runs in its test environment (``neuroprune.envs``, ``make test-envs``), in a child
process (``tests/neurobench_runner.py``: its ``Benchmark`` with its static and workload
metrics, a snnTorch-free ``NeuroBenchModel`` around the SpikingJelly 2 model). The model is a
zoo mlp / conv trained and pruned by neuroprune (``prune_to_budget``, magnitude, 80 % of the
synapses removed); neuroprune's side is ``models.summarize`` (synapse counts) and
``sim.result.synops_per_layer`` (synaptic operations of the exported file), never NeuroBench.

Where the definitions differ (NeuroBench 2.3.0's files, under ``neurobench/``):

* ``ParameterCount`` (``metrics/static/parameter_count.py`` line 17,
  ``sum(p.numel() for p in model.__net__().parameters())``) counts every parameter, zeros
  included, BatchNorm's weight and bias too; neuroprune counts nonzero synapses (BN folded).
  So ParameterCount = the kernel entries neuroprune sees + 2 per BatchNorm channel.
* ``ConnectionSparsity`` (``metrics/static/connection_sparsity.py`` lines 47-48, 116: zeros of
  ``module.weight`` over its ``numel()`` for ``nn.Linear``/``nn.Conv*`` (``blocks/layer.py``
  lines 4-7), rounded to 4 decimals) counts kernel entries, as a chip with conv weight sharing
  stores them: it equals ``1 - kernel_nonzeros / kernel_entries`` of neuroprune's summary.
  neuroprune's unrolled count (one synapse per in-bounds tap and output neuron, chips without
  weight sharing) has no NeuroBench counterpart.
* ``Footprint`` (``metrics/static/footprint.py`` lines 19, 22-23: ``numel() * element_size()``
  of every parameter and buffer) is the dense float32 storage, zeros and BN running statistics
  included: pruning does not change it.
* ``SynapticOperations`` (``metrics/workload/synaptic_operations.py`` lines 64-69,
  ``metrics/utils/layers/input.py`` lines 54-57, ``binary_copy.py`` line 38) runs each layer on
  its binarised input with a copy of the layer whose nonzero weights are 1: the operations of
  nonzero input values on nonzero weights, as neuroprune counts them. A layer whose input holds
  values other than -1, 0, 1 (the direct-encoded first layer) is counted as MACs, the spiking
  layers as ACs; per sample (line 72). ``Dense`` (``total=True``: all inputs and weights 1) is
  T times the in-bounds (unrolled) positions neuroprune counts for the unpruned layers.
* ``ActivationSparsity`` (``metrics/workload/activation_sparsity.py`` lines 44, 54): zero
  outputs over all outputs of the hooked spiking layers (SpikingJelly's ``BaseNode``).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from neurobench_runner import neurobench_metrics

from neuroprune.data.datasets import load_dataset
from neuroprune.data.encoding import encode
from neuroprune.envs import environment_spec, status
from neuroprune.export import export_nir
from neuroprune.fit.budget import derive_budget
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.prune_loop import prune_to_budget
from neuroprune.sim.inputs import prepare_stimulus
from neuroprune.sim.result import synops_per_layer
from neuroprune.sim.spec import read_deployment
from neuroprune.sim.torch_reference import model_counts
from neuroprune.train.loop import TrainConfig, train

T, N, SPARSITY = 4, 48, 0.8
HIDDEN = {"mlp": (16,), "conv": (2, 4)}


@pytest.fixture(scope="module")
def digits_data():
    return load_dataset("digits")


def _pruned(kind: str, data) -> torch.nn.Module:
    """A zoo model trained 2 epochs, then pruned by neuroprune to 20 % of its synapses."""
    torch.manual_seed(0)
    model = build_model(kind, data.input_shape, data.num_classes, hidden=HIDDEN[kind], seed=0)
    config = TrainConfig(epochs=2, batch_size=64, timesteps=T, lr=1e-2)
    train(model, data, config)
    budget = derive_budget(None, summarize(model, data.input_shape, T), sparsity=SPARSITY)
    result = prune_to_budget(
        model, data, config, method="magnitude", budget=budget, epochs=1, finetune_epochs=1
    )
    assert result.synapses == budget.synapses
    return result.model.eval()


def _batchnorms(model: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.neurobench
@pytest.mark.parametrize("kind", ["mlp", pytest.param("conv", marks=pytest.mark.slow)])
def test_neurobench_metrics_agree_with_neuroprunes_counts(tmp_path, digits_data, kind):
    model = _pruned(kind, digits_data)
    x, labels = encode(digits_data.x_test[:N], T), digits_data.y_test[:N]
    summary = summarize(model, digits_data.input_shape, T)
    counts = model_counts(model, x)
    path = export_nir(
        model, tmp_path / "m.nir", timesteps=T, encoding="direct", input_shape=(1, 8, 8)
    )
    spec = read_deployment(path)
    ours = synops_per_layer(spec, prepare_stimulus(spec, x), counts)
    assert all(int(c.sum()) > 0 for c in counts), "every layer must spike for SynOps to mean much"

    measured = neurobench_metrics(model, x, labels)
    got = measured["results"]

    # NeuroBench ran in its own environment, on the tool environment's numpy (numba accepts it)
    env = status("neurobench").path.resolve()
    files = {k: Path(v).resolve() for k, v in measured["files"].items()}
    assert Path(measured["prefix"]).resolve() == env and files["neurobench"].is_relative_to(env)
    assert (
        measured["versions"]["neurobench"]
        == environment_spec("neurobench").requirements[0].partition("==")[2]
    )
    assert not files["numpy"].is_relative_to(env)
    assert measured["versions"]["numpy"] == importlib.metadata.version("numpy")
    assert measured["numba_jit"] == 45.0  # a numba-jitted sum of 0..9 ran on that numpy

    # static metrics: kernel entries and nonzero kernel entries
    entries = sum(layer.kernel_entries for layer in summary.layers)
    nonzeros = sum(layer.kernel_nonzeros for layer in summary.layers)
    bn_channels = sum(bn.num_features for bn in _batchnorms(model))
    assert got["ParameterCount"] == entries + 2 * bn_channels
    assert got["ConnectionSparsity"] == round(1 - nonzeros / entries, 4)
    assert entries < 10_000  # then the 4 rounded decimals give the count back exactly
    assert round(entries * (1 - got["ConnectionSparsity"])) == nonzeros
    if kind == "mlp":  # no conv: NeuroBench's kernel count is neuroprune's synapse count
        assert nonzeros == summary.synapses() and entries == summary.dense_positions()
    else:  # neuroprune's unrolled count on a chip without weight sharing is another figure
        assert summary.synapses() > nonzeros
    buffers = 4 * 2 * bn_channels + 8 * len(_batchnorms(model))  # running stats, batch count
    assert got["Footprint"] == 4 * got["ParameterCount"] + buffers

    # workload metrics, per sample
    synops = got["SynapticOperations"]
    assert synops["Effective_MACs"] == pytest.approx(ours[0], rel=1e-12)  # direct input: MACs
    assert synops["Effective_ACs"] == pytest.approx(sum(ours[1:]), rel=1e-12)
    assert synops["Dense"] == T * summary.dense_positions()
    spikes = sum(int(c.sum()) for c in counts)
    assert got["ActivationSparsity"] == pytest.approx(1 - spikes / (T * N * summary.neurons))
    predictions = counts[-1].argmax(1)  # neuroprune's prediction: first index on ties
    assert got["ClassificationAccuracy"] == pytest.approx(float(np.mean(predictions == labels)))
