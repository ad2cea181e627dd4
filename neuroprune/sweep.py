"""Sweeps (layer L4): one ``fit`` run per (chip, method, budget or sparsity), on Ray Tune.

``plan_sweep`` validates every value and builds every trial's :class:`RunConfig` before any
trial starts (unknown chip, method, dataset, a value that is not a number or out of range, a
budget the chip cannot hold: one error, nothing written). ``run_sweep`` then runs the trials:

* on Ray Tune: an embedded local Ray (``ray.init(num_cpus=<machine cores>)``, no dashboard) by
  default, or the cluster at ``ray_address``; each trial takes 1 CPU, at most ``workers`` run
  at once, and Ray is shut down afterwards when this call started it;
* every trial is a fit in its own run directory ``<out>/<sweep>/<chip>-<method>-<value>``;
* ``resume=True`` skips trials whose run directory holds a finished report of the same config
  (a changed option reruns the trial), and an unfinished one continues from its last completed
  stage (``fit --resume``);
* ``search="optuna"`` lets Optuna's multi-objective sampler (NSGA-II, via Ray Tune's
  ``OptunaSearch``) choose ``samples`` trials over chips x methods x values, maximising accuracy
  and minimising ``objective`` (synapses, cores or energy per sample);
* results: one row per trial (``sweep.json``), the Pareto-optimal trials per chip, and per
  chip a plot of accuracy against synapses and against energy per sample.

A trial's *accuracy* is that of the model the chip runs: the quantized model's test accuracy
(the pruned model's when quantization did not run); *synapses* are counted as the chip stores
them (after quantization). Energy per sample is the simulation's estimate from the profile's
figures (``energy.synop_pj``, ``energy.neuron_update_pj``); it is None with ``--backend none``
or for a chip without those figures.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuroprune.atomic import write_json
from neuroprune.config import RunConfig
from neuroprune.errors import ConfigError, NeuropruneError

Progress = Callable[[Mapping[str, Any]], None]
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
    base = base or RunConfig(backend="reference")
    chip_list = _names(chips, "--chips")
    method_list = _names(methods, "--methods")
    value_key, values = _values(budgets, sparsities)
    _check_search(search, samples, objective, workers)
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
    from neuroprune.profiles import load_profile

    for chip in chips:
        load_profile(chip)  # UnknownChipError names close matches


def _check_energy_figures(chips: Sequence[str], backend: str) -> None:
    """Optimising energy needs a simulation (spike counts) and both energy figures per chip."""
    from neuroprune.profiles import load_profile

    if backend == "none":
        raise ConfigError(
            "energy per sample needs a simulation",
            where="--objective",
            field="backend",
            value=backend,
            fix="Use --backend reference (or lava), or another --objective.",
        )
    for chip in chips:
        energy = load_profile(chip).energy
        if energy.synop_pj is None or energy.neuron_update_pj is None:
            raise ConfigError(
                "the profile has no complete energy figures (energy.synop_pj and "
                "energy.neuron_update_pj)",
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
    from neuroprune.data import load_dataset
    from neuroprune.profiles import load_profile

    first = trials[0].config
    data = load_dataset(first.dataset, first.data_dir)
    from neuroprune.models import summarize  # torch once the inputs are valid
    from neuroprune.pipeline import configured_budget, configured_model

    model = configured_model(first, data.input_shape, data.num_classes)
    summary = summarize(model, data.input_shape, 1, name=first.model)
    for trial in trials:
        cfg = trial.config
        configured_budget(cfg, load_profile(cfg.chip), summary)


# --------------------------------------------------------------------------------------------
# Finished trials (resume)


def finished_report(trial: Trial) -> dict[str, Any] | None:
    """The trial's report.json when its run finished with the same config, else None."""
    path = trial.run_dir / "report.json"
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if report.get("fit") is None or not _same_config(report.get("config") or {}, trial.config):
        return None
    return report


