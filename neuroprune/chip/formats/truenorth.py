"""IBM TrueNorth: per-neuron axon-type weights with input-axon duplication.

A TrueNorth synapse is one crossbar bit; its value is the target neuron's signed integer
weight ``s_i[G]`` for the input axon's *type* ``G`` (``axon_types`` = 4 per core,
``type_weight_bits`` = 9 signed per neuron). An input sent to ``d`` axons of different types
gives neuron ``i`` the weight ``sum of s_i[G]`` over the copies whose crossbar bit it sets:
any subset sum of its ``d`` type weights. The integer ``weight_int[i, j]`` the simulators and
the chip-arithmetic neuron use is that sum (:mod:`neuroprune.chip.arithmetic.truenorth`);
:func:`crossbar_bits` recovers the bits.

Mappings (``weights.params.mapping``):

* ``type_levels`` (default): per layer, as many copies as the core's axons allow. Where the
  layer's used inputs times 4 fit ``axons_per_core`` (a dense layer then fits any split of
  its neurons over cores; for a conv layer see below), each input goes to all 4 types and neuron ``i`` has the type weights
  ``(A_i, 2 A_i, 4 A_i, -7 A_i)``, whose subset sums are ``k A_i`` for every ``k`` in
  ``-7..7`` (15 levels, ``7 A_i <= 255``); ``A_i`` is the MSE-optimal step of the neuron's
  nonzero weights (Lloyd on the uniform grid). Elsewhere each input goes to 2 axons of types 0
  and 1 and neuron ``i`` has ``(P_i, -N_i)``: levels ``{-N_i, P_i - N_i, 0, P_i}``, a
  magnitude per sign (``P_i``, ``N_i``: Lloyd magnitudes of the positive and the negative
  weights, up to 255). ``axon_duplication`` (4 or 2) is counted by the fit check. "The
  layer's used inputs" of a conv layer are its used kernel positions ``(c, dy, dx)``: one
  output position's field with every channel on the core. Where both mappings fit,
  :func:`neuroprune.quantize.quantize_model` chooses per layer on validation
  (:meth:`TrueNorthQuantizer.grid_options`, :mod:`neuroprune.quantize.mapping`).
* ``ternary_duplicate`` (the previous mapping): 2 copies, ``{-A_i, 0, +A_i}``.

The layer scale maps the largest per-neuron level onto the largest integer it may take;
weights snap to the nearest level of their neuron (small weights can become 0, counted as
pruned).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from neuroprune.chip.formats.base import Quantizer, register_quantizer
from neuroprune.chip.formats.grid import Grid, uniform_max_scale
from neuroprune.chip.formats.neuron import NeuronParams, generic_neuron_fields
from neuroprune.chip.formats.params import param_choice, param_int
from neuroprune.chip.schema import NeuronSpec, WeightFormat

LLOYD_ITERATIONS = 20
TYPE_LEVELS = "type_levels"
TERNARY = "ternary_duplicate"
MULTILEVEL_BASIS = (1, 2, 4, -7)  # type weights / A_i with 4 copies: subset sums -7..7
MULTILEVEL_MAX = 7


@dataclass(frozen=True)
class TrueNorthParams:
    """``type_max``: largest |type weight|; ``axon_types``: types per core; ``mapping``;
    ``axons``: input axons per core."""

    axon_types: int
    type_max: int
    mapping: str = TYPE_LEVELS
    axons: int = 256


@register_quantizer("truenorth")
class TrueNorthQuantizer(Quantizer):
    """Per-neuron type weights with duplicated input axons (module docstring)."""

    def read_params(self, fmt: WeightFormat, where: str) -> TrueNorthParams:
        types = param_int(fmt, "axon_types", where, minimum=2)
        bits = param_int(fmt, "type_weight_bits", where, minimum=2)
        mapping = param_choice(fmt, "mapping", where, (TYPE_LEVELS, TERNARY))
        axons = param_int(fmt, "axons_per_core", where, minimum=1, default=256)
        return TrueNorthParams(
            axon_types=types, type_max=2 ** (bits - 1) - 1, mapping=mapping, axons=axons
        )

    def choose_grid(self, weight: np.ndarray, params: TrueNorthParams):
        """The finest mapping that fits: 4 axons per input where they fit, else 2 (module
        docstring); :meth:`grid_options` lists both where both fit."""
        rows = weight.reshape(weight.shape[0], -1)
        if params.mapping == TERNARY:
            return self._ternary(rows, params)
        field = four_axon_field(rows, params)
        if field is None:
            return self._two_axons(rows, params)
        return self._four_axons(rows, params, field, conv=weight.ndim == 4)

    def grid_options(self, weight: np.ndarray, params: TrueNorthParams):
        """Every mapping that fits, finest first: ``[4 axons, 2 axons]`` where the field of
        one output neuron's position times 4 fits ``axons_per_core``, else ``[2 axons]``.

        The field: a dense layer's used inputs (``any(W[:, j] != 0)``); a conv layer's used
        kernel positions ``(c, dy, dx)`` over all output channels, i.e. the inputs of one output
        position with every channel on one core (the axons of a core are the union of its
        neurons' fields)."""
        first = self.choose_grid(weight, params)
        if not self.option_names(weight, params):
            return [first]
        return [first, self._two_axons(weight.reshape(weight.shape[0], -1), params)]

    def option_names(self, weight: np.ndarray, params: TrueNorthParams) -> tuple[str, ...]:
        """``("4x", "2x")`` where both mappings fit, else ``()`` (:meth:`grid_options`)."""
        if params.mapping == TERNARY:
            return ()
        field = four_axon_field(weight.reshape(weight.shape[0], -1), params)
        return () if field is None else ("4x", "2x")

    def finest_input_copies(self, params: TrueNorthParams) -> int | None:
        """4 (one axon of each type: 15 levels ``k A_i``) where the core has 4 axon types and
        the mapping is ``type_levels``; None for ``ternary_duplicate`` (2 copies only)."""
        if params.mapping == TERNARY or params.axon_types < len(MULTILEVEL_BASIS):
            return None
        return len(MULTILEVEL_BASIS)

    def _four_axons(self, rows: np.ndarray, params: TrueNorthParams, field: int, *, conv: bool):
        steps = multilevel_steps(rows, MULTILEVEL_MAX)
        step_max = params.type_max // MULTILEVEL_MAX
        scale = uniform_max_scale(steps, step_max)
        grid = multilevel_grid(steps, Grid(scale=scale, int_min=0, int_max=0), step_max)
        what = "used kernel positions (c, dy, dx) of one output position" if conv else "inputs"
        notes = [
            f"4 axons per input (types 0-3, {field} {what} x 4 <= {params.axons} "
            "axons): neuron type weights (A, 2A, 4A, -7A), weights k A_i with k in -7..7",
        ]
        extra = {"axon_duplication": 4, "distinct_values_per_neuron": 14, "mapping": "4x"}
        return grid, extra, notes

    def _two_axons(self, rows: np.ndarray, params: TrueNorthParams):
        positive = ternary_magnitudes(np.where(rows > 0, rows, 0.0))
        negative = ternary_magnitudes(np.where(rows < 0, -rows, 0.0))
        scale = uniform_max_scale(np.maximum(positive, negative), params.type_max)
        grid = Grid(scale=scale, int_min=-params.type_max, int_max=params.type_max)
        grid = signed_pair_grid(positive, negative, grid)
        notes = [
            "2 axons per input (types 0 and 1): neuron type weights (P_i, -N_i), weights in "
            "{-N_i, P_i - N_i, 0, P_i} (axon_duplication=2: fan-in axons double)",
            "weights nearer 0 than any level become 0 (counted as pruned)",
        ]
        extra = {"axon_duplication": 2, "distinct_values_per_neuron": 3, "mapping": "2x"}
        return grid, extra, notes

    def _ternary(self, rows: np.ndarray, params: TrueNorthParams):
        magnitudes = ternary_magnitudes(np.abs(rows))
        scale = uniform_max_scale(magnitudes, params.type_max)
        grid = Grid(scale=scale, int_min=-params.type_max, int_max=params.type_max)
        grid = ternary_grid(magnitudes, grid)
        extra = {"axon_duplication": 2, "distinct_values_per_neuron": 2, "mapping": "ternary"}
        notes = [
            "ternary mapping: weight_int in {-A_i, 0, +A_i} per neuron, each input duplicated "
            "onto a positive-type and a negative-type axon (axon_duplication=2: fan-in axons "
            f"double); uses 2 of the {params.axon_types} axon types",
            "weights below half their neuron's level become 0 (counted as pruned)",
        ]
        return grid, extra, notes

    def neuron_fields(
        self,
        grid: Grid,
        bias: np.ndarray | None,
        neuron: NeuronParams,
        params: TrueNorthParams,
        neuron_spec: NeuronSpec | None,
    ):
        """The generic threshold and bias; a LIF's tau says how TrueNorth's linear leak
        stands in for it (:mod:`neuroprune.chip.arithmetic.truenorth`)."""
        fields, notes = generic_neuron_fields(grid, bias, neuron, neuron_spec)
        if neuron.tau is not None:
            notes = [n for n in notes if not n.startswith("leak kept as float")]
            notes.append(
                f"LIF tau={neuron.tau:g} runs as TrueNorth's linear leak toward zero, "
                "alpha / (2 tau) per tick"
                + (", alpha = threshold x tau" if neuron.decay_input else "")
                + " (truenorth arithmetic)"
            )
        return fields, notes

    def refit_grid(self, weight: np.ndarray, grid: Grid, params: TrueNorthParams) -> Grid:
        """New per-neuron levels for fine-tuned weights (scale and integer range kept)."""
        rows = np.abs(weight.reshape(weight.shape[0], -1))
        levels = np.asarray(grid.levels)
        if levels.shape[-1] == 2 * MULTILEVEL_MAX + 1:
            signed = weight.reshape(weight.shape[0], -1)
            steps = multilevel_steps(signed, MULTILEVEL_MAX)
            return multilevel_grid(steps, grid, params.type_max // MULTILEVEL_MAX)
        if levels.shape[-1] == 4:
            signed = weight.reshape(weight.shape[0], -1)
            positive = ternary_magnitudes(np.where(signed > 0, signed, 0.0))
            negative = ternary_magnitudes(np.where(signed < 0, -signed, 0.0))
            return signed_pair_grid(positive, negative, grid, params.type_max)
        return ternary_grid(ternary_magnitudes(rows), grid)


def four_axon_field(rows: np.ndarray, params: TrueNorthParams) -> int | None:
    """The field of one output position (``rows``: weight as ``(out, fan-in)``; used
    columns) where 4 copies of it fit ``params.axons`` and the core has 4 axon types; else
    None."""
    field = int(np.count_nonzero(np.any(rows != 0, axis=0)))
    fits = params.axon_types >= 4 and field * 4 <= params.axons
    return field if fits else None


def multilevel_steps(rows: np.ndarray, k_max: int) -> np.ndarray:
    """Per row, the step ``a`` minimising ``sum (w - a k)**2`` over the nonzero entries with
    ``k = clip(rint(w / a), -k_max, k_max)`` (Lloyd from ``max|w| / k_max``); 0 for a zero row."""
    nonzero = rows != 0
    step = np.abs(rows).max(axis=1, initial=0.0) / k_max
    for _ in range(LLOYD_ITERATIONS):
        safe = np.where(step > 0, step, 1.0)[:, None]
        k = np.clip(np.rint(rows / safe), -k_max, k_max) * nonzero
        denominator = (k * k).sum(axis=1)
        new = np.where(denominator > 0, (rows * k).sum(axis=1) / np.maximum(denominator, 1), step)
        if np.allclose(new, step, rtol=0, atol=0):
            break
        step = new
    return step


def multilevel_grid(steps: np.ndarray, grid: Grid, step_max: int) -> Grid:
    """Levels ``k A_i`` (``k`` in -7..7) with ``A_i = clip(rint(a_i / scale), 1, step_max)``."""
    a = np.clip(np.rint(steps / grid.scale), 1, step_max).astype(np.int64)
    k = np.arange(-MULTILEVEL_MAX, MULTILEVEL_MAX + 1, dtype=np.int64)
    top = MULTILEVEL_MAX * step_max
    return replace(grid, levels=a[:, None] * k[None, :], int_min=-top, int_max=top)


def signed_pair_grid(
    positive: np.ndarray, negative: np.ndarray, grid: Grid, type_max: int | None = None
) -> Grid:
    """Levels ``{-N_i, P_i - N_i, 0, P_i}`` with ``P_i``, ``N_i`` the magnitudes in LSBs
    (``clip(rint(m / scale), 1, type_max)``)."""
    top = grid.int_max if type_max is None else type_max
    p = np.clip(np.rint(positive / grid.scale), 1, top).astype(np.int64)
    n = np.clip(np.rint(negative / grid.scale), 1, top).astype(np.int64)
    levels = np.stack([-n, p - n, np.zeros_like(p), p], axis=1)
    return replace(grid, levels=levels)


def crossbar_bits(weight_int: np.ndarray, type_weights: np.ndarray) -> np.ndarray:
    """The crossbar bits ``[out, in, d]`` that give every ``weight_int[i, j]`` as the sum of
    neuron ``i``'s type weights ``type_weights[i, :d]`` over the set bits of input ``j``'s
    ``d`` copies (the first subset found; ValueError where none sums to the weight)."""
    d = type_weights.shape[1]
    subsets = np.array([[(m >> b) & 1 for b in range(d)] for m in range(2**d)], dtype=np.int64)
    sums = type_weights @ subsets.T  # [out, 2**d]
    match = sums[:, None, :] == weight_int[:, :, None]
    if not match.any(axis=2).all():
        raise ValueError("a weight is not a subset sum of its neuron's type weights")
    return subsets[np.argmax(match, axis=2)]


def type_weights_of(levels: np.ndarray) -> np.ndarray:
    """Each neuron's type weights from its level row: ``(A, 2A, 4A, -7A)`` (15 levels),
    ``(P, -N)`` (4 levels) or ``(A, -A)`` (ternary)."""
    levels = np.asarray(levels, dtype=np.int64)
    if levels.shape[1] == 2 * MULTILEVEL_MAX + 1:
        a = levels[:, MULTILEVEL_MAX + 1]
        return a[:, None] * np.asarray(MULTILEVEL_BASIS, dtype=np.int64)[None, :]
    if levels.shape[1] == 4:
        return np.stack([levels[:, 3], levels[:, 0]], axis=1)
    return np.stack([levels[:, 2], levels[:, 0]], axis=1)


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
