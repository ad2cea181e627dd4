"""``spinnaker_lif``: sPyNNaker's LIF neuron (``IF_curr_delta`` / ``IF_curr_exp``) in integers
(torch-free).

Transcribed from SpiNNakerManchester/sPyNNaker ``neural_modelling/src/neuron/`` (profile sources
S44-S48, docs/chip_profiles.md): ``models/neuron_model_lif_impl.h`` (closed-form update,
refractory counter, reset), ``threshold_types/threshold_type_static.h`` (``V >= V_thresh``),
``implementations/neuron_impl_standard.h`` (order of one step), ``synapse_types/
synapse_types_delta_impl.h`` and ``exp_synapse_utils.h`` with ``decay.h`` (synapse shaping),
``synapse_row.h`` (ring buffer value -> input); GCC's ``accum * accum`` is libgcc's
``FIXED_MULHELPER``: ``(x y + 2**14) >> 15``, no saturation.

All quantities are the 32-bit words the ARM core holds: ``REAL``/``input_t``/``state_t`` are
s16.15 ``accum`` (value = bits / 2**15, in mV or nA), decays ``decay_t`` are u0.32 fractions
(value = bits / 2**32). Per step, with ``E``/``I`` the excitatory/inhibitory ring-buffer words
(16-bit unsigned sums of 16-bit weights, saturating at 0xFFFF) and ``s`` the synapse type's
left shift::

    in_e = E << s;  in_i = I << s                                  (synapse_row_convert_...)
    delta:  isyn_e = in_e                 exp: isyn_e += (in_e init) >> 32   (same for i)
    if refract <= 0:
        I_in  = isyn_e - isyn_i + I_offset + current_offset         (int32 wrap)
        alpha = ((I_in R + 2**14) >> 15) + V_rest
        V     = alpha - ((exp_TC (alpha - V) + 2**14) >> 15)
    else:
        refract -= 1                                                 (V held)
    spike = V >= V_thresh;  V[spike] = V_reset;  refract[spike] = T_refract
    delta:  isyn = 0                      exp: isyn = (isyn decay) >> 32

Mapping of a neuroprune LIF layer (``K = threshold_int`` weight LSBs, ``tau`` in steps,
``dt`` = 1 ms): ``V_rest = V_reset = 0``, ``T_refract = 0``, delta synapses, ``exp_TC =
round(2**15 (1 - 1/tau))`` (tau_m = -dt / ln(1 - 1/tau), so the chip decays as the model
does), ``R = 1`` with decay_input (``R = tau`` without), ``V_thresh = K << s``, biases as
``I_offset = bias_int << s``. ``s`` (:func:`spinnaker_shift`) is the largest shift <= 15 that
keeps ``|E - I + bias| <= 2**17`` times ``R`` and ``K`` inside the 32-bit word; the weight
quantizer keeps every neuron's summed excitatory and inhibitory weights <= 0xFFFF, so a ring
buffer cannot saturate on spike input (the reference emulation checks it). A host-injected
analog first layer enters as ``current_offset`` in s16.15, ``rint(2**s W_int x)``.

The chip computes ``exp_TC``, ``init`` and ``decay`` itself from tau (``expk``, ``expulr``);
here they are the integers the mapping stores. Their values equal sPyNNaker's to the extent
``expk`` rounds to nearest (not checked against the ARM build: no SpiNNaker toolchain here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neuroprune.chip.arithmetic import rules
from neuroprune.chip.arithmetic.spec import (
    DELTA,
    MULTIPLICATIVE,
    ArithmeticSpec,
    ChipArithmetic,
    LayerFacts,
    Product,
    StateVariable,
)
from neuroprune.core.errors import UnsupportedError

SPINNAKER = "spinnaker_lif"
FRAC_BITS = 15  # s16.15 accum
ONE = 1 << FRAC_BITS
DECAY_FRAC_BITS = 32  # u0.32 decay_t
WORD_BITS = 32
WORD_LIMIT = 1 << (WORD_BITS - 1)
RING_BUFFER_MAX = 0xFFFF  # 16-bit unsigned ring-buffer word (saturating)
MAX_SHIFT = 15
INPUT_BUDGET_BITS = 17  # |E - I + bias| <= 2**17 weight LSB (two 16-bit words)


def word(values):
    """Wrap to the 32-bit signed word of an ``accum`` (GCC's non-saturating accum ops)."""
    return rules.wrap(values, WORD_BITS)


def accum_mul(x, y):
    """``accum * accum``: ``(x y + 2**14) >> 15`` (libgcc FIXED_MULHELPER), wrapped to 32 bits."""
    return word(rules.shift_round(x * y, FRAC_BITS, rules.HALF_UP))


def decay_s1615(x, decay):
    """sPyNNaker's ``decay_s1615``: ``(x decay) >> 32`` with ``decay`` a u0.32 word (floor)."""
    return word(rules.shift_round(x * decay, DECAY_FRAC_BITS, rules.FLOOR))


def _where(condition, if_true, if_false):
    """``condition ? if_true : if_false`` on booleans, with the operators both libraries have."""
    return if_true * condition + if_false * (~condition)


@dataclass(frozen=True)
class SpinnakerNeuron:
    """The words one sPyNNaker LIF neuron stores (all s16.15 bits unless said).

    ``syn_decay``/``syn_init``: the exponential synapse's u0.32 ``decay`` and ``init``
    (``None``: delta synapses, IF_curr_delta).
    """

    exp_tc: int
    r_membrane: int
    v_thresh: int
    v_reset: int = 0
    v_rest: int = 0
    t_refract: int = 0
    syn_decay: int | None = None
    syn_init: int | None = None

    @property
    def exponential(self) -> bool:
        return self.syn_decay is not None

    def receive(self, isyn_e, isyn_i, in_e, in_i):
        """Ring-buffer inputs into the synapse state (``synapse_types_add_neuron_input``)."""
        if self.exponential:
            return (
                word(isyn_e + decay_s1615(in_e, self.syn_init)),
                word(isyn_i + decay_s1615(in_i, self.syn_init)),
            )
        return word(isyn_e + in_e), word(isyn_i + in_i)

    def integrate(self, v, refract, isyn_e, isyn_i, offset=0):
        """``neuron_model_state_update``: ``(v, refract)`` before the threshold check."""
        total = word(isyn_e - isyn_i + offset)
        alpha = word(accum_mul(total, self.r_membrane) + self.v_rest)
        updated = word(alpha - accum_mul(self.exp_tc, word(alpha - v)))
        active = refract <= 0
        return _where(active, updated, v), _where(active, refract, refract - 1)

    def fire(self, v):
        """``threshold_type_is_above_threshold``: ``V >= V_thresh``."""
        return rules.compare(v, self.v_thresh, rules.GREATER_EQUAL)

    def spiked(self, v, refract, fired):
        """``neuron_model_has_spiked`` where ``fired``: ``V = V_reset``, refractory restarts."""
        v = rules.reset(v, fired, rules.TO_V_RESET, v_reset=self.v_reset)
        return v, _where(fired, refract * 0 + self.t_refract, refract)

    def shape(self, isyn_e, isyn_i):
        """``synapse_types_shape_input``: delta clears, exponential decays."""
        if self.exponential:
            return decay_s1615(isyn_e, self.syn_decay), decay_s1615(isyn_i, self.syn_decay)
        return isyn_e * 0, isyn_i * 0

    def step(self, state: tuple, in_e, in_i, offset=0):
        """One full step on ``(v, refract, isyn_e, isyn_i)``: ``(state, fired)``."""
        v, refract, isyn_e, isyn_i = state
        isyn_e, isyn_i = self.receive(isyn_e, isyn_i, in_e, in_i)
        v, refract = self.integrate(v, refract, isyn_e, isyn_i, offset)
        fired = self.fire(v)
        v, refract = self.spiked(v, refract, fired)
        isyn_e, isyn_i = self.shape(isyn_e, isyn_i)
        return (v, refract, isyn_e, isyn_i), fired


@dataclass(frozen=True)
class SpinnakerLayer:
    """One layer on the interface (:class:`~.spec.LayerNeuron`): state ``(V, refract, isyn_e,
    isyn_i)``; the net input ``a`` (``2**-k`` weight LSB) enters the excitatory receptor as
    ``a << (s - k)`` s16.15 bits, the bias as ``I_offset = bias << s``."""

    neuron: SpinnakerNeuron
    shift: int
    input_shift: int = 0

    @property
    def threshold(self) -> int:
        return self.neuron.v_thresh

    @property
    def potential_divisor(self) -> float:
        return float(2**self.shift)

    @property
    def gain_v(self) -> float:
        return self.neuron.exp_tc / ONE

    @property
    def gain_x(self) -> float:
        return (1.0 - self.neuron.exp_tc / ONE) * self.neuron.r_membrane / ONE

    @staticmethod
    def zero_state(zeros) -> tuple:
        return (zeros, zeros, zeros, zeros)

    @staticmethod
    def bounded(a_seq) -> bool:
        """Never: every wrap of the 32-bit words is computed."""
        return False

    def input_bits(self, a):
        """``a`` (``2**-k`` weight LSB) as s16.15 input bits."""
        if self.shift >= self.input_shift:
            return a << (self.shift - self.input_shift)
        return rules.shift_round(a, self.input_shift - self.shift, rules.HALF_UP)

    def charge(self, state: tuple, a, bias=0, *, small: bool = False) -> tuple:
        v, refract, isyn_e, isyn_i = state
        isyn_e, isyn_i = self.neuron.receive(isyn_e, isyn_i, self.input_bits(a), a * 0)
        v, refract = self.neuron.integrate(v, refract, isyn_e, isyn_i, bias << self.shift)
        return (v, refract, isyn_e, isyn_i)

    @staticmethod
    def potential(state: tuple):
        return state[0]

    def fire(self, state: tuple):
        return self.neuron.fire(state[0])

    def reset(self, state: tuple, fired) -> tuple:
        v, refract, isyn_e, isyn_i = state
        v, refract = self.neuron.spiked(v, refract, fired)
        return (v, refract, *self.neuron.shape(isyn_e, isyn_i))

    def step(self, state: tuple, a, bias=0) -> tuple:
        state = self.charge(state, a, bias)
        fired = self.fire(state)
        return self.reset(state, fired), fired


def spinnaker_exp_tc(tau: float) -> int:
    """``round(2**15 (1 - 1/tau))``: exp_TC of ``tau_m = -dt / ln(1 - 1/tau)``."""
    return int(round(ONE * (1.0 - 1.0 / tau)))


def spinnaker_r(tau: float, decay_input: bool) -> int:
    """R_membrane in s16.15: 1 with decay_input, ``tau`` without."""
    return ONE if decay_input else int(round(ONE * tau))


def spinnaker_exp_synapse(tau_syn: float, dt: float = 1.0) -> tuple[int, int]:
    """``(decay, init)`` u0.32 words of an ``IF_curr_exp`` synapse with time constant
    ``tau_syn`` (``exp_synapse_utils.h`` ``decay_and_init``): ``decay = exp(-dt/tau)`` (the
    chip's ``expulr``; here rounded to nearest), ``init = ((tau/dt) (1 - decay)) `` as
    ``decay_s1615_to_u032``: ``(bits(tau/dt) (2**32 - decay)) >> 15``, ``tau/dt`` in s16.15
    rounded to nearest (``kdivk``)."""
    decay = min(int(round(math.exp(-dt / tau_syn) * 2**DECAY_FRAC_BITS)), 2**DECAY_FRAC_BITS - 1)
    tau_over_ts = int(round(tau_syn / dt * ONE))
    init = (tau_over_ts * (2**DECAY_FRAC_BITS - decay)) >> FRAC_BITS
    return decay, init & (2**DECAY_FRAC_BITS - 1)


def spinnaker_shift(threshold_int: int, r_membrane: int) -> int:
    """Largest ``s <= 15`` with ``2**17 R << s`` and ``threshold_int << s`` below 2**31."""
    r_ceil = max(1, math.ceil(r_membrane / ONE))
    for shift in range(MAX_SHIFT, -1, -1):
        fits = (r_ceil << (INPUT_BUDGET_BITS + shift)) < WORD_LIMIT
        if fits and (int(threshold_int) << shift) < WORD_LIMIT:
            return shift
    return 0


def spinnaker_layer(facts: LayerFacts) -> SpinnakerLayer:
    """The :class:`SpinnakerLayer` of a neuroprune LIF layer (module docstring's mapping)."""
    if facts.model != "LIF" or facts.tau is None:
        raise UnsupportedError(
            "sPyNNaker's LIF has no non-leaky neuron (exp_TC = 1 would drop the input)",
            where="spinnaker_lif",
            field="neuron.model",
            value=facts.model,
            fix="Train LIF neurons for SpiNNaker (--neuron lif).",
        )
    r_membrane = spinnaker_r(facts.tau, facts.decay_input)
    shift = spinnaker_shift(facts.threshold_int, r_membrane)
    neuron = SpinnakerNeuron(
        exp_tc=spinnaker_exp_tc(facts.tau),
        r_membrane=r_membrane,
        v_thresh=int(facts.threshold_int) << shift,
    )
    return SpinnakerLayer(neuron=neuron, shift=shift, input_shift=int(facts.input_shift))


def _analog_shift(facts: LayerFacts, _bias_max: int, _max_current: float) -> int:
    """An analog first layer is injected at the s16.15 resolution: ``k = s``."""
    return spinnaker_layer(facts).shift


SPINNAKER_SPEC = ArithmeticSpec(
    name=SPINNAKER,
    summary="sPyNNaker's LIF (IF_curr_delta / IF_curr_exp) on the ARM968 in s16.15 accum",
    state=(
        StateVariable("V_membrane", WORD_BITS, True, FRAC_BITS, rules.WRAP, "2**-15 mV"),
        StateVariable("refract_timer", WORD_BITS, True, 0, rules.WRAP, "steps"),
        StateVariable("isyn_exc", WORD_BITS, True, FRAC_BITS, rules.WRAP, "2**-15 nA"),
        StateVariable("isyn_inh", WORD_BITS, True, FRAC_BITS, rules.WRAP, "2**-15 nA"),
    ),
    products=(
        Product("input x R", "I (s16.15) x R_membrane (s16.15)", FRAC_BITS, rules.HALF_UP),
        Product("membrane decay", "exp_TC (s16.15) x (alpha - V)", FRAC_BITS, rules.HALF_UP),
        Product("synapse init", "input (s16.15) x init (u0.32)", DECAY_FRAC_BITS, rules.FLOOR),
        Product("synapse decay", "isyn (s16.15) x decay (u0.32)", DECAY_FRAC_BITS, rules.FLOOR),
    ),
    threshold=rules.GREATER_EQUAL,
    reset=rules.TO_V_RESET,
    leak=MULTIPLICATIVE,
    refractory=True,
    synapse=DELTA,
    spikes_per_step=1,
    lower_bound=None,
    weights=(
        "16-bit unsigned magnitudes, sign by receptor (exc/inh ring buffers, 16-bit saturating"
        " sums), ring-buffer word << s per synapse type into s16.15"
    ),
    thresholds="V_thresh in s16.15: threshold_int << s",
    step_order=(
        "ring buffer -> synapse; if not refractory: closed-form V update; V >= V_thresh; "
        "V = V_reset, refract = T_refract on spike; shape synapse"
    ),
)

SPINNAKER_ARITHMETIC = ChipArithmetic(
    spec=SPINNAKER_SPEC,
    layer=spinnaker_layer,
    analog_shift=_analog_shift,
    weight_formats=("spinnaker",),
    models=("LIF",),
)
