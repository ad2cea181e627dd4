"""``neuroprune sweep``: one fit per chip x method x budget (or sparsity)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

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
from neuroprune.cli.options import chip_help, config_default, model_help, one_of, with_default
from neuroprune.pipeline.config import choices
from neuroprune.pruning.registry import PRUNING_METHODS


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """The libraries' warnings and log records up to ERROR silenced, in this process and in the
    Ray workers it starts (they inherit ``PYTHONWARNINGS``); the sweep's own lines stay.
    Everything is restored on leaving."""
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = "ignore"
    logging.disable(logging.ERROR)  # a failed trial's traceback too: its row says why
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        if before is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = before


@main.command(context_settings=CONTEXT)
@click.option(
    "--chips", help=with_default(f"Comma-separated chips. {chip_help()}", config_default("chip"))
)
@click.option("--chip", "one_chip", help="One chip (same as --chips CHIP).")
@click.option(
    "--methods",
    help=with_default(
        f"Comma-separated pruning methods. {one_of(PRUNING_METHODS)}", config_default("method")
    ),
)
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
@click.option("--model", help=with_default(model_help(), config_default("model")))
@click.option("--hidden", help="Hidden widths for mlp, e.g. 128 or 128,64.")
@click.option(
    "--dataset",
    help=with_default(f"Dataset. {one_of(choices('dataset'))}", config_default("dataset")),
)
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
    help=f"Simulator per trial (energy per sample). {one_of(choices('backend'))}",
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
    --sparsities 0.8,0.9,0.95. Every value is checked before the first trial starts. The
    libraries' own warnings (Ray, Optuna, torch) are silenced; `neuroprune -v sweep` shows them.
    """
    from neuroprune.pipeline.config import resolve_config  # deferred: imports yaml
    from neuroprune.sweep.plan import plan_sweep  # deferred: imports yaml
    from neuroprune.sweep.run import run_sweep  # deferred: imports yaml

    ctx = click.get_current_context()
    if not ctx.find_root().params.get("verbose", False):
        ctx.with_resource(_quiet_libraries())  # until the command ends
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
    from neuroprune.reports.render import ProgressRenderer, sweep_table  # deferred: imports scipy

    console = _err_console() if as_json else _console()
    with ProgressRenderer(console, quiet=as_json) as progress:
        result = run_sweep(plan, progress=checked(progress))
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
