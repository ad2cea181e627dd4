"""A neuron swapped in with ``models.zoo.set_module`` (quantization puts chip-arithmetic nodes in
this way) is reset between batches even while the node it replaced is still referenced:
SpikingJelly's ``reset_net`` caches the stateful modules it found first (issue 23's
diagnosis kept the PTQ layers, and the swapped-in nodes then carried one batch's state into
the next)."""

from __future__ import annotations

import copy

import torch
from spikingjelly.activation_based import functional

from neuroprune.models.zoo import build_model, model_blocks, set_module


def test_a_swapped_neuron_is_reset_by_reset_net():
    model = build_model("mlp", (64,), 10, hidden=(8,), seed=0)
    block = model_blocks(model, (64,), where="test")[0]
    old = block.neuron  # still referenced: the stale cache entry stays alive
    model(torch.rand(2, 5, 64))  # [T, B, features]
    functional.reset_net(model)  # caches the stateful modules, `old` among them
    fresh = copy.deepcopy(old)
    set_module(model, block.neuron_name, fresh)
    model(torch.rand(2, 5, 64))
    functional.reset_net(model)
    assert isinstance(fresh.v, float) and fresh.v == 0.0  # reset, not left at [5, 8]
    assert model(torch.rand(2, 3, 64)).shape == (2, 3, 10)  # a smaller batch runs
    assert old is not None
