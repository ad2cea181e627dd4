"""The command line a run was made with, as the user typed it (for the run's deployment
record): the command and the options given on the command line, in the command's order."""

from __future__ import annotations

import shlex

import click
from click.core import ParameterSource


def command_line() -> str:
    """``neuroprune fit --chip truenorth --sparsity 0.9``: the current command and only the
    parameters given on the command line (defaults and config-file values are the record's
    resolved settings), each as its first spelling."""
    ctx = click.get_current_context()
    parts = ["neuroprune", ctx.info_name or ""]
    for param in ctx.command.params:
        name = param.name or ""
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params.get(name)
        if isinstance(param, click.Argument):
            parts.append(str(value))
        elif isinstance(param, click.Option) and param.is_flag:
            negative = param.secondary_opts and not value
            parts.append(param.secondary_opts[0] if negative else param.opts[0])
        else:
            parts += [param.opts[0], str(value)]
    return shlex.join(parts)
