"""The pruning interface: one :class:`PruningMethod` base class, used as a training callback.

Life cycle (driven by :func:`neuroprune.pipeline.prune_loop.prune_to_budget`)::

    method = METHODS[name](budget, input_shape=(C, H, W), lr_schedule=..., scheduler=...)
    method.attach(model)                      # reparameterise Linear/Conv2d weights
    train(model, data, cfg, callbacks=[method])   # prune: the knob moves toward the budget
    method.project()                          # exact projection to B, plain weights, mask frozen
    train(model, data, ft_cfg, callbacks=[method])  # fine-tune; pruned weights stay 0
    model = method.finalize(model)            # plain model, exact zeros, no hooks left

Synapses are counted as :mod:`neuroprune.pruning.targets` explains (``Budget.counting``).
Subclasses implement the public hooks ``install`` (the parametrization of one target),
``begin`` (calibrate the knob), ``advance`` (after each optimizer step), ``scores`` (ranking for
the projection) and, for indirect methods, ``trajectory_fraction`` (:class:`PruningMethod`
documents them); everything else is shared. A method only prunes: training, evaluation and
fit checks are the caller's (:mod:`neuroprune.pipeline.prune_loop`).

Budget controller for indirect methods (stds/slats/lats/pgh: knob ``D``; gradr: ``alpha``),
docs/pruning.md §6.3: ``CHECKS_PER_EPOCH`` times per epoch, until
``control.freeze_after`` of the steps, the current count ``c_t`` is compared with the planned
trajectory ``B_t = N * (margin * B / N) ** g_t`` (``g_t`` the method's own schedule fraction,
0 -> 1) and ``knob <- knob * clip((c_t / B_t) ** gain, 1 / max_ratio, max_ratio)``. Count falls
as the knob rises, so the count follows a smooth path to just above ``B``, and the network
adapts on the way (a predictor such as ``#{|theta| > D}`` alone fed back on itself: active
``theta`` grow with the threshold, the knob chased them, and short runs went silent).

The path is geometric (``log B_t`` linear in ``g_t``) because that is the count a threshold
``d_t = D g_t`` itself gives when ``|theta|`` is Laplace-distributed, ``#{|theta| > d} = N
exp(-d / sigma)``; the controller then only corrects deviations. A linear path ``N - (N -
margin * B) g_t`` asks for the opposite shape: the count ran ahead of it early (the many small
weights go first), the controller lowered the knob, then fell behind late and the knob was
pushed up in the last epochs, where the network could not follow (mlp at 95 % sparsity,
stds-linear: 62 % -> 92 % test accuracy with the geometric path, docs/benchmarks_pruning.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn.utils import parametrize

from neuroprune.chip.capacity import InputBlocks
from neuroprune.core.errors import ConfigError
from neuroprune.core.registry import lookup
from neuroprune.fit.budget import Budget, LayerScores
from neuroprune.pruning.knob import planned_count, steer_knob
from neuroprune.pruning.schedulers import SCHEDULERS
from neuroprune.pruning.selection import (
    KnobControl,
    count_above,
    eligible_in_blocks,
    input_similarity,
    select_synapses,
)
from neuroprune.pruning.targets import Target, find_targets
from neuroprune.train import distributed
from neuroprune.train.loop import Callback

REVIVE_FRACTION = 0.01
CHECKS_PER_EPOCH = 4
MIN_TRAJECTORY = 0.02
BLOCKS_SETTLE = 0.8
"""Fraction of the pruning steps by which shared-input core blocks reach their final width
(:func:`block_inputs_now`). Chosen on validation (a held-out 20 % of the training split, never
the test split), 784-128-10 mlp on TrueNorth, 3 seeds: 0.5, 0.65, 0.8 and 0.9 were equal
within the seed-to-seed noise (95.2-95.9 %), all above blocks at their final width from the
first step (94.8 %); 0.8 leaves the last fifth of the pruning run to adapt to the final
blocks (docs/benchmarks.md, issue 23)."""
LrSchedule = Callable[[int], float]


class MaskFreezer(Callback):
    """Keeps zero weights at zero while training (fine-tuning after the projection).

    ``mask = (w != 0)`` is taken when created. A gradient hook multiplies each weight's gradient
    by its mask, and ``after_step`` re-applies ``w *= mask`` (so momentum, weight decay or any
    optimizer cannot revive a synapse). :meth:`release` removes the hooks.
    """

    def __init__(self, weights: Sequence[torch.nn.Parameter]) -> None:
        self.pairs = [(w, (w.detach() != 0).to(w.dtype)) for w in weights]
        self.handles = [w.register_hook(_mask_grad(mask)) for w, mask in self.pairs]

    def after_step(self, iteration: int, lr: float) -> None:
        with torch.no_grad():
            for weight, mask in self.pairs:
                weight.mul_(mask.to(weight.device))

    def release(self) -> None:
        """Remove the gradient hooks (the weights keep their zeros)."""
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _mask_grad(mask: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda grad: grad * mask.to(grad.device)


def freeze_mask(model: torch.nn.Module) -> MaskFreezer:
    """Freeze the zero pattern of every Linear/Conv2d weight of ``model`` (a training callback).

    Pass the result to ``train(..., callbacks=[freezer])``, then call ``freezer.release()``.
    """
    weights = [
        m.weight
        for m in model.modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.weight.requires_grad
    ]
    return MaskFreezer(weights)


class PruningMethod(Callback):
    """Base class of every entry of :data:`neuroprune.pruning.METHODS`.

    Args:
        budget: the synapse budget (``Budget.synapses``, fan-in cap, per-layer minimums).
        input_shape: model input ``(C, H, W)`` without time and batch (conv tap costs).
        scheduler: threshold schedule name (:data:`neuroprune.pruning.SCHEDULERS`) where the
            method has one.
        lr_schedule: ``iteration -> learning rate`` actually used by training, for methods whose
            knob follows the cumulative learning rate (lats, gradr). Without it the total is
            estimated online as ``sum so far + current lr * steps left`` (exact for constant lr).
        control: the knob controller settings (target ``margin * B``, gain, freeze point).

    The extension interface: a new method subclasses this class, sets ``name`` (its key in
    :data:`neuroprune.pruning.METHODS`), ``knob_name`` and, where it has a threshold schedule,
    ``default_scheduler``, and implements these hooks (everything else is shared):

    * ``install(target)`` (required): called by :meth:`attach` once per :class:`Target` (one
      Linear/Conv2d weight, with ``cost`` in physical synapses per entry and ``group`` the
      postsynaptic row/channel of each entry). Register the method's parametrization of
      ``target.module.weight`` here (``torch.nn.utils.parametrize``); the trained tensor is
      then ``self._theta(target)`` and the effective weight ``target.module.weight``.
    * ``begin()``: called once by :meth:`on_train_begin` when pruning starts, after
      ``self.total_steps`` (optimizer steps of the pruning run), ``self.lr_now`` and
      ``self.lr_total`` are known. Calibrate ``self.knob`` (the method's knob in its own units:
      a threshold ``D`` in weight units, ``alpha`` per unit learning rate, or a sparsity); rank
      0's value is then broadcast to every rank.
    * ``advance(lr)``: called by :meth:`after_step` after every optimizer step of the pruning
      phase (``self.step`` is the 1-based step, ``lr`` the learning rate that step used, and
      the controller may just have moved ``self.knob``). Apply the knob to the weights.
    * ``scores(target) -> Tensor``: same shape as the weight, higher is kept first; read by
      :meth:`project` (the exact projection to the budget) and by the fan-in cap during
      training. Default ``|theta|``.
    * ``trajectory_fraction() -> float | None``: ``g_t`` in [0, 1] of the planned count path
      for methods steered by the budget controller (module docstring); None: not steered.

    Optional: ``_kept_values(target)`` (the values kept entries take at the projection),
    ``predicted()`` and ``extra_metrics()`` (logged each epoch), ``before_step()``.
    """

    name: ClassVar[str] = ""
    knob_name: ClassVar[str] = "knob"
    default_scheduler: ClassVar[str | None] = None
    #: prune at a constant learning rate with the schedule's total (see ``run.prune_config``)
    constant_lr: ClassVar[bool] = False

    def __init__(
        self,
        budget: Budget,
        *,
        input_shape: Sequence[int],
        scheduler: str | None = None,
        lr_schedule: LrSchedule | None = None,
        control: KnobControl | None = None,
    ) -> None:
        self.budget = budget
        self.input_shape = tuple(int(s) for s in input_shape)
        self.scheduler_name = self._check_scheduler(scheduler)
        self.lr_schedule = lr_schedule
        self.control = control or KnobControl()
        self.targets: list[Target] = []
        self.model: torch.nn.Module | None = None
        self.phase = "detached"
        self.knob = 0.0
        self.step = 0
        self.total_steps = 1
        self.check_every = 1
        self.lr_sum = 0.0
        self.lr_total: float | None = None
        self.lr_now = 0.0
        self.freezer: MaskFreezer | None = None
        self._blocks_cache: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------------------------------
    # Interface

    def attach(self, model: torch.nn.Module) -> torch.nn.Module:
        """Reparameterise every Linear/Conv2d weight of ``model`` in place; returns it."""
        sharing = self.budget.conv_weight_sharing
        self.targets = find_targets(model, self.input_shape, conv_weight_sharing=sharing)
        self.model = model
        for target in self.targets:
            self.install(target)
        self.phase = "prune"
        return model

    def on_train_begin(self, model, optimizer, steps_per_epoch: int, epochs: int) -> None:
        if self.phase != "prune":
            return
        self.total_steps = max(1, int(steps_per_epoch) * int(epochs))
        self.check_every = max(1, int(steps_per_epoch) // CHECKS_PER_EPOCH)
        self.step, self.lr_sum = 0, 0.0
        self.lr_now = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else 0.0
        if self.lr_schedule is not None:
            self.lr_total = float(sum(self.lr_schedule(k) for k in range(self.total_steps)))
        self.begin()
        self.knob = distributed.from_main(self.knob)  # rank 0's calibration on every rank
        self._refresh_cap()

    def after_step(self, iteration: int, lr: float) -> None:
        if self.phase == "finetune" and self.freezer is not None:
            self.freezer.after_step(iteration, lr)
            return
        if self.phase != "prune":
            return
        self.step += 1
        self.lr_sum += float(lr)
        self.lr_now = float(lr)
        if self.step % self.check_every == 0:
            self._track()
        self.advance(float(lr))
        self._refresh_cap()

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Report ``phase`` (prune/finetune), counts and the knob (merged into the history)."""
        nonzero = sum(self.counts().values())
        dense = self.dense_synapses
        return {
            "phase": self.phase,
            "nonzero": nonzero,
            "sparsity": 1.0 - nonzero / dense if dense else 0.0,
            "knob": float(self.knob),
            "knob_name": self.knob_name,
            "predicted": self.predicted() if self.phase == "prune" else nonzero,
            "budget": self.budget.synapses,
            **self.extra_metrics(),
        }

    def extra_metrics(self) -> dict[str, Any]:
        """Method-specific values logged each epoch (e.g. the threshold ``d_t`` in use)."""
        return {}

    def counts(self) -> dict[str, int]:
        """Physical nonzero synapses per layer (``Budget.counting`` convention)."""
        return {t.name: _count(self._weight(t), t.cost) for t in self.targets}

    def predicted(self) -> int:
        """Predicted final synapse count at the current knob (method specific)."""
        return sum(self.counts().values())

    def trajectory_fraction(self) -> float | None:
        """``g_t`` in [0, 1] of the planned count path; None: the method is not steered."""
        return None

    def count_target(self) -> float:
        """Planned count now: ``B_t = N * (margin * B / N) ** g_t`` (module docstring)."""
        return planned_count(
            self.dense_synapses,
            self.control.target(self.budget.synapses),
            self.trajectory_fraction() or 0.0,
        )

    def _track(self) -> None:
        """One controller update (module docstring); a no-op for unsteered methods."""
        fraction = self.trajectory_fraction()
        if fraction is None or fraction < MIN_TRAJECTORY:
            return
        if self.progress >= self.control.freeze_after or self.knob <= 0:
            return
        ratio = sum(self.counts().values()) / max(self.count_target(), 1.0)
        knob = steer_knob(self.knob, self.knob * ratio, self.control)
        self.knob = distributed.from_main(knob)  # the controller decides on rank 0

    def project(self, budget: Budget | None = None) -> dict[str, int]:
        """Exact projection to ``budget`` (default: the method's), then freeze the mask.

        Keeps the top entries by :meth:`scores` (:func:`neuroprune.pruning.selection.select_synapses`:
        per-layer minimums, fan-in cap, ``sum(cost) <= B``), removes the reparameterisation and
        writes plain weights: kept entries take :meth:`_kept_values` (the effective weight, or
        the refit value of soft-threshold/Grad R methods); a kept entry whose value is 0 gets
        ``sign * REVIVE_FRACTION * mean |value|`` of its layer, so exactly the kept entries are
        nonzero. Returns the per-layer counts.
        """
        budget = budget or self.budget
        masks = distributed.decide(  # rank 0 selects; every rank gets its mask
            lambda: select_synapses([self._layer_scores(t) for t in self.targets], budget)
        )
        values = [self._projected(t, masks[t.name]) for t in self.targets]
        for target, value in zip(self.targets, values, strict=True):
            self._remove_parametrization(target)
            with torch.no_grad():
                target.module.weight.copy_(value)
        distributed.broadcast_parameters([t.module.weight for t in self.targets])
        self.freezer = MaskFreezer([t.module.weight for t in self.targets])
        self.phase = "finetune"
        return self.counts()

    def finalize(self, model: torch.nn.Module | None = None) -> torch.nn.Module:
        """Plain model with exact zeros: projects first if needed, removes every hook."""
        if self.phase == "prune":
            self.project()
        if self.freezer is not None:
            self.freezer.after_step(self.step, 0.0)
            self.freezer.release()
            self.freezer = None
        for target in self.targets:
            self._remove_parametrization(target)
        self.phase = "done"
        return model if model is not None else self.model

    # ----------------------------------------------------------------------------------------
    # Shared helpers

    @property
    def progress(self) -> float:
        """Fraction of the pruning steps done, ``t / T``."""
        return min(1.0, self.step / self.total_steps)

    @property
    def lr_fraction(self) -> float:
        """``sum_{k<t} eta_k / sum_{k<T} eta_k`` (lr schedule, or the online estimate)."""
        total = self.lr_total
        if total is None:
            total = self.lr_sum + self.lr_now * (self.total_steps - self.step)
        return min(1.0, self.lr_sum / total) if total > 0 else self.progress

    @property
    def lr_remaining(self) -> float:
        """``sum_{k>=t} eta_k`` (schedule, or the constant-lr estimate)."""
        if self.lr_total is not None:
            return max(0.0, self.lr_total - self.lr_sum)
        return self.lr_now * (self.total_steps - self.step)

    @property
    def dense_synapses(self) -> int:
        return sum(t.dense for t in self.targets)

    def _weight(self, target: Target) -> torch.Tensor:
        with torch.no_grad():
            return target.module.weight.detach()

    def _theta(self, target: Target) -> torch.Tensor:
        """The trained tensor: the parametrization's original, or the plain weight."""
        module = target.module
        if parametrize.is_parametrized(module, "weight"):
            return module.parametrizations.weight.original
        return module.weight

    def _parametrization(self, target: Target):
        module = target.module
        if parametrize.is_parametrized(module, "weight"):
            return module.parametrizations.weight[0]
        return None

    def _remove_parametrization(self, target: Target) -> None:
        if parametrize.is_parametrized(target.module, "weight"):
            parametrize.remove_parametrizations(target.module, "weight", leave_parametrized=True)

    def _flat(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        return np.concatenate([t.detach().flatten().cpu().double().numpy() for t in tensors])

    def _costs(self) -> np.ndarray:
        return np.concatenate([t.cost.flatten().numpy().astype(np.int64) for t in self.targets])

    def _count_above(self, scores: Sequence[torch.Tensor], threshold: float) -> int:
        return count_above(self._flat(scores), self._costs(), threshold)

    def _layer_scores(self, target: Target) -> LayerScores:
        return LayerScores(
            name=target.name,
            scores=self.scores(target).detach().flatten().cpu().double().numpy(),
            costs=target.cost.flatten().numpy().astype(np.int64),
            groups=target.group.flatten().numpy(),
            keep_every_group=target.is_output,
            excitatory=self._excitatory(target),
            positive=self._positive(target),
            input_similarity=self._input_similarity(target),
        )

    def _input_similarity(self, target: Target) -> np.ndarray | None:
        """For a dense layer pruned into shared-input core blocks: the similarity of its
        inputs' trained weight columns (:func:`neuroprune.pruning.selection.input_similarity`
        of ``theta``), by which each block keeps inputs that are not copies of each other;
        None elsewhere."""
        blocks = self.budget.input_blocks.get(target.name)
        theta = self._theta(target).detach()
        if blocks is None or not blocks.shared_inputs or theta.dim() != 2:
            return None
        return input_similarity(theta.cpu().double().numpy())

    def _positive(self, target: Target) -> np.ndarray | None:
        """Where the budget keeps one sign per input: for a dense (2-D) weight, entries whose
        synapse is (or would revive) positive (:meth:`_direction`); None elsewhere."""
        if target.name not in self.budget.one_sign_layers or self._theta(target).dim() != 2:
            return None
        return (self._direction(target) > 0).flatten().cpu().numpy()

    def _excitatory(self, target: Target) -> np.ndarray | None:
        """Output layer without BN: entries whose synapse is (or would revive) excitatory,
        ``sign > 0`` (:meth:`_direction`); None elsewhere (no excitatory preference)."""
        if not target.is_output or target.has_batchnorm:
            return None
        return (self._direction(target) > 0).flatten().cpu().numpy()

    def _projected(self, target: Target, keep: np.ndarray) -> torch.Tensor:
        weight = self._kept_values(target).clone()
        keep_t = torch.as_tensor(keep.reshape(weight.shape), device=weight.device)
        alive = weight[weight != 0].abs()
        size = REVIVE_FRACTION * (float(alive.mean()) if alive.numel() else 1e-3)
        revive = keep_t & (weight == 0)
        direction = self._direction(target).to(weight.dtype)
        weight = torch.where(revive, direction * size, weight)
        return torch.where(keep_t, weight, torch.zeros_like(weight))

    def _kept_values(self, target: Target) -> torch.Tensor:
        """Values the kept synapses take at the projection (default: the effective weights)."""
        return self._weight(target)

    def _direction(self, target: Target) -> torch.Tensor:
        """Sign a revived synapse takes: ``sign(theta)`` with 0 -> +1."""
        sign = torch.sign(self._theta(target).detach())
        return torch.where(sign == 0, torch.ones_like(sign), sign)

    def _refresh_cap(self) -> None:
        """Fan-in cap and core blocks during training: keep the top ``cap`` entries of each
        group by score, among the entries the layer's core blocks allow
        (``Budget.input_blocks``, :func:`neuroprune.pruning.selection.eligible_in_blocks`, the
        projection's own rule), so the network adapts to the structure the projection will
        impose. The blocks' inputs are re-chosen from the scores at every controller check."""
        cap = self.budget.fan_in_cap
        for target in self.targets:
            param = self._parametrization(target)
            if param is None or not hasattr(param, "set_cap_mask"):
                continue
            capped = cap is not None and cap < target.group_size
            blocks = self.budget.input_blocks.get(target.name)
            if not capped and blocks is None:
                continue
            scores = self.scores(target).detach()
            allowed = self._block_allowed(target, scores) if blocks is not None else None
            if allowed is not None:
                scores = torch.where(allowed, scores, torch.full_like(scores, -torch.inf))
            mask = _top_per_group(scores, cap) if capped else torch.ones_like(scores)
            if allowed is not None:
                mask = mask * allowed.to(mask.dtype)
            param.set_cap_mask(mask)

    def _block_allowed(self, target: Target, scores: torch.Tensor) -> torch.Tensor:
        """Entries the target's core blocks allow (weight's shape, bool), re-chosen from
        ``scores`` at the start and at every controller check, cached between. Shared-input
        blocks narrow gradually (:func:`block_inputs_now` at this step's progress) and keep
        inputs that are not copies of each other (:meth:`_input_similarity`)."""
        cache = self._blocks_cache
        if target.name not in cache or self.step % self.check_every == 0:
            flat = scores.reshape(-1).cpu().double().numpy()
            blocks = block_inputs_now(self.budget.input_blocks[target.name], self.progress)
            allowed = eligible_in_blocks(flat, blocks, self._input_similarity(target))
            cache[target.name] = torch.as_tensor(allowed.reshape(scores.shape)).to(scores.device)
        return cache[target.name]

    def _check_scheduler(self, scheduler: str | None) -> str | None:

        if scheduler is None:
            return self.default_scheduler
        if self.default_scheduler is None:
            raise ConfigError(
                f"method {self.name!r} has no threshold scheduler",
                where="pruning",
                field="scheduler",
                value=scheduler,
                fix="Leave --scheduler out for this method.",
            )
        lookup(SCHEDULERS, scheduler)
        return scheduler

    # ----------------------------------------------------------------------------------------
    # Method hooks: the public extension interface (class docstring)

    def install(self, target: Target) -> None:
        """Reparameterise ``target.module.weight`` for this method (once per target, by
        :meth:`attach`)."""
        raise NotImplementedError

    def begin(self) -> None:
        """Calibrate ``self.knob`` at the start of pruning (once, by :meth:`on_train_begin`)."""

    def advance(self, lr: float) -> None:
        """Act after optimizer step ``self.step`` (1-based) that used learning rate ``lr``."""

    def scores(self, target: Target) -> torch.Tensor:
        """Ranking of the target's entries for the projection (weight's shape, higher kept
        first); default ``|theta|``."""
        return self._theta(target).detach().abs()


def block_inputs_now(blocks: InputBlocks, progress: float) -> InputBlocks:
    """The core blocks in force at ``progress`` (``t / T`` of the pruning steps).

    Shared-input blocks (:attr:`InputBlocks.shared_inputs`) narrow geometrically from every
    input of the layer (``N``) to their final ``K = inputs_per_block`` as the pruning run
    goes, the same shape as the planned synapse count (module docstring):

        K_t = round(K * (N / K) ** (1 - g_t)),   g_t = min(1, progress / BLOCKS_SETTLE)

    so each block's inputs are chosen by the block's summed scores while the network still
    adapts, rather than cut to ``K`` at the first step (measured: :data:`BLOCKS_SETTLE`).
    Disjoint (fan-out) blocks are returned unchanged."""
    if not blocks.shared_inputs or blocks.inputs_per_block >= blocks.inputs:
        return blocks
    final, inputs = blocks.inputs_per_block, blocks.inputs
    settled = min(1.0, max(0.0, float(progress)) / BLOCKS_SETTLE)
    width = int(round(final * (inputs / final) ** (1.0 - settled)))
    return dataclasses.replace(blocks, inputs_per_block=min(inputs, max(final, width)))


def _count(weight: torch.Tensor, cost: torch.Tensor) -> int:
    return int(round(float((cost.to(weight.device) * (weight != 0)).sum())))


def _top_per_group(scores: torch.Tensor, cap: int) -> torch.Tensor:
    """0/1 mask keeping the ``cap`` highest scores of each output row/channel."""
    flat = scores.reshape(scores.shape[0], -1)
    index = flat.topk(cap, dim=1).indices
    mask = torch.zeros_like(flat)
    mask.scatter_(1, index, 1.0)
    return mask.reshape(scores.shape)
