"""Export a convention model to NIR (layer L5; docs/conventions.md §4).

The model becomes a stage graph (:func:`neuroprune.export.stages.model_graph`: BN folded, weights as
the model computes with them, quantized integers checked) and :mod:`neuroprune.graph` writes
them: node names, metadata, the neuron mapping and NIR's semantics (forward Euler, strict ``>``,
state from 0, shapes without the batch) all live there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from neuroprune.core.errors import ConfigError
from neuroprune.data.encoding import ENCODINGS
from neuroprune.graph.stages import NIR_DT
from neuroprune.graph.write import build_graph, check_dt, write_graph

from .stages import check_input_shape, check_timesteps, model_graph

__all__ = ["NIR_DT", "build_nir_graph", "export_nir"]


def export_nir(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    timesteps: int,
    encoding: str,
    input_shape: Sequence[int],
    chip: str | None = None,
    progress: Callable[[dict], None] | None = None,
    dt: float | None = None,
) -> Path:
    """Write ``model`` to ``path`` as a NIR graph (atomically) and return the path.

    ``input_shape`` is one sample without time and batch, e.g. ``(1, 8, 8)``; ``timesteps`` and
    ``encoding`` (``"direct"``/``"poisson"``) describe how the network is driven; ``dt`` is the
    seconds one step stands for (default ``2**-10``; snnTorch's importer assumes ``1e-4``).
    """
    graph = build_nir_graph(
        model, timesteps=timesteps, encoding=encoding, input_shape=input_shape, chip=chip, dt=dt
    )
    path = write_graph(graph, path)
    if progress is not None:
        progress(
            {"event": "exported", "format": "nir", "path": str(path), "nodes": len(graph.nodes)}
        )
    return path


def build_nir_graph(
    model: torch.nn.Module,
    *,
    timesteps: int,
    encoding: str,
    input_shape: Sequence[int],
    chip: str | None = None,
    dt: float | None = None,
):
    """The in-memory ``nir.NIRGraph`` that :func:`export_nir` writes."""
    shape = check_input_shape(input_shape)
    step = NIR_DT if dt is None else check_dt(dt)
    stages, inputs = model_graph(model, shape)
    return build_graph(
        stages,
        inputs=inputs,
        input_shape=shape,
        timesteps=check_timesteps(timesteps),
        encoding=_check_encoding(encoding),
        chip=chip,
        dt=step,
    )


def _check_encoding(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ConfigError(
            "unknown input encoding",
            where="export",
            field="encoding",
            value=encoding,
            fix=f"Use one of: {', '.join(ENCODINGS)}.",
        )
    return encoding
