"""Running a sweep's trials: grid or Optuna search on Ray Tune."""

from __future__ import annotations

import time
from typing import Any

from neuroprune.core.progress import Progress, emit
from neuroprune.sweep.plan import SweepPlan, SweepResult
from neuroprune.sweep.results import _read_report, _write_results, trial_row
from neuroprune.sweep.trials import _config_of, _grid, _value_space, finished_report

# --------------------------------------------------------------------------------------------
# Running


def run_sweep(plan: SweepPlan, *, progress: Progress | None = None) -> SweepResult:
    """Run the plan's trials on Ray Tune (finished ones skipped with ``plan.resume``); write
    ``sweep.json`` and the Pareto plots; return the rows."""
    started = time.perf_counter()
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    if plan.search == "optuna":
        reports, skipped = _run_optuna(plan, progress), 0
    else:
        reports, skipped = _run_grid(plan, progress)
    rows = tuple(reports)
    return _write_results(plan, rows, time.perf_counter() - started, skipped)


def _run_grid(plan: SweepPlan, progress: Progress | None) -> tuple[list[dict[str, Any]], int]:
    done = {t.name: finished_report(t) if plan.resume else None for t in plan.trials}
    pending = [t for t in plan.trials if done[t.name] is None]
    emit(progress, stage="sweep", total=len(plan.trials), unit="trials")
    for trial in plan.trials:
        if done[trial.name] is not None:
            emit(progress, stage="sweep", advance=1, message=f"{trial.name}: finished, skipped")
    errors: dict[str, str] = {}
    if pending:
        emit(progress, stage="sweep", message=f"{len(pending)} trial(s) on Ray Tune")
        space = {"trial": _grid([t.config.as_dict() for t in pending])}
        errors = _tuner().run_trials(plan, space, len(pending), progress)
    rows = []
    for trial in plan.trials:
        report = done[trial.name]
        status = "skipped" if report is not None else "done"
        if report is None:
            report = finished_report(trial)
            status = "done" if report is not None else "failed"
        rows.append(trial_row(trial.name, trial.config, report, status, errors.get(trial.name)))
    return rows, sum(r is not None for r in done.values())


def _run_optuna(plan: SweepPlan, progress: Progress | None) -> list[dict[str, Any]]:
    from ray import tune  # deferred: imports ray

    emit(progress, stage="sweep", total=plan.samples, unit="trials")
    base = plan.trials[0].config.as_dict()
    space = {
        "base": base,
        "chip": tune.choice(list(plan.chips)),
        "method": tune.choice(list(plan.methods)),
        plan.value_key: _value_space(plan),
    }
    errors = _tuner().run_trials(plan, space, plan.samples or 1, progress)
    rows = []
    for trial_dir in sorted(p for p in plan.sweep_dir.iterdir() if (p / "config.yaml").is_file()):
        report = _read_report(trial_dir)
        config = _config_of(report.config or {}) if report is not None else None
        if config is not None:
            rows.append(trial_row(trial_dir.name, config, report, "done", None))
    rows += [{"trial": name, "status": "failed", "error": err} for name, err in errors.items()]
    return rows


def _tuner():
    from neuroprune.sweep import (
        tune as sweep_tune,  # deferred: imports ray; imports Ray (seconds): only when trials run
    )

    return sweep_tune
