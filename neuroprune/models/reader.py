"""The one model reader: what a model is made of, whatever its kind (docs/conventions.md §1).

A model reaches the pipeline in one of three forms, told apart by :func:`model_kind`:

* ``"chain"``: a ``torch.nn.Sequential`` following the convention, walked by
  :func:`neuroprune.models.walker.parse_blocks`;
* ``"wired"``: a model with a ``wiring(input_shape)`` method (today
  :class:`neuroprune.models.sew.SEWResNet`) that lists its own :class:`SynapseLayer` and
  provides ``blocks``, ``summary``, ``fold_batchnorm`` and ``conv_batchnorm_pairs``;
* ``"graph"``: a model with a ``stage_graph(input_shape)`` method (an imported NIR graph,
  :class:`neuroprune.models.graph_net.GraphNet`) that gives its export stages and their sources.

:func:`model_wiring` reads any of them into one :class:`ModelWiring`: for a chain or a wired
model, one :class:`SynapseLayer` and one :class:`~neuroprune.models.blocks.Block` per synaptic
layer in forward order, and per layer the layers whose spikes it sums (``sources``); for a
graph, its stages and each stage's inputs. Every stage asks this reader instead of probing the
model with ``hasattr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neuroprune.graph.stages import Stage
from neuroprune.models.blocks import Block
from neuroprune.models.walker import parse_blocks

CHAIN = "chain"
WIRED = "wired"
GRAPH = "graph"
OTHER = "other"


@dataclass(frozen=True)
class SynapseLayer:
    """One Linear/Conv2d of a model, with its BN and neuron, and what it reads and writes.

    Attributes:
        name: module path of the Linear/Conv2d (``model.get_submodule(name)``).
        kind: ``"conv"`` or ``"dense"``.
        in_shape: one input source without time and batch, ``(C, H, W)`` or ``(F,)``; for a
            layer reading through a Flatten, the shape *before* the flatten.
        out_shape: ``(C, H, W)`` or ``(F,)``.
        batchnorm: module path of its BatchNorm2d, or None.
        neuron: module path of its neuron node.
        in_space: name of the channel space it reads (None: the network input).
        out_space: name of the channel space it writes (None: not prunable, e.g. the output).
        sources: spike tensors of ``in_space`` summed at its input by residual ADDs (>= 1).
        flatten: reads ``in_space`` through a C-order Flatten (channel ``c`` is the input
            columns ``c*H*W .. (c+1)*H*W - 1``).
        pool_kernel: reads ``in_space`` through ``k x k`` pooling (1: none); ``in_shape`` is
            then the pooled map, and the chip wires ``W P`` (``k**2`` synapses per weight).
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    batchnorm: str | None
    neuron: str
    in_space: str | None
    out_space: str | None
    sources: int = 1
    flatten: bool = False
    pool_kernel: int = 1

    @property
    def in_channels(self) -> int:
        """Channels (or features) of one source."""
        return int(self.in_shape[0])

    @property
    def positions(self) -> int:
        """Neurons per output channel: ``H_out * W_out`` (1 for a dense layer)."""
        return int(np.prod(self.out_shape[1:])) if len(self.out_shape) > 1 else 1


@dataclass(frozen=True, eq=False)
class ModelWiring:
    """What :func:`model_wiring` read from a model (module docstring).

    Attributes:
        kind: ``"chain"``, ``"wired"`` or ``"graph"`` (:func:`model_kind`).
        input_shape: one sample's shape without time and batch.
        layers: chain/wired: every synaptic layer in forward order (empty for a graph).
        blocks: chain/wired: the same layers as blocks (module paths as names; the
            readout's ``in_shape`` is the flattened size it reads). Empty for a graph.
        sources: chain/wired: per layer, the names of the layers whose spikes it sums, in
            summing order (``()``: the network input); :func:`wired_sources`.
        stages: graph only: the export stages (:mod:`neuroprune.graph.stages`).
        stage_inputs: graph only: ``stage_inputs[i]`` are the stages whose outputs sum into
            stage ``i`` (``-1``: the network input).
    """

    kind: str
    input_shape: tuple[int, ...]
    layers: tuple[SynapseLayer, ...] = ()
    blocks: tuple[Block, ...] = ()
    sources: tuple[tuple[str, ...], ...] = ()
    stages: tuple[Stage, ...] = ()
    stage_inputs: tuple[tuple[int, ...], ...] = ()

    @property
    def is_chain(self) -> bool:
        """True for a convention ``Sequential``."""
        return self.kind == CHAIN

    @property
    def is_wired(self) -> bool:
        """True for a model that lists its own wiring (a residual SEW-ResNet)."""
        return self.kind == WIRED

    @property
    def is_graph(self) -> bool:
        """True for an imported stage graph (GraphNet)."""
        return self.kind == GRAPH


