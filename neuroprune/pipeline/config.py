"""Run configuration (layer L8): one frozen pydantic model, filled from defaults, a YAML file and
command-line overrides (in that order), validated once, before anything is written.

The schema is written once (the fields below): types are strict (``resume: "no"`` or
``seed: abc`` are errors, not coerced), numbers finite, ranges checked, and an unknown key is an
error with a close-match suggestion. A failure is one :class:`ConfigError` naming the source
(file or command line), the dotted field, the value and what is allowed. The resolved config is
saved in every run directory (``config.yaml``, under ``config:``) by
:class:`neuroprune.run.rundir.RunDir`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from neuroprune.core.errors import ConfigError, NeuropruneError, did_you_mean
from neuroprune.core.registry import unknown_name
from neuroprune.core.yaml_text import read_user_yaml
from neuroprune.data.datasets import DATASETS as DATASET_NAMES
from neuroprune.data.datasets import canonical_name, is_event_dataset
from neuroprune.data.encoding import ENCODINGS, EVENTS, IMAGE_ENCODINGS
from neuroprune.data.events import BINNINGS, POLARITIES, EventOptions, parse_window
from neuroprune.models.registry import AUTO_NEURON, NEURON_MODELS
from neuroprune.pruning.registry import PRUNING_METHODS
from neuroprune.pruning.schedulers import SCHEDULERS
from neuroprune.run.rundir import check_run_name
from neuroprune.sim.backends import SIM_BACKENDS

NO_SIMULATION = "none"
"""``--backend none``: skip the simulation (not a backend of :data:`SIM_BACKENDS`)."""
BACKENDS: tuple[str, ...] = (*SIM_BACKENDS, NO_SIMULATION)
"""Kept for readers of the names; :func:`choices` reads the registries at call time."""
CHOICES: dict[str, Iterable[str]] = {
    "method": PRUNING_METHODS,
    "scheduler": SCHEDULERS,
    "backend": BACKENDS,
    "dataset": DATASET_NAMES,
    "encoding": ENCODINGS,
    "event_binning": BINNINGS,
    "event_polarity": POLARITIES,
    "neuron": (*NEURON_MODELS, AUTO_NEURON),
    "optimizer": ("adam", "sgd"),
    "device": ("cpu", "cuda"),
}
"""Config field -> its allowed names (a registry where one owns them). ``--help``, the
validation and the "did you mean" of every choice read this."""


def choices(key: str) -> tuple[str, ...]:
    """The names field ``key`` accepts now (registries read at call time)."""
    if key == "backend":
        return (*SIM_BACKENDS, NO_SIMULATION)
    return tuple(CHOICES[key])


def scheduled_methods() -> tuple[str, ...]:
    """Methods that take a threshold scheduler (``--scheduler``), from their registry entries."""
    return tuple(name for name, entry in PRUNING_METHODS.items() if entry.scheduled)


def _one_of(key: str) -> AfterValidator:
    """A validator accepting the names of :func:`choices` ``(key)`` (read when validating, so a
    name registered after import is accepted)."""

    def check(value: str) -> str:
        if value not in choices(key):
            raise ValueError(f"{value!r} is not a known {key}")
        return value

    return AfterValidator(check)


MAX_LAYER_WIDTH = 65_536  # neurons per hidden layer; wider cannot fit memory nor any chip


def _number(value: Any) -> Any:
    """Accept ints and floats (and numeric YAML), refuse bools and text before coercion."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _widths(value: Any) -> Any:
    """``"128,64"``, ``"128x64"``, ``128`` or ``[128, 64]`` -> a list of ints."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",") if p.strip()]
        try:
            return [int(p) for p in parts]
        except ValueError:
            raise ValueError("must be a comma-separated list of widths, e.g. 128,64") from None
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


Float = Annotated[float, BeforeValidator(_number)]
PosInt = Annotated[StrictInt, Field(gt=0)]
Width = Annotated[StrictInt, Field(gt=0, le=MAX_LAYER_WIDTH)]
EpochCount = Annotated[StrictInt, Field(ge=0)]


class RunConfig(BaseModel):
    """Everything a ``neuroprune fit`` run needs. Units: epochs, steps, samples, synapses,
    seconds (``sim_timeout``); ``sparsity`` and ``agreement_threshold`` are fractions,
    ``max_accuracy_drop`` percentage points."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    chip: str = Field("loihi", min_length=1)
    chips: PosInt | None = None
    cores: PosInt | None = None
    budget: PosInt | None = None
    sparsity: Annotated[Float, Field(ge=0, lt=1)] | None = None
    params: Annotated[Float, Field(gt=0, le=1)] | None = None  # fraction of dense synapses kept
    scenes: PosInt | None = None  # detection: training scenes of spikecam-digits
    model: str = Field("mlp", min_length=1)
    hidden: Annotated[tuple[Width, ...], BeforeValidator(_widths), Field(min_length=1)] | None = (
        None
    )
    neuron: Annotated[str, _one_of("neuron")] = "lif"  # "auto": chosen on validation
    dataset: str = Field("digits", min_length=1)
    data_dir: str | None = None
    method: Annotated[str, _one_of("method")] = "stds"
    scheduler: Annotated[str, _one_of("scheduler")] | None = None
    epochs: PosInt | None = None  # None: the model's measured default (models.train.DEFAULTS)
    prune_epochs: EpochCount = 10
    finetune_epochs: EpochCount = 3
    quant_epochs: EpochCount = 2
    timesteps: PosInt | None = None
    encoding: Literal[ENCODINGS] | None = None  # type: ignore[valid-type]  # None: by dataset
    event_binning: Literal[BINNINGS] = "time"  # type: ignore[valid-type]
    event_downsample: PosInt = 1
    event_polarity: Literal[POLARITIES] = "both"  # type: ignore[valid-type]
    event_window: str | None = None  # "START:STOP" in ms after the first event
    batch_size: PosInt | None = None
    lr: Annotated[Float, Field(gt=0, le=10)] | None = None
    optimizer: Literal["adam", "sgd"] = "adam"
    seed: Annotated[StrictInt, Field(ge=0, lt=2**32)] = 0
    device: Literal["cpu", "cuda"] = "cpu"
    nproc: PosInt = 1  # training processes on this machine (>1: launched with torchrun, DDP)
    backend: Annotated[str, _one_of("backend")] = "lava"
    samples: PosInt | None = None
    fixed_point: StrictBool | None = None
    agreement_threshold: Annotated[Float, Field(ge=0, le=1)] = 0.99
    # points of test accuracy the deployed model may lose against the pruned float model
    # (None: no gate; negative: it must gain that many)
    max_accuracy_drop: Annotated[Float, Field(ge=-100, le=100)] | None = None
    sim_timeout: Annotated[Float, Field(gt=0)] | None = None
    nir_dt: Annotated[Float, Field(gt=0)] | None = None  # seconds per step in model.nir
    neurobench: StrictBool = True  # report.json neurobench: NeuroBench's metrics of the model
    from_nir: str | None = None  # start from this NIR graph instead of --model
    train_dense: StrictBool = False  # with from_nir: also train the imported network densely
    out: str = Field("runs", min_length=1)
    name: str | None = None
    resume: StrictBool = False

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise config_error(exc, where="config") from None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:

        return None if value is None else check_run_name(value)

    @field_validator("event_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        parse_window(value)  # ConfigError naming the field when malformed
        return value

    @model_validator(mode="after")
    def _resolve_encoding(self) -> RunConfig:
        """Event datasets are fed as their frames (``events``); images default to ``direct``."""
        try:
            events = is_event_dataset(self.dataset)
        except Exception:  # unknown dataset names are reported when the dataset is loaded
            return self
        allowed = (EVENTS,) if events else IMAGE_ENCODINGS
        if self.encoding is None:
            object.__setattr__(self, "encoding", allowed[0])
        elif self.encoding not in allowed:
            kind = "event" if events else "image"
            raise ConfigError(
                f"encoding does not apply to the {kind} dataset {canonical_name(self.dataset)}",
                where="config",
                field="encoding",
                value=self.encoding,
                fix=f"Use one of: {', '.join(allowed)} (or leave --encoding out).",
            )
        return self

    @model_validator(mode="after")
    def _compatible(self) -> RunConfig:
        """Options that would be ignored together are refused: ``--scheduler`` with a method
        that has none; ``--train-dense`` without ``--from``; with ``--from FILE.nir`` (the
        file is the model, neurons included) a ``--model``, ``--hidden`` or ``--neuron`` other
        than the default."""
        if self.scheduler is not None and not PRUNING_METHODS.get(self.method).scheduled:
            raise ValueError(
                f"--scheduler {self.scheduler} applies to {', '.join(scheduled_methods())} only, "
                f"not to --method {self.method}"
            )
        if self.train_dense and not self.from_nir:
            raise ValueError(
                "--train-dense (train_dense) applies with --from FILE.nir only: "
                "a --model is always trained densely"
            )
        if self.from_nir:
            ignored = {
                "--model": self.model if self.model != "mlp" else None,
                "--hidden": ",".join(map(str, self.hidden)) if self.hidden else None,
                "--neuron": self.neuron if self.neuron != "lif" else None,
            }
            for option, value in ignored.items():
                if value is not None:
                    raise ValueError(
                        f"{option} {value} would be ignored with --from {self.from_nir}: "
                        "the NIR file is the model, its layers and neurons included"
                    )
        return self

    def as_dict(self) -> dict[str, Any]:
        out = self.model_dump()
        out["hidden"] = list(self.hidden) if self.hidden else None
        return out

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with ``changes`` applied."""
        return RunConfig(**{**self.as_dict(), **changes})

    @property
    def run_name(self) -> str:
        model = Path(self.from_nir).stem if self.from_nir else self.model
        return self.name or f"{Path(self.chip).stem}-{model}-{self.method}-s{self.seed}"


KEYS = tuple(RunConfig.model_fields)


def event_options(cfg: RunConfig) -> EventOptions:
    """How an event dataset of ``cfg`` is binned (T = the resolved ``timesteps``, default 8)."""
    return EventOptions(
        timesteps=cfg.timesteps or 8,
        binning=cfg.event_binning,
        downsample=cfg.event_downsample,
        polarity=cfg.event_polarity,
        window_ms=parse_window(cfg.event_window),
    )


def config_error(exc: ValidationError, *, where: str) -> ConfigError:
    """One :class:`ConfigError` for the first problem of ``exc`` (the count of others added)."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    key = str(first["loc"][0]) if first["loc"] else None
    value = first.get("input")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return unknown_config_key(key, value, where=where)
    if key is None:  # a model-level rule (option compatibility)
        return ConfigError(message, where=where, fix="Change one of the options named.")
    more = f" ({len(errors) - 1} more problem(s) after this one)" if len(errors) > 1 else ""
    fix = _fix_for(key, value)
    return ConfigError(f"{message}{more}", where=where, field=field, value=value, fix=fix)


def unknown_config_key(key: str | None, value: Any, *, where: str) -> NeuropruneError:
    """``unknown config key`` with the closest known key (the value given is shown)."""
    return unknown_name(
        key,
        KEYS,
        what="config key",
        where=where,
        field=key,
        value=value,
        listing="Known keys: neuroprune fit --help.",
    )


def _fix_for(key: str, value: Any) -> str:
    if key in CHOICES:
        options = choices(key)
        return f"{did_you_mean(value, options)}Choose one of: {', '.join(options)}."
    if key == "hidden":
        return f"For example --hidden 128 or --hidden 128,64 (each 1..{MAX_LAYER_WIDTH})."
    if key == "name":
        return "Give a plain folder name (no '/', not '.' or '..'); --out sets the parent."
    if key == "sparsity":
        return "Give the fraction of synapses to remove, e.g. --sparsity 0.9."
    if key in ("resume", "fixed_point"):
        return "Use true or false."
    return f"See 'neuroprune fit --help' for {key}."


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict (unknown key -> ConfigError)."""
    path = Path(path)
    raw, _ = read_user_yaml(
        path, ConfigError, what="config", fix="a config file holds key: value lines (--config)."
    )
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("config must be a YAML mapping of key: value", where=str(path))
    check_keys(raw, where=str(path))
    return dict(raw)


def check_keys(values: Mapping[str, Any], *, where: str) -> None:
    """Raise ConfigError for the first unknown key, suggesting the closest known one."""
    for key in values:
        if key not in KEYS:
            raise unknown_config_key(str(key), values[key], where=where)


def resolve_config(config_file: str | Path | None, overrides: Mapping[str, Any]) -> RunConfig:
    """Defaults <- YAML file <- overrides (``None`` overrides are ignored)."""
    values: dict[str, Any] = read_config_file(config_file) if config_file else {}
    check_keys(overrides, where="command line")
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    try:
        return RunConfig(**values)
    except ConfigError as exc:  # say where the offending value came from
        key = exc.field.split(".")[0] if exc.field else None
        from_file = config_file is not None and key not in given
        exc.where = str(config_file) if from_file else "command line"
        raise


def parse_hidden(value: Any) -> tuple[int, ...]:
    """``--hidden`` text or list -> widths (ConfigError naming the field when invalid)."""
    return RunConfig(hidden=value).hidden  # type: ignore[return-value]


def config_from_saved(values: Mapping[str, Any], *, where: str) -> RunConfig:
    """The :class:`RunConfig` saved in a run directory (ArtifactError-like ConfigError)."""
    try:
        return RunConfig.model_validate(dict(values))
    except ValidationError as exc:
        raise config_error(exc, where=where) from None
