"""Neuron parameters in a chip's precision (torch-free).

The neuron that follows a layer shares the layer's scale: ``v_threshold = threshold_int *
scale`` and ``bias = bias_int * scale`` (both in weight LSBs). Formats without an integer decay
model keep ``tau`` in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neuroprune.chip.formats.grid import Grid
from neuroprune.chip.schema import NeuronSpec

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class NeuronParams:
    """The float parameters of the neuron node that follows a synaptic layer.

    ``tau`` is SpikingJelly's membrane time constant in time steps (``None`` for IF);
    ``decay_input`` as in ``LIFNode``; ``v_threshold`` in model units.
    """

    model: str = "LIF"
    tau: float | None = 2.0
    decay_input: bool = True
    v_threshold: float = 1.0


def threshold_to_int(v_threshold: float, scale: float, limit: int) -> tuple[int, list[str]]:
    """``threshold_int = clip(rint(v_threshold / scale), 1, limit)`` and a note when the
    threshold had to be rounded or clipped.

    A threshold of 0 LSB would fire at rest, so 1 is the floor.
    """
    raw = round(v_threshold / scale)
    value = int(min(max(raw, 1), limit))
    realised = value * scale
    notes = []
    if value != raw:
        notes.append(f"threshold {v_threshold:g} = {raw} LSB clipped to {value} (range 1..{limit})")
    elif realised != v_threshold:
        change = 100 * (realised / v_threshold - 1)
        notes.append(
            f"threshold {v_threshold:g} rounded to {value} LSB = {realised:.6g} ({change:+.3f} %)"
        )
    return value, notes


def bias_to_int(
    bias: np.ndarray | None, scale: float, low: int, high: int, what: str = "bias"
) -> tuple[np.ndarray | None, list[str]]:
    """``bias_int = clip(rint(bias / scale), low, high)`` and a note when anything clipped."""
    if bias is None:
        return None, []
    b = np.asarray(bias, dtype=np.float64)
    raw = np.rint(b / scale)
    q = np.clip(raw, low, high).astype(np.int64)
    clipped = int((q != raw).sum())
    notes = []
    if clipped:
        notes.append(f"{what}: {clipped} of {b.size} values clipped to [{low}, {high}] LSB")
    error = float(np.abs(q * scale - b).max(initial=0.0))
    if error > 0:
        notes.append(f"{what} rounded to weight LSBs (max |error| {error:.3g})")
    return q, notes


def generic_neuron_fields(
    grid: Grid,
    bias: np.ndarray | None,
    neuron: NeuronParams,
    neuron_spec: NeuronSpec | None,
) -> tuple[dict[str, Any], list[str]]:
    """Threshold and bias in weight LSBs within ``neuron.threshold_bits`` / ``bias_bits`` of the
    profile (int32 when the profile gives none); the decay is left in float (``decay_v=None``)."""
    thr_bits = neuron_spec.threshold_bits if neuron_spec else None
    bias_bits = neuron_spec.bias_bits if neuron_spec else None
    thr_limit = 2**thr_bits - 1 if thr_bits else INT32_MAX
    threshold_int, notes = threshold_to_int(neuron.v_threshold, grid.scale, thr_limit)
    bias_max = 2 ** (bias_bits - 1) - 1 if bias_bits else INT32_MAX
    bias_int, bias_notes = bias_to_int(bias, grid.scale, -bias_max - 1, bias_max)
    extra = {"bias_range": [-bias_max - 1, bias_max]} if bias is not None else {}
    if neuron.tau is not None:
        notes.append(f"leak kept as float tau={neuron.tau:g} (format has no integer decay model)")
    fields = {
        "threshold_int": threshold_int,
        "bias_int": bias_int,
        "tau": neuron.tau,
        "extra": extra,
    }
    return fields, notes + bias_notes
