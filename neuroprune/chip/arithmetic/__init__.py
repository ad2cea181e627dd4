"""Chip neuron arithmetic: one interface, one implementation per chip, run by training (torch),
the reference emulation (numpy) and the Lava process models alike (layer L1, torch-free;
Python 3.10 syntax, because the Lava worker imports it in the 3.10 backend environment:
pyproject's per-file-target-version).

Design
------
A chip's integer neuron is two things:

* **its rules, as data** (:class:`ArithmeticSpec`, frozen): the state variables with width,
  signedness, fractional bits and overflow (``wrap``/``clip``); every rounded product or shift
  of a step with its rounding (``toward_zero``, ``nearest_half_up``, ``floor``); the threshold
  comparison (``>`` or ``>=``); the reset (``to_v_reset``, ``subtract_threshold``, ``none``);
  the leak (``multiplicative`` by a stored fraction, ``shift``, ``linear``, ``none``); the
  refractory counter; the synapse dynamics (``delta``, ``exponential``, Loihi's
  ``current_state``); spikes per step; a lower bound; how integer weights and thresholds
  enter. A profile names it in ``neuron.arithmetic`` and states the same rules with their
  sources in ``neuron.arithmetic.rules`` (the profile reader checks they match the registry).
* **one layer's dynamics** (:class:`LayerNeuron`): ``charge`` (input and leak, before the spike
  check), ``fire``, ``reset`` (everything after the check), ``step`` = the three, on a tuple of
  integer states. Every operation is one of :mod:`.rules` (``wrap``, ``clip``,
  ``shift_round``, ``compare``, ``reset``), duck-typed: int64 numpy arrays and torch tensors
  both run them, so the training neuron (:class:`neuroprune.models.neurons.ChipDynamics`), the
  reference (:mod:`neuroprune.sim.reference`) and a Lava process model execute the same lines.
  The float view that training's surrogate gradient needs (``potential_divisor``, ``gain_v``,
  ``gain_x``) is part of the layer.

:data:`ARITHMETICS` maps each ``neuron.arithmetic`` name to a :class:`ChipArithmetic`: the spec,
the ``LayerFacts -> LayerNeuron`` factory (a neuroprune layer's model, tau, decay_input,
``threshold_int``, input shift), the analog-input shift rule, the weight formats it runs on and
the neuron models it maps. It is the only list of names (profile validation, errors, the
reference's dispatch).

Chips on it
-----------
* ``loihi_fixed_pt`` (:mod:`.loihi`): 24-bit u, v in ``2**-6`` LSB; 12-bit decays truncated
  toward zero; ``v > vth << 6``; reset to 0; u wraps, v clips.
* ``speck_iaf`` (:mod:`.speck`): Sinabs' IAF on the DYNAP-CNN path; ``v += W c + b``;
  ``v >= thr`` fires ``v // thr`` spikes at once (MultiSpike), each subtracting thr;
  ``v >= min_v_mem = -thr`` after the reset.
* ``spinnaker_lif`` (:mod:`.spinnaker`): sPyNNaker's LIF in s16.15; closed-form update with
  ``nearest_half_up`` products; ``V >= V_thresh``; reset to V_reset; refractory counter; delta
  or exponential synapses (u0.32 ``floor`` decays); 16-bit weights with a power-of-two shift.
* ``truenorth`` (:mod:`.truenorth`): Cassidy 2013's deterministic neuron as NeMo computes it;
  integer V clamped to +-393216; per-axon-type signed 9-bit weights; linear leak (leak
  reversal optional) with the ringing guard; ``V >= alpha``; reset by gamma (to R, linear,
  none); negative threshold beta with saturation (kappa).
* ``xylo_lif`` (:mod:`.xylo`): XyloSim's Xylo Audio 2 LIF: 16-bit saturating ``isyn`` and
  ``vmem`` with bit-shift decays, ``vmem >= thr``, subtractive reset, up to 31 spikes per step
  (readout: 1); checked against XyloSim itself (``tests/test_xylo_arithmetic.py``).

Several spikes per step
-----------------------
Speck and Xylo need one extension of the dataclasses: a spike *count* from ``fire`` where
``spikes_per_step`` is not 1 (:attr:`ArithmeticSpec.multi_spike`, :func:`rules.spike_count`):
``ChipDynamics`` passes it on as a multi-spike output (the next layer's input is ``W c``), the
reference and the Lava ``ChipNeuron`` carry counts, and their spike counts add them up.
"""

