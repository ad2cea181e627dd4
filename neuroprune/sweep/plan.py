"""Planning a sweep: every value checked and every trial's :class:`RunConfig` built before any
trial starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import ConfigError
from neuroprune.data.datasets import load_dataset
from neuroprune.pipeline.config import RunConfig
from neuroprune.pipeline.preflight import check_backend, configured_budget, configured_model

SEARCHES = ("grid", "optuna")
OBJECTIVES = {"synapses": "synapses", "cores": "cores", "energy": "energy_per_sample_j"}


@dataclass(frozen=True)
class Trial:
    """One fit run of a sweep: its name (the run directory's) and its resolved config."""

    name: str
    config: RunConfig
    value_key: str  # "sparsity" or "budget"

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out) / self.name


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep, ready to run: the trials (grid) or the space Optuna samples from."""

    name: str
    sweep_dir: Path
    trials: tuple[Trial, ...]
    chips: tuple[str, ...]
    methods: tuple[str, ...]
    value_key: str
    values: tuple[float, ...]
    workers: int | None = None
    ray_address: str | None = None
    search: str = "grid"
    samples: int | None = None
    objective: str = "synapses"
    resume: bool = False


@dataclass(frozen=True)
class SweepResult:
    """What ``run_sweep`` returns: one row per trial, the files written, the wall time (s)."""

    sweep_dir: Path
    rows: tuple[dict[str, Any], ...]
    pareto: dict[str, dict[str, list[str]]]
    json_path: Path
    plots: tuple[Path, ...]
    seconds: float
    ran: int
    skipped: int


# --------------------------------------------------------------------------------------------
# Planning: every value checked before any trial


def _absolute_paths(base: RunConfig) -> RunConfig:
    """``out``, ``data_dir``, ``from_nir`` and a ``FILE.py:FACTORY`` model as absolute paths:
    Ray runs each trial in its own working folder, where a relative path names nothing."""
    changes: dict[str, str] = {"out": os.path.abspath(base.out)}
    for key in ("data_dir", "from_nir"):
        if getattr(base, key):
            changes[key] = os.path.abspath(getattr(base, key))
    model, _, factory = base.model.rpartition(":")
    if model.endswith(".py"):
        changes["model"] = f"{os.path.abspath(model)}:{factory}"
    return base.replace(**changes)


def plan_sweep(
    *,
    chips: str | Sequence[str],
    methods: str | Sequence[str] = "stds",
    budgets: str | Sequence[int] | None = None,
    sparsities: str | Sequence[float] | None = None,
    base: RunConfig | None = None,
    name: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    search: str = "grid",
    samples: int | None = None,
    objective: str = "synapses",
    resume: bool = False,
) -> SweepPlan:
    """Validate the sweep and build every trial's config (module docstring).

    ``chips``, ``methods``, ``budgets``, ``sparsities`` are lists or comma-separated strings;
    give exactly one of ``budgets`` and ``sparsities``. ``base`` holds the other fit options
    (epochs, model, dataset, backend, ...); its chip, method, budget, sparsity, out and name
    are replaced per trial, and trials write under ``base.out / name``.
    """
    base = _absolute_paths(base or RunConfig(backend="reference"))
    chip_list = _names(chips, "--chips")
    method_list = _names(methods, "--methods")
    value_key, values = _values(budgets, sparsities)
    _check_search(search, samples, objective, workers)
    check_backend(base.backend)  # every trial would fail on a backend that cannot run here
    _check_chips(chip_list)
    name = name or _default_name(chip_list, method_list, value_key)
    sweep_dir = Path(base.out) / name
    trials = tuple(
        _trial(base, sweep_dir, chip, method, value_key, value, resume)
        for chip in chip_list
        for method in method_list
        for value in values
    )
    _check_data_and_budgets(trials)
    if search == "optuna" and objective == "energy":
        _check_energy_figures(chip_list, base.backend)
    return SweepPlan(
        name,
        sweep_dir,
        trials,
        tuple(chip_list),
        tuple(method_list),
        value_key,
        tuple(values),
        workers,
        ray_address,
        search,
        samples,
        objective,
        resume,
    )


def _names(value: str | Sequence[str], option: str) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    items = [v for v in items if v]
    if not items:
        raise ConfigError(
            "needs at least one name",
            where=option,
            field=option.lstrip("-"),
            value=value,
            fix=f"For example {option} loihi,truenorth.",
        )
    duplicates = sorted({v for v in items if items.count(v) > 1})
    if duplicates:
        raise ConfigError(
            "a name is given twice",
            where=option,
            field=option.lstrip("-"),
            value=",".join(duplicates),
            fix="List each name once.",
        )
    return items


def _values(budgets, sparsities) -> tuple[str, list[float]]:
    """``("budget", ints)`` or ``("sparsity", floats)``; each entry parsed and range-checked."""
    if (budgets is None) == (sparsities is None):
        raise ConfigError(
            "give exactly one of --budgets and --sparsities",
            where="sweep",
            field="values",
            value=None if budgets is None else "both",
            fix="For example --sparsities 0.8,0.9,0.95 or --budgets 20000,10000.",
        )
    key, raw = ("budget", budgets) if budgets is not None else ("sparsity", sparsities)
    option = "--budgets" if key == "budget" else "--sparsities"
    items = [v.strip() for v in raw.split(",") if v.strip()] if isinstance(raw, str) else raw
    if not items:
        raise ConfigError("needs at least one value", where=option, field=key, value=raw)
    parsed = [_number(item, key, option) for item in items]
    if len(set(parsed)) != len(parsed):
        raise ConfigError(
            "a value is given twice",
            where=option,
            field=key,
            value=raw,
            fix="List each value once.",
        )
    return key, parsed


def _number(item: Any, key: str, option: str) -> float:
    try:
        number = int(item) if key == "budget" else float(item)
    except (TypeError, ValueError) as exc:
        what = "an integer synapse count" if key == "budget" else "a fraction in [0, 1)"
        raise ConfigError(
            "not a number",
            where=option,
            field=key,
            value=item,
            fix=f"Give {what}, e.g. {option} {'20000,10000' if key == 'budget' else '0.8,0.9'}.",
        ) from exc
    if key == "budget" and number <= 0:
        raise ConfigError("must be a positive integer", where=option, field=key, value=item)
    if key == "sparsity" and not 0 <= number < 1:
        raise ConfigError(
            "must be in [0, 1)",
            where=option,
            field=key,
            value=item,
            fix="Give the fraction of synapses to remove, e.g. 0.9.",
        )
    return number


def _check_search(search: str, samples: int | None, objective: str, workers: int | None) -> None:
    if search not in SEARCHES:
        raise ConfigError(
            "unknown search",
            where="--search",
            field="search",
            value=search,
            fix=f"Use one of: {', '.join(SEARCHES)}.",
        )
    if objective not in OBJECTIVES:
        raise ConfigError(
            "unknown objective",
            where="--objective",
            field="objective",
            value=objective,
            fix=f"Use one of: {', '.join(OBJECTIVES)}.",
        )
    if search == "optuna" and (samples is None or samples < 1):
        raise ConfigError(
            "Optuna search needs a number of trials",
            where="--trials",
            field="trials",
            value=samples,
            fix="Add e.g. --trials 12.",
        )
    if workers is not None and workers < 1:
        raise ConfigError(
            "must be a positive integer", where="--workers", field="workers", value=workers
        )


def _check_chips(chips: Sequence[str]) -> None:

    for chip in chips:
        load_profile(chip)  # UnknownChipError names close matches


def _check_energy_figures(chips: Sequence[str], backend: str) -> None:
    """Optimising energy needs a simulation (spike counts) and, per chip, the figure every
    estimate sums (``energy.synop_pj``; :func:`neuroprune.sim.result.energy_estimate`)."""

    if backend == "none":
        raise ConfigError(
            "energy per sample needs a simulation",
            where="--objective",
            field="backend",
            value=backend,
            fix="Use --backend reference (or lava), or another --objective.",
        )
    for chip in chips:
        if load_profile(chip).energy.synop_pj is None:  # the estimate's one required figure
            raise ConfigError(
                "the profile has no energy per synaptic event (energy.synop_pj)",
                where="--objective",
                field="chip",
                value=chip,
                fix="Leave this chip out, or use --objective synapses or cores.",
            )


def _default_name(chips: Sequence[str], methods: Sequence[str], key: str) -> str:
    return f"sweep-{'_'.join(Path(c).stem for c in chips)}-{'_'.join(methods)}-{key}"


def _value_label(key: str, value: float) -> str:
    return f"b{int(value)}" if key == "budget" else f"s{value:g}"


def _trial(base, sweep_dir, chip, method, key, value, resume) -> Trial:
    name = f"{Path(chip).stem}-{method}-{_value_label(key, value)}"
    other = "sparsity" if key == "budget" else "budget"
    try:
        config = base.replace(
            chip=chip,
            method=method,
            out=str(sweep_dir),
            name=name,
            resume=resume,
            nproc=1,
            **{key: value, other: None},
        )
    except ConfigError as exc:  # name the sweep's option, not the fit config key
        option = {"method": "--methods", "sparsity": "--sparsities", "budget": "--budgets"}
        raise ConfigError(
            exc.message,
            where=option.get(exc.field or "", "sweep"),
            field=exc.field,
            value=exc.value,
            fix=exc.fix,
        ) from None
    return Trial(name, config, key)


def _check_data_and_budgets(trials: Sequence[Trial]) -> None:
    """Load the dataset once and derive every trial's budget from the dense network's summary
    (what ``fit`` does first), so a budget a chip cannot hold fails here, not in trial k."""

    first = trials[0].config
    data = load_dataset(first.dataset, first.data_dir)
    from neuroprune.models import (
        summarize,  # deferred: imports scipy, spikingjelly, torch; torch once the inputs are valid
    )

    model = configured_model(first, data.input_shape, data.num_classes)
    summary = summarize(model, data.input_shape, 1, name=first.model)
    for trial in trials:
        cfg = trial.config
        configured_budget(cfg, load_profile(cfg.chip), summary)
