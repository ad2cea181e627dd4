"""``neuroprune fit --chip loihi --model detector --dataset spikecam-digits`` end to end, at a small
scale: exit 0, the exact ``--params`` budget, mAP per stage in report.json, model.nir read back
and run by the spec simulator bit-exact against the quantized torch model (and by Lava)."""

from __future__ import annotations

import json
from pathlib import Path

import nir
import pytest
from click.testing import CliRunner

from neuroprune.cli.app import main

TINY = [
    "fit",
    "--chip",
    "loihi",
    "--model",
    "detector",
    "--dataset",
    "spikecam-digits",
    "--scenes",
    "32",
    "--timesteps",
    "4",
    "--lr",
    "0.01",
    "--epochs",
    "6",
    "--prune-epochs",
    "2",
    "--finetune-epochs",
    "1",
    "--hidden",
    "6,6",
    "--neuron",
    "if",
    "--batch-size",
    "4",
]


def fit(tmp_path: Path, *extra: str):
    result = CliRunner().invoke(main, [*TINY, "--out", str(tmp_path), "--name", "d", *extra])
    report = tmp_path / "d" / "report.json"
    return result, json.loads(report.read_text()) if report.is_file() else None


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("detect")
    result, report = fit(out, "--params", "0.5", "--method", "sca+stds", "--backend", "reference")
    return result, report, out / "d"


def test_fit_runs_the_detector_end_to_end(reference_run):
    result, report, _ = reference_run
    assert result.exit_code == 0, result.output
    assert report["task"] == "detect" and report["fits"] and report["verified"]


def test_sca_stds_keeps_exactly_the_params_fraction(reference_run):
    _, report, _ = reference_run
    dense = report["dense"]["synapses"]
    assert report["budget"]["dense_synapses"] == dense
    assert report["budget"]["synapses"] == dense // 2  # floor(0.5 * dense)
    assert report["pruned"]["synapses"] == dense // 2
    assert report["quantized"]["synapses"] <= dense // 2  # quantization adds none


def test_report_gives_map_per_stage_and_the_plots(reference_run):
    _, report, run_dir = reference_run
    for stage in ("dense", "pruned", "quantized"):
        assert 0.0 <= report[stage]["map"] <= report[stage]["map_50"] <= 1.0
        assert "accuracy" not in report[stage]
    markdown = (run_dir / "report.md").read_text()
    for plot in ("plots/map_per_stage.png", "plots/detection_boxes.png"):
        assert (run_dir / plot).stat().st_size > 0 and f"({plot})" in markdown
    assert "mAP@0.5" in markdown


def test_nir_round_trip_is_bit_exact_in_the_spec_simulator(reference_run):
    _, report, run_dir = reference_run
    graph = nir.read(run_dir / "model.nir")
    assert any(isinstance(node, nir.Conv2d) for node in graph.nodes.values())
    assert (run_dir / "model.onnx").stat().st_size > 0
    sim = report["simulation"]
    assert sim["mode"] == "fixed" and sim["agreement_source"] == "reference_model"
    assert sim["spike_agreement"] == 1.0
    assert all(row["spikes_per_sample"] > 0 for row in sim["layers"])  # no silent layer


def test_unstructured_stds_keeps_exactly_the_params_fraction(tmp_path):
    result, report = fit(tmp_path, "--params", "0.2", "--method", "stds", "--backend", "none")
    assert result.exit_code == 0, result.output
    dense = report["dense"]["synapses"]
    assert report["pruned"]["synapses"] == int(0.2 * dense)
    assert report["pruned"]["params"] < report["dense"]["params"]


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--dataset", "digits"], "dataset"),
        (["--method", "gmp"], "method"),
    ],
)
def test_a_detection_run_that_cannot_be_is_one_line_exit_2(tmp_path, flags, field):
    result, report = fit(tmp_path, "--backend", "none", *flags)
    assert result.exit_code == 2, result.output
    assert field in result.output and report is None


@pytest.mark.lava
@pytest.mark.slow
def test_lava_agrees_with_the_spec_simulator_on_every_spike(tmp_path):
    result, report = fit(tmp_path, "--params", "0.5", "--method", "sca+stds", "--backend", "lava")
    assert result.exit_code == 0, result.output
    assert report["pruned"]["synapses"] == report["dense"]["synapses"] // 2
    sim = report["simulation"]
    assert sim["backend"] == "lava" and sim["agreement_source"] == "reference"
    assert sim["spike_agreement"] == 1.0
