"""Capacity of a chip allocation for a given network shape: the most synapses it holds."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from neuroprune.chip.capacity import (
    capacity_model,
)
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.summary import NetworkSummary
from neuroprune.fit.budget import Budget, derive_budget
from neuroprune.fit.rules import check_fit

# --------------------------------------------------------------------------------------------
# Capacity of an allocation for a given network shape

CAPACITY_RULES = ("cores", "core_memory", "core_input_axons", "chip_memory", "chip_neurons")


def thinned(
    summary: NetworkSummary, density: float, seed: int = 0, cap: int | None = None
) -> NetworkSummary:
    """A copy of ``summary`` keeping each synapse with probability ``density`` (seeded), and
    at most ``cap`` (random) synapses per neuron when ``cap`` is given (as pruning with the
    budget's fan-in cap does)."""
    rng = np.random.default_rng(seed)
    layers = []
    for layer in summary.layers:
        conn = layer.connectivity.copy()
        keep = rng.random(conn.nnz) < density
        if cap is not None:
            rows = np.repeat(np.arange(layer.neurons), np.diff(conn.indptr))
            order = np.lexsort((rng.random(conn.nnz), ~keep, rows))
            rank = np.empty(conn.nnz, dtype=np.int64)
            rank[order] = np.arange(conn.nnz) - conn.indptr[rows[order]]
            keep &= rank < cap
        conn.data = conn.data & keep
        conn.eliminate_zeros()
        layers.append(replace(layer, connectivity=conn, kernel_nonzeros=int(conn.nnz)))
    return replace(summary, layers=tuple(layers))


def allocation_capacity(
    summary: NetworkSummary,
    profile: ChipProfile,
    *,
    chips: int | None = None,
    cores: int | None = None,
    margin: float = 0.97,
) -> int | None:
    """Most synapses this network shape keeps while fitting the allocation's resources.

    Bisection on the density ``d`` of a uniformly thinned copy (:func:`thinned`, with the
    per-neuron input cap the budget will impose, :meth:`CapacityModel.neuron_input_cap`): the
    largest ``d`` whose copy breaks none of :data:`CAPACITY_RULES` under next-fit packing (a
    placement the final check can only improve on) gives ``B = margin * synapses``.
    Unlike cores x synapses-per-core, this counts block headers, word alignment and partly
    filled lists of the real layer shapes. ``None`` when even the dense network fits (the
    allocation does not bind); 0 when not even a nearly empty network fits.
    """

    cap = capacity_model(profile).neuron_input_cap()

    def fits(density: float) -> tuple[bool, int]:
        net = thinned(summary, density, cap=cap)
        report = check_fit(net, profile, chips=chips, cores=cores, strategy="next_fit")
        broken = {v.rule for v in report.violations} & set(CAPACITY_RULES)
        return not broken, net.synapses(profile.conv_weight_sharing)

    if fits(1.0)[0]:
        return None
    lo, hi, best = 0.0, 1.0, 0
    for _ in range(12):
        mid = (lo + hi) / 2
        ok, synapses = fits(mid)
        if ok:
            lo, best = mid, synapses
        else:
            hi = mid
    return int(best * margin)


# --------------------------------------------------------------------------------------------
# The budget a run asks of an allocation


@dataclass(frozen=True)
class Allocation:
    """What a run asks of the chip: ``chips`` or ``cores`` allocated (neither: one chip;
    ``cores`` wins), and the user's cap on kept synapses, ``budget`` (synapses) or
    ``sparsity`` (the fraction removed)."""

    chips: int | None = None
    cores: int | None = None
    budget: int | None = None
    sparsity: float | None = None


def dense_cores(
    summary: NetworkSummary, profile: ChipProfile, allocation: Allocation
) -> tuple[int, int]:
    """``(cores used, cores allocated)`` when the network ``summary`` (dense: every synapse
    present) is packed onto ``allocation`` (:func:`neuroprune.fit.rules.check_fit`)."""
    report = check_fit(summary, profile, chips=allocation.chips, cores=allocation.cores)
    return report.cores_used, report.cores_allocated


def allocation_budget(
    summary: NetworkSummary, profile: ChipProfile, allocation: Allocation
) -> Budget:
    """The synapse budget ``allocation`` asks of ``profile`` for the network ``summary``:
    :func:`derive_budget` with the packed capacity of the allocation
    (:func:`allocation_capacity`). Raises the budget's one-line errors when no budget can make
    the network fit."""
    capacity = allocation_capacity(summary, profile, chips=allocation.chips, cores=allocation.cores)
    return derive_budget(
        profile,
        summary,
        chips=allocation.chips,
        cores=allocation.cores,
        budget=allocation.budget,
        sparsity=allocation.sparsity,
        capacity=capacity,
    )
