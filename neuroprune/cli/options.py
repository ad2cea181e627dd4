"""Command-line options whose choices and defaults come from the registries and the run config.

``--help`` shows every choice and every default without a copy of either: the choices are the
registry names (:func:`neuroprune.pipeline.config.choices`), the defaults
:class:`~neuroprune.pipeline.config.RunConfig`'s. Fit options keep ``default=None`` so that a
``--config`` file is not overridden; the default is only shown (the ``[default: ...]`` text).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from neuroprune.chip.profiles import shipped_profile_paths
from neuroprune.models.registry import MODEL_ZOO
from neuroprune.pipeline.config import RunConfig, choices


def one_of(names: Iterable[str]) -> str:
    """``"One of: a, b, c."``"""
    return f"One of: {', '.join(names)}."


def with_default(text: str, default: object) -> str:
    """``text`` followed by click's ``[default: ...]`` marker."""
    return f"{text}  [default: {default}]"


def config_default(field: str) -> Any:
    """The run config's default of ``field`` (None when it has none)."""
    return RunConfig.model_fields[field].default


def chip_help() -> str:
    """Help of ``--chip``: the shipped profile ids, or a YAML path."""
    return f"Chip id or alias ({', '.join(shipped_profile_paths())}), or a profile YAML path."


def model_help() -> str:
    """Help of ``--model``: the zoo's names, or a user factory."""
    return f"Built-in model ({', '.join(MODEL_ZOO)}) or FILE.py:FACTORY."


def fit_option(*decls: str, field: str, help: str, default_text: str | None = None, **kw: Any):
    """A ``neuroprune fit`` option for config ``field``: its choices (if the field has a fixed
    set) appended to ``help``, its default shown as click shows one (``default_text`` where the
    config's default is None: "by model", "all")."""
    text = help
    try:
        names = choices(field)
    except KeyError:
        names = ()
    if names:
        text = f"{text} {one_of(names)}"
    default = config_default(field)
    if default_text is None and default is not None:
        default_text = ("on" if default else "off") if isinstance(default, bool) else str(default)
    if default_text:
        text = with_default(text, default_text)
    return click.option(*decls, help=text, **kw)
