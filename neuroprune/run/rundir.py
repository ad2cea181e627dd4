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

The lock is ``<run>/.neuroprune.lock``: ``flock`` on an open file plus the holder's pid written
inside. The kernel drops a ``flock`` when its holder dies, so a lock file left by a killed run
(its pid dead) is simply taken over; a live holder gives :class:`RunLockedError` naming its pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
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
    "LOCK_NAME",
    "MODEL_FILES",
    "PLOTS",
    "RECORD_VERSION",
    "RUN_FILES",
    "ArtifactsRecord",
    "BudgetRecord",
    "ErrorRecord",
    "FitRecord",
    "FloatDriftRecord",
    "QatRecord",
    "QuantizedRecord",
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
]
LOCK_NAME = ".neuroprune.lock"
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
    "fit.json",
    "simulation.json",
    "report.json",
    "report.md",
    "log.txt",
)
PLOTS = "plots"


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
    :meth:`lock` or a write."""

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
        self._check_folder()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_NAME
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
                return
            os.close(fd)  # the file was replaced by a releasing holder: lock the new one
        raise RunLockedError("could not take the run lock", where=str(lock))

    def release(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.path / LOCK_NAME).unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

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


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
