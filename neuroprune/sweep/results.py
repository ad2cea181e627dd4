"""Sweep results: one row per trial, Pareto fronts, the files a sweep writes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neuroprune.core.atomic import write_json
from neuroprune.pipeline.config import RunConfig
from neuroprune.reports.plots import pareto_plot
from neuroprune.run.rundir import RunDir
from neuroprune.sweep.plan import OBJECTIVES, SweepPlan, SweepResult

# --------------------------------------------------------------------------------------------
# Rows, Pareto fronts, files


def trial_row(
    name: str, config: RunConfig, report: Mapping[str, Any] | None, status: str, error: str | None
) -> dict[str, Any]:
    """One results row from a trial's report.json (module docstring for accuracy/synapses)."""
    report = report or {}
    pruned, quant = report.get("pruned") or {}, report.get("quantized") or {}
    fit, sim = report.get("fit") or {}, report.get("simulation") or {}
    deployed = quant if quant.get("accuracy") is not None else pruned
    return {
        "trial": name,
        "status": status,
        "error": error,
        "chip": Path(config.chip).stem,
        "method": config.method,
        "sparsity": config.sparsity,
        "budget_requested": config.budget,
        "budget": (report.get("budget") or {}).get("synapses"),
        "synapses": deployed.get("synapses"),
        "accuracy": deployed.get("accuracy"),
        "dense_accuracy": (report.get("dense") or {}).get("accuracy"),
        "pruned_accuracy": pruned.get("accuracy"),
        "quantized_accuracy": quant.get("accuracy"),
        "cores": fit.get("cores"),
        "chips": fit.get("chips"),
        "fits": fit.get("fits"),
        "energy_per_sample_j": sim.get("energy_per_sample_j"),
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
    json_path = write_json(plan.sweep_dir / "sweep.json", record)
    ran = sum(r.get("status") == "done" for r in rows)
    return SweepResult(plan.sweep_dir, rows, pareto, Path(json_path), plots, seconds, ran, skipped)


def _read_report(run_dir: Path) -> dict[str, Any] | None:
    return RunDir(run_dir).saved_report()
