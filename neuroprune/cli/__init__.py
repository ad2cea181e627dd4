"""The command line (layer L10): parse, call one library function, render, exit.

:mod:`.app` holds the click group, error handling and exit codes; each ``*_command(s)`` module
registers its commands on that group when imported here.
"""

from neuroprune.cli import (  # noqa: F401
    backends_command,
    chip_commands,
    fit_command,
    run_commands,
    sweep_command,
)
from neuroprune.cli.app import main

__all__ = ["main"]
