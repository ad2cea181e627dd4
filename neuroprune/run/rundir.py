"""The run directory (one owner of run files) and its record, ``report.json``.

:class:`RunDir` knows every file of ``runs/<name>/`` (docs/architecture.md): the paths, the
resolved config (``config.yaml``, settings nested under ``config:``), the chip profile copy, the
model artifacts (through :mod:`neuroprune.run.artifacts`, safe loading), the JSON records, the
log, the lock, and which files are stale. No other module opens a run file by name.

:class:`RunRecord` is the typed, versioned schema of ``report.json`` (defined in
:mod:`neuroprune.run.record`, re-exported here): :meth:`RunDir.load_record` validates the file
into it (one-line error when it is absent, corrupt or off the schema), the reports read it;
:meth:`RunDir.saved_record` reads a possibly partial record leniently (:class:`SavedRecord`,
for a sweep's resume).

**Runs are never lost.** A run is never written in place: :meth:`RunDir.build` makes a
:class:`RunBuild`, whose files go to a staging folder beside the run (same parent, so a rename
moves it), and :meth:`RunBuild.publish` puts the finished run in the place of the earlier one in
one step. Until then the earlier run is not touched, whatever stops the process (an error,
Ctrl-C, SIGTERM, SIGKILL, a full disk). Beside ``runs/<name>``::

    .<name>.lock       the writer lock of <name> (below)
    .<name>.staging    a fit being built; after a failure, the partial run --resume continues
    .<name>.update     a command rewriting a finished run (quantize, simulate); never resumed
    .<name>.replaced   the earlier run during a swap where the exchange below is unavailable

Publishing: the partial mark (``.neuroprune-partial``, present while a staging folder is being
built) is removed; the user's own files of the earlier run (anything that is not a run file) are
hard-linked into the new one; then the two folders are exchanged with one ``renameat2(...,
RENAME_EXCHANGE)`` (Linux), and the earlier run, now under the staging name, is deleted. Where
the file system cannot exchange, the earlier run is renamed to ``.<name>.replaced``, the new one
to ``<name>``, and the earlier one deleted; a process killed between the two renames leaves no
``<name>``, and the next writer renames ``.replaced`` back (the earlier run, byte-identical).
SIGINT and SIGTERM are held back for the few system calls of a swap.

**Where a resumable partial run lives:** in ``.<name>.staging`` (it holds the partial mark). A
``fit`` that stops before publishing leaves it there; ``fit --resume`` continues from it (the
models it finished, ``dense.ckpt``), taking the finished run's models (hard links) for any the
partial lacks; each is reused only when its recorded inputs match (:mod:`neuroprune.pipeline.resume`).
A ``fit`` without ``--resume`` deletes it and starts anew. A staging folder without the mark is
an earlier run left by a swap that was killed before deleting it, and is deleted by the next
build. Holding the lock proves that no live process is writing any of these folders.

The lock is ``.<name>.lock`` beside the run (outside it, so that it survives the swap): ``flock``
on an open file plus the holder's pid written inside. The kernel drops a ``flock`` when its
holder dies, so a lock file left by a killed run (its pid dead) is simply taken over; a live
holder gives :class:`RunLockedError` naming its pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from neuroprune.core.atomic import write_json, write_text
from neuroprune.core.errors import EXIT_IO_ERROR, ArtifactError, ConfigError, NeuropruneError
from neuroprune.run.record import (
    RECORD_VERSION,
    ArtifactsRecord,
    BudgetRecord,
    DerivationRecord,
    ErrorRecord,
    FitRecord,
    FloatDriftRecord,
    QatRecord,
    QuantizedRecord,
    RunRecord,
    SavedFit,
    SavedRecord,
    SavedSimulation,
    SavedStage,
    SimulationRecord,
    StageRecord,
    ValidationRecord,
    ViolationRecord,
)

__all__ = [  # the record's models are re-exported: callers import them from here
    "CHECKPOINT",
    "LEGACY_LOCK",
    "MODEL_FILES",
    "PARTIAL_MARK",
    "PLOTS",
    "RECORD_VERSION",
    "RESUMABLE",
    "RUN_FILES",
    "ArtifactsRecord",
    "BudgetRecord",
    "DerivationRecord",
    "ErrorRecord",
    "FitRecord",
    "FloatDriftRecord",
    "QatRecord",
    "QuantizedRecord",
    "RunBuild",
    "RunDir",
    "RunLockedError",
    "RunPathError",
    "RunRecord",
    "SavedFit",
    "SavedRecord",
    "SavedSimulation",
    "SavedStage",
    "SimulationRecord",
    "StageRecord",
    "ValidationRecord",
    "ViolationRecord",
    "check_run_name",
    "run_files",
    "user_entries",
]
LEGACY_LOCK = ".neuroprune.lock"  # the lock inside the run, before the lock moved beside it
PARTIAL_MARK = ".neuroprune-partial"  # in a staging folder while its run is being built
MODEL_FILES = {"dense": "dense.pt", "pruned": "pruned.pt", "quantized": "quantized.pt"}
CHECKPOINT = "dense.ckpt"
# Every file a run writes (plots are matched by folder); anything else in the folder is the
# user's and is never touched.
RUN_FILES = (
    "config.yaml",
    "profile.yaml",
    "dense.pt",
    CHECKPOINT,
    "pruned.pt",
    "quantized.pt",
    "model.nir",
    "model.onnx",
    "model.netx",
    "model_pynn.py",
    "model_pynn.npz",
    "fit.json",
    "simulation.json",
    "report.json",
    "report.md",
    "log.txt",
)
PLOTS = "plots"
RESUMABLE = (*MODEL_FILES.values(), CHECKPOINT)  # what --resume may take from a finished run


class RunLockedError(NeuropruneError):
    """Another live process is writing this run directory."""


class RunPathError(ArtifactError):
    """A file is where the run directory (or one of its parents) must be (exit 4, like other
    file-system faults)."""

    exit_code = EXIT_IO_ERROR


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: no separators, not ``.``/``..``, no NUL."""
    bad = (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or name.startswith("~")
    )
    if bad:
        raise ValueError("must be a plain folder name inside --out")
    return name


