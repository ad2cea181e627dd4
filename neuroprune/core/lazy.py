"""Lazy package faces (torch-free): a package names its public entry points, and each loads its
module on first use, so that importing the package (for its registries' names, ``--help``,
config validation) loads no torch, Lava or scipy."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: ``exports`` maps a public name to the
    module that defines it (``{"simulate": "neuroprune.sim.api"}``)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
