"""Integer grids and the arithmetic every quantizer shares (torch-free).

A :class:`Grid` is the set of integers one layer may store and the float value of one step.
Assigning a float weight to a grid is "nearest level" (:func:`snap`); quantization-aware
fine-tuning projects onto the same grid with the same rule, so both agree by construction.
Zeros stay zero (pruned synapses stay pruned). On a uniform grid a kept synapse never rounds to
0: a nonzero weight below half a step takes the nearest nonzero level, ``sign(w)`` (error at
most one step instead of half), so the chip stores exactly the ``B`` synapses the budget kept
(:func:`round_uniform`). A level grid (TrueNorth's per-neuron ``{-A_i, 0, A_i}``, DYNAP-SE's
shared values without CAM repeats) keeps the nearest level, 0 included: its nearest nonzero
level can be far from a small weight, so its count can fall, and the run's warnings name the
shortfall and the format (``synapses_lost``, :mod:`neuroprune.run.warnings`). A level grid with
``keep_nonzero`` (DYNAP-SE1 with repeated CAM entries) gives a nonzero weight its nearest
nonzero level, so it keeps the count as a uniform grid does.

Scales: :func:`best_pow2_scale` (Loihi, SpiNNaker) and :func:`dyadic_scale` (float scales
rounded up to 8 significant bits, so ``int * scale`` is exact in float32 for ``|int| < 2**16``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

DYADIC_MANTISSA_BITS = 8
"""Significant bits of a non-power-of-two scale: int (<= 16 bit) x scale is exact in float32."""


@dataclass(frozen=True, eq=False)
class Grid:
    """The integers one layer's weights may take, and their float unit.

    Attributes:
        scale: float value of one integer step (weight LSB), in the model's weight units.
        int_min / int_max: range of every stored integer (inclusive).
        levels: ``None`` when every integer of the range is allowed; otherwise the allowed
            integers, shape ``(k,)`` (shared by the layer) or ``(rows, k)`` (one set per output
            neuron). Always contains 0 (no synapse).
        units: the unit values (integers) every nonzero level is a whole multiple of, where a
            level ``m * u`` takes ``m`` chip entries (DYNAP-SE1: a synapse type's weight
            repeated in ``m`` CAM slots); ``None`` otherwise.
        keep_nonzero: on a level grid, a nonzero weight takes its nearest *nonzero* level (a
            kept synapse never rounds to 0); uniform grids always keep it.
    """

    scale: float
    int_min: int
    int_max: int
    levels: np.ndarray | None = None
    units: np.ndarray | None = None
    keep_nonzero: bool = False

    def row_levels(self, rows: int) -> np.ndarray | None:
        """Levels broadcast to ``(rows, k)``, or ``None`` for a uniform grid."""
        if self.levels is None:
            return None
        levels = np.asarray(self.levels, dtype=np.int64)
        return np.broadcast_to(levels, (rows, levels.shape[-1]))


def round_uniform(steps: np.ndarray, int_min: int, int_max: int) -> np.ndarray:
    """Integers of a uniform grid for weights in steps (``w / scale``), keeping every synapse:
    ``clip(rint(steps), int_min, int_max)`` (ties to even), except that a nonzero value that
    rounds to 0 takes ``clip(sign(steps), int_min, int_max)`` (its nearest nonzero level).
    Zeros stay zero. float64 in, float64 out."""
    q = np.clip(np.rint(steps), int_min, int_max)
    lifted = np.clip(np.sign(steps), int_min, int_max)
    return np.where((q == 0) & (steps != 0), lifted, q)


def snap(weight: np.ndarray, grid: Grid) -> np.ndarray:
    """Grid integer for every weight (int64); zeros stay zero.

    Uniform grid: :func:`round_uniform` (nearest integer, a kept synapse never 0). Level grid:
    the level ``l`` minimising ``|w - l*scale|`` (first such level on ties; levels hold 0;
    ``keep_nonzero``: over the nonzero levels for a nonzero weight).
    """
    w = np.asarray(weight, dtype=np.float64)
    if grid.levels is None:
        q = round_uniform(w / grid.scale, grid.int_min, grid.int_max).astype(np.int64)
    else:
        rows = w.reshape(w.shape[0], -1)
        levels = cast(np.ndarray, grid.row_levels(rows.shape[0]))  # a level grid
        dist = np.abs(rows[:, :, None] - levels[:, None, :].astype(np.float64) * grid.scale)
        if grid.keep_nonzero:  # a kept synapse takes its nearest nonzero level
            dist = np.where((levels[:, None, :] == 0) & (rows[:, :, None] != 0), np.inf, dist)
        pick = np.argmin(dist, axis=2)
        q = np.take_along_axis(levels, pick, axis=1).reshape(w.shape).astype(np.int64)
    q[w == 0] = 0
    return q


def error_stats(weight: np.ndarray, weight_int: np.ndarray, grid: Grid) -> dict[str, float]:
    """Quantization error over the nonzero float weights.

    ``clipped_fraction``: share of nonzero weights beyond the largest level of their sign (in
    their row); ``max_abs_error`` / ``mean_abs_error``: ``|w - weight_int*scale|`` in weight units.
    """
    w = np.asarray(weight, dtype=np.float64)
    nonzero = w != 0
    count = int(nonzero.sum())
    before = count
    after = int(np.count_nonzero(weight_int))
    if count == 0:
        return _stats(0.0, 0.0, 0.0, before, after)
    err = np.abs(w - weight_int.astype(np.float64) * grid.scale)[nonzero]
    top, bottom = _extreme_levels(grid, w.shape)
    clipped = ((w > top * grid.scale) | (w < bottom * grid.scale)) & nonzero
    return _stats(clipped.sum() / count, err.max(), err.mean(), before, after)


def _stats(clipped, max_err, mean_err, before, after) -> dict[str, float]:
    return {
        "clipped_fraction": float(clipped),
        "max_abs_error": float(max_err),
        "mean_abs_error": float(mean_err),
        "nonzero_before": int(before),
        "nonzero_after": int(after),
    }


def _extreme_levels(grid: Grid, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """Largest and smallest level per weight entry (broadcastable to ``shape``)."""
    if grid.levels is None:
        return np.float64(grid.int_max), np.float64(grid.int_min)
    levels = cast(np.ndarray, grid.row_levels(shape[0])).astype(np.float64)  # a level grid
    expand = (shape[0],) + (1,) * (len(shape) - 1)
    return levels.max(axis=1).reshape(expand), levels.min(axis=1).reshape(expand)


def signed_width(int_min: int, int_max: int) -> int:
    """Bits of a two's-complement integer holding ``[int_min, int_max]`` (sign included)."""
    magnitude = max(abs(int(int_min)), abs(int(int_max)), 1)
    return magnitude.bit_length() + 1


