"""The integer rules every chip arithmetic is built from, written once (torch-free, numpy-free).

Each function takes integer arrays of either library (int64 ``numpy.ndarray`` or
``torch.Tensor``, or Python ints) and uses only operators both implement (``*``, ``+``, ``-``,
``>>``, ``%``, ``//``, comparisons, ``~`` on booleans, ``abs``, ``.clip``), so training
(:class:`neuroprune.models.neurons.ChipDynamics`), the reference emulation
(:mod:`neuroprune.sim.reference`) and the Lava process models run the same lines.

Names used as rule values in :class:`~neuroprune.chip.arithmetic.spec.ArithmeticSpec` (and in
the profiles' ``neuron.arithmetic.rules``) are the constants below.
"""

from __future__ import annotations

# Rounding of a product shifted right by n bits (ArithmeticSpec.products)
TOWARD_ZERO = "toward_zero"  # sign(p) (|p| >> n)            (Loihi's decays)
HALF_UP = "nearest_half_up"  # (p + 2**(n-1)) >> n           (GCC's accum * accum, libgcc)
FLOOR = "floor"  # p >> n (arithmetic shift)                  (sPyNNaker's decay_s1615)
ROUNDINGS = (TOWARD_ZERO, HALF_UP, FLOOR)

# Overflow of a state variable (StateVariable.overflow)
WRAP = "wrap"  # two's complement wrap to the width
CLIP = "clip"  # saturate at the width's limits
OVERFLOWS = (WRAP, CLIP)

# Threshold comparison (ArithmeticSpec.threshold)
GREATER = ">"
GREATER_EQUAL = ">="
COMPARISONS = (GREATER, GREATER_EQUAL)

# Reset after a spike (ArithmeticSpec.reset)
TO_V_RESET = "to_v_reset"
SUBTRACT = "subtract_threshold"
NO_RESET = "none"
RESETS = (TO_V_RESET, SUBTRACT, NO_RESET)


def wrap(values, bits: int):
    """Two's-complement wrap of signed ``values`` to ``bits`` bits (kept in the caller's int64)."""
    half = 1 << (bits - 1)
    return ((values + half) % (2 * half)) - half


def clip(values, bits: int, *, symmetric: bool = False):
    """Saturate signed ``values`` to ``bits`` bits: ``[-2**(bits-1), 2**(bits-1) - 1]``
    (``symmetric``: ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``, Loihi's v)."""
    high = (1 << (bits - 1)) - 1
    return values.clip(-high if symmetric else -high - 1, high)


def shift_round(product, shift: int, rounding: str):
    """``product / 2**shift`` rounded by ``rounding`` (int64; ``shift`` >= 1)."""
    if rounding == TOWARD_ZERO:
        magnitude = abs(product) >> shift
        return magnitude - 2 * magnitude * (product < 0)
    if rounding == HALF_UP:
        return (product + (1 << (shift - 1))) >> shift
    if rounding == FLOOR:
        return product >> shift
    raise ValueError(f"unknown rounding {rounding!r}; known: {list(ROUNDINGS)}")


def compare(potential, threshold, comparison: str):
    """Boolean spikes: ``potential > threshold`` or ``potential >= threshold``."""
    if comparison == GREATER:
        return potential > threshold
    if comparison == GREATER_EQUAL:
        return potential >= threshold
    raise ValueError(f"unknown comparison {comparison!r}; known: {list(COMPARISONS)}")


def spike_count(potential, threshold, comparison: str, most: int | None):
    """A step's spikes: the boolean :func:`compare` where ``most == 1``; otherwise a count
    (int64), the number of whole thresholds in the potential, at most ``most`` (``None``: no
    limit), 0 below threshold::

        ">=":  c = (p >= thr) * (p // thr)            (Sinabs' MultiSpike: (v > 0) trunc(v / thr))
        ">":   c = (p > thr) * ((p - 1) // thr)       (p - (c - 1) thr > thr for each spike)

    ``threshold`` > 0 (a positive integer, so ``//`` floors like Sinabs' truncation for
    ``p > 0``). With :func:`reset` ``subtract_threshold`` the potential loses ``c thr``.
    """
    if most == 1:
        return compare(potential, threshold, comparison)
    fired = compare(potential, threshold, comparison)
    whole = potential // threshold if comparison == GREATER_EQUAL else (potential - 1) // threshold
    count = fired * whole
    return count if most is None else count.clip(0, most)


def lower_bound(potential, floor):
    """``max(potential, floor)``: a potential held at its lower bound (Sinabs' ``min_v_mem``,
    ``relu(v - min_v_mem) + min_v_mem``); ``floor`` ``None``: unchanged."""
    return potential if floor is None else potential.clip(floor, None)


def reset(potential, fired, mode: str, *, v_reset=0, threshold=0):
    """The potential after a step's spikes ``fired`` under ``mode``: ``fired`` is boolean, or a
    spike count (:func:`spike_count`) for ``subtract_threshold``, which then subtracts
    ``fired * threshold``."""
    if mode == TO_V_RESET:
        kept = potential * (~fired)
        return kept if isinstance(v_reset, int) and v_reset == 0 else kept + v_reset * fired
    if mode == SUBTRACT:
        return potential - threshold * fired
    if mode == NO_RESET:
        return potential
    raise ValueError(f"unknown reset {mode!r}; known: {list(RESETS)}")
