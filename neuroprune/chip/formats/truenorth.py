"""IBM TrueNorth: ternary weights with input-axon duplication (``mapping: ternary_duplicate``).

A TrueNorth synapse is one crossbar bit; its value is the target neuron's integer weight for
the input axon's *type* (``axon_types`` per core, ``type_weight_bits`` signed per neuron).
The ternary mapping gives every input two axons, a positive-type and a negative-type copy, and
every neuron ``i`` the type weights ``+A_i`` and ``-A_i``:

    weight_int[i, j] in {-A_i, 0, +A_i},   1 <= A_i <= 2**(type_weight_bits-1) - 1

so a neuron sees at most 2 distinct values (of the ``axon_types`` allowed) and each input costs
2 axons: ``axon_duplication = 2`` (the fit check must double the layer's input axons).

Per neuron, ``a_i`` minimises ``sum_j (w_ij - a_i * t_ij)**2`` over the nonzero weights with
``t = nearest of {-1, 0, 1}`` (Lloyd iteration: ``t_ij = sign(w_ij) * [|w_ij| > a_i/2]``,
``a_i = mean |w_ij|`` over ``t_ij != 0``, from ``a_i = mean |w_ij|``). The layer scale
maps ``max_i a_i`` onto the largest type weight; ``A_i = rint(a_i / scale)``. Weights are then
snapped to the nearest of ``{-A_i, 0, A_i} * scale``, so small weights become 0 (pruned).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from neuroprune.chip.formats.base import Quantizer, register_quantizer
from neuroprune.chip.formats.grid import Grid, uniform_max_scale
from neuroprune.chip.formats.params import param_choice, param_int
from neuroprune.chip.schema import WeightFormat

LLOYD_ITERATIONS = 20


@dataclass(frozen=True)
class TrueNorthParams:
    """``type_max``: largest |type weight|; ``axon_types``: types per core."""

    axon_types: int
    type_max: int


@register_quantizer("truenorth")
class TrueNorthQuantizer(Quantizer):
    """Ternary per-neuron weights ``{-A_i, 0, +A_i}`` with duplicated input axons."""

    def read_params(self, fmt: WeightFormat, where: str) -> TrueNorthParams:
        types = param_int(fmt, "axon_types", where, minimum=2)
        bits = param_int(fmt, "type_weight_bits", where, minimum=2)
        param_choice(fmt, "mapping", where, ("ternary_duplicate",))
        return TrueNorthParams(axon_types=types, type_max=2 ** (bits - 1) - 1)

    def choose_grid(self, weight: np.ndarray, params: TrueNorthParams):
        magnitudes = ternary_magnitudes(np.abs(weight.reshape(weight.shape[0], -1)))
        scale = uniform_max_scale(magnitudes, params.type_max)
        grid = Grid(scale=scale, int_min=-params.type_max, int_max=params.type_max)
        grid = ternary_grid(magnitudes, grid)
        extra = {"axon_duplication": 2, "distinct_values_per_neuron": 2, "mapping": "ternary"}
        notes = [
            "ternary mapping: weight_int in {-A_i, 0, +A_i} per neuron, each input duplicated "
            "onto a positive-type and a negative-type axon (axon_duplication=2: fan-in axons "
            f"double); uses 2 of the {params.axon_types} axon types",
            "weights below half their neuron's level become 0 (counted as pruned)",
            "TrueNorth's leak is linear per tick, not multiplicative: LIF tau is not "
            "representable exactly (IF neurons map exactly)",
        ]
        return grid, extra, notes

    def refit_grid(self, weight: np.ndarray, grid: Grid, params: TrueNorthParams) -> Grid:
        """New per-neuron magnitudes ``A_i`` for fine-tuned weights (scale kept)."""
        return ternary_grid(ternary_magnitudes(np.abs(weight.reshape(weight.shape[0], -1))), grid)


def ternary_grid(magnitudes: np.ndarray, grid: Grid) -> Grid:
    """Levels ``{-A_i, 0, A_i}`` with ``A_i = clip(rint(a_i / scale), 1, int_max)``."""
    type_weights = np.clip(np.rint(magnitudes / grid.scale), 1, grid.int_max).astype(np.int64)
    levels = np.stack([-type_weights, np.zeros_like(type_weights), type_weights], axis=1)
    return replace(grid, levels=levels)


def ternary_magnitudes(rows: np.ndarray) -> np.ndarray:
    """Per row, the level ``a`` minimising the squared error of ``{-a, 0, a}`` on the nonzero
    entries of ``rows`` (``|w|``, shape ``(n, k)``); 0 for an all-zero row."""
    nonzero = rows > 0
    count = nonzero.sum(axis=1)
    level = np.where(count > 0, rows.sum(axis=1) / np.maximum(count, 1), 0.0)
    for _ in range(LLOYD_ITERATIONS):
        keep = nonzero & (rows > level[:, None] / 2)
        kept = keep.sum(axis=1)
        new = np.where(kept > 0, (rows * keep).sum(axis=1) / np.maximum(kept, 1), level)
        if np.allclose(new, level, rtol=0, atol=0):
            break
        level = new
    return level
