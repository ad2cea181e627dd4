"""``xylo_lif``: the integer LIF of Xylo Audio 2's SNN core (SYNS61201) as XyloSim computes it
(torch-free; Python 3.10 syntax: the xylosim worker imports it in the 3.10 backend environment).

Source: XyloSim, SynSense's bit-accurate simulator of the chip (PyPI ``xylosim`` 0.1.3,
``xylosim.v2.XyloLayer``, the back end of Rockpool 3.1's ``rockpool.devices.xylo.syns61201.
XyloSim``; profile sources S80-S82, docs/chip_profiles.md section 14). XyloSim ships only a
compiled module, so every rule below was read off its recorded states (``rec_i_syn``,
``rec_v_mem``, ``rec_recurrent_spikes``, ``rec_v_mem_out``) and is checked against it on random
configurations by ``tests/test_xylo_arithmetic.py``.

One step of one neuron, with ``in`` the step's weighted input events (``count * (w << shift)``
summed over the sources, int8 ``w``, per-matrix ``weight_shift``), ``dash_syn``/``dash_mem``
its bit-shift decays and ``thr`` its threshold::

    isyn = decay(clip16(isyn + in), dash_syn)
    vmem = clip16(decay(vmem, dash_mem) + isyn + bias)
    n    = 0 if vmem < thr else min(vmem // thr, most)        (most: 31 hidden, 1 readout)
    vmem = vmem - n thr

    decay(x, d) = x - (x >> d), except that a positive x loses at least 1 (x >> d == 0 -> 1)
    clip16(x)   = min(max(x, -32768), 32767)

A hidden neuron's ``n`` spikes reach the next population's ``isyn`` as ``n`` events in the
*next* step (the hidden -> hidden and hidden -> readout matrices add one step of delay; input
channels reach the hidden population in the same step). The threshold comparison is ``>=``.

**One departure, stated:** XyloSim saturates ``isyn`` after every event, in source order
(input channel or hidden neuron index; the ``n`` events of one source are one saturating
``n w`` add). Here the step's summed input is saturated once. The two agree whenever no partial
sum of a step leaves the 16-bit range, and the test checks exactly that boundary.

Mapping of a neuroprune layer (``K = threshold_int`` weight LSBs, ``tau`` in steps):
``dash_mem = clamp(round(log2 tau), 1, 15)`` (Rockpool's ``tau = dt 2**dash``; IF, which Xylo
does not have, leaks with the slowest decay, 15), ``dash_syn = 1`` (the fastest current that
still passes input: ``dash_syn = 0`` clears it before the membrane sees it), ``thr = K`` and
weight shift 0, as Rockpool's quantizers (``channel_quantize``) leave it: the states count
weight LSBs, and the integers of an exported file map through Rockpool's mapper unchanged.
:class:`XyloLayer` runs any shift (``a << shift``, ``thr`` in the shifted unit); the tests
check shifts 0..7 against XyloSim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neuroprune.chip.arithmetic import rules
from neuroprune.chip.arithmetic.spec import (
    EXPONENTIAL,
    SHIFT,
    ArithmeticSpec,
    ChipArithmetic,
    LayerFacts,
    Product,
    StateVariable,
)
from neuroprune.core.errors import UnsupportedError

XYLO = "xylo_lif"
STATE_BITS = 16  # isyn and vmem: int16, saturating
HIDDEN_SPIKES_MAX = 31  # spikes one hidden neuron emits in one step (XyloSim)
READOUT_SPIKES_MAX = 1  # readout (output) neurons: one spike per step
DASH_MAX = 15  # slowest bit-shift decay used (4-bit dash fields)
DASH_SYN = 1  # the synaptic current's decay of every mapped layer
WEIGHT_SHIFT = 0  # the mapping's weight_shift (module docstring)


def xylo_decay(x, dash: int):
    """XyloSim's bit-shift decay ``x - (x >> dash)``, where a positive ``x`` whose shift is 0
    still loses 1 (so a positive state always decays to 0); ``dash = 0`` clears the state."""
    drop = x >> dash
    return x - drop - ((drop == 0) & (x > 0)) * 1


def xylo_dash(tau: float | None) -> int:
    """``dash_mem`` of a LIF with ``tau`` steps: ``clamp(round(log2 tau), 1, 15)``; IF: 15."""
    if tau is None:
        return DASH_MAX
    return min(DASH_MAX, max(1, round(math.log2(max(tau, 1.0)))))


@dataclass(frozen=True)
class XyloNeuron:
    """The integers one Xylo neuron (population) stores: decays, threshold, spike limit."""

    dash_syn: int
    dash_mem: int
    threshold: int
    spikes_max: int

    def charge(self, isyn, vmem, events, bias=0):
        """``(isyn, vmem)`` after a step's input ``events`` (already ``<< weight_shift``)."""
        isyn = xylo_decay(rules.clip(isyn + events, STATE_BITS), self.dash_syn)
        vmem = rules.clip(xylo_decay(vmem, self.dash_mem) + isyn + bias, STATE_BITS)
        return isyn, vmem

    def fire(self, vmem):
        """Spikes: a count ``min(vmem // thr, most)`` at ``vmem >= thr`` (a boolean readout)."""
        return rules.spike_count(vmem, self.threshold, rules.GREATER_EQUAL, self.spikes_max)

    def reset(self, vmem, fired):
        """Subtractive reset: ``vmem - n thr``."""
        return rules.reset(vmem, fired, rules.SUBTRACT, threshold=self.threshold)


