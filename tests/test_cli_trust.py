"""Issue 25, items 1-3, through the command line: the verification kind in the console, report.md
and report.json (Loihi chip-exact, TrueNorth float stand-in); warnings and
``--max-accuracy-drop`` (exit 1 above the measured drop, 0 below); a default ``fit`` that says
before training that nothing binds and skips pruning; ``--help`` shows every default."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from neuroprune.cli.app import main

TINY = ["--hidden", "32", "--epochs", "3", "--prune-epochs", "2", "--finetune-epochs", "1"]
TINY += ["--quant-epochs", "1", "--seed", "0", "--backend", "reference"]


def fit(out, name, *args):
    argv = ["fit", "--out", str(out), "--name", name, *TINY, *args]
    return CliRunner().invoke(main, argv, env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def loihi_default(tmp_path_factory):
    """``fit --chip loihi`` with no allocation, budget or sparsity."""
    out = tmp_path_factory.mktemp("runs")
    return out / "loihi", fit(out, "loihi", "--chip", "loihi")


@pytest.fixture(scope="module")
def truenorth_pruned(tmp_path_factory):
    """``fit --chip truenorth --sparsity 0.5`` with a gate no drop can exceed."""
    out = tmp_path_factory.mktemp("runs")
    args = ("--chip", "truenorth", "--sparsity", "0.5", "--max-accuracy-drop", "100")
    return out, fit(out, "tn", *args)


def report_of(run_dir):
    return json.loads((run_dir / "report.json").read_text())


@pytest.mark.slow
def test_loihi_says_chip_exact_everywhere(loihi_default):
    run_dir, result = loihi_default
    assert result.exit_code == 0, result.output
    verification = report_of(run_dir)["simulation"]["verification"]
    assert verification["kind"] == "chip-exact" and "loihi_fixed_pt" in verification["detail"]
    assert "[chip-exact]" in result.stdout
    markdown = (run_dir / "report.md").read_text()
    assert "Verification: **chip-exact**" in markdown
    assert "ran as the chip computes it" in markdown and "ran on the chip" not in markdown


@pytest.mark.slow
def test_truenorth_says_float_stand_in_everywhere(truenorth_pruned):
    out, result = truenorth_pruned
    assert result.exit_code == 0, result.output
    report = report_of(out / "tn")
    assert report["simulation"]["verification"]["kind"] == "float stand-in"
    assert "[float stand-in]" in result.stdout
    markdown = (out / "tn" / "report.md").read_text()
    assert "Verification: **float stand-in**" in markdown
    assert "did not run as the chip computes it" in markdown and "ran on the chip" not in markdown


@pytest.mark.slow
def test_nothing_binds_is_said_before_training_and_pruning_is_skipped(loihi_default):
    run_dir, result = loihi_default
    lines = result.stdout.splitlines()
    said = next(i for i, line in enumerate(lines) if "nothing to prune" in line)
    trained = next(i for i, line in enumerate(lines) if line.startswith("dense: training"))
    assert said < trained
    assert "the dense network fits in 1 of 128 cores: nothing to prune" in lines[said]
    assert "give --cores, --budget or --sparsity" in lines[said]
    report = report_of(run_dir)
    assert report["budget"]["binds"] is False and report["budget"]["dense_cores"] == 1
    assert report["pruned"]["skipped"].startswith("nothing to prune")
    assert report["pruned"]["synapses"] == report["dense"]["synapses"]
    assert report["history"]["prune"] == [] and report["history"]["finetune"] == []
    assert (run_dir / "pruned.pt").is_file()  # later stages and --resume read it
    assert "budget_not_binding" in [w["kind"] for w in report["warnings"]]
    assert "skipped: nothing to prune" in (run_dir / "report.md").read_text()
    assert "fine-tuning epochs" not in (run_dir / "log.txt").read_text().split("quantize:")[0]


@pytest.mark.slow
def test_warnings_reach_the_console_report_md_and_report_json(truenorth_pruned):
    out, result = truenorth_pruned
    report = report_of(out / "tn")
    found = {w["kind"] for w in report["warnings"]}
    assert {"neuron_model", "encoding"} <= found  # LIF on TrueNorth; direct encoding
    assert f"Warnings ({len(report['warnings'])})" in result.stdout
    markdown = (out / "tn" / "report.md").read_text()
    assert "## Warnings" in markdown and "**neuron model**" in markdown
    assert "try --neuron if" in result.stdout


@pytest.mark.slow
def test_max_accuracy_drop_exits_1_above_the_drop_and_0_below(truenorth_pruned):
    out, result = truenorth_pruned
    drop = report_of(out / "tn")["accuracy_gate"]["drop"]  # measured by the first run
    args = ("--chip", "truenorth", "--sparsity", "0.5", "--resume", "--json")
    below = fit(out, "tn", *args, "--max-accuracy-drop", f"{drop - 0.5:.6f}")
    assert below.exit_code == 1, below.output
    assert "does not meet: ran but does not meet --max-accuracy-drop" in below.stderr
    gate = json.loads(below.stdout)["accuracy_gate"]
    assert gate["passed"] is False and gate["drop"] == pytest.approx(drop)
    above = fit(out, "tn", *args, "--max-accuracy-drop", f"{drop + 0.5:.6f}")
    assert above.exit_code == 0, above.output
    assert json.loads(above.stdout)["accuracy_gate"]["passed"] is True


def test_fit_help_shows_every_default_and_the_registries_choices():
    from neuroprune.cli.fit_command import fit as fit_command
    from neuroprune.pipeline.config import choices

    ctx = click.Context(fit_command)
    for param in fit_command.params:
        if isinstance(param, click.Option) and param.name != "help":
            record = param.get_help_record(ctx)
            assert record is not None and "[default:" in record[1], param.name
    helps = {p.name: p.help or "" for p in fit_command.params if isinstance(p, click.Option)}
    for field in ("method", "backend", "dataset", "encoding", "neuron", "scheduler", "optimizer"):
        assert f"One of: {', '.join(choices(field))}." in helps[field], field
    assert "Pruning binds only when" in helps["cores"]
    assert CliRunner().invoke(main, ["fit", "--help"]).exit_code == 0
