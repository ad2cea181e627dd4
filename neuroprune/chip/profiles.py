"""Locating and loading chip profiles: shipped profiles by id or alias, or a YAML file."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml

from neuroprune.chip.profile_reader import parse_profile
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import ProfileError, UnknownChipError
from neuroprune.core.registry import unknown_name
from neuroprune.core.yaml_text import read_user_yaml

# --------------------------------------------------------------------------------------------
# Locating profiles


def profiles_dir() -> Path:
    """Folder of the shipped profiles (inside the installed package)."""
    return Path(str(resources.files("neuroprune") / "hardware_profiles"))


def shipped_profile_paths() -> dict[str, Path]:
    """Map of profile id (file stem) to path, for every shipped profile."""
    return {p.stem: p for p in sorted(profiles_dir().glob("*.yaml"))}


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(" ", "_")


def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for stem, path in shipped_profile_paths().items():
        table[stem] = stem
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        aliases = raw.get("aliases") if isinstance(raw, Mapping) else None
        for alias in aliases if isinstance(aliases, list) else []:
            table.setdefault(_norm(str(alias)), stem)
    return table


def resolve_chip(chip: str) -> Path:
    """Turn a chip name, alias or a path to a YAML file into the profile's path.

    Raises :class:`UnknownChipError` with the closest shipped names when nothing matches.
    """
    candidate = Path(chip)
    if chip.endswith((".yaml", ".yml")) or candidate.is_file():
        if not candidate.is_file():
            raise ProfileError(
                "profile file not found",
                where=str(candidate),
                fix="Check the path, or name a shipped chip (neuroprune profiles list).",
            )
        return candidate
    key = _norm(chip)
    shipped = shipped_profile_paths()
    if key in shipped:  # a shipped id always names itself (_alias_table); no YAML to read
        return shipped[key]
    table = _alias_table()
    for name in (key, key.replace("_", "")):
        if name in table:
            return shipped_profile_paths()[table[name]]
    raise unknown_name(
        key,
        table,
        what=f"chip {chip!r}",
        where="--chip",
        error=UnknownChipError,
        listing="Run 'neuroprune profiles list' for the shipped chips, or pass a YAML path.",
        n=3,
        cutoff=0.5,
    )


def list_profiles() -> list[ChipProfile]:
    """Load every shipped profile, sorted by id."""
    return [load_profile(path) for path in shipped_profile_paths().values()]


def load_profile(chip: str | Path) -> ChipProfile:
    """Load and validate a profile by chip name, alias or path."""
    path = resolve_chip(str(chip))
    raw, text = read_user_yaml(
        path, ProfileError, what="profile", fix="see hardware_profiles/README.md."
    )
    digest = hashlib.sha256(text.encode()).hexdigest()
    return parse_profile(raw, path=str(path), sha256=digest)
