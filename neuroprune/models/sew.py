"""A small SEW-ResNet for digits, and the wiring description of models that are not a chain.

SEW-ResNet (Fang et al., NeurIPS 2021) with the ``ADD`` connect function. A block maps spikes
``S`` (``[T, B, C, H, W]``) to

    A = SN(BN(Conv3x3(S)))          (the block's inner channels)
    S' = SN(BN(Conv3x3(A))) + S     (ADD of spikes: values 0, 1 or 2, no neuron)

:func:`build_sew` stacks stages: stage ``k`` is a 3x3 conv (stride 1 for the stem, 2 after: the
downsampling is a strided conv, never pooling) + BN + LIF, then ``n_k`` SEW blocks at that
width; then ``Flatten`` (C-order) -> ``Linear(bias=False)`` -> LIF. Digits default:
``stages=((8, 1), (16, 1))``, i.e. 8x8x8 then 16x4x4 spikes into a 256 -> 10 readout.

On a chip an ADD of spike tensors is not a neuron and not a synapse: the layer that reads the
sum receives each of the summed spike sources through its own copy of its weights. So a layer
reading ``k`` summed sources has ``k`` times the synapses (and fan-in) of the same layer on a
single source. :func:`summarize_wiring` counts exactly that: its ``LayerSummary`` has the input
``(k*C, H, W)`` (the sources side by side) and the weight repeated ``k`` times along the input
channels.

Pipeline support: every stage. Training, evaluation and prediction treat it as any
``nn.Module``; counting (:meth:`SEWResNet.summary`), every unstructured pruning method
(:func:`neuroprune.pruning.targets.wiring_targets` costs each weight ``k`` times when its layer
reads ``k`` ADDed sources, so a budget is met to within one entry's cost), ``sca`` and
``sca+stds`` (channels joined by an ADD are one group, :mod:`neuroprune.pruning.channels`),
BN folding (:meth:`SEWResNet.fold_batchnorm`), quantization (:meth:`SEWResNet.blocks`), and
export as a graph (:func:`neuroprune.export.stages.model_graph`: the ADD is several NIR edges
into the reading node), which the simulators and Lava run as several projections into one
population.

:class:`~neuroprune.models.reader.SynapseLayer` describes one synaptic layer of any such model
(what it reads, what it writes, how many spike sources are summed at its input); a model that is
not a Sequential chain exposes ``wiring(input_shape) -> tuple[SynapseLayer, ...]``, which
:func:`neuroprune.models.reader.model_wiring` reads.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from spikingjelly.activation_based import functional, layer

from neuroprune.core.errors import ModelError
from neuroprune.core.summary import NetworkSummary, conv_layer, conv_output_size, dense_layer
from neuroprune.models.blocks import Block
from neuroprune.models.reader import SynapseLayer, wired_sources
from neuroprune.models.walker import neuron_info
from neuroprune.models.zoo import neuron_factory, set_module

from .translate import _fold_pair as fold_conv_batchnorm
from .translate import bn_scale_shift, summarize

SEW_DEFAULT_STAGES: tuple[tuple[int, int], ...] = ((8, 1), (16, 1))


# --------------------------------------------------------------------------------------------
# The model


class SEWBlock(torch.nn.Module):
    """``S -> SN(BN(Conv(SN(BN(Conv(S))))))``; the ADD with ``S`` is done by the stage."""

    def __init__(self, channels: int, make_neuron) -> None:
        super().__init__()
        self.conv1 = layer.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = layer.BatchNorm2d(channels)
        self.neuron1 = make_neuron()
        self.conv2 = layer.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = layer.BatchNorm2d(channels)
        self.neuron2 = make_neuron()

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        inner = self.neuron1(self.bn1(self.conv1(spikes)))
        return self.neuron2(self.bn2(self.conv2(inner)))


class SEWStage(torch.nn.Module):
    """Conv + BN + neuron (stride 1 or 2), then SEW blocks with ``S <- S + block(S)``."""

    def __init__(self, c_in: int, c_out: int, stride: int, blocks: int, make_neuron) -> None:
        super().__init__()
        self.conv = layer.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn = layer.BatchNorm2d(c_out)
        self.neuron = make_neuron()
        self.blocks = torch.nn.ModuleList(SEWBlock(c_out, make_neuron) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.neuron(self.bn(self.conv(x)))
        for block in self.blocks:
            spikes = spikes + block(spikes)
        return spikes


class SEWResNet(torch.nn.Module):
    """Stages of SEW blocks, then ``Flatten -> Linear(bias=False) -> neuron`` (module docstring).

    Input ``[T, B, C, H, W]``; output the last neuron layer's spikes ``[T, B, classes]``, like
    every zoo model (prediction = argmax of the spike counts).
    """

    neuroprune_topology = "residual"

    def __init__(self, input_shape: Sequence[int], num_classes: int, stages, make_neuron) -> None:
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        modules = []
        for index, (width, blocks) in enumerate(stages):
            stride = 1 if index == 0 else 2
            modules.append(SEWStage(c, int(width), stride, int(blocks), make_neuron))
            c, h, w = (
                int(width),
                conv_output_size(h, 3, stride, 1),
                conv_output_size(w, 3, stride, 1),
            )
        self.stages = torch.nn.ModuleList(modules)
        self.flatten = layer.Flatten()
        self.fc = layer.Linear(c * h * w, int(num_classes), bias=False)
        self.fc_neuron = make_neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.fc_neuron(self.fc(self.flatten(x)))

    def wiring(self, input_shape: Sequence[int]) -> tuple[SynapseLayer, ...]:
        """Every synaptic layer in forward order with its channel spaces (class docstring).

        Space ``stages.k`` is the residual stream of stage ``k``: written by the stage conv and
        by every block's ``conv2`` (their channel ``c`` are added), read by the blocks'
        ``conv1`` (block ``j`` reads ``1 + j`` summed sources), by the next stage conv and by
        the readout (``1 + n_k`` sources). Space ``stages.k.blocks.j`` is block ``j``'s inner
        channels (``conv1`` -> ``conv2``).
        """
        shape = tuple(int(s) for s in input_shape)
        layers: list[SynapseLayer] = []
        stream, sources = None, 1
        for k, stage in enumerate(self.stages):
            prefix = f"stages.{k}"
            out = _conv_out_shape(stage.conv, shape)
            layers.append(
                self._conv_wiring(
                    prefix, "conv", "bn", "neuron", shape, out, stream, prefix, sources
                )
            )
            for j, sew_block in enumerate(stage.blocks):
                block = f"{prefix}.blocks.{j}"
                inner = (int(sew_block.conv1.out_channels), *out[1:])  # narrower after sca
                layers.append(
                    self._conv_wiring(
                        block, "conv1", "bn1", "neuron1", out, inner, prefix, block, 1 + j
                    )
                )
                layers.append(
                    self._conv_wiring(
                        block, "conv2", "bn2", "neuron2", inner, out, block, prefix, 1
                    )
                )
            shape, stream, sources = out, prefix, 1 + len(stage.blocks)
        layers.append(
            SynapseLayer(
                "fc",
                "dense",
                shape,
                (self.fc.out_features,),
                None,
                "fc_neuron",
                stream,
                None,
                sources,
                flatten=True,
            )
        )
        return tuple(layers)

    def _conv_wiring(self, prefix, conv, bn, neuron, in_shape, out_shape, in_space, out_space, n):
        """A conv's :class:`SynapseLayer`; ``batchnorm`` None once BN is folded (Identity)."""
        bn_path = f"{prefix}.{bn}"
        has_bn = isinstance(self.get_submodule(bn_path), torch.nn.BatchNorm2d)
        return SynapseLayer(
            f"{prefix}.{conv}",
            "conv",
            tuple(in_shape),
            tuple(out_shape),
            bn_path if has_bn else None,
            f"{prefix}.{neuron}",
            in_space,
            out_space,
            int(n),
        )

    def summary(self, input_shape: Sequence[int], timesteps: int, *, name: str = "network"):
        """:class:`NetworkSummary` with ADDs counted as duplicated synapses (module docstring)."""
        return summarize_wiring(self, self.wiring(input_shape), input_shape, timesteps, name=name)

    def blocks(self, input_shape: Sequence[int]) -> list[Block]:
        """Every synaptic layer as a :class:`~neuroprune.models.blocks.Block` (dotted module paths;
        the readout's ``in_shape`` is the flattened size it reads)."""
        return [wired_block(self, wired) for wired in self.wiring(input_shape)]

    def conv_batchnorm_pairs(self) -> list[tuple[str, str]]:
        """``(conv path, BN path)`` of every conv in forward order."""
        pairs = []
        for k, stage in enumerate(self.stages):
            pairs.append((f"stages.{k}.conv", f"stages.{k}.bn"))
            for j, _ in enumerate(stage.blocks):
                block = f"stages.{k}.blocks.{j}"
                pairs += [(f"{block}.conv1", f"{block}.bn1"), (f"{block}.conv2", f"{block}.bn2")]
        return pairs

    def fold_batchnorm(self) -> SEWResNet:
        """An equivalent eval-mode copy with every BN folded into its conv (a biased
        ``layer.Conv2d``) and replaced by ``torch.nn.Identity``; ``neuroprune_*`` attributes
        kept (:func:`neuroprune.models.translate.fold_batchnorm` for chains)."""
        folded = copy.deepcopy(self)
        for conv_path, bn_path in self.conv_batchnorm_pairs():
            conv, bn = self.get_submodule(conv_path), self.get_submodule(bn_path)
            if isinstance(bn, torch.nn.BatchNorm2d):
                set_module(folded, conv_path, fold_conv_batchnorm(conv, bn))
                set_module(folded, bn_path, torch.nn.Identity())
        functional.set_step_mode(folded, "m")
        functional.reset_net(folded)
        return folded.eval()


