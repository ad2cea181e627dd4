"""``python -m neuroprune`` and the ``neuroprune`` command: the process entry point.

A signal may come while the command line is still being imported (a second or more: torch,
click, the registries). Python's own SIGINT action then raises KeyboardInterrupt from an
import, and SIGTERM's kills the process, before :func:`neuroprune.cli.app.handle_errors`
is in place: :func:`run` handles both from its first line, with the same one line and exit
130 as an interrupt anywhere later. (A signal inside Python's own start-up, before this
module runs, is out of its reach.)
"""

import signal
import sys


def _terminate(signum, frame):
    raise KeyboardInterrupt


def run() -> None:
    """Import the command line and run it; an interrupt at any point exits 130 with one line."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from neuroprune.cli import app  # noqa: F401  (registers the commands)
        from neuroprune.cli.app import PROCESS_EXIT, main
    except KeyboardInterrupt:
        sys.stderr.write(
            "interrupted: an earlier run in the folder is replaced only by a completed one; "
            "a fit's partial run is kept for --resume\n"
        )
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # see neuroprune.cli.app.exit_decided
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        exec("pass", {})  # noqa: S102
        sys.exit(130)
    PROCESS_EXIT["final"] = True
    main()


if __name__ == "__main__":
    run()
