"""Neurons that will share a core, side by side (issue 23, item 5).

On chips whose cores share input axons among their neurons (crossbar, dense matrix), the
projection prunes a dense layer into contiguous core blocks whose neurons share at most
``inputs_per_block`` inputs (:class:`neuroprune.chip.capacity.InputBlocks`). Which neurons sit
together then matters: a block of neurons that prefer the same inputs loses little when it
keeps only its block's inputs. Before pruning, :func:`cluster_for_blocks` reorders the hidden
neurons of such a layer so that each contiguous block gathers neurons with overlapping
important inputs (:func:`cluster_order`), and permutes the next layer's input columns to match:

    W_l <- W_l[perm, :]      (and its bias)      W_{l+1} <- W_{l+1}[:, perm]

which computes the same function (the neuron nodes between are element-wise, with one
parameter set for the layer). Only chain models, and only a Linear layer whose spikes feed the
next Linear directly; the output layer keeps its order (its index is the class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from neuroprune.fit.budget import Budget
from neuroprune.models.reader import model_kind
from neuroprune.pruning.targets import find_targets


def cluster_order(importance: np.ndarray, size: int, inputs: int) -> np.ndarray:
    """A neuron order whose contiguous blocks of ``size`` gather neurons sharing inputs.

    ``importance`` is ``(neurons, inputs)`` (e.g. ``|W|``). Greedy and deterministic: a block
    starts at the unplaced neuron of largest total importance; it then takes, one at a time,
    the unplaced neuron that keeps the largest share of its importance on the block's current
    ``inputs`` most important inputs (the block's summed importance; ties: lower index), until
    it holds ``size`` neurons. Returns the permutation (block 0's neurons first).
    """
    imp = np.abs(np.asarray(importance, np.float64))
    neurons = imp.shape[0]
    total = imp.sum(axis=1)
    share_of = total.copy()
    share_of[share_of == 0] = 1.0
    free = np.ones(neurons, dtype=bool)
    order: list[int] = []
    while free.any():
        seed = int(np.flatnonzero(free)[np.argmax(total[free])])
        block, summed = [seed], imp[seed].copy()
        free[seed] = False
        while len(block) < size and free.any():
            top = np.argsort(-summed, kind="stable")[:inputs]
            kept = imp[:, top].sum(axis=1) / share_of
            kept[~free] = -np.inf
            pick = int(np.argmax(kept))
            block.append(pick)
            summed += imp[pick]
            free[pick] = False
        order += block
    return np.asarray(order, dtype=np.int64)


def cluster_for_blocks(
    model: torch.nn.Module, budget: Budget, input_shape: Sequence[int]
) -> dict[str, np.ndarray]:
    """Reorder, in place, the neurons of every hidden Linear layer that the budget prunes into
    shared-input core blocks (module docstring); returns ``{layer name: permutation}`` for the
    layers it reordered."""
    if model_kind(model) != "chain" or not budget.input_blocks:
        return {}
    targets = find_targets(
        model, tuple(input_shape), conv_weight_sharing=budget.conv_weight_sharing
    )
    done = {}
    for this, following in zip(targets, targets[1:], strict=False):
        blocks = budget.input_blocks.get(this.name)
        if blocks is None or not blocks.shared_inputs or this.is_output:
            continue
        first, second = this.module, following.module
        linear = isinstance(first, torch.nn.Linear) and isinstance(second, torch.nn.Linear)
        if not linear or second.weight.shape[1] != first.weight.shape[0]:
            continue
        weight = first.weight.detach().cpu().double().numpy()
        perm = cluster_order(weight, blocks.size, blocks.inputs_per_block)
        index = torch.as_tensor(perm, device=first.weight.device)
        with torch.no_grad():
            first.weight.copy_(first.weight[index])
            if first.bias is not None:
                first.bias.copy_(first.bias[index])
            second.weight.copy_(second.weight[:, index])
        done[this.name] = perm
    return done
