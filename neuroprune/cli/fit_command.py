"""``neuroprune fit``: its options (shared with ``sweep``) and the command."""

from __future__ import annotations

import json
import sys

import click

from neuroprune.cli.app import (
    CONTEXT,
    _console,
    _err_console,
    _torch_threads,
    checked,
    handle_errors,
    main,
)
from neuroprune.cli.invocation import command_line
from neuroprune.cli.options import chip_help, fit_option, model_help
from neuroprune.pipeline.config import resolve_config, scheduled_methods
from neuroprune.train import distributed

# ------------------------------------------------------------------------------------------
# fit


FIT_OPTIONS = [
    fit_option("--chip", field="chip", help=chip_help()),
    fit_option(
        "--chips",
        field="chips",
        type=int,
        help="Chips allocated; the budget is what they hold.",
        default_text="1",
    ),
    fit_option(
        "--cores",
        field="cores",
        type=int,
        help="Cores allocated; the budget is what they hold. Pruning binds only when "
        "--cores, --chips, --budget or --sparsity asks for fewer synapses than the dense "
        "network has; otherwise nothing is pruned (the run says so before training).",
        default_text="every core of the chips",
    ),
    fit_option(
        "--budget",
        field="budget",
        type=int,
        help="Synapse budget B (nonzero synapses).",
        default_text="what the allocated cores hold",
    ),
    fit_option(
        "--sparsity",
        field="sparsity",
        type=float,
        help="Fraction of synapses to remove (0..1).",
        default_text="none: the budget sets it",
    ),
    fit_option(
        "--params",
        field="params",
        type=float,
        help="Fraction of the dense network's synapses (parameters) to keep (0..1]; the "
        "smallest of it and the synapse budget wins.",
        default_text="none: the budget sets it",
    ),
    fit_option(
        "--scenes",
        field="scenes",
        type=int,
        help="Detection (spikecam-digits): training scenes generated (test: a quarter, >= 4).",
        default_text="512",
    ),
    fit_option("--model", field="model", help=model_help()),
    fit_option(
        "--hidden",
        field="hidden",
        help="Hidden widths (mlp) or channels, e.g. 128 or 128,64.",
        default_text="by model",
    ),
    fit_option(
        "--neuron",
        field="neuron",
        help="Neuron model of the built-in models (auto: each one the chip runs is trained, "
        "pruned and quantized; the deployed model best on validation is kept).",
    ),
    fit_option("--dataset", field="dataset", help="Dataset."),
    fit_option(
        "--data-dir",
        field="data_dir",
        type=click.Path(),
        help="Folder holding the dataset files.",
        default_text="none: digits is built in, other datasets need one",
    ),
    fit_option("--method", field="method", help="Pruning method (or METHOD-SCHEDULER)."),
    fit_option(
        "--scheduler",
        field="scheduler",
        help=f"Threshold scheduler of {', '.join(scheduled_methods())}.",
        default_text="by method",
    ),
    fit_option(
        "--epochs", field="epochs", type=int, help="Dense training epochs.", default_text="by model"
    ),
    fit_option("--prune-epochs", field="prune_epochs", type=int, help="Pruning epochs."),
    fit_option(
        "--finetune-epochs",
        field="finetune_epochs",
        type=int,
        help="Fine-tuning epochs with the mask frozen.",
    ),
    fit_option(
        "--quant-epochs",
        field="quant_epochs",
        type=int,
        help="Most quantization-aware fine-tuning epochs: stops early when the accuracy on "
        "the validation part stops improving (the log says how many ran).",
    ),
    fit_option(
        "--timesteps",
        field="timesteps",
        type=int,
        help="Time steps T per sample.",
        default_text="by model",
    ),
    fit_option(
        "--encoding",
        field="encoding",
        help="Input encoding (event datasets take events).",
        default_text="direct, or events for event data",
    ),
    fit_option(
        "--event-binning",
        field="event_binning",
        help="Event frames: equal time or equal event count bins.",
    ),
    fit_option(
        "--event-downsample",
        field="event_downsample",
        type=int,
        help="Spatial factor f: a side W becomes ceil(W/f).",
    ),
    fit_option(
        "--event-polarity",
        field="event_polarity",
        help="Event polarities: both (2 channels), merged, or one.",
    ),
    fit_option(
        "--event-window",
        field="event_window",
        help="Keep events START:STOP ms after the first one.",
        default_text="all",
    ),
    fit_option(
        "--batch-size", field="batch_size", type=int, help="Batch size.", default_text="by model"
    ),
    fit_option("--lr", field="lr", type=float, help="Learning rate.", default_text="by model"),
    fit_option("--optimizer", field="optimizer", help="Optimizer."),
    fit_option("--seed", field="seed", type=int, help="Random seed."),
    fit_option("--backend", field="backend", help="Simulator for verification."),
    fit_option(
        "--samples",
        field="samples",
        type=int,
        help="Test samples to simulate.",
        default_text="all",
    ),
    fit_option(
        "--sim-timeout",
        field="sim_timeout",
        type=float,
        help="Seconds before the Lava simulation is stopped.",
        default_text="scaled from the network's measured cost",
    ),
    fit_option(
        "--fixed-point/--floating-point",
        "fixed_point",
        field="fixed_point",
        default=None,
        help="Simulate the chip's integer arithmetic.",
        default_text="fixed point where the chip's profile declares neuron.arithmetic",
    ),
    fit_option(
        "--max-accuracy-drop",
        field="max_accuracy_drop",
        type=float,
        metavar="PTS",
        help="Exit 1 (ran but does not meet) when the deployed model (quantized, as simulated) "
        "loses more than PTS points of test accuracy against the pruned float model.",
        default_text="no limit",
    ),
    fit_option(
        "--neurobench/--no-neurobench",
        "neurobench",
        field="neurobench",
        default=None,
        help="Measure the final model with NeuroBench 2.3.0 (its environment: `neuroprune "
        "backends install neurobench`) for report.json neurobench and report.md.",
        default_text="on; without the environment the report says why not",
        envvar="NEUROPRUNE_NEUROBENCH",
        show_envvar=True,
    ),
    fit_option(
        "--nir-dt",
        field="nir_dt",
        type=float,
        help="Seconds per step written to model.nir; snnTorch needs 1e-4. "
        "With --from: the step of a file that does not state one.",
        default_text="2**-10",
    ),
    fit_option(
        "--from",
        "from_nir",
        field="from_nir",
        type=click.Path(dir_okay=False),
        help="Start from this NIR graph (e.g. exported by snnTorch or Norse).",
        default_text="none: build --model",
    ),
    fit_option(
        "--train-dense",
        field="train_dense",
        is_flag=True,
        default=None,
        help="With --from: train the imported network before pruning.",
    ),
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="YAML file of options; command-line options override it.  [default: none]",
    ),
    fit_option("--out", field="out", help="Parent folder of runs."),
    fit_option(
        "--name",
        field="name",
        help="Run name (folder under --out).",
        default_text="CHIP-MODEL-METHOD-sSEED",
    ),
    fit_option(
        "--resume",
        field="resume",
        is_flag=True,
        default=None,
        help="Continue from the last completed stage.",
    ),
    fit_option("--device", field="device", help="Training device."),
    fit_option(
        "--nproc",
        field="nproc",
        type=int,
        help="Training processes (DDP, launched with torchrun).",
    ),
]


