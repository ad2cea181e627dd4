"""A convention model as a flat list of export stages (layer L5, shared by NIR and ONNX export).

:func:`model_stages` folds BatchNorm (``models.translate.fold_batchnorm``), checks the model
convention (``models.zoo.parse_blocks``, docs/conventions.md §1) and returns, in order, one
stage per ``Flatten``, synaptic layer and neuron node, with weights as ``float32`` numpy arrays
exactly as the model computes with them (pruned zeros stay exact zeros).

Quantized models (conventions §3) carry their integers along: a :class:`QuantStage` holds
``weight_int`` (int32), the optional ``bias_int`` and the ``neuroprune_quant`` dict, and
:func:`model_stages` proves ``weight == weight_int * weight_scale`` exactly (in float64) and
``v_threshold == threshold_int * weight_scale`` for the neuron that follows, so what the
exporters write is what the chip stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron

from neuroprune.core.errors import ConfigError, ModelError, UnsupportedError
from neuroprune.graph.stages import (
    INPUT,
    FlattenStage,
    NeuronStage,
    PoolStage,
    QuantStage,
    Stage,
    SynapseStage,
    chain_inputs,
)
from neuroprune.models.blocks import POOL_TYPES, Block, pool_kind
from neuroprune.models.reader import GRAPH, WIRED, model_kind, model_wiring
from neuroprune.models.zoo import model_blocks

from ..models import neurons
from ..models.quantized import QUANT_ATTR, quant_stage
from ..models.translate import fold_batchnorm

__all__ = [
    "FlattenStage",
    "NeuronStage",
    "QuantStage",
    "Stage",
    "SynapseStage",
    "check_input_shape",
    "check_timesteps",
    "model_graph",
    "model_stages",
]

StageGraph = tuple[tuple[Stage, ...], tuple[tuple[int, ...], ...]]


def model_graph(model: torch.nn.Module, input_shape: Sequence[int]) -> StageGraph:
    """``(stages, inputs)`` of any supported model: ``inputs[i]`` are the stages whose outputs
    sum into stage ``i`` (:data:`neuroprune.graph.stages.INPUT` for the network input).

    A model with ``stage_graph(input_shape)`` (an imported NIR graph,
    :class:`~neuroprune.models.graph_net.GraphNet`) gives its own. A Sequential chain (pooling
    included) gives :func:`model_stages` with chain inputs. A wired
    model (``wiring()``, e.g. SEW-ResNet) gives one (Flatten,) synapse and neuron stage per
    :class:`~neuroprune.models.reader.SynapseLayer` (read by
    :func:`~neuroprune.models.reader.model_wiring`); a layer reading ``k`` ADDed spike sources
    has those ``k`` neuron stages as inputs (the residual ADD), in forward order.
    """
    shape = tuple(int(s) for s in input_shape)
    kind = model_kind(model)
    if kind == GRAPH:  # an imported NIR graph (GraphNet)
        graph = model_wiring(model, shape, allow_graph=True)
        return graph.stages, graph.stage_inputs
    if kind != WIRED:
        stages = model_stages(model, shape)
        return stages, chain_inputs(len(stages))
    folded_model = fold_batchnorm(model)
    folded = model_wiring(folded_model, shape)
    stages: list[Stage] = []
    inputs: list[tuple[int, ...]] = []
    neuron_of: dict[str, int] = {}  # layer name -> index of its neuron stage
    for wired, names, block in zip(folded.layers, folded.sources, folded.blocks, strict=True):
        sources = _source_stages(wired, names, neuron_of)
        if wired.flatten:
            stages.append(FlattenStage(_flatten_name(folded_model), wired.in_shape))
            inputs.append(sources)
            sources = (len(stages) - 1,)
        stages += [synapse_stage(block), neuron_stage(block, _threshold_int(block))]
        inputs += [sources, (len(stages) - 2,)]
        neuron_of[wired.name] = len(stages) - 1
    return tuple(stages), tuple(inputs)


def _source_stages(wired, names: tuple[str, ...], neuron_of: dict[str, int]) -> tuple[int, ...]:
    """The neuron stages whose spikes the layer sums (``ModelWiring.sources``); the input when it
    reads no channel space."""
    if wired.in_space is None:
        return (INPUT,)
    if len(names) != wired.sources:
        raise ModelError(
            f"layer reads {wired.sources} ADDed sources of space {wired.in_space!r} but only "
            f"{len(names)} were written before it",
            where=f"export [{wired.name}]",
            field="wiring",
            value=wired.in_space,
        )
    return tuple(neuron_of[name] for name in names)


def _flatten_name(model: torch.nn.Module) -> str:
    names = [name for name, m in model.named_modules() if isinstance(m, layer.Flatten)]
    return names[0] if names else "flatten"


def model_stages(model: torch.nn.Module, input_shape: Sequence[int]) -> tuple[Stage, ...]:
    """Fold BN, check the convention and list a chain model's stages in forward order
    (pooling included: a :class:`PoolStage` before the synapse that reads it)."""
    if model_kind(model) == WIRED:
        raise UnsupportedError(
            "a wired (residual) model is a graph, not a chain of stages",
            where="export",
            field="model",
            value=type(model).__name__,
            fix="Call model_graph(model, input_shape) (stages and their inputs).",
        )
    shape = tuple(int(s) for s in input_shape)
    folded = fold_batchnorm(model) if _has_batchnorm(model) else model
    blocks = {b.name: b for b in model_blocks(folded, shape, where="export")}
    neurons = {b.neuron_name: b for b in blocks.values()}
    stages: list[Stage] = []
    for name, module in folded.named_children():
        if isinstance(module, layer.Flatten):
            stages.append(FlattenStage(name, shape))
            shape = stages[-1].out_shape
        elif isinstance(module, POOL_TYPES):
            stages.append(PoolStage(name, pool_kind(module), _pool_kernel(module), shape))
            shape = stages[-1].out_shape
        elif name in blocks:
            stages.append(synapse_stage(blocks[name]))
        elif name in neurons:
            block = neurons[name]
            stages.append(neuron_stage(block, _threshold_int(blocks[block.name])))
            shape = block.out_shape
    return tuple(stages)


def _pool_kernel(module: torch.nn.Module) -> int:
    kernel = module.kernel_size
    return int(kernel[0] if isinstance(kernel, tuple | list) else kernel)


def _has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.BatchNorm2d) for m in model.children())


def synapse_stage(block: Block) -> SynapseStage:
    """The block's synaptic layer as numpy arrays (plus its integers when quantized)."""
    syn = block.synapse
    weight = _as_numpy(syn.weight)
    bias = None if syn.bias is None else _as_numpy(syn.bias)
    quant = quant_stage(block.name, syn, weight, bias)
    common = {"in_shape": block.in_shape, "out_shape": block.out_shape, "quant": quant}
    if block.kind == "dense":
        return SynapseStage(block.name, "dense", weight, bias, **common)
    stride, padding = int(syn.stride[0]), int(syn.padding[0])
    return SynapseStage(block.name, "conv", weight, bias, stride=stride, padding=padding, **common)


