"""``loihi_fixed_pt``: Loihi's integer neuron on the chip-arithmetic interface (torch-free).

``loihi_fixed_pt``: Lava's bit-accurate Loihi LIF (``PyLifModelBitAcc``, docs/lava.md §2,
§4.2). States ``u``, ``v`` are 24-bit signed integers in ``2**-6`` of the input unit (the
input unit is one weight LSB, or ``2**-k`` LSB for a host-injected first layer), decays are
12-bit and truncate toward zero, the threshold mantissa is 17-bit unsigned and compared
strictly. Per step, with ``a`` the integer synaptic input::

    u = wrap24( trunc0(u (4096 - du - 1) / 4096) + (a << 6) )          (int32 on the way)
    v = clip( trunc0(v (4096 - dv) / 4096) + u + (bias << 6), -(2^23 - 1), 2^23 - 1 )
    S = v > (vth << 6);   v[S] = 0

Mapping of a neuroprune neuron (``K = threshold_int``, ``tau`` in steps, ``k`` the input
shift): ``du = 4095`` (u holds no state), ``dv = round(4096 / tau)`` (0 for IF) and
``vth = round((K << k) * tau)`` for LIF with ``decay_input`` (v carries ``tau`` times the
model's potential instead of dividing the input), ``K << k`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuroprune.chip.arithmetic import rules
from neuroprune.chip.arithmetic.spec import (
    CURRENT_STATE,
    MULTIPLICATIVE,
    ArithmeticSpec,
    ChipArithmetic,
    LayerFacts,
    Product,
    StateVariable,
)

LOIHI = "loihi_fixed_pt"

DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS  # 4096: a decay of dv keeps (4096 - dv) / 4096
DECAY_MAX = DECAY_UNITY - 1
STATE_BITS = 24
STATE_LIMIT = 1 << (STATE_BITS - 1)  # 2**23
ACT_SHIFT = 6  # synaptic input, bias and threshold are MSB-aligned by 6 bits
VTH_MAX = 2**17 - 1  # unsigned 17-bit threshold mantissa
BIAS_MANT_MAX = 2**12 - 1  # signed 13-bit bias mantissa
MAX_INPUT_SHIFT = 6  # first-layer resolution 2**-6 LSB = the 1/64 LSB of v
INPUT_LIMIT = 2**16  # injected |a| stays below 2**16, far from u's 24-bit wrap of a << 6


def int32(values):
    """Two's-complement wrap to int32 (Lava's int32 arrays), kept in the caller's int64."""
    return rules.wrap(values, 32)


def trunc_decay(state, keep: int):
    """``state * keep / 4096`` rounded toward zero: ``sign(p) (|p| >> 12)`` with ``p = state
    keep`` (int64)."""
    return rules.shift_round(state * keep, DECAY_BITS, rules.TOWARD_ZERO)


def wrap24(current):
    """Lava's 24-bit wrap of u: above 2^23 and at or below -2^23 wrap around."""
    span = 2 * STATE_LIMIT
    return current - span * (current > STATE_LIMIT) + span * (current <= -STATE_LIMIT)


def keep_factor(decay: int) -> int:
    """``4096 - decay``: the multiplier that keeps ``1 - decay/4096`` of a state."""
    return DECAY_UNITY - int(decay)


@dataclass(frozen=True)
class LoihiNeuron:
    """One layer's ``loihi_fixed_pt`` parameters (integers, module docstring)."""

    du: int
    dv: int
    vth: int

    @property
    def threshold(self) -> int:
        """``vth << 6``: v must exceed this to fire."""
        return int(self.vth) << ACT_SHIFT

    def charge(self, u, v, a, bias=0, *, small: bool = False):
        """``(u, v)`` after one step's input ``a`` (int64 arrays; ``bias`` per neuron or 0),
        before the spike check.

        ``small=True`` is for callers that checked ``|u| + |a| + |bias| < 2**16`` (weight LSBs,
        u and the input scaled by 64 then stay below 2**23): the int32 and 24-bit wraps are then
        identities and are skipped (same result, fewer operations).
        """
        keep_u = keep_factor(self.du + 1)
        decayed_u = trunc_decay(u, keep_u) if keep_u else 0
        if small:
            u = decayed_u + (a << ACT_SHIFT)
            decayed_v = trunc_decay(v, keep_factor(self.dv))
            v = rules.clip(decayed_v + u + (bias << ACT_SHIFT), STATE_BITS, symmetric=True)
            return u, v
        u = wrap24(int32(int32(decayed_u) + int32(a << ACT_SHIFT)))
        decayed_v = int32(trunc_decay(v, keep_factor(self.dv)))
        v = rules.clip(int32(decayed_v + u + int32(bias << ACT_SHIFT)), STATE_BITS, symmetric=True)
        return u, v

    def fire(self, v):
        """Boolean spikes ``v > vth << 6`` (strict)."""
        return rules.compare(v, self.threshold, rules.GREATER)

    @staticmethod
    def reset(v, fired):
        """Hard reset to 0 where the neuron fired."""
        return rules.reset(v, fired, rules.TO_V_RESET)

    def step(self, u, v, a, bias=0):
        """One full step: ``(u, v_after_reset, fired)``."""
        u, v = self.charge(u, v, a, bias)
        fired = self.fire(v)
        return u, self.reset(v, fired), fired


def loihi_dv(model: str, tau: float | None) -> int:
    """``round(4096 / tau)`` for LIF, 0 for IF (range checked by the caller)."""
    if model == "IF" or tau is None:
        return 0
    return int(round(DECAY_UNITY / tau))


