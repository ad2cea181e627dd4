"""Soft-threshold pruning: STDS, S-LATS, LATS and PGH (docs/pruning.md §2–3).

Every Linear/Conv2d weight becomes ``w = sign(theta) * max(|theta| - d_t, 0)`` with the
straight-through backward (:class:`neuroprune.pruning.reparam.SoftThreshold`). After optimizer
step ``t`` of ``T`` the threshold is

* ``stds``:  ``d_t = D * f(t / T)``, ``f`` = ``sine`` (default) or ``linear``;
* ``slats``: ``d_t = D * (x + sin(pi x) / pi)``, ``x = t / T`` (S-LATS);
* ``pgh``:   ``d_t = D * f_beta(t / T)`` (continuation, ``beta = 10``);
* ``lats``:  ``d_t = D * sum_{k<t} eta_k / sum_{k<T} eta_k`` — the cumulative learning rate
  actually used, whatever the schedule (warm-up included), i.e. a constant L1 strength
  ``lambda = D / sum eta``.

Budget targeting (docs/pruning.md §6.3): ``D`` starts at the magnitude that leaves
``margin * B`` synapses above it, ``D_0 = threshold_for_count(|theta_0|, cost, margin * B)``;
the shared controller (:mod:`neuroprune.pruning.base`) then scales ``D`` so the current count
follows ``B_t = N - (N - margin * B) * d_t / D``. The projection ranks by ``|theta|`` and keeps the
effective weights ``w = S_d(theta)`` the network was trained with (``refit=True`` would give
kept synapses their latent value ``theta = w + sign * d``; the network has adapted to the shrunk
weights, so that inflated every survivor by ``d`` and cost 10-20 accuracy points at 90 %
sparsity, docs/benchmarks_pruning.md). The logged ``predicted`` is ``sum(cost[|theta| > D])``.

Learning rate: ``stds`` sets ``constant_lr``, so :func:`neuroprune.pipeline.prune_loop.prune_to_budget`
prunes it at a constant rate with the same total ``sum eta`` as the configured schedule (the
STDS paper's CIFAR setting, constant-lr Adam). Under a decaying schedule the implied L1
strength ``lambda_t = (d_{t+1} - d_t) / eta_t`` of a sine or linear threshold grows without
bound at the end (docs/pruning.md §3.1) and the network went silent in the last epochs.
``lats``/``slats``/``pgh`` follow the schedule they are given (their threshold is built from
it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.nn.utils import parametrize

from neuroprune.pruning.base import PruningMethod
from neuroprune.pruning.reparam import SoftThreshold
from neuroprune.pruning.schedulers import PGH_BETA, get_scheduler
from neuroprune.pruning.selection import threshold_for_count
from neuroprune.pruning.targets import Target


class SoftThresholdMethod(PruningMethod):
    """Shared machinery; subclasses pick the threshold shape via :meth:`threshold_fraction`.

    ``refit=False`` (default): the projection keeps ``w = S_d(theta)``; ``refit=True`` gives
    kept synapses their latent value ``theta`` (``|w| + d``), a relaxed-lasso style refit that
    only suits a network which did not adapt to the shrinkage (module docstring).
    """

    knob_name: ClassVar[str] = "threshold"
    default_scheduler: ClassVar[str | None] = "sine"

    def __init__(self, budget, *, refit: bool = False, **options) -> None:
        super().__init__(budget, **options)
        self.refit = bool(refit)

    def _kept_values(self, target: Target) -> torch.Tensor:
        if self.refit:
            return self._theta(target).detach()
        return self._weight(target)

    def install(self, target: Target) -> None:
        param = SoftThreshold(target.module.weight.shape).to(target.module.weight.device)
        parametrize.register_parametrization(target.module, "weight", param)

    def threshold_fraction(self) -> float:
        """``d_t / D`` after the current step."""
        return get_scheduler(self.scheduler_name)(self.progress)

    @property
    def threshold(self) -> float:
        """The threshold ``d_t`` in use (weight units)."""
        return float(self.knob) * self.threshold_fraction()

    def begin(self) -> None:
        self.knob = self._ideal_knob()
        self._set_threshold(0.0)

    def advance(self, lr: float) -> None:
        self._set_threshold(self.threshold)

    def trajectory_fraction(self) -> float:
        return self.threshold_fraction()

    def _ideal_knob(self) -> float:
        """``D`` with ``sum(cost[|theta| > D]) <= margin * B`` for the current ``theta``."""
        magnitudes = self._flat([self._theta(t).abs() for t in self.targets])
        return threshold_for_count(
            magnitudes, self._costs(), self.control.target(self.budget.synapses)
        )

    def predicted(self) -> int:
        return self._count_above([self._theta(t).abs() for t in self.targets], self.knob)

    def extra_metrics(self) -> dict[str, float]:
        return {"threshold": self.threshold}

    def _set_threshold(self, value: float) -> None:
        for target in self.targets:
            param = self._parametrization(target)
            if param is not None:
                param.threshold.fill_(value)


class STDS(SoftThresholdMethod):
    """STDS (Chen et al., ICML 2022): ``d_t = D * f(t/T)`` with ``sine`` or ``linear``, pruned
    at a constant learning rate (module docstring)."""

    name = "stds"
    constant_lr = True


class SLATS(SoftThresholdMethod):
    """S-LATS (Chen et al., ICLR 2023): ``f(x) = x + sin(pi x) / pi``."""

    name = "slats"
    default_scheduler = "sinp"


class PGH(SoftThresholdMethod):
    """PGH continuation (LATS repository): ``f`` from :func:`neuroprune.pruning.schedulers.pgh`."""

    name = "pgh"
    default_scheduler = "pgh"

    def __init__(self, budget, *, beta: float = PGH_BETA, **options) -> None:
        super().__init__(budget, **options)
        self.beta = float(beta)

    def threshold_fraction(self) -> float:
        return get_scheduler("pgh", beta=self.beta)(self.progress)


class LATS(SoftThresholdMethod):
    """LATS (Chen et al., ICLR 2023): threshold proportional to the cumulative learning rate."""

    name = "lats"
    default_scheduler = None

    def threshold_fraction(self) -> float:
        return self.lr_fraction


def layer_thresholds(method: SoftThresholdMethod) -> dict[str, float]:
    """Threshold buffer of each reparameterised layer (for tests and reports)."""
    out = {}
    for target in method.targets:
        param = method._parametrization(target)
        if param is not None:
            out[target.name] = float(param.threshold)
    return out
