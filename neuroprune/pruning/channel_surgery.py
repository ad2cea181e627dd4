"""Channel surgery: zero or physically remove channels from a model's layers."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from spikingjelly.activation_based import functional, layer

from neuroprune.models.reader import SynapseLayer
from neuroprune.pruning.channels import ChannelGraph

# --------------------------------------------------------------------------------------------
# Masks and physical removal


def producer_params(model: torch.nn.Module, wired: SynapseLayer) -> list[torch.nn.Parameter]:
    """Parameters whose output-channel slice silences a channel: BN ``gamma, beta``, else ``W``."""
    if wired.batchnorm is not None:
        bn = model.get_submodule(wired.batchnorm)
        return [p for p in (bn.weight, bn.bias) if p is not None]
    synapse = model.get_submodule(wired.name)
    return [p for p in (synapse.weight, synapse.bias) if p is not None]


def zero_channels(
    model: torch.nn.Module, graph: ChannelGraph, keep: Mapping[str, np.ndarray]
) -> torch.nn.Module:
    """Zero every removed channel in place: the conv/linear output slice and BN ``gamma, beta``.

    Such a channel's neurons get input exactly 0, so they never fire (``v_threshold > 0``) and
    contribute nothing to any consumer: the model computes what :func:`remove_channels` does.
    """
    with torch.no_grad():
        for space in graph.spaces:
            gone = torch.as_tensor(~np.asarray(keep[space], dtype=bool))
            for wired in graph.producers(space):
                synapse = model.get_submodule(wired.name)
                tensors = [synapse.weight, synapse.bias, *producer_params(model, wired)]
                for tensor in tensors:
                    if tensor is not None:
                        tensor[gone.to(tensor.device)] = 0.0
    return model


def remove_channels(
    model: torch.nn.Module, graph: ChannelGraph, keep: Mapping[str, np.ndarray]
) -> torch.nn.Module:
    """A narrower copy of ``model`` without the removed channels (module docstring).

    Module names are kept, so per-layer budgets and reports line up. Forward hooks are copied
    along, so remove any hooks before calling.
    """
    new = copy.deepcopy(model)
    for wired in graph.layers:
        out_index = _kept_index(keep, wired.out_space, wired.out_shape[0])
        in_index = _input_index(keep, wired)
        synapse = new.get_submodule(wired.name)
        _replace(new, wired.name, _narrow_synapse(synapse, out_index, in_index))
        if wired.batchnorm is not None:
            bn = new.get_submodule(wired.batchnorm)
            _replace(new, wired.batchnorm, _narrow_batchnorm(bn, out_index))
    functional.set_step_mode(new, "m")
    functional.reset_net(new)
    return new


def _kept_index(keep, space: str | None, size: int) -> torch.Tensor:
    if space is None:
        return torch.arange(int(size))
    return torch.as_tensor(np.flatnonzero(keep[space]), dtype=torch.long)


def _input_index(keep, wired: SynapseLayer) -> torch.Tensor:
    channels = _kept_index(keep, wired.in_space, wired.in_channels)
    if not wired.flatten:
        return channels
    per_channel = int(np.prod(wired.in_shape[1:]))
    offsets = torch.arange(per_channel)
    return (channels[:, None] * per_channel + offsets[None, :]).reshape(-1)


def _replace(model: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def _narrow_synapse(old: torch.nn.Module, out_index, in_index) -> torch.nn.Module:
    weight = old.weight.detach()
    has_bias = old.bias is not None
    if isinstance(old, torch.nn.Conv2d):
        new = layer.Conv2d(
            len(in_index),
            len(out_index),
            old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            bias=has_bias,
            step_mode="m",
        )
    else:
        new = layer.Linear(len(in_index), len(out_index), bias=has_bias, step_mode="m")
    new = new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        index_out, index_in = out_index.to(weight.device), in_index.to(weight.device)
        new.weight.copy_(weight.index_select(0, index_out).index_select(1, index_in))
        if has_bias:
            new.bias.copy_(old.bias.detach().index_select(0, index_out))
    for attr, value in vars(old).items():
        if attr.startswith("neuroprune_"):
            setattr(new, attr, copy.deepcopy(value))
    return new.train(old.training)


def _narrow_batchnorm(old: torch.nn.Module, index) -> torch.nn.Module:
    new = layer.BatchNorm2d(
        len(index),
        eps=old.eps,
        momentum=old.momentum,
        affine=old.affine,
        track_running_stats=old.track_running_stats,
        step_mode="m",
    )
    reference = old.running_mean if old.running_mean is not None else old.weight
    new = new.to(device=reference.device, dtype=reference.dtype)
    index = index.to(reference.device)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            source = getattr(old, name)
            if source is not None:
                getattr(new, name).copy_(source.detach().index_select(0, index))
        if old.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(old.num_batches_tracked)
    return new.train(old.training)
