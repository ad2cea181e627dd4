"""SpikingJelly 2's op counters on a torch model, per synaptic layer (test and benchmark aid).

Nothing of neuroprune's is called here: the model runs under SpikingJelly 2's
``op_counter.DispatchCounterMode`` and each Linear/Conv2d's input is recorded with a forward
pre-hook. Per synaptic layer, totals over all samples and steps (integers):

* ``synops``: ``SynOpCounter`` as it is. Its rules (``op_counter/ac.py``): an ``aten.mm`` /
  ``addmm`` / ``convolution`` whose input is binary counts ``spikes x out_features`` (a conv:
  every in-bounds kernel position of every output channel), zero weights included; when both
  operands are binary it counts ``out.sum()``; when neither is, 0 (an analog first layer).
* ``macs``: ``MACCounter``: ``rows x in x out`` for non-binary operands, 0 for spikes.
* ``aligned``: ``SynOpCounter`` on ``(x != 0) @ (w != 0)`` per layer: both operands binary, so it
  counts the input events times their **nonzero** fan-out, neuroprune's definition.
* ``zero_synapses``: the same on ``(x != 0) @ (w == 0)``: the uses of zero (pruned) weights, what
  ``synops`` counts on a spike-driven layer beyond ``aligned``.
"""

from __future__ import annotations

import numpy as np
import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.op_counter import (
    DispatchCounterMode,
    MACCounter,
    SynOpCounter,
)

SYNAPTIC = (torch.nn.Linear, torch.nn.Conv2d)


def synaptic_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``(qualified name, module)`` of every Linear/Conv2d in registration (forward) order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SYNAPTIC)]


def spikingjelly_synops(
    model: torch.nn.Module, x: np.ndarray, batch: int = 120
) -> dict[str, list[int]]:
    """Counter totals per synaptic layer for ``x [T, N, ...]`` (module docstring), the
    network reset before every batch of ``batch`` samples."""
    modules = synaptic_modules(model)
    inputs: list[list[torch.Tensor]] = [[] for _ in modules]
    hooks = [
        m.register_forward_pre_hook(lambda _m, a, k=k: inputs[k].append(a[0].detach().clone()))
        for k, (_, m) in enumerate(modules)
    ]
    synops, macs = SynOpCounter(), MACCounter()
    try:
        with torch.no_grad(), DispatchCounterMode([synops, macs]):
            for start in range(0, x.shape[1], batch):
                functional.reset_net(model)
                model(torch.from_numpy(np.ascontiguousarray(x[:, start : start + batch])))
    finally:
        functional.reset_net(model)
        for hook in hooks:
            hook.remove()
    root = type(model).__name__

    def per_layer(counter) -> list[int]:
        records = counter.get_counts()
        return [int(sum(records.get(f"{root}.{n}", {}).values())) for n, _ in modules]

    def masked(select) -> list[int]:
        return [
            sum(_binary_synops(m, chunk, select(m.weight.detach())) for chunk in inputs[k])
            for k, (_, m) in enumerate(modules)
        ]

    return {
        "synops": per_layer(synops),
        "macs": per_layer(macs),
        "aligned": masked(lambda w: w != 0),
        "zero_synapses": masked(lambda w: w == 0),
    }


def _binary_synops(module: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> int:
    """``SynOpCounter`` on the layer's operation with input ``x != 0`` and weight ``mask``."""
    events, weight = (x != 0).float(), mask.float()
    counter = SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([counter]):
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.functional.conv2d(
                events.flatten(0, 1) if events.dim() == 5 else events,
                weight,
                None,
                module.stride,
                module.padding,
                module.dilation,
                module.groups,
            )
        else:
            torch.nn.functional.linear(events.reshape(-1, events.shape[-1]), weight)
    return int(counter.get_total())
