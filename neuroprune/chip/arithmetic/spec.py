"""The chip-arithmetic interface: what a chip's integer neuron is (frozen data) and what one
layer of it does (:class:`LayerNeuron`). See the package docstring for the design."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# Leak (ArithmeticSpec.leak)
MULTIPLICATIVE = "multiplicative"  # state *= fraction (a stored integer decay), then rounded
SHIFT = "shift"  # state -= state >> n (a bit-shift decay, Xylo)
LINEAR = "linear"  # state -= a constant per step (TrueNorth, a Speck bias)
NO_LEAK = "none"
LEAKS = (MULTIPLICATIVE, SHIFT, LINEAR, NO_LEAK)

# Synapse dynamics (ArithmeticSpec.synapse)
DELTA = "delta"  # the step's weighted input enters the potential once
EXPONENTIAL = "exponential"  # a current state decays by a fraction and feeds the potential
CURRENT_STATE = "current_state"  # Loihi's u: a state with its own decay (du)
SYNAPSES = (DELTA, EXPONENTIAL, CURRENT_STATE)


@dataclass(frozen=True)
class StateVariable:
    """One integer state of a neuron.

    Attributes:
        name: its name in the chip's code (``"v"``, ``"V_membrane"``).
        bits: width in bits (sign included).
        signed: two's complement (True) or unsigned.
        frac_bits: fractional bits (15 for s16.15; 0 for a plain integer).
        overflow: ``"wrap"`` or ``"clip"`` (:data:`rules.OVERFLOWS`), or ``"none"`` where the
            chip's code neither wraps nor clips below its word (refractory counters).
        unit: what one LSB is (``"2**-6 weight LSB"``, ``"2**-15 mV"``).
    """

    name: str
    bits: int
    signed: bool
    frac_bits: int
    overflow: str
    unit: str


@dataclass(frozen=True)
class Product:
    """One rounded product or shift in the update: ``round(x y / 2**shift)``.

    Attributes:
        name: what it computes (``"v decay"``).
        operands: the integer widths multiplied (``"v (24-bit) x (4096 - dv) (12-bit)"``).
        shift: bits dropped.
        rounding: :data:`rules.ROUNDINGS`.
    """

    name: str
    operands: str
    shift: int
    rounding: str


@dataclass(frozen=True)
class ArithmeticSpec:
    """Every rule of one chip's integer neuron, as data (the ``neuron.arithmetic.rules`` of a
    profile must state the same values, each with its source).

    Attributes:
        name: the registry key and the profile's ``neuron.arithmetic`` value.
        summary: one line.
        state: the neuron's integer state variables.
        products: every rounded product/shift of one step, in order.
        threshold: ``">"`` or ``">="`` (the potential against the threshold).
        reset: ``"to_v_reset"``, ``"subtract_threshold"`` or ``"none"``.
        leak: ``"multiplicative"``, ``"shift"``, ``"linear"`` or ``"none"``.
        refractory: whether the chip holds a neuron for a counted number of steps after a
            spike (neuroprune maps every layer with 0 steps; the rule is still emulated).
        synapse: ``"delta"``, ``"exponential"`` or ``"current_state"``.
        spikes_per_step: most spikes one neuron emits per step: 1 (``fire`` returns booleans),
            ``n > 1`` or ``None`` (no limit: Sinabs' MultiSpike); then ``fire`` returns a spike
            count per neuron (:func:`.rules.spike_count`) and ``reset`` (``subtract_threshold``)
            removes ``count * threshold``.
        lower_bound: the potential's floor other than its width (``None``: none).
        weights: how integer weights enter (width, sign, scale).
        thresholds: how the integer threshold enters.
        step_order: the order of one step's operations.
    """

    name: str
    summary: str
    state: tuple[StateVariable, ...]
    products: tuple[Product, ...]
    threshold: str
    reset: str
    leak: str
    refractory: bool
    synapse: str
    spikes_per_step: int | None
    lower_bound: str | None
    weights: str
    thresholds: str
    step_order: str

    @property
    def multi_spike(self) -> bool:
        """Whether ``fire`` returns spike counts (``spikes_per_step`` other than 1)."""
        return self.spikes_per_step != 1

    def rules(self) -> dict[str, Any]:
        """The rules a profile states (``neuron.arithmetic.rules``): name -> value."""
        return {
            "threshold": self.threshold,
            "reset": self.reset,
            "leak": self.leak,
            "refractory": self.refractory,
            "synapse": self.synapse,
            "spikes_per_step": self.spikes_per_step,
            "state_bits": {s.name: s.bits for s in self.state},
            "rounding": {p.name: p.rounding for p in self.products},
            "overflow": {s.name: s.overflow for s in self.state},
        }


@dataclass(frozen=True)
class LayerFacts:
    """What a neuroprune layer tells the arithmetic (integers in weight LSBs).

    Attributes:
        model: ``"LIF"`` or ``"IF"``.
        tau: membrane time constant in steps (LIF), or ``None``.
        decay_input: SpikingJelly's ``decay_input`` (LIF).
        threshold_int: the threshold in weight LSBs.
        input_shift: ``k``: the layer's integer input ``a`` is in ``2**-k`` weight LSB (0 for
            spike input; a host-injected analog first layer may use more resolution).
        readout: the network's last layer (a chip whose readout neurons differ from its hidden
            ones, Xylo's one spike per step, reads it; others ignore it).
    """

    model: str
    tau: float | None
    decay_input: bool
    threshold_int: int
    input_shift: int = 0
    readout: bool = False


class LayerNeuron(Protocol):
    """One layer's integer neuron. ``state`` is a tuple of int64 arrays (or tensors) of the
    layer's shape, in :attr:`ArithmeticSpec.state` order; ``a`` is the step's integer input in
    ``2**-k`` weight LSB (:attr:`LayerFacts.input_shift`), ``bias`` per neuron in weight LSBs.

    ``fire`` returns booleans, or spike counts (int64) where the arithmetic's
    ``spikes_per_step`` is not 1; ``reset`` takes what ``fire`` returned.

    The float view (training's surrogate gradient): the potential in model units is
    ``potential(state) * weight_scale / potential_divisor``; ``gain_v`` and ``gain_x`` are
    ``dH[t]/dH[t-1]`` and ``dH[t]/dX[t]`` of that view.
    """

    @property
    def threshold(self) -> int: ...

    @property
    def potential_divisor(self) -> float: ...

    @property
    def gain_v(self) -> float: ...

    @property
    def gain_x(self) -> float: ...

    def zero_state(self, zeros) -> tuple: ...

    def bounded(self, a_seq) -> bool: ...

    def charge(self, state: tuple, a, bias=0, *, small: bool = False) -> tuple: ...

    def potential(self, state: tuple): ...

    def fire(self, state: tuple): ...

    def reset(self, state: tuple, fired) -> tuple: ...

    def step(self, state: tuple, a, bias=0) -> tuple[tuple, Any]: ...


@dataclass(frozen=True)
class ChipArithmetic:
    """A registry entry (:data:`neuroprune.chip.arithmetic.ARITHMETICS`).

    Attributes:
        spec: the rules, as data.
        layer: :class:`LayerFacts` -> the layer's :class:`LayerNeuron`.
        analog_shift: ``(facts, bias_max, max_current) -> k`` for a host-injected analog first
            layer (``max_current``: largest ``|W_int x|`` in weight LSBs).
        weight_formats: the weight formats (``weights.format``) whose integers it runs on; the
            reference emulation picks the arithmetic of a quantized graph by them.
        models: the neuron models it maps (``"LIF"``, ``"IF"``).
        analog_input: whether the chip's host can inject an analog first layer (``direct``
            encoding); ``False`` (Speck) means spike input only, checked before training.
    """

    spec: ArithmeticSpec
    layer: Callable[[LayerFacts], LayerNeuron]
    analog_shift: Callable[[LayerFacts, int, float], int]
    weight_formats: tuple[str, ...]
    models: tuple[str, ...]
    analog_input: bool = True
