"""Multi-chip partition: where layers live and the spikes that cross chip boundaries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neuroprune.core.summary import NetworkSummary
from neuroprune.fit.report import Packing

# --------------------------------------------------------------------------------------------
# Multi-chip partition: where layers live and the spikes that cross chip boundaries


def chip_traffic(
    summary: NetworkSummary, packing: Packing, spikes_per_sample: Sequence[np.ndarray]
) -> dict:
    """Layer -> chips, cores per chip, and spikes per sample crossing chip boundaries.

    ``spikes_per_sample[k]``: mean spike count per sample of each neuron of layer ``k`` (from a
    simulation). A spike of source neuron ``j`` (on chip ``c_j``) is sent once to every other
    chip that holds a target of ``j`` in the reading layer:

        crossing = sum_j r_j * |chips(targets of j) - {c_j}|   (spikes / sample)

    The sources of a layer are the layer before it, or its ``sources`` (the layers whose spikes
    a residual ADD sums, one block of input columns each). Links ``"a->b"`` sum the same spikes
    per ordered chip pair. Spikes into the first layer come from off-chip and are not counted.
    """
    chip_of = {}
    for layer in summary.layers:
        owner = packing.core_of_neuron(layer)
        chip_of[layer.name] = np.where(owner >= 0, owner // packing.cores_per_chip, -1)
    index = {layer.name: k for k, layer in enumerate(summary.layers)}
    per_layer: dict[str, float] = {}
    links: dict[str, float] = {}
    skipped: list[str] = []
    for k, layer in enumerate(summary.layers):
        blocks = _source_blocks(summary, k)
        if not blocks:
            continue
        if sum(summary.layers[index[name]].neurons for name in blocks) != layer.inputs:
            skipped.append(layer.name)  # columns that are not the sources' neurons
            continue
        csc, offset, total = layer.connectivity.tocsc(), 0, 0.0
        for name in blocks:
            rates = np.asarray(spikes_per_sample[index[name]], dtype=np.float64)
            homes = chip_of[name]
            for j in range(len(rates)):
                rows = csc.indices[csc.indptr[offset + j] : csc.indptr[offset + j + 1]]
                home = int(homes[j])
                for chip in {int(c) for c in chip_of[layer.name][rows]} - {home}:
                    key = f"{home}->{chip}"
                    links[key] = links.get(key, 0.0) + float(rates[j])
                    total += float(rates[j])
            offset += len(rates)
        per_layer[layer.name] = round(total, 6)
    return {
        "chips_used": packing.chips_used,
        "layer_chips": packing.chip_map(),
        "cores_per_chip": {str(k): v for k, v in packing.cores_per_chip_used().items()},
        "inter_chip_spikes_per_sample": round(sum(per_layer.values()), 6),
        "per_layer": per_layer,
        "links": {k: round(v, 6) for k, v in sorted(links.items())},
        "not_counted": skipped,
    }


def _source_blocks(summary: NetworkSummary, k: int) -> tuple[str, ...]:
    """The layers whose neurons are layer ``k``'s input columns, block after block (``()``:
    the network input)."""
    layer = summary.layers[k]
    if layer.sources:
        return tuple(layer.sources)
    return (summary.layers[k - 1].name,) if k > 0 else ()
