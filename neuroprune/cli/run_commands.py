"""Commands on a saved run: ``quantize``, ``export``, ``simulate``, ``report``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from neuroprune.cli.app import CONTEXT, _console, _torch_threads, checked, handle_errors, main
from neuroprune.cli.invocation import command_line
from neuroprune.cli.options import config_default
from neuroprune.export.formats import EXPORTERS
from neuroprune.sim.backends import SIM_BACKENDS

# ------------------------------------------------------------------------------------------
# quantize, export, simulate, report, sweep


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--chip",
    help="Quantize for another chip: writes a new run (RUN_DIR-CHIP, or --out); RUN_DIR is "
    "left as it is. [the run's chip: RUN_DIR is rebuilt]",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder of the new run. [RUN_DIR-CHIP beside RUN_DIR for another chip]",
)
@click.option(
    "--quant-epochs",
    type=click.IntRange(min=0),
    help="Quantization-aware fine-tuning epochs. [the run's]",
)
@handle_errors
def quantize(run_dir: str, chip: str | None, out_dir: str | None, quant_epochs) -> None:
    """Quantize a saved run's pruned model (pruned.pt) for a chip, then check the fit, export,
    simulate (if the run did) and report again, so that every file of the run describes the
    new quantized model. Exit codes as for fit."""
    _torch_threads()
    from neuroprune.pipeline.commands import quantize_run  # deferred: imports yaml
    from neuroprune.reports.render import (  # deferred: imports scipy
        ProgressRenderer,
        quantize_text,
        summary_text,
    )
    from neuroprune.run.rundir import RunRecord  # deferred: imports yaml

    console = _console()
    with ProgressRenderer(console) as progress:
        done = quantize_run(
            Path(run_dir),
            chip=chip,
            out=Path(out_dir) if out_dir else None,
            finetune_epochs=quant_epochs,
            progress=checked(progress),
            command=command_line(),
        )
    outcome = done.outcome
    record = RunRecord.model_validate(outcome.report)
    if record.quantized is not None:
        console.print(quantize_text(record.quantized.model_dump(mode="json")))
    console.print(summary_text(record, outcome.run_dir))
    if done.derived:
        click.echo(
            f"new run {outcome.run_dir} for {record.chip}, derived from {done.source} "
            f"(dense.pt and pruned.pt as they are); {done.source} is unchanged"
        )
    else:
        click.echo(f"rebuilt {outcome.run_dir}: every file after pruned.pt written anew")
    if outcome.error is not None:
        click.echo(f"error: {outcome.error.one_line()} (recorded in report.json)", err=True)
    sys.exit(outcome.exit_code)


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORTERS.names()),
    default="nir",
    show_default=True,
    help="Export format.",
)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Output file.")
@click.option("--dt", type=float, help="NIR: seconds per step [2**-10]; snnTorch needs 1e-4.")
@handle_errors
def export(run_dir: str, fmt: str, out_file: str | None, dt: float | None) -> None:
    """Export a run's final model: NIR, ONNX, or the vendor artifact of its chip (netx for
    Loihi/Loihi 2, pynn for SpiNNaker; `neuroprune deploy RUN` says how to run it)."""
    _torch_threads()
    from neuroprune.pipeline.commands import export_run  # deferred: imports yaml

    path = export_run(Path(run_dir), fmt, Path(out_file) if out_file else None, dt=dt)
    click.echo(f"wrote {path}")


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@handle_errors
def deploy(run_dir: str) -> None:
    """Say which artifact of a run to take to which vendor tool, and the exact commands."""
    from neuroprune.pipeline.commands import deploy_run  # deferred: imports yaml

    plan = deploy_run(Path(run_dir))
    click.echo(f"{plan.chip_name} ({plan.chip}): take {plan.artifact} to {plan.tool}")
    for number, step in enumerate(plan.steps, start=1):
        click.echo(f"{number}. {step.what}")
        if step.command:
            click.echo(f"   $ {step.command}")


@main.command(context_settings=CONTEXT)
@click.argument("target", type=click.Path())
@click.option("--chip", help="Chip profile for energy figures (default: the run's chip).")
@click.option(
    "--backend",
    type=click.Choice(SIM_BACKENDS.names()),
    default=config_default("backend"),
    show_default=True,
    help="Simulator.",
)
@click.option("--samples", type=click.IntRange(min=1), help="Test samples to simulate [all].")
@click.option(
    "--fixed-point/--floating-point",
    "fixed_point",
    default=None,
    help="Bit-accurate integer arithmetic (needs a quantized model).",
)
@click.option("--dataset", help="Dataset to feed (default: the run's, or digits).")
@click.option("--data-dir", type=click.Path())
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.99,
    show_default=True,
    help="Minimum spike agreement; below it the command exits 1.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds before the simulator is stopped.",
)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def simulate(
    target, chip, backend, samples, fixed_point, dataset, data_dir, threshold, timeout, as_json
) -> None:
    """Simulate RUN_DIR (its model.nir) or a FILE.nir and compare with the PyTorch model.

    A run simulated with its own chip and dataset records the result in the run
    (simulation.json, report.json, report.md, plots), replacing an earlier simulation."""
    _torch_threads()
    from neuroprune.pipeline.commands import simulate_command  # deferred: imports yaml
    from neuroprune.pipeline.stages.simulate import verification_passed  # deferred: imports yaml
    from neuroprune.reports.render import simulation_text  # deferred: imports scipy
    from neuroprune.run.rundir import SimulationRecord  # deferred: imports yaml

    done = simulate_command(
        Path(target),
        chip=chip,
        backend=backend,
        samples=samples,
        fixed_point=fixed_point,
        dataset=dataset,
        data_dir=data_dir,
        timeout=timeout,
        threshold=threshold,
        command=command_line(),
    )
    record = done.simulation
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
    else:
        _console().print(simulation_text(SimulationRecord.model_validate(record)))
        if done.recorded_in is not None:
            click.echo(f"recorded in {done.recorded_in} (simulation.json, report.json, report.md)")
        elif done.not_recorded:
            click.echo(f"not recorded in the run: {done.not_recorded}")
    sys.exit(0 if verification_passed(record, threshold) else 1)


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@handle_errors
def report(run_dir: str) -> None:
    """Print a run's report (report.json) as tables, or a sweep's table (a folder written by
    'neuroprune sweep', holding sweep.json)."""
    from neuroprune.sweep.results import is_sweep_dir, load_sweep  # deferred: imports yaml

    if is_sweep_dir(Path(run_dir)):
        from neuroprune.reports.render import sweep_table  # deferred: imports scipy

        sweep = load_sweep(Path(run_dir))
        _console().print(sweep_table(sweep.rows, sweep.pareto))
        click.echo(f"sweep {sweep.name}: {len(sweep.rows)} trial(s); results: {run_dir}/sweep.json")
        for plot in sweep.plots:
            click.echo(f"plot: {Path(run_dir) / plot}")
        return
    from neuroprune.pipeline.commands import load_report  # deferred: imports yaml
    from neuroprune.reports.render import summary_text  # deferred: imports scipy

    _console().print(summary_text(load_report(Path(run_dir)), Path(run_dir)))
