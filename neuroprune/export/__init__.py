"""Export and import of trained networks (layer L5): NIR and ONNX.

One extension point, :data:`EXPORTERS`: format name -> :class:`ExportFormat`, whose ``export``
has one signature for every format::

    export(model, path, *, timesteps, encoding, input_shape, chip=None, progress=None) -> Path

Library entry points: :func:`export_nir`, :func:`export_onnx`, :func:`export_onnx_graph`
(a stage graph: stages + inputs), :func:`import_nir`, :func:`count_nir_nonzero`. The NIR layout and metadata are docs/conventions.md §4; the ONNX
graph is the network unrolled over T steps (:mod:`neuroprune.export.onnx_export`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from neuroprune.core.errors import ConfigError, did_you_mean
from neuroprune.export.nir_export import build_nir_graph, export_nir
from neuroprune.graph.files import graph_metadata, node_metadata, read_graph
from neuroprune.graph.read import read_network
from neuroprune.graph.stages import NIR_DT, count_nonzero

from ..models.nir_model import ImportedModel, import_nir
from .onnx_export import (
    build_unrolled,
    build_unrolled_graph,
    export_onnx,
    export_onnx_graph,
    run_onnx,
)

__all__ = [
    "EXPORTERS",
    "NIR_DT",
    "ExportFormat",
    "ImportedModel",
    "build_nir_graph",
    "build_unrolled",
    "build_unrolled_graph",
    "count_nir_nonzero",
    "export_nir",
    "export_onnx",
    "export_onnx_graph",
    "get_exporter",
    "graph_metadata",
    "import_nir",
    "node_metadata",
    "read_graph",
    "read_network",
    "run_onnx",
]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: ``name`` (CLI ``--format``), file ``suffix``, and ``export``."""

    name: str
    suffix: str
    description: str
    export: Callable[..., Path]


def _export_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    timesteps: int,
    encoding: str,
    input_shape: Sequence[int],
    chip: str | None = None,
    progress: Callable[[dict], None] | None = None,
) -> Path:
    """ONNX takes the encoded input, so ``encoding`` and ``chip`` are not stored."""
    del encoding, chip
    return export_onnx(model, path, timesteps=timesteps, input_shape=input_shape, progress=progress)


EXPORTERS: dict[str, ExportFormat] = {
    "nir": ExportFormat(
        "nir", ".nir", "NIR graph (HDF5) with dt, threshold semantics and quantization", export_nir
    ),
    "onnx": ExportFormat(
        "onnx", ".onnx", "ONNX graph unrolled over T steps: [T, B, ...] -> spikes", _export_onnx
    ),
}


def count_nir_nonzero(path: str | os.PathLike) -> int:
    """Nonzero weights over all synaptic nodes of a NIR file (kernel entries, not unrolled;
    biases are not synapses)."""

    return count_nonzero(read_network(path))


def get_exporter(name: str) -> ExportFormat:
    """The registered format ``name``; :class:`ConfigError` naming the known ones otherwise."""
    if name not in EXPORTERS:
        hint = did_you_mean(name, EXPORTERS)
        raise ConfigError(
            "unknown export format",
            where="export",
            field="format",
            value=name,
            fix=f"{hint}Use one of: {', '.join(EXPORTERS)}.",
        )
    return EXPORTERS[name]