def _same_config(saved: Mapping[str, Any], config: RunConfig) -> bool:
    """Every option the trial sets equals the saved run's (an unset option, None, took the
    model's default, which the saved config records resolved)."""
    ignore = {"resume", "nproc"}
    wanted = config.as_dict()
    return all(saved.get(k) == v for k, v in wanted.items() if k not in ignore and v is not None)


# --------------------------------------------------------------------------------------------
# Running


def run_sweep(plan: SweepPlan, *, progress: Progress | None = None) -> SweepResult:
    """Run the plan's trials on Ray Tune (finished ones skipped with ``plan.resume``); write
    ``sweep.json`` and the Pareto plots; return the rows."""
    emit = progress or (lambda event: None)
    started = time.perf_counter()
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    if plan.search == "optuna":
        reports, skipped = _run_optuna(plan, emit), 0
    else:
        reports, skipped = _run_grid(plan, emit)
    rows = tuple(reports)
    return _write_results(plan, rows, time.perf_counter() - started, skipped)


def _run_grid(plan: SweepPlan, emit: Progress) -> tuple[list[dict[str, Any]], int]:
    done = {t.name: finished_report(t) if plan.resume else None for t in plan.trials}
    pending = [t for t in plan.trials if done[t.name] is None]
    emit({"stage": "sweep", "total": len(plan.trials)})
    for trial in plan.trials:
        if done[trial.name] is not None:
            emit({"stage": "sweep", "advance": 1, "message": f"{trial.name}: finished, skipped"})
    errors: dict[str, str] = {}
    if pending:
        emit({"stage": "sweep", "message": f"{len(pending)} trial(s) on Ray Tune"})
        space = {"trial": _grid([t.config.as_dict() for t in pending])}
        errors = _tuner().run_trials(plan, space, len(pending), emit)
    rows = []
    for trial in plan.trials:
        report = done[trial.name]
        status = "skipped" if report is not None else "done"
        if report is None:
            report = finished_report(trial)
            status = "done" if report is not None else "failed"
        rows.append(trial_row(trial.name, trial.config, report, status, errors.get(trial.name)))
    return rows, sum(r is not None for r in done.values())


def _run_optuna(plan: SweepPlan, emit: Progress) -> list[dict[str, Any]]:
    from ray import tune

    emit({"stage": "sweep", "total": plan.samples})
    base = plan.trials[0].config.as_dict()
    space = {
        "base": base,
        "chip": tune.choice(list(plan.chips)),
        "method": tune.choice(list(plan.methods)),
        plan.value_key: _value_space(plan),
    }
    errors = _tuner().run_trials(plan, space, plan.samples or 1, emit)
    rows = []
    for trial_dir in sorted(p for p in plan.sweep_dir.iterdir() if (p / "config.yaml").is_file()):
        report = _read_report(trial_dir)
        config = _config_of(report["config"]) if report else None
        if config is not None:
            rows.append(trial_row(trial_dir.name, config, report, "done", None))
    rows += [{"trial": name, "status": "failed", "error": err} for name, err in errors.items()]
    return rows


def _tuner():
    from neuroprune import sweep_tune  # imports Ray (seconds): only when trials run

    return sweep_tune


def _value_space(plan: SweepPlan):
    from ray import tune

    if plan.value_key == "sparsity" and len(plan.values) > 1:
        return tune.quniform(min(plan.values), max(plan.values), 0.001)
    return tune.choice(list(plan.values))


def _grid(values: list[Any]):
    from ray import tune

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
    from neuroprune.config import config_from_saved

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
    from neuroprune.reports.plots import pareto_plot

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
    try:
        return json.loads((run_dir / "report.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


__all__ = [
    "OBJECTIVES",
    "SEARCHES",
    "SweepPlan",
    "SweepResult",
    "Trial",
    "finished_report",
    "pareto_by_chip",
    "pareto_front",
    "name_of",
    "plan_sweep",
    "run_sweep",
    "space_config",
    "trial_row",
]
