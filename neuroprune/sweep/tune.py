"""The Ray Tune side of sweeps (layer L9): Ray session, the trainable, progress, Optuna.

Kept apart from :mod:`neuroprune.sweep` so planning, rows and Pareto fronts import without Ray
(``import ray.tune`` takes seconds). Tune pickles its run configuration, so the progress
callback is a top-level class that leaves the driver's progress sink out of its pickled state.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import ray
from ray import tune
from ray.tune import Callback

from neuroprune.core.progress import Progress, emit
from neuroprune.pipeline.config import RunConfig
from neuroprune.pipeline.run import run_fit
from neuroprune.run.rundir import SavedRecord
from neuroprune.sweep.plan import OBJECTIVES, SweepPlan, Trial
from neuroprune.sweep.results import trial_row
from neuroprune.sweep.trials import finished_report, name_of, space_config


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """An embedded local Ray (the machine's cores, no dashboard) or the cluster at
    ``address``; shut down on exit when this call started it (nothing is left running)."""

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then prints no tables
    if ray.is_initialized():
        yield
        return
    temp = None
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        temp = tempfile.mkdtemp(prefix="np-ray-", dir="/tmp")  # short: socket paths <= 107
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=temp,
        )
    try:
        yield
    finally:
        ray.shutdown()
        if temp is not None:  # Ray's session files (logs, sockets) of the embedded Ray
            shutil.rmtree(temp, ignore_errors=True)


def run_trials(
    plan: SweepPlan, space: dict[str, Any], count: int, progress: Progress | None
) -> dict[str, str]:
    """Run the trials of ``space`` on Ray Tune (``count`` samples for Optuna, else the grid);
    returns ``{trial name: error line}`` for trials that failed."""
    with ray_session(plan.ray_address):
        workers = plan.workers or (None if plan.ray_address else os.cpu_count() or 1)
        tune_config = tune.TuneConfig(
            max_concurrent_trials=workers,
            num_samples=count if plan.search == "optuna" else 1,
            search_alg=optuna_search(plan) if plan.search == "optuna" else None,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        )
        run_config = tune.RunConfig(
            name=plan.name,
            storage_path=str((plan.sweep_dir / "ray").resolve()),
            verbose=0,
            callbacks=[ProgressCallback(progress)],
        )
        trainable = tune.with_resources(trial_entry, {"cpu": 1})
        grid = tune.Tuner(
            trainable, param_space=space, tune_config=tune_config, run_config=run_config
        ).fit()
    errors = {}
    for result in grid:
        if result.error is not None:
            errors[name_of(result.config)] = str(result.error).strip().splitlines()[-1][:300]
    return errors


def optuna_search(plan: SweepPlan):
    """Optuna's NSGA-II sampler through Ray Tune: maximise the deployed model's validation
    accuracy (never the test split's), minimise the objective."""
    from optuna.samplers import NSGAIISampler  # deferred: imports optuna
    from ray.tune.search.optuna import OptunaSearch  # deferred: imports optuna

    seed = plan.trials[0].config.seed
    return OptunaSearch(
        metric=["val_accuracy", OBJECTIVES[plan.objective]],
        mode=["max", "min"],
        sampler=NSGAIISampler(seed=seed),
    )


def trial_entry(space: dict[str, Any]) -> None:
    """The trainable: one fit run (or its finished report with ``resume``); reports test and
    validation accuracy (the search steers by validation) and whichever of synapses, cores and energy per sample the run measured. A failing run
    raises, so Tune (and Optuna) record the trial as failed."""
    config = space_config(space)
    _torch_setup()
    report = _fit_or_reuse(config)
    row = trial_row(config.run_name, config, report, "done", None)
    keys = ("accuracy", "val_accuracy", *OBJECTIVES.values())
    tune.report({k: float(row[k]) for k in keys if row.get(k) is not None})


def _fit_or_reuse(config: RunConfig) -> SavedRecord:
    """The finished trial's record with ``resume``, else the record of a new fit run."""
    report = finished_report(Trial(config.run_name, config, "")) if config.resume else None
    return report if report is not None else SavedRecord.model_validate(run_fit(config).report)


def _torch_setup() -> None:
    """One torch thread per trial (NEUROPRUNE_THREADS overrides), as ``fit`` does."""

    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    import torch  # deferred: imports torch

    torch.set_num_threads(int(os.environ.get("NEUROPRUNE_THREADS", "1")))


def _trial_name(trial) -> str:
    return name_of(trial.config)


class ProgressCallback(Callback):
    """Driver-side trial events (started / finished with its accuracy / failed) as progress
    events ``{"stage": "sweep", "message": ..., "advance": 1}``."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress

    def __getstate__(self) -> dict[str, Any]:
        return {"progress": None}  # the driver's console is not part of Tune's saved state

    def _send(self, event: Mapping[str, Any]) -> None:
        emit(self.progress, **{"stage": "sweep", **event})

    def on_trial_start(self, iteration, trials, trial, **info):
        self._send({"message": f"{name_of(trial.config)}: started"})

    def on_trial_complete(self, iteration, trials, trial, **info):
        accuracy = (trial.last_result or {}).get("accuracy", 0.0)
        self._send(
            {"advance": 1, "message": f"{name_of(trial.config)}: accuracy {100 * accuracy:.2f} %"}
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        self._send({"advance": 1, "message": f"{name_of(trial.config)}: failed"})