# --------------------------------------------------------------------------------------------
# The directory


class RunDir:
    """One run directory ``out/name`` (module docstring). Nothing is created until
    :meth:`lock`, :meth:`build` or a write."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self.written: set[str] = set()  # run files written (or reused) by this process

    def mark(self, name: str) -> None:
        """Record that this run wrote or reused the run file ``name`` (see :meth:`remove_files`)."""
        self.written.add(name)

    @classmethod
    def of(cls, out: str | os.PathLike, name: str) -> RunDir:
        """``out/name`` with ``name`` checked to stay inside ``out``."""
        try:
            check_run_name(name)
        except ValueError as exc:
            raise ConfigError(
                str(exc),
                where="--name",
                field="name",
                value=name,
                fix="Give a plain folder name (no '/', not '.' or '..'); --out sets the parent.",
            ) from None
        return cls(Path(out) / name)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- the folders beside the run -------------------------------------------------------

    @property
    def real_path(self) -> Path:
        """The folder itself: absolute, symbolic links resolved (a run reached through a link
        is replaced where it is, the link kept)."""
        return Path(os.path.realpath(self.path))

    def _beside(self, tag: str) -> Path:
        """``<parent>/.<name>.<tag>`` beside :attr:`real_path`."""
        folder = self.real_path
        return folder.parent / f".{folder.name}.{tag}"

    @property
    def lock_path(self) -> Path:
        """The writer lock, ``.<name>.lock`` beside the run."""
        return self._beside("lock")

    def staging_path(self, resumable: bool = True) -> Path:
        """The folder a new run of this name is built in: ``.<name>.staging`` (a fit,
        resumable) or ``.<name>.update`` (a command rewriting a finished run)."""
        return self._beside("staging" if resumable else "update")

    @property
    def replaced_path(self) -> Path:
        """Where the earlier run waits during a swap without ``RENAME_EXCHANGE``."""
        return self._beside("replaced")

    # ---- lock -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the run's writer lock for the ``with`` body (module docstring)."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def acquire(self) -> None:
        """Take the writer lock (creating the parent folder); then put back an earlier run that
        a swap killed half-way left aside (module docstring)."""
        self._check_folder()
        lock = self.lock_path
        lock.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise RunLockedError(
                    "another neuroprune process is writing this run directory",
                    where=str(self.path),
                    field="pid",
                    value=holder,
                    fix="Wait for it to finish, or pass another --name.",
                ) from None
            if _same_file(fd, lock):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._lock_fd = fd
                self._restore_replaced()
                return
            os.close(fd)  # the file was replaced by a releasing holder: lock the new one
        raise RunLockedError("could not take the run lock", where=str(lock))

    def release(self) -> None:
        if self._lock_fd is None:
            return
        if _same_file(self._lock_fd, self.lock_path):  # never another holder's lock file
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def _restore_replaced(self) -> None:
        """Under the lock: an earlier run left at ``.<name>.replaced`` by a killed swap goes
        back to ``<name>`` when nothing took its place; else it is the stale earlier run."""
        aside = self.replaced_path
        if not aside.is_dir():
            return
        if not os.path.lexists(self.real_path):
            os.rename(aside, self.real_path)
        else:
            shutil.rmtree(aside, ignore_errors=True)

    # ---- building a run beside the earlier one ---------------------------------------------

    @contextlib.contextmanager
    def build(self, *, resumable: bool = True, resume: bool = False) -> Iterator[RunBuild]:
        """Build a new run of this name in a staging folder (module docstring) while holding
        the lock; the body ends with :meth:`RunBuild.publish`.

        ``resumable`` (a fit): the folder is ``.<name>.staging``; ``resume`` continues the
        partial run found there, else it is deleted; a body that stops before publishing leaves
        its partial run for ``--resume``. Not ``resumable`` (a command rewriting a finished run):
        ``.<name>.update``, deleted when the body stops early. Either way the run at ``<name>``
        is not touched unless the body publishes."""
        with self.lock():
            staging = self.staging_path(resumable)
            _remove(self.staging_path(resumable=False))  # under the lock: never being written
            # a fit's partial run is resumed or deleted by a fit only (a command leaves it); a
            # folder without the partial mark is an earlier run a killed swap left behind
            partial = (staging / PARTIAL_MARK).is_file()
            if resumable and not (resume and partial):
                _remove(staging)
            staging.mkdir(exist_ok=True)
            (staging / PARTIAL_MARK).write_text(f"{os.getpid()}\n")
            build = RunBuild(self, RunDir(staging))
            try:
                yield build
            except BaseException:
                if not (resumable or build.published):
                    _remove(staging)
                raise
            if not build.published and not resumable:
                _remove(staging)

    def _check_folder(self) -> None:
        for parent in (self.path, *self.path.parents):
            if parent.exists() and not parent.is_dir():
                raise RunPathError(
                    "a file is in the way of the run directory (errno ENOTDIR)",
                    where=str(parent),
                    fix="Remove or rename that file, or pass another --out/--name.",
                )

    # ---- config and profile ----------------------------------------------------------------

    def save_config(self, config: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
        """``config.yaml``: ``config:`` (the resolved settings), then provenance keys."""
        body = {"config": dict(config), **dict(provenance)}
        write_text(self / "config.yaml", yaml.safe_dump(body, sort_keys=False))
        self.mark("config.yaml")

    def load_config(self) -> dict[str, Any]:
        """The ``config:`` mapping of ``config.yaml`` (ArtifactError when absent or broken)."""
        path = self / "config.yaml"
        if not self.path.is_dir():
            raise ArtifactError(
                "not a run directory",
                where=str(self.path),
                fix="Pass a folder written by 'neuroprune fit'.",
            )
        if not path.is_file():
            raise ArtifactError(
                "not a run directory (no config.yaml)",
                where=str(self.path),
                fix="Pass a folder written by 'neuroprune fit'.",
            )
        try:
            raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ArtifactError(
                f"config.yaml is unreadable ({type(exc).__name__})",
                where=str(path),
                fix="Rerun neuroprune fit for this run directory.",
            ) from exc
        section = raw.get("config") if isinstance(raw, Mapping) else None
        if not isinstance(section, Mapping):
            raise ArtifactError(
                "config.yaml has no 'config:' mapping",
                where=str(path),
                fix="Rerun neuroprune fit for this run directory.",
            )
        return dict(section)

    def save_profile(self, text: str) -> None:
        write_text(self / "profile.yaml", text)
        self.mark("profile.yaml")

    @property
    def profile_path(self) -> Path:
        return self / "profile.yaml"

    # ---- models -----------------------------------------------------------------------------

    def model_path(self, stage: str) -> Path:
        return self / MODEL_FILES[stage]

    def has_model(self, stage: str) -> bool:
        path = self.model_path(stage)
        if path.exists() and not path.is_file():
            raise ArtifactError(
                "expected a model file, found something else",
                where=str(path),
                fix="Remove it and rerun the stage that writes it.",
            )
        return path.is_file()

    def save_model(self, stage: str, model, meta: Mapping[str, Any]) -> Path:
        from neuroprune.run.artifacts import save_model  # deferred: imports spikingjelly, torch

        self.mark(MODEL_FILES[stage])
        return save_model(self.model_path(stage), model, dict(meta))

    def load_model(self, stage: str):
        """``(model, meta)`` of a stage's artifact (safe loading, :mod:`neuroprune.run.artifacts`)."""
        from neuroprune.run.artifacts import load_model  # deferred: imports spikingjelly, torch

        return load_model(self.model_path(stage))

    def final_model(self):
        """The last model the run has: quantized, else pruned, else dense."""
        for stage in ("quantized", "pruned", "dense"):
            if self.has_model(stage):
                return self.load_model(stage)[0]
        raise ArtifactError(
            "no model in this run directory",
            where=str(self.path),
            fix="Run 'neuroprune fit' first.",
        )

    @property
    def checkpoint_path(self) -> Path:
        return self / CHECKPOINT

    # ---- records ----------------------------------------------------------------------------

    def write_fit(self, data: Mapping[str, Any]) -> Path:
        self.mark("fit.json")
        return write_json(self / "fit.json", data)

    def write_simulation(self, data: Mapping[str, Any]) -> Path:
        self.mark("simulation.json")
        return write_json(self / "simulation.json", data)

    def write_record(self, record: RunRecord, markdown: str) -> None:
        write_json(self / "report.json", record.as_dict())
        write_text(self / "report.md", markdown)
        self.written |= {"report.json", "report.md"}

    def load_record(self) -> RunRecord:
        path = self / "report.json"
        if not path.is_file():
            raise ArtifactError(
                "no report.json in this run directory",
                where=str(self.path),
                fix="Run 'neuroprune fit' first, or check the path.",
            )
        try:
            return RunRecord.model_validate(json.loads(path.read_bytes().decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(
                f"report.json is corrupt ({type(exc).__name__})",
                where=str(path),
                fix="Rerun neuroprune fit for this run directory.",
            ) from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ArtifactError(
                f"report.json does not match the record schema ({first['msg']})",
                where=str(path),
                field=".".join(map(str, first["loc"])),
                value=first.get("input"),
                fix="Rerun neuroprune fit for this run directory.",
            ) from None

    def saved_record(self) -> SavedRecord | None:
        """report.json read leniently (:class:`SavedRecord`); None when it is absent, not
        readable JSON, or its sections are not what a record holds."""
        try:
            return SavedRecord.model_validate(self.saved_report())
        except ValidationError:
            return None

    def saved_report(self) -> dict[str, Any] | None:
        """report.json as saved, unchecked (a sweep's finished trial may be an older or partial
        record); None when it is absent or not readable JSON. :meth:`load_record` checks it."""
        try:
            return json.loads((self / "report.json").read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None

    def write_log(self, lines: list[str]) -> None:
        write_text(self / "log.txt", "\n".join(lines) + "\n")
        self.mark("log.txt")

    @property
    def plots(self) -> Path:
        return self / PLOTS

    def model_file(self, fmt: str) -> Path:
        return self / f"model.{fmt}"

    def deploy_file(self, fmt: str) -> Path:
        """A vendor artifact: ``model.netx`` (lava-dl netx) or ``model_pynn.py`` (PyNN, with
        ``model_pynn.npz`` beside it)."""
        return self / ("model_pynn.py" if fmt == "pynn" else f"model.{fmt}")

    # ---- stale files ------------------------------------------------------------------------

    def remove_files(self, keep: set[str]) -> list[str]:
        """Delete run files (and plots) not named in ``keep`` (names relative to the run);
        the user's own files are left alone. Returns what was removed."""
        removed = []
        candidates = [self / n for n in RUN_FILES]
        if self.plots.is_dir():
            candidates += sorted(self.plots.glob("*.png"))
        for path in candidates:
            name = str(path.relative_to(self.path))
            if name not in keep and path.is_file():
                path.unlink()
                removed.append(name)
        return removed


class RunBuild:
    """A new run of ``target`` being written in ``staging`` (:meth:`RunDir.build`): every
    writer gets ``staging``; :meth:`publish` puts it in the place of ``target``."""

    def __init__(self, target: RunDir, staging: RunDir) -> None:
        self.target = target
        self.staging = staging
        self.published = False

    def take(self, source: RunDir, names: Iterable[str]) -> list[str]:
        """Bring the run files ``names`` (relative, e.g. ``plots/cores.png``) of ``source``
        that the staging folder lacks; returns those taken. From the run being replaced they
        are hard links (its files are never written in place: every write is a new file
        renamed over the old, so the earlier run stays byte-identical); from another run,
        copies (two runs never share a file)."""
        link = source.real_path == self.target.real_path
        taken = []
        for name in names:
            src, dst = source / name, self.staging / name
            if not src.is_file() or os.path.lexists(dst):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(src, dst) if link else shutil.copy2(src, dst)
            taken.append(name)
        return taken

    def publish(self) -> Path:
        """Replace the earlier run (if any) with this one in one step (module docstring): the
        partial mark goes, the user's own files of the earlier run are linked in, the folders
        are swapped and the earlier run deleted. Returns the run's path (as the caller named
        it)."""
        staging, target = self.staging.path, self.target.real_path
        (staging / PARTIAL_MARK).unlink(missing_ok=True)
        if target.is_dir():
            for name in user_entries(target):
                _link_tree(target / name, staging / name)
        with _signals_held():
            if not os.path.lexists(target):
                os.rename(staging, target)
                self.published = True
            elif _exchange(staging, target):
                self.published = True
                _remove(staging)  # the earlier run, now under the staging name
            else:
                aside = self.target.replaced_path
                os.rename(target, aside)
                try:
                    os.rename(staging, target)
                except OSError:
                    os.rename(aside, target)
                    raise
                self.published = True
                _remove(aside)
        return self.target.path


def run_files(folder: Path) -> list[str]:
    """The run files present in ``folder`` (names relative to it; plots included)."""
    names = [n for n in RUN_FILES if (folder / n).is_file()]
    plots = folder / PLOTS
    if plots.is_dir():
        names += [f"{PLOTS}/{p.name}" for p in sorted(plots.glob("*.png")) if p.is_file()]
    return names


def user_entries(folder: Path) -> list[str]:
    """What in ``folder`` is the user's (names relative to it): anything but the run files,
    the plots, a partial mark, a legacy lock and an atomic write's temporary file."""
    ours = {*RUN_FILES, PARTIAL_MARK, LEGACY_LOCK}

    def own(name: str, names: Iterable[str]) -> bool:
        temporary = any(name.startswith(f".{n}.") for n in names)
        return name in ours or temporary

    entries = []
    for entry in sorted(folder.iterdir()):
        if entry.name == PLOTS and entry.is_dir() and not entry.is_symlink():
            pngs = [p.name for p in entry.glob("*.png")]
            entries += [
                f"{PLOTS}/{p.name}"
                for p in sorted(entry.iterdir())
                if p.suffix != ".png" and not own(p.name, pngs)
            ]
        elif not own(entry.name, RUN_FILES):
            entries.append(entry.name)
    return entries


def _link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """A hard link, or a copy where the file system has none."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _link_tree(src: Path, dst: Path) -> None:
    """``src`` (a file, a link or a folder) at ``dst``, files hard-linked."""
    if os.path.lexists(dst):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def remove_tree(path: Path) -> None:
    """Delete ``path`` (a folder with all it holds, or a file); nothing when it is absent."""
    _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``); False where the C library or the file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the body is done (then are delivered as usual), so that
    an interrupt never falls between the renames of a swap. Only the main thread can set
    handlers; elsewhere the body runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda num, _: pending.append(num)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in pending:
            signal.raise_signal(sig)


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
