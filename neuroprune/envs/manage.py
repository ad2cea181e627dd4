"""Status and installation of the environments of :data:`~neuroprune.envs.spec.ENVIRONMENTS`.

:func:`status` is cheap (a stamp file and one run of the interpreter, no probe imports), so
``neuroprune backends`` and the Lava backend's availability check call it freely.
:func:`install` builds an environment without ever leaving a half-built one where the tool
looks:

1. ``python -m venv <root>/<name>.partial-<pid>`` with the spec's interpreter (the tool's own
   for ``python=None``; ``--without-pip`` when there is nothing to install);
2. a layered environment gets ``_neuroprune_tool_env.pth`` in its site-packages, which runs
   ``site.addsitedir`` on the tool environment's purelib and platlib: they come *after* the
   environment's own site-packages on ``sys.path``, so its pins shadow the tool's while the rest
   (torch, numpy) is shared. This is written before pip runs, so pip sees the tool's packages
   as installed and installs only what differs (it reports that it cannot uninstall the
   tool's copy, "outside environment", and leaves it alone);
3. ``python -m pip install --quiet --upgrade pip``, then the requirements (pip's whole output,
   appended to ``neuroprune-install.log`` inside the environment);
4. the probe: the spec's modules imported, every ``name==version`` pin checked against the
   installed metadata, in the new environment;
5. the stamp ``neuroprune-env.json`` (:func:`stamp_for`), then the folder renamed to
   ``<root>/<name>`` (an existing one is renamed away first, then removed). A venv works after
   a rename when its interpreter is called by path (``<env>/bin/python``; the scripts in
   ``bin/`` keep the old path in their ``#!`` line and are never used).

Any failure removes the partial folder (pip's log is kept as ``<root>/<name>.install.log``) and
raises :class:`~neuroprune.core.errors.BackendUnavailableError` with one line (exit code 3).
One install per environment runs at a time (a lock file ``<root>/.<name>.lock``); folders of
installs whose process died are removed by the next install.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from neuroprune.core.atomic import write_json
from neuroprune.core.errors import BackendUnavailableError
from neuroprune.core.processes import process_alive
from neuroprune.core.progress import Progress, emit
from neuroprune.envs.interpreter import (
    Interpreter,
    find_python,
    install_hint,
    interpreter_version,
    not_found,
)
from neuroprune.envs.location import environment_dir, envs_root, interpreter_of
from neuroprune.envs.spec import BACKEND, EnvironmentSpec, environment_spec

STAMP_FILE = "neuroprune-env.json"
LOG_FILE = "neuroprune-install.log"
PTH_FILE = "_neuroprune_tool_env.pth"
STAMP_FORMAT = 1
STAGE = "backends"  # the progress events' stage
PIP_TIMEOUT_S = 3600.0
STEP_TIMEOUT_S = 600.0
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^,;\s]+)$")

_DIST = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")

# Run in the new environment: import the modules, compare the pins with the installed
# metadata, print the interpreter's version and every requirement's version as JSON.
_PROBE = """
import importlib, importlib.metadata as md, json, sys
job = json.loads(sys.argv[1])
for name in job["modules"]:
    importlib.import_module(name)
have = {dist: md.version(dist) for dist in job["dists"]}
wrong = [f"{d} {have[d]} (pinned {want})" for d, want in job["pins"] if have[d] != want]
if wrong:
    sys.exit("installed versions differ from the pins: " + ", ".join(wrong))
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "versions": have}))
"""


@dataclass(frozen=True)
class EnvironmentStatus:
    """Where an environment is and whether it can be used.

    Attributes:
        name, purpose: the spec's.
        path: the environment's folder (``<root>/<name>``).
        python: its interpreter, ``<path>/bin/python`` (it exists only once installed).
        ready: installed for exactly this spec (the stamp matches) and its interpreter runs.
        reason: why it is not ready (``""`` when ready).
        version: the interpreter's ``MAJOR.MINOR.MICRO`` when ready, else ``""``.
    """

    name: str
    purpose: str
    path: Path
    python: Path
    ready: bool
    reason: str
    version: str = ""


def environment_python(name: str, root: Path | None = None) -> Path:
    """``<root>/<name>/bin/python``: the interpreter of environment ``name`` (whether or not it
    is installed; :func:`require` checks)."""
    return interpreter_of(environment_dir(environment_spec(name).name, root))


def tool_site_dirs() -> list[str]:
    """The tool environment's purelib and platlib (of the running interpreter), resolved: what
    a layered environment adds after its own site-packages."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(str(Path(paths[key]).resolve()) for key in ("purelib", "platlib")))


