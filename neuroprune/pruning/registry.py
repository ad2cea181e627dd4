"""The registry of pruning methods: name -> :class:`PruningMethod` subclass."""

from __future__ import annotations

from neuroprune.core.errors import ConfigError, did_you_mean
from neuroprune.pruning.base import PruningMethod
from neuroprune.pruning.gradr import GradR
from neuroprune.pruning.masking import GMP, Magnitude
from neuroprune.pruning.sca import SCA
from neuroprune.pruning.schedulers import get_scheduler
from neuroprune.pruning.soft_threshold import LATS, PGH, SLATS, STDS

METHODS: dict[str, type[PruningMethod]] = {
    cls.name: cls for cls in (STDS, SLATS, LATS, PGH, GradR, GMP, Magnitude, SCA)
}
# 'sca+stds' is not a callback of its own: the pipeline runs sca, channel
# removal, then stds inside the kept channels (neuroprune.pipeline.structured.prune_structured(then_stds=True)).


def method_class(name: str) -> type[PruningMethod]:
    """The registered class for ``name``; :class:`ConfigError` naming close matches if unknown."""
    if name in METHODS:
        return METHODS[name]
    hint = did_you_mean(name, METHODS)
    raise ConfigError(
        "unknown pruning method",
        where="--method",
        field="method",
        value=name,
        fix=f"{hint}Use one of {', '.join(METHODS)} (or METHOD-SCHEDULER, e.g. stds-linear).",
    )


def split_method_spec(spec: str) -> tuple[str, str | None]:
    """``"stds-linear"`` -> ``("stds", "linear")``; ``"gradr"`` -> ``("gradr", None)``."""
    name, _, scheduler = spec.partition("-")
    method_class(name)
    if scheduler:
        get_scheduler(scheduler)
    return name, scheduler or None
