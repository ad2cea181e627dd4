"""Strict-threshold LIF and IF nodes with a fused multi-step loop (layer L3).

SpikingJelly fires when ``H >= v_threshold``; Loihi, Lava and NIR fire when ``H > v_threshold``.
These subclasses of SpikingJelly's multi-step nodes fire on the strict rule, so the model you
train, the NIR file and the chip agree on ties. Per step ``t`` (potentials dimensionless, ``tau``
in time steps; the same float expressions as SpikingJelly, so results are bit-identical off
ties)::

    H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau     LIF, decay_input=True
    H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]       LIF, decay_input=False
    H[t] = V[t-1] + X[t]                                  IF
    S[t] = H[t] > v_threshold                             (strict)
    V[t] = (1 - S[t]) H[t] + S[t] v_reset                 (hard reset)
    V[t] = H[t] - S[t] v_threshold                        (soft reset, v_reset=None)

(SpikingJelly 2's ``_ops/lif/reference.charge`` forms, also for ``v_reset = 0``; a soft reset
charges as if ``v_reset = 0``.)

The loop over ``T`` is one autograd function (:class:`FusedSpikes`): the forward runs the
recursion without building a graph and keeps ``H``; the backward runs it in reverse with the
node's surrogate derivative ``sigma'(H - v_th)`` for ``dS/dH``::

    dL/dH[t] = dL/dS[t] sigma' + dL/dV[t] dV/dH[t]
    dV/dH[t] = 1 - S[t] (hard, detach_reset) or 1 - S[t] - (H[t] - v_reset) sigma' (hard)
             = 1 (soft, detach_reset) or 1 - v_threshold sigma' (soft)
    dL/dX[t] = dL/dH[t] * gain_x,   dL/dV[t-1] += dL/dH[t] * gain_v

with ``gain_x = 1/tau`` (decay_input) or 1 and ``gain_v = 1 - 1/tau`` (LIF) or 1 (IF).

Speed (CPU, docs/benchmarks.md): every step writes into buffers allocated once per call, in the
input's memory layout (channels-last stays channels-last); ``S`` is a float comparison result
and the hard reset ``H - S H`` a fused multiply-add, since on the CPU a bool mask, its cast and
``masked_fill`` each cost several times a float operation. The backward computes
``dL/dS sigma'`` and ``gain_v dV/dH`` for all steps at once and leaves one multiply-add per step.
The node outputs the last potential only, or all of them with ``store_v_seq``.
"""

from __future__ import annotations

import copy
import math

import torch
from spikingjelly.activation_based import neuron, surrogate

from neuroprune.chip import arithmetic


