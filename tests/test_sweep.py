"""Sweeps (neuroprune.sweep): validation before any trial, Pareto fronts, resume, Ray Tune."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from neuroprune.cli.app import main
from neuroprune.core.errors import BudgetError, ConfigError, UnknownChipError
from neuroprune.pipeline.config import RunConfig
from neuroprune.sweep.plan import plan_sweep
from neuroprune.sweep.results import pareto_by_chip, pareto_front
from neuroprune.sweep.run import run_sweep
from neuroprune.sweep.trials import finished_report

TINY = {
    "hidden": (32,),
    "epochs": 2,
    "prune_epochs": 1,
    "finetune_epochs": 1,
    "quant_epochs": 1,
    "backend": "reference",
    "samples": 50,
}


@pytest.fixture(autouse=True, scope="module")
def _default_multiprocessing_context_left_unset():
    """Launchers may fix this process's default multiprocessing start method; Lava sets its own
    ('fork') when imported later in the same pytest worker, so leave it unset afterwards."""
    yield
    multiprocessing.context._default_context._actual_context = None


def base(tmp_path: Path, **changes) -> RunConfig:
    return RunConfig(out=str(tmp_path), **{**TINY, **changes})


# --------------------------------------------------------------------------------------------
# Planning: every value checked before any trial


def test_plan_is_chips_x_methods_x_values(tmp_path):
    plan = plan_sweep(
        chips="loihi,truenorth",
        methods="stds,gradr,gmp",
        sparsities="0.8,0.9,0.95",
        base=base(tmp_path),
    )
    assert len(plan.trials) == 18
    first = plan.trials[0]
    assert first.name == "loihi-stds-s0.8" and first.config.sparsity == 0.8
    assert first.run_dir == tmp_path / plan.name / "loihi-stds-s0.8"
    assert {t.config.chip for t in plan.trials} == {"loihi", "truenorth"}
    assert all(t.config.epochs == 2 and t.config.budget is None for t in plan.trials)
    budgets = plan_sweep(chips=["loihi"], budgets="400,300", base=base(tmp_path))
    assert [t.name for t in budgets.trials] == ["loihi-stds-b400", "loihi-stds-b300"]
    assert not list(tmp_path.iterdir())  # planning writes nothing


@pytest.mark.parametrize(
    ("kwargs", "where", "value"),
    [
        ({"sparsities": "0.8,x"}, "--sparsities", "x"),
        ({"sparsities": "0.8,1.5"}, "--sparsities", "1.5"),
        ({"sparsities": "0.8,0.8"}, "--sparsities", "0.8,0.8"),
        ({"budgets": "100,-5"}, "--budgets", "-5"),
        ({"budgets": "1e3"}, "--budgets", "1e3"),
        ({"sparsities": "0.8", "methods": "stds,gmpp"}, "--methods", "gmpp"),
        ({"sparsities": "0.8", "budgets": "100"}, "sweep", "both"),
        ({}, "sweep", None),
        ({"sparsities": "0.8", "search": "optuna"}, "--trials", None),
        ({"sparsities": "0.8", "workers": 0}, "--workers", 0),
    ],
)
def test_a_bad_value_is_reported_before_any_trial(tmp_path, kwargs, where, value):
    with pytest.raises(ConfigError) as info:
        plan_sweep(chips="loihi", base=base(tmp_path), **kwargs)
    assert info.value.where == where and info.value.value == value
    assert "--sparsitys" not in info.value.one_line()
    assert not list(tmp_path.iterdir())


def test_unknown_chip_and_unholdable_budget_fail_before_any_trial(tmp_path):
    with pytest.raises(UnknownChipError):
        plan_sweep(chips="loihi,truenorht", sparsities="0.8", base=base(tmp_path))
    with pytest.raises(BudgetError):  # 5 synapses cannot reach all 10 output neurons
        plan_sweep(chips="loihi", budgets="400,5", base=base(tmp_path))
    assert not list(tmp_path.iterdir())


def test_optimising_energy_needs_a_simulation_and_energy_figures(tmp_path):
    optuna = {"sparsities": "0.8,0.9", "search": "optuna", "samples": 4, "objective": "energy"}
    plan = plan_sweep(chips="loihi", base=base(tmp_path), **optuna)
    assert plan.search == "optuna" and plan.samples == 4
    plan_sweep(chips="loihi,truenorth", base=base(tmp_path), **optuna)  # TrueNorth: all-in
    with pytest.raises(ConfigError) as info:  # Tianjic's profile has no energy figure
        plan_sweep(chips="loihi,tianjic", base=base(tmp_path), **optuna)
    assert info.value.value == "tianjic"
    with pytest.raises(ConfigError) as info:
        plan_sweep(chips="loihi", base=base(tmp_path, backend="none"), **optuna)
    assert info.value.field == "backend"


def test_cli_bad_value_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(
        main, ["sweep", "--chips", "loihi", "--sparsities", "0.9,abc", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: --sparsities: not a number")
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# Pareto fronts (hand-worked examples)


def test_pareto_front_minimises_cost_and_maximises_accuracy():
    # (cost, accuracy): A(100, .90) B(200, .95) C(150, .85) D(200, .93) E(300, .95) F(50, .80)
    # F is cheapest; A beats C (cheaper, better); B is the best accuracy at 200; D is dominated
    # by B; E ties B's accuracy at higher cost. Front by cost: F, A, B.
    points = [(100, 0.90), (200, 0.95), (150, 0.85), (200, 0.93), (300, 0.95), (50, 0.80)]
    assert pareto_front(points) == [5, 0, 1]
    assert pareto_front([]) == []
    assert pareto_front([(1, 0.5), (1, 0.5)]) == [0]


def test_pareto_by_chip_skips_missing_figures():
    rows = [
        {
            "trial": "a",
            "chip": "loihi",
            "accuracy": 0.9,
            "synapses": 100,
            "cores": 1,
            "energy_per_sample_j": 2e-9,
        },
        {
            "trial": "b",
            "chip": "loihi",
            "accuracy": 0.95,
            "synapses": 300,
            "cores": 1,
            "energy_per_sample_j": 1e-9,
        },
        {
            "trial": "c",
            "chip": "truenorth",
            "accuracy": 0.8,
            "synapses": 50,
            "cores": 2,
            "energy_per_sample_j": None,
        },
        {"trial": "d", "chip": "truenorth", "accuracy": None, "status": "failed"},
    ]
    front = pareto_by_chip(rows)
    assert front["loihi"] == {"synapses": ["a", "b"], "cores": ["b"], "energy": ["b"]}
    assert front["truenorth"] == {"synapses": ["c"], "cores": ["c"], "energy": []}


# --------------------------------------------------------------------------------------------
# Resume: which trials count as finished


def _fake_report(trial, **config_changes):
    trial.run_dir.mkdir(parents=True)
    config = {**trial.config.as_dict(), "timesteps": 8, **config_changes}
    report = {"config": config, "fit": {"fits": True}, "chip": trial.config.chip}
    (trial.run_dir / "report.json").write_text(json.dumps(report))


def test_finished_report_needs_the_final_stage_and_the_same_config(tmp_path):
    plan = plan_sweep(
        chips="loihi",
        methods="gmp,magnitude,stds",
        sparsities="0.8",
        base=base(tmp_path),
        resume=True,
    )
    same, changed, unfinished = plan.trials
    _fake_report(same)  # a resolved default (timesteps) does not count as a change
    _fake_report(changed, epochs=5)
    _fake_report(unfinished)
    data = json.loads((unfinished.run_dir / "report.json").read_text())
    (unfinished.run_dir / "report.json").write_text(json.dumps({**data, "fit": None}))
    assert finished_report(same) is not None
    assert finished_report(changed) is None and finished_report(unfinished) is None


# --------------------------------------------------------------------------------------------
# Ray Tune end to end


def _ray_processes(sessions: list[str]) -> set[int]:
    """Processes whose command line names one of ``sessions`` (the Ray temp folders this test's
    sweeps made: another test file's sweep may run beside it under xdist)."""
    found = set()
    names = [Path(s).name.encode() for s in sessions]
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            except OSError:
                continue
            if any(name in cmdline for name in names):
                found.add(int(entry.name))
    return found


@pytest.mark.slow
def test_ray_sweep_runs_trials_and_a_resumed_sweep_skips_finished_ones(tmp_path, monkeypatch):
    import neuroprune.sweep.tune as tune

    sessions: list[str] = []
    real_mkdtemp = tune.tempfile.mkdtemp

    def recorded_mkdtemp(*args, **kwargs):  # observes the Ray session folders; calls the real one
        path = real_mkdtemp(*args, **kwargs)
        if Path(path).name.startswith("np-ray-"):
            sessions.append(path)
        return path

    monkeypatch.setattr(tune.tempfile, "mkdtemp", recorded_mkdtemp)
    plan = plan_sweep(
        chips="loihi",
        methods="gmp,magnitude",
        sparsities="0.8",
        base=base(tmp_path),
        workers=2,
        resume=True,
    )
    events = []
    first = run_sweep(plan, progress=events.append)
    assert [r["status"] for r in first.rows] == ["done", "done"], first.rows
    for row in first.rows:
        assert row["synapses"] <= row["budget"] and row["accuracy"] > 0.5
        assert row["energy_per_sample_j"] > 0 and Path(row["run_dir"], "model.nir").is_file()
    assert any("started" in e.get("message", "") for e in events)
    saved = json.loads(first.json_path.read_text())
    assert [t["trial"] for t in saved["trials"]] == ["loihi-gmp-s0.8", "loihi-magnitude-s0.8"]
    assert first.plots[0].name == "pareto-loihi.png" and first.plots[0].is_file()

    kept, redo = plan.trials
    kept_report = (kept.run_dir / "report.json").read_bytes()
    (redo.run_dir / "report.json").unlink()
    second = run_sweep(plan)
    assert [r["status"] for r in second.rows] == ["skipped", "done"]
    assert (second.ran, second.skipped) == (1, 1)
    assert (kept.run_dir / "report.json").read_bytes() == kept_report  # not rerun
    assert (redo.run_dir / "report.json").is_file()
    third = run_sweep(plan)  # everything finished: Ray is not even started
    assert [r["status"] for r in third.rows] == ["skipped", "skipped"]
    assert sessions and not _ray_processes(sessions)  # Ray shut down: nothing left running
    assert not any(Path(s).exists() for s in sessions)  # its session files removed
