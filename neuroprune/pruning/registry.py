"""The registry of pruning methods (torch-free): ``--method`` name -> :class:`MethodEntry`.

:data:`PRUNING_METHODS` is the one list of method names: the run config's ``method`` choices,
``neuroprune fit --help`` and the "unknown pruning method" error read it. Each entry states the
facts the pipeline needs before torch is imported (does the method take a threshold scheduler,
is it structured, which recipe runs it) and names its :class:`PruningMethod` callback lazily, so
reading the names imports no torch. ``sca+stds`` is a composite entry: no callback of its own,
the structured recipe (:func:`neuroprune.pipeline.structured.prune_structured`) runs SCA,
channel removal, then STDS inside the kept channels.

:data:`METHODS` (name -> callback class, the entries with a callback) is built on first use.
Adding a method: write a :class:`PruningMethod` subclass and add one ``_method(...)`` line below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neuroprune.core.errors import ConfigError
from neuroprune.core.registry import Lazy, Registry, lookup
from neuroprune.pruning.schedulers import get_scheduler

if TYPE_CHECKING:
    from neuroprune.pruning.base import PruningMethod


@dataclass(frozen=True)
class MethodEntry:
    """One ``--method``.

    Attributes:
        name: the ``--method`` name.
        callback: ``"module:Class"`` of its :class:`PruningMethod`; None for a composite.
        scheduled: takes a threshold scheduler (``--scheduler``).
        structured: removes whole channels (run by the structured recipe, not
            ``prune_to_budget``).
        then_stds: composite ``sca+stds``: the structured recipe ends with STDS to the exact
            budget.
    """

    name: str
    callback: str | None
    scheduled: bool = False
    structured: bool = False
    then_stds: bool = False

    def method_class(self) -> type[PruningMethod] | None:
        """The callback class (imports torch); None for a composite entry."""
        return Lazy(self.callback).load() if self.callback else None


PRUNING_METHODS: Registry[MethodEntry] = Registry(
    "pruning method",
    where="--method",
    field="method",
    hint="Or give METHOD-SCHEDULER, e.g. stds-linear.",
)


def _method(entry: MethodEntry) -> None:
    PRUNING_METHODS.register(entry.name, entry)


_SOFT = "neuroprune.pruning.soft_threshold"
_method(MethodEntry("stds", f"{_SOFT}:STDS", scheduled=True))
_method(MethodEntry("slats", f"{_SOFT}:SLATS", scheduled=True))
_method(MethodEntry("lats", f"{_SOFT}:LATS"))
_method(MethodEntry("pgh", f"{_SOFT}:PGH", scheduled=True))
_method(MethodEntry("gradr", "neuroprune.pruning.gradr:GradR"))
_method(MethodEntry("gmp", "neuroprune.pruning.masking:GMP"))
_method(MethodEntry("magnitude", "neuroprune.pruning.masking:Magnitude"))
_method(MethodEntry("sca", "neuroprune.pruning.sca:SCA", structured=True))
_method(MethodEntry("sca+stds", None, scheduled=True, structured=True, then_stds=True))

_CALLBACKS: dict[str, type[PruningMethod]] = {}


def _callbacks() -> dict[str, type[PruningMethod]]:
    """Name -> callback class of every entry that has one (imports torch on first use)."""
    if not _CALLBACKS:
        for name, entry in PRUNING_METHODS.items():
            cls = entry.method_class()
            if cls is not None:
                _CALLBACKS[name] = cls
    return _CALLBACKS


def __getattr__(name: str) -> Any:
    """``METHODS`` loads the callback classes on first access (PEP 562)."""
    if name == "METHODS":
        return _callbacks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def method_entry(name: str) -> MethodEntry:
    """The entry called ``name``; :class:`ConfigError` naming close matches if unknown."""
    return lookup(PRUNING_METHODS, name)


def method_class(name: str) -> type[PruningMethod]:
    """The callback class for ``name``; :class:`ConfigError` naming close matches if unknown
    (or if ``name`` is a composite without a callback of its own)."""
    callbacks = _callbacks()
    if name in callbacks:
        return callbacks[name]
    entry = lookup(PRUNING_METHODS, name)
    raise ConfigError(
        "pruning method has no callback of its own",
        where="--method",
        field="method",
        value=entry.name,
        fix="Run it through neuroprune.pipeline.structured.prune_structured (neuroprune fit).",
    )


def split_method_spec(spec: str) -> tuple[str, str | None]:
    """``"stds-linear"`` -> ``("stds", "linear")``; ``"gradr"`` -> ``("gradr", None)``."""
    name, _, scheduler = spec.partition("-")
    method_class(name)
    if scheduler:
        get_scheduler(scheduler)
    return name, scheduler or None
