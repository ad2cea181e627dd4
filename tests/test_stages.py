"""The fit run's stage list, the progress event type, the run record's typed sections."""

from __future__ import annotations

from neuroprune.core.progress import ProgressEvent, emit
from neuroprune.pipeline.stages import STAGES
from neuroprune.run.rundir import RunDir, RunRecord


def test_stages_run_in_the_order_of_the_pipeline_diagram():
    names = [stage.name for stage in STAGES]
    assert names == ["dense", "prune", "quantize", "fit", "export", "simulate", "report"]
    sections = [stage.section for stage in STAGES]
    assert sections[:-1] == ["dense", "pruned", "quantized", "fit", "artifacts", "simulation"]
    assert all(s is None or s in RunRecord.model_fields for s in sections)


def test_only_the_training_stages_run_on_torchrun_workers():
    runs_on_workers = [stage.name for stage in STAGES if stage.on_workers(object())]
    assert runs_on_workers == ["dense", "prune"]  # quantize only for a Sequential chain


def test_a_progress_event_reads_like_the_dict_it_replaces():
    events: list[ProgressEvent] = []
    emit(events.append, stage="dense", advance=1, epoch=2, loss=0.5)
    emit(None, stage="ignored")  # no sink: nothing happens
    (event,) = events
    assert dict(event) == {"stage": "dense", "advance": 1, "epoch": 2, "loss": 0.5}
    assert "total" not in event and event.get("message", "") == ""
    assert event.tagged("prune")["stage"] == "prune"
    assert event.tagged("prune", keep=True)["stage"] == "dense"


def test_saved_report_is_none_when_absent_or_corrupt(tmp_path):
    rundir = RunDir(tmp_path)
    assert rundir.saved_report() is None
    (tmp_path / "report.json").write_text("{not json")
    assert rundir.saved_report() is None
    (tmp_path / "report.json").write_text('{"fit": null}')
    assert rundir.saved_report() == {"fit": None}
