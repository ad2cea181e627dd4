"""A current-based LIF node for NIR ``CubaLIF`` (layer L2; used by the NIR importer only).

SpikingJelly has no CubaLIF, and neuroprune's models never use one; the importer maps NIR
``CubaLIF`` to this module so foreign graphs still run. Forward Euler with step ``dt``, all
time constants in steps (``tau_steps = tau / dt``), per-neuron parameters allowed::

    I[t] = I[t-1] + (w_in * X[t] - I[t-1]) / tau_syn
    V'   = V[t-1] + (v_leak - V[t-1] + r * I[t]) / tau_mem      (new current, as Lava does)
    S[t] = V' >= v_threshold          (or V' > v_threshold, see ``strict``)
    V[t] = v_reset where S[t] else V'
"""

from __future__ import annotations

import numpy as np
import torch
from spikingjelly.activation_based import base


class CubaLIFNode(base.MemoryModule):
    """Current-based LIF neuron (module docstring); input/output ``[T, B, *shape]``."""

    def __init__(
        self,
        *,
        tau_syn: np.ndarray,
        tau_mem: np.ndarray,
        r: np.ndarray,
        v_leak: np.ndarray,
        v_threshold: np.ndarray,
        v_reset: np.ndarray,
        w_in: np.ndarray,
        strict: bool = False,
    ) -> None:
        super().__init__()
        params = {
            "tau_syn": tau_syn,
            "tau_mem": tau_mem,
            "r": r,
            "v_leak": v_leak,
            "v_threshold": v_threshold,
            "v_reset": v_reset,
            "w_in": w_in,
        }
        for name, value in params.items():
            self.register_buffer(name, torch.as_tensor(np.asarray(value, dtype=np.float32)))
        self.strict = bool(strict)
        self.register_memory("i", 0.0)
        self.register_memory("v", 0.0)
        self.step_mode = "m"

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step for ``x`` ``[B, *shape]``; returns spikes ``[B, *shape]``."""
        i = self.i if isinstance(self.i, torch.Tensor) else torch.zeros_like(x)
        v = self.v if isinstance(self.v, torch.Tensor) else torch.zeros_like(x)
        i = i + (self.w_in * x - i) / self.tau_syn
        v = v + (self.v_leak - v + self.r * i) / self.tau_mem
        spike = (v > self.v_threshold) if self.strict else (v >= self.v_threshold)
        spike = spike.to(x.dtype)
        self.i = i
        self.v = v * (1.0 - spike) + self.v_reset * spike
        return spike
