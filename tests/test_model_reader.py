"""The one model reader (neuroprune/models/reader.py) on each kind of model, against hand counts.

Models:

* chain (input (1, 8, 8)): ``0 conv 1->4 pad 1, 1 BN, 2 LIF, 3 AvgPool 2, 4 conv 4->8 pad 1,
  5 LIF, 6 Flatten, 7 Linear 128->10, 8 LIF``: three synaptic layers ``0``, ``4``, ``7``, each
  reading the one before it (the first the input); ``4`` reads ``0``'s 4x8x8 map pooled to
  4x4x4, ``7`` reads ``4``'s 8x4x4 map through the Flatten (128 inputs).
* SEW-ResNet (input (1, 8, 8), stages ((8, 1), (16, 1))): stage 0 conv writes stream
  ``stages.0``; its block's conv1 reads it (1 source), conv2 writes back into it; the stage 1
  conv reads the stream as 2 ADDed sources (stage conv + block conv2, 8x8x8), and the same for
  stage 1 and the readout ``fc`` (16x4x4 flattened: 256 inputs).
* GraphNet (input (2, 6, 6)), an imported NIR graph: conv -> LIF -> conv -> LIF, the Flatten
  reads stages 3 and 1 ADDed, then Affine -> LIF; inputs ``(-1,), (0,), (1,), (2,), (3, 1),
  (4,), (5,)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer

from neuroprune.core.errors import ModelError, UnsupportedError
from neuroprune.export.stages import model_graph
from neuroprune.graph.read import read_network
from neuroprune.graph.stages import FlattenStage, NeuronStage, SynapseStage
from neuroprune.graph.write import build_graph, write_graph
from neuroprune.models import summarize
from neuroprune.models.graph_net import GraphNet
from neuroprune.models.nir_model import model_from_network
from neuroprune.models.reader import model_kind, model_wiring
from neuroprune.models.sew import build_sew
from neuroprune.models.zoo import model_blocks, neuron_factory
from neuroprune.pruning.channels import channel_graph

torch.set_num_threads(1)


def chain_model() -> torch.nn.Sequential:
    make = neuron_factory("lif", 2.0, 1.0)
    model = torch.nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, bias=False),
        layer.BatchNorm2d(4),
        make(),
        layer.AvgPool2d(2),
        layer.Conv2d(4, 8, 3, padding=1, bias=False),
        make(),
        layer.Flatten(),
        layer.Linear(128, 10, bias=False),
        make(),
    )
    functional.set_step_mode(model, "m")
    return model


def test_a_chain_reads_as_three_layers_each_reading_the_one_before():
    reading = model_wiring(chain_model(), (1, 8, 8))
    assert reading.kind == "chain" and reading.is_chain and not reading.is_wired
    layers = reading.layers
    assert [w.name for w in layers] == ["0", "4", "7"]
    assert [w.kind for w in layers] == ["conv", "conv", "dense"]
    assert [w.in_space for w in layers] == [None, "0", "4"]
    assert [w.out_space for w in layers] == ["0", "4", None]
    assert [w.in_shape for w in layers] == [(1, 8, 8), (4, 4, 4), (8, 4, 4)]
    assert [w.out_shape for w in layers] == [(4, 8, 8), (8, 4, 4), (10,)]
    assert [w.batchnorm for w in layers] == ["1", None, None]
    assert [w.neuron for w in layers] == ["2", "5", "8"]
    assert [w.pool_kernel for w in layers] == [1, 2, 1]
    assert [w.flatten for w in layers] == [False, False, True]
    assert [w.sources for w in layers] == [1, 1, 1]
    assert reading.sources == ((), ("0",), ("4",))
    assert [b.name for b in reading.blocks] == ["0", "4", "7"]
    assert [b.in_shape for b in reading.blocks] == [(1, 8, 8), (4, 4, 4), (128,)]


def test_a_sew_resnet_reads_its_residual_adds_as_several_sources():
    reading = model_wiring(build_sew((1, 8, 8), 10), (1, 8, 8))
    assert reading.kind == "wired" and reading.is_wired and not reading.is_chain
    names = [w.name for w in reading.layers]
    assert names == [
        "stages.0.conv",
        "stages.0.blocks.0.conv1",
        "stages.0.blocks.0.conv2",
        "stages.1.conv",
        "stages.1.blocks.0.conv1",
        "stages.1.blocks.0.conv2",
        "fc",
    ]
    assert [w.sources for w in reading.layers] == [1, 1, 1, 2, 1, 1, 2]
    assert reading.sources == (
        (),
        ("stages.0.conv",),
        ("stages.0.blocks.0.conv1",),
        ("stages.0.conv", "stages.0.blocks.0.conv2"),
        ("stages.1.conv",),
        ("stages.1.blocks.0.conv1",),
        ("stages.1.conv", "stages.1.blocks.0.conv2"),
    )
    fc = reading.layers[-1]
    assert fc.flatten and fc.in_shape == (16, 4, 4) and fc.out_space is None
    assert reading.layers[3].in_shape == (8, 8, 8) and reading.layers[3].out_shape == (16, 4, 4)
    assert [b.name for b in reading.blocks] == names
    assert reading.blocks[-1].in_shape == (256,)


def write_residual_graph(path) -> tuple[int, ...]:
    rng = np.random.default_rng(0)

    def weight(*shape):
        return (rng.integers(-2, 4, size=shape) * 2.0**-3).astype(np.float32)

    def conv(name, c_in, c_out):
        shapes = {"in_shape": (c_in, 6, 6), "out_shape": (c_out, 6, 6), "padding": 1}
        syn = SynapseStage(name, "conv", weight(c_out, c_in, 3, 3), None, **shapes)
        return [syn, NeuronStage(f"{name}_sn", "LIF", syn.out_shape, 1.0, 2.0, True, None, True)]

    dense = SynapseStage("fc", "dense", weight(5, 144), None, in_shape=(144,), out_shape=(5,))
    stages = [
        *conv("c0", 2, 4),
        *conv("c1", 4, 4),
        FlattenStage("flatten", (4, 6, 6)),
        dense,
        NeuronStage("fc_sn", "LIF", (5,), 1.0, 2.0, True, None, True),
    ]
    inputs = [(-1,), (0,), (1,), (2,), (3, 1), (4,), (5,)]
    shape = (2, 6, 6)
    graph = build_graph(stages, input_shape=shape, timesteps=4, encoding="direct", inputs=inputs)
    write_graph(graph, path)
    return shape


def test_a_graphnet_reads_as_its_stages_and_their_summed_inputs(tmp_path):
    shape = write_residual_graph(tmp_path / "g.nir")
    model = model_from_network(read_network(tmp_path / "g.nir"), as_graph=True).model
    assert isinstance(model, GraphNet) and model_kind(model) == "graph"
    reading = model_wiring(model, shape, allow_graph=True)
    assert reading.is_graph and not reading.is_chain and not reading.is_wired
    names = ["c0", "c0_sn", "c1", "c1_sn", "flatten", "fc", "fc_sn"]
    assert [s.module for s in reading.stages] == names
    assert reading.stage_inputs == ((-1,), (0,), (1,), (2,), (3, 1), (4,), (5,))
    assert reading.layers == () and reading.blocks == () and reading.sources == ()
    stages, inputs = model_graph(model, shape)
    assert [s.module for s in stages] == names and inputs == reading.stage_inputs


def test_a_graph_where_layers_are_needed_is_the_walkers_error(tmp_path):
    shape = write_residual_graph(tmp_path / "g.nir")
    model = model_from_network(read_network(tmp_path / "g.nir"), as_graph=True).model
    with pytest.raises(ModelError, match="torch.nn.Sequential"):
        model_wiring(model, shape)
    with pytest.raises(UnsupportedError, match="Sequential chain or a model with a wiring"):
        channel_graph(model, shape)


def test_a_plain_module_is_other_and_rejected_by_name():
    model = torch.nn.Module()
    assert model_kind(model) == "other"
    with pytest.raises(ModelError, match="torch.nn.Sequential") as err:
        model_wiring(model, (1, 8, 8), where="here")
    assert err.value.where == "here"


@pytest.mark.parametrize("make", [chain_model, lambda: build_sew((1, 8, 8), 10)])
def test_every_consumer_sees_the_readers_layers(make):
    model = make()
    reading = model_wiring(model, (1, 8, 8))
    assert [b.name for b in model_blocks(model, (1, 8, 8), where="t")] == [
        b.name for b in reading.blocks
    ]
    summary = summarize(model, (1, 8, 8), 2)
    assert [layer.name for layer in summary.layers] == [w.name for w in reading.layers]
    if reading.is_wired:  # sca's channel graph reads the same wiring
        assert channel_graph(model, (1, 8, 8)).layers == reading.layers
