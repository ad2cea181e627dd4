"""Trial bookkeeping: names, search spaces, and resume (finished trials of the same config)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neuroprune.core.errors import NeuropruneError
from neuroprune.pipeline.config import RunConfig, config_from_saved
from neuroprune.run.rundir import RunDir, SavedRecord
from neuroprune.sweep.plan import SweepPlan, Trial, _value_label

# --------------------------------------------------------------------------------------------
# Finished trials (resume)


def finished_report(trial: Trial) -> SavedRecord | None:
    """The trial's record (read leniently, :class:`SavedRecord`: a partial record counts) when
    its run reached the fit stage with the same config, else None."""
    record = RunDir(trial.run_dir).saved_record()
    if record is None or record.fit is None or not _same_config(record.config or {}, trial.config):
        return None
    return record


def _same_config(saved: Mapping[str, Any], config: RunConfig) -> bool:
    """Every option the trial sets equals the saved run's (an unset option, None, took the
    model's default, which the saved config records resolved)."""
    ignore = {"resume", "nproc"}
    wanted = config.as_dict()
    return all(saved.get(k) == v for k, v in wanted.items() if k not in ignore and v is not None)


def _value_space(plan: SweepPlan):
    from ray import tune  # deferred: imports ray

    if plan.value_key == "sparsity" and len(plan.values) > 1:
        return tune.quniform(min(plan.values), max(plan.values), 0.001)
    return tune.choice(list(plan.values))


def _grid(values: list[Any]):
    from ray import tune  # deferred: imports ray

    return tune.grid_search(values)


def space_config(space: Mapping[str, Any]) -> RunConfig:
    if "trial" in space:
        return _config_of(space["trial"])
    base = dict(space["base"])
    key = "sparsity" if "sparsity" in space else "budget"
    value = round(float(space[key]), 3) if key == "sparsity" else int(space[key])
    base.update(chip=space["chip"], method=space["method"], sparsity=None, budget=None)
    base[key] = value
    base["name"] = f"{Path(space['chip']).stem}-{space['method']}-{_value_label(key, value)}"
    return _config_of(base)


def _config_of(values: Mapping[str, Any]) -> RunConfig:

    known = {k: v for k, v in values.items() if k in RunConfig.model_fields}
    return config_from_saved(known, where="sweep trial")


def name_of(space: Mapping[str, Any] | None) -> str:
    """The trial (run directory) name of a Tune config."""
    space = space or {}
    if "trial" in space:
        return str(space["trial"].get("name"))
    try:
        return space_config(space).run_name
    except (KeyError, TypeError, ValueError, NeuropruneError):
        return "trial"
