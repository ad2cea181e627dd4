"""Finding a Python interpreter of a given ``MAJOR.MINOR`` (``"3.10"``) for an environment.

The search, in order (:func:`candidates`), stops at the first interpreter that runs, reports
that version and can create virtual environments (``venv`` and ``ensurepip`` import; Debian's
``python3.10`` lacks ``ensurepip`` without ``python3.10-venv``):

1. ``$PYTHON310`` (``PYTHON`` + the version without its dot) when set, and nothing else: an
   explicit choice is never replaced by a guess;
2. ``python3.10`` on ``PATH`` (a pyenv shim that has no 3.10 selected fails and is skipped);
3. pyenv's installed versions, newest first: ``$PYENV_ROOT``, ``pyenv root``, ``~/.pyenv``
   (``versions/3.10*/bin/python3.10``);
4. ``/usr/bin/python3.10``, ``/usr/local/bin/python3.10`` (:data:`SYSTEM_DIRS`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/bin"), Path("/usr/local/bin"))
PROBE_TIMEOUT_S = 30.0
# Prints "MAJOR MINOR MICRO" when the interpreter can create a venv with pip.
_PROBE = "import sys, venv, ensurepip; print(*sys.version_info[:3])"


@dataclass(frozen=True)
class Interpreter:
    """A verified interpreter: its path and its ``"MAJOR.MINOR.MICRO"`` version."""

    path: Path
    version: str


def version_variable(version: str) -> str:
    """``"3.10"`` -> ``"PYTHON310"``: the variable that names an interpreter explicitly."""
    return "PYTHON" + version.replace(".", "")


def install_hint(version: str) -> str:
    """How to get Python ``version``, one sentence."""
    return (
        f"Install Python {version} (`pyenv install {version}` or `apt-get install "
        f"python{version} python{version}-venv`) or point {version_variable(version)} at one"
    )


def not_found(version: str) -> str:
    """Why :func:`find_python` found nothing, for an error message: the explicit variable's
    value is not a working interpreter of that version, or the search found none."""
    variable = version_variable(version)
    explicit = os.environ.get(variable)
    if explicit:
        return f"{variable}={explicit} is not a working Python {version} with venv and ensurepip"
    places = ", ".join(str(d) for d in SYSTEM_DIRS)
    return f"no python{version} on PATH, in pyenv's versions or in {places or 'the system'}"


def candidates(version: str) -> list[Path]:
    """Paths to try for Python ``version``, in the order of the module docstring (unverified,
    duplicates removed)."""
    explicit = os.environ.get(version_variable(version))
    if explicit:
        return [Path(explicit).expanduser()]
    exe = f"python{version}"
    found: list[Path] = []
    on_path = shutil.which(exe)
    if on_path:
        found.append(Path(on_path))
    for root in _pyenv_roots():
        versions = sorted((root / "versions").glob(f"{version}*"), key=_version_key, reverse=True)
        found.extend(v / "bin" / exe for v in versions)
    found.extend(directory / exe for directory in SYSTEM_DIRS)
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def find_python(
    version: str, *, search: Callable[[str], Iterable[Path]] = candidates
) -> Interpreter | None:
    """The first of ``search(version)`` that is a working Python ``version``, or ``None``.
    ``search`` defaults to :func:`candidates` (tests pass their own)."""
    for path in search(version):
        found = verify(path, version)
        if found is not None:
            return found
    return None


def verify(path: Path, version: str) -> Interpreter | None:
    """``path`` as an :class:`Interpreter` when it runs, is Python ``version`` and has
    ``venv`` and ``ensurepip``; else ``None``."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        return None
    reported = interpreter_version(path)
    if reported is None or not reported.startswith(f"{version}."):
        return None
    return Interpreter(path, reported)


def interpreter_version(path: Path) -> str | None:
    """``"MAJOR.MINOR.MICRO"`` of the interpreter at ``path`` when it runs and can make a
    venv; ``None`` otherwise. Runs it isolated (``-I``: no ``PYTHONPATH``, no user site), once
    per process and file: the answer is kept for the same resolved file with the same inode,
    size, mode and modification time (a replaced, rebuilt or re-permissioned interpreter is
    probed again)."""
    try:
        real = Path(path).resolve()
        info = real.stat()
    except OSError:
        return None
    key = (str(real), info.st_ino, info.st_size, info.st_mode, info.st_mtime_ns)
    if key not in _PROBED:
        _PROBED[key] = _probe_version(real)
    return _PROBED[key]


_PROBED: dict[tuple, str | None] = {}  # interpreter_version's answers in this process


def _probe_version(path: Path) -> str | None:
    """Run ``path`` with :data:`_PROBE` and read its version (see :func:`interpreter_version`)."""
    try:
        done = subprocess.run(
            [str(path), "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return ".".join(parts)


def _pyenv_roots() -> list[Path]:
    """``$PYENV_ROOT``, ``pyenv root`` (when pyenv is on ``PATH``) and ``~/.pyenv``."""
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]).expanduser())
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            done = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
            )
            if done.returncode == 0 and done.stdout.strip():
                roots.append(Path(done.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    roots.append(Path("~/.pyenv").expanduser())
    return list(dict.fromkeys(roots))


def _version_key(path: Path) -> tuple[int, ...]:
    """``.../3.10.13`` -> ``(1, 3, 10, 13)``; a name that is not a plain version
    (``3.10-dev``) starts with 0, so newest-first order tries it after the plain versions."""
    numbers = re.findall(r"\d+", path.name)
    plain = re.fullmatch(r"\d+(\.\d+)*", path.name) is not None
    return (int(plain), *(int(n) for n in numbers))