def spike_derivative_(fn: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``d sigma(x) / dx`` of a SpikingJelly surrogate (``x = H - v_th``); may overwrite ``x``
    (pass a tensor of your own) and return it.

    ATan in closed form, ``alpha / 2 / (1 + (pi/2 alpha x)^2)``, in place (the same operations
    as the out-of-place expression); any other surrogate through autograd on its
    ``primitive_function``.
    """
    alpha = getattr(fn, "alpha", None)
    if type(fn) is surrogate.ATan:
        return x.mul_(math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        y = fn.primitive_function(xr, alpha)
        (grad,) = torch.autograd.grad(y.sum(), xr)
    return grad


class Dynamics:
    """The float charge/fire/reset rule of one node (see the module docstring)."""

    def __init__(self, node: neuron.BaseNode) -> None:
        self.model = "IF" if isinstance(node, neuron.IFNode) else "LIF"
        self.tau = None if self.model == "IF" else float(node.tau)
        self.decay_input = bool(getattr(node, "decay_input", True))
        self.v_threshold = float(node.v_threshold)
        self.v_reset = None if node.v_reset is None else float(node.v_reset)
        self.detach_reset = bool(node.detach_reset)
        self.surrogate = node.surrogate_function

    @property
    def gain_x(self) -> float:
        """``dH/dX``: ``1/tau`` for LIF with decay_input, else 1."""
        return 1.0 / self.tau if self.model == "LIF" and self.decay_input else 1.0

    @property
    def gain_v(self) -> float:
        """``dH/dV[t-1]``: ``1 - 1/tau`` for LIF, 1 for IF."""
        return 1.0 - 1.0 / self.tau if self.model == "LIF" else 1.0

    def charge_into(self, v: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``H[t]`` from ``V[t-1]`` and ``X[t]``, written into ``out``: SpikingJelly's float
        expressions, operation by operation (``v - 0.0 == v`` exactly and IEEE addition
        commutes, so the bits are SpikingJelly's)."""
        if self.model == "IF":
            return torch.add(v, x, out=out)
        rest = self.v_reset or 0.0
        if self.decay_input:  # v + (x - (v - rest)) / tau
            torch.sub(x, v if rest == 0.0 else v - rest, out=out)
            return out.div_(self.tau).add_(v)
        torch.sub(v, rest, out=out)  # v - (v - rest) / tau + x
        out.div_(self.tau)
        return torch.sub(v, out, out=out).add_(x)

    def fire_into(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``S[t] = H[t] > v_threshold`` as 0/1 in ``h``'s dtype, written into ``out`` (a float
        comparison result: on the CPU several times faster than a bool mask and a cast)."""
        return torch.gt(h, self.v_threshold, out=out)

    def reset_into(self, h: torch.Tensor, s: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``V[t]`` after the spike, written into ``out``: ``H - S H + S v_reset`` (hard; equals
        ``(1 - S) H + S v_reset`` for ``S`` in {0, 1} and finite ``H``) or ``H - S v_threshold``
        (soft), each product exact."""
        if self.v_reset is None:
            return torch.add(h, s, alpha=-self.v_threshold, out=out)
        torch.addcmul(h, h, s, value=-1.0, out=out)
        return out if self.v_reset == 0.0 else out.add_(s, alpha=self.v_reset)

    def reset_derivative(self, h: torch.Tensor, s: torch.Tensor, sg: torch.Tensor):
        """``dV[t]/dH[t]`` (module docstring)."""
        if self.v_reset is None:
            return torch.ones_like(h) if self.detach_reset else 1.0 - self.v_threshold * sg
        if self.detach_reset:
            return 1.0 - s
        return 1.0 - s - (h - self.v_reset) * sg


def run_forward(
    dyn: Dynamics,
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    *,
    keep_h: bool = True,
    keep_v_seq: bool = False,
):
    """The recursion without autograd: ``(spikes, h_seq or None, v)`` with ``v`` the potentials
    ``[T, ...]`` (``keep_v_seq``) or the last one ``[1, ...]``.

    Every step writes into preallocated buffers (in ``x_seq``'s memory format, so a
    channels-last input stays channels-last): ``H`` into ``h_seq[t]`` (or a scratch buffer),
    ``S`` into ``s_seq[t]``, ``V`` into ``v_seq[t]`` or one of two alternating buffers.
    """
    steps = x_seq.shape[0]
    s_seq = torch.empty_like(x_seq)
    h_seq = torch.empty_like(x_seq) if keep_h else None
    v_buf = torch.empty_like(x_seq) if keep_v_seq else torch.empty_like(x_seq[:2])
    h_scratch = None if keep_h else torch.empty_like(x_seq[0])
    v = v0
    for t in range(steps):
        h = dyn.charge_into(v, x_seq[t], h_seq[t] if keep_h else h_scratch)
        dyn.fire_into(h, s_seq[t])
        v = dyn.reset_into(h, s_seq[t], v_buf[t] if keep_v_seq else v_buf[t % 2])
    return s_seq, h_seq, (v_buf if keep_v_seq else v.unsqueeze(0))


class FusedSpikes(torch.autograd.Function):
    """All ``T`` steps of one layer as a single autograd node (module docstring). Outputs the
    spikes and the potentials: all ``T`` of them with ``keep_v_seq``, else the last ``[1, ...]``."""

    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, v0: torch.Tensor, dyn: Dynamics, keep_v_seq: bool):
        s_seq, h_seq, v_out = run_forward(dyn, x_seq, v0, keep_v_seq=keep_v_seq)
        ctx.dyn = dyn
        ctx.save_for_backward(h_seq, s_seq)
        return s_seq, v_out

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor, grad_v_out: torch.Tensor):
        h_seq, s_seq = ctx.saved_tensors
        grad_x, grad_v = bptt(ctx.dyn, h_seq, s_seq, grad_s, grad_v_out)
        return grad_x, grad_v, None, None


