"""Knob calibration and control: steer a method's threshold knob toward the planned count."""

from __future__ import annotations

from neuroprune.pruning.selection import KnobControl


def planned_count(dense: float, final: float, fraction: float) -> float:
    """Planned synapse count ``N * (F / N) ** g`` at schedule fraction ``g``: geometric from
    ``N`` (``g = 0``) to ``F`` (``g = 1``).

    It is the count a threshold ``d = D g`` leaves of Laplace-distributed magnitudes,
    ``N exp(-d / sigma)`` with ``F = N exp(-D / sigma)``. Units: synapses. ``fraction`` is
    clipped to [0, 1]; ``F`` above ``N`` is taken as ``N``.
    """
    if dense <= 0:
        return 0.0
    ratio = min(max(final, 1e-12), dense) / dense
    return dense * ratio ** min(max(fraction, 0.0), 1.0)


def steer_knob(knob: float, ideal: float, control: KnobControl) -> float:
    """Move ``knob`` toward ``ideal`` multiplicatively.

    ``knob' = knob * clip((ideal / knob) ** gain, 1 / max_ratio, max_ratio)``; a non-positive
    knob jumps to ``ideal``, a non-positive ideal leaves the knob where it is.
    """
    if ideal <= 0:
        return knob
    if knob <= 0:
        return ideal
    ratio = (ideal / knob) ** control.gain
    return knob * min(max(ratio, 1.0 / control.max_ratio), control.max_ratio)
