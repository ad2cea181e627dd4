"""Layers matched to cores that differ in memory, as Sinabs' ``get_valid_mapping`` does (Speck /
DYNAP-CNN; profile ``core.synapse_encoding.core_kernel_entries`` / ``core_neuron_entries``).

Transcribed from synsense/sinabs 3.1.3 ``sinabs/backend/dynapcnn/mapping.py`` (profile source
S33), so the verdict and the core of every layer are Sinabs':

* ``find_chip_layers``: a layer may go to core ``j`` when **both** its kernel entries
  ``<= kernel_j`` and its neuron entries ``<= neuron_j`` (``LayerConstraints.fits``; the bias
  memory, 1,024 entries per core, holds any layer of at most 1,024 channels).
* ``make_flow_graph``: source -> each layer (capacity 1) -> each allowed core (1) -> sink
  (1), edges added in layer order and, per layer, in core order.
* ``edmonds``: Edmonds-Karp, breadth-first augmenting paths over those edges in that order.
* ``recover_mapping``: the core whose edge carries flow; a layer without one means "No valid
  mapping found".

The residual (reverse) edges are part of the search as in Sinabs, so an augmenting path may
move an earlier layer to another core.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class _Edge:
    """``FlowGraphEdge``: from ``s`` to ``t`` with capacity ``cap`` and current ``flow``."""

    s: int
    t: int
    cap: int
    flow: int = 0
    rev: _Edge | None = None


def allowed_cores(
    need: tuple[int, int], kernel_entries: Sequence[int], neuron_entries: Sequence[int]
) -> list[int]:
    """Cores whose kernel and neuron memories both hold ``need = (kernel, neurons)``."""
    kernel, neurons = need
    return [
        core
        for core, (k_max, n_max) in enumerate(zip(kernel_entries, neuron_entries, strict=True))
        if 0 <= kernel <= k_max and 0 <= neurons <= n_max
    ]


def _link(graph: list[list[_Edge]], s: int, t: int) -> None:
    forward, backward = _Edge(s, t, 1), _Edge(t, s, 0)
    forward.rev, backward.rev = backward, forward
    graph[s].append(forward)
    graph[t].append(backward)


def _flow_graph(options: list[list[int]], cores: int) -> list[list[_Edge]]:
    """Source 0, layers ``1..L``, cores ``L+1..L+cores``, sink last (Sinabs' node order)."""
    layers = len(options)
    graph: list[list[_Edge]] = [[] for _ in range(layers + cores + 2)]
    for i in range(layers):
        _link(graph, 0, i + 1)
    for i, targets in enumerate(options):
        for core in targets:
            _link(graph, i + 1, core + layers + 1)
    sink = len(graph) - 1
    for node in range(layers + 1, sink):
        _link(graph, node, sink)
    return graph


def _edmonds_karp(graph: list[list[_Edge]], source: int, sink: int) -> None:
    """Augment along breadth-first shortest paths until none is left (in place)."""
    while True:
        queue = deque([source])
        pred_edges: list[_Edge | None] = [None] * len(graph)
        while queue:
            node = queue.popleft()
            for edge in graph[node]:
                if pred_edges[edge.t] is None and edge.t != source and edge.cap > edge.flow:
                    pred_edges[edge.t] = edge
                    queue.append(edge.t)
        if pred_edges[sink] is None:
            return
        step = pred_edges[sink]
        while step is not None:  # unit capacities: every augmenting path carries 1
            step.flow += 1
            step.rev.flow -= 1  # type: ignore[union-attr]
            step = pred_edges[step.s]


def match_cores(
    needs: Sequence[tuple[int, int]],
    kernel_entries: Sequence[int],
    neuron_entries: Sequence[int],
) -> list[int | None]:
    """Each layer's core (layer order), ``None`` for a layer the matching leaves without one
    (then Sinabs finds no valid mapping). ``needs``: ``(kernel entries, neuron entries)``."""
    options = [allowed_cores(need, kernel_entries, neuron_entries) for need in needs]
    graph = _flow_graph(options, len(kernel_entries))
    _edmonds_karp(graph, 0, len(graph) - 1)
    layers = len(options)
    out: list[int | None] = []
    for i in range(layers):
        cores = [e.t - layers - 1 for e in graph[i + 1] if e.flow == 1 and e.t > layers]
        out.append(cores[0] if cores else None)
    return out
