"""YAML text as the user wrote it: a mapping that names one key twice is refused (layer L0).

PyYAML's ``safe_load`` keeps the last of two equal keys without a word, so a config file with
``epochs: 1`` and, further down, ``epochs: 30`` would silently train 30 epochs. Every user YAML
file (config files, chip profiles, a run's config.yaml) is read with :func:`load_unique`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from neuroprune.core.errors import NeuropruneError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice; a ``yaml.YAMLError``. ``key``; ``lines``: the 1-based
    lines of its first and its second appearance."""

    key: Any = None
    lines: tuple[int, int] = (0, 0)

    def describe(self) -> str:
        """``key 'epochs' appears twice (lines 1 and 4)``."""
        return f"key {self.key!r} appears twice (lines {self.lines[0]} and {self.lines[1]})"


class _UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key seen before in the same mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it
                    continue
                if first is not None:
                    error = DuplicateKeyError(
                        f"while reading the mapping (its key {key!r} first at line "
                        f"{first.line + 1})",
                        node.start_mark,
                        f"found duplicate key {key!r}; a key may appear once",
                        key_node.start_mark,
                    )
                    error.key, error.lines = key, (first.line + 1, key_node.start_mark.line + 1)
                    raise error
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_unique(text: str | bytes) -> Any:
    """``yaml.safe_load(text)``, except that a mapping naming one key twice raises
    :class:`DuplicateKeyError` (a ``yaml.YAMLError``: callers' YAML error handling applies)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader)


def read_user_yaml(
    path: Path, error: type[NeuropruneError], *, what: str, fix: str
) -> tuple[Any, str]:
    """``(document, text)`` of the user's YAML file ``path`` (:func:`load_unique`), every way
    reading it can fail answered as one ``error`` line naming the file: unreadable (``cannot
    read WHAT: strerror``), not UTF-8 (the byte), a key named twice (both lines), malformed
    YAML (line and column). ``fix`` (e.g. "see hardware_profiles/README.md") ends each fix."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise error(
            f"cannot read {what}: {exc.strerror}", where=str(path), fix=f"Check the path; {fix}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise error(
            f"not a UTF-8 text file (byte {exc.start})",
            where=str(path),
            fix=f"Pass a YAML text file; {fix}",
        ) from exc
    try:
        return load_unique(text), text
    except DuplicateKeyError as exc:
        raise error(
            f"{exc.describe()}; the last would silently win",
            where=str(path),
            fix=f"Remove one of them; {fix}",
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(
            f"malformed YAML{line}: {getattr(exc, 'problem', exc)}",
            where=str(path),
            fix=f"Fix the YAML syntax; {fix}",
        ) from exc
