"""Spike counts of the PyTorch/SpikingJelly model itself, for ``simulate(reference_model=...)``.

The only module of :mod:`neuroprune.sim` that imports torch (lazily, in the parent process
only; the Lava worker never imports it). The model must follow conventions.md §1 (multi-step
Sequential); every SpikingJelly neuron module, in order, is one layer of the NIR chain.
"""

from __future__ import annotations

import numpy as np

from neuroprune.core.errors import ConfigError

BATCH = 256


def model_counts(model, inputs: np.ndarray, batch: int = BATCH) -> tuple[np.ndarray, ...]:
    """Per neuron layer ``int32 [N, neurons]`` spike counts for ``inputs [T, N, ...]``.

    Runs in eval mode without gradients, resets the network before every batch, and restores
    the model's training flag afterwards.
    """
    import torch  # deferred: imports torch
    from spikingjelly.activation_based import functional, neuron  # deferred: imports spikingjelly

    nodes = [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    if not nodes:
        raise ConfigError(
            "reference_model has no SpikingJelly neuron layers",
            where="simulate",
            field="reference_model",
            value=type(model).__name__,
        )
    parts: list[list[np.ndarray]] = [[] for _ in nodes]
    hooks = [node.register_forward_hook(_collector(parts[k])) for k, node in enumerate(nodes)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, inputs.shape[1], batch):
                functional.reset_net(model)
                chunk = np.ascontiguousarray(inputs[:, start : start + batch], dtype=np.float32)
                model(torch.from_numpy(chunk).to(device))
    finally:
        for hook in hooks:
            hook.remove()
        functional.reset_net(model)
        model.train(was_training)
    return tuple(np.concatenate(p, axis=0) for p in parts)


def _collector(store: list[np.ndarray]):
    def hook(_module, _inputs, output) -> None:
        spikes = output.detach().sum(dim=0)
        store.append(spikes.reshape(spikes.shape[0], -1).round().cpu().numpy().astype(np.int32))

    return hook
