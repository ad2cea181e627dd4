"""Grad R — gradient rewiring (Chen et al., IJCAI 2021; docs/pruning.md §1).

Each connection keeps the sign ``s = sign(w_0)`` frozen at attach time (0 -> +1) and a
"spine size" ``theta_0 = |w_0|``; the weight is ``w = s * max(theta, 0)``
(:class:`neuroprune.pruning.reparam.SignedReLU`). The optimizer trains ``theta`` with the
rewiring gradient ``dL/dtheta := s * dL/dw`` (pruned connections still get a gradient and can
regrow). After every optimizer step, the Laplace-prior step with ``theta_old`` the value before
that step::

    theta <- theta - eta * alpha * sign(theta_old - mu),   mu = ln(2 (1 - s_target)) / alpha

(``mu = -ln(2 s_target) / alpha`` when ``s_target < 0.5``), ``s_target = 1 - B / dense``.

The projection keeps the effective weights ``s * max(theta, 0)`` (``refit=False``, default);
``refit=True`` gives kept synapses ``s * max(theta + A, 0)`` with ``A = sum_t eta_t alpha_t``
the total prior pull. The network adapts to the pull while it trains, so undoing it inflated
every survivor and cost ~15 accuracy points at 90 % sparsity (docs/benchmarks_pruning.md).

Budget targeting (docs/pruning.md §6.4): with ``mu`` far below zero the prior is a constant
shrink of ``eta * alpha`` per step (LATS's lambda), so ``alpha`` starts where ``#{theta_0 >
alpha * sum eta} = margin * B`` and the shared controller (:mod:`neuroprune.pruning.base`)
scales it so the current count follows ``B_t = N - (N - margin * B) * sum_{k<t} eta_k / sum
eta``. The projection ranks by ``theta``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch.nn.utils import parametrize

from neuroprune.pruning.base import PruningMethod
from neuroprune.pruning.reparam import SignedReLU
from neuroprune.pruning.selection import threshold_for_count
from neuroprune.pruning.targets import Target


def prior_centre(alpha: float, target_sparsity: float) -> float:
    """``mu`` with ``P(theta <= 0) = target_sparsity`` under ``Laplace(mu, 1/alpha)``.

    ``mu = ln(2 (1 - s)) / alpha`` for ``s >= 0.5`` (mu <= 0), ``-ln(2 s) / alpha`` below;
    ``+inf`` for ``s <= 0`` (no connection is pushed toward zero), ``-inf`` for ``alpha <= 0``.
    """
    if alpha <= 0:
        return -math.inf
    if target_sparsity <= 0:
        return math.inf
    if target_sparsity >= 0.5:
        return math.log(2.0 * max(1.0 - target_sparsity, 1e-12)) / alpha
    return -math.log(2.0 * target_sparsity) / alpha


def prior_step(
    theta: torch.Tensor, theta_old: torch.Tensor, lr: float, alpha: float, mu: float
) -> None:
    """In place: ``theta -= lr * alpha * sign(theta_old - mu)`` (skipped when ``alpha <= 0``)."""
    if alpha <= 0 or lr <= 0:
        return
    with torch.no_grad():
        theta.sub_(lr * alpha * torch.sign(theta_old - mu))


class GradR(PruningMethod):
    """Grad R with the frozen sign, rewiring gradient and Laplace prior (module docstring)."""

    name = "gradr"
    knob_name: ClassVar[str] = "alpha"

    def __init__(self, budget, *, refit: bool = False, **options) -> None:
        super().__init__(budget, **options)
        self.refit = bool(refit)
        self.shrink_total = 0.0
        self._old: list[torch.Tensor] = []

    @property
    def target_sparsity(self) -> float:
        dense = self.dense_synapses
        return max(0.0, 1.0 - self.budget.synapses / dense) if dense else 0.0

    @property
    def mu(self) -> float:
        return prior_centre(self.knob, self.target_sparsity)

    def install(self, target: Target) -> None:
        weight = target.module.weight.detach()
        sign = torch.sign(weight)
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        parametrize.register_parametrization(target.module, "weight", SignedReLU(sign))

    def begin(self) -> None:
        self.knob = self._ideal_knob()

    def before_step(self) -> None:
        if self.phase == "prune":
            self._old = [self._theta(t).detach().clone() for t in self.targets]

    def advance(self, lr: float) -> None:
        self.shrink_total += lr * max(self.knob, 0.0)
        mu = self.mu
        olds = self._old or [self._theta(t).detach().clone() for t in self.targets]
        for target, old in zip(self.targets, olds, strict=True):
            prior_step(self._theta(target), old, lr, self.knob, mu)
        self._old = []

    def trajectory_fraction(self) -> float:
        return self.lr_fraction

    def _ideal_knob(self) -> float:
        """``alpha`` with ``#{theta > alpha * R} = margin * B`` (R: learning rate to come)."""
        remaining = self.lr_remaining
        if remaining <= 0:
            return self.knob
        thetas = self._flat([self._theta(t) for t in self.targets])
        level = threshold_for_count(
            thetas, self._costs(), self.control.target(self.budget.synapses)
        )
        return max(level, 0.0) / remaining

    def predicted(self) -> int:
        level = self.knob * self.lr_remaining
        return self._count_above([self._theta(t) for t in self.targets], level)

    def extra_metrics(self) -> dict[str, float | None]:
        mu = self.mu
        return {"mu": mu if math.isfinite(mu) else None, "prior_shrink": self.shrink_total}

    def scores(self, target: Target) -> torch.Tensor:
        return self._theta(target).detach().clone()

    def _kept_values(self, target: Target) -> torch.Tensor:
        """``refit``: ``s * max(theta + A, 0)`` with ``A = sum_t eta_t * alpha_t`` the prior's
        total pull (undone on the kept support); else the effective weight."""
        if not self.refit:
            return self._weight(target)
        sign = self._parametrization(target).sign
        return sign * torch.relu(self._theta(target).detach() + self.shrink_total)

    def _direction(self, target: Target) -> torch.Tensor:
        return self._parametrization(target).sign.detach()

    def frozen_signs(self) -> dict[str, torch.Tensor]:
        """The sign ``s`` of every layer (for tests and reports)."""
        return {t.name: self._parametrization(t).sign.detach().clone() for t in self.targets}
