"""Torch model -> chip vocabulary (layer L3): network summary and BatchNorm folding.

BatchNorm folding (eval-mode statistics), per output channel ``c``::

    s[c]      = gamma[c] / sqrt(running_var[c] + eps)
    W'[c]     = W[c] * s[c]
    b'[c]     = (b[c] - running_mean[c]) * s[c] + beta[c]        (b = 0 without a conv bias)

``BN(conv(x; W, b)) == conv(x; W', b')`` exactly in real arithmetic. Scaling never turns a zero
weight nonzero, and a channel with ``gamma = 0`` has every synapse zero: :func:`summarize`
counts the nonzero entries of ``W'`` in ``float32``, which is what a chip would store.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from spikingjelly.activation_based import functional, layer

from neuroprune.chip.formats.dynapse import cam_entries
from neuroprune.core.summary import (
    LayerSummary,
    NetworkSummary,
    conv_layer,
    dense_layer,
    pooled_layer,
)
from neuroprune.models.blocks import Block
from neuroprune.models.reader import WIRED, model_kind, model_wiring
from neuroprune.models.walker import neuron_info

WEIGHT_BITS_ATTR = "neuroprune_weight_bits"


def bn_scale_shift(conv: torch.nn.Module, bn: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(s, b')`` of the folding equations in the module docstring (float32)."""
    with torch.no_grad():
        gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        beta = bn.bias if bn.affine else torch.zeros_like(bn.running_var)
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        shift = (bias - bn.running_mean) * scale + beta
    return scale.detach().float(), shift.detach().float()


def folded_weight(block: Block) -> np.ndarray:
    """The block's weight as a chip stores it: BN-folded for conv+BN, else the raw weight."""
    weight = block.synapse.weight.detach().float()
    if block.batchnorm is not None:
        scale, _ = bn_scale_shift(block.synapse, block.batchnorm)
        weight = weight * scale.view(-1, 1, 1, 1)
    return weight.cpu().numpy()


def summarize(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    timesteps: int,
    *,
    name: str = "network",
) -> NetworkSummary:
    """:class:`NetworkSummary` of a convention model (BN folded for counting, conv unrolled).

    Layer names are the synaptic children's names in the Sequential. ``weight_bits`` comes from
    the optional ``neuroprune_weight_bits`` attribute on a Linear/Conv2d (set by quantization).
    Accepts the biased, BN-folded form from :func:`fold_batchnorm` too (a bias is a neuron
    property, not a synapse).
    """
    reading = model_wiring(model, input_shape, where=f"model {name}")
    if reading.is_wired:  # residual (SEW) models summarize their own wiring
        return model.summary(input_shape, timesteps, name=name)
    layers = tuple(_layer_summary(block) for block in reading.blocks)
    shape = tuple(int(s) for s in input_shape)
    return NetworkSummary(layers=layers, input_shape=shape, timesteps=int(timesteps), name=name)


def _layer_summary(block: Block) -> LayerSummary:
    """The block's summary; a block reading pooled spikes is wired as ``W P`` (summary)."""
    summary = _synapse_summary(block)
    if block.pool is None:
        return summary
    return pooled_layer(summary, block.pool_in_shape, block.pool_kernel)


def _synapse_summary(block: Block) -> LayerSummary:
    model_name, params = neuron_info(block.neuron)
    bits = getattr(block.synapse, WEIGHT_BITS_ATTR, None)
    copies = input_copies(block.synapse)
    if copies > 1:
        params = {**params, "input_copies": copies}
    common = {
        "neuron_model": model_name,
        "neuron_params": params,
        "weight_bits": None if bits is None else int(bits),
    }
    weight = folded_weight(block)
    common["entries"] = chip_entries(block.synapse, weight)
    if block.kind == "dense":
        return dense_layer(block.name, weight, flat_shape=block.flat_shape, **common)
    conv = block.synapse
    return conv_layer(
        block.name,
        weight,
        block.in_shape,
        stride=int(conv.stride[0]),
        padding=int(conv.padding[0]),
        **common,
    )


def input_copies(synapse: torch.nn.Module) -> int:
    """Axons each input needs on the chip: 2 when the quantized format duplicates inputs
    (TrueNorth ternary ``axon_duplication``, BrainScaleS per-sign ``row_duplication``), else 1."""
    quant = getattr(synapse, "neuroprune_quant", None) or {}
    return int(max(quant.get("axon_duplication", 1) or 1, quant.get("row_duplication", 1) or 1))


def chip_entries(synapse: torch.nn.Module, weight: np.ndarray) -> np.ndarray | None:
    """Chip entries per weight where a synapse may take several (DYNAP-SE1 with CAM repeats:
    ``cam_entries(rint(weight / weight_scale), cam_types_int)``), else None (one each)."""
    quant = getattr(synapse, "neuroprune_quant", None) or {}
    units = quant.get("cam_types_int")
    if not units:
        return None
    weight_int = np.rint(np.asarray(weight, dtype=np.float64) / float(quant["weight_scale"]))
    return cam_entries(weight_int.astype(np.int64), units)


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """An equivalent (eval-mode) copy with every BatchNorm2d folded into its conv.

    Each ``Conv2d -> BatchNorm2d`` pair becomes one ``layer.Conv2d(bias=True)`` with ``W'`` and
    ``b'`` (module docstring); other children are deep-copied with their names kept, and
    ``neuroprune_*`` attributes of the conv are carried over. The copy is in multi-step mode,
    eval mode, with neuron states reset. This biased form is for export; it is accepted by
    :func:`summarize` and by ``parse_blocks(..., allow_bias=True)``.
    """
    if model_kind(model) == WIRED:  # a wired (residual) model folds its own pairs
        return model.fold_batchnorm()
    children = list(model.named_children())
    folded: dict[str, torch.nn.Module] = {}
    skip = set()
    for i, (name, module) in enumerate(children):
        if name in skip:
            continue
        nxt = children[i + 1] if i + 1 < len(children) else None
        if type(module) is layer.Conv2d and nxt is not None and type(nxt[1]) is layer.BatchNorm2d:
            folded[name] = _fold_pair(module, nxt[1])
            skip.add(nxt[0])
        else:
            folded[name] = copy.deepcopy(module)
    out = torch.nn.Sequential(OrderedDict(folded))
    functional.set_step_mode(out, "m")
    functional.reset_net(out)
    return out.eval()


def _fold_pair(conv: torch.nn.Module, bn: torch.nn.Module) -> torch.nn.Module:
    scale, shift = bn_scale_shift(conv, bn)
    new = layer.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=True,
        step_mode="m",
    ).to(device=conv.weight.device)
    with torch.no_grad():
        new.weight.copy_(conv.weight.detach() * scale.view(-1, 1, 1, 1))
        new.bias.copy_(shift)
    for attr, value in vars(conv).items():
        if attr.startswith("neuroprune_"):
            setattr(new, attr, value)
    return new
