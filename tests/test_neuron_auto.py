"""``fit --neuron auto`` (issue 23, item 4): every neuron model the chip runs goes through dense,
prune and quantize; the one whose deployed model validates best is kept, recorded in
report.json / report.md / the summary, and only its files are in the run."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from fit_args import neuron_of, tiny_fit_args

from neuroprune.cli.app import main
from neuroprune.pipeline.stages import quantize as quantize_stage
from neuroprune.run.rundir import RunDir


def _forced_validation(monkeypatch, figures: dict[str, float]) -> None:
    """Every quantization of a ``lif`` (``if``) pruned model reports ``figures[neuron]`` as its
    validation accuracy after PTQ, with the QAT reverted: the deployed model's validation
    figure is then ``figures[neuron]``, whatever the tiny training made."""
    original = quantize_stage.quantize_pruned

    def forced(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        value = figures[neuron_of(model)]
        result.qat.update(val_ptq=value, val_qat=value - 0.01, decision="reverted")
        return result

    monkeypatch.setattr(quantize_stage, "quantize_pruned", forced)


def _fit(tmp_path, *options: str):
    args = ["fit", *options, "--backend", "reference"]
    args += [*tiny_fit_args(), "--out", str(tmp_path), "--name", "run"]
    return CliRunner().invoke(main, args, env={"COLUMNS": "300"})


@pytest.mark.parametrize(
    ("figures", "chosen", "rule"),
    [
        ({"lif": 0.50, "if": 0.75}, "if", "best deployed model on validation"),
        ({"lif": 0.75, "if": 0.50}, "lif", "best deployed model on validation"),
        ({"lif": 0.60, "if": 0.60}, "lif", "tie on validation"),
    ],
)
def test_the_neuron_that_validates_best_is_chosen_and_only_its_files_are_kept(
    tmp_path, monkeypatch, figures, chosen, rule
):
    _forced_validation(monkeypatch, figures)
    result = _fit(tmp_path, "--chip", "truenorth", "--neuron", "auto")
    assert result.exit_code in (0, 1), result.output
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    choice = report["neuron_choice"]
    assert choice["chosen"] == chosen and choice["asked"] == "auto"
    assert rule in choice["rule"]
    assert {n: c["val_deployed"] for n, c in choice["candidates"].items()} == figures
    # the run is a run of the chosen neuron: its config and every model file
    assert report["config"]["neuron"] == chosen
    assert f"neuron: {chosen}\n" in (run / "config.yaml").read_text()
    for stage in ("dense", "pruned"):
        model, _ = RunDir(run).load_model(stage)
        assert neuron_of(model) == chosen, stage
    assert not [p for p in run.rglob("*") if "candidate" in p.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging left
    # said in report.md, the summary and the log; each candidate's stages named
    assert (
        f"Neuron model: **{chosen}**, chosen by `--neuron auto`" in (run / "report.md").read_text()
    )
    assert f"neuron: {chosen} chosen by --neuron auto: {rule}" in result.output
    log = (run / "log.txt").read_text()
    assert "dense (lif):" in log and "quantize (if):" in log
    assert f"neuron: {chosen} chosen by --neuron auto" in log


def test_the_chosen_neuron_resumes_the_run_reusing_its_models(tmp_path, monkeypatch):
    """The run of --neuron auto is a run of the chosen neuron: --resume with it reuses every
    model file (the inputs they were made with are that neuron's)."""
    _forced_validation(monkeypatch, {"lif": 0.5, "if": 0.75})
    assert _fit(tmp_path, "--chip", "truenorth", "--neuron", "auto").exit_code in (0, 1)
    result = _fit(tmp_path, "--chip", "truenorth", "--neuron", "if", "--resume")
    assert result.exit_code in (0, 1), result.output
    assert "reused dense.pt" in result.output and "reused quantized.pt" in result.output
    assert "dense: training" not in result.output


def test_a_chip_running_one_neuron_says_so(tmp_path):
    result = _fit(
        tmp_path, "--chip", "speck", "--model", "conv", "--encoding", "latency",
        "--neuron", "auto", "--hidden", "4,8",
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    choice = json.loads((tmp_path / "run" / "report.json").read_text())["neuron_choice"]
    assert choice["chosen"] == "if" and choice["candidates"] == {}
    assert list(choice["excluded"]) == ["lif"]
    lines = [line for line in result.output.splitlines() if "chosen by --neuron auto" in line]
    assert lines and "runs only if" in lines[0]
    assert "dense (lif)" not in result.output  # nothing tried for a neuron the chip lacks


def test_resume_with_auto_is_refused_in_one_line_from_the_config_file(tmp_path):
    config = tmp_path / "fit.yaml"
    config.write_text("neuron: auto\nresume: true\n")
    result = _fit(tmp_path, "--config", str(config), "--chip", "truenorth")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--neuron auto" in errors[0] and "resume" in errors[0]
    assert not (tmp_path / "run").exists()


def test_auto_for_the_detector_is_refused_in_one_line(tmp_path):
    result = _fit(
        tmp_path, "--model", "detector", "--dataset", "spikecam-digits", "--neuron", "auto"
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--neuron auto" in errors[0] and "detector" in errors[0]
    assert not (tmp_path / "run").exists()


def test_help_lists_auto_among_the_neurons():
    result = CliRunner().invoke(main, ["fit", "--help"], env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    option = text[text.index("--neuron") :].split(" --")[0]
    assert all(re.search(rf"\b{name}\b", option) for name in ("lif", "if", "auto")), option
