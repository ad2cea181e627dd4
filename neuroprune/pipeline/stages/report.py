"""Stage "report": report.json, report.md and the plots at the end of a run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from neuroprune.pipeline.context import _Run
from neuroprune.pipeline.deployment import checksums, resolved_settings
from neuroprune.pipeline.neurobench import neurobench_section
from neuroprune.pipeline.stages.base import Carry, Stage
from neuroprune.reports.markdown import report_markdown
from neuroprune.reports.plots import (
    chip_partition,
    core_map,
    layer_synapses,
    spike_rates,
    training_curves,
)
from neuroprune.run.record import DeploymentRecord
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
    record_deployment(run)
    run.rundir.write_record(record, report_markdown(record))
    for plot in record.plots:
        run.rundir.mark(plot)
    run.emit("report", f"wrote report.json, report.md and {len(files)} plots")
    return carry


def record_deployment(run: _Run) -> None:
    """report.json ``deployment``: the settings resolved (:func:`resolved_settings`) and the
    checksums of the run's files as written now (the command line and provenance were
    recorded when the run started)."""
    record = run.record
    deployment = record.deployment or DeploymentRecord()
    deployment.resolved = resolved_settings(run.cfg, record, run.profile, run_name(run.run_dir))
    deployment.artifacts = checksums(run.run_dir)
    record.deployment = deployment


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


def run_name(path: Path) -> str:
    """The run's folder name as published: ``runs/.NAME.staging`` (a fit being built) and
    ``runs/.NAME.update`` (a command rebuilding a run) are run NAME."""
    name = path.name
    for suffix in (".staging", ".update"):
        if name.startswith(".") and name.endswith(suffix):
            return name[1 : -len(suffix)]
    return name


def plot_title(run: _Run, what: str) -> str:
    """Every plot's title: what it shows, the chip and the run."""
    chip = run.record.chip_name or run.profile.name
    return f"{what} — {chip} ({run.profile.id}), run {run_name(run.run_dir)}"


def _plots(run: _Run) -> list[Path]:
    """The run's plots: training curves, and per stage that ran its own figure."""
    plots, record = run.rundir.plots, run.record
    files = [
        training_curves(
            run.history,
            plots / "training.png",
            title=plot_title(run, "Test accuracy through the stages"),
            quantized=record.quantized,
        )
    ]
    if record.pruned:
        stored = record.quantized.stored_layers if record.quantized is not None else []
        files.append(
            layer_synapses(
                record.pruned.layers,
                stored,
                record.budget.synapses,
                plots / "layer_synapses.png",
                title=plot_title(run, "Synapses per layer as the chip stores them"),
            )
        )
    if record.simulation and record.simulation.layers:
        files.append(
            spike_rates(
                record.simulation.layers,
                plots / "spike_rates.png",
                title=plot_title(run, "Spike rates (simulated)"),
            )
        )
    if record.fit:
        fit = record.fit
        bound = getattr(fit, "cores_lower_bound", None)
        resource = fit.cores_set_by.resource.replace("_", " ") if fit.cores_set_by else None
        set_by = f", set by {resource}" if resource else ""  # input_axons: input axons
        files.append(
            core_map(
                fit.per_core,
                getattr(fit, "placements", []),
                _core_limits(run),
                plots / "cores.png",
                title=plot_title(
                    run,
                    f"{fit.cores} core(s) used of {fit.cores_allocated}"
                    + (f" (lower bound {bound}{set_by})" if bound is not None else ""),
                ),
            )
        )
        partition = getattr(fit, "partition", None)
        if partition and partition["chips_used"] > 1:
            files.append(
                chip_partition(
                    partition, plots / "chips.png", title=plot_title(run, "Chips and links")
                )
            )
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
