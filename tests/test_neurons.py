"""Strict-threshold neurons: the tie rule, and equality with SpikingJelly off ties."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate

from neuroprune.core.errors import ModelError
from neuroprune.models import neurons
from neuroprune.models.walker import parse_blocks


def _pair(kind: str, **extra):
    common = {
        "v_threshold": 1.0,
        "v_reset": 0.0,
        "detach_reset": True,
        "surrogate_function": surrogate.ATan(),
        "step_mode": "m",
        **extra,
    }
    if kind == "if":
        return neuron.IFNode(**common), neurons.IFNode(**common)
    decay = kind != "lif_nodecay"
    return (
        neuron.LIFNode(tau=2.5, decay_input=decay, **common),
        neurons.LIFNode(tau=2.5, decay_input=decay, **common),
    )


def test_if_fires_only_above_the_threshold():
    # IF, v_th = 1, input 0.5 per step: H = 0.5, 1.0 (a tie: no spike), 1.5 (spike), then 0.5
    node = neurons.IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m")
    spikes = node(torch.full((4, 1, 1), 0.5))
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]


def test_lif_tie_does_not_fire():
    # LIF tau 2, decay_input: H = V + (X - V)/2; X = 2 gives H = 1.0 = v_th at step 1
    node = neurons.LIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, step_mode="m")
    spikes = node(torch.full((2, 1, 1), 2.0))
    assert spikes.flatten().tolist() == [0.0, 1.0]  # step 2: H = 1 + (2 - 1)/2 = 1.5


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("lif", {}),
        ("lif_nodecay", {}),
        ("if", {}),
        ("lif", {"v_reset": None}),
        ("lif", {"detach_reset": False}),
        ("lif", {"surrogate_function": surrogate.Sigmoid()}),
    ],
)
def test_fused_node_equals_spikingjelly_off_ties(kind, extra):
    """SpikingJelly's per-step node is the oracle: same spikes, state and gradients."""
    torch.manual_seed(0)
    theirs, ours = _pair(kind, **extra)
    x = torch.randn(6, 4, 20) * 1.5
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    sa, sb = theirs(xa), ours(xb)
    weight = torch.randn_like(sa)
    (sa * weight).sum().backward()
    (sb * weight).sum().backward()
    assert torch.equal(sa, sb) and torch.equal(theirs.v, ours.v)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)
    for node in (theirs, ours):
        functional.reset_net(node)
        node.eval()
    assert torch.equal(theirs(x), ours(x))


@pytest.mark.parametrize("store_v_seq", [False, True])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_state_carried_over_two_calls_has_spikingjelly_gradients(store_v_seq, v_reset):
    """Gradients through the potential handed from one call to the next, and through
    ``v``/``v_seq`` themselves, equal SpikingJelly's per-step node."""
    torch.manual_seed(1)
    theirs, ours = _pair("lif", v_reset=v_reset, store_v_seq=store_v_seq)
    x = torch.randn(5, 3, 7) * 1.5
    grads = []
    for node in (theirs, ours):
        xr = x.clone().requires_grad_()
        first, second = node(xr), node(xr * 0.7)
        loss = first.sum() * 0.5 + (second * torch.arange(7.0)).sum() + node.v.sum() * 0.1
        if store_v_seq:
            loss = loss + node.v_seq.sum() * 0.05
        loss.backward()
        grads.append(xr.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_channels_last_input_gives_the_same_spikes_and_keeps_its_layout():
    torch.manual_seed(2)
    theirs, ours = _pair("lif")
    x = torch.randn(4, 2, 3, 5, 5) * 1.5
    x_last = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    xa, xb = x.clone().requires_grad_(), x_last.clone().requires_grad_()
    sa, sb = theirs(xa), ours(xb)
    assert torch.equal(sa, sb) and torch.equal(theirs.v, ours.v)
    assert sb.stride() == x_last.stride()
    weight = torch.randn_like(sa)
    (sa * weight).sum().backward()
    (sb * weight).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)


def test_store_v_seq_keeps_the_potentials():
    node = neurons.IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m", store_v_seq=True)
    node(torch.full((3, 1, 1), 0.6))
    assert node.v_seq.flatten().tolist() == pytest.approx([0.6, 0.0, 0.6])


def test_plain_spikingjelly_nodes_are_rejected_and_make_strict_converts_them():
    model = torch.nn.Sequential(
        layer.Flatten(), layer.Linear(64, 10, bias=False), neuron.LIFNode(tau=3.0, v_reset=0.0)
    )
    functional.set_step_mode(model, "m")
    with pytest.raises(ModelError, match="strict"):
        parse_blocks(model, (1, 8, 8), 10)
    neurons.make_strict(model)
    assert type(model[2]) is neurons.LIFNode and model[2].tau == 3.0
    assert len(parse_blocks(model, (1, 8, 8), 10)) == 1
