"""Export and import of trained networks (layer L5): NIR and ONNX.

One extension point, :data:`EXPORTERS` (:mod:`neuroprune.export.formats`, torch-free): format
name -> :class:`ExportFormat`, whose ``export`` has one signature for every format::

    export(model, path, *, timesteps, encoding, input_shape, chip=None, progress=None) -> Path

Library entry points: :func:`export_nir`, :func:`export_onnx`, :func:`export_onnx_graph`
(a stage graph: stages + inputs), :func:`import_nir`, :func:`count_nir_nonzero`. The NIR layout and metadata are docs/conventions.md §4; the ONNX
graph is the network unrolled over T steps (:mod:`neuroprune.export.onnx_export`).
"""

from __future__ import annotations

import os

from neuroprune.core.lazy import lazy_getattr
from neuroprune.graph.read import read_network
from neuroprune.graph.stages import count_nonzero

_EXPORTS = {
    "EXPORTERS": "neuroprune.export.formats",
    "ExportFormat": "neuroprune.export.formats",
    "get_exporter": "neuroprune.export.formats",
    "build_nir_graph": "neuroprune.export.nir_export",
    "export_nir": "neuroprune.export.nir_export",
    "graph_metadata": "neuroprune.graph.files",
    "node_metadata": "neuroprune.graph.files",
    "read_graph": "neuroprune.graph.files",
    "NIR_DT": "neuroprune.graph.stages",
    "ImportedModel": "neuroprune.models.nir_model",
    "import_nir": "neuroprune.models.nir_model",
    "build_unrolled": "neuroprune.export.onnx_export",
    "build_unrolled_graph": "neuroprune.export.onnx_export",
    "export_onnx": "neuroprune.export.onnx_export",
    "export_onnx_graph": "neuroprune.export.onnx_export",
    "run_onnx": "neuroprune.export.onnx_export",
}

__all__ = sorted([*_EXPORTS, "count_nir_nonzero", "read_network"])


def count_nir_nonzero(path: str | os.PathLike) -> int:
    """Nonzero weights over all synaptic nodes of a NIR file (kernel entries, not unrolled;
    biases are not synapses)."""
    return count_nonzero(read_network(path))


__getattr__ = lazy_getattr(__name__, _EXPORTS)