def fit_options(fn):
    for option in reversed(FIT_OPTIONS):
        fn = option(fn)
    return fn


@main.command(context_settings=CONTEXT)
@fit_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print report.json on stdout, nothing else.  [default: off]",
)
@handle_errors
def fit(config_file, as_json, **options) -> None:
    """Train, prune to the chip's budget, quantize, export, simulate on Lava and report.

    Exit 0 when the network fits and verification passed, 1 when it does not fit, the
    simulation disagrees with the model or the deployed model loses more than
    --max-accuracy-drop, 2 on bad input, 3 when a backend is unavailable or
    the simulator failed (report.json is still written), 4 on a file-system fault.
    `--nproc N` trains in N processes (same as `torchrun --nproc-per-node N -m neuroprune fit`).
    """
    cfg = resolve_config(config_file, options)  # bad input is answered before any launch
    if cfg.nproc > 1 and not distributed.launched_by_torchrun():
        sys.exit(distributed.launch(cfg.nproc, sys.argv[1:]))
    _torch_threads()

    from neuroprune.pipeline.run import run_fit  # deferred: imports yaml
    from neuroprune.reports.render import ProgressRenderer, summary_text  # deferred: imports scipy
    from neuroprune.run.rundir import RunRecord  # deferred: imports yaml

    console = _err_console() if as_json else _console()
    quiet = as_json or not distributed.is_main()  # under torchrun only rank 0 prints
    with ProgressRenderer(console, quiet=quiet) as progress:
        outcome = run_fit(cfg, progress=checked(progress), command=command_line())
    if not distributed.is_main():
        sys.exit(0)
    if as_json:
        click.echo(json.dumps(outcome.report, indent=2, default=str))
        gate = outcome.report.get("accuracy_gate") or {}
        if gate.get("reason"):
            click.echo(f"does not meet: {gate['reason']}", err=True)
    elif outcome.report.get("task") == "detect":
        from neuroprune.pipeline.detect_fit import detection_summary  # deferred: imports yaml

        console.print(detection_summary(outcome.report, outcome.run_dir))
    else:
        console.print(summary_text(RunRecord.model_validate(outcome.report), outcome.run_dir))
    if outcome.error is not None:
        click.echo(f"error: {outcome.error.one_line()} (recorded in report.json)", err=True)
    sys.exit(outcome.exit_code)