def wired_block(model: torch.nn.Module, wired: SynapseLayer) -> Block:
    """One :class:`SynapseLayer` as a :class:`Block` (no pooling in a SEW-ResNet)."""
    in_shape = (int(np.prod(wired.in_shape)),) if wired.flatten else wired.in_shape
    batchnorm = None if wired.batchnorm is None else model.get_submodule(wired.batchnorm)
    return Block(
        wired.name,
        model.get_submodule(wired.name),
        batchnorm,
        wired.neuron,
        model.get_submodule(wired.neuron),
        tuple(in_shape),
        tuple(wired.out_shape),
    )


def _conv_out_shape(conv: torch.nn.Module, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
    k, s, p = conv.kernel_size[0], int(conv.stride[0]), int(conv.padding[0])
    return (
        int(conv.out_channels),
        conv_output_size(in_shape[1], k, s, p),
        conv_output_size(in_shape[2], k, s, p),
    )


def build_sew(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    stages: Sequence[tuple[int, int]] = SEW_DEFAULT_STAGES,
    neuron: str = "lif",
    tau: float = 2.0,
    v_threshold: float = 1.0,
    seed: int = 0,
) -> SEWResNet:
    """A :class:`SEWResNet` in multi-step mode; ``stages`` = ``((channels, blocks), ...)``.

    Weights come from ``torch.manual_seed(seed)`` inside a forked RNG (the global RNG is left
    alone), like :func:`neuroprune.models.zoo.build_model`. Raises :class:`ModelError` for an
    empty or non-positive stage list or an input that is not ``(C, H, W)``.
    """
    _check_sew_args(input_shape, stages)
    make = neuron_factory(neuron, tau, v_threshold)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SEWResNet(input_shape, num_classes, stages, make)
    functional.set_step_mode(model, "m")
    return model


def _check_sew_args(input_shape: Sequence[int], stages) -> None:
    if len(tuple(input_shape)) != 3:
        raise ModelError(
            "the SEW-ResNet needs image input (C, H, W)",
            where="model sew",
            field="input_shape",
            value=tuple(input_shape),
            fix="Use an image dataset.",
        )
    ok = len(stages) > 0 and all(int(c) > 0 and int(n) >= 0 for c, n in stages)
    if not ok:
        raise ModelError(
            "SEW stages must be (channels > 0, blocks >= 0) pairs",
            where="model sew",
            field="stages",
            value=tuple(stages),
            fix="Example: stages=((8, 1), (16, 1)).",
        )


# --------------------------------------------------------------------------------------------
# Counting


def summarize_wiring(
    model: torch.nn.Module,
    wiring: Sequence[SynapseLayer],
    input_shape: Sequence[int],
    timesteps: int,
    *,
    name: str = "network",
) -> NetworkSummary:
    """Summary of a wired model: BN folded, conv unrolled, ``sources`` copies of each weight.

    A layer reading ``k`` summed sources is summarised on the input ``(k*C, H, W)`` (or
    ``(k*F,)``) with its BN-folded weight repeated ``k`` times along the input axis, so its
    synapses, fan-in and input axons are those of the chip mapping (module docstring).
    """
    sources = wired_sources(wiring)
    layers = tuple(
        replace(_wired_layer_summary(model, wired), sources=names)
        for wired, names in zip(wiring, sources, strict=True)
    )
    shape = tuple(int(s) for s in input_shape)
    return NetworkSummary(layers=layers, input_shape=shape, timesteps=int(timesteps), name=name)


def _wired_layer_summary(model: torch.nn.Module, wired: SynapseLayer):
    synapse = model.get_submodule(wired.name)
    weight = folded_weight_of(model, wired)
    model_name, params = neuron_info(model.get_submodule(wired.neuron))
    common = {"neuron_model": model_name, "neuron_params": params, "weight_bits": None}
    k = wired.sources
    if wired.kind == "dense":
        return dense_layer(wired.name, np.concatenate([weight] * k, axis=1), **common)
    c, h, w = wired.in_shape
    return conv_layer(
        wired.name,
        np.concatenate([weight] * k, axis=1),
        (k * c, h, w),
        stride=int(synapse.stride[0]),
        padding=int(synapse.padding[0]),
        **common,
    )


def folded_weight_of(model: torch.nn.Module, wired: SynapseLayer) -> np.ndarray:
    """The layer's weight as a chip stores it: ``W * gamma / sqrt(var + eps)`` with BN (float32)."""
    synapse = model.get_submodule(wired.name)
    weight = synapse.weight.detach().float()
    if wired.batchnorm is not None:
        scale, _ = bn_scale_shift(synapse, model.get_submodule(wired.batchnorm))
        weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    return weight.cpu().numpy()


def summarize_model(
    model: torch.nn.Module, input_shape: Sequence[int], timesteps: int, *, name: str = "network"
) -> NetworkSummary:
    """:func:`neuroprune.models.translate.summarize` (which also handles :meth:`wiring` models)."""
    return summarize(model, input_shape, timesteps, name=name)


def build_sew_from_spec(input_shape, num_classes, neuron, tau, v_threshold, hidden):
    """``build_model("sew", ...)``: ``hidden`` gives one single-block stage per width."""
    stages = {} if hidden is None else {"stages": tuple((int(w), 1) for w in hidden)}
    return build_sew(
        input_shape, num_classes, neuron=neuron, tau=tau, v_threshold=v_threshold, **stages
    )