def model_kind(model: torch.nn.Module) -> str:
    """``"graph"`` (has ``stage_graph``), ``"wired"`` (has ``wiring``), ``"chain"`` (a
    ``Sequential``) or ``"other"`` (none of these; readers reject it). Reads no layer."""
    if callable(getattr(model, "stage_graph", None)):
        return GRAPH
    if hasattr(model, "wiring"):
        return WIRED
    if isinstance(model, torch.nn.Sequential):
        return CHAIN
    return OTHER


def model_wiring(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    *,
    where: str = "model",
    allow_bias: bool = True,
    allow_graph: bool = False,
) -> ModelWiring:
    """Read ``model`` into a :class:`ModelWiring` (module docstring).

    A chain is checked by :func:`parse_blocks` (pooling allowed; ``allow_bias`` accepts the
    BN-folded form; ``where`` names the caller in its errors). A wired model gives its own
    ``wiring``/``blocks``. A graph is read only with ``allow_graph=True``; elsewhere, like any
    model that is neither a chain nor wired, it raises the walker's :class:`ModelError`
    ("model must be a torch.nn.Sequential"), as callers that need synaptic layers expect.
    """
    shape = tuple(int(s) for s in input_shape)
    kind = model_kind(model)
    if kind == GRAPH and allow_graph:
        return _graph_reading(model, shape)
    if kind == WIRED:
        layers = tuple(model.wiring(shape))
        blocks = tuple(model.blocks(shape))
    else:
        blocks = tuple(
            parse_blocks(model, shape, where=where, allow_bias=allow_bias, allow_pooling=True)
        )
        layers = chain_layers(model, blocks)
    return ModelWiring(kind, shape, layers, blocks, tuple(wired_sources(layers)))


def _graph_reading(model: torch.nn.Module, shape: tuple[int, ...]) -> ModelWiring:
    """A graph's stages and inputs (``None``/empty inputs: a chain, stage ``i`` reads ``i-1``)."""
    stages, inputs = model.stage_graph(shape)
    stages = tuple(stages)
    if inputs:
        stage_inputs = tuple(tuple(int(j) for j in srcs) for srcs in inputs)
    else:
        stage_inputs = tuple((i - 1,) for i in range(len(stages)))
    return ModelWiring(GRAPH, shape, stages=stages, stage_inputs=stage_inputs)


def chain_layers(model: torch.nn.Sequential, blocks: Sequence[Block]) -> tuple[SynapseLayer, ...]:
    """One :class:`SynapseLayer` per block of a convention chain; hidden outputs are spaces.

    Block ``i`` reads the space ``blocks[i-1].name`` (one source) and writes ``blocks[i].name``;
    the last block writes no space (the output is never pruned). A dense block after a
    ``(C, H, W)`` block reads it through a Flatten (``in_shape`` is the map before it).
    """
    names = {id(module): name for name, module in model.named_children()}
    layers = []
    for index, block in enumerate(blocks):
        previous = blocks[index - 1] if index else None
        flatten = previous is not None and len(previous.out_shape) == 3 and block.kind == "dense"
        layers.append(
            SynapseLayer(
                name=block.name,
                kind=block.kind,
                in_shape=previous.out_shape if flatten else tuple(block.in_shape),
                out_shape=tuple(block.out_shape),
                batchnorm=names[id(block.batchnorm)] if block.batchnorm is not None else None,
                neuron=block.neuron_name,
                in_space=previous.name if previous is not None else None,
                out_space=block.name if index < len(blocks) - 1 else None,
                flatten=flatten,
                pool_kernel=block.pool_kernel,
            )
        )
    return tuple(layers)


def wired_sources(wiring: Sequence[SynapseLayer]) -> list[tuple[str, ...]]:
    """Per layer, the layers whose spikes it reads, in the order they are summed: the first
    ``sources`` layers that wrote its channel space before it (``()`` for the network input)."""
    writers: dict[str | None, list[str]] = {}
    out = []
    for wired in wiring:
        out.append(tuple(writers.get(wired.in_space, [])[: wired.sources]))
        if wired.out_space is not None:
            writers.setdefault(wired.out_space, []).append(wired.name)
    return out
