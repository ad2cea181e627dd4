"""Run configuration (layer L4): one frozen dataclass, filled from defaults, a YAML file and
command-line overrides (in that order), validated once.

An unknown key is an error with a close-match suggestion; a bad value names the key, the value
and what is allowed. The resolved config is saved in every run directory (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from neuroprune.data import ENCODINGS, EVENTS, IMAGE_ENCODINGS, canonical_name, is_event_dataset
from neuroprune.errors import ConfigError, did_you_mean
from neuroprune.events import BINNINGS, POLARITIES, EventOptions, parse_window

METHOD_NAMES = ("stds", "slats", "lats", "pgh", "gradr", "gmp", "magnitude", "sca", "sca+stds")
BACKENDS = ("lava", "reference", "none")


@dataclass(frozen=True)
class RunConfig:
    """Everything a ``neuroprune fit`` run needs. Units: epochs, steps, samples, synapses."""

    chip: str = "loihi"
    chips: int | None = None
    cores: int | None = None
    budget: int | None = None
    sparsity: float | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] | None = None
    neuron: str = "lif"
    dataset: str = "digits"
    data_dir: str | None = None
    method: str = "stds"
    scheduler: str | None = None
    epochs: int | None = None  # None: the model's measured default (models.train.DEFAULTS)
    prune_epochs: int = 10
    finetune_epochs: int = 3
    quant_epochs: int = 2
    timesteps: int | None = None
    encoding: str | None = None  # None: "events" for event datasets, else "direct"
    event_binning: str = "time"
    event_downsample: int = 1
    event_polarity: str = "both"
    event_window: str | None = None  # "START:STOP" in ms after the first event
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    seed: int = 0
    device: str = "cpu"
    nproc: int = 1  # training processes on this machine (>1: launched with torchrun, DDP)
    backend: str = "lava"
    samples: int | None = None
    fixed_point: bool | None = None
    agreement_threshold: float = 0.99
    sim_timeout: float | None = None
    out: str = "runs"
    name: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        _resolve_encoding(self)
        _validate(self)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden) if self.hidden else None
        return out

    @property
    def run_name(self) -> str:
        return self.name or f"{Path(self.chip).stem}-{self.model}-{self.method}-s{self.seed}"


def _positive(cfg: RunConfig, key: str, allow_none: bool = True) -> None:
    value = getattr(cfg, key)
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError("must be a positive integer", where="config", field=key, value=value)


def _one_of(cfg: RunConfig, key: str, options: tuple[str, ...]) -> None:
    value = getattr(cfg, key)
    if value not in options:
        raise ConfigError(
            "unknown value", where="config", field=key, value=value,
            fix=f"{did_you_mean(value, options)}Choose one of: {', '.join(options)}.",
        )  # fmt: skip


def _validate(cfg: RunConfig) -> None:
    for key in ("chips", "cores", "budget", "samples", "epochs", "timesteps", "batch_size"):
        _positive(cfg, key)
    _positive(cfg, "nproc", allow_none=False)
    for key in ("prune_epochs", "finetune_epochs", "quant_epochs"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or value < 0:
            raise ConfigError(
                "must be a non-negative integer", where="config", field=key, value=value
            )
    if cfg.sparsity is not None and not 0 <= cfg.sparsity < 1:
        raise ConfigError(
            "must be in [0, 1)", where="config", field="sparsity", value=cfg.sparsity,
            fix="Give the fraction of synapses to remove, e.g. --sparsity 0.9.",
        )  # fmt: skip
    if cfg.lr is not None and cfg.lr <= 0:
        raise ConfigError("must be positive", where="config", field="lr", value=cfg.lr)
    if not 0 <= cfg.agreement_threshold <= 1:
        raise ConfigError(
            "must be in [0, 1]", where="config", field="agreement_threshold",
            value=cfg.agreement_threshold,
        )  # fmt: skip
    _one_of(cfg, "method", METHOD_NAMES)
    _one_of(cfg, "backend", BACKENDS)
    _one_of(cfg, "encoding", ENCODINGS)
    _one_of(cfg, "event_binning", BINNINGS)
    _one_of(cfg, "event_polarity", POLARITIES)
    _positive(cfg, "event_downsample", allow_none=False)
    parse_window(cfg.event_window)
    _one_of(cfg, "neuron", ("lif", "if"))
    _one_of(cfg, "optimizer", ("adam", "sgd"))
    _one_of(cfg, "device", ("cpu", "cuda"))


def _resolve_encoding(cfg: RunConfig) -> None:
    """Event datasets are fed as their frames (``events``); images default to ``direct``."""
    try:
        events = is_event_dataset(cfg.dataset)
    except Exception:  # unknown dataset names are reported when the dataset is loaded
        return
    allowed = (EVENTS,) if events else IMAGE_ENCODINGS
    if cfg.encoding is None:
        object.__setattr__(cfg, "encoding", allowed[0])
    elif cfg.encoding not in allowed:
        kind = "event" if events else "image"
        raise ConfigError(
            f"encoding does not apply to the {kind} dataset {canonical_name(cfg.dataset)}",
            where="config", field="encoding", value=cfg.encoding,
            fix=f"Use one of: {', '.join(allowed)} (or leave --encoding out).",
        )  # fmt: skip


def event_options(cfg: RunConfig) -> EventOptions:
    """How an event dataset of ``cfg`` is binned (T = the resolved ``timesteps``, default 8)."""
    return EventOptions(
        timesteps=cfg.timesteps or 8,
        binning=cfg.event_binning,
        downsample=cfg.event_downsample,
        polarity=cfg.event_polarity,
        window_ms=parse_window(cfg.event_window),
    )


KEYS = tuple(f.name for f in fields(RunConfig))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict of known keys (unknown key -> ConfigError)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", where=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", where=str(path)) from exc
    if not isinstance(raw, Mapping):
        raise ConfigError("config must be a YAML mapping of key: value", where=str(path))
    check_keys(raw, where=str(path))
    return dict(raw)


def check_keys(values: Mapping[str, Any], *, where: str) -> None:
    """Raise ConfigError for the first unknown key, suggesting the closest known one."""
    for key in values:
        if key not in KEYS:
            raise ConfigError(
                "unknown config key", where=where, field=str(key), value=values[key],
                fix=f"{did_you_mean(key, KEYS)}Known keys: neuroprune fit --help.",
            )  # fmt: skip


def resolve_config(config_file: str | Path | None, overrides: Mapping[str, Any]) -> RunConfig:
    """Defaults <- YAML file <- overrides (``None`` overrides are ignored)."""
    values: dict[str, Any] = read_config_file(config_file) if config_file else {}
    check_keys(overrides, where="command line")
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("hidden") is not None:
        values["hidden"] = _parse_hidden(values["hidden"])
    try:
        return RunConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"bad config value: {exc}", where="config") from exc


def _parse_hidden(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    try:
        widths = tuple(int(p) for p in parts)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            "must be a comma-separated list of widths", where="config", field="hidden",
            value=value, fix="For example --hidden 128 or --hidden 128,64.",
        ) from exc  # fmt: skip
    if not widths or min(widths) <= 0:
        raise ConfigError("widths must be positive", where="config", field="hidden", value=value)
    return widths


def save_config(cfg: RunConfig, path: Path, extra: Mapping[str, Any] | None = None) -> None:
    """Write the resolved config (plus provenance in ``extra``) atomically as YAML."""
    from neuroprune.atomic import write_text

    body = {"config": cfg.as_dict(), **(dict(extra) if extra else {})}
    write_text(path, yaml.safe_dump(body, sort_keys=False))