@dataclass(frozen=True)
class XyloLayer:
    """One layer on the interface (:class:`~.spec.LayerNeuron`): state ``(isyn, vmem)``; the
    input ``a`` (weight LSBs) enters as ``a << shift``, a bias as ``bias << shift``."""

    neuron: XyloNeuron
    shift: int

    @property
    def threshold(self) -> int:
        return self.neuron.threshold

    @property
    def potential_divisor(self) -> float:
        return float(2**self.shift)

    @property
    def gain_v(self) -> float:
        return 1.0 - 2.0**-self.neuron.dash_mem

    @property
    def gain_x(self) -> float:
        return 1.0 - 2.0**-self.neuron.dash_syn

    @staticmethod
    def zero_state(zeros) -> tuple:
        return (zeros, zeros)

    @staticmethod
    def bounded(a_seq) -> bool:
        """Never: every saturation is computed."""
        return False

    def charge(self, state: tuple, a, bias=0, *, small: bool = False) -> tuple:
        isyn, vmem = state
        return self.neuron.charge(isyn, vmem, a << self.shift, bias << self.shift)

    @staticmethod
    def potential(state: tuple):
        return state[1]

    def fire(self, state: tuple):
        return self.neuron.fire(state[1])

    def reset(self, state: tuple, fired) -> tuple:
        return (state[0], self.neuron.reset(state[1], fired))

    def step(self, state: tuple, a, bias=0) -> tuple:
        state = self.charge(state, a, bias)
        fired = self.fire(state)
        return self.reset(state, fired), fired


def xylo_layer(facts: LayerFacts) -> XyloLayer:
    """The :class:`XyloLayer` of a neuroprune layer (module docstring's mapping); the
    network's last layer (``facts.readout``) is Xylo's readout: one spike per step."""
    neuron = XyloNeuron(
        dash_syn=DASH_SYN,
        dash_mem=xylo_dash(facts.tau if facts.model == "LIF" else None),
        threshold=max(1, int(facts.threshold_int) << WEIGHT_SHIFT),
        spikes_max=READOUT_SPIKES_MAX if facts.readout else HIDDEN_SPIKES_MAX,
    )
    return XyloLayer(neuron=neuron, shift=WEIGHT_SHIFT)


def _analog_shift(facts: LayerFacts, _bias_max: int, _max_current: float) -> int:
    raise UnsupportedError(
        "Xylo's SNN core receives input events only (16 spike channels), not analog values",
        where="xylo_lif",
        field="encoding",
        value="direct",
        fix="Encode the input as spikes (--encoding poisson or latency).",
    )


XYLO_SPEC = ArithmeticSpec(
    name=XYLO,
    summary="Xylo Audio 2 (SYNS61201) integer LIF as XyloSim 0.1.3 computes it",
    state=(
        StateVariable("isyn", STATE_BITS, True, 0, rules.CLIP, "weight LSB << weight_shift"),
        StateVariable("vmem", STATE_BITS, True, 0, rules.CLIP, "weight LSB << weight_shift"),
    ),
    products=(
        Product("isyn decay", "isyn (16-bit) >> dash_syn (min 1 for isyn > 0)", 0, rules.FLOOR),
        Product("vmem decay", "vmem (16-bit) >> dash_mem (min 1 for vmem > 0)", 0, rules.FLOOR),
    ),
    threshold=rules.GREATER_EQUAL,
    reset=rules.SUBTRACT,
    leak=SHIFT,
    refractory=False,
    synapse=EXPONENTIAL,
    spikes_per_step=HIDDEN_SPIKES_MAX,
    lower_bound=None,
    weights="int8, left-shifted by a per-matrix weight_shift (input, recurrent, readout)",
    thresholds="16-bit threshold: threshold_int << weight_shift",
    step_order=(
        "isyn += events (saturating), isyn decays; vmem decays, += isyn + bias (saturating); "
        "n = min(vmem // thr, 31 hidden | 1 readout) at vmem >= thr; vmem -= n thr; hidden "
        "spikes reach the next population one step later"
    ),
)

XYLO_ARITHMETIC = ChipArithmetic(
    spec=XYLO_SPEC,
    layer=xylo_layer,
    analog_shift=_analog_shift,
    weight_formats=("xylo",),
    models=("LIF", "IF"),
    analog_input=False,  # 16 input event channels: direct encoding is refused before training
)
