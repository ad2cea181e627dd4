"""DYNAP-SE / DYNAP-SE2: connection bits selecting a few analog weights shared by a core.

A synapse is a CAM entry (a connection); its efficacy is an analog bias shared by every neuron
of the core. ``shared_values_per_core`` (k) values exist per core; neuroprune uses one set per
layer (a layer spread over several cores programs the same values on each; two layers sharing
a core would have to share them too).

* ``connection_bits == 1`` (DYNAP-SE1): a synapse picks one of the k synapse types, half
  excitatory and half inhibitory (fast/slow AMPA, fast/slow GABA). The k values are a 1-D
  k-means (Lloyd) of the layer's nonzero weights, ``k/2`` per sign (all k for a one-signed
  layer). Levels: ``{0} | values``.
* ``connection_bits == 1`` with ``cam_slots_per_neuron: S`` (DYNAP-SE1 with integer weights):
  "integer weights require repeating the same connection in several CAM slots", so a weight
  of ``m`` units of type ``t`` is ``m * v_t`` and takes ``m`` of the neuron's ``S`` CAM slots.
  A neuron (a kernel row on a conv) with ``n_i`` kept synapses may use ``m <= M_i =
  max(1, floor(S / n_i))`` on each, so its slots ``sum m <= S`` whatever the weights; its
  levels are ``{0} | {m * v_t : t of the weight's sign, 1 <= m <= M_i}`` (one table per
  neuron) and a kept weight takes its nearest nonzero level (``Grid.keep_nonzero``: the
  budget survives). The type values minimise the squared error over ``(t, m)`` assignments
  (Lloyd-style: assign each weight its best ``(t, m)``, then ``v_t = sum(w m) / sum(m^2)``
  over the weights of ``t``), started from the k-means values. ``cam_entries`` counts the
  slots a stored weight takes (the smallest ``m`` over the types that divide it), for the fit.
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
    """``cam_slots``: CAM slots per neuron a weight may repeat its connection in (None: one
    slot per synapse, no repeats)."""

    shared_values: int
    connection_bits: int
    level_max: int
    cam_slots: int | None = None


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
        slots = None
        if fmt.params.get("cam_slots_per_neuron") is not None:
            slots = param_int(fmt, "cam_slots_per_neuron", where, minimum=1)
        return DynapseParams(shared, conn, 2 ** (level_bits - 1) - 1, slots)

    def choose_grid(self, weight: np.ndarray, params: DynapseParams):
        if params.connection_bits > 1:
            return _mask_grid(weight, params)
        if params.cam_slots is not None:
            return _repeated_entry_grid(weight, params)
        return _shared_value_grid(weight, params)

    def refit_grid(self, weight: np.ndarray, grid: Grid, params: DynapseParams) -> Grid:
        """New shared values (k-means of the fine-tuned weights) on the same scale; with CAM
        repeats, new type values for the same per-neuron repeat caps."""
        if grid.levels is None:
            return grid
        if grid.units is not None and params.cam_slots is not None:
            caps = repeat_caps(weight, params.cam_slots)
            values = repeated_type_values(weight, caps, params.shared_values)
            return repeated_entry_grid(values, caps, grid, params.level_max)
        return shared_value_grid(shared_values(weight[weight != 0], params.shared_values), grid)

    def grid_facts(self, grid: Grid, weight_int: np.ndarray) -> dict:
        """With CAM repeats: the synapse types' integer values and the most CAM slots a neuron
        (a kernel row) uses."""
        if grid.units is None:
            return {}
        entries = cam_entries(weight_int, grid.units)
        per_row = entries.reshape(entries.shape[0], -1).sum(axis=1)
        return {
            "cam_types_int": [int(u) for u in grid.units],
            "cam_slots_max": int(per_row.max(initial=0)),
        }


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
        "analog biases: device mismatch (~20 %) is not modelled; integer weights need "
        "weights.params.cam_slots_per_neuron (repeated CAM entries)",
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


def _repeated_entry_grid(weight: np.ndarray, params: DynapseParams):
    slots = cast(int, params.cam_slots)
    caps = repeat_caps(weight, slots)
    values = repeated_type_values(weight, caps, params.shared_values)
    scale = uniform_max_scale(values, params.level_max)
    bound = slots * params.level_max
    grid = Grid(scale=scale, int_min=-bound, int_max=bound)
    grid = repeated_entry_grid(values, caps, grid, params.level_max)
    notes = [
        f"{len(values)} synapse types per layer (core-wide analog values, at most "
        f"{params.shared_values}, split by sign) on a {params.level_max.bit_length() + 1}-bit "
        f"integer grid; a weight of m units repeats its connection in m of the neuron's {slots} "
        f"CAM slots (m <= floor({slots} / fan-in) per neuron, at most {int(caps.max())}); a kept "
        "weight keeps at least one slot",
        "analog biases: device mismatch (~20 %) is not modelled",
    ]
    return grid, {"shared_values": params.shared_values, "cam_slots": slots}, notes


def repeat_caps(weight: np.ndarray, slots: int) -> np.ndarray:
    """Most repeats ``M_i = max(1, floor(slots / n_i))`` per neuron (row of ``weight [out,
    ...]``, ``n_i`` its nonzero weights): ``n_i * M_i <= slots`` whenever ``n_i <= slots``."""
    kept = np.count_nonzero(weight.reshape(weight.shape[0], -1), axis=1)
    return np.maximum(1, slots // np.maximum(kept, 1)).astype(np.int64)


def best_repeats(
    rows: np.ndarray, values: np.ndarray, caps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For every weight of ``rows [out, k]`` the type index and repeat count ``(t, m)``
    minimising ``|w - m * values[t]|`` over the types of the weight's sign (every type where
    its sign has none) and ``1 <= m <= caps[row]``; ties keep the first type."""
    signed = np.sign(values)[None, None, :]
    same = signed == np.sign(rows)[:, :, None]
    if not same.any(axis=2).all():
        same = same | ~same.any(axis=2, keepdims=True)
    ratio = rows[:, :, None] / values[None, None, :]
    m = np.clip(np.rint(ratio), 1, caps[:, None, None])
    err = np.where(same, np.abs(rows[:, :, None] - m * values[None, None, :]), np.inf)
    t = np.argmin(err, axis=2)
    return t, np.take_along_axis(m, t[:, :, None], axis=2)[:, :, 0].astype(np.int64)


