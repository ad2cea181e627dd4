"""Model artifacts of a run directory (``dense.pt``, ``pruned.pt``, ``quantized.pt``).

Each holds the whole model object (so stage-specific attributes such as ``weight_int`` buffers
and ``neuroprune_quant`` dicts survive) plus a small ``meta`` dict. Writes are atomic; a file
that cannot be read gives one :class:`ArtifactError` naming it and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neuroprune.atomic import atomic_path
from neuroprune.errors import ArtifactError

MODEL_FORMAT = "neuroprune-model"
MODEL_VERSION = 1


def save_model(path: Path, model: torch.nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Atomically write ``model`` (on CPU) and ``meta`` to ``path``."""
    payload = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "model": model.cpu(),
        "meta": dict(meta or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Read a model written by :func:`save_model`; returns ``(model, meta)``.

    These are files neuroprune wrote itself, so full unpickling is used (``weights_only=False``);
    do not load model files from untrusted sources.
    """
    path = Path(path)
    fix = "Rerun the stage that writes it (neuroprune fit without --resume)."
    if not path.is_file():
        raise ArtifactError("model file not found", where=str(path), fix=fix)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ArtifactError(
            f"model file is corrupt or truncated ({type(exc).__name__})",
            where=str(path), field="size_bytes", value=path.stat().st_size, fix=fix,
        ) from exc  # fmt: skip
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ArtifactError("not a neuroprune model file", where=str(path), fix=fix)
    if not isinstance(payload.get("model"), torch.nn.Module):
        raise ArtifactError("model file holds no model", where=str(path), fix=fix)
    return payload["model"], dict(payload.get("meta") or {})
