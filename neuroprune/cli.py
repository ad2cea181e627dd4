"""Command line (layer L5): parse, call one library function, render, exit.

The only module that prints or exits. Errors from the library arrive as
:class:`neuroprune.errors.NeuropruneError` and are printed as one line (``-v`` adds the
traceback) with the error's exit code: 0 done and fits; 1 ran but does not fit or verification
failed; 2 bad usage or input (click's usage errors too, also as one line); 3 a backend is
unavailable or the simulator failed; 4 a file-system fault (``OSError``: the path and the OS
error); 5 an internal error (a bug); 130 interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import errno
import functools
import json
import signal
import sys
import traceback
from pathlib import Path

import click

from neuroprune import __version__
from neuroprune.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_IO_ERROR,
    NeuropruneError,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _console(stderr: bool = False):
    """Rich console; 160 columns when not a terminal so piped tables are not truncated."""
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", 160))
    return Console(highlight=False, stderr=stderr, width=width)


def _err_console():
    return _console(stderr=True)


def _torch_threads() -> None:
    """One torch thread by default (NEUROPRUNE_THREADS overrides): these small SNNs run as fast
    on one thread, and results then do not depend on the machine's core count."""
    import os
    import warnings

    warnings.filterwarnings(
        "ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning
    )
    import torch

    torch.set_num_threads(int(os.environ.get("NEUROPRUNE_THREADS", "1")))


def handle_errors(fn):
    """Turn library errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        verbose = click.get_current_context().find_root().params.get("verbose", False)
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return fn(*args, **kwargs)
        except NeuropruneError as exc:
            if not _is_main_process():  # under torchrun every rank meets the error; rank 0 says it
                sys.exit(exc.exit_code)
            _fail(verbose, exc.one_line(), exc.exit_code)
        except OSError as exc:
            _fail(verbose, os_error_line(exc), EXIT_IO_ERROR)
        except MemoryError:
            _fail(verbose, "out of memory; use a smaller network or --batch-size", EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted: outputs written so far are complete files", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: never exit 1 ("does not fit") on a crash
            text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            _fail(
                verbose,
                f"internal error: {text}. Run again with -v for the traceback and report it.",
                EXIT_INTERNAL,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


def _is_main_process() -> bool:
    from neuroprune.distributed import is_main

    return is_main()


def _terminate(signum, frame):
    """SIGTERM is handled like SIGINT: stop, clean up child processes, exit 130."""
    raise KeyboardInterrupt


def _fail(verbose: bool, line: str, code: int) -> None:
    if verbose:
        traceback.print_exc()
    click.echo(f"error: {line}", err=True)
    sys.exit(code)


def os_error_line(exc: OSError) -> str:
    """``PATH: strerror (errno NAME). fix`` for a file-system fault."""
    name = errno.errorcode.get(exc.errno or 0, "?")
    path = exc.filename or "(file system)"
    fixes = {
        "EACCES": "Check the folder's permissions or pass another --out.",
        "EPERM": "Check the folder's permissions or pass another --out.",
        "EROFS": "The file system is read-only: pass another --out.",
        "ENOSPC": "The disk is full: free space or pass another --out.",
        "EDQUOT": "The disk quota is exhausted: free space or pass another --out.",
        "EFBIG": "A file size limit (ulimit -f) was hit: raise it or pass another --out.",
        "ENOTDIR": "A file is where a folder is expected: remove it or pass another path.",
        "EISDIR": "A folder is where a file is expected: remove it or pass another path.",
    }
    fix = fixes.get(name, "Check the path.")
    return f"{path}: {exc.strerror or exc} (errno {name}); earlier files were kept. {fix}"


class OneLineGroup(click.Group):
    """A click group whose usage errors are one line (``error: ...``) with exit code 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            hint = (
                f" (see 'neuroprune {exc.ctx.command_path.split(' ', 1)[-1]} --help')"
                if (getattr(exc, "ctx", None) and " " in exc.ctx.command_path)
                else ""
            )
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(context_settings=CONTEXT, cls=OneLineGroup)
@click.version_option(__version__, prog_name="neuroprune")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
def main(verbose: bool) -> None:
    """Prune, quantize, export and verify spiking neural networks so they fit a chip."""


# ------------------------------------------------------------------------------------------
# profiles


@main.group(context_settings=CONTEXT)
def profiles() -> None:
    """List, show and validate chip profiles."""


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def profiles_list(as_json: bool) -> None:
    """Table of the shipped chips: cores, neurons, synapses, weight bits, fan-in."""
    from neuroprune.profiles import list_profiles
    from neuroprune.reports.render import profile_rows, profiles_table

    rows = profile_rows(list_profiles())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _console().print(profiles_table(rows))


