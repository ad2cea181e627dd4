"""A NIR file as a SpikingJelly model (layer L3): the torch side of the NIR reader.

:func:`neuroprune.graph.read.read_network` reads and checks the file (node types, order, shapes,
metadata, neuron mapping); this module only turns its stages into modules:
``FlattenStage`` -> ``layer.Flatten``, ``PoolStage`` -> ``layer.AvgPool2d(k)`` ("avg") or
``layer.AvgPool2d(k, divisor_override=1)`` ("sum"), dense -> ``layer.Linear``, conv ->
``layer.Conv2d`` (bias only when nonzero), ``NeuronStage`` -> ``neuron.LIFNode``/``IFNode`` with
hard reset to 0. A chain becomes a ``torch.nn.Sequential``; a graph whose stages sum several
sources (a residual ADD) becomes a :class:`~neuroprune.models.graph_net.GraphNet` with the same
modules, registered in stage order.

Threshold: neuroprune's neurons fire on NIR's strict ``v > v_th`` and keep the file's value; a
legacy ``>=`` file gets ``v_th = nextafter32(v_threshold, -inf)`` (the same float32 potentials
fire). Quantized layers get back ``weight_int``/
``bias_int`` buffers, ``neuroprune_quant`` and ``neuroprune_weight_bits`` (conventions §3).
A leading flatten is restored when the file's ``input_shape`` (or the dataset's, for files
other tools wrote) is not flat, so the model takes the same input as the one exported.
:func:`load_nir_model` is what ``neuroprune fit/check --from FILE.nir`` start from.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from spikingjelly.activation_based import functional, layer, surrogate

from neuroprune.core.errors import ConfigError, UnsupportedError
from neuroprune.graph.neurons import with_decay_input
from neuroprune.graph.read import read_network
from neuroprune.graph.stages import (
    INPUT,
    FlattenStage,
    NeuronStage,
    NirNetwork,
    PoolStage,
    Stage,
    SynapseStage,
)
from neuroprune.models.walker import parse_blocks

from . import neurons
from .graph_net import GraphNet


@dataclass(frozen=True, eq=False)
class ImportedModel:
    """A NIR graph as a multi-step SpikingJelly model (eval mode, states reset).

    ``metadata`` is the decoded graph metadata; ``timesteps`` and ``encoding`` come from it
    (None for graphs written by other tools); ``input_shape`` is one sample's shape.
    """

    model: torch.nn.Module
    metadata: Mapping[str, Any]
    timesteps: int | None
    encoding: str | None
    input_shape: tuple[int, ...] = ()
    dt: float = 0.0


def import_nir(path: str | os.PathLike, *, dt: float | None = None) -> ImportedModel:
    """Read ``path`` and rebuild the network; ``dt`` (seconds per step) for files without one."""
    return model_from_network(read_network(path, dt=dt))


def load_nir_model(
    path: str | os.PathLike,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    dt: float | None = None,
) -> ImportedModel:
    """A NIR file (neuroprune's or another tool's) as a model for a dataset of samples shaped
    ``input_shape`` with ``num_classes`` classes; checks both and the model convention."""

    network = with_decay_input(read_network(path, dt=dt))
    return nir_model_for(network, path, input_shape=input_shape, num_classes=num_classes)


def nir_model_for(
    network: NirNetwork,
    path: str | os.PathLike,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
) -> ImportedModel:
    """``network`` (read from ``path``, every LIF in ``decay_input`` form) as a model for a dataset of
    samples shaped ``input_shape`` with ``num_classes`` classes; checks both and the model
    convention (:func:`load_nir_model`)."""
    _require_plain_chain(network, str(path))
    shape = tuple(int(s) for s in input_shape)
    first = _in_shape(network.stages[0]) if network.stages else ()
    if int(np.prod(first)) != int(np.prod(shape)):
        raise _mismatch(path, "input", first, shape, "samples of the dataset")
    out = _out_size(network)
    if out != num_classes:
        raise _mismatch(path, "output", (out,), (num_classes,), "classes of the dataset")
    imported = model_from_network(network, input_shape=shape)
    parse_blocks(
        imported.model, shape, num_classes, where=str(path), allow_bias=True, allow_pooling=True
    )
    return imported


def _require_plain_chain(network: NirNetwork, where: str) -> None:
    """A run starts only from a chain (pooling allowed): pruning finds its layers by walking
    the Sequential, which a residual ADD is not."""
    for index, name in enumerate(network.names):
        if network.sources(index) != (index - 1,):
            raise UnsupportedError(
                f"node {name!r} reads a residual ADD: a run can start only from a chain",
                where=where,
                field=f"{name}.inputs",
                value=name,
                fix="Import it with neuroprune.export.import_nir (a GraphNet) to simulate or "
                "re-export it, or start the run from --model sew.",
            )


def _out_size(network: NirNetwork) -> int:
    last = network.stages[-1] if network.stages else None
    return int(np.prod(last.shape)) if isinstance(last, NeuronStage) else -1


def _mismatch(path, node: str, got, want, what: str) -> ConfigError:
    return ConfigError(
        f"the graph's {node} shape {tuple(got)} does not match the {want} {what}",
        where=str(path),
        field=node,
        value=tuple(got),
        fix="Use the dataset the network was trained on (--dataset), or export it for this one.",
    )


def model_from_network(
    network: NirNetwork, input_shape: tuple[int, ...] | None = None, *, as_graph: bool = False
) -> ImportedModel:
    """The SpikingJelly model of ``network``'s stages (module docstring): a
    ``torch.nn.Sequential`` for a chain, a :class:`GraphNet` for a graph with residual ADDs
    (or for a chain too, with ``as_graph=True``); ``input_shape`` overrides the file's sample
    shape (for files other tools wrote)."""
    shape = tuple(input_shape) if input_shape is not None else network.input_shape
    stages, inputs = _with_leading_flatten(network, shape)
    modules: OrderedDict[str, torch.nn.Module] = OrderedDict()
    for index, stage in enumerate(stages):
        modules[_module_name(stage, index, modules)] = build_module(stage)
    if not as_graph and all(srcs == (i - 1,) for i, srcs in enumerate(inputs)):
        model: torch.nn.Module = torch.nn.Sequential(modules)
    else:
        model = GraphNet(modules, stages, inputs)
    functional.set_step_mode(model, "m")
    functional.reset_net(model)
    return ImportedModel(
        model.eval(),
        network.metadata,
        network.timesteps,
        network.encoding,
        shape,
        network.dt,
    )


def _module_name(stage: Stage, index: int, taken: Mapping[str, Any]) -> str:
    """The stage's module name where torch accepts it as a child name, else ``n<index>``."""
    name = stage.module
    reserved = hasattr(torch.nn.Sequential, name) or hasattr(torch.nn.ModuleDict, name)
    if not name or "." in name or reserved:
        name = f"n{index}"
    return name if name not in taken else f"{name}_{index}"