def neuron_stage(block: Block, threshold_int: int | None = None) -> NeuronStage:
    """The block's neuron node; checks ``v_threshold == threshold_int * scale`` if quantized."""
    node = block.neuron
    v_th = float(node.v_threshold)
    if threshold_int is not None:
        scale = float(getattr(block.synapse, QUANT_ATTR)["weight_scale"])
        if v_th != threshold_int * scale:
            raise ModelError(
                "quantized neuron threshold is not threshold_int * weight_scale",
                where=f"export [{block.neuron_name}]",
                field="v_threshold",
                value=v_th,
                fix=f"Set v_threshold = {threshold_int} * {scale!r} (re-run quantization).",
            )
    strict = fires_strictly(node)
    if isinstance(node, neuron.IFNode):
        return NeuronStage(
            block.neuron_name, "IF", block.out_shape, v_th, None, True, threshold_int, strict
        )
    tau, decay = float(node.tau), bool(node.decay_input)
    return NeuronStage(
        block.neuron_name, "LIF", block.out_shape, v_th, tau, decay, threshold_int, strict
    )


def fires_strictly(node: torch.nn.Module) -> bool:
    """True for neuroprune's strict nodes (``v > v_th``, :mod:`neuroprune.models.neurons`);
    SpikingJelly's own nodes fire on ``v >= v_th``."""
    return isinstance(node, neurons.STRICT_TYPES)


def _threshold_int(block: Block) -> int | None:
    params = getattr(block.synapse, QUANT_ATTR, None)
    if getattr(block.synapse, "weight_int", None) is None or not isinstance(params, Mapping):
        return None
    value = params.get("threshold_int")
    return None if value is None else int(value)


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float32).numpy().copy()


def check_timesteps(timesteps: int) -> int:
    """``timesteps`` as an int >= 1, else :class:`ConfigError`."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int | np.integer) or timesteps < 1:
        raise ConfigError(
            "timesteps must be a positive integer",
            where="export",
            field="timesteps",
            value=timesteps,
            fix="Pass timesteps=T with T >= 1 (the number of steps per sample).",
        )
    return int(timesteps)


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """One sample's shape (no time, no batch) as positive ints, else :class:`ConfigError`."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(
            "input_shape must be a non-empty sequence of positive sizes",
            where="export",
            field="input_shape",
            value=input_shape,
            fix="Pass one sample's shape without time and batch, e.g. (1, 8, 8).",
        )
    return shape
