"""DYNAP-SE / DYNAP-SE2: connection bits selecting a few analog weights shared by a core.

A synapse is a CAM entry (a connection); its efficacy is an analog bias shared by every neuron
of the core. ``shared_values_per_core`` (k) values exist per core; neuroprune uses one set per
layer (a layer spread over several cores programs the same values on each; two layers sharing
a core would have to share them too).

* ``connection_bits == 1`` (DYNAP-SE1): a synapse picks one of the k synapse types, half
  excitatory and half inhibitory (fast/slow AMPA, fast/slow GABA). The k values are a 1-D
  k-means (Lloyd) of the layer's nonzero weights, ``k/2`` per sign (all k for a one-signed
  layer). Levels: ``{0} | values``.
* ``connection_bits == b > 1`` (DYNAP-SE2): a ``b``-bit mask sums ``b`` base currents and the
  dendrite type gives the sign. With binary-weighted base currents ``c * 2**j`` the mask is a
  ``b``-bit magnitude code: ``weight_int in [-(2**b - 1), 2**b - 1]`` (needs ``b <= k``).

The analog values are written on an integer grid of ``level_bits`` (``weights.params.level_bits``,
default 8: the bias generator's fine code [U]) so that ``weight == weight_int * scale`` holds
exactly; device mismatch (about 20 % spread) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

import numpy as np

from neuroprune.chip.formats.base import Quantizer, register_quantizer
from neuroprune.chip.formats.grid import Grid, uniform_max_scale
from neuroprune.chip.formats.params import param_int
from neuroprune.chip.schema import WeightFormat
from neuroprune.core.errors import ProfileError

LEVEL_BITS_DEFAULT = 8
KMEANS_ITERATIONS = 30


@dataclass(frozen=True)
class DynapseParams:
    shared_values: int
    connection_bits: int
    level_max: int


@register_quantizer("dynapse")
class DynapseQuantizer(Quantizer):
    """Shared analog weights per core selected by connection bits."""

    def read_params(self, fmt: WeightFormat, where: str) -> DynapseParams:
        shared = param_int(fmt, "shared_values_per_core", where, minimum=1)
        conn = param_int(fmt, "connection_bits", where, minimum=1)
        level_bits = param_int(fmt, "level_bits", where, minimum=2, default=LEVEL_BITS_DEFAULT)
        if conn > 1 and conn > shared:
            raise ProfileError(
                "a connection mask cannot have more bits than the core has shared weights",
                where=where,
                field="weights.params.connection_bits",
                value=conn,
                fix=f"Use connection_bits 1 or <= shared_values_per_core ({shared}).",
            )
        return DynapseParams(shared, conn, 2 ** (level_bits - 1) - 1)

    def choose_grid(self, weight: np.ndarray, params: DynapseParams):
        if params.connection_bits > 1:
            return _mask_grid(weight, params)
        return _shared_value_grid(weight, params)

    def refit_grid(self, weight: np.ndarray, grid: Grid, params: DynapseParams) -> Grid:
        """New shared values (k-means of the fine-tuned weights) on the same scale."""
        if grid.levels is None:
            return grid
        return shared_value_grid(shared_values(weight[weight != 0], params.shared_values), grid)


def _mask_grid(weight: np.ndarray, params: DynapseParams):
    q = 2**params.connection_bits - 1
    grid = Grid(scale=uniform_max_scale(weight, q), int_min=-q, int_max=q)
    notes = [
        f"{params.connection_bits}-bit mask over binary-weighted base currents "
        f"(c, 2c, ...): |weight_int| <= {q}, sign from the dendrite type",
        "analog base currents: device mismatch (~20 %) is not modelled",
    ]
    return grid, {"shared_values": params.connection_bits}, notes


def _shared_value_grid(weight: np.ndarray, params: DynapseParams):
    values = shared_values(weight[weight != 0], params.shared_values)
    scale = uniform_max_scale(values, params.level_max)
    grid = Grid(scale=scale, int_min=-params.level_max, int_max=params.level_max)
    grid = shared_value_grid(values, grid)
    levels = cast(np.ndarray, grid.levels)  # shared_value_grid sets the levels
    notes = [
        f"{len(levels) - 1} shared weight values per layer (k-means, at most "
        f"{params.shared_values}, split by sign), written on a {params.level_max.bit_length() + 1}"
        "-bit integer grid; a weight nearer 0 than any value is dropped (pruned)",
        "analog biases: device mismatch (~20 %) is not modelled; integer weights would need "
        "repeated CAM entries (not used)",
    ]
    return grid, {"shared_values": params.shared_values}, notes


def shared_value_grid(values: np.ndarray, grid: Grid) -> Grid:
    """Levels ``{0} | rint(values / scale)`` clipped to the grid's integer range."""
    ints = np.clip(np.rint(values / grid.scale), grid.int_min, grid.int_max)
    return replace(grid, levels=np.unique(np.concatenate([[0], ints])).astype(np.int64))


def shared_values(nonzero: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` signed values: 1-D k-means of the weights, ``k//2`` per sign when both signs
    occur (the rest to the positive side), all ``k`` for a one-signed layer."""
    positive, negative = nonzero[nonzero > 0], nonzero[nonzero < 0]
    if positive.size and negative.size:
        k_neg = max(k // 2, 1)
        k_pos = max(k - k_neg, 1)
    else:
        k_pos = k_neg = k
    parts = [kmeans_1d(positive, k_pos), -kmeans_1d(-negative, k_neg)]
    return np.concatenate(parts) if any(p.size for p in parts) else np.zeros(0)


def kmeans_1d(values: np.ndarray, k: int) -> np.ndarray:
    """Lloyd's k-means on 1-D ``values`` started at quantiles; returns sorted unique centres."""
    if values.size == 0 or k < 1:
        return np.zeros(0)
    centres = np.unique(np.quantile(values, (np.arange(k) + 0.5) / k))
    for _ in range(KMEANS_ITERATIONS):
        assign = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
        new = np.array(
            [values[assign == c].mean() for c in range(len(centres)) if (assign == c).any()]
        )
        if new.shape == centres.shape and np.allclose(new, centres, rtol=0, atol=0):
            break
        centres = np.unique(new)
    return centres