@profiles.command("show")
@click.argument("chip")
@handle_errors
def profiles_show(chip: str) -> None:
    """Every field of one profile with its unit, status and source."""
    from neuroprune.profiles import load_profile
    from neuroprune.reports.render import profile_detail

    _console().print(profile_detail(load_profile(chip)))


@profiles.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@handle_errors
def profiles_validate(file: str) -> None:
    """Validate a profile YAML file; every problem is listed with its dotted path."""
    from neuroprune.profiles import load_profile

    profile = load_profile(file)
    click.echo(f"{file}: valid profile '{profile.id}' ({profile.name})")


# ------------------------------------------------------------------------------------------
# check


@main.command(context_settings=CONTEXT)
@click.option("--chip", required=True, help="Chip id or alias, or a path to a profile YAML.")
@click.option("--chips", type=int, help="Chips allocated (default 1).")
@click.option("--cores", type=int, help="Cores allocated (default: all cores of the chips).")
@click.option(
    "--model", default="mlp", show_default=True, help="mlp, conv, sew, or FILE.py:FACTORY."
)
@click.option("--hidden", help="Hidden widths, e.g. 128 or 128,64.")
@click.option("--neuron", type=click.Choice(["lif", "if"]), default="lif", show_default=True)
@click.option("--dataset", default="digits", show_default=True)
@click.option("--data-dir", type=click.Path(), help="Folder holding the dataset files.")
@click.option(
    "--from",
    "from_nir",
    type=click.Path(dir_okay=False),
    help="Judge this NIR graph (e.g. exported by snnTorch or Norse) instead of --model.",
)
@click.option("--nir-dt", type=float, help="With --from: seconds per step if the file has none.")
@click.option("--json", "as_json", is_flag=True, help="Print the fit report as JSON.")
@handle_errors
def check(
    chip, chips, cores, model, hidden, neuron, dataset, data_dir, from_nir, nir_dt, as_json
) -> None:
    """Fit verdict of the dense (untrained) network, before any training.

    Exit 0 when it fits, 1 when it does not.
    """
    _torch_threads()
    from neuroprune.pipeline import check_dense
    from neuroprune.reports.render import fit_text

    report = check_dense(
        chip,
        model=model,
        hidden=hidden,
        dataset=dataset,
        data_dir=data_dir,
        chips=chips,
        cores=cores,
        neuron=neuron,
        from_nir=from_nir,
        nir_dt=nir_dt,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        _console().print(fit_text(report))
    sys.exit(0 if report.fits else 1)


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
    from neuroprune import distributed
    from neuroprune.config import resolve_config

    cfg = resolve_config(config_file, options)  # bad input is answered before any launch
    if cfg.nproc > 1 and not distributed.launched_by_torchrun():
        sys.exit(distributed.launch(cfg.nproc, sys.argv[1:]))
    _torch_threads()
    from neuroprune.pipeline import run_fit
    from neuroprune.reports.render import ProgressRenderer, summary_text

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


# ------------------------------------------------------------------------------------------
# quantize, export, simulate, report, sweep


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--chip", help="Quantize for another chip than the run's.")
@handle_errors
def quantize(run_dir: str, chip: str | None) -> None:
    """Quantize a saved run's pruned model (pruned.pt) to the chip's formats."""
    _torch_threads()
    from neuroprune.pipeline import quantize_run
    from neuroprune.reports.render import quantize_text

    _console().print(quantize_text(quantize_run(Path(run_dir), chip=chip)))


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["nir", "onnx"]), default="nir", show_default=True
)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Output file.")
@click.option("--dt", type=float, help="NIR: seconds per step [2**-10]; snnTorch needs 1e-4.")
@handle_errors
def export(run_dir: str, fmt: str, out_file: str | None, dt: float | None) -> None:
    """Export a run's final model to NIR or ONNX."""
    _torch_threads()
    from neuroprune.pipeline import export_run

    path = export_run(Path(run_dir), fmt, Path(out_file) if out_file else None, dt=dt)
    click.echo(f"wrote {path}")


