"""Budget-exact pruning (layer L5): one interface, one registry, one entry point.

* :class:`PruningMethod` — the interface (a training callback); :data:`METHODS` — the registry:
  ``stds``, ``slats``, ``lats``, ``pgh`` (soft threshold), ``gradr`` (gradient rewiring),
  ``gmp`` (gradual magnitude), ``magnitude`` (one-shot magnitude + fine-tune), ``sca``
  (structured: spiking-activity channel pruning with regrowth and physical removal).
* :data:`SCHEDULERS` — threshold schedules ``f`` with ``f(0) = 0``, ``f(1) = 1``, monotone.
* :func:`freeze_mask` — keep zero weights at zero while training.
"""

from __future__ import annotations

from neuroprune.pruning.base import MaskFreezer, PruningMethod, freeze_mask
from neuroprune.pruning.registry import METHODS, method_class, split_method_spec
from neuroprune.pruning.schedulers import SCHEDULERS, get_scheduler

__all__ = [
    "METHODS",
    "SCHEDULERS",
    "MaskFreezer",
    "PruningMethod",
    "freeze_mask",
    "get_scheduler",
    "method_class",
    "split_method_spec",
]