def _with_leading_flatten(
    network: NirNetwork, input_shape: tuple[int, ...]
) -> tuple[list[Stage], list[tuple[int, ...]]]:
    """The stages and their sources, with a Flatten of the input put first when the stages
    that read the input take a flat sample but the model's input is (C, H, W)."""
    stages = list(network.stages)
    inputs = [network.sources(i) for i in range(len(stages))]
    readers = [s for s, srcs in zip(stages, inputs, strict=True) if INPUT in srcs]
    flat = readers and all(
        len(_in_shape(s)) == 1 and not isinstance(s, FlattenStage) for s in readers
    )
    if len(input_shape) < 2 or not flat:
        return stages, inputs
    shifted = [tuple(0 if j == INPUT else j + 1 for j in srcs) for srcs in inputs]
    return [FlattenStage("flatten", input_shape), *stages], [(INPUT,), *shifted]


def _in_shape(stage: Stage) -> tuple[int, ...]:
    return stage.shape if isinstance(stage, NeuronStage) else stage.in_shape


def build_module(stage: Stage) -> torch.nn.Module:
    """The SpikingJelly module of one stage."""
    if isinstance(stage, FlattenStage):
        return layer.Flatten(step_mode="m")
    if isinstance(stage, PoolStage):
        return pool_module(stage)
    if isinstance(stage, SynapseStage):
        return synapse_module(stage)
    return neuron_module(stage)


def pool_module(stage: PoolStage) -> torch.nn.Module:
    """``layer.AvgPool2d(k)`` (stride k): the window mean for ``"avg"``; with
    ``divisor_override=1`` the window sum for ``"sum"`` (NIR SumPool2d)."""
    divisor = 1 if stage.kind == "sum" else None
    k = int(stage.kernel)
    return layer.AvgPool2d(k, stride=k, divisor_override=divisor, step_mode="m")


def synapse_module(stage: SynapseStage) -> torch.nn.Module:
    """``layer.Linear``/``layer.Conv2d`` with the stage's float32 weights (and integers)."""
    bias = stage.bias is not None
    if stage.kind == "dense":
        out, inp = stage.weight.shape
        module = layer.Linear(inp, out, bias=bias, step_mode="m")
    else:
        c_out, c_in, kh, kw = stage.weight.shape
        module = layer.Conv2d(
            c_in,
            c_out,
            (kh, kw),
            stride=stage.stride,
            padding=stage.padding,
            bias=bias,
            step_mode="m",
        )
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.asarray(stage.weight, np.float32)))
        if bias:
            module.bias.copy_(torch.from_numpy(np.asarray(stage.bias, np.float32)))
    if stage.quant is not None:
        quant = stage.quant
        module.register_buffer("weight_int", torch.from_numpy(quant.weight_int.astype(np.int32)))
        if quant.bias_int is not None:
            module.register_buffer("bias_int", torch.from_numpy(quant.bias_int.astype(np.int32)))
        module.neuroprune_quant = dict(quant.params)
        module.neuroprune_weight_bits = int(quant.bits)
    return module


def neuron_module(stage: NeuronStage) -> torch.nn.Module:
    """Strict ``neurons.LIFNode``/``IFNode`` (hard reset to 0) firing where the stage fires:
    a ``>=`` stage (a legacy file) gets ``v_th = nextafter32(v_threshold, -inf)``."""
    v_th = stage.v_threshold
    if not stage.strict:
        v_th = float(np.nextafter(np.float32(v_th), np.float32(-np.inf)))
    common = {
        "v_threshold": v_th,
        "v_reset": 0.0,
        "detach_reset": True,
        "surrogate_function": surrogate.ATan(),
        "step_mode": "m",
    }
    if stage.model == "IF":
        return neurons.IFNode(**common)
    return neurons.LIFNode(tau=float(stage.tau), decay_input=bool(stage.decay_input), **common)