@main.command(context_settings=CONTEXT)
@click.argument("target", type=click.Path())
@click.option("--chip", help="Chip profile for energy figures (default: the run's chip).")
@click.option(
    "--backend", type=click.Choice(["lava", "reference"]), default="lava", show_default=True
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
    """Simulate RUN_DIR (its model.nir) or a FILE.nir and compare with the PyTorch model."""
    _torch_threads()
    from neuroprune.pipeline import simulate_target, verification_passed
    from neuroprune.reports.render import simulation_text

    result = simulate_target(
        Path(target),
        chip=chip,
        backend=backend,
        samples=samples,
        fixed_point=fixed_point,
        dataset=dataset,
        data_dir=data_dir,
        timeout=timeout,
    )
    record = result.as_dict()
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
    else:
        _console().print(simulation_text(record))
    sys.exit(0 if verification_passed(record, threshold) else 1)


@main.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@handle_errors
def report(run_dir: str) -> None:
    """Print a run's report (report.json) as tables."""
    from neuroprune.pipeline import load_report
    from neuroprune.reports.render import summary_text

    _console().print(summary_text(load_report(Path(run_dir)), Path(run_dir)))


@main.command(context_settings=CONTEXT)
@click.option("--chips", help="Comma-separated chip ids or profile paths [loihi].")
@click.option("--chip", "one_chip", help="One chip (same as --chips CHIP).")
@click.option("--methods", help="Comma-separated pruning methods [stds].")
@click.option("--method", "one_method", help="One method (same as --methods METHOD).")
@click.option("--budgets", help="Comma-separated synapse budgets.")
@click.option("--sparsities", help="Comma-separated sparsities, e.g. 0.8,0.9,0.95.")
@click.option("--workers", type=int, help="Trials at once [the machine's cores].")
@click.option("--ray-address", help="Ray cluster to run on (default: an embedded local Ray).")
@click.option(
    "--search",
    type=click.Choice(["grid", "optuna"]),
    default="grid",
    show_default=True,
    help="Every combination, or Optuna's multi-objective search.",
)
@click.option("--trials", "trials", type=int, help="Trials Optuna runs (--search optuna).")
@click.option(
    "--objective",
    type=click.Choice(["synapses", "cores", "energy"]),
    default="synapses",
    show_default=True,
    help="What Optuna minimises while it maximises accuracy.",
)
@click.option("--name", help="Sweep name (folder under --out).")
@click.option("--resume", is_flag=True, help="Skip finished trials; continue unfinished ones.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML file of fit options shared by every trial.",
)
@click.option("--model", help="mlp, conv, sew, or FILE.py:FACTORY [mlp].")
@click.option("--hidden", help="Hidden widths for mlp, e.g. 128 or 128,64.")
@click.option("--dataset", help="digits, mnist, fashion-mnist, cifar10 [digits].")
@click.option("--data-dir", type=click.Path(), help="Folder holding the dataset files.")
@click.option("--epochs", type=int, help="Dense training epochs.")
@click.option("--prune-epochs", type=int, help="Pruning epochs.")
@click.option("--finetune-epochs", type=int, help="Fine-tuning epochs with the mask frozen.")
@click.option("--quant-epochs", type=int, help="Quantization-aware fine-tuning epochs.")
@click.option("--timesteps", type=int, help="Time steps T per sample.")
@click.option("--seed", type=int)
@click.option(
    "--backend",
    default="reference",
    show_default=True,
    help="Simulator per trial (energy per sample): reference, lava or none.",
)
@click.option("--samples", type=int, help="Test samples each trial simulates (default: all).")
@click.option("--out", default="runs", show_default=True, help="Parent folder of sweeps.")
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json on stdout, nothing else.")
@handle_errors
def sweep(
    chips,
    one_chip,
    methods,
    one_method,
    budgets,
    sparsities,
    workers,
    ray_address,
    search,
    trials,
    objective,
    name,
    resume,
    config_file,
    as_json,
    **fit,
) -> None:
    """One fit per chip x method x budget (or sparsity) on Ray Tune; table, JSON, Pareto plots.

    Exit 0 when every trial finished, 1 when one failed (its row says why), 2 on bad input.

    Example: neuroprune sweep --chips loihi,truenorth --methods stds,gradr,gmp
    --sparsities 0.8,0.9,0.95. Every value is checked before the first trial starts.
    """
    from neuroprune.config import resolve_config
    from neuroprune.sweep import plan_sweep, run_sweep

    base = resolve_config(config_file, fit)
    plan = plan_sweep(
        chips=chips or one_chip or "loihi",
        methods=methods or one_method or "stds",
        budgets=budgets,
        sparsities=sparsities,
        base=base,
        name=name,
        workers=workers,
        ray_address=ray_address,
        search=search,
        samples=trials,
        objective=objective,
        resume=resume,
    )
    _torch_threads()
    from neuroprune.reports.render import ProgressRenderer, sweep_table

    console = _err_console() if as_json else _console()
    with ProgressRenderer(console, quiet=as_json) as progress:
        result = run_sweep(plan, progress=progress)
    failed = any(row.get("status") == "failed" for row in result.rows)
    if as_json:
        click.echo(result.json_path.read_text())
        sys.exit(1 if failed else 0)
    console.print(sweep_table(list(result.rows), result.pareto))
    click.echo(
        f"{result.ran} trial(s) run, {result.skipped} skipped, {result.seconds:.1f} s; "
        f"results: {result.json_path}"
    )
    for plot in result.plots:
        click.echo(f"plot: {plot}")
    sys.exit(1 if failed else 0)
