"""The run directory (one owner of run files) and its record, ``report.json``.

:class:`RunDir` knows every file of ``runs/<name>/`` (docs/architecture.md): the paths, the
resolved config (``config.yaml``, settings nested under ``config:``), the chip profile copy, the
model artifacts (through :mod:`neuroprune.run.artifacts`, safe loading), the JSON records, the
log, the lock, and which files are stale. No other module opens a run file by name.

:class:`RunRecord` is the typed, versioned schema of ``report.json``. Its stable keys
(docs/architecture.md) are fields here; sections may carry more keys (``extra="allow"``), a
stage that did not run is ``None``.

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
from typing import Any, ClassVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from neuroprune.core.atomic import write_json, write_text
from neuroprune.core.errors import EXIT_IO_ERROR, ArtifactError, ConfigError, NeuropruneError

RECORD_VERSION = 1
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
# report.json


class _Section(BaseModel):
    """A report.json section: typed fields, and any further keys a stage writes (``extra``).

    Fields named in ``_optional`` are ones a stage may leave out (and older or partial records
    lack); they are written only when set, so report.json holds the keys its stages wrote."""

    model_config = ConfigDict(extra="allow")
    _optional: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _written_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self._optional - self.model_fields_set:
            data.pop(name, None)
        return data


class BudgetRecord(_Section):
    synapses: int
    source: str


class StageRecord(_Section):
    """dense / pruned / quantized: test accuracy (0..1), physical synapses, spiking neurons;
    ``layers``: one JSON row per layer (``layer``, ``neurons``, ``synapses``, ``dense``,
    ``sparsity`` 0..1, ``max_fan_in``, ``mean_fan_in``), the rows the plots draw."""

    _optional = frozenset({"layers"})

    accuracy: float
    synapses: int
    neurons: int
    max_fan_in: int | None = None
    layers: list[dict[str, Any]] = []


class QatRecord(_Section):
    """Quantization-aware fine-tuning: ``decision`` (``kept``, ``reverted`` or ``not run``),
    validation accuracy (0..1) after PTQ and after fine-tuning, held-out samples, epochs."""

    _optional = frozenset(
        {"decision", "val_ptq", "val_qat", "val_samples", "epochs_run", "best_epoch"}
    )

    decision: str | None = None
    val_ptq: float | None = None
    val_qat: float | None = None
    val_samples: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None


class QuantizedRecord(StageRecord):
    """The quantized stage: its weight ``format``, test accuracy (0..1) of the float model,
    after PTQ and after fine-tuning, the chip ``arithmetic`` of its neurons (None: float
    neurons), fine-tuning, per-layer rows (``weight_scale``, ``clipped_fraction``, errors)."""

    _optional = StageRecord._optional | {
        "accuracy_float",
        "accuracy_ptq",
        "accuracy_qat",
        "arithmetic",
        "qat",
        "notes",
    }

    format: str
    accuracy_float: float | None = None
    accuracy_ptq: float | None = None
    accuracy_qat: float | None = None
    arithmetic: str | None = None
    qat: QatRecord = QatRecord()
    notes: list[str] = []


class ViolationRecord(_Section):
    """One broken fit rule: the layer, the chip's limit and the network's value, a hint."""

    rule: str
    layer: str
    limit: int | float
    actual: int | float
    hint: str


class FitRecord(_Section):
    """The fit check (:class:`neuroprune.fit.report.FitReport`): verdict, cores used of
    ``cores_allocated``, chips needed, violations, ``utilisation`` (resource -> 0..1 of the
    cores used); ``chip``, ``synapses`` and ``neurons`` of the network checked."""

    _optional = frozenset({"chip", "cores_allocated", "synapses", "neurons", "utilisation"})

    fits: bool
    cores: int
    chips: int
    violations: list[ViolationRecord]
    chip: str | None = None
    cores_allocated: int | None = None
    synapses: int | None = None
    neurons: int | None = None
    utilisation: dict[str, float] = {}


class FloatDriftRecord(_Section):
    """The same weights on float neurons vs the chip run: per layer the fraction (0..1) of
    samples with identical counts, prediction agreement and accuracy (0..1)."""

    _optional = frozenset({"prediction_agreement", "accuracy"})

    layer_agreement: list[float]
    prediction_agreement: float | None = None
    accuracy: float | None = None


class SimulationRecord(_Section):
    """The simulation (:class:`neuroprune.sim.result.SimulationResult`): agreements are
    fractions (0..1), ``seconds_per_sample`` in s, ``energy_per_sample_j`` in J; ``layers``:
    one JSON row per neuron layer (``layer``, ``spikes_per_sample``, ``rate``, ``agreement``)."""

    _optional = frozenset(
        {
            "mode",
            "accuracy",
            "agreement_source",
            "model_agreement",
            "model_count_agreement",
            "model_prediction_agreement",
            "float_drift",
            "notes",
            "synops_per_sample",
            "energy_per_sample_j",
            "layers",
        }
    )

    backend: str
    samples: int
    spike_agreement: float | None = None
    prediction_agreement: float | None = None
    seconds_per_sample: float | None = None
    mode: str | None = None
    accuracy: float | None = None
    agreement_source: str | None = None
    model_agreement: list[float] | None = None
    model_count_agreement: list[float] | None = None
    model_prediction_agreement: float | None = None
    float_drift: FloatDriftRecord | None = None
    notes: list[str] = []
    synops_per_sample: int | float | None = None
    energy_per_sample_j: float | None = None
    layers: list[dict[str, Any]] = []


class ArtifactsRecord(_Section):
    nir: str | None = None
    onnx: str | None = None


class ErrorRecord(_Section):
    """A stage that failed after the run started (the run still wrote its record)."""

    stage: str
    kind: str
    message: str


class RunRecord(_Section):
    """``report.json`` (docs/architecture.md "report.json: keys other tools rely on");
    ``chip_name`` (the profile's name), ``counting`` (the synapse counting convention) and
    ``plots`` (paths relative to the run) are written by the run, absent from older records."""

    _optional = frozenset({"chip_name", "counting", "plots"})

    record_version: int = RECORD_VERSION
    chip: str
    budget: BudgetRecord
    dense: StageRecord | None = None
    pruned: StageRecord | None = None
    quantized: QuantizedRecord | None = None
    fit: FitRecord | None = None
    simulation: SimulationRecord | None = None
    artifacts: ArtifactsRecord = ArtifactsRecord()
    stages_not_run: list[str] = []
    errors: list[ErrorRecord] = []
    chip_name: str | None = None
    counting: str | None = None
    plots: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what ``report.json`` holds and ``--json`` prints)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# A saved record as a sweep reads it


class SavedStage(_Section):
    """A section of a saved, possibly partial or older report.json: every field optional."""

    accuracy: float | None = None
    synapses: int | None = None


class SavedFit(_Section):
    fits: bool | None = None
    cores: int | None = None
    chips: int | None = None


class SavedSimulation(_Section):
    energy_per_sample_j: float | None = None


class SavedRecord(_Section):
    """report.json as saved, read leniently: the fields a sweep reads, every one optional.

    A sweep resumes from trials whose record may be partial or older than :class:`RunRecord`
    (a run stopped after the fit stage; a record without ``budget``), so :meth:`RunDir.
    saved_record` cannot demand the full schema; it still types what it reads. ``fit`` is the
    resume rule's stage: a trial with ``fit`` None has not finished."""

    config: dict[str, Any] | None = None
    budget: SavedStage | None = None
    dense: SavedStage | None = None
    pruned: SavedStage | None = None
    quantized: SavedStage | None = None
    fit: SavedFit | None = None
    simulation: SavedSimulation | None = None


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
