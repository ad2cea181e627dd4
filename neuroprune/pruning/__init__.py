"""Budget-exact pruning (layer L5): one interface, one registry, one entry point.

* :class:`PruningMethod` — the interface (a training callback); :data:`PRUNING_METHODS` — the
  registry of ``--method`` names and their facts (torch-free); :data:`METHODS` — name -> callback
  class: ``stds``, ``slats``, ``lats``, ``pgh`` (soft threshold), ``gradr`` (gradient rewiring),
  ``gmp`` (gradual magnitude), ``magnitude`` (one-shot magnitude + fine-tune), ``sca``
  (structured: spiking-activity channel pruning with regrowth and physical removal).
* :data:`SCHEDULERS` — threshold schedules ``f`` with ``f(0) = 0``, ``f(1) = 1``, monotone.
* :func:`freeze_mask` — keep zero weights at zero while training.

Names load lazily so that reading the registries (``neuroprune --help``, config validation)
imports no torch.
"""

from __future__ import annotations

from neuroprune.core.lazy import lazy_getattr

_EXPORTS = {
    "MaskFreezer": "neuroprune.pruning.base",
    "PruningMethod": "neuroprune.pruning.base",
    "freeze_mask": "neuroprune.pruning.base",
    "METHODS": "neuroprune.pruning.registry",
    "PRUNING_METHODS": "neuroprune.pruning.registry",
    "method_class": "neuroprune.pruning.registry",
    "method_entry": "neuroprune.pruning.registry",
    "split_method_spec": "neuroprune.pruning.registry",
    "SCHEDULERS": "neuroprune.pruning.schedulers",
    "get_scheduler": "neuroprune.pruning.schedulers",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
