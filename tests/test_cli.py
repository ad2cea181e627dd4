"""CLI: profiles commands and the bad-input contract (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from neuroprune.cli.app import main
from neuroprune.run.rundir import BudgetRecord, RunDir, RunRecord, StageRecord


def run(*args):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


def one_line_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output + result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_profiles_list_shows_every_chip():
    result = run("profiles", "list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert len(rows) >= 11
    assert {"loihi", "truenorth", "spinnaker", "tianjic", "dynapse", "speck"} <= {
        r["chip"] for r in rows
    }
    table = run("profiles", "list")
    assert table.exit_code == 0 and "loihi" in table.output


def test_profiles_show_and_validate(tmp_path):
    shown = run("profiles", "show", "truenorth")
    assert shown.exit_code == 0 and "core.neurons_max" in shown.output
    ok = run("profiles", "validate", "examples/mychip.yaml")
    assert ok.exit_code == 0 and "valid" in ok.output


def test_unknown_chip_suggests():
    one_line_error(run("check", "--chip", "lohi"), "lohi", "loihi")


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nchip: [1, 2\n")
    one_line_error(run("profiles", "validate", str(bad)), str(bad), "line")


def test_profile_missing_field_and_negative_cores(tmp_path):
    text = Path("examples/mychip.yaml").read_text()
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace("neurons_max", "neurons_mx", 1))
    one_line_error(run("profiles", "validate", str(missing)), str(missing), "neurons_max")
    import yaml

    raw = yaml.safe_load(text)
    cores = raw["chip"]["cores"]
    if isinstance(cores, dict):
        cores["value"] = -4
    else:
        raw["chip"]["cores"] = -4
    negative = tmp_path / "negative.yaml"
    negative.write_text(yaml.safe_dump(raw))
    one_line_error(run("check", "--chip", str(negative)), "chip.cores", "-4")


def test_unknown_dataset():
    one_line_error(run("check", "--chip", "loihi", "--dataset", "mnits"), "mnits", "mnist")


def test_missing_data_files(tmp_path):
    one_line_error(
        run("check", "--chip", "loihi", "--dataset", "mnist", "--data-dir", str(tmp_path)),
        "train-images-idx3-ubyte",
    )


def test_missing_model_factory(tmp_path):
    f = tmp_path / "net.py"
    f.write_text("def other(**kw):\n    return None\n")
    one_line_error(run("check", "--chip", "loihi", "--model", f"{f}:make"), "make")


def test_unknown_config_key_writes_nothing(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("epocs: 2\n")
    out = tmp_path / "runs"
    one_line_error(run("fit", "--config", str(cfg), "--out", str(out)), "epocs", "epochs")
    assert not out.exists()


def test_impossible_budget_stops_before_training(tmp_path):
    out = tmp_path / "runs"
    one_line_error(run("fit", "--chip", "loihi", "--budget", "3", "--out", str(out)), "budget")
    assert not out.exists()


def test_verbose_shows_traceback():
    result = CliRunner().invoke(main, ["-v", "check", "--chip", "lohi"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_check_verdict_exit_codes():
    fits = run("check", "--chip", "loihi")
    assert fits.exit_code == 0, fits.output
    assert "FITS" in fits.output
    tight = run("check", "--chip", "dynapse")  # 64-input neurons only: dense mlp breaks fan-in
    assert tight.exit_code == 1, tight.output
    assert "fan_in" in tight.output


@pytest.mark.parametrize("cmd", [["--help"], ["fit", "--help"], ["simulate", "--help"]])
def test_help(cmd):
    assert run(*cmd).exit_code == 0


def test_report_prints_the_typed_record_of_a_saved_run(tmp_path):
    record = RunRecord(chip="loihi", budget=BudgetRecord(synapses=900, source="cores"))
    record.pruned = StageRecord(accuracy=0.9, synapses=900, neurons=42, max_fan_in=30)
    record.stages_not_run = ["simulation (--backend none)"]
    RunDir(tmp_path).write_record(record, "")
    result = run("report", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "budget 900 (cores), max fan-in 30" in result.output and "90.00 %" in result.output
    (tmp_path / "report.json").write_text(json.dumps({"chip": "loihi", "budget": {}}))
    one_line_error(run("report", str(tmp_path)), "report.json", "budget.synapses")
