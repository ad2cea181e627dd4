"""``speck_iaf``: Speck's (DYNAP-CNN's) integrate-and-fire neuron as Sinabs 3.1.3 runs it on
the DYNAP-CNN path (torch-free).

Transcribed from synsense/sinabs 3.1.3 (profile sources S70-S74, docs/chip_profiles.md):
``layers/iaf.py`` (``IAF``/``IAFSqueeze``: ``LIF`` with ``tau_mem = inf``, so ``alpha_mem = 1``;
defaults ``spike_fn=MultiSpike``, ``reset_fn=MembraneSubtract()``), ``layers/functional/lif.py``
(``lif_forward_single``: order of one step, ``min_v_mem`` applied after the reset as
``relu(v - min_v_mem) + min_v_mem``), ``activation/spike_generation.py`` (``MultiSpike``:
``(v > 0) * trunc(v / thr)`` spikes), ``activation/reset_mechanism.py`` (``MembraneSubtract``:
``v - spikes * thr``), ``nir.py`` (``from_nir``: an IF node becomes ``IAFSqueeze(
spike_threshold=v_th, min_v_mem=-v_th)``), ``backend/dynapcnn/discretize.py`` (8-bit weights
and biases, 16-bit thresholds and state; one common scale, the smallest of
``determine_discretization_scale`` over weights, biases and ``(min_v_mem, thr)``) and
``backend/dynapcnn/chips/dynapcnn.py`` (``threshold_high = spike_threshold``,
``threshold_low = min_v_mem`` written to the chip).

The lower bound is a setting of the chip (``threshold_low``); neuroprune sets it to
``-thr``, the value Sinabs' NIR importer gives an IF layer, so a Speck file means the same in
Sinabs. With 8-bit weights whose extreme is ``127`` or ``-128`` (the ``speck`` weight format
makes it so) and ``|min_v_mem| = thr < 2**15``, discretize's common scale is exactly 1:
Sinabs keeps neuroprune's integers as they are.

Per step, all integers (``v`` in weight LSBs, ``a = W_int s`` the step's input with ``s`` the
presynaptic spike counts, ``b`` the 8-bit bias, added every step by the convolution)::

    v = v + a + b                                  (alpha_mem = 1: no leak; b < 0 leaks)
    c = (v >= thr) * (v // thr)                    (MultiSpike; = (v > 0) trunc(v / thr))
    v = v - c thr                                  (MembraneSubtract)
    v = max(v, min_v_mem)                          (min_v_mem = -thr)

``c`` is the step's spike count (no limit per step in Sinabs); the next layer receives
``W_int c``. Sinabs computes in float32, exact for these integers while ``|v| < 2**24``; it
clips ``v`` only from below, so neither does this (the top of the chip's 16-bit state is not
modelled by the vendor's code: a profile note says so).
"""

from __future__ import annotations

from dataclasses import dataclass

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

SPECK = "speck_iaf"
STATE_BITS = 16  # DYNAPCNN_STATE_PRECISION_BITS
WEIGHT_BITS = 8  # DYNAPCNN_WEIGHT_PRECISION_BITS (weights and biases)
THRESHOLD_MAX = 2 ** (STATE_BITS - 1) - 1  # threshold_high in the 16-bit signed state


