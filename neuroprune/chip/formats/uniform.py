"""Uniform sign-magnitude formats: SpiNNaker, generic ``int`` (Tianjic, ...), ``speck``,
``xylo`` (``int`` whose integers run the ``xylo_lif`` arithmetic) and BrainScaleS.

All three store ``weight_int`` in ``[-q, q]`` with one scale per layer, ``weight =
weight_int * scale``; they differ in ``q``, in how the scale is constrained and in how the sign
is stored:

* ``spinnaker``: ``q = 2**weight_bits - 1`` (16-bit unsigned magnitude; the sign is the
  receptor type, excitatory or inhibitory, so it costs no weight bit); the scale is a power of
  two per projection (ring-buffer left shift), chosen to minimise the squared error, then
  doubled until every neuron's summed excitatory and summed inhibitory integer weights fit
  one 16-bit ring-buffer word (sPyNNaker's ring buffers saturate at 0xFFFF: with the sums
  bounded, one step of spikes on every input cannot saturate them;
  :mod:`neuroprune.chip.arithmetic.spinnaker`).
* ``int``: symmetric two's complement, ``q = 2**(bits-1) - 1``; the scale is a per-layer float
  ``max|w| / q`` rounded up to 8 significant bits (so ``weight_int * scale`` is exact in
  float32 and nothing clips).
* ``speck``: 8-bit two's complement ``[-128, 127]`` (Sinabs' discrete range), the scale chosen
  as Sinabs' ``determine_discretization_scale`` chooses it (the positive end onto 127 unless
  ``|min| > max 128/127``, then the negative end onto -128), rounded *down* to 8 significant
  bits so that end lands exactly on 127 or -128 (a weight past it clips by under one LSB);
  thresholds within the 16-bit signed state (``1 <= threshold_int <= 2**15 - 1``), 8-bit
  biases. Sinabs' ``discretize`` then finds a common scale of exactly 1 and keeps the integers
  as they are (:mod:`neuroprune.chip.arithmetic.speck`).
* ``brainscales``: ``q = 2**magnitude_bits - 1`` (current-DAC code); the sign belongs to the
  synapse row (driver), so an input with both signs needs two rows and a one-signed input one
  (:func:`rows_per_input`; the capacity model counts them per input and core from the signs,
  ``row_duplication`` is the layer's worst case, 1 or 2). The scale is a per-layer float as
  for ``int``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuroprune.chip.arithmetic.speck import THRESHOLD_MAX as SPECK_THRESHOLD_MAX
from neuroprune.chip.formats.base import Quantizer, register_quantizer
from neuroprune.chip.formats.grid import (
    Grid,
    best_pow2_scale,
    dyadic_floor,
    round_uniform,
    uniform_max_scale,
)
from neuroprune.chip.formats.neuron import generic_neuron_fields, threshold_to_int
from neuroprune.chip.formats.params import param_choice, param_int
from neuroprune.chip.schema import WeightFormat


@dataclass(frozen=True)
class UniformParams:
    """``magnitude_max``: largest |weight_int|."""

    magnitude_max: int


@register_quantizer("spinnaker")
class SpinnakerQuantizer(Quantizer):
    """16-bit magnitude, sign by receptor type, power-of-two scale per projection."""

    def read_params(self, fmt: WeightFormat, where: str) -> UniformParams:
        bits = param_int(fmt, "weight_bits", where, minimum=1)
        param_choice(fmt, "scale", where, ("pow2_per_projection",))
        param_choice(fmt, "sign", where, ("per_receptor",))
        return UniformParams(magnitude_max=2**bits - 1)

    def choose_grid(self, weight: np.ndarray, params: UniformParams):
        q = params.magnitude_max
        scale = best_pow2_scale(weight, -q, q)
        doublings = 0
        while _largest_receptor_sum(weight, scale, q) > q:
            scale, doublings = scale * 2.0, doublings + 1
        grid = Grid(scale=scale, int_min=-q, int_max=q)
        notes = [
            f"|weight_int| <= {q}; sign = receptor type (excitatory/inhibitory), "
            "scale = one power of two per projection",
        ]
        if doublings:
            notes.append(
                f"scale doubled {doublings}x so each neuron's summed excitatory and inhibitory "
                f"weights fit a {q.bit_length()}-bit ring buffer"
            )
        return grid, {"sign": "per_receptor"}, notes

    def frozen_grid(self, weight: np.ndarray, grid: Grid, params: UniformParams):
        """Fine-tuned weights whose receptor sums outgrew 16 bits double the scale again."""
        scale, q = grid.scale, params.magnitude_max
        while _largest_receptor_sum(weight, scale, q) > q:
            scale *= 2.0
        if scale == grid.scale:
            return grid, []
        note = f"scale doubled to {scale:g} after fine-tuning so receptor sums fit the ring buffer"
        return Grid(scale=scale, int_min=-q, int_max=q), [note]


def _largest_receptor_sum(weight: np.ndarray, scale: float, q: int) -> int:
    """Largest summed positive or summed negative integer weight of one output neuron (row of
    ``weight [out, ...]``) on the grid ``scale``, ``[-q, q]`` (rounded as :func:`snap` rounds:
    a kept synapse is at least 1)."""
    ints = round_uniform(weight / scale, -q, q).reshape(weight.shape[0], -1)
    positive = np.where(ints > 0, ints, 0).sum(axis=1)
    negative = np.where(ints < 0, -ints, 0).sum(axis=1)
    return int(max(positive.max(initial=0), negative.max(initial=0)))


@register_quantizer("int")
class IntQuantizer(Quantizer):
    """Symmetric signed N-bit integers with one float scale per layer."""

    def read_params(self, fmt: WeightFormat, where: str) -> UniformParams:
        bits = param_int(fmt, "bits", where, minimum=2, default=fmt.bits)
        return UniformParams(magnitude_max=2 ** (bits - 1) - 1)

    def choose_grid(self, weight: np.ndarray, params: UniformParams):
        q = params.magnitude_max
        grid = Grid(scale=uniform_max_scale(weight, q), int_min=-q, int_max=q)
        notes = [
            f"symmetric |weight_int| <= {q}, scale = max|w|/{q} rounded up to 8 significant bits"
        ]
        return grid, {}, notes


@register_quantizer("speck")
class SpeckQuantizer(IntQuantizer):
    """Speck (DYNAP-CNN): 8-bit kernels on Sinabs' scale, thresholds in the 16-bit state."""

    def choose_grid(self, weight: np.ndarray, params: UniformParams):
        high = params.magnitude_max
        low = -high - 1
        top, bottom = (
            float(max(weight.max(initial=0.0), 0.0)),
            float(min(weight.min(initial=0.0), 0.0)),
        )
        if top == bottom == 0.0:
            return Grid(scale=1.0, int_min=low, int_max=high), {}, []
        positive_end = abs(bottom) <= top * (-low / high)  # Sinabs' choice of the end
        scale = dyadic_floor(top / high if positive_end else -bottom / -low)
        end = f"max w onto {high}" if positive_end else f"min w onto {low}"
        notes = [
            f"weight_int in [{low}, {high}], scale = Sinabs' discretize scale ({end}) rounded "
            "down to 8 significant bits: Sinabs keeps these integers as they are"
        ]
        return Grid(scale=scale, int_min=low, int_max=high), {}, notes

    def frozen_grid(self, weight: np.ndarray, grid: Grid, params: UniformParams):
        """Fine-tuned weights get Sinabs' scale again (their ends moved), so discretize still
        keeps the integers: the grid is chosen anew."""
        fresh, _, _ = self.choose_grid(weight, params)
        if fresh.scale == grid.scale:
            return grid, []
        return fresh, [f"scale re-chosen after fine-tuning ({grid.scale:g} -> {fresh.scale:g})"]

    def neuron_fields(self, grid, bias, neuron, params, neuron_spec):
        fields, notes = generic_neuron_fields(grid, bias, neuron, neuron_spec)
        threshold, more = threshold_to_int(neuron.v_threshold, grid.scale, SPECK_THRESHOLD_MAX)
        fields["threshold_int"] = threshold
        return fields, [n for n in notes if not n.startswith("threshold")] + more