def repeated_type_values(weight: np.ndarray, caps: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` signed synapse-type values for weights stored as ``m * v_t`` (module
    docstring): start at :func:`shared_values`, then alternate the best ``(t, m)`` of every
    nonzero weight (:func:`best_repeats`) with ``v_t = sum(w m) / sum(m^2)`` over the weights
    assigned to ``t`` (the least-squares value for those ``m``)."""
    rows = weight.reshape(weight.shape[0], -1)
    nonzero = rows != 0
    values = shared_values(rows[nonzero], k)
    if values.size == 0:
        return values
    for _ in range(KMEANS_ITERATIONS):
        t, m = best_repeats(rows, values, caps)
        t, m, w = t[nonzero], m[nonzero], rows[nonzero]
        new = values.copy()
        for c in range(values.size):
            member = t == c
            if member.any():
                new[c] = float((w[member] * m[member]).sum() / (m[member] ** 2).sum())
        if np.array_equal(new, values):
            break
        values = new
    return values


def repeated_entry_grid(values: np.ndarray, caps: np.ndarray, grid: Grid, level_max: int) -> Grid:
    """Per-neuron levels ``{0} | {m * u_t : 1 <= m <= caps[i]}`` with ``u_t = rint(v_t /
    scale)`` (at least 1 in magnitude, at most ``level_max``), one table per neuron padded
    with its first level; ``units`` = the ``u_t``, ``keep_nonzero`` set."""
    units = np.clip(np.rint(values / grid.scale), -level_max, level_max).astype(np.int64)
    units = np.where(units == 0, np.sign(values).astype(np.int64), units)
    units = np.unique(units[units != 0])
    tables = []
    for cap in caps:
        repeats = np.arange(1, int(cap) + 1, dtype=np.int64)
        tables.append(np.unique(np.concatenate([[0], (repeats[:, None] * units).ravel()])))
    width = max(len(t) for t in tables)
    padded = np.stack([np.concatenate([t, np.full(width - len(t), t[0])]) for t in tables])
    return replace(grid, levels=padded, units=units, keep_nonzero=True)


def cam_entries(weight_int: np.ndarray, units: np.ndarray | list[int]) -> np.ndarray:
    """CAM slots every stored weight takes: the smallest ``m`` with ``weight_int = m * u`` over
    the type units ``u`` of the same sign (1 where no unit divides it; 0 for no synapse)."""
    w = np.asarray(weight_int, dtype=np.int64)
    u = np.asarray(units, dtype=np.int64)
    ratio = np.where(
        (u[None, :] != 0) & (w.reshape(-1, 1) % np.where(u == 0, 1, u)[None, :] == 0),
        w.reshape(-1, 1) // np.where(u == 0, 1, u)[None, :],
        0,
    )
    ratio = np.where(ratio > 0, ratio, np.iinfo(np.int64).max)
    best = ratio.min(axis=1, initial=np.iinfo(np.int64).max)
    best = np.where(best == np.iinfo(np.int64).max, 1, best)
    return np.where(w.reshape(-1) != 0, best, 0).reshape(w.shape)
