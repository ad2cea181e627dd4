"""End to end: `neuroprune fit` on digits with a tiny network, the run directory, report.json's
stable keys, --json, --resume, and that an interrupted run leaves earlier artifacts intact."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from neuroprune.cli.app import main

pytestmark = pytest.mark.slow  # every test here runs `neuroprune fit` end to end

TINY = [
    "--hidden",
    "32",
    "--epochs",
    "3",
    "--prune-epochs",
    "2",
    "--finetune-epochs",
    "1",
    "--quant-epochs",
    "1",
    "--seed",
    "0",
]

STABLE_KEYS = [
    "chip",
    "budget.synapses",
    "budget.source",
    "dense.accuracy",
    "dense.synapses",
    "dense.neurons",
    "pruned.accuracy",
    "pruned.synapses",
    "pruned.max_fan_in",
    "pruned.neurons",
    "quantized.accuracy",
    "quantized.format",
    "fit.fits",
    "fit.cores",
    "fit.chips",
    "fit.violations",
    "simulation.backend",
    "simulation.samples",
    "simulation.spike_agreement",
    "simulation.prediction_agreement",
    "simulation.seconds_per_sample",
    "artifacts.nir",
    "artifacts.onnx",
]


def lookup(report, dotted):
    node = report
    for part in dotted.split("."):
        assert part in node, dotted
        node = node[part]
    return node


def fit(tmp_path, *args):
    argv = ["fit", "--chip", "loihi", "--out", str(tmp_path), "--name", "run", *TINY, *args]
    return CliRunner().invoke(main, argv, env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = fit(out, "--sparsity", "0.8", "--backend", "reference", "--floating-point", "--json")
    return out / "run", result


def test_fit_writes_run_directory_and_report(reference_run):
    run_dir, result = reference_run
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # --json: report.json on stdout and nothing else
    assert report == json.loads((run_dir / "report.json").read_text())
    for key in STABLE_KEYS:
        lookup(report, key)
    assert report["pruned"]["synapses"] <= report["budget"]["synapses"]
    assert report["pruned"]["synapses"] >= 0.99 * report["budget"]["synapses"]
    assert report["quantized"]["synapses"] <= report["pruned"]["synapses"]
    assert report["dense"]["accuracy"] > 0.5
    assert report["simulation"]["spike_agreement"] == 1.0  # float reference vs SpikingJelly
    for name in (
        "config.yaml",
        "profile.yaml",
        "dense.pt",
        "pruned.pt",
        "quantized.pt",
        "model.nir",
        "model.onnx",
        "fit.json",
        "simulation.json",
        "report.md",
        "log.txt",
        "plots/training.png",
    ):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".*")), "temporary files left behind"


def test_nir_holds_the_pruned_synapses(reference_run):
    from neuroprune.export import count_nir_nonzero

    run_dir, _ = reference_run
    report = json.loads((run_dir / "report.json").read_text())
    assert count_nir_nonzero(run_dir / "model.nir") == report["quantized"]["synapses"]


def test_report_and_export_commands(reference_run, tmp_path):
    run_dir, _ = reference_run
    shown = CliRunner().invoke(main, ["report", str(run_dir)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "FITS" in shown.stdout
    onnx_file = tmp_path / "m.onnx"
    exported = CliRunner().invoke(
        main, ["export", str(run_dir), "--format", "onnx", "--out", str(onnx_file)]
    )
    assert exported.exit_code == 0 and onnx_file.is_file()


def test_resume_reuses_stages_and_interruption_keeps_artifacts(reference_run, monkeypatch):
    run_dir, _ = reference_run
    pruned_before = (run_dir / "pruned.pt").read_bytes()
    report_before = (run_dir / "report.json").read_bytes()

    import neuroprune.quantize as quantize

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quantize, "quantize_model", interrupted)
    (run_dir / "quantized.pt").unlink()
    result = fit(run_dir.parent, "--sparsity", "0.8", "--backend", "reference", "--resume")
    assert result.exit_code == 130
    partial = run_dir.parent / ".run.staging"  # the partial run, beside the run it would replace
    assert "reused dense.pt" in (partial / "log.txt").read_text()
    assert (run_dir / "pruned.pt").read_bytes() == pruned_before  # not rewritten, not destroyed
    assert (run_dir / "report.json").read_bytes() == report_before
    assert not list(run_dir.glob(".*")), "temporary files left behind"


@pytest.mark.lava
def test_fit_on_lava_fixed_point(tmp_path):
    result = fit(tmp_path, "--cores", "1", "--samples", "60", "--json")
    assert result.exit_code == 0, result.stderr
    sim = json.loads(result.stdout)["simulation"]
    assert sim["backend"] == "lava" and sim["mode"] == "fixed"
    assert sim["spike_agreement"] == 1.0 and sim["agreement_source"] == "reference"
    assert sim["model_prediction_agreement"] is not None
