"""The prunable tensors of a model and what each entry costs in physical synapses.

A :class:`Target` is one Linear/Conv2d weight. ``cost`` has the weight's shape and holds the
physical synapses an entry stands for under the budget's counting convention
(:data:`neuroprune.core.summary.COUNTING_CONVENTION`):

* Linear, or Conv2d on a chip that shares conv weights: 1 per entry;
* Conv2d counted unrolled: tap ``(c_out, c_in, ky, kx)`` costs ``n_y(ky) * n_x(kx)``, the output
  positions where it lands inside the input, ``n_y(ky) = #{oy : 0 <= oy*stride - pad + ky < H}``;
* a layer reading ``k x k`` average-pooled spikes: ``k^2`` times the above (the chip wires
  ``W P``, :func:`neuroprune.core.summary.pooled_layer`), except conv with weight sharing.

``group`` (same shape, int64) is the postsynaptic group of the entry: its output row (Linear) or
output channel (Conv2d). No neuron of a group receives more inputs than the group keeps entries,
so limiting entries per group to the fan-in cap enforces the cap (exact for Linear, an upper
bound for Conv2d whose border neurons see fewer taps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neuroprune.core.summary import conv_output_size
from neuroprune.models.blocks import Block
from neuroprune.models.reader import SynapseLayer, model_wiring


@dataclass(frozen=True, eq=False)
class Target:
    """One prunable weight tensor.

    Attributes:
        name: layer name (child name in the Sequential; key of ``Budget.per_layer_min``).
        module: the Linear/Conv2d module.
        cost: physical synapses per entry (float32, weight shape).
        group: postsynaptic group per entry (int64, weight shape).
        is_output: True for the last synaptic layer (every output unit keeps an input).
        has_batchnorm: True when a BatchNorm follows the layer (its sign may flip a weight's
            effect, so a positive weight is not necessarily excitatory).
    """

    name: str
    module: torch.nn.Module
    cost: torch.Tensor
    group: torch.Tensor
    is_output: bool
    has_batchnorm: bool = False

    @property
    def dense(self) -> int:
        """Physical synapses of this layer with nothing pruned."""
        return int(self.cost.sum().item())

    @property
    def group_size(self) -> int:
        """Entries per group (inputs per row, or ``C_in*kh*kw``)."""
        return int(self.cost[0].numel())


def find_targets(
    model: torch.nn.Module, input_shape: Sequence[int], *, conv_weight_sharing: bool
) -> list[Target]:
    """Every Linear/Conv2d weight of a convention model (or of a model with ``wiring()``, e.g.
    SEW-ResNet), with costs and groups; the model is read by
    :func:`neuroprune.models.reader.model_wiring`."""
    reading = model_wiring(model, input_shape, where="pruning")
    if reading.is_wired:
        return wiring_targets(model, reading.layers, conv_weight_sharing)
    last = len(reading.blocks) - 1
    return [
        _target(block, conv_weight_sharing, i == last) for i, block in enumerate(reading.blocks)
    ]


def _target(block: Block, sharing: bool, is_output: bool) -> Target:
    weight = block.synapse.weight
    if block.kind == "conv" and not sharing:
        cost = unrolled_tap_cost(block.synapse, block.in_shape)
    else:
        cost = torch.ones(weight.shape)
    if not (block.kind == "conv" and sharing):
        cost = cost * block.pool_kernel**2  # pooled input: the chip wires W P (summary.py)
    rows = torch.arange(weight.shape[0]).view(-1, *([1] * (weight.dim() - 1)))
    group = rows.expand(weight.shape).contiguous()
    return Target(
        block.name, block.synapse, cost.float(), group, is_output, block.batchnorm is not None
    )


def wiring_targets(
    model: torch.nn.Module, layers: Sequence[SynapseLayer], sharing: bool
) -> list[Target]:
    """Targets of a residual model from its wiring (``layers``, :class:`ModelWiring`): a layer
    reading ``k`` spike sources summed by ADDs is wired once per source (``models.sew``), so
    every entry costs ``k`` times its single-source cost."""
    targets = []
    for i, wired in enumerate(layers):
        module = model.get_submodule(wired.name)
        if wired.kind == "conv" and not sharing:
            cost = unrolled_tap_cost(module, wired.in_shape)
        else:
            cost = torch.ones(module.weight.shape)
        rows = torch.arange(module.weight.shape[0]).view(-1, *([1] * (module.weight.dim() - 1)))
        group = rows.expand(module.weight.shape).contiguous()
        is_output = i == len(layers) - 1
        has_bn = wired.batchnorm is not None
        targets.append(
            Target(wired.name, module, (cost * wired.sources).float(), group, is_output, has_bn)
        )
    return targets


def unrolled_tap_cost(conv: torch.nn.Module, in_shape: Sequence[int]) -> torch.Tensor:
    """``cost[c_out, c_in, ky, kx] = n_y(ky) * n_x(kx)`` (see module docstring)."""
    _, h, w = (int(s) for s in in_shape)
    kh, kw = conv.kernel_size
    stride, pad = int(conv.stride[0]), int(conv.padding[0])
    n_y = _landing_positions(h, kh, stride, pad)
    n_x = _landing_positions(w, kw, stride, pad)
    taps = torch.outer(
        torch.tensor(n_y, dtype=torch.float32), torch.tensor(n_x, dtype=torch.float32)
    )
    return taps.expand(conv.out_channels, conv.in_channels, kh, kw).contiguous()


def _landing_positions(size: int, kernel: int, stride: int, pad: int) -> list[int]:
    """For each kernel offset, how many output positions read an in-bounds input."""
    out = conv_output_size(size, kernel, stride, pad)
    positions = np.arange(out) * stride - pad
    return [
        int(np.count_nonzero((positions + k >= 0) & (positions + k < size))) for k in range(kernel)
    ]
