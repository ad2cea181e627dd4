"""Where environments live: one rule (:data:`LOCATION_RULE`), applied by :func:`envs_root`.

1. ``$NEUROPRUNE_ENVS`` when set;
2. else, when the tool runs inside a virtual environment (``sys.prefix != sys.base_prefix``),
   ``<sys.prefix>/share/neuroprune/envs``, so the environments go with the venv that uses them
   (recreating ``.venv`` drops them too);
3. else ``${XDG_DATA_HOME:-~/.local/share}/neuroprune/envs`` (an ``XDG_DATA_HOME`` that is not
   an absolute path is ignored, as the XDG base directory specification says).

Environment ``NAME`` is the folder ``<root>/NAME``; its interpreter ``<root>/NAME/bin/python``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENVS_VAR = "NEUROPRUNE_ENVS"
LOCATION_RULE = (
    f"${ENVS_VAR} if set; else <venv>/share/neuroprune/envs when the tool runs in a virtual "
    "environment; else ${XDG_DATA_HOME:-~/.local/share}/neuroprune/envs"
)


def envs_root() -> Path:
    """The folder that holds every environment, by :data:`LOCATION_RULE` (not created)."""
    explicit = os.environ.get(ENVS_VAR)
    if explicit:
        return Path(explicit).expanduser().absolute()
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix).resolve() / "share" / "neuroprune" / "envs"
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if os.path.isabs(data) else Path("~/.local/share").expanduser()
    return base / "neuroprune" / "envs"


def environment_dir(name: str, root: Path | None = None) -> Path:
    """``<root>/<name>``: the folder of environment ``name``."""
    return (root or envs_root()) / name


def interpreter_of(env_dir: Path) -> Path:
    """``<env_dir>/bin/python``: called by this path, a venv works wherever its folder was
    moved to (the interpreter finds ``pyvenv.cfg`` beside its own path)."""
    return env_dir / "bin" / "python"
