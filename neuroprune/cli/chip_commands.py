"""``neuroprune profiles`` and ``neuroprune check``: chip profiles and the dense network's verdict."""

from __future__ import annotations

import json
import sys

import click

from neuroprune.cli.app import CONTEXT, _console, _torch_threads, handle_errors, main
from neuroprune.cli.options import chip_help, config_default, model_help, one_of
from neuroprune.pipeline.config import choices

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
    from neuroprune.chip.profiles import list_profiles  # deferred: imports yaml
    from neuroprune.reports.render import profile_rows, profiles_table  # deferred: imports scipy

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
    from neuroprune.chip.profiles import load_profile  # deferred: imports yaml
    from neuroprune.reports.render import profile_detail  # deferred: imports scipy

    _console().print(profile_detail(load_profile(chip)))


@profiles.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@handle_errors
def profiles_validate(file: str) -> None:
    """Validate a profile YAML file; every problem is listed with its dotted path."""
    from neuroprune.chip.profiles import load_profile  # deferred: imports yaml

    profile = load_profile(file)
    click.echo(f"{file}: valid profile '{profile.id}' ({profile.name})")


# ------------------------------------------------------------------------------------------
# check


@main.command(context_settings=CONTEXT)
@click.option("--chip", required=True, help=chip_help())
@click.option("--chips", type=int, help="Chips allocated (default 1).")
@click.option("--cores", type=int, help="Cores allocated (default: all cores of the chips).")
@click.option("--model", default=config_default("model"), show_default=True, help=model_help())
@click.option("--hidden", help="Hidden widths, e.g. 128 or 128,64.")
@click.option(
    "--neuron",
    type=click.Choice(choices("neuron")),
    default=config_default("neuron"),
    show_default=True,
    help="Neuron model of the built-in models.",
)
@click.option(
    "--dataset",
    default=config_default("dataset"),
    show_default=True,
    help=f"Dataset. {one_of(choices('dataset'))}",
)
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
    from neuroprune.pipeline.check import check_dense  # deferred: imports yaml
    from neuroprune.reports.render import fit_text  # deferred: imports scipy

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
