"""``neuroprune fit``: its options (shared with ``sweep``) and the command."""

from __future__ import annotations

import json
import sys

import click

from neuroprune.cli.app import CONTEXT, _console, _err_console, _torch_threads, handle_errors, main
from neuroprune.train import distributed

# ------------------------------------------------------------------------------------------
# fit


FIT_OPTIONS = [
    click.option("--chip", help="Chip id or alias, or a path to a profile YAML [loihi]."),
    click.option("--chips", type=int, help="Chips allocated; the budget is what they hold."),
    click.option("--cores", type=int, help="Cores allocated; the budget is what they hold."),
    click.option("--budget", type=int, help="Synapse budget B (nonzero synapses)."),
    click.option("--sparsity", type=float, help="Fraction of synapses to remove (0..1)."),
    click.option("--model", help="mlp, conv, sew, or FILE.py:FACTORY [mlp]."),
    click.option("--hidden", help="Hidden widths for mlp, e.g. 128 or 128,64."),
    click.option("--neuron", help="lif or if (neuron model of the built-in models) [lif]."),
    click.option(
        "--dataset", help="digits, mnist, fashion-mnist, cifar10, nmnist, dvsgesture, shd [digits]."
    ),
    click.option("--data-dir", type=click.Path(), help="Folder holding the dataset files."),
    click.option("--method", help="stds, slats, lats, pgh, gradr, gmp, magnitude, sca [stds]."),
    click.option("--scheduler", help="Threshold scheduler for stds: sine or linear [sine]."),
    click.option("--epochs", type=int, help="Dense training epochs."),
    click.option("--prune-epochs", type=int, help="Pruning epochs."),
    click.option("--finetune-epochs", type=int, help="Fine-tuning epochs with the mask frozen."),
    click.option("--quant-epochs", type=int, help="Quantization-aware fine-tuning epochs."),
    click.option("--timesteps", type=int, help="Time steps T per sample."),
    click.option(
        "--encoding", help="Images: direct, poisson or latency [direct]; event data: events."
    ),
    click.option(
        "--event-binning", help="Event frames: equal time or equal event count bins [time]."
    ),
    click.option(
        "--event-downsample", type=int, help="Spatial factor f: a side W becomes ceil(W/f) [1]."
    ),
    click.option("--event-polarity", help="both (2 channels), merge, on or off [both]."),
    click.option("--event-window", help="Keep events START:STOP ms after the first one."),
    click.option("--batch-size", type=int),
    click.option("--lr", type=float, help="Learning rate."),
    click.option("--seed", type=int),
    click.option("--backend", help="Simulator for verification: lava, reference or none."),
    click.option("--samples", type=int, help="Test samples to simulate (default: all)."),
    click.option(
        "--sim-timeout",
        type=float,
        help="Seconds before the Lava simulation is stopped [scaled from the network's "
        "measured cost].",
    ),
    click.option(
        "--fixed-point/--floating-point",
        "fixed_point",
        default=None,
        help="Simulate the chip's integer arithmetic (default when the format is loihi).",
    ),
    click.option(
        "--nir-dt",
        type=float,
        help="Seconds per step written to model.nir [2**-10]; snnTorch needs 1e-4. "
        "With --from: the step of a file that does not state one.",
    ),
    click.option(
        "--from",
        "from_nir",
        type=click.Path(dir_okay=False),
        help="Start from this NIR graph (e.g. exported by snnTorch or Norse).",
    ),
    click.option(
        "--train-dense",
        is_flag=True,
        default=None,
        help="With --from: train the imported network before pruning.",
    ),
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="YAML file of options; command-line options override it.",
    ),
    click.option("--out", help="Parent folder of runs [runs]."),
    click.option("--name", help="Run name (folder under --out)."),
    click.option(
        "--resume", is_flag=True, default=None, help="Continue from the last completed stage."
    ),
    click.option("--device", help="cpu or cuda."),
    click.option("--nproc", type=int, help="Training processes (DDP, launched with torchrun) [1]."),
]


def fit_options(fn):
    for option in reversed(FIT_OPTIONS):
        fn = option(fn)
    return fn


@main.command(context_settings=CONTEXT)
@fit_options
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout, nothing else.")
@handle_errors
def fit(config_file, as_json, **options) -> None:
    """Train, prune to the chip's budget, quantize, export, simulate on Lava and report.

    Exit 0 when the network fits and verification passed, 1 when it does not fit or the
    simulation disagrees with the model, 2 on bad input, 3 when a backend is unavailable or
    the simulator failed (report.json is still written), 4 on a file-system fault.
    `--nproc N` trains in N processes (same as `torchrun --nproc-per-node N -m neuroprune fit`).
    """
    from neuroprune.pipeline.config import resolve_config  # deferred: imports yaml

    cfg = resolve_config(config_file, options)  # bad input is answered before any launch
    if cfg.nproc > 1 and not distributed.launched_by_torchrun():
        sys.exit(distributed.launch(cfg.nproc, sys.argv[1:]))
    _torch_threads()
    from neuroprune.pipeline.run import run_fit  # deferred: imports yaml
    from neuroprune.reports.render import ProgressRenderer, summary_text  # deferred: imports scipy

    console = _err_console() if as_json else _console()
    quiet = as_json or not distributed.is_main()  # under torchrun only rank 0 prints
    with ProgressRenderer(console, quiet=quiet) as progress:
        outcome = run_fit(cfg, progress=progress)
    if not distributed.is_main():
        sys.exit(0)
    if as_json:
        click.echo(json.dumps(outcome.report, indent=2, default=str))
    else:
        console.print(summary_text(outcome.report, outcome.run_dir))
    if outcome.error is not None:
        click.echo(f"error: {outcome.error.one_line()} (recorded in report.json)", err=True)
    sys.exit(outcome.exit_code)
