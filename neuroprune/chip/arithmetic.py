"""Chip neuron arithmetic, written once for training (torch) and emulation (numpy) (layer L1).

Torch-free and numpy-free: every function takes integer arrays of either library (int64
``numpy.ndarray`` or ``torch.Tensor``) and uses only operators both implement (``*``, ``+``,
``>>``, ``%``, comparisons, ``abs``, ``.clip``), so the reference simulator
(:mod:`neuroprune.sim.reference`) and the chip-arithmetic training neuron
(:mod:`neuroprune.models.neurons`) run the same lines and cannot drift apart.

A profile declares its neuron arithmetic in ``neuron.arithmetic`` (:data:`ARITHMETICS`); a chip
without one keeps float neurons.

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

LOIHI = "loihi_fixed_pt"
ARITHMETICS = (LOIHI,)

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
    return ((values + 2**31) % 2**32) - 2**31


def trunc_decay(state, keep: int):
    """``state * keep / 4096`` rounded toward zero: ``sign(p) (|p| >> 12)`` with ``p = state
    keep`` (int64)."""
    product = state * keep
    magnitude = abs(product) >> DECAY_BITS
    return magnitude - 2 * magnitude * (product < 0)


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
            v = (decayed_v + u + (bias << ACT_SHIFT)).clip(-STATE_LIMIT + 1, STATE_LIMIT - 1)
            return u, v
        u = wrap24(int32(int32(decayed_u) + int32(a << ACT_SHIFT)))
        decayed_v = int32(trunc_decay(v, keep_factor(self.dv)))
        v = int32(decayed_v + u + int32(bias << ACT_SHIFT)).clip(-STATE_LIMIT + 1, STATE_LIMIT - 1)
        return u, v

    def fire(self, v):
        """Boolean spikes ``v > vth << 6`` (strict)."""
        return v > self.threshold

    @staticmethod
    def reset(v, fired):
        """Hard reset to 0 where the neuron fired."""
        return v * (~fired)

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
