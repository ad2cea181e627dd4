"""``run_fit``: the run directory, the stages in order, the report."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from neuroprune import __version__
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import (
    BackendUnavailableError,
    NeuropruneError,
    SimulationError,
)
from neuroprune.pipeline.chip_stages import _stage_export, _stage_fit, _stage_simulate
from neuroprune.pipeline.config import RunConfig
from neuroprune.pipeline.context import Progress, RunOutcome, _noop, _Run
from neuroprune.pipeline.preflight import _Plan, _preflight
from neuroprune.pipeline.record import _finish_report
from neuroprune.pipeline.train_stages import _stage_dense, _stage_prune, _stage_quantize
from neuroprune.run.rundir import RECORD_VERSION, RunDir
from neuroprune.train import distributed

# ------------------------------------------------------------------------------------------
# fit


def run_fit(cfg: RunConfig, *, progress: Progress | None = None) -> RunOutcome:
    """Run every stage for ``cfg``; return the outcome (never raises for "does not fit").

    Under torchrun every rank trains (``neuroprune.train.distributed``); ranks > 0 write nothing and
    return after the last training stage, rank 0 goes on to fit, export, simulate and report.

    Every input is checked before the run directory is touched (:func:`_preflight`); then the
    run's lock is taken, files of an earlier run that this run does not reuse are removed, and
    the stages run. A simulator failure is recorded in report.json (``errors``) and returned
    in the outcome, not raised.
    """
    with distributed.process_group(cfg.device):
        plan = _preflight(cfg)
        rundir = RunDir.of(plan.cfg.out, plan.cfg.run_name)
        if not distributed.is_main():  # a torchrun worker: trains, writes nothing
            run = _Run(plan.cfg, rundir, plan.profile, progress or _noop, writes=False)
            return _run_worker_rank(run, plan)
        with rundir.lock():
            return _run_main(plan, rundir, progress)


def _run_worker_rank(run: _Run, plan: _Plan) -> RunOutcome:
    run.report = _empty_report(plan.cfg, plan.profile, plan.budget)
    model = _stage_dense(run, plan.model, plan.dataset)
    model = _stage_prune(run, model, plan.dataset, plan.budget)
    if _is_chain(model):
        _stage_quantize(run, model, plan.dataset)
    return RunOutcome(run.run_dir, run.report, 0)


def _is_chain(model) -> bool:
    from neuroprune.models.reader import CHAIN, model_kind  # deferred: imports torch

    return model_kind(model) == CHAIN


def _run_main(plan: _Plan, rundir: RunDir, progress: Progress | None) -> RunOutcome:
    """Rank 0 (or the only process), holding the run's lock: clean, run, record."""
    cfg = plan.cfg
    if not cfg.resume:
        rundir.remove_files(keep=set())
    _prepare_run_dir(rundir, cfg, plan.profile)
    run = _Run(cfg, rundir, plan.profile, progress or _noop)
    run.report = _empty_report(cfg, plan.profile, plan.budget)
    run.emit(
        "setup",
        f"{plan.profile.name}: budget {plan.budget.synapses:,} synapses "
        f"({plan.budget.source}); dense network {plan.dense_synapses:,} "
        f"synapses, {plan.dense_neurons:,} neurons",
    )
    exit_code, error = _run_stages(run, plan)
    _finish_report(run)
    if cfg.resume:
        rundir.remove_files(keep=rundir.written)
    return RunOutcome(rundir.path, run.report, exit_code, error)


def _run_stages(run: _Run, plan: _Plan) -> tuple[int, NeuropruneError | None]:
    dataset = plan.dataset
    model = _stage_dense(run, plan.model, dataset)
    model = _stage_prune(run, model, dataset, plan.budget)
    model = _stage_quantize(run, model, dataset)
    fit_report = _stage_fit(run, model, dataset)
    _stage_export(run, model, dataset)
    try:
        sim_ok = _stage_simulate(run, model, dataset)
    except (SimulationError, BackendUnavailableError) as exc:
        run.report["errors"].append(
            {"stage": "simulate", "kind": type(exc).__name__, "message": exc.one_line()}
        )
        run.emit("simulate", f"failed: {exc.one_line()}")
        return exc.exit_code, exc
    return (0 if fit_report.fits and sim_ok else 1), None


def _prepare_run_dir(rundir: RunDir, cfg: RunConfig, profile: ChipProfile) -> None:
    rundir.save_config(cfg.as_dict(), _provenance(profile))
    rundir.save_profile(Path(profile.path).read_text())
    rundir.plots.mkdir(exist_ok=True)


def _provenance(profile: ChipProfile) -> dict[str, Any]:

    versions = {}
    for pkg in ("torch", "spikingjelly", "lava-nc", "nir", "numpy", "onnx"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "neuroprune_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "profile": {"id": profile.id, "path": profile.path, "sha256": profile.sha256},
    }


def _empty_report(cfg: RunConfig, profile: ChipProfile, budget) -> dict[str, Any]:
    return {
        "record_version": RECORD_VERSION,
        "neuroprune_version": __version__,
        "chip": profile.id,
        "chip_name": profile.name,
        "config": cfg.as_dict(),
        "counting": budget.counting,
        "budget": {
            "synapses": budget.synapses,
            "source": budget.source,
            "binding": budget.binding,
            "fan_in_cap": budget.fan_in_cap,
        },
        "dense": None,
        "pruned": None,
        "quantized": None,
        "fit": None,
        "simulation": None,
        "artifacts": {"nir": None, "onnx": None},
        "stages_not_run": [],
        "errors": [],
        "stages": {},
    }
