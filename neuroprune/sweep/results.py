"""Sweep results: one row per trial, Pareto fronts, the files a sweep writes."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuroprune.core.atomic import write_json
from neuroprune.core.errors import ArtifactError
from neuroprune.pipeline.config import RunConfig
from neuroprune.reports.plots import pareto_plot
from neuroprune.run.rundir import RunDir, SavedFit, SavedRecord, SavedSimulation, SavedStage
from neuroprune.sweep.plan import OBJECTIVES, SweepPlan, SweepResult

# --------------------------------------------------------------------------------------------
# Rows, Pareto fronts, files

_NONE = SavedStage()  # a stage that did not run: every figure None


def deployed_validation(quant: Any) -> float | None:
    """Validation accuracy (0..1) of the deployed quantized model: the fine-tune's best when
    QAT was kept, else post-training quantization's (report.json ``quantized.qat``); None when
    the record has none. A search (Optuna) steers by this, never by the test split."""
    qat = getattr(quant, "qat", None) or {}
    value = qat.get("val_qat") if qat.get("decision") == "kept" else qat.get("val_ptq")
    return None if value is None else float(value)


def trial_row(
    name: str, config: RunConfig, record: SavedRecord | None, status: str, error: str | None
) -> dict[str, Any]:
    """One results row from a trial's record; ``accuracy`` and ``synapses`` are the deployed
    model's: the quantized one where it was measured, else the pruned one; ``val_accuracy``
    (:func:`deployed_validation`) is what a search steers by."""
    record = record or SavedRecord()
    pruned, quant = record.pruned or _NONE, record.quantized or _NONE
    fit, sim = record.fit or SavedFit(), record.simulation or SavedSimulation()
    deployed = quant if quant.accuracy is not None else pruned
    return {
        "trial": name,
        "status": status,
        "error": error,
        "chip": Path(config.chip).stem,
        "method": config.method,
        "sparsity": config.sparsity,
        "budget_requested": config.budget,
        "budget": (record.budget or _NONE).synapses,
        "synapses": deployed.synapses,
        "accuracy": deployed.accuracy,
        "val_accuracy": deployed_validation(quant),
        "dense_accuracy": (record.dense or _NONE).accuracy,
        "pruned_accuracy": pruned.accuracy,
        "quantized_accuracy": quant.accuracy,
        "cores": fit.cores,
        "chips": fit.chips,
        "fits": fit.fits,
        "energy_per_sample_j": sim.energy_per_sample_j,
        "run_dir": str(Path(config.out) / name),
    }


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points when ``x`` (cost) is minimised and ``y``
    (accuracy) maximised: no other point has ``x' <= x`` and ``y' >= y`` with one strict.
    Returned in increasing ``x``."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_by_chip(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """Per chip, the trial names on the front of accuracy against each objective."""
    out: dict[str, dict[str, list[str]]] = {}
    for chip in sorted({r["chip"] for r in rows if r.get("chip")}):
        mine = [r for r in rows if r.get("chip") == chip and r.get("accuracy") is not None]
        out[chip] = {}
        for objective, key in OBJECTIVES.items():
            usable = [r for r in mine if r.get(key) is not None]
            points = [(float(r[key]), float(r["accuracy"])) for r in usable]
            out[chip][objective] = [usable[i]["trial"] for i in pareto_front(points)]
    return out


def _write_results(plan: SweepPlan, rows, seconds: float, skipped: int) -> SweepResult:

    pareto = pareto_by_chip(rows)
    plots = tuple(
        pareto_plot(
            [r for r in rows if r.get("chip") == chip],
            pareto[chip],
            plan.sweep_dir / f"pareto-{chip}.png",
            title=f"{chip}: {plan.name}",
        )
        for chip in pareto
    )
    record = {
        "sweep": plan.name,
        "search": plan.search,
        "objective": plan.objective,
        "workers": plan.workers,
        "ray_address": plan.ray_address,
        "seconds": seconds,
        "trials": list(rows),
        "pareto": pareto,
        "plots": [p.name for p in plots],
    }
    json_path = write_json(plan.sweep_dir / SWEEP_FILE, record)
    ran = sum(r.get("status") == "done" for r in rows)
    return SweepResult(plan.sweep_dir, rows, pareto, Path(json_path), plots, seconds, ran, skipped)


def _read_report(run_dir: Path) -> SavedRecord | None:
    return RunDir(run_dir).saved_record()


SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class SavedSweep:
    """A finished sweep as ``sweep.json`` holds it: its name, one row per trial (the keys of
    :func:`trial_row`), the Pareto fronts per chip, the plots' file names."""

    name: str
    rows: list[dict[str, Any]]
    pareto: dict[str, Any]
    plots: list[str]


def is_sweep_dir(folder: Path) -> bool:
    """Whether ``folder`` holds a sweep's results (``sweep.json``)."""
    return (Path(folder) / SWEEP_FILE).is_file()


def load_sweep(folder: Path) -> SavedSweep:
    """``folder/sweep.json`` read back (one-line :class:`ArtifactError` when it is unreadable
    or not a sweep's results)."""
    path = Path(folder) / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(
            f"cannot read the sweep's results: {exc}",
            where=str(path),
            fix="Run the sweep again with --resume to rewrite it.",
        ) from exc
    trials = data.get("trials") if isinstance(data, dict) else None
    if not isinstance(trials, list) or not all(isinstance(t, dict) for t in trials):
        raise ArtifactError(
            "not a sweep's results (no list of trials)",
            where=str(path),
            field="trials",
            fix="Pass a folder written by 'neuroprune sweep'.",
        )
    return SavedSweep(
        name=str(data.get("sweep") or Path(folder).name),
        rows=trials,
        pareto=dict(data.get("pareto") or {}),
        plots=[str(p) for p in data.get("plots") or []],
    )
