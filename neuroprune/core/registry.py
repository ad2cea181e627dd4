"""Registries (layer L0, torch-free): the one source of the names a user may choose.

A :class:`Registry` maps a name (``stds``, ``reference``, ``blocked_list``) to an entry (a
class, an instance, or a record of facts). Everything that lists or checks those names reads
the registry: config validation, CLI choices and help, profile validation, and the "unknown X,
did you mean Y" errors, which all come from :func:`lookup` (or :func:`unknown_name` where the
options are not a registry, such as config keys).

An entry may be *lazy*: ``register_lazy("lava", "neuroprune.sim.lava_backend:LavaBackend",
call=True)`` stores the import path and loads it on the first :meth:`Registry.get`, so that a
registry of torch classes can be read for its names without importing torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from neuroprune.core.errors import ConfigError, NeuropruneError, did_you_mean

T = TypeVar("T")
_NAME = object()  # unknown_name's default value: show the name itself


@dataclass(frozen=True)
class Lazy:
    """An entry not loaded yet: ``target`` is ``"package.module:attribute"``; ``call`` makes
    the entry ``attribute()`` (an instance of a class) instead of the attribute itself."""

    target: str
    call: bool = False

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        value = getattr(importlib.import_module(module), attr)
        return value() if self.call else value


class Registry(Generic[T]):
    """Names -> entries, in registration order.

    Attributes:
        what: what an entry is, for messages (``"pruning method"``).
        where: where a user gives the name (``"--method"``).
        field: the config field or profile path that holds the name.
        error: the :class:`NeuropruneError` subclass an unknown name raises.
        hint: text after the list of names in the fix of that error.
    """

    def __init__(
        self,
        what: str,
        *,
        where: str,
        field: str | None = None,
        error: type[NeuropruneError] = ConfigError,
        hint: str = "",
    ) -> None:
        self.what = what
        self.where = where
        self.field = field
        self.error = error
        self.hint = hint
        self._entries: dict[str, T | Lazy] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` (a later registration of the same name replaces it)."""
        self._entries[name] = entry
        return entry

    def register_lazy(self, name: str, target: str, *, call: bool = False) -> None:
        """Add an entry loaded from ``"module:attribute"`` on its first :meth:`get`."""
        self._entries[name] = Lazy(target, call)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a temporary entry clean up with this)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def get(self, name: str) -> T:
        """The entry called ``name`` (loaded if lazy); ``self.error`` naming close matches if
        unknown."""
        return lookup(self, name)

    def items(self) -> Iterator[tuple[str, T]]:
        """Every ``(name, entry)``, lazy entries loaded."""
        for name in self.names():
            yield name, self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, entry: T) -> None:
        self.register(name, entry)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self.names())})"

    def _load(self, name: str) -> T:
        entry = self._entries[name]
        if isinstance(entry, Lazy):
            entry = entry.load()
            self._entries[name] = entry
        return entry


def unknown_name(
    name: object,
    options: Iterable[str],
    *,
    what: str,
    where: str | None,
    field: str | None = None,
    error: type[NeuropruneError] = ConfigError,
    listing: str | None = None,
    hint: str = "",
    value: object = _NAME,
    n: int = 1,
    cutoff: float = 0.6,
) -> NeuropruneError:
    """The error for an unknown ``name``: ``unknown <what>``, the closest of ``options`` and
    ``Use one of: <options>.`` (``listing`` replaces that sentence; ``hint`` follows it).
    ``value`` is the offending value shown (default: ``name``; a config key shows its value);
    ``n``/``cutoff`` are :func:`difflib.get_close_matches`'s."""
    options = tuple(options)
    close = did_you_mean(name, options, n=n, cutoff=cutoff)
    if listing is None:
        listing = f"Use one of: {', '.join(options)}."
    fix = " ".join(part for part in (close.strip(), listing, hint) if part)
    shown = name if value is _NAME else value
    return error(f"unknown {what}", where=where, field=field, value=shown, fix=fix)


def lookup(
    registry: Registry[T],
    name: str,
    *,
    what: str | None = None,
    where: str | None = None,
    field: str | None = None,
) -> T:
    """``registry``'s entry called ``name``; else the registry's error class with
    ``unknown <what>``, a did-you-mean and every registered name (``what``/``where``/``field``
    override the registry's own for one call site)."""
    if name in registry:
        return registry._load(name)
    raise unknown_name(
        name,
        registry.names(),
        what=what or registry.what,
        where=where or registry.where,
        field=field or registry.field,
        error=registry.error,
        hint=registry.hint,
    )
