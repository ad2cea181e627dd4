"""``truenorth``: the TrueNorth neuron of Cassidy et al. (IJCNN 2013) and Merolla et al.
(Science 2014), deterministic, in integers (torch-free).

Transcribed from the equations as NeMo implements them (markplagge/NeMo
``src/neuro/tn_neuron.c``: ``TNIntegrate``, ``TNNumericLeakCalc``, ``ringing``,
``overUnderflowCheck``, ``TNfireFloorCelingReset``; profile sources S16, S18, S49-S51 in
docs/chip_profiles.md). Stochastic synapses, leak and threshold (``b``, ``c``, threshold mask
``TM``) are off, so the pseudo-random draw ``eta`` is 0. One tick of neuron ``j`` with ``V``
its membrane potential (a plain signed integer, one unit = one type-weight LSB)::

    V += sum_i A_i(t) w_ij s_j[G_i]                     integrate: active axons i, crossbar
                                                         bit w_ij, the neuron's signed 9-bit
                                                         weight for the axon's type G_i
    V0 = V
    V += lambda_j                        (epsilon = 0)  linear leak, signed 9-bit
    V += sgn(V) lambda_j                 (epsilon = 1)  leak reversal (lambda < 0: toward 0)
    if epsilon and sgn(V) != sgn(V0): V = 0              ringing guard
    if V > 393216:  V = 393216, spike                    saturation (no reset)
    elif V < -393216: V = -393216                        (then the checks below)
    if V >= alpha_j: spike; V = R_j (gamma 0) | V - alpha_j (gamma 1) | V (gamma 2)
    elif V < -beta_j: V = -beta_j (kappa 1) | -R_j (gamma 0) | V + beta_j (gamma 1) | V (gamma 2)

The comparison is ``>=`` (NeMo ``ns->membranePotential >= ns->posThreshold + eta``; Cassidy's
``V_j(t) >= alpha_j + eta_j``); the negative threshold is strict (``V < -beta``).

Mapping of a neuroprune layer (``K = threshold_int`` weight LSBs, ``k`` input shift, ``tau`` in
steps): the synaptic current ``a`` is ``sum_i A_i w_ij s_j[G_i]`` (the weight format's
``weight_int`` are the summed type weights, :mod:`neuroprune.chip.formats.truenorth`), reset
``gamma = 0`` to ``R = 0``, ``kappa = 1`` with ``beta`` at its largest (a floor, never reached
by a trained layer's potentials in practice).

* **IF**: ``alpha = K << k``, ``lambda = 0``, ``epsilon = 0``; a bias enters with the current,
  which equals the chip's leak ``lambda = bias`` (the leak follows the integration and nothing
  clamps between them) where the bias fits lambda's 9 bits (not checked here).
* **LIF (linear leak)**: TrueNorth has no multiplicative decay. The potential carries
  ``fold = tau`` times the model's (decay_input; the input is not divided), ``alpha =
  round((K << k) fold)``, and the leak is leak reversal toward zero, ``epsilon = 1``,
  ``lambda = -min(255, max(1, round(alpha / (2 tau))))``: the loss ``V / tau`` of the float
  LIF averaged over ``0..alpha``, within lambda's 9 bits. Training runs this neuron (quantization-aware fine-tuning), so the network
  learns the linear leak; the float LIF before quantization is only its starting point. A
  bias (BN folded into a conv) is added with the current here; on the chip it would need an
  always-active axon, since lambda holds the leak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from neuroprune.chip.arithmetic import rules
from neuroprune.chip.arithmetic.spec import (
    DELTA,
    LINEAR,
    ArithmeticSpec,
    ChipArithmetic,
    LayerFacts,
    StateVariable,
)
from neuroprune.core.errors import UnsupportedError

TRUENORTH = "truenorth"
CEILING = 393216  # NeMo overUnderflowCheck: |V| clamp (3 * 2**17)
STATE_BITS = 20  # signed 20-bit word holds +-393216
TYPE_WEIGHT_BITS = 9  # signed synaptic weight per axon type
TYPE_WEIGHT_MAX = 2 ** (TYPE_WEIGHT_BITS - 1) - 1  # 255
LEAK_MAX = 2 ** (TYPE_WEIGHT_BITS - 1) - 1  # lambda: signed 9-bit
ALPHA_MAX = 2**18 - 1  # positive threshold: 18-bit unsigned
BETA_MAX = 2**18 - 1  # negative threshold: 18-bit unsigned
MAX_INPUT_SHIFT = 6

RESET_NORMAL = 0  # gamma 0: V = R
RESET_LINEAR = 1  # gamma 1: V = V - alpha
RESET_NONE = 2  # gamma 2: V unchanged
GAMMA_RULES = {
    RESET_NORMAL: rules.TO_V_RESET,
    RESET_LINEAR: rules.SUBTRACT,
    RESET_NONE: rules.NO_RESET,
}


def sign(values):
    """``sgn(values)`` in {-1, 0, 1} (NeMo's ``SGN``), with operators both libraries have."""
    return (values > 0) * 1 - (values < 0) * 1


def _where(condition, if_true, if_false):
    """``condition ? if_true : if_false`` on booleans (numpy and torch alike)."""
    return if_true * condition + if_false * (~condition)


@dataclass(frozen=True)
class TrueNorthNeuron:
    """One neuron's deterministic parameters (Cassidy 2013 names; all integers).

    Attributes:
        alpha: positive threshold (``>= 0``, 18-bit).
        leak: ``lambda`` with its sign ``sigma_l`` (signed 9-bit): added per tick
            (``epsilon = 0``) or times ``sgn(V)`` (``epsilon = 1``).
        epsilon: leak-reversal flag.
        gamma: reset mode (0 normal to ``R``, 1 linear, 2 none).
        v_reset: ``R`` (signed).
        beta: negative threshold magnitude (``V < -beta`` triggers the negative reset).
        kappa: negative saturation flag (``V = -beta``).
    """

    alpha: int
    leak: int = 0
    epsilon: int = 0
    gamma: int = RESET_NORMAL
    v_reset: int = 0
    beta: int = BETA_MAX
    kappa: int = 1

    def integrate_and_leak(self, v, a):
        """``V`` after the tick's synaptic input ``a``, the leak, the ringing guard and the
        lower clamp; above the ceiling it is left at ``CEILING + 1`` (marks the overflow
        spike: ``reset`` sets it to ``CEILING``)."""
        v = v + a
        if self.leak:
            before = v
            if self.epsilon:
                v = v + sign(v) * self.leak
                v = v * (sign(v) == sign(before))  # ringing guard
            else:
                v = v + self.leak
        return v.clip(-CEILING, CEILING + 1)

    def fire(self, v):
        """``V >= alpha`` (an overflowed ``V > CEILING`` is above every 18-bit alpha)."""
        return rules.compare(v, self.alpha, rules.GREATER_EQUAL)

    def reset(self, v, fired):
        """Positive reset by ``gamma`` where ``fired`` (``CEILING`` after an overflow), else
        the negative-threshold rule where ``V < -beta``."""
        overflow = v > CEILING
        positive = rules.reset(
            v, fired, GAMMA_RULES[self.gamma], v_reset=self.v_reset, threshold=self.alpha
        )
        positive = _where(overflow, v * 0 + CEILING, positive)
        below = (v < -self.beta) & (~fired)
        if self.kappa:
            negative = v * 0 - self.beta
        elif self.gamma == RESET_NORMAL:
            negative = v * 0 - self.v_reset
        elif self.gamma == RESET_LINEAR:
            negative = v + self.beta
        else:
            negative = v
        return _where(below, negative, positive)

    def step(self, v, a):
        """One tick: ``(V, fired)``."""
        v = self.integrate_and_leak(v, a)
        fired = self.fire(v)
        return self.reset(v, fired), fired


@dataclass(frozen=True)
class TrueNorthLayer:
    """One layer on the interface (:class:`~.spec.LayerNeuron`): state ``(V,)`` in
    ``2**-k`` weight LSB times ``fold``; a bias enters with the synaptic current."""

    neuron: TrueNorthNeuron
    fold: float = 1.0
    shift: int = 0

    @property
    def threshold(self) -> int:
        return self.neuron.alpha

    @property
    def potential_divisor(self) -> float:
        return 2.0**self.shift * self.fold

    @property
    def gain_v(self) -> float:
        return 1.0

    @property
    def gain_x(self) -> float:
        return 1.0 / self.fold

    @staticmethod
    def zero_state(zeros) -> tuple:
        return (zeros,)

    @staticmethod
    def bounded(a_seq) -> bool:
        return False

    def charge(self, state: tuple, a, bias=0, *, small: bool = False) -> tuple:
        return (self.neuron.integrate_and_leak(state[0], a + (bias << self.shift)),)

    @staticmethod
    def potential(state: tuple):
        return state[0]

    def fire(self, state: tuple):
        return self.neuron.fire(state[0])

    def reset(self, state: tuple, fired) -> tuple:
        return (self.neuron.reset(state[0], fired),)

    def step(self, state: tuple, a, bias=0) -> tuple:
        state = self.charge(state, a, bias)
        fired = self.fire(state)
        return self.reset(state, fired), fired

    def words(self) -> dict:
        """The integers a Lava process rebuilds this layer from (JSON-ready)."""
        return {**asdict(self.neuron), "fold": self.fold, "shift": self.shift}

    @staticmethod
    def from_words(words: dict) -> TrueNorthLayer:
        fields = {k: int(words[k]) for k in asdict(TrueNorthNeuron(alpha=0))}
        return TrueNorthLayer(TrueNorthNeuron(**fields), float(words["fold"]), int(words["shift"]))


def truenorth_layer(facts: LayerFacts) -> TrueNorthLayer:
    """The :class:`TrueNorthLayer` of a neuroprune IF or LIF layer (module docstring)."""
    threshold = int(facts.threshold_int) << int(facts.input_shift)
    fold, leak, epsilon = 1.0, 0, 0
    if facts.model == "LIF":
        tau = float(facts.tau)  # type: ignore[arg-type]  # a LIF has a tau
        fold = tau if facts.decay_input else 1.0
        threshold = int(round(threshold * fold))
        leak, epsilon = -min(LEAK_MAX, max(1, int(round(threshold / (2.0 * tau))))), 1
    if not 0 <= threshold <= ALPHA_MAX:
        raise UnsupportedError(
            "the layer's threshold does not fit TrueNorth's 18-bit alpha",
            where=TRUENORTH,
            field="threshold_int",
            value=threshold,
            fix=f"Keep alpha in 0..{ALPHA_MAX} (a coarser weight scale, or --neuron if).",
        )
    neuron = TrueNorthNeuron(alpha=threshold, leak=leak, epsilon=epsilon)
    return TrueNorthLayer(neuron=neuron, fold=float(fold), shift=int(facts.input_shift))


def _analog_shift(facts: LayerFacts, bias_max: int, max_current: float) -> int:
    """Largest ``k <= 6`` keeping ``alpha << k`` within 18 bits and the injected current
    ``max_current 2**k`` below half the potential's ceiling."""
    fold = float(facts.tau or 1.0) if facts.model == "LIF" and facts.decay_input else 1.0
    for shift in range(MAX_INPUT_SHIFT, 0, -1):
        alpha = (int(facts.threshold_int) << shift) * fold
        current = (max_current + bias_max) * 2**shift
        if alpha <= ALPHA_MAX and current * max(fold, 1.0) < CEILING // 2:
            return shift
    return 0


TRUENORTH_SPEC = ArithmeticSpec(
    name=TRUENORTH,
    summary="TrueNorth's deterministic neuron (Cassidy 2013 equations, as NeMo's tn_neuron.c)",
    state=(StateVariable("V", STATE_BITS, True, 0, rules.CLIP, "type-weight LSB"),),
    products=(),
    threshold=rules.GREATER_EQUAL,
    reset=rules.TO_V_RESET,
    leak=LINEAR,
    refractory=False,
    synapse=DELTA,
    spikes_per_step=1,
    lower_bound="-beta (negative threshold, kappa = 1 saturates); V clamped to +-393216",
    weights=(
        "1-bit crossbar; the neuron's signed 9-bit weight per axon type (4 types), summed over "
        "the active axons (an input on several axons sums their types' weights)"
    ),
    thresholds="alpha: 18-bit unsigned, compared V >= alpha; beta 18-bit",
    step_order=(
        "integrate active axons; linear leak (leak reversal optional) with ringing guard; "
        "clamp +-393216 (above: spike, V = 393216); V >= alpha: reset by gamma; "
        "V < -beta: negative reset/saturation"
    ),
)

TRUENORTH_ARITHMETIC = ChipArithmetic(
    spec=TRUENORTH_SPEC,
    layer=truenorth_layer,
    analog_shift=_analog_shift,
    weight_formats=("truenorth",),
    models=("LIF", "IF"),
)
