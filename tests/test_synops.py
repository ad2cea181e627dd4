"""neuroprune's synaptic operations per layer against SpikingJelly 2's ``SynOpCounter``.

The oracle (``tests/synops_oracle.py``) runs the torch model under SpikingJelly 2's counters
only; neuroprune's figure is ``sim.result.synops_per_layer`` of the exported file with the
model's spike counts. The definitions differ in two ways, each asserted exactly:

* SpikingJelly counts every weight a spike meets, zeros included; neuroprune only nonzero
  (physical) synapses. On a spike-driven layer the difference is the uses of zero weights, and
  a layer without zero weights agrees as it is.
* SpikingJelly's ``SynOpCounter`` counts 0 for a layer whose input is analog (its
  ``MACCounter`` counts it, densely); neuroprune counts the nonzero input values times their
  nonzero fan-out, as the host computes that layer's current.

Counted on nonzero synapses with binary input events (the aligned definition), the two
counters agree on every layer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer
from synops_oracle import spikingjelly_synops

from neuroprune.export import export_nir
from neuroprune.models import neurons
from neuroprune.sim.inputs import prepare_stimulus
from neuroprune.sim.result import synops_per_layer, synops_per_sample
from neuroprune.sim.spec import read_deployment
from neuroprune.sim.torch_reference import model_counts

T, N, SHAPE = 6, 24, (1, 6, 6)
# Multiply-accumulates per step and sample of each first layer, padding positions included
# (MACCounter: in x out for a Linear, c_out x c_in x kh x kw x output positions for a conv).
FIRST_LAYER_MACS = {"mlp": 36 * 20, "conv": 4 * 1 * 3 * 3 * 6 * 6}


def _pruned(module: torch.nn.Module, gen: torch.Generator, keep: float) -> torch.nn.Module:
    """Random weights with about ``1 - keep`` of them exactly zero."""
    with torch.no_grad():
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * 0.8)
        module.weight.mul_((torch.rand(module.weight.shape, generator=gen) < keep).float())
    return module


def _net(kind: str) -> torch.nn.Sequential:
    """A small random network whose synaptic layers are pruned except the last (dense)."""
    gen = torch.Generator().manual_seed(3)
    if kind == "mlp":
        modules = [
            layer.Flatten(),
            _pruned(layer.Linear(36, 20, bias=False), gen, 0.4),
            neurons.IFNode(v_threshold=0.5, v_reset=0.0),
            _pruned(layer.Linear(20, 16, bias=False), gen, 0.5),
            neurons.LIFNode(tau=2.0, v_threshold=0.5, v_reset=0.0),
            _pruned(layer.Linear(16, 10, bias=False), gen, 1.0),
            neurons.IFNode(v_threshold=0.5, v_reset=0.0),
        ]
    else:
        modules = [
            _pruned(layer.Conv2d(1, 4, 3, padding=1, bias=False), gen, 0.5),
            neurons.IFNode(v_threshold=0.5, v_reset=0.0),
            _pruned(layer.Conv2d(4, 4, 3, stride=2, padding=1, bias=False), gen, 0.5),
            neurons.IFNode(v_threshold=0.5, v_reset=0.0),
            layer.Flatten(),
            _pruned(layer.Linear(36, 10, bias=False), gen, 1.0),
            neurons.IFNode(v_threshold=0.5, v_reset=0.0),
        ]
    model = torch.nn.Sequential(*modules)
    functional.set_step_mode(model, "m")
    return model.eval()


def _input(encoding: str) -> np.ndarray:
    gen = torch.Generator().manual_seed(4)
    if encoding == "spikes":
        return (torch.rand(T, N, *SHAPE, generator=gen) < 0.3).float().numpy()
    images = torch.rand(N, *SHAPE, generator=gen) * (torch.rand(N, *SHAPE, generator=gen) < 0.6)
    return images.expand(T, *images.shape).contiguous().numpy()  # direct: zero pixels too


def _neuroprune(model, x: np.ndarray, tmp_path) -> tuple[list[float], float]:
    path = export_nir(model, tmp_path / "m.nir", timesteps=T, encoding="direct", input_shape=SHAPE)
    spec = read_deployment(path)
    stimulus = prepare_stimulus(spec, x)
    counts = model_counts(model, x)
    return list(synops_per_layer(spec, stimulus, counts)), synops_per_sample(spec, stimulus, counts)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("encoding", ["spikes", "direct"])
def test_synops_agree_with_spikingjelly_on_nonzero_synapses(tmp_path, kind, encoding):
    model, x = _net(kind), _input(encoding)
    ours, total = _neuroprune(model, x, tmp_path)
    theirs = spikingjelly_synops(model, x, batch=10)
    assert min(theirs["aligned"]) > 0, "every layer must see events for the test to mean anything"
    assert [round(v * N, 6) for v in ours] == theirs["aligned"]
    assert total == pytest.approx(sum(ours), rel=1e-12)
    zero_uses = theirs["zero_synapses"]
    assert zero_uses[0] > 0 and zero_uses[-1] == 0  # pruned first layer, dense last layer
    for k, (mine, counted) in enumerate(zip(ours, theirs["synops"], strict=True)):
        if k == 0 and encoding == "direct":  # analog input: a MAC layer to SpikingJelly
            assert counted == 0 and theirs["macs"][0] == T * N * FIRST_LAYER_MACS[kind]
        else:
            assert counted == round(mine * N) + zero_uses[k], k