def bptt(dyn: Dynamics, h_seq, s_seq, grad_s, grad_v_out=None):
    """Backpropagation through the ``T`` steps (module docstring): ``(dL/dX, dL/dV[-1])``.

    ``grad_v_out`` is ``dL/dV`` of the last ``k`` steps ``[k, ...]`` (or None). Unrolled, the
    recursion is ``dL/dH[t] = g[t] + dL/dH[t+1] gain_v dV/dH[t]`` with
    ``g[t] = dL/dS[t] sigma'[t] + dL/dV[t] dV/dH[t]``: ``g`` and ``gain_v dV/dH`` are computed
    for all steps at once, leaving one fused multiply-add per step.
    """
    sg = spike_derivative_(dyn.surrogate, h_seq - dyn.v_threshold)
    dv_dh = dyn.reset_derivative(h_seq, s_seq, sg)
    grad_h = sg.mul_(grad_s.to(sg.dtype))
    if grad_v_out is not None:
        k = grad_v_out.shape[0]
        grad_h[-k:].addcmul_(grad_v_out.to(sg.dtype), dv_dh[-k:])
    carry = dv_dh.mul_(dyn.gain_v) if dyn.gain_v != 1.0 else dv_dh
    for t in range(h_seq.shape[0] - 2, -1, -1):
        grad_h[t].addcmul_(grad_h[t + 1], carry[t])
    grad_v = grad_h[0] * dyn.gain_v
    grad_x = grad_h.mul_(dyn.gain_x) if dyn.gain_x != 1.0 else grad_h
    return grad_x, grad_v


def initial_potential(node: neuron.BaseNode, x_seq: torch.Tensor) -> torch.Tensor:
    """``V[-1]`` as a tensor shaped like one step of ``x_seq``: SpikingJelly 2's own rule
    (``BaseNode.materialize_states``: a float fills a new tensor; a tensor of another shape is
    replaced by ``v_reset``, or 0 for a soft reset)."""
    (v, *_) = node.materialize_states((x_seq,), (node.v,), "m")
    return v


def strict_multi_step(node: neuron.BaseNode, x_seq: torch.Tensor) -> torch.Tensor:
    """Run ``node`` over ``x_seq [T, ...]`` with the strict rule; updates ``node.v`` (and
    ``node.v_seq`` when ``store_v_seq``) like SpikingJelly does; returns the spikes."""
    v0 = initial_potential(node, x_seq)
    dyn = Dynamics(node)
    keep_v_seq = bool(node.store_v_seq)
    if torch.is_grad_enabled() and (x_seq.requires_grad or v0.requires_grad):
        spikes, v_out = FusedSpikes.apply(x_seq, v0, dyn, keep_v_seq)
    else:
        spikes, _, v_out = run_forward(dyn, x_seq, v0, keep_h=False, keep_v_seq=keep_v_seq)
    node.v = v_out[-1]
    if keep_v_seq:
        node.v_seq = v_out
    return spikes


class LIFNode(neuron.LIFNode):
    """SpikingJelly's LIF node firing on ``H > v_threshold`` (module docstring)."""

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return strict_multi_step(self, x_seq)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return strict_multi_step(self, x.unsqueeze(0))[0]


class IFNode(neuron.IFNode):
    """SpikingJelly's IF node firing on ``H > v_threshold`` (module docstring)."""

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return strict_multi_step(self, x_seq)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return strict_multi_step(self, x.unsqueeze(0))[0]


STRICT_TYPES = (LIFNode, IFNode)


def _shared_node_args(node: neuron.BaseNode) -> dict:
    """Constructor arguments every LIF/IF node shares (threshold, reset, surrogate, mode)."""
    return {
        "v_threshold": node.v_threshold,
        "v_reset": node.v_reset,
        "surrogate_function": node.surrogate_function,
        "detach_reset": node.detach_reset,
        "step_mode": node.step_mode,
    }


def strict_copy(node: torch.nn.Module) -> torch.nn.Module:
    """The strict node equivalent to a plain SpikingJelly ``LIFNode``/``IFNode`` (same
    parameters and step mode); any other module is returned unchanged."""
    if type(node) not in (neuron.LIFNode, neuron.IFNode):
        return node
    common = {**_shared_node_args(node), "store_v_seq": node.store_v_seq}
    if type(node) is neuron.IFNode:
        return IFNode(**common)
    return LIFNode(tau=node.tau, decay_input=node.decay_input, **common)


