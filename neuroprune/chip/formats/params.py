"""Reading ``weights.params`` of a chip profile (torch-free).

Every reader raises :class:`~neuroprune.core.errors.ProfileError` naming the profile file (``where``),
the dotted field (``weights.params.<name>``), the offending value and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from neuroprune.chip.schema import WeightFormat
from neuroprune.core.errors import ProfileError

_MISSING = object()


def param_int(
    fmt: WeightFormat, name: str, where: str, *, minimum: int = 1, default: Any = _MISSING
) -> int:
    """Integer ``weights.params.<name>`` >= ``minimum``; ProfileError naming the field otherwise."""
    value = fmt.params.get(name, default)
    field_name = f"weights.params.{name}"
    if value is _MISSING or value is None:
        raise ProfileError(
            f"weight format {fmt.format!r} needs this parameter",
            where=where,
            field=field_name,
            value=None,
            fix=f"Add weights.params.{name} (an integer >= {minimum}) to the profile.",
        )
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProfileError(
            f"must be an integer >= {minimum}",
            where=where,
            field=field_name,
            value=value,
            fix=f"Set weights.params.{name} to an integer >= {minimum}.",
        )
    return value


def param_choice(
    fmt: WeightFormat, name: str, where: str, options: tuple[str, ...], default: Any = _MISSING
) -> str:
    """String ``weights.params.<name>`` from ``options``; ProfileError otherwise."""
    value = fmt.params.get(name, default)
    if value not in options:
        raise ProfileError(
            "unsupported value" if value is not _MISSING else "missing parameter",
            where=where,
            field=f"weights.params.{name}",
            value=None if value is _MISSING else value,
            fix=f"Set weights.params.{name} to one of {list(options)}.",
        )
    return value


def param_bool(fmt: WeightFormat, name: str, where: str, default: bool) -> bool:
    value = fmt.params.get(name, default)
    if not isinstance(value, bool):
        raise ProfileError(
            "must be true or false",
            where=where,
            field=f"weights.params.{name}",
            value=value,
            fix=f"Set weights.params.{name} to true or false.",
        )
    return value


def param_range(fmt: WeightFormat, name: str, where: str) -> tuple[int, int]:
    """``weights.params.<name>`` as ``[low, high]`` integers with low <= high."""
    value = fmt.params.get(name)
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    )
    if not ok:
        raise ProfileError(
            "must be [low, high] integers with low <= high",
            where=where,
            field=f"weights.params.{name}",
            value=value,
            fix=f"Set weights.params.{name}, e.g. [-8, 7].",
        )
    low, high = cast(Sequence[Any], value)  # checked above
    return int(low), int(high)
