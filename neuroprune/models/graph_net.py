"""A stage graph as a SpikingJelly model (layer L3): residual ADDs and pooling, multi-step.

:class:`GraphNet` runs the stages of a :class:`~neuroprune.graph.stages.NirNetwork` that is not a
chain. Stage ``i`` reads the **sum** of the outputs of its sources (``inputs[i]``; ``-1`` is
the network input), as NIR sums the signals of several edges into one node::

    y_i = module_i( sum_{j in inputs[i]} y_j ),      y_{-1} = x [T, B, *input_shape]

and the output is the last stage's spikes ``[T, B, classes]`` (prediction: argmax of their
count over T, like every zoo model). A residual ADD of spike maps (SEW-ResNet's ADD) is a
Flatten, pooling or synaptic stage with two sources. Modules are registered in stage order,
so hooks over ``model.modules()`` see the neuron layers in the NIR layer order
(``sim.torch_reference.model_counts`` relies on that).

:meth:`GraphNet.stage_graph` gives the stages back with the modules' current weights and
thresholds (and integers when quantized), so that ``nirgraph.build_graph(stages,
inputs=...)`` writes the graph again.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from spikingjelly.activation_based import neuron

from neuroprune.core.errors import ConfigError, ModelError
from neuroprune.graph.stages import INPUT, NeuronStage, QuantStage, Stage, SynapseStage

from . import neurons
from .quantized import quant_stage


class GraphNet(torch.nn.Module):
    """Multi-step model of a stage graph (module docstring).

    ``layers`` maps a module name to the module of each stage, in stage order; ``stages`` are
    the stages they were built from (shapes, names, kinds); ``inputs[i]`` the sources of
    stage ``i``, each earlier than ``i`` (``-1``: the network input).
    """

    neuroprune_topology = "graph"

    def __init__(
        self,
        layers: Mapping[str, torch.nn.Module],
        stages: Sequence[Stage],
        inputs: Sequence[Sequence[int]],
    ) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleDict(OrderedDict(layers))
        self.stages = tuple(stages)
        self.inputs = tuple(tuple(int(j) for j in srcs) for srcs in inputs)
        if len(self.layers) != len(self.stages) or not _valid_sources(self.inputs, self.stages):
            raise ConfigError(
                "a GraphNet needs one module and one non-empty list of earlier sources per stage",
                where="GraphNet",
                field="inputs",
                value=str(list(self.inputs))[:200],
                fix="Give inputs[i] as indices of earlier stages (-1: the network input).",
            )
        self.last_use = _last_use(self.inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, *input_shape]`` -> the last stage's output ``[T, B, ...]``."""
        outputs: dict[int, torch.Tensor] = {INPUT: x}
        for index, module in enumerate(self.layers.values()):
            total = _sum(outputs[j] for j in self.inputs[index])
            outputs[index] = module(total)
            for j in self.inputs[index]:
                if self.last_use[j] == index:
                    del outputs[j]
        return outputs[len(self.stages) - 1]

    def stage_graph(
        self, input_shape: Sequence[int]
    ) -> tuple[tuple[Stage, ...], tuple[tuple[int, ...], ...]]:
        """``(stages, inputs)`` of this network with its current weights and thresholds.

        ``input_shape`` is one sample's shape; it must be what the stages reading the network
        input take. Quantized layers must still hold ``weight == weight_int * weight_scale``
        exactly (conventions §3), else :class:`ModelError`.
        """
        self._check_input_shape(tuple(int(s) for s in input_shape))
        modules = list(self.layers.values())
        stages: list[Stage] = []
        for index, (stage, module) in enumerate(zip(self.stages, modules, strict=True)):
            if isinstance(stage, SynapseStage):
                stages.append(current_synapse(stage, module))
            elif isinstance(stage, NeuronStage):
                first = self.inputs[index][0]
                source = stages[first] if first != INPUT else None
                stages.append(current_neuron(stage, module, source))
            else:  # Flatten and pooling have no parameters
                stages.append(stage)
        return tuple(stages), self.inputs

    def _check_input_shape(self, shape: tuple[int, ...]) -> None:
        readers = [s for s, srcs in zip(self.stages, self.inputs, strict=True) if INPUT in srcs]
        wrong = [s.module for s in readers if in_shape(s) != shape]
        if wrong:
            raise ConfigError(
                f"stage {wrong[0]!r} does not read samples of shape {shape}",
                where="GraphNet.stage_graph",
                field="input_shape",
                value=shape,
                fix=f"Pass the shape the network was built for: {in_shape(readers[0])}.",
            )


