"""``reference`` backend: vectorised numpy simulators of the NIR subset (torch-free).

All samples run side by side from a zero state. Layer ``i`` at step ``t`` receives the
concatenated spikes of its sources (``DeploymentSpec.layer_input``: earlier layers and/or the
network input) of the same step ``t``: the whole graph runs within one step in forward order, as
the trained model does (no pipeline delay; Lava's one-step-per-connection latency is a pure time
shift that the Lava backend undoes with per-projection delays).

Float mode reproduces neuroprune's strict-threshold SpikingJelly nodes (float64 arithmetic,
conventions.md §1)::

    X = W s + b
    H = V + (X - V) / tau      (LIF, decay_input=True)
    H = V - V / tau + X        (LIF, decay_input=False)
    H = V + X                  (IF)
    S = H > v_th  (>= for a legacy '>=' graph);  V = H (1 - S)

Fixed mode is a bit-exact emulation of Lava's Loihi ``fixed_pt`` models (docs/lava.md §2,
§4.2), with the parameters of :mod:`neuroprune.sim.lava_map`; all quantities are integers, v and
u in 1/64 weight LSB. The neuron step is :class:`neuroprune.chip.arithmetic.LoihiNeuron`, the same
code the chip-arithmetic training neuron runs::

    a = sum_j (W_eff,j s_j) >> 1        (one Lava Sparse per source j, W_eff,j = its column
                                         block of 2 w_int, Lava-preprocessed on its own)
    u = wrap24( trunc0(u (4096 - du - 1) / 4096) + (a << 6) )
    v = clip( trunc0(v (4096 - dv) / 4096) + u + (bias_mant << 6), -(2^23 - 1), 2^23 - 1 )
    S = v > (vth << 6);  v[S] = 0

A graph quantized for another chip arithmetic (:func:`neuroprune.chip.arithmetic.
arithmetic_for_format` of its weight format) runs that arithmetic's
:class:`~neuroprune.chip.arithmetic.LayerNeuron` instead (:func:`simulate_chip`): SpiNNaker's
``spinnaker_lif`` gets ``a = W_int s`` (weight LSBs, int64; a host-injected first layer its
stimulus integers) and the per-neuron ``bias_int``. Where the arithmetic emits several spikes
per step (:attr:`~neuroprune.chip.arithmetic.ArithmeticSpec.multi_spike`), a layer's output is
its spike counts: the next layer receives ``W_int c`` and the per-layer counts add them up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from neuroprune.chip.arithmetic import (
    ACT_SHIFT,
    ARITHMETICS,
    LOIHI,
    LoihiNeuron,
    int32,
    trunc_decay,
    wrap24,
)
from neuroprune.graph.stages import INPUT
from neuroprune.sim.base import BackendRun, Progress, emit
from neuroprune.sim.inputs import CURRENT, Stimulus
from neuroprune.sim.lava_map import (
    LavaLayer,
    chip_layers,
    lava_layers,
    lava_projections,
    spec_arithmetic,
)
from neuroprune.sim.spec import DeploymentSpec, LayerSpec

__all__ = ["ReferenceBackend", "int32", "simulate_fixed", "simulate_float", "trunc_decay", "wrap24"]


@dataclass(frozen=True)
class ReferenceBackend:
    """Numpy oracle: SpikingJelly semantics in float, Lava ``fixed_pt`` bit-exact in fixed.

    ``chip_arithmetics``: the chip arithmetics it runs bit for bit in fixed point
    (:mod:`neuroprune.sim.verification`): every registered one (Loihi's through
    :class:`~neuroprune.chip.arithmetic.LoihiNeuron`, the others through their
    :class:`~neuroprune.chip.arithmetic.LayerNeuron`)."""

    name: str = "reference"
    chip_arithmetics: ClassVar[tuple[str, ...]] = tuple(ARITHMETICS)

    def check_available(self) -> None:
        """Always available (numpy and scipy only)."""

    def run(
        self,
        spec: DeploymentSpec,
        stimulus: Stimulus,
        *,
        fixed_point: bool,
        timeout: float | None = None,
        progress: Progress = None,
    ) -> BackendRun:
        """Simulate all samples at once; ``timeout`` is ignored (the run is bounded)."""
        start = time.perf_counter()
        emit(progress, "backend_start", backend=self.name, samples=stimulus.samples)
        name = spec_arithmetic(spec) if fixed_point else None
        if fixed_point and name not in (None, LOIHI):
            counts = simulate_chip(spec, stimulus, name)
        elif fixed_point:
            layers = lava_layers(spec, fixed_point=True, input_shift=stimulus.current_shift)
            counts = simulate_fixed(layers, stimulus)
        else:
            counts = simulate_float(spec, stimulus)
        elapsed = time.perf_counter() - start
        emit(progress, "backend_done", backend=self.name, seconds=elapsed)
        return BackendRun(counts=counts, timings={"run": elapsed, "total": elapsed})


# --------------------------------------------------------------------------------------------
# Float: SpikingJelly semantics


def simulate_float(spec: DeploymentSpec, stimulus: Stimulus) -> tuple[np.ndarray, ...]:
    """Per-layer spike counts ``int32 [N, neurons]`` under SpikingJelly's float dynamics."""
    samples = stimulus.samples
    v = [np.zeros((samples, layer.neurons)) for layer in spec.layers]
    counts = [np.zeros((samples, layer.neurons), np.int32) for layer in spec.layers]
    for t in range(stimulus.timesteps):
        spikes: list[np.ndarray] = []
        for k, layer in enumerate(spec.layers):
            if k == 0 and stimulus.kind == CURRENT:
                current = stimulus.frames[t].astype(np.float64)
                current = current if layer.bias is None else current + layer.bias
            else:
                current = float_current(layer, spec.layer_input(k, stimulus.frames[t], spikes))
            spikes.append(float_step(layer, v[k], current))
            counts[k] += spikes[k]
    return tuple(counts)


