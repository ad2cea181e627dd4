"""``neuroprune backends``: the environments apart from the tool's (:mod:`neuroprune.envs`).

``neuroprune backends`` lists every registered environment and the rule that places them;
``neuroprune backends install [NAME ...] [--force]`` builds them (default: every environment a
simulator backend runs in). Names, purposes and help come from
:data:`neuroprune.envs.ENVIRONMENTS`.
"""

from __future__ import annotations

import json

import click
from rich.table import Table

from neuroprune.cli.app import CONTEXT, _console, handle_errors, main
from neuroprune.envs import (
    BACKEND,
    ENVIRONMENTS,
    LOCATION_RULE,
    envs_root,
    install,
    status,
)


def _names_help() -> str:
    return "; ".join(
        f"{name} ({spec.purpose}, Python {spec.python_label}): {spec.used_for}"
        for name, spec in ENVIRONMENTS.items()
    )


def _default_names() -> tuple[str, ...]:
    return tuple(name for name, spec in ENVIRONMENTS.items() if spec.purpose == BACKEND)


@main.group(
    context_settings=CONTEXT,
    invoke_without_command=True,
    help="List the environments kept apart from the tool's own (a simulator backend's, "
    f"or a test tool's whose pins the tool cannot hold): {_names_help()}. "
    "`neuroprune backends install` builds them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
@handle_errors
def backends(ctx: click.Context, as_json: bool) -> None:
    if ctx.invoked_subcommand is not None:
        return
    rows = []
    for name, spec in ENVIRONMENTS.items():
        state = status(spec)
        rows.append(
            {
                "name": name,
                "purpose": spec.purpose,
                "python": spec.python_label,
                "version": state.version,
                "ready": state.ready,
                "reason": state.reason,
                "path": str(state.path),
                "interpreter": str(state.python),
                "used_for": spec.used_for,
                "why": spec.why,
            }
        )
    if as_json:
        click.echo(json.dumps({"root": str(envs_root()), "rule": LOCATION_RULE, "envs": rows}))
        return
    table = Table(title="Environments apart from the tool's", title_justify="left")
    for column in ("name", "purpose", "python", "state", "path", "for"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = f"ready ({row['version']})" if row["ready"] else f"[red]{row['reason']}[/]"
        table.add_row(
            row["name"], row["purpose"], row["python"], state, row["path"], row["used_for"]
        )
    console = _console()
    console.print(table)
    console.print(f"location: {LOCATION_RULE} (here: {envs_root()})")
    if not all(row["ready"] for row in rows):
        console.print("install: neuroprune backends install [NAME ...]")


@backends.command(
    "install",
    context_settings=CONTEXT,
    help="Build environments (default: "
    f"{', '.join(_default_names())}, the simulator backends'); one that is ready is skipped. "
    "Exit 3 with the fix when one cannot be built (no Python 3.10, pip failed).",
)
@click.argument("names", nargs=-1, type=click.Choice(ENVIRONMENTS.names()))
@click.option("--force", is_flag=True, help="Rebuild even when ready.")
@handle_errors
def backends_install(names: tuple[str, ...], force: bool) -> None:
    from neuroprune.reports.render import ProgressRenderer  # deferred: imports scipy

    console = _console()
    with ProgressRenderer(console) as progress:
        for name in dict.fromkeys(names or _default_names()):
            install(name, progress=progress, force=force)