def stamp_for(spec: EnvironmentSpec, python_version: str) -> dict:
    """The stamp an environment built for ``spec`` carries: what :func:`status` compares."""
    return {
        "stamp_format": STAMP_FORMAT,
        "name": spec.name,
        "purpose": spec.purpose,
        "requirements": list(spec.all_requirements),
        "python": python_version,
        "layered": spec.layered,
        "tool_env": tool_site_dirs() if spec.layered else None,
    }


def status(name_or_spec: str | EnvironmentSpec, root: Path | None = None) -> EnvironmentStatus:
    """Whether the environment is installed for exactly this spec: its stamp holds the same
    requirements, the interpreter version the spec asks for (the tool's ``MAJOR.MINOR`` when
    ``python`` is None), and for a layered environment the same tool environment; and its
    interpreter runs and reports the stamped version. No probe imports."""
    spec = environment_spec(name_or_spec)
    path = environment_dir(spec.name, root)
    python = interpreter_of(path)

    def state(reason: str, version: str = "") -> EnvironmentStatus:
        return EnvironmentStatus(
            spec.name, spec.purpose, path, python, not reason, reason, version if not reason else ""
        )

    if not path.is_dir():
        return state("not installed")
    try:
        stamp = json.loads((path / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return state(f"no valid {STAMP_FILE} (an install that did not finish?)")
    if not isinstance(stamp, dict):
        return state(f"no valid {STAMP_FILE} (an install that did not finish?)")
    version = str(stamp.get("python", ""))
    wanted = spec.python or "{}.{}".format(*sys.version_info[:2])
    expected = stamp_for(spec, version)
    if stamp.get("requirements") != expected["requirements"]:
        return state(
            f"installed for other requirements ({', '.join(stamp.get('requirements', []))})"
        )
    if not version.startswith(f"{wanted}."):
        return state(f"built with Python {version or '?'}, needs {wanted}")
    if stamp.get("layered") != spec.layered or stamp.get("tool_env") != expected["tool_env"]:
        return state("built for another tool environment")
    if interpreter_version(python) != version:
        return state(f"its interpreter {python} does not run")
    return state("", version)


def recorded_versions(name_or_spec: str | EnvironmentSpec, root: Path | None = None) -> dict:
    """``{"python": "3.10.13", "<requirement>": "<version>", ...}`` of a ready environment as
    its install recorded them (for a run's provenance); ``{}`` when it is not ready."""
    spec = environment_spec(name_or_spec)
    if not status(spec, root).ready:
        return {}
    stamp = json.loads((environment_dir(spec.name, root) / STAMP_FILE).read_text("utf-8"))
    return {"python": stamp["python"], **stamp.get("versions", {})}


def require(
    name_or_spec: str | EnvironmentSpec,
    *,
    root: Path | None = None,
    what: str | None = None,
    where: str | None = None,
    otherwise: str = "",
    find: Callable[[str], Interpreter | None] = find_python,
) -> Path:
    """The interpreter of a ready environment; else :class:`BackendUnavailableError` with one
    line saying how to make it ready. When the spec needs a Python version that this machine
    lacks, the fix says how to get one first. ``what`` names the thing that needs the
    environment (``"Lava (lava-nc 0.10.0)"``), ``where`` the error's place, ``otherwise`` an
    alternative appended to the fix (``"or use --backend reference"``)."""
    spec = environment_spec(name_or_spec)
    current = status(spec, root)
    if current.ready:
        return current.python
    what = what or f"the {spec.name} environment"
    where = where or f"environment {spec.name}"
    command = f"`neuroprune backends install {spec.name}`"
    make = "make backends" if spec.purpose == BACKEND else "make test-envs"
    tail = f"; {otherwise}" if otherwise else ""
    if spec.python is not None and find(spec.python) is None:
        raise BackendUnavailableError(
            f"{what} needs Python {spec.python} ({spec.why}): {not_found(spec.python)}",
            where=where,
            fix=f"{install_hint(spec.python)}, then run {command}{tail}.",
        )
    raise BackendUnavailableError(
        f"{what}: its environment {current.path} is not ready ({current.reason})",
        where=where,
        fix=f"Run {command} (or `{make}`){tail}.",
    )


# --------------------------------------------------------------------------------------------
# install


def install(
    name_or_spec: str | EnvironmentSpec,
    progress: Progress | None = None,
    force: bool = False,
    *,
    root: Path | None = None,
    find: Callable[[str], Interpreter | None] = find_python,
) -> EnvironmentStatus:
    """Build the environment (module docstring); skipped when :func:`status` says it is ready,
    unless ``force``. Returns its status (ready). ``find`` finds the interpreter of a spec
    with ``python`` set (tests pass their own)."""
    spec = environment_spec(name_or_spec)
    root = root or envs_root()
    current = status(spec, root)
    if current.ready and not force:
        emit(
            progress,
            stage=STAGE,
            event="env_ready",
            message=f"{spec.name}: ready at {current.path} (Python {current.version})",
            env=spec.name,
        )
        return current
    base = _base_interpreter(spec, find)
    root.mkdir(parents=True, exist_ok=True)
    with _install_lock(root, spec.name):
        current = status(spec, root)  # another process may have built it meanwhile
        if current.ready and not force:
            return current
        _sweep_dead_installs(root, spec.name)
        return _build(spec, base, root, progress)


def _base_interpreter(
    spec: EnvironmentSpec, find: Callable[[str], Interpreter | None]
) -> Interpreter:
    """The interpreter that creates the venv: the spec's version, or the running one."""
    if spec.python is None:
        return Interpreter(Path(sys.executable).resolve(), platform.python_version())
    found = find(spec.python)
    if found is None:
        raise BackendUnavailableError(
            f"environment {spec.name} needs Python {spec.python} ({spec.why}): "
            f"{not_found(spec.python)}",
            where=f"backends install {spec.name}",
            fix=f"{install_hint(spec.python)}, then run `neuroprune backends install {spec.name}`.",
        )
    return found


def _build(
    spec: EnvironmentSpec, base: Interpreter, root: Path, progress: Progress | None
) -> EnvironmentStatus:
    begin = time.perf_counter()
    final = environment_dir(spec.name, root)
    partial = root / f"{spec.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    log = partial / LOG_FILE
    steps = 2 + (2 if spec.requirements else 0)  # the step() calls below

    def step(message: str, **metrics) -> None:
        emit(
            progress,
            stage=STAGE,
            event="env_step",
            message=f"{spec.name}: {message}",
            advance=1,
            env=spec.name,
            **metrics,
        )

    emit(
        progress,
        stage=STAGE,
        event="env_begin",
        total=steps,
        env=spec.name,
        message=f"{spec.name}: building in {partial} with Python {base.version} ({base.path})",
    )
    try:
        _create_venv(spec, base, partial)
        python = interpreter_of(partial)
        step("virtual environment created")
        if spec.layered:
            _layer_on_tool(python)
        if spec.requirements:
            _pip(spec, python, log, ["install", "--quiet", "--upgrade", "pip"])
            step("pip upgraded")
            _pip(spec, python, log, ["install", *spec.requirements])
            if spec.without_dependencies:
                _pip(spec, python, log, ["install", "--no-deps", *spec.without_dependencies])
            step(f"installed {' '.join(spec.all_requirements)} (log: {final / LOG_FILE})")
        probed = _probe(spec, python, partial)
        step(f"probe passed: imported {', '.join(spec.probe) or 'nothing'}")
        stamp = {
            **stamp_for(spec, probed["python"]),
            "interpreter": str(base.path),
            "versions": probed["versions"],
            "probe": list(spec.probe),
            "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json(partial / STAMP_FILE, stamp)
        _replace(partial, final)
    except BaseException:
        if log.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(log, root / f"{spec.name}.install.log")
        shutil.rmtree(partial, ignore_errors=True)
        raise
    done = status(spec, root)
    if not done.ready:
        raise BackendUnavailableError(
            f"environment {spec.name} was built but is not usable at {final} ({done.reason})",
            where=f"backends install {spec.name}",
            fix="Report this; remove the folder and install again with --force.",
        )
    seconds = time.perf_counter() - begin
    size = folder_bytes(final)
    emit(
        progress,
        stage=STAGE,
        event="env_done",
        done=True,
        env=spec.name,
        seconds=seconds,
        size_bytes=size,
        message=f"{spec.name}: ready at {final} (Python {done.version}, {seconds:.0f} s, "
        f"{size / 2**20:.0f} MiB)",
    )
    return done


def _clean_env() -> dict[str, str]:
    """This process's environment without what would make another interpreter import the
    tool's packages (``PYTHONPATH``, ``PYTHONHOME``)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _create_venv(spec: EnvironmentSpec, base: Interpreter, partial: Path) -> None:
    command = [str(base.path), "-m", "venv"]
    if not spec.requirements:
        command.append("--without-pip")
    done = subprocess.run(
        [*command, str(partial)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        timeout=STEP_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise _failure(spec, "python -m venv failed", _last_line(done.stderr or done.stdout))


def _layer_on_tool(python: Path) -> Path:
    """Write :data:`PTH_FILE` into the site-packages of the venv of ``python``: the tool
    environment's site directories are added after the venv's own (``site.addsitedir`` also
    runs the ``.pth`` files there, e.g. an editable install of neuroprune)."""
    purelib = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=STEP_TIMEOUT_S,
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({path!r})" for path in tool_site_dirs()]
    pth = Path(purelib) / PTH_FILE
    pth.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return pth


def _pip(spec: EnvironmentSpec, python: Path, log: Path, arguments: list[str]) -> None:
    """``python -m pip ARGUMENTS``, output appended to ``log``."""
    command = [str(python), "-m", "pip", *arguments]
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        done = subprocess.run(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            cwd=python.parent.parent,
            timeout=PIP_TIMEOUT_S,
        )
    if done.returncode != 0:
        text = log.read_text(encoding="utf-8", errors="replace")
        errors = [line for line in text.splitlines() if line.startswith("ERROR")]
        kept = log.parent.parent / f"{spec.name}.install.log"
        raise _failure(
            spec,
            f"pip {arguments[0]} failed: {errors[-1] if errors else _last_line(text)}",
            f"pip's output: {kept}",
        )


def _probe(spec: EnvironmentSpec, python: Path, env_dir: Path) -> dict:
    """Import the probe modules and check the pins in the new environment; its answer."""
    pins = [list(m.groups()) for m in map(_PIN.match, spec.all_requirements) if m]
    dists = [m.group(1) for m in map(_DIST.match, spec.all_requirements) if m]
    job = json.dumps({"modules": list(spec.probe), "pins": pins, "dists": dists})
    done = subprocess.run(
        [str(python), "-c", _PROBE, job],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=env_dir,
        stdin=subprocess.DEVNULL,
        timeout=STEP_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise _failure(spec, "the probe failed", _last_line(done.stderr))
    return json.loads(done.stdout.strip().splitlines()[-1])


def _failure(spec: EnvironmentSpec, what: str, detail: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"environment {spec.name} could not be built: {what}: {detail}",
        where=f"backends install {spec.name}",
        fix="Nothing was installed in its place; fix the cause and run the install again.",
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _replace(partial: Path, final: Path) -> None:
    """Move ``partial`` to ``final``; an existing ``final`` is renamed away, then removed."""
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    if final.exists() or final.is_symlink():
        os.rename(final, old)
    os.rename(partial, final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _install_lock(root: Path, name: str) -> Iterator[None]:
    """Hold ``<root>/.<name>.lock`` (``flock``) so two installs of one environment take turns."""
    with open(root / f".{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sweep_dead_installs(root: Path, name: str) -> list[Path]:
    """Remove ``<name>.partial-<pid>`` and ``<name>.old-<pid>`` folders whose process is gone."""
    swept = []
    for folder in root.glob(f"{name}.*-*"):
        kind, _, pid = folder.name[len(name) + 1 :].rpartition("-")
        if kind in ("partial", "old") and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(folder)
    return swept


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (symlinks not followed; apparent sizes)."""
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total