def in_shape(stage: Stage) -> tuple[int, ...]:
    """The shape one stage reads (one sample)."""
    return stage.shape if isinstance(stage, NeuronStage) else stage.in_shape


def _valid_sources(inputs: Sequence[tuple[int, ...]], stages: Sequence[Stage]) -> bool:
    return len(inputs) == len(stages) and all(
        srcs and all(INPUT <= j < i for j in srcs) for i, srcs in enumerate(inputs)
    )


def _last_use(inputs: Sequence[tuple[int, ...]]) -> dict[int, int]:
    """Output index -> the last stage that reads it (the last stage's own output is kept)."""
    last: dict[int, int] = {}
    for index, srcs in enumerate(inputs):
        for j in srcs:
            last[j] = index
    return last


def _sum(tensors) -> torch.Tensor:
    """The sum of the source outputs, in source order (NIR: edges into one node sum)."""
    iterator = iter(tensors)
    total = next(iterator)
    for tensor in iterator:
        total = total + tensor
    return total


def current_synapse(stage: SynapseStage, module: torch.nn.Module) -> SynapseStage:
    """``stage`` with the module's float32 weight/bias and, when quantized, its integers."""
    weight = _as_numpy(module.weight)
    bias = None if getattr(module, "bias", None) is None else _as_numpy(module.bias)
    quant = current_quant(stage.module, module, weight, bias)
    return dataclasses.replace(stage, weight=weight, bias=bias, quant=quant)


def current_quant(
    name: str, module: torch.nn.Module, weight: np.ndarray, bias: np.ndarray | None
) -> QuantStage | None:
    """``weight_int``/``bias_int``/``neuroprune_quant`` of a quantized layer (None if float),
    checked exactly (:func:`neuroprune.models.quantized.quant_stage`)."""
    return quant_stage(name, module, weight, bias, where="GraphNet.stage_graph")


def current_neuron(stage: NeuronStage, module: torch.nn.Module, source: Stage) -> NeuronStage:
    """``stage`` with the module's threshold and tau; ``threshold_int`` from the synapse it
    reads when that is quantized (``v_threshold == threshold_int * weight_scale``)."""
    v_th = float(module.v_threshold)
    strict = isinstance(module, neurons.STRICT_TYPES)
    threshold_int = None
    if isinstance(source, SynapseStage) and source.quant is not None:
        threshold_int = source.quant.params.get("threshold_int", stage.threshold_int)
        threshold_int = None if threshold_int is None else int(threshold_int)
        _require_threshold(stage.module, v_th, threshold_int, source.quant.weight_scale)
    if isinstance(module, neuron.IFNode):
        return dataclasses.replace(
            stage,
            model="IF",
            v_threshold=v_th,
            tau=None,
            threshold_int=threshold_int,
            strict=strict,
        )
    return dataclasses.replace(
        stage,
        model="LIF",
        v_threshold=v_th,
        tau=float(module.tau),
        decay_input=bool(module.decay_input),
        threshold_int=threshold_int,
        strict=strict,
    )


def _require_threshold(name: str, v_th: float, threshold_int, scale: float) -> None:
    if threshold_int is not None and v_th != threshold_int * scale:
        raise ModelError(
            "quantized neuron threshold is not threshold_int * weight_scale",
            where=f"GraphNet.stage_graph [{name}]",
            field="v_threshold",
            value=v_th,
            fix=f"Set v_threshold = {threshold_int} * {scale!r} (re-run quantization).",
        )


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float32).numpy().copy()
