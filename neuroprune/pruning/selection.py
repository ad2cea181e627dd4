"""The exact projection: keep the top-B synapses by score, honouring per-layer minimums,
fan-in caps and input blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neuroprune.chip.capacity import InputBlocks
from neuroprune.core.errors import BudgetError
from neuroprune.fit.budget import Budget, LayerScores, _too_small_error


def select_synapses(layers: Sequence[LayerScores], budget: Budget) -> dict[str, np.ndarray]:
    """Exact projection to ``budget.synapses``: boolean keep-mask per layer (flattened).

    Greedy over one global order (score descending, ties by lower index):
    0. where ``budget.one_sign_per_input``, in the layers of ``budget.one_sign_layers``, entries
       whose sign is not their input's chosen sign are not eligible (:func:`one_sign_mask`);
    1. entries ranked ``>= fan_in_cap`` within their group are not eligible;
    2. forced: each group's best entry where ``keep_every_group`` (its best excitatory entry
       when ``LayerScores.excitatory`` is given), then each layer's next best entries until its
       cost reaches ``budget.per_layer_min``;
    3. fill: walk the rest in order, taking every entry whose cost still fits in ``B``.
    Result: ``sum(cost[kept]) <= B``; equal to ``B`` when all costs are 1 and enough entries are
    eligible.
    """
    allowed = [block_mask(layer, budget.input_blocks.get(layer.name)) for layer in layers]
    if budget.one_sign_per_input:
        allowed = [
            ok & one_sign_mask(layer, ok) if layer.name in budget.one_sign_layers else ok
            for layer, ok in zip(layers, allowed, strict=True)
        ]
    ranks = [
        _rank_in_group(np.where(ok, np.asarray(layer.scores, np.float64), -np.inf), layer.groups)
        for layer, ok in zip(layers, allowed, strict=True)
    ]
    cap = budget.fan_in_cap
    eligible = [ok if cap is None else ok & (r < cap) for ok, r in zip(allowed, ranks, strict=True)]
    forced = [
        _forced_entries(layer, rank, ok, budget.per_layer_min.get(layer.name, 0))
        for layer, rank, ok in zip(layers, ranks, eligible, strict=True)
    ]
    used = sum(int(layer.costs[f].sum()) for layer, f in zip(layers, forced, strict=True))
    if used > budget.synapses:
        raise _too_small_error(budget, used)
    free = [ok & ~f for ok, f in zip(eligible, forced, strict=True)]
    filled = _greedy_fill(layers, free, budget.synapses - used)
    return {layer.name: f | g for layer, f, g in zip(layers, forced, filled, strict=True)}


def one_sign_mask(layer: LayerScores, allowed: np.ndarray) -> np.ndarray:
    """Entries of a dense layer whose sign is their input's: per input ``j`` (column of the
    flattened ``(neurons, inputs)`` matrix, neurons = the groups) the sign whose ``allowed``
    entries have the larger summed score (positive on a tie). All True where the layer gives
    no signs (``LayerScores.positive`` None)."""
    if layer.positive is None:
        return np.ones(len(layer.scores), dtype=bool)
    neurons = int(np.max(layer.groups)) + 1
    positive = np.asarray(layer.positive, dtype=bool).reshape(neurons, -1)
    scores = np.where(allowed, np.maximum(np.asarray(layer.scores, np.float64), 0.0), 0.0)
    scores = scores.reshape(neurons, -1)
    keep_positive = (scores * positive).sum(axis=0) >= (scores * ~positive).sum(axis=0)
    return (positive == keep_positive[None, :]).reshape(-1)


def block_mask(layer: LayerScores, blocks: InputBlocks | None) -> np.ndarray:
    """Entries a dense layer may keep under its core blocks (all True without blocks).

    A block's affinity for input ``j`` is the summed score of its neurons for ``j``.
    Disjoint blocks (``shared_inputs`` False): each input goes to one block, greedily by
    affinity (pairs in descending affinity, to the block with room for ``inputs_per_block``).
    Shared inputs: each block keeps its own ``inputs_per_block`` inputs, whatever the other
    blocks keep: those of highest affinity (ties by lower index), or, where the layer gives
    ``LayerScores.input_similarity``, the most important inputs that are not copies of inputs
    the block already has (:func:`diverse_top`). Entry ``(i, j)`` stays eligible iff input
    ``j`` belongs to neuron ``i``'s block. Entries are the flattened ``(neurons, inputs)``
    matrix.
    """
    return eligible_in_blocks(np.asarray(layer.scores, np.float64), blocks, layer.input_similarity)


def eligible_in_blocks(
    scores: np.ndarray, blocks: InputBlocks | None, similarity: np.ndarray | None = None
) -> np.ndarray:
    """:func:`block_mask` on a flat score vector of a ``(neurons, inputs)`` layer (all True
    without blocks or when the shape does not match); ``similarity``: the ``(inputs,
    inputs)`` :func:`input_similarity` of the layer for shared-input blocks (None: plain
    top affinity)."""
    n = len(scores)
    if blocks is None or n != blocks.neurons * blocks.inputs:
        return np.ones(n, dtype=bool)
    scores = np.asarray(scores, np.float64).reshape(blocks.neurons, blocks.inputs)
    block_of = np.arange(blocks.neurons) // blocks.size
    affinity = np.stack([scores[block_of == b].sum(axis=0) for b in range(blocks.blocks)])
    if blocks.shared_inputs:
        k = blocks.inputs_per_block
        if similarity is not None and similarity.shape == (blocks.inputs, blocks.inputs):
            chosen = np.stack([diverse_top(a, similarity, k) for a in affinity])
        else:
            chosen = np.zeros_like(affinity, dtype=bool)
            top = np.argsort(-affinity, axis=1, kind="stable")[:, :k]
            np.put_along_axis(chosen, top, True, axis=1)
        return chosen[block_of].reshape(-1)
    owner = np.full(blocks.inputs, -1)
    room = np.full(blocks.blocks, blocks.inputs_per_block)
    for flat in np.argsort(-affinity, axis=None, kind="stable"):
        b, j = divmod(int(flat), blocks.inputs)
        if owner[j] < 0 and room[b] > 0:
            owner[j], room[b] = b, room[b] - 1
    return (owner[None, :] == block_of[:, None]).reshape(-1)


def input_similarity(weight: np.ndarray) -> np.ndarray:
    """How alike two inputs of a dense layer drive its neurons: ``(inputs, inputs)``,

        sim_jk = |w_j . w_k| / (||w_j|| ||w_k||)     (0 where a column is all zero),

    with ``w_j`` the weight column of input ``j`` over the layer's neurons (``weight`` is
    ``(neurons, inputs)``). Inputs that carry the same signal (a pixel and its copy in an
    upsampled image, two neighbouring pixels) receive the same gradient at every neuron, so
    training makes their columns near parallel: ``sim`` near 1 says a block holding one of
    them gains little from the other."""
    w = np.asarray(weight, np.float64)
    norms = np.linalg.norm(w, axis=0)
    unit = w / np.where(norms > 0, norms, 1.0)
    return np.clip(np.abs(unit.T @ unit), 0.0, 1.0)


def diverse_top(affinity: np.ndarray, similarity: np.ndarray, k: int) -> np.ndarray:
    """``k`` inputs (bool mask) chosen greedily for importance without redundancy: each step
    takes the input of largest

        gain_j = a_j (1 - max_{m chosen} sim_jm + 1e-9)

    (``a`` the block's affinity, ``sim`` :func:`input_similarity`; ties by lower index), so
    a block keeps one copy of each signal before a second copy of any, and the plain top-k
    order where no two inputs are alike (``sim`` the identity). The ``1e-9`` orders the
    inputs left once every one resembles a chosen input fully by their affinity."""
    a = np.maximum(np.asarray(affinity, np.float64), 0.0)
    chosen = np.zeros(len(a), dtype=bool)
    closest = np.zeros(len(a))
    for _ in range(min(int(k), len(a))):
        gain = np.where(chosen, -np.inf, a * (1.0 - closest + 1e-9))
        j = int(np.argmax(gain))
        chosen[j] = True
        closest = np.maximum(closest, similarity[j])
    return chosen


def _descending(scores: np.ndarray) -> np.ndarray:
    """Indices by score descending, ties by lower index (stable)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def _rank_in_group(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Rank of each entry within its group by score descending (0 = best; ties by index)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, np.float64), groups))
    sorted_groups = np.asarray(groups)[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    lengths = np.diff(np.r_[starts, len(order)])
    rank_sorted = np.arange(len(order)) - np.repeat(starts, lengths)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = rank_sorted
    return ranks


def _forced_entries(layer: LayerScores, rank, eligible, minimum: int) -> np.ndarray:
    forced = _group_leaders(layer, rank, eligible) if layer.keep_every_group else None
    forced = np.zeros(len(rank), dtype=bool) if forced is None else forced
    short = minimum - int(layer.costs[forced].sum())
    if short <= 0:
        return forced
    order = _descending(layer.scores)
    order = order[(eligible & ~forced)[order]]
    cumulative = np.cumsum(layer.costs[order])
    take = int(np.searchsorted(cumulative, short)) + 1
    forced[order[:take]] = True
    return forced


def _group_leaders(layer: LayerScores, rank: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """One entry per group: its best excitatory eligible entry if any, else its best entry."""
    leaders = rank == 0
    if layer.excitatory is None:
        return leaders
    excitatory = np.asarray(layer.excitatory, dtype=bool) & eligible
    scores = np.where(excitatory, np.asarray(layer.scores, np.float64), -np.inf)
    best = _rank_in_group(scores, layer.groups) == 0
    has_excitatory = np.zeros(int(np.max(layer.groups)) + 1, dtype=bool)
    has_excitatory[np.asarray(layer.groups)[excitatory]] = True
    covered = has_excitatory[layer.groups]
    return np.where(covered, best & excitatory, leaders)


def _greedy_fill(layers: Sequence[LayerScores], free, room: int) -> list[np.ndarray]:
    """Walk all free entries in global score order; keep each whose cost fits in ``room``."""
    scores = np.concatenate([np.asarray(layer.scores, np.float64) for layer in layers])
    costs = np.concatenate([np.asarray(layer.costs, np.int64) for layer in layers])
    candidates = _descending(scores)
    candidates = candidates[np.concatenate(free)[candidates]]
    chosen = np.zeros(len(scores), dtype=bool)
    while room > 0 and len(candidates):
        candidates = candidates[costs[candidates] <= room]
        cumulative = np.cumsum(costs[candidates])
        take = int(np.searchsorted(cumulative, room, side="right"))
        if take == 0:
            break
        chosen[candidates[:take]] = True
        room -= int(cumulative[take - 1])
        candidates = candidates[take:]
    bounds = np.cumsum([0] + [len(layer.scores) for layer in layers])
    return [chosen[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# --------------------------------------------------------------------------------------------
# Knob calibration and control


def count_above(magnitudes: np.ndarray, costs: np.ndarray, threshold: float) -> int:
    """Predicted final synapses ``sum(cost[m > threshold])`` (STDS/LATS: ``|theta| > D``)."""
    return int(np.asarray(costs)[np.asarray(magnitudes) > threshold].sum())


def threshold_for_count(magnitudes: np.ndarray, costs: np.ndarray, target: float) -> float:
    """Smallest threshold ``D`` among the magnitudes with ``sum(cost[m > D]) <= target``.

    With unit costs and distinct magnitudes this is the ``(target+1)``-th largest magnitude,
    so exactly ``floor(target)`` entries lie above it. Returns 0.0 when everything fits.
    """
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    order = np.argsort(-magnitudes, kind="stable")
    cumulative = np.cumsum(np.asarray(costs, dtype=np.int64)[order])
    k = int(np.searchsorted(cumulative, target, side="right"))
    if k >= len(order):
        return 0.0
    return float(magnitudes[order[k]])


@dataclass(frozen=True)
class KnobControl:
    """Settings of the slow multiplicative knob controller (docs/pruning.md §6.3–6.4).

    Attributes:
        margin: aim the predicted final count at ``margin * B`` (the projection then removes
            the last few percent).
        gain: fraction of the log-error corrected per update, ``0 < gain <= 1``.
        max_ratio: largest factor the knob may change by in one update (> 1).
        freeze_after: fraction of training after which the knob stops moving.
    """

    margin: float = 1.05
    gain: float = 0.5
    max_ratio: float = 1.2
    freeze_after: float = 0.9

    def __post_init__(self) -> None:
        checks = (
            ("margin", self.margin >= 1.0),
            ("gain", 0.0 < self.gain <= 1.0),
            ("max_ratio", self.max_ratio > 1.0),
            ("freeze_after", 0.0 <= self.freeze_after <= 1.0),
        )
        for name, ok in checks:
            if not ok:
                raise BudgetError(
                    "invalid knob controller setting",
                    where="pruning.control",
                    field=name,
                    value=getattr(self, name),
                    fix="See neuroprune.pruning.selection.KnobControl.",
                )

    def target(self, budget: int) -> float:
        """Count the knob aims for: ``margin * B``."""
        return self.margin * budget