@register_quantizer("xylo")
class XyloQuantizer(IntQuantizer):
    """Xylo Audio 2: int8 weights with one float scale per layer, as ``int``; a format of its
    own because its integers run the ``xylo_lif`` arithmetic (weight shift 0, thresholds in
    weight LSBs: :mod:`neuroprune.chip.arithmetic.xylo`)."""


@register_quantizer("brainscales")
class BrainScalesQuantizer(Quantizer):
    """Analog synapse: DAC magnitude code, sign per synapse row (driver)."""

    def read_params(self, fmt: WeightFormat, where: str) -> UniformParams:
        bits = param_int(fmt, "magnitude_bits", where, minimum=1)
        param_choice(fmt, "sign", where, ("per_row",), default="per_row")
        return UniformParams(magnitude_max=2**bits - 1)

    def choose_grid(self, weight: np.ndarray, params: UniformParams):
        q = params.magnitude_max
        grid = Grid(scale=uniform_max_scale(weight, q), int_min=-q, int_max=q)
        duplication = row_duplication(weight)
        rows = rows_per_input(weight)
        mixed = int(np.count_nonzero(rows == 2))
        notes = [
            f"{q.bit_length()}-bit DAC magnitude (|weight_int| <= {q}); the sign is per row, so "
            f"an input feeding both signs uses 2 rows, a one-signed input 1 ({mixed} of "
            f"{int(np.count_nonzero(rows))} inputs mixed: {int(rows.sum())} rows; the fit "
            "counts rows per input and core)",
            "analog approximation: the DAC code -> current gain varies per synapse "
            "(fixed-pattern noise, calibration) and is not modelled; scale is a toolchain unit",
        ]
        facts = {"row_duplication": duplication, "mixed_sign_inputs": mixed, "sign": "per_row"}
        return grid, facts, notes


def rows_per_input(weight: np.ndarray) -> np.ndarray:
    """Synapse rows each input (column; an input channel of a conv kernel) of a per-row-sign
    array needs: the number of signs among its weights (0, 1 or 2)."""
    columns = np.moveaxis(weight, 1, 0).reshape(weight.shape[1], -1)
    return (columns > 0).any(axis=1).astype(np.int64) + (columns < 0).any(axis=1).astype(np.int64)


def row_duplication(weight: np.ndarray) -> int:
    """Most rows any input needs (1 or 2): 2 if any input has weights of both signs (the fit
    counts rows per input, :func:`rows_per_input`, this is the layer's worst case)."""
    return 2 if bool((rows_per_input(weight) == 2).any()) else 1
