"""State shared by the pipeline's stages: the run in progress (:class:`_Run`), its outcome and
the training configuration each stage derives from the run configuration.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import (
    NeuropruneError,
)
from neuroprune.core.progress import Progress, ProgressEvent, emit
from neuroprune.pipeline.config import RunConfig
from neuroprune.pipeline.resume import changed_inputs, input_hash
from neuroprune.run.record import WarningRecord
from neuroprune.run.rundir import MODEL_FILES, RunDir, RunRecord
from neuroprune.train import distributed


@dataclass(frozen=True)
class RunOutcome:
    """What ``neuroprune fit`` returns: the run directory, report.json's content, exit code,
    and the error of a stage that failed after the run started (recorded in the report)."""

    run_dir: Path
    report: dict[str, Any]
    exit_code: int
    error: NeuropruneError | None = None


@dataclass
class _Run:
    """Mutable state of one pipeline run (internal)."""

    cfg: RunConfig
    rundir: RunDir
    profile: ChipProfile
    progress: Progress
    record: RunRecord | None = None  # report.json, filled section by section by the stages
    history: dict[str, list] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    writes: bool = True  # False on torchrun ranks > 0: only rank 0 writes the run directory
    fitted: tuple[Any, Any] | None = None  # (summary, packing) of the fit check, for traffic
    # stage -> the run its model file was taken from as it is (a derived run, quantize RUN)
    derived: dict[str, str] = field(default_factory=dict)
    taken_hashes: dict[str, Any] = field(default_factory=dict)  # their recorded inputs hash
    neurobench: Any = None  # NeuroBench's child, spawned at the start (pipeline.neurobench)
    candidate: str | None = None  # --neuron auto: the neuron this run tries (named in its events)

    @property
    def run_dir(self) -> Path:
        return self.rundir.path

    def label(self, stage: str) -> str:
        """The name ``stage``'s events carry: the stage, and the candidate tried by
        ``--neuron auto`` (``dense (if)``), so that each candidate's bars and log lines say it."""
        return stage if self.candidate is None else f"{stage} ({self.candidate})"

    def emit(self, stage: str, message: str | None = None, **event: Any) -> None:
        """Send a progress event of ``stage``; a ``message`` also goes to the run's log.txt."""
        stage = self.label(stage)
        if message is not None:
            self.log_lines.append(f"{time.strftime('%H:%M:%S')} {stage}: {message}")
            if self.writes:
                self.rundir.write_log(self.log_lines)
            event["message"] = message
        emit(self.progress, **{"stage": stage, **event})

    def warn(self, warning: WarningRecord, stage: str = "setup") -> None:
        """Say a warning now (a ``warning`` progress event; ``warning: ...`` in log.txt)."""
        self.emit(stage, f"warning: {warning.message}", warning=warning.kind)

    def reusable(self, stage: str, inputs: Mapping[str, Any]):
        """``(model, meta)`` of the stage's artifact when ``--resume`` may reuse it (made with
        the same inputs), else None; a mismatch is logged naming the options that changed."""
        found = self._matching(stage, inputs) if self.writes else None
        if not distributed.from_main(found is not None):  # rank 0 decides for every rank
            return None
        return found or self.rundir.load_model(stage)

    def _matching(self, stage: str, inputs: Mapping[str, Any]):
        if stage in self.derived and self.rundir.has_model(stage):
            model, meta = self.rundir.load_model(stage)
            self.taken_hashes[stage] = meta.get("inputs_hash")
            return model, meta
        if not self.cfg.resume or not self.rundir.has_model(stage):
            return None
        model, meta = self.rundir.load_model(stage)
        if meta.get("inputs_hash") == input_hash(inputs):
            return model, meta
        changed = ", ".join(changed_inputs(meta.get("inputs"), inputs))
        self.emit(
            stage,
            f"--resume: rerunning, {MODEL_FILES[stage]} was made with other options: {changed}",
        )
        return None

    def save_model(self, stage: str, model, inputs: Mapping[str, Any], **meta: Any) -> None:
        if not self.writes:
            return
        self.rundir.save_model(
            stage, model, {**meta, "inputs": dict(inputs), "inputs_hash": input_hash(inputs)}
        )
        self.note_stage(stage, inputs)

    def note_stage(self, stage: str, inputs: Mapping[str, Any], reused: bool = False) -> None:
        """report.json ``stages.<stage>``: the hash of the inputs its artifact was made with
        (and ``reused: true`` when ``--resume`` reused it; ``taken_from``: the run a derived
        run took it from, with the hash recorded there)."""
        entry: dict[str, Any] = {"inputs_hash": input_hash(inputs)}
        if reused:
            entry["reused"] = True
        if reused and stage in self.derived:
            entry["inputs_hash"] = self.taken_hashes.get(stage)
            entry["taken_from"] = self.derived[stage]
        self.record.stages[stage] = entry

    def mark(self, name: str) -> None:
        """Record that this run reused the run file ``name``."""
        self.rundir.mark(name)


