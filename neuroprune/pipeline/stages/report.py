"""Stage "report": report.json, report.md and the plots at the end of a run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from neuroprune.pipeline.context import _Run
from neuroprune.pipeline.neurobench import neurobench_section
from neuroprune.pipeline.stages.base import Carry, Stage
from neuroprune.reports.markdown import report_markdown
from neuroprune.reports.plots import (
    chip_partition,
    core_usage,
    layer_sparsity,
    spike_rates,
    training_curves,
)
from neuroprune.run.warnings import accuracy_gate, preflight_warnings, run_warnings


def run_report(run: _Run, carry: Carry) -> Carry:
    """Judge the run (warnings, ``--max-accuracy-drop``), draw the plots, write report.json (the
    typed :class:`RunRecord`) and report.md."""
    carry = judge(run, carry)
    files = _plots(run)
    record = run.record
    record.history = run.history
    record.plots = [str(p.relative_to(run.run_dir)) for p in files]
    record.neurobench = neurobench_section(run, carry)
    run.rundir.write_record(record, report_markdown(record))
    for plot in record.plots:
        run.rundir.mark(plot)
    run.emit("report", f"wrote report.json, report.md and {len(files)} plots")
    return carry


def judge(run: _Run, carry: Carry) -> Carry:
    """report.json ``warnings`` (:func:`neuroprune.run.warnings.run_warnings`), each also said
    in the log, and ``accuracy_gate`` when ``--max-accuracy-drop`` was given; a failed gate
    makes the run exit 1 (ran but does not meet)."""
    record = run.record
    record.warnings = run_warnings(record, run.profile)
    for warning in record.warnings:
        if warning.kind not in {w.kind for w in preflight_warnings(record)}:
            run.warn(warning, stage="report")
    if run.cfg.max_accuracy_drop is None:
        return carry
    record.accuracy_gate = accuracy_gate(record, run.cfg.max_accuracy_drop)
    if not record.accuracy_gate.passed:
        run.emit("report", record.accuracy_gate.reason)
    return replace(carry, meets=record.accuracy_gate.passed)


def _plots(run: _Run) -> list[Path]:
    """The run's plots: training curves, and per stage that ran its own figure."""
    plots, record = run.rundir.plots, run.record
    files = [training_curves(run.history, plots / "training.png")]
    if record.pruned:
        files.append(layer_sparsity(record.pruned.layers, plots / "layer_sparsity.png"))
    if record.simulation and record.simulation.layers:
        files.append(spike_rates(record.simulation.layers, plots / "spike_rates.png"))
    if record.fit:
        files.append(core_usage(record.fit.per_core, _core_limits(run), plots / "cores.png"))
        partition = getattr(record.fit, "partition", None)
        if partition and partition["chips_used"] > 1:
            files.append(chip_partition(partition, plots / "chips.png"))
    return files


def _core_limits(run: _Run) -> dict[str, int]:
    """One core's limits (plotted as the 100 % line): neurons, input axons, memory bits."""
    core = run.profile.core
    return {
        "neurons": core.neurons_max,
        "input_axons": core.input_axons_max,
        "memory_bits": core.synapse_memory_bits,
    }


REPORT = Stage("report", None, run_report)