from __future__ import annotations

from neuroprune.chip.arithmetic import rules
from neuroprune.chip.arithmetic.loihi import (
    ACT_SHIFT,
    BIAS_MANT_MAX,
    DECAY_BITS,
    DECAY_MAX,
    DECAY_UNITY,
    INPUT_LIMIT,
    LOIHI,
    LOIHI_ARITHMETIC,
    MAX_INPUT_SHIFT,
    STATE_BITS,
    STATE_LIMIT,
    VTH_MAX,
    LoihiLayer,
    LoihiNeuron,
    int32,
    keep_factor,
    loihi_dv,
    loihi_input_shift,
    loihi_layer,
    loihi_neuron,
    loihi_vth,
    trunc_decay,
    wrap24,
)
from neuroprune.chip.arithmetic.spec import (
    ArithmeticSpec,
    ChipArithmetic,
    LayerFacts,
    LayerNeuron,
    Product,
    StateVariable,
)
from neuroprune.chip.arithmetic.speck import SPECK, SPECK_ARITHMETIC, SpeckLayer
from neuroprune.chip.arithmetic.spinnaker import (
    SPINNAKER,
    SPINNAKER_ARITHMETIC,
    SpinnakerLayer,
    SpinnakerNeuron,
)
from neuroprune.chip.arithmetic.truenorth import (
    TRUENORTH,
    TRUENORTH_ARITHMETIC,
    TrueNorthLayer,
    TrueNorthNeuron,
)
from neuroprune.chip.arithmetic.xylo import XYLO, XYLO_ARITHMETIC, XyloLayer, XyloNeuron
from neuroprune.core.errors import UnsupportedError

ARITHMETICS: dict[str, ChipArithmetic] = {
    LOIHI: LOIHI_ARITHMETIC,
    SPINNAKER: SPINNAKER_ARITHMETIC,
    TRUENORTH: TRUENORTH_ARITHMETIC,
    SPECK: SPECK_ARITHMETIC,
    XYLO: XYLO_ARITHMETIC,
}


def get_arithmetic(name: str) -> ChipArithmetic:
    """The registry entry ``name`` (an :class:`UnsupportedError` naming the known ones)."""
    if name not in ARITHMETICS:
        raise UnsupportedError(
            f"unknown chip arithmetic {name!r}",
            where="neuron.arithmetic",
            field="neuron.arithmetic",
            value=name,
            fix=f"Use one of {sorted(ARITHMETICS)}.",
        )
    return ARITHMETICS[name]


def arithmetic_for_format(weight_format: str) -> str | None:
    """The arithmetic whose integers a quantized ``weight_format`` holds (``None``: none)."""
    for name, entry in ARITHMETICS.items():
        if weight_format in entry.weight_formats:
            return name
    return None


def layer_neuron(name: str, facts: LayerFacts) -> LayerNeuron:
    """``facts``' :class:`LayerNeuron` under arithmetic ``name``."""
    return get_arithmetic(name).layer(facts)


__all__ = [
    "ACT_SHIFT",
    "ARITHMETICS",
    "BIAS_MANT_MAX",
    "DECAY_BITS",
    "DECAY_MAX",
    "DECAY_UNITY",
    "INPUT_LIMIT",
    "LOIHI",
    "MAX_INPUT_SHIFT",
    "SPECK",
    "SPINNAKER",
    "STATE_BITS",
    "TRUENORTH",
    "STATE_LIMIT",
    "VTH_MAX",
    "XYLO",
    "ArithmeticSpec",
    "ChipArithmetic",
    "LayerFacts",
    "LayerNeuron",
    "LoihiLayer",
    "LoihiNeuron",
    "Product",
    "SpeckLayer",
    "SpinnakerLayer",
    "SpinnakerNeuron",
    "StateVariable",
    "TrueNorthLayer",
    "TrueNorthNeuron",
    "XyloLayer",
    "XyloNeuron",
    "arithmetic_for_format",
    "get_arithmetic",
    "int32",
    "keep_factor",
    "layer_neuron",
    "loihi_dv",
    "loihi_input_shift",
    "loihi_layer",
    "loihi_neuron",
    "loihi_vth",
    "rules",
    "trunc_decay",
    "wrap24",
]
