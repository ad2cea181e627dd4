"""Report assembly: report.json, report.md and the plots at the end of a run."""

from __future__ import annotations

from neuroprune.pipeline.context import _Run
from neuroprune.reports.markdown import report_markdown
from neuroprune.reports.plots import (
    chip_partition,
    core_usage,
    layer_sparsity,
    spike_rates,
    training_curves,
)
from neuroprune.run.rundir import RunRecord


def _finish_report(run: _Run) -> None:

    plots = run.rundir.plots
    files = [training_curves(run.history, plots / "training.png")]
    if run.report.get("pruned"):
        files.append(layer_sparsity(run.report["pruned"]["layers"], plots / "layer_sparsity.png"))
    sim = run.report.get("simulation") or {}
    if sim.get("layers"):
        files.append(spike_rates(sim["layers"], plots / "spike_rates.png"))
    if run.report.get("fit"):
        core = run.profile.core
        limits = {
            "neurons": core.neurons_max,
            "input_axons": core.input_axons_max,
            "memory_bits": core.synapse_memory_bits,
        }
        files.append(core_usage(run.report["fit"]["per_core"], limits, plots / "cores.png"))
        partition = run.report["fit"].get("partition")
        if partition and partition["chips_used"] > 1:
            files.append(chip_partition(partition, plots / "chips.png"))
    run.report["history"] = run.history
    run.report["plots"] = [str(p.relative_to(run.run_dir)) for p in files]
    record = RunRecord.model_validate(run.report)
    run.report = record.as_dict()
    run.rundir.write_record(record, report_markdown(run.report))
    for plot in run.report["plots"]:
        run.rundir.mark(plot)
    run.emit("report", f"wrote report.json, report.md and {len(files)} plots")
