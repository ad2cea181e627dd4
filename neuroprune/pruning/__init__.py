"""Budget-exact pruning (layer L2): one interface, one registry, one entry point.

* :class:`PruningMethod` — the interface (a training callback); :data:`METHODS` — the registry:
  ``stds``, ``slats``, ``lats``, ``pgh`` (soft threshold), ``gradr`` (gradient rewiring),
  ``gmp`` (gradual magnitude), ``magnitude`` (one-shot magnitude + fine-tune), ``sca``
  (structured: spiking-activity channel pruning with regrowth and physical removal).
* :data:`SCHEDULERS` — threshold schedules ``f`` with ``f(0) = 0``, ``f(1) = 1``, monotone.
* :func:`prune_to_budget` — attach, train, project exactly to ``B``, fine-tune with the mask
  frozen, finalize to a plain model with exact zeros (:class:`PruneResult`).
* :func:`freeze_mask` — keep zero weights at zero while training.
"""

from __future__ import annotations

from neuroprune.pruning.base import MaskFreezer, PruningMethod, freeze_mask
from neuroprune.pruning.registry import METHODS, method_class, split_method_spec
from neuroprune.pruning.run import PruneResult, layer_report, prune_to_budget
from neuroprune.pruning.sca import SCA
from neuroprune.pruning.schedulers import SCHEDULERS, get_scheduler

METHODS[SCA.name] = SCA  # registered here: sca.py builds on run.py, which reads the registry

__all__ = [
    "METHODS",
    "SCHEDULERS",
    "MaskFreezer",
    "PruneResult",
    "PruningMethod",
    "freeze_mask",
    "get_scheduler",
    "layer_report",
    "method_class",
    "prune_to_budget",
    "split_method_spec",
]