def _noop(_: ProgressEvent) -> None:
    return None


# ------------------------------------------------------------------------------------------
# Helpers shared by commands


def with_model_defaults(cfg: RunConfig) -> RunConfig:
    """Fill ``epochs``, ``lr``, ``batch_size`` and ``timesteps`` left unset with the model's
    measured defaults (``neuroprune.train.loop.DEFAULTS``; user models get the mlp's)."""
    from neuroprune.train.loop import DEFAULTS  # deferred: imports spikingjelly, torch

    defaults = DEFAULTS.get(cfg.model, DEFAULTS["mlp"])
    unset = {
        k: defaults[k]
        for k in ("epochs", "lr", "batch_size", "timesteps")
        if getattr(cfg, k) is None and k in defaults
    }
    return cfg.replace(**unset) if unset else cfg


def train_config(cfg: RunConfig, epochs: int):
    """The :class:`TrainConfig` of a stage with ``epochs`` epochs."""
    from neuroprune.train.loop import default_config  # deferred: imports spikingjelly, torch

    cfg = with_model_defaults(cfg)
    return default_config(
        cfg.model if cfg.model in ("mlp", "conv") else "mlp",
        epochs=max(epochs, 1),
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        timesteps=cfg.timesteps,
        encoding=cfg.encoding,
        seed=cfg.seed,
        device=cfg.device,
    )


def _epoch_progress(run: _Run, stage: str, epochs: int | None = None) -> Progress:
    """Adapt training events to the renderer's bar events, one step a batch: a training's
    ``train_begin`` starts a bar of (epochs x batches per epoch) steps, unless the stage's bar
    still has steps to go (a stage that trains epoch by epoch, quantization-aware fine-tuning,
    fills one bar of ``epochs`` epochs); every ``batch`` advances it, every ``epoch`` shows
    the epoch's metrics. The CLI draws the bar with its ETA."""
    bar = {"left": 0}
    stage = run.label(stage)

    def forward(event: ProgressEvent) -> None:
        if event.event == "train_begin":
            steps = int(event.get("steps_per_epoch") or 1)
            if bar["left"] <= 0:
                planned = (
                    epochs if epochs is not None else event["epochs"] - event.get("start_epoch", 0)
                )
                bar["left"] = max(planned, 1) * steps
                emit(run.progress, stage=stage, total=bar["left"], unit="batches")
        elif event.event == "batch":
            bar["left"] -= 1
            shown = {k: event[k] for k in ("epoch", "epochs", "loss") if k in event}
            emit(run.progress, stage=stage, advance=1, **shown)
        elif event.event == "epoch":
            shown = {
                k: event[k] for k in ("epoch", "loss", "test_accuracy", "sparsity") if k in event
            }
            emit(run.progress, stage=stage, advance=0, **shown)

    return forward


def _simulation_progress(run: _Run) -> Progress:
    """Adapt a simulator's events to one bar of test samples: ``start`` (``samples``) opens it,
    every ``chunk_done`` (the Lava worker's, ``samples`` = samples finished so far, reported
    from its child process chunk by chunk) moves it, ``done`` ends it. A backend that runs in
    one piece (the numpy reference) fills the bar at its end. The CLI draws it with its ETA."""
    bar = {"at": 0, "open": False}

    def forward(event: ProgressEvent) -> None:
        if event.event == "start" and event.get("samples"):
            bar.update(at=0, open=True)
            emit(run.progress, stage="simulate", total=int(event["samples"]), unit="samples")
        elif event.event == "chunk_done" and bar["open"]:
            finished = int(event.get("samples") or bar["at"])
            emit(run.progress, stage="simulate", advance=max(finished - bar["at"], 0))
            bar["at"] = max(finished, bar["at"])
        elif event.event == "done" and bar["open"]:
            bar["open"] = False
            emit(run.progress, stage="simulate", done=True)

    return forward


def _layer_rows(summary, shared: bool) -> list[dict[str, Any]]:
    rows = []
    for layer in summary.layers:
        synapses, dense = layer.synapses(shared), layer.dense_positions(shared)
        rows.append(
            {
                "layer": layer.name,
                "kind": layer.kind,
                "neuron_model": layer.neuron_model,
                "neurons": layer.neurons,
                "synapses": synapses,
                "dense": dense,
                "sparsity": 1 - synapses / dense if dense else 0.0,
                "max_fan_in": layer.max_fan_in,
                "mean_fan_in": round(layer.mean_fan_in, 3),
            }
        )
    return rows


def _stage_record(summary, shared: bool, accuracy: float) -> dict[str, Any]:
    return {
        "accuracy": accuracy,
        "synapses": summary.synapses(shared),
        "neurons": summary.neurons,
        "max_fan_in": summary.max_fan_in,
        "layers": _layer_rows(summary, shared),
    }