def loihi_vth(model: str, tau: float | None, decay_input: bool, threshold_int: int, shift=0):
    """Threshold mantissa for ``threshold_int`` weight LSBs and input shift ``k`` (docstring)."""
    threshold = int(threshold_int) << int(shift)
    if model == "LIF" and decay_input:
        return int(round(threshold * tau))  # type: ignore[operator]  # a LIF has a tau
    return threshold


def loihi_neuron(
    model: str, tau: float | None, decay_input: bool, threshold_int: int, shift: int = 0
) -> LoihiNeuron:
    """The :class:`LoihiNeuron` of a neuroprune LIF/IF layer (module docstring)."""
    vth = loihi_vth(model, tau, decay_input, threshold_int, shift)
    return LoihiNeuron(du=DECAY_MAX, dv=loihi_dv(model, tau), vth=vth)


def loihi_input_shift(
    threshold_int: int, tau: float | None, bias_max: int, max_current: float
) -> int:
    """Largest ``k`` in ``0..6`` such that a host-injected first layer, scaled by ``2**k``,
    keeps vth within 17 bits, ``bias << k`` within 13 bits and ``|a| = max_current 2**k``
    below 2**16 (``max_current`` in weight LSBs; 0 when even ``k = 1`` does not fit)."""
    for shift in range(MAX_INPUT_SHIFT, 0, -1):
        threshold = threshold_int * 2**shift * (tau or 1.0)
        fits = threshold <= VTH_MAX and bias_max << shift <= BIAS_MANT_MAX
        if fits and max_current * 2**shift < INPUT_LIMIT:
            return shift
    return 0


@dataclass(frozen=True)
class LoihiLayer:
    """One layer's :class:`LoihiNeuron` on the interface (:class:`~.spec.LayerNeuron`):
    state ``(u, v)``; the potential is ``v``, in ``2**-(6+k)`` weight LSB times ``fold``
    (``tau`` for LIF with decay_input, else 1)."""

    neuron: LoihiNeuron
    fold: float
    shift: int

    @property
    def threshold(self) -> int:
        return self.neuron.threshold

    @property
    def potential_divisor(self) -> float:
        return 2.0 ** (ACT_SHIFT + self.shift) * self.fold

    @property
    def gain_v(self) -> float:
        return keep_factor(self.neuron.dv) / DECAY_UNITY

    @property
    def gain_x(self) -> float:
        return 1.0 / self.fold

    @staticmethod
    def zero_state(zeros) -> tuple:
        return (zeros, zeros)

    def bounded(self, a_seq) -> bool:
        """``|a| < 2**16`` everywhere and u holds no state: the wraps are identities."""
        small = a_seq.numel() == 0 if hasattr(a_seq, "numel") else a_seq.size == 0
        small = small or int(abs(a_seq).max()) < INPUT_LIMIT
        return self.neuron.du == DECAY_MAX and small

    def charge(self, state: tuple, a, bias=0, *, small: bool = False) -> tuple:
        return self.neuron.charge(state[0], state[1], a, bias, small=small)

    @staticmethod
    def potential(state: tuple):
        return state[1]

    def fire(self, state: tuple):
        return self.neuron.fire(state[1])

    def reset(self, state: tuple, fired) -> tuple:
        return (state[0], self.neuron.reset(state[1], fired))

    def step(self, state: tuple, a, bias=0) -> tuple:
        u, v, fired = self.neuron.step(state[0], state[1], a, bias)
        return (u, v), fired


def loihi_layer(facts: LayerFacts) -> LoihiLayer:
    """The :class:`LoihiLayer` of a neuroprune layer (module docstring's mapping)."""
    neuron = loihi_neuron(
        facts.model, facts.tau, facts.decay_input, facts.threshold_int, facts.input_shift
    )
    fold = facts.tau if facts.model == "LIF" and facts.decay_input else 1.0
    return LoihiLayer(neuron=neuron, fold=float(fold), shift=int(facts.input_shift))  # type: ignore[arg-type]


def _analog_shift(facts: LayerFacts, bias_max: int, max_current: float) -> int:
    return loihi_input_shift(facts.threshold_int, facts.tau, bias_max, max_current)


LOIHI_SPEC = ArithmeticSpec(
    name=LOIHI,
    summary="Lava's bit-accurate Loihi LIF (PyLifModelBitAcc), the CUBA neuron of Loihi 1/2",
    state=(
        StateVariable("u", STATE_BITS, True, ACT_SHIFT, rules.WRAP, "2**-6 weight LSB"),
        StateVariable("v", STATE_BITS, True, ACT_SHIFT, rules.CLIP, "2**-6 weight LSB"),
    ),
    products=(
        Product("u decay", "u (24-bit) x (4096 - du - 1) (12-bit)", DECAY_BITS, rules.TOWARD_ZERO),
        Product("v decay", "v (24-bit) x (4096 - dv) (12-bit)", DECAY_BITS, rules.TOWARD_ZERO),
    ),
    threshold=rules.GREATER,
    reset=rules.TO_V_RESET,
    leak=MULTIPLICATIVE,
    refractory=False,
    synapse=CURRENT_STATE,
    spikes_per_step=1,
    lower_bound=None,
    weights="8-bit signed mantissa (Lava Sparse: 2 w with weight_exp -1), a << 6 into u",
    thresholds="17-bit unsigned mantissa vth, compared as vth << 6",
    step_order="u decay + input; v decay + u + bias; clip; fire v > vth << 6; v = 0 on spike",
)

LOIHI_ARITHMETIC = ChipArithmetic(
    spec=LOIHI_SPEC,
    layer=loihi_layer,
    analog_shift=_analog_shift,
    weight_formats=("loihi", "loihi2"),
    models=("LIF", "IF"),
)