def make_strict(model: torch.nn.Sequential) -> torch.nn.Sequential:
    """Replace, in place, every plain SpikingJelly LIF/IF child of ``model`` by its strict
    equivalent (:func:`strict_copy`); returns ``model``."""
    for name, child in list(model.named_children()):
        replacement = strict_copy(child)
        if replacement is not child:
            setattr(model, name, replacement)
    return model


# --------------------------------------------------------------------------------------------
# Chip arithmetic: the integer dynamics of a chip, for training and evaluation


class ChipDynamics(Dynamics):
    """A chip neuron's integer dynamics (:mod:`neuroprune.chip.arithmetic`, the layer's
    :class:`~neuroprune.chip.arithmetic.LayerNeuron`) and the float view its surrogate
    gradient uses.

    The synaptic current ``X`` (model units, ``W = weight_int * scale``) reaches the chip as the
    integer ``a = round(2**k X / scale)`` (exact for spike inputs; ``k`` > 0 only for a
    host-injected analog first layer). The chip's potential ``p`` maps back to model units as
    ``H = p scale / potential_divisor`` (Loihi: ``2**(6+k)`` times ``fold = tau`` for LIF with
    decay_input; SpiNNaker: ``2**s``); the surrogate is taken at ``H - threshold scale /
    potential_divisor``, whose sign is the chip's spike decision (off ties). ``dH/dV =
    gain_v``, ``dH/dX = gain_x`` (the layer's).

    Spikes per step: ``fire`` gives booleans, or counts where the arithmetic's
    ``spikes_per_step`` is not 1 (Speck's MultiSpike); the output ``S[t]`` is then the count,
    which the next layer weights (``W S``) as the chip sends that many events. A subtractive
    reset (``V = H - S thr``) takes the soft-reset derivative ``dV/dH = 1 - thr sigma'`` (1
    with ``detach_reset``), the surrogate ``sigma'`` standing in for ``dS/dH`` as for one spike.
    """

    def __init__(self, node: neuron.BaseNode, chip: dict) -> None:
        super().__init__(node)
        self.scale = float(chip["weight_scale"])
        self.shift = int(chip.get("input_shift", 0))
        facts = arithmetic.LayerFacts(
            model=self.model,
            tau=self.tau,
            decay_input=self.decay_input,
            threshold_int=int(chip["threshold_int"]),
            input_shift=self.shift,
            readout=bool(chip.get("readout", False)),
        )
        self.chip = arithmetic.layer_neuron(chip["arithmetic"], facts)
        spec = arithmetic.get_arithmetic(chip["arithmetic"]).spec
        self.unit = self.scale / self.chip.potential_divisor
        self.v_threshold = self.chip.threshold * self.unit
        self.v_reset = None if spec.reset == arithmetic.rules.SUBTRACT else 0.0

    @property
    def gain_x(self) -> float:
        return self.chip.gain_x

    @property
    def gain_v(self) -> float:
        return self.chip.gain_v

    def current(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Integer input ``round(2**k X / scale)`` (int64, round half to even like numpy)."""
        return torch.round(x_seq.double() * (2.0**self.shift / self.scale)).to(torch.int64)

    def run(self, x_seq: torch.Tensor, state: tuple):
        """``(spikes, H_seq, state)``: the integer recursion and the float view of its
        potential."""
        a = self.current(x_seq)
        h_seq = torch.empty_like(x_seq)
        s_seq = torch.empty_like(x_seq)
        small = self.chip.bounded(a)
        for t in range(a.shape[0]):
            state = self.chip.charge(state, a[t], small=small)
            fired = self.chip.fire(state)
            h_seq[t] = self.chip.potential(state).to(x_seq.dtype) * self.unit
            s_seq[t] = fired
            state = self.chip.reset(state, fired)
        return s_seq, h_seq, state


class ChipSpikes(torch.autograd.Function):
    """All ``T`` steps of a chip-arithmetic layer: integer forward, surrogate backward."""

    @staticmethod
    def forward(ctx, x_seq, dyn: ChipDynamics, *state):
        s_seq, h_seq, state = dyn.run(x_seq, tuple(state))
        ctx.dyn = dyn
        ctx.save_for_backward(h_seq, s_seq)
        ctx.mark_non_differentiable(*state)
        return (s_seq, *state)

    @staticmethod
    def backward(ctx, grad_s, *_grad_state):
        h_seq, s_seq = ctx.saved_tensors
        grad_x, _ = bptt(ctx.dyn, h_seq, s_seq, grad_s)
        return (grad_x, None, *(None for _ in _grad_state))


def chip_multi_step(node, x_seq: torch.Tensor) -> torch.Tensor:
    """Run a chip-arithmetic node over ``x_seq [T, ...]``; keeps its integer state
    (``node.chip_state``, in the arithmetic's state order)."""
    dyn = ChipDynamics(node, node.chip)
    state = node.chip_state
    if not isinstance(state, tuple):
        zeros = torch.zeros(x_seq.shape[1:], dtype=torch.int64, device=x_seq.device)
        state = dyn.chip.zero_state(zeros)
    spikes, *state = ChipSpikes.apply(x_seq, dyn, *state)
    node.chip_state = tuple(state)
    node.v = dyn.chip.potential(node.chip_state).to(x_seq.dtype) * dyn.unit
    out_dtype = torch.get_default_dtype() if x_seq.dtype == torch.float64 else x_seq.dtype
    return spikes.to(out_dtype)


class _ChipMixin:
    """Shared by :class:`ChipLIFNode` and :class:`ChipIFNode`: ``chip`` holds the arithmetic
    name, ``threshold_int``, ``weight_scale`` and ``input_shift`` of the layer."""

    chip: dict

    def _init_chip(self, chip: dict) -> None:
        self.chip = dict(chip)
        self.register_memory("chip_state", 0)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return chip_multi_step(self, x_seq)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return chip_multi_step(self, x.unsqueeze(0))[0]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chip={self.chip}"


class ChipLIFNode(_ChipMixin, LIFNode):
    """A LIF node that computes its chip's integer arithmetic (:class:`ChipDynamics`)."""

    def __init__(self, chip: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_chip(chip)


class ChipIFNode(_ChipMixin, IFNode):
    """An IF node that computes its chip's integer arithmetic (:class:`ChipDynamics`)."""

    def __init__(self, chip: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_chip(chip)


CHIP_TYPES = (ChipLIFNode, ChipIFNode)


def chip_copy(node: neuron.BaseNode, chip: dict) -> neuron.BaseNode:
    """The chip-arithmetic node with ``node``'s parameters and the layer facts ``chip``."""
    common = _shared_node_args(node)
    if isinstance(node, neuron.IFNode):
        return ChipIFNode(chip, **common)
    return ChipLIFNode(chip, tau=node.tau, decay_input=node.decay_input, **common)


def compute_in_float64(synapse: torch.nn.Module) -> None:
    """Make a host-injected first layer compute in float64 (see :func:`float64_input`)."""
    synapse.double()
    synapse.register_forward_pre_hook(float64_input)


def restore_chip_input(module: torch.nn.Module) -> None:
    """After loading: a synaptic layer whose ``neuroprune_quant`` fixes an ``input_shift``
    computes in float64 again (the file holds its tensors, not its forward hooks)."""
    quant = getattr(module, "neuroprune_quant", None)
    fixed = isinstance(quant, dict) and quant.get("input_shift") is not None
    if fixed and not module._forward_pre_hooks:
        compute_in_float64(module)


def float64_input(_module: torch.nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the layer computes in float64 (a host-injected first layer, so its
    current rounds like the simulator's float64 ``W_int x``)."""
    return tuple(a.double() if torch.is_tensor(a) else a for a in args)


def float_twin(model: torch.nn.Module) -> torch.nn.Module | None:
    """A copy of a chip-arithmetic model with its neurons back in float (strict ``>``, same
    tau and threshold, float32 everywhere): the float-to-chip drift reference. ``None`` when
    the model has no chip-arithmetic node."""
    if not any(isinstance(m, CHIP_TYPES) for m in model.modules()):
        return None
    twin = copy.deepcopy(model)
    for parent in twin.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, CHIP_TYPES):
                setattr(parent, name, _float_node(child))
            elif child._forward_pre_hooks:
                child._forward_pre_hooks.clear()
                child.float()
    return twin


def _float_node(node: neuron.BaseNode) -> neuron.BaseNode:
    common = _shared_node_args(node)
    if isinstance(node, neuron.IFNode):
        return IFNode(**common)
    return LIFNode(tau=node.tau, decay_input=node.decay_input, **common)
