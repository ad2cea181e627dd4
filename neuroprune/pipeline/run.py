"""``run_fit``: the run directory, the stages in order, the report."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from neuroprune import __version__
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import DatasetError
from neuroprune.core.progress import Progress
from neuroprune.data.split import SPLIT_RULE, Holdout
from neuroprune.envs import BACKEND, ENVIRONMENTS, recorded_versions
from neuroprune.pipeline.config import RunConfig
from neuroprune.pipeline.context import RunOutcome, _noop, _Run
from neuroprune.pipeline.preflight import _Plan, _preflight
from neuroprune.pipeline.stages import STAGES, Carry
from neuroprune.run.rundir import (
    RECORD_VERSION,
    ArtifactsRecord,
    BudgetRecord,
    RunDir,
    RunRecord,
    ValidationRecord,
)
from neuroprune.run.warnings import preflight_warnings
from neuroprune.train import distributed

REPORTED_BUDGET = ("synapses", "source", "binding", "fan_in_cap")  # report.json ``budget``

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
    plan = _preflight(cfg)
    record = _empty_record(plan)
    with distributed.process_group(plan.cfg.device):
        rundir = RunDir.of(plan.cfg.out, plan.cfg.run_name)
        if not distributed.is_main():  # a torchrun worker: trains, writes nothing
            run = _Run(plan.cfg, rundir, plan.profile, progress or _noop, record, writes=False)
            check_same_holdout(plan.holdout)
            return _run_worker_rank(run, plan)
        check_same_holdout(plan.holdout)
        with rundir.lock():
            return _run_main(plan, record, rundir, progress)


def _run_worker_rank(run: _Run, plan: _Plan) -> RunOutcome:
    """A torchrun rank > 0: the training stages only, nothing written."""
    carry = Carry(plan.model, plan.holdout.train, plan.budget, holdout=plan.holdout)
    for stage in STAGES:
        if stage.on_workers(carry.model):
            carry = stage.run(run, carry)
    return RunOutcome(run.run_dir, run.record.as_dict(), 0)


def _run_main(
    plan: _Plan, record: RunRecord, rundir: RunDir, progress: Progress | None
) -> RunOutcome:
    """Rank 0 (or the only process), holding the run's lock: clean, run every stage, keep the
    files this run wrote or reused."""
    cfg = plan.cfg
    run = _Run(cfg, rundir, plan.profile, progress or _noop, record)
    provenance = _provenance(plan.profile)
    if not cfg.resume:
        rundir.remove_files(keep=set())
    rundir.save_config(cfg.as_dict(), provenance)
    rundir.save_profile(Path(plan.profile.path).read_text())
    rundir.plots.mkdir(exist_ok=True)
    run.emit(
        "setup",
        f"{plan.profile.name}: budget {plan.budget.synapses:,} synapses "
        f"({plan.budget.source}); dense network {plan.dense_synapses:,} "
        f"synapses, {plan.dense_neurons:,} neurons, {plan.dense_cores:,} of "
        f"{plan.cores_allocated:,} cores",
    )
    run.emit(
        "setup",
        f"validation: {plan.holdout.size:,} of {plan.dataset.train_size:,} training samples "
        f"held out before training (seed {plan.holdout.seed}); no stage trains on them, every "
        "keep/revert and early-stop decision reads them",
    )
    for warning in preflight_warnings(record):  # said before training
        run.warn(warning)
    carry = Carry(plan.model, plan.holdout.train, plan.budget, holdout=plan.holdout)
    for stage in STAGES:
        carry = stage.run(run, carry)
    if cfg.resume:
        rundir.remove_files(keep=rundir.written)
    return RunOutcome(rundir.path, run.record.as_dict(), carry.exit_code, carry.error)


def check_same_holdout(holdout: Holdout) -> None:
    """Under torchrun: every rank must have cut the same validation rows as rank 0 (the cut is
    seeded, so they do unless the ranks read different data); raises ``DatasetError`` when not.
    Alone: nothing to compare."""
    mine = holdout.digest
    main = distributed.from_main(mine)
    if main != mine:
        raise DatasetError(
            "this rank cut another validation part than rank 0 (different training data?)",
            where=f"torchrun rank {distributed.rank()}",
            field="validation digest",
            value=mine,
            fix=f"Give every rank the same dataset and --seed (rank 0: {main}).",
        )


def _provenance(profile: ChipProfile) -> dict[str, Any]:

    versions = {}
    for pkg in ("torch", "spikingjelly", "lava-nc", "nir", "numpy", "onnx"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    # the simulators' own environments (lava: its Python 3.10 and its requirements' versions)
    backends = {
        name: recorded_versions(spec)
        for name, spec in ENVIRONMENTS.items()
        if spec.purpose == BACKEND
    }
    versions["lava-nc"] = versions["lava-nc"] or backends.get("lava", {}).get("lava-nc")
    return {
        "neuroprune_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "backend_environments": backends,
        "profile": {"id": profile.id, "path": profile.path, "sha256": profile.sha256},
    }


def _empty_record(plan: _Plan) -> RunRecord:
    """The run record before any stage ran: chip, configuration, budget (whether it binds, the
    cores the dense network uses); every stage section empty."""
    cfg, profile, budget, holdout = plan.cfg, plan.profile, plan.budget, plan.holdout
    budget_fields = budget.to_dict()
    return RunRecord(
        record_version=RECORD_VERSION,
        chip=profile.id,
        budget=BudgetRecord(
            **{k: budget_fields[k] for k in REPORTED_BUDGET},
            binds=budget.binds,
            dense_cores=plan.dense_cores,
            cores_allocated=plan.cores_allocated,
        ),
        artifacts=ArtifactsRecord(),
        stages_not_run=[],
        errors=[],
        neuroprune_version=__version__,
        chip_name=profile.name,
        config=cfg.as_dict(),
        counting=budget.counting,
        stages={},
        validation=ValidationRecord(
            samples=holdout.size,
            train_samples=holdout.train.train_size,
            seed=holdout.seed,
            rule=SPLIT_RULE,
            digest=holdout.digest,
        ),
    )