def float_current(layer: LayerSpec, spikes: np.ndarray) -> np.ndarray:
    """``X = W s + b`` for a batch ``spikes [N, inputs]`` -> ``[N, neurons]`` (float64)."""
    current = np.asarray((layer.weight @ spikes.T.astype(np.float64)).T)
    return current if layer.bias is None else current + layer.bias


def float_step(layer: LayerSpec, v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """One SpikingJelly step in place on ``v``; returns the spikes as ``uint8 [N, neurons]``."""
    neuron = layer.neuron
    if neuron.model == "IF":
        h = v + x
    elif neuron.decay_input:
        h = v + (x - v) / neuron.tau
    else:
        h = v - v / neuron.tau + x
    fired = h > neuron.v_threshold if neuron.strict else h >= neuron.v_threshold
    v[...] = np.where(fired, 0.0, h)
    return fired.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Fixed: Lava fixed_pt, bit-exact


def simulate_fixed(layers: tuple[LavaLayer, ...], stimulus: Stimulus) -> tuple[np.ndarray, ...]:
    """Per-layer spike counts ``int32 [N, neurons]`` under Lava's Loihi fixed-point dynamics.

    Layer ``i``'s activation is the sum over its projections (one column block per source,
    :attr:`LavaLayer.wiring`) of what each Lava Sparse sends, as Lava's InPort sums them."""
    samples = stimulus.samples
    projections = [lava_projections(layer) for layer in layers]
    u = [np.zeros((samples, layer.neurons), np.int64) for layer in layers]
    v = [np.zeros((samples, layer.neurons), np.int64) for layer in layers]
    counts = [np.zeros((samples, layer.neurons), np.int32) for layer in layers]
    for t in range(stimulus.timesteps):
        spikes: list[np.ndarray] = []
        for k, layer in enumerate(layers):
            if k == 0 and stimulus.kind == CURRENT:
                activation = int32(stimulus.frames[t].astype(np.int64))
            else:
                activation = projected_activation(
                    projections[k], layer.weight_exp, stimulus.frames[t], spikes
                )
            spikes.append(fixed_step(layer, u[k], v[k], activation))
            counts[k] += spikes[k]
    return tuple(counts)


def projected_activation(projections, weight_exp: int, frame: np.ndarray, spikes) -> np.ndarray:
    """``sum_j fixed_activation(W_eff,j, s_j)`` over ``(source, W_eff,j)`` projections; each
    term is the int32 one Sparse sends, and the int32 sum is what the LIF's InPort receives."""
    total = None
    for source, weights in projections:
        pre = frame if source == INPUT else spikes[source]
        part = fixed_activation(weights, weight_exp, pre)
        total = part if total is None else int32(total + part)
    return total


def fixed_activation(weights: sp.csr_matrix, weight_exp: int, spikes: np.ndarray) -> np.ndarray:
    """Sparse fixed_pt output ``(W s) << weight_exp`` (a negative exponent floors), as the
    int32 that Lava's channel carries."""
    total = np.asarray((weights @ spikes.T.astype(np.int64)).T, dtype=np.int64)
    shifted = total << weight_exp if weight_exp > 0 else total >> -weight_exp
    return int32(shifted)


def fixed_step(layer: LavaLayer, u: np.ndarray, v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """One ``PyLifModelBitAcc`` step in place on ``u``/``v``; returns ``uint8`` spikes."""
    if layer.bias_exp != ACT_SHIFT:
        raise ValueError(f"fixed-point bias_exp must be {ACT_SHIFT}, got {layer.bias_exp}")
    neuron = LoihiNeuron(du=int(layer.du), dv=int(layer.dv), vth=int(layer.vth))
    bias = layer.bias_mant.astype(np.int64)
    u[...], v[...], fired = neuron.step(u, v, np.asarray(a, dtype=np.int64), bias)
    return fired.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Any other chip arithmetic, through its LayerNeuron


def simulate_chip(spec: DeploymentSpec, stimulus: Stimulus, name: str) -> tuple[np.ndarray, ...]:
    """Per-layer spike counts ``int32 [N, neurons]`` under chip arithmetic ``name``."""
    samples = stimulus.samples
    neurons = chip_layers(spec, name, stimulus.current_shift)
    weights = [layer.quant.weight_int.tocsr() for layer in spec.layers]  # type: ignore[union-attr]
    biases = [
        0 if layer.quant.bias_int is None else layer.quant.bias_int.astype(np.int64)  # type: ignore[union-attr]
        for layer in spec.layers
    ]
    zeros = [np.zeros((samples, layer.neurons), np.int64) for layer in spec.layers]
    state = [neuron.zero_state(z) for neuron, z in zip(neurons, zeros, strict=True)]
    counts = [np.zeros((samples, layer.neurons), np.int32) for layer in spec.layers]
    for t in range(stimulus.timesteps):
        spikes: list[np.ndarray] = []
        for k in range(len(spec.layers)):
            if k == 0 and stimulus.kind == CURRENT:
                a = stimulus.frames[t].astype(np.int64)
            else:
                pre = spec.layer_input(k, stimulus.frames[t], spikes).astype(np.int64)
                a = np.asarray((weights[k] @ pre.T).T, dtype=np.int64)
            state[k], fired = neurons[k].step(state[k], a, biases[k])
            spikes.append(np.asarray(fired).astype(np.int32))  # booleans or spike counts
            counts[k] += spikes[k]
    return tuple(counts)