def pow2_exponent(scale: float) -> int | None:
    """``k`` when ``scale == 2**k`` exactly, else ``None``."""
    mantissa, exponent = math.frexp(scale)
    return exponent - 1 if mantissa == 0.5 else None


def pow2_ceil_exponent(value: float) -> int:
    """Smallest ``k`` with ``2**k >= value`` (value > 0)."""
    mantissa, exponent = math.frexp(value)
    return exponent - 1 if mantissa == 0.5 else exponent


def best_pow2_scale(weight: np.ndarray, int_min: int, int_max: int) -> float:
    """Power-of-two scale ``2**k`` minimising the mean squared error over nonzero weights.

    Candidates: ``k0`` (the smallest exponent with ``max|w| <= int_max * 2**k0``, no clipping)
    and ``k0 - 1`` (twice the resolution, clips the largest weights). Ties keep ``k0``.
    """
    nonzero = weight[weight != 0]
    if nonzero.size == 0:
        return 1.0
    k0 = pow2_ceil_exponent(float(np.abs(nonzero).max()) / int_max)
    best, best_err = math.ldexp(1.0, k0), math.inf
    for k in (k0, k0 - 1):
        scale = math.ldexp(1.0, k)
        grid = Grid(scale, int_min, int_max)
        err = float(np.mean((snap(nonzero, grid) * scale - nonzero) ** 2))
        if err < best_err:
            best, best_err = scale, err
    return best


def dyadic_scale(value: float, mantissa_bits: int = DYADIC_MANTISSA_BITS) -> float:
    """Smallest float >= ``value`` with at most ``mantissa_bits`` significant bits.

    Keeps ``int * scale`` exact in float32 for ``|int| < 2**(24 - mantissa_bits)``; the scale
    grows by at most a factor ``1 + 2**(1 - mantissa_bits)`` (0.8 % for 8 bits).
    """
    if value <= 0:
        return 1.0
    mantissa, exponent = math.frexp(value)
    steps = math.ceil(mantissa * 2**mantissa_bits)
    return math.ldexp(steps, exponent - mantissa_bits)


def dyadic_floor(value: float, mantissa_bits: int = DYADIC_MANTISSA_BITS) -> float:
    """Largest float <= ``value`` (> 0) with at most ``mantissa_bits`` significant bits (the
    floor twin of :func:`dyadic_scale`: ``value / scale`` is then at least what it aimed at)."""
    mantissa, exponent = math.frexp(value)
    steps = math.floor(mantissa * 2**mantissa_bits)
    return math.ldexp(steps, exponent - mantissa_bits)


def uniform_max_scale(weight: np.ndarray, int_max: int) -> float:
    """Dyadic scale that maps ``max|w|`` onto ``int_max`` (no clipping); 1.0 for all-zero."""
    peak = float(np.abs(weight).max(initial=0.0))
    return dyadic_scale(peak / int_max) if peak > 0 else 1.0
