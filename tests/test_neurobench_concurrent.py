"""NeuroBench's child is spawned when the fit run starts (it imports while the run trains), gets
the model once it is final (before export) and is collected by the report stage: the same
section as a measurement made at the report, handed over before the simulation, and stopped
when the run fails or is interrupted before its report."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fit_args import tiny_fit_args

import neuroprune.sim as simulators
from neuroprune.cli.app import main
from neuroprune.envs import require
from neuroprune.pipeline import neurobench as pipeline_neurobench

pytestmark = pytest.mark.slow

TINY = [
    "--chip",
    "loihi",
    *tiny_fit_args(backend="reference", seed=0),
    "--samples",
    "40",
    "--neurobench",  # the tests turn it off by default (conftest)
]


def _needs_environment() -> None:
    try:
        require("neurobench", what="NeuroBench")
    except Exception as exc:  # noqa: BLE001  (any reason the env is missing)
        pytest.skip(f"neurobench environment not installed: {exc}")


def _fit(tmp_path, name, *args, env=None):
    argv = ["fit", "--out", str(tmp_path), "--name", name, *TINY, *args]
    return CliRunner().invoke(main, argv, env={"COLUMNS": "200", **(env or {})})


def _spy(monkeypatch, events):
    """Record the child's start and collection and every simulation, in order."""
    real_child, real_simulate = pipeline_neurobench.NeuroBenchChild, simulators.simulate

    class Child(real_child):
        def __init__(self, *args, **kwargs):
            events.append("spawn")
            super().__init__(*args, **kwargs)

        def measure(self, *args, **kwargs):
            events.append("measure")
            return super().measure(*args, **kwargs)

        def result(self):
            events.append("result")
            return super().result()

        def cancel(self):
            events.append("cancel")
            super().cancel()

    def simulate(*args, **kwargs):
        events.append("simulate")
        return real_simulate(*args, **kwargs)

    monkeypatch.setattr(pipeline_neurobench, "NeuroBenchChild", Child)
    monkeypatch.setattr(simulators, "simulate", simulate)


def test_spawned_first_handed_the_model_before_the_simulation_and_the_same_as_at_the_report(
    tmp_path, monkeypatch
):
    _needs_environment()
    events: list[str] = []
    _spy(monkeypatch, events)
    early = _fit(tmp_path, "early")
    assert early.exit_code == 0, early.output[-2000:]
    assert events == ["spawn", "measure", "simulate", "result"]
    # the oracle: the same run with the child started at the report (nothing spawned early)
    monkeypatch.setattr("neuroprune.pipeline.run.spawn_neurobench", lambda run: None)
    late = _fit(tmp_path, "late")
    assert late.exit_code == 0, late.output[-2000:]
    sections = [
        json.loads((tmp_path / name / "report.json").read_text())["neurobench"]
        for name in ("early", "late")
    ]
    assert sections[0]["computed"] is True
    assert sections[0] == sections[1]


def test_an_interrupt_after_the_start_stops_the_child(tmp_path, monkeypatch):
    """Ctrl-C during the simulation (after the child started): the child is stopped, the
    interrupt still ends the run (exit 130)."""
    _needs_environment()
    events: list[str] = []
    _spy(monkeypatch, events)

    def interrupted(*args, **kwargs):
        events.append("simulate")
        raise KeyboardInterrupt

    monkeypatch.setattr(simulators, "simulate", interrupted)
    result = _fit(tmp_path, "interrupted")
    assert result.exit_code == 130, result.output[-2000:]
    assert events == ["spawn", "measure", "simulate", "cancel"]


def test_without_the_environment_the_report_says_why_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROPRUNE_ENVS", str(tmp_path / "no-envs"))
    result = _fit(tmp_path, "none")
    assert result.exit_code == 0, result.output[-2000:]
    section = json.loads((tmp_path / "none" / "report.json").read_text())["neurobench"]
    assert (
        section["computed"] is False
        and "neuroprune backends install neurobench" in (section["reason"])
    )
