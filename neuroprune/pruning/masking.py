"""Hard-mask baselines: gradual magnitude pruning (GMP) and one-shot magnitude pruning.

Both use ``w = m * theta`` with a 0/1 mask (:class:`neuroprune.pruning.reparam.HardMask`);
masked entries get no gradient and keep their last value, so a later mask may revive them.
Every mask is an exact projection (:func:`neuroprune.pruning.selection.select_synapses`: top entries by
``|theta|``, per-layer minimums, fan-in cap), so both hit ``B`` by construction.

* ``gmp`` (Zhu & Gupta 2017): every ``update_every`` steps the mask keeps
  ``N * (1 - s_t)`` synapses with the cubic ramp
  ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))**3``, ``s_i = 0``, ``s_f = 1 - B / N``,
  ``t0 = 0`` and ``n dt = end_fraction * T``; after the ramp the mask holds exactly ``B``.
  ``scope="global"`` ranks all layers together; ``scope="layer"`` gives each layer the same
  sparsity (quota ``B * N_l / N``, at least its minimum).
* ``magnitude``: one global magnitude projection to ``B`` when attached, then training is a
  fine-tune with that mask.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch
from torch.nn.utils import parametrize

from neuroprune.core.errors import ConfigError
from neuroprune.fit.budget import Budget
from neuroprune.pruning.base import PruningMethod
from neuroprune.pruning.reparam import HardMask
from neuroprune.pruning.schedulers import gmp_sparsity
from neuroprune.pruning.selection import select_synapses
from neuroprune.pruning.targets import Target
from neuroprune.train import distributed

GMP_SCOPES = ("global", "layer")


class MaskMethod(PruningMethod):
    """Shared mask handling: install, set from a projection, rank kept entries first."""

    knob_name: ClassVar[str] = "sparsity"

    def install(self, target: Target) -> None:
        param = HardMask(target.module.weight.shape).to(target.module.weight.device)
        parametrize.register_parametrization(target.module, "weight", param)

    def _apply_masks(self, budget: Budget) -> None:
        masks = select_synapses([self._layer_scores_raw(t) for t in self.targets], budget)
        self._set_masks(masks)

    def _set_masks(self, masks: dict[str, np.ndarray]) -> None:
        masks = distributed.from_main(masks)  # under torchrun rank 0's masks on every rank
        for target in self.targets:
            mask = self._parametrization(target).mask
            keep = torch.as_tensor(masks[target.name].reshape(mask.shape), device=mask.device)
            mask.copy_(keep.to(mask.dtype))

    def _layer_scores_raw(self, target: Target):
        """Scores by ``|theta|`` alone (a new mask may revive masked entries)."""
        scores = super()._layer_scores(target)
        raw = self._theta(target).detach().abs().flatten().cpu().double().numpy()
        return dataclasses.replace(scores, scores=raw)

    def scores(self, target: Target) -> torch.Tensor:
        """Kept entries first (by ``|theta|``), then masked ones (by ``|theta|``)."""
        theta = self._theta(target).detach().abs()
        mask = self._parametrization(target)
        if mask is None:
            return theta
        return theta + mask.mask * (theta.max() + 1.0)

    def _count_mask(self) -> int:
        return sum(
            int(round(float((t.cost * self._parametrization(t).mask.cpu()).sum())))
            for t in self.targets
        )


class GMP(MaskMethod):
    """Gradual magnitude pruning with the cubic schedule (module docstring)."""

    name = "gmp"

    def __init__(
        self,
        budget,
        *,
        scope: str = "global",
        end_fraction: float = 0.75,
        updates: int = 20,
        **options,
    ) -> None:
        super().__init__(budget, **options)
        if scope not in GMP_SCOPES:
            raise ConfigError(
                "unknown GMP scope",
                where="pruning",
                field="scope",
                value=scope,
                fix=f"Use one of {', '.join(GMP_SCOPES)}.",
            )
        self.scope = scope
        self.end_fraction = float(end_fraction)
        self.updates = max(1, int(updates))

    @property
    def ramp_steps(self) -> int:
        """``n dt``: steps until the mask reaches ``B``."""
        return max(1, math.ceil(self.end_fraction * self.total_steps))

    @property
    def update_every(self) -> int:
        """``dt``: steps between mask updates."""
        return max(1, self.ramp_steps // self.updates)

    def begin(self) -> None:
        self.knob = 0.0

    def advance(self, lr: float) -> None:
        due = self.step % self.update_every == 0 or self.step == self.ramp_steps
        if not due or self.step > self.ramp_steps:
            return
        final = 1.0 - self.budget.synapses / self.dense_synapses
        self.knob = gmp_sparsity(self.step, t0=0, span=self.ramp_steps, initial=0.0, final=final)
        keep = max(self.budget.synapses, math.floor(self.dense_synapses * (1.0 - self.knob)))
        if self.step >= self.ramp_steps:
            keep = self.budget.synapses
        self._prune_to(keep)

    def _prune_to(self, keep: int) -> None:
        budget = dataclasses.replace(self.budget, synapses=int(keep))
        if self.scope == "global":
            self._apply_masks(budget)
            return
        masks = {}
        for target, quota in zip(self.targets, self._layer_quotas(keep), strict=True):
            layer_budget = dataclasses.replace(
                budget,
                synapses=quota,
                per_layer_min={target.name: self.budget.per_layer_min.get(target.name, 0)},
            )
            masks.update(select_synapses([self._layer_scores_raw(target)], layer_budget))
        self._set_masks(masks)

    def _layer_quotas(self, keep: int) -> list[int]:
        """Same sparsity in every layer: ``floor(keep * N_l / N)``, at least the layer minimum,
        trimmed from the largest quotas so the total stays at ``keep``."""
        dense = self.dense_synapses
        quotas = [
            max(self.budget.per_layer_min.get(t.name, 0), 1, math.floor(keep * t.dense / dense))
            for t in self.targets
        ]
        excess = sum(quotas) - keep
        while excess > 0:
            i = int(np.argmax(quotas))
            cut = min(excess, quotas[i] - 1)
            quotas[i] -= cut
            excess -= cut
            if cut == 0:
                break
        return quotas

    def predicted(self) -> int:
        return self.budget.synapses

    def extra_metrics(self) -> dict[str, float]:
        return {"mask_synapses": self._count_mask()} if self.phase == "prune" else {}


class Magnitude(MaskMethod):
    """One-shot global magnitude pruning to ``B`` at attach time, then fine-tuning."""

    name = "magnitude"

    def attach(self, model: torch.nn.Module) -> torch.nn.Module:
        super().attach(model)
        self._apply_masks(self.budget)
        self.knob = 1.0 - self.budget.synapses / self.dense_synapses
        return model

    def predicted(self) -> int:
        return self._count_mask()
