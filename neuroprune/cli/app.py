"""Command line (layer L10): parse, call one library function, render, exit.

The only module that prints or exits. Errors from the library arrive as
:class:`neuroprune.core.errors.NeuropruneError` and are printed as one line (``-v`` adds the
traceback) with the error's exit code: 0 done and fits; 1 ran but does not fit or verification
failed; 2 bad usage or input (click's usage errors too, also as one line); 3 a backend is
unavailable or the simulator failed; 4 a file-system fault (``OSError``: the path and the OS
error); 5 an internal error (a bug); 130 interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import signal
import sys
import traceback
import warnings

import click
from rich.console import Console

from neuroprune import __version__
from neuroprune.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_IO_ERROR,
    NeuropruneError,
)
from neuroprune.train.distributed import is_main

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _console(stderr: bool = False):
    """Rich console; 160 columns when not a terminal so piped tables are not truncated."""

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", 160))
    return Console(highlight=False, stderr=stderr, width=width)


def _err_console():
    return _console(stderr=True)


def _torch_threads() -> None:
    """One torch thread by default (NEUROPRUNE_THREADS overrides): these small SNNs run as fast
    on one thread, and results then do not depend on the machine's core count."""

    warnings.filterwarnings(
        "ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning
    )
    import torch  # deferred: imports torch

    torch.set_num_threads(int(os.environ.get("NEUROPRUNE_THREADS", "1")))


def handle_errors(fn):
    """Turn library errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        verbose = click.get_current_context().find_root().params.get("verbose", False)
        previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
        SIGNALLED.clear()
        unraisable, sys.unraisablehook = sys.unraisablehook, _quiet_interrupt(sys.unraisablehook)
        try:
            done = fn(*args, **kwargs)
        except SystemExit:
            if SIGNALLED:  # a signal whose KeyboardInterrupt a destructor swallowed
                _interrupted()
            raise
        except NeuropruneError as exc:
            if not _is_main_process():  # under torchrun every rank meets the error; rank 0 says it
                sys.exit(exc.exit_code)
            _fail(verbose, exc.one_line(), exc.exit_code)
        except OSError as exc:
            _fail(verbose, os_error_line(exc), EXIT_IO_ERROR)
        except MemoryError:
            _fail(verbose, "out of memory; use a smaller network or --batch-size", EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            _interrupted()
        except Exception as exc:  # a bug: never exit 1 ("does not fit") on a crash
            if _caused_by_interrupt(exc):  # e.g. pybind11's "initialization failed" import
                _interrupted()
            text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            _fail(
                verbose,
                f"internal error: {text}. Run again with -v for the traceback and report it.",
                EXIT_INTERNAL,
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sys.unraisablehook = unraisable
        if SIGNALLED:
            _interrupted()
        return done

    return wrapper


def _is_main_process() -> bool:

    return is_main()


INTERRUPTED_LINE = (
    "interrupted: an earlier run in the folder is replaced only by a completed one; "
    "a fit's partial run is kept for --resume"
)


def _interrupted() -> None:
    sys.exit(_interrupted_code())


def _interrupted_code() -> int:
    """Say the one line of an interrupt; its exit code (130)."""
    click.echo(INTERRUPTED_LINE, err=True)
    return EXIT_INTERRUPTED


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised because of a Ctrl-C or SIGTERM: a library that turns the
    ``KeyboardInterrupt`` raised inside it into its own error keeps it as the cause or
    context (an extension module interrupted while it initialises raises ``ImportError:
    initialization failed`` from it)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


SIGNALLED: list[int] = []
"""The SIGINT/SIGTERM a command received (:func:`_terminate` records each)."""


def _terminate(signum, frame):
    """SIGINT and SIGTERM: stop, clean up child processes, exit 130.

    The KeyboardInterrupt raised here is lost when the signal lands while Python runs a
    destructor or a weakref callback ("Exception ignored in ..."): the signal is also recorded,
    and :func:`checked` raises it again at the next progress event."""
    SIGNALLED.append(signum)
    raise KeyboardInterrupt


def _quiet_interrupt(hook):
    """``sys.unraisablehook`` that says nothing of a KeyboardInterrupt a destructor or weakref
    callback swallowed (the signal is recorded, :func:`checked` raises it again); ``hook``
    reports everything else."""

    def report(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)

    return report


def checked(progress):
    """``progress`` that first raises KeyboardInterrupt for a signal received before (one whose
    own KeyboardInterrupt a destructor swallowed), so a run stops at its next event."""

    def forward(event) -> None:
        if SIGNALLED:
            raise KeyboardInterrupt
        progress(event)

    return forward


def _fail(verbose: bool, line: str, code: int) -> None:
    if verbose:
        traceback.print_exc()
    click.echo(f"error: {' '.join(line.split())}", err=True)  # one line, whatever a library said
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
            code: object = self._outcome(*args, **kwargs)
        except KeyboardInterrupt:  # a signal while the outcome was being rendered
            code = _interrupted_code()
        exit_decided(code)

    def _outcome(self, *args, **kwargs) -> object:
        """Run the command: the exit code it decided, a usage error's one line and code 2."""
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except SystemExit as exc:  # every command's exit (handle_errors) ends here
            return exc.code
        except click.ClickException as exc:
            hint = (
                f" (see 'neuroprune {exc.ctx.command_path.split(' ', 1)[-1]} --help')"
                if (getattr(exc, "ctx", None) and " " in exc.ctx.command_path)
                else ""
            )
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message}{hint}", err=True)
            return exc.exit_code
        except (click.exceptions.Abort, KeyboardInterrupt):  # outside a command's handler
            return _interrupted_code()
        return code if isinstance(code, int) else 0


PROCESS_EXIT = {"final": False}  # set by the process entry point (neuroprune.__main__.run)


def exit_decided(code: object) -> None:
    """Exit with ``code``, the outcome already decided, whatever signal comes now.

    Two things would otherwise change it. (1) CPython records a KeyboardInterrupt that ended a
    string ``exec``/``eval`` (``PyRun_String``: dataclasses, pydantic, pybind11 modules run
    such code at import) and, under ``python -m``, ends the process by SIGINT (exit -2) after
    the SystemExit, even when the interrupt was caught and answered with exit 130; the record
    is cleared at the start of every string ``exec``, so one harmless ``exec`` clears it. (2)
    While the interpreter shuts down it restores the default SIGINT action, so a signal then
    kills the process silently: in the process's own exit (not a test's in-process call),
    SIGINT and SIGTERM are ignored from here on.

    In the process's own exit the command's work is done and every file it wrote is complete
    and closed (atomic writes), so the process then ends as Python's exit would, less the
    interpreter's teardown of its modules (torch's among them: about 0.8 s of every command):
    the atexit handlers run (logging's flush, weakref finalizers, multiprocessing's clean-up),
    standard output and error are flushed, and :func:`os._exit` leaves with the code
    :func:`sys.exit` would give (None: 0, an int: itself, anything else: printed, 1)."""
    if PROCESS_EXIT["final"]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _leave(code)
    exec("pass", {})  # noqa: S102  (clears CPython's unhandled-KeyboardInterrupt record)
    sys.exit(code)


def _leave(code: object) -> None:
    """End the process now with ``code`` after the atexit handlers and a flush of stdio (see
    :func:`exit_decided`)."""
    if code is None or isinstance(code, int):
        status = int(code or 0)
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


@click.group(context_settings=CONTEXT, cls=OneLineGroup)
@click.version_option(__version__, prog_name="neuroprune")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
def main(verbose: bool) -> None:
    """Prune, quantize, export and verify spiking neural networks so they fit a chip."""
