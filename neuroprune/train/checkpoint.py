"""Checkpoints: save and load a model with its optimizer state and training history."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neuroprune.core.atomic import write_through_memory
from neuroprune.core.errors import ArtifactError
from neuroprune.train.loop import Callback

CHECKPOINT_FORMAT = "neuroprune-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointCallback(Callback):
    """Save a checkpoint after every epoch (atomic), for ``--resume``.

    ``meta`` is stored as is (JSON-like values) plus ``history``: ``initial_history`` followed by
    every epoch's metrics, so a resumed run keeps the full record.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        meta: Mapping[str, Any] | None = None,
        initial_history: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.history = [dict(h) for h in initial_history]
        self.model = None
        self.optimizer = None

    def on_train_begin(self, model, optimizer, steps_per_epoch: int, epochs: int) -> None:
        self.model, self.optimizer = model, optimizer

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> Mapping[str, Any]:
        self.history.append(dict(metrics))
        meta = {**self.meta, "history": self.history}
        save_checkpoint(self.path, self.model, self.optimizer, epoch, meta)
        return {}


# --------------------------------------------------------------------------------------------
# Checkpoints


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint. ``epoch`` counts completed epochs (resume with start_epoch=epoch).

    ``module_attrs`` holds ``neuroprune_*`` attributes of child modules (e.g. weight bits),
    keyed by module name; :meth:`restore` puts them back together with the weights.
    """

    path: Path
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    epoch: int
    meta: dict[str, Any]
    module_attrs: dict[str, dict[str, Any]]

    def restore(self, model: torch.nn.Module) -> torch.nn.Module:
        """Load weights and attributes into ``model`` (built like the saved one); returns it."""
        try:
            model.load_state_dict(self.model_state)
        except (RuntimeError, KeyError) as exc:
            raise ArtifactError(
                f"checkpoint does not match the model: {str(exc).splitlines()[0]}",
                where=str(self.path),
                field="model_state",
                value=len(self.model_state),
                fix="Build the model with the same --model and options as the run that saved it.",
            ) from exc
        modules = dict(model.named_modules())
        for name, attrs in self.module_attrs.items():
            for attr, value in attrs.items():
                if name in modules:
                    setattr(modules[name], attr, value)
        return model


def _module_attrs(model: torch.nn.Module) -> dict[str, dict[str, Any]]:
    out = {}
    for name, module in model.named_modules():
        attrs = {k: v for k, v in vars(module).items() if k.startswith("neuroprune_")}
        if attrs:
            out[name] = _plain(attrs)
    return out


def _plain(obj: Any) -> Any:
    """JSON round trip: plain dict/list/str/number values (safe for ``weights_only`` loading)."""

    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return json.loads(json.dumps(obj, default=default))


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int = 0,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write ``{model state, optimizer state, epoch, meta}`` with ``torch.save``.

    ``meta`` must be JSON-like (numpy values are converted); ``epoch`` = completed epochs.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": int(epoch),
        "meta": _plain(dict(meta or {})),
        "module_attrs": _module_attrs(model),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
    }
    # through memory: torch.save's short write under a file-size limit is not an OSError
    return write_through_memory(path, lambda buffer: torch.save(payload, buffer))


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on CPU).

    Raises :class:`ArtifactError` naming the file when it is missing, corrupt or truncated, or
    not a neuroprune checkpoint. Loading uses ``weights_only=True`` (no code execution).
    """
    path = Path(path)
    fix = "Delete it and rerun the stage that writes it (without --resume)."
    if not path.is_file():
        raise ArtifactError(
            "checkpoint not found",
            where=str(path),
            field="file",
            value=str(path),
            fix="Check the run directory, or rerun without --resume.",
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"checkpoint cannot be read: corrupt, truncated or not a torch file "
            f"({type(exc).__name__})",
            where=str(path),
            field="size_bytes",
            value=path.stat().st_size,
            fix=fix,
        ) from exc
    if (
        not isinstance(payload, dict)
        or payload.get("format") != CHECKPOINT_FORMAT
        or not isinstance(payload.get("model_state"), dict)
    ):
        raise ArtifactError(
            "not a neuroprune checkpoint",
            where=str(path),
            field="format",
            value=_format_of(payload),
            fix=fix,
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ArtifactError(
            "unsupported checkpoint version",
            where=str(path),
            field="version",
            value=payload.get("version"),
            fix=fix,
        )
    return Checkpoint(
        path=path,
        model_state=payload["model_state"],
        optimizer_state=payload.get("optimizer_state"),
        epoch=int(payload["epoch"]),
        meta=dict(payload.get("meta") or {}),
        module_attrs=dict(payload.get("module_attrs") or {}),
    )


def _format_of(payload: Any) -> str:
    return payload.get("format", "missing") if isinstance(payload, dict) else type(payload).__name__
