"""Error hierarchy (layer L0).

Every error that a user can cause carries structured fields so the CLI can print one line:
``<step>: <where>: <what> (<field>=<value>). <fix>``. Code never matches on message text;
it matches on the class and reads the fields.

Exit codes (docs/architecture.md): 0 done and fits; 1 ran but does not fit or verification failed;
2 bad usage or input; 3 a backend is unavailable or the simulator failed; 4 a file-system fault
(read-only folder, full disk, permissions, file size limit); 5 an internal error (a bug: the
command line prints one line, ``-v`` the traceback); 130 interrupted (SIGINT/SIGTERM).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_DOES_NOT_FIT = 1
EXIT_BAD_INPUT = 2
EXIT_BACKEND_UNAVAILABLE = 3
EXIT_IO_ERROR = 4
EXIT_INTERNAL = 5
EXIT_INTERRUPTED = 130


def did_you_mean(name: object, options: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """``"Did you mean 'x'? "`` (or ``'a', 'b'``) for the closest ``options`` to ``name``; ``""``
    when nothing is close. Every "unknown name" error builds its fix with this."""
    close = difflib.get_close_matches(str(name), sorted(options), n=n, cutoff=cutoff)
    return f"Did you mean {', '.join(repr(c) for c in close)}? " if close else ""


class NeuropruneError(Exception):
    """Base class. ``exit_code`` tells the CLI how to exit."""

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        field: str | None = None,
        value: object = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.where = where
        self.field = field
        self.value = value
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The single line the CLI prints: where, what, offending field/value, and the fix."""
        parts = []
        if self.where:
            parts.append(f"{self.where}: ")
        parts.append(self.message)
        if self.field is not None:
            parts.append(f" ({self.field}={self.value!r})")
        text = "".join(parts)
        if self.fix:
            text = f"{text.rstrip('.')}. {self.fix}"
        return " ".join(text.split())


class ProfileError(NeuropruneError):
    """A chip profile is unknown, unreadable or invalid."""


class UnknownChipError(ProfileError):
    """No shipped profile has this id or alias."""


class ConfigError(NeuropruneError):
    """A config file or CLI option is wrong (unknown key, bad value)."""


class DatasetError(NeuropruneError):
    """A dataset is unknown, missing or malformed."""


class ModelError(NeuropruneError):
    """A model spec, factory or checkpoint cannot be used."""


class BudgetError(NeuropruneError):
    """The synapse/neuron budget cannot be met (infeasible before training)."""


class ArtifactError(NeuropruneError):
    """A saved artifact (checkpoint, .nir, .onnx, run directory) is missing or corrupt."""


class UnsupportedError(NeuropruneError):
    """A feature or node type that neuroprune does not support."""


class BackendUnavailableError(NeuropruneError):
    """A simulator or library backend cannot be used on this machine."""

    exit_code = EXIT_BACKEND_UNAVAILABLE


class SimulationError(NeuropruneError):
    """A simulator failed (crash, timeout). The run was stopped cleanly."""

    exit_code = EXIT_BACKEND_UNAVAILABLE
