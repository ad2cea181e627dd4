"""The typed run record: report.json's keys and their order, the typed reader (RunDir), the
lenient read a sweep resumes from, and the reports that read the typed attributes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from neuroprune.core.errors import ArtifactError
from neuroprune.pipeline.config import RunConfig
from neuroprune.reports.markdown import report_markdown
from neuroprune.reports.render import summary_text
from neuroprune.run.rundir import (
    BudgetRecord,
    FitRecord,
    QuantizedRecord,
    RunDir,
    RunRecord,
    SavedRecord,
    SimulationRecord,
    StageRecord,
)
from neuroprune.sweep.results import trial_row

FIT = {
    "chip": "loihi",
    "fits": False,
    "cores": 2,
    "cores_allocated": 1,
    "chips": 1,
    "synapses": 1200,
    "neurons": 42,
    "violations": [
        {"rule": "cores", "layer": "1", "limit": 1, "actual": 2, "hint": "prune harder"}
    ],
    "utilisation": {"neurons": 0.5},
    "per_core": [],
}
SIMULATION = {
    "backend": "reference",
    "mode": "fixed",
    "samples": 10,
    "spike_agreement": 1.0,
    "prediction_agreement": 1.0,
    "seconds_per_sample": 0.002,
    "synops_per_sample": 9259.0,
    "notes": ["a note"],
    "layers": [{"layer": "l0", "spikes_per_sample": 3.5, "rate": 0.1, "agreement": 1.0}],
}


def _record() -> RunRecord:
    """A record built the way the stages build it: constructor keys, then assignments."""
    record = RunRecord(
        chip="loihi",
        budget=BudgetRecord(synapses=1000, source="cores"),
        chip_name="Intel Loihi",
        config={"epochs": 1},
        counting="nonzero weights",
        validation={"samples": 20, "train_samples": 180, "seed": 0, "rule": "r", "digest": "ab"},
    )
    layer = {
        "layer": "1",
        "neurons": 32,
        "synapses": 900,
        "dense": 2048,
        "sparsity": 0.56,
        "max_fan_in": 40,
        "mean_fan_in": 28.1,
    }
    record.dense = StageRecord(accuracy=0.9, synapses=2048, neurons=42, layers=[layer])
    record.pruned = StageRecord(
        accuracy=0.88, synapses=900, neurons=42, max_fan_in=40, layers=[layer], method="gmp"
    )
    record.quantized = QuantizedRecord(
        accuracy=0.87,
        synapses=890,
        neurons=42,
        format="loihi",
        chip="loihi",
        accuracy_float=0.88,
        accuracy_ptq=0.86,
        accuracy_qat=0.87,
        arithmetic=None,
        qat={"decision": "kept", "val_ptq": 0.8, "val_qat": 0.9, "val_samples": 20},
        layers=[{"layer": "1", "weight_scale": 0.01, "clipped_fraction": 0.0}],
        notes=["n"],
    )
    record.fit = FitRecord(**FIT)
    record.simulation = SimulationRecord(**SIMULATION)
    record.history = {"dense": []}
    record.plots = ["plots/training.png"]
    return record


def test_keys_keep_the_order_they_were_written_and_unset_options_stay_out():
    data = _record().as_dict()
    assert list(data)[:11] == [
        "record_version",
        "chip",
        "budget",
        "dense",
        "pruned",
        "quantized",
        "fit",
        "simulation",
        "artifacts",
        "stages_not_run",
        "errors",
    ]
    assert list(data)[11:] == ["chip_name", "config", "counting", "validation", "history", "plots"]
    assert list(data["fit"])[:5] == ["fits", "cores", "chips", "violations", "chip"]
    assert "accuracy" not in data["simulation"]  # a reader field the stage did not write
    assert "model_agreement" not in data["simulation"]
    assert data["dense"].get("max_fan_in", "absent") is None  # a stable key: always written
    assert list(data["pruned"]["layers"][0])[:2] == ["layer", "neurons"]  # a row: as given
    assert (
        "layer" in data["quantized"]["layers"][0]
        and "max_abs_error" not in data["quantized"]["layers"][0]
    )
    bare = RunRecord(chip="c", budget=BudgetRecord(synapses=1, source="s")).as_dict()
    assert "plots" not in bare and "chip_name" not in bare and bare["fit"] is None


def test_a_saved_record_reads_back_byte_identical(tmp_path):
    rundir = RunDir(tmp_path)
    rundir.write_record(_record(), "md")
    first = (tmp_path / "report.json").read_text()
    loaded = rundir.load_record()
    assert loaded.fit is not None and loaded.fit.violations[0].actual == 2
    assert loaded.quantized is not None and loaded.quantized.qat.decision == "kept"
    assert loaded.pruned is not None and loaded.pruned.layers[0].dense == 2048
    assert loaded.simulation is not None and loaded.simulation.layers[0].rate == 0.1
    rundir.write_record(loaded, "md")
    assert (tmp_path / "report.json").read_text() == first


def test_a_corrupt_or_off_schema_record_is_one_line(tmp_path):
    rundir = RunDir(tmp_path)
    with pytest.raises(ArtifactError, match="no report.json"):
        rundir.load_record()
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        rundir.load_record()
    (tmp_path / "report.json").write_text(json.dumps({"chip": "c", "budget": {"synapses": 1}}))
    with pytest.raises(ArtifactError, match="record schema") as err:
        rundir.load_record()
    assert err.value.field == "budget.source"


def test_reports_render_a_full_and_a_bare_record():
    text = report_markdown(_record())
    assert text.startswith("# neuroprune run on Intel Loihi\n")
    assert "Verdict: **does not fit** — 2 core(s) used of 1 allocated" in text
    assert "| cores | 1 | 1 | 2 | prune harder |" in text
    assert "Fine-tuning kept on the validation part (20 training samples held out before" in text
    assert "Validation: 20 of 200 training samples held out before any training" in text
    assert "Synaptic operations per sample: 9259; no energy estimate recorded." in text
    assert "![plots/training.png](plots/training.png)" in text
    bare = RunRecord(chip="c", budget=BudgetRecord(synapses=1, source="s"))
    assert report_markdown(bare).startswith("# neuroprune run on c\n")
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(summary_text(_record(), Path("runs/x")))
    shown = console.export_text()
    assert "DOES NOT FIT on loihi" in shown and "simulation (reference, fixed)" in shown


def test_a_partial_record_counts_for_the_sweep_and_a_broken_one_does_not(tmp_path):
    rundir = RunDir(tmp_path)
    assert rundir.saved_record() is None
    (tmp_path / "report.json").write_text(json.dumps({"fit": {"fits": True}, "config": {}}))
    saved = rundir.saved_record()
    assert saved is not None and saved.fit is not None and saved.fit.fits is True
    (tmp_path / "report.json").write_text(json.dumps({"fit": "yes"}))
    assert rundir.saved_record() is None
    (tmp_path / "report.json").write_text("[1, 2]")
    assert rundir.saved_record() is None


def test_a_trial_row_reads_the_deployed_model_from_a_typed_record(tmp_path):
    config = RunConfig(chip="loihi", out=str(tmp_path))
    record = SavedRecord.model_validate(_record().as_dict())
    row = trial_row("t", config, record, "done", None)
    assert (row["accuracy"], row["synapses"], row["budget"]) == (0.87, 890, 1000)
    assert (row["cores"], row["fits"], row["dense_accuracy"]) == (2, False, 0.9)
    empty = trial_row("t", config, None, "failed", "boom")
    assert empty["accuracy"] is None and empty["fits"] is None and empty["error"] == "boom"