@dataclass(frozen=True)
class SpeckLayer:
    """One layer of Speck IAF neurons on the interface (:class:`~.spec.LayerNeuron`): state
    ``(v,)`` in weight LSBs; ``fire`` returns spike counts (int64)."""

    spike_threshold: int

    @property
    def min_v_mem(self) -> int:
        """``threshold_low``: ``-thr`` (what Sinabs' ``from_nir`` sets for an IF node)."""
        return -self.spike_threshold

    @property
    def threshold(self) -> int:
        return self.spike_threshold

    @property
    def potential_divisor(self) -> float:
        return 1.0

    @property
    def gain_v(self) -> float:
        return 1.0

    @property
    def gain_x(self) -> float:
        return 1.0

    @staticmethod
    def zero_state(zeros) -> tuple:
        return (zeros,)

    @staticmethod
    def bounded(a_seq) -> bool:
        """No fast path: one addition per step."""
        return False

    def charge(self, state: tuple, a, bias=0, *, small: bool = False) -> tuple:
        """``v + a + b`` (``alpha_mem = 1``)."""
        return (state[0] + a + bias,)

    @staticmethod
    def potential(state: tuple):
        return state[0]

    def fire(self, state: tuple):
        """MultiSpike: ``(v >= thr) * (v // thr)`` spikes."""
        return rules.spike_count(state[0], self.spike_threshold, rules.GREATER_EQUAL, None)

    def reset(self, state: tuple, fired) -> tuple:
        """MembraneSubtract, then the lower bound ``min_v_mem``."""
        v = rules.reset(state[0], fired, rules.SUBTRACT, threshold=self.spike_threshold)
        return (rules.lower_bound(v, self.min_v_mem),)

    def step(self, state: tuple, a, bias=0) -> tuple:
        state = self.charge(state, a, bias)
        fired = self.fire(state)
        return self.reset(state, fired), fired


def speck_layer(facts: LayerFacts) -> SpeckLayer:
    """The :class:`SpeckLayer` of a neuroprune IF layer: ``spike_threshold = threshold_int``."""
    if facts.model != "IF":
        raise UnsupportedError(
            "Speck's neurons are non-leaky integrate-and-fire (Sinabs IAF)",
            where=SPECK,
            field="neuron.model",
            value=facts.model,
            fix="Train IF neurons for Speck (--neuron if).",
        )
    if facts.input_shift:
        raise _no_analog_input()
    threshold = int(facts.threshold_int)
    if not 1 <= threshold <= THRESHOLD_MAX:
        raise UnsupportedError(
            "Speck's threshold must fit its 16-bit signed state",
            where=SPECK,
            field="threshold_int",
            value=threshold,
            fix=f"Quantize for Speck (--chip speck): 1 <= threshold_int <= {THRESHOLD_MAX}.",
        )
    return SpeckLayer(spike_threshold=threshold)


def _no_analog_input() -> UnsupportedError:
    return UnsupportedError(
        "Speck receives spike events only, not an analog first layer computed on the host",
        where=SPECK,
        field="encoding",
        value="direct",
        fix="Use a spike encoding (--encoding latency or poisson) or event data for Speck.",
    )


def _analog_shift(_facts: LayerFacts, _bias_max: int, _max_current: float) -> int:
    """Speck takes no analog input (the preflight refuses such a network before training)."""
    raise _no_analog_input()


SPECK_SPEC = ArithmeticSpec(
    name=SPECK,
    summary="Sinabs' IAF on the DYNAP-CNN path (IAFSqueeze, MultiSpike, MembraneSubtract)",
    state=(StateVariable("v_mem", STATE_BITS, True, 0, "none", "weight LSB"),),
    products=(),
    threshold=rules.GREATER_EQUAL,
    reset=rules.SUBTRACT,
    leak=LINEAR,
    refractory=False,
    synapse=DELTA,
    spikes_per_step=None,
    lower_bound="min_v_mem = -threshold (threshold_low; after the reset)",
    weights="8-bit signed kernel entries, entering as they are (a = W_int c)",
    thresholds="spike_threshold = threshold_int (threshold_high), 16-bit signed",
    step_order=("v += W c + bias; c = (v >= thr) (v // thr); v -= c thr; v = max(v, min_v_mem)"),
)

SPECK_ARITHMETIC = ChipArithmetic(
    spec=SPECK_SPEC,
    layer=speck_layer,
    analog_shift=_analog_shift,
    weight_formats=("speck",),
    models=("IF",),
    analog_input=False,
)
