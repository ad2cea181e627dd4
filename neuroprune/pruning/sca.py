"""SCA: structured channel pruning from spiking activity, with prune-and-regrow (ICML 2024).

Li, Xu, Shen, Xu, Chen, Pan, "Towards Efficient Deep Spiking Neural Networks Construction with
Spiking Activity based Pruning" (docs/pruning.md §4, budget targeting §6.5). The unit is
one output channel of a hidden layer (a conv channel, or a hidden Linear unit), or one *group*
of channels joined by residual ADDs (:mod:`neuroprune.pruning.channels`).

**Importance** (§4.1). A forward hook on each producer's neuron node (``store_v_seq=True``, so
SpikingJelly keeps the membrane potential *after* reset, ``v = 0`` on a spike) records, for
every training minibatch ``b``, ``a_b(c) = mean_{t, n, h, w} (s[t, n, c, h, w] + |v[t, n, c,
h, w]|)`` (spikes and potentials are dimensionless, so ``a`` is too). The score of a channel is
the mean of ``a_b(c)`` over the minibatches of the interval; a group's score is the mean over
its members. Evaluation passes are not recorded.

**Mask update**, every ``interval`` epochs (default 1; §4.2):

1. keep the top ``(1 - p - q)`` of all prunable channels globally by score, and, because the
   chip has budgets, at most what the knapsack allows: :func:`~neuroprune.pruning.channels.
   select_channels` with the synapse and neuron limits and ``channels <= (1 - p) C - q C``;
2. among the provisionally pruned groups, regrow the ones with the largest
   ``|dL/dgamma_c|`` (BN scale gradient, mean of ``|grad|`` over the interval's steps, summed
   over the group's members) until ``round(q C)`` channels are back; a group whose gradient is
   0 never regrows, and a group whose return would break a limit is skipped (so the structure
   is within budget after every update and the final one differs little). Producers without BN use the gradient of a per-channel output scale,
   ``dL/ds_c = sum_j W_cj dL/dW_cj``;
3. mask the rest. *Our choice*: during training a masked channel has BN ``gamma = beta = 0``
   (re-applied after every optimizer step, so its neurons receive exactly 0) but keeps its conv
   filter, so ``dL/dgamma_c = sum dL/dy_c * xhat_c`` stays informative and the channel can
   regrow; zeroing the filter too (the paper's code) makes ``xhat = 0`` and the gradient 0.
   A regrown channel gets back the ``gamma, beta`` it had when masked.

L1 on every conv weight: ``grad += l1 * sign(W)`` before each optimizer step (§4.3).

**Final structure** (:meth:`SCA.project`): the knapsack alone on the last scores, so the
structure meets every limit: ``synapses <= synapse_target`` (default ``B``), ``neurons <=
neuron_budget``, ``channels <= (1 - p) C``, every space at least
``max(1, ceil(min_fraction * width))`` groups, every layer at least ``Budget.per_layer_min``
synapses, and (``enforce_fan_in``) few enough input channels that no neuron can exceed the
fan-in cap. Fine-tuning keeps the structure; :meth:`SCA.finalize` zeroes the removed channels
(filter slice, ``gamma``, ``beta``) and physically removes them
(:func:`~neuroprune.pruning.channel_surgery.remove_channels`).

:func:`prune_structured` runs the whole recipe and reports per layer channels, neurons,
synapses and cores before and after, and the accuracy before and after removal; with
``then_stds=True`` (method ``sca+stds``) it stops the structure at ``structure_slack * B``
synapses and lets STDS prune inside the kept channels to exactly ``B``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from neuroprune.core.errors import BudgetError, ConfigError, UnsupportedError
from neuroprune.fit.budget import Budget
from neuroprune.models.reader import SynapseLayer
from neuroprune.pruning.base import PruningMethod
from neuroprune.pruning.channel_surgery import producer_params, remove_channels, zero_channels
from neuroprune.pruning.channels import (
    ChannelCosts,
    ChannelGraph,
    ChannelLimits,
    Keep,
    channel_graph,
    kept_members,
    max_tap_fan_in,
    select_channels,
    with_channel_limit,
)

DEFAULT_P = 0.0
DEFAULT_Q = 0.1
DEFAULT_L1 = 3e-5
DEFAULT_MIN_FRACTION = 0.1
STRUCTURE_SLACK = 2.0
STRUCTURE_FRACTION = 0.5


# --------------------------------------------------------------------------------------------
# Spiking activity


class ActivityMonitor:
    """Per-channel activity ``mean(s + |v|)`` of the producers' neuron nodes (module docstring).

    Records only while ``active`` and the node is in training mode. :meth:`remove` takes the
    hooks off and restores each node's ``store_v_seq``.
    """

    def __init__(self, model: torch.nn.Module, graph: ChannelGraph) -> None:
        self.graph = graph
        self.active = True
        self.sums: dict[str, torch.Tensor] = {}
        self.batches: dict[str, int] = {}
        self.saved: dict[str, bool] = {}
        self.handles = []
        for wired in _producers(graph):
            node = model.get_submodule(wired.neuron)
            self.saved[wired.neuron] = bool(getattr(node, "store_v_seq", False))
            node.store_v_seq = True
            self.handles.append(node.register_forward_hook(self._hook(wired.neuron)))
        self.model = model

    def _hook(self, path: str):
        def record(module, inputs, output) -> None:
            if not (self.active and module.training):
                return
            activity = output.detach() + module.v_seq.detach().abs()
            dims = [0, 1, *range(3, activity.dim())]
            per_channel = activity.mean(dim=dims).double().cpu()
            self.sums[path] = self.sums.get(path, 0) + per_channel
            self.batches[path] = self.batches.get(path, 0) + 1

        return record

    def channel_scores(self, neuron: str) -> np.ndarray | None:
        """Mean of the minibatch activities of one node's channels (None: nothing recorded)."""
        if not self.batches.get(neuron):
            return None
        return (self.sums[neuron] / self.batches[neuron]).numpy()

    def space_scores(self) -> dict[str, np.ndarray] | None:
        """Score per group: mean over the space's producers; None until every one recorded."""
        out = {}
        for space in self.graph.spaces:
            members = [self.channel_scores(w.neuron) for w in self.graph.producers(space)]
            if any(m is None for m in members):
                return None
            out[space] = np.mean(members, axis=0)
        return out

    def reset(self) -> None:
        self.sums, self.batches = {}, {}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        for path, value in self.saved.items():
            self.model.get_submodule(path).store_v_seq = value


def _producers(graph: ChannelGraph) -> list[SynapseLayer]:
    return [w for space in graph.spaces for w in graph.producers(space)]


# --------------------------------------------------------------------------------------------
# The method


class SCA(PruningMethod):
    """Spiking-channel-activity pruning with regrowth (module docstring); registry name ``sca``.

    Args (besides :class:`PruningMethod`'s; ``scheduler`` must stay None):
        p: fraction of prunable channels removed at least (0 <= p < 1).
        q: fraction provisionally pruned beyond that and regrown by gradient (p + q < 1).
        interval: epochs between mask updates.
        l1: L1 coefficient on conv weights (added to the gradient as ``l1 * sign(W)``).
        min_fraction: per-space minimum width ``max(1, ceil(min_fraction * width))``.
        neuron_budget: most spiking neurons the structure may keep (None: no limit).
        synapse_target: synapses the structure may keep (default ``budget.synapses``).
        enforce_fan_in: limit input widths so no neuron exceeds ``budget.fan_in_cap``.

    Budgets are met from below: a structured method keeps ``<= B`` synapses but rarely exactly
    ``B`` (``sca+stds`` in :func:`prune_structured` hits ``B``).
    """

    name = "sca"
    knob_name: ClassVar[str] = "channels_pruned"
    structured: ClassVar[bool] = True

    def __init__(
        self,
        budget: Budget,
        *,
        input_shape: Sequence[int],
        scheduler: str | None = None,
        lr_schedule=None,
        control=None,
        p: float = DEFAULT_P,
        q: float = DEFAULT_Q,
        interval: int = 1,
        l1: float = DEFAULT_L1,
        min_fraction: float = DEFAULT_MIN_FRACTION,
        neuron_budget: int | None = None,
        synapse_target: int | None = None,
        enforce_fan_in: bool = True,
    ) -> None:
        super().__init__(
            budget,
            input_shape=input_shape,
            scheduler=scheduler,
            lr_schedule=lr_schedule,
            control=control,
        )
        self.p, self.q = _fraction("p", p), _fraction("q", q)
        if self.p + self.q >= 1.0:
            _option_error("p", p, "Keep p + q below 1 (p pruned, q regrown per update).")
        self.interval = _positive_int("interval", interval)
        self.l1 = _non_negative("l1", l1)
        self.min_fraction = _fraction("min_fraction", min_fraction, upper_inclusive=True)
        self.neuron_budget = _optional_positive_int("neuron_budget", neuron_budget)
        target = _optional_positive_int("synapse_target", synapse_target)
        self.synapse_target = budget.synapses if target is None else target
        self.enforce_fan_in = bool(enforce_fan_in)
        self.graph: ChannelGraph | None = None
        self.costs: ChannelCosts | None = None
        self.limits: ChannelLimits | None = None
        self.keep: Keep = {}
        self.latent: dict[tuple[str, int], torch.Tensor] = {}
        self.monitor: ActivityMonitor | None = None
        self.grad_sum: dict[str, np.ndarray] = {}
        self.grad_steps = 0
        self.epochs = 1
        self.updates = 0

    # ----------------------------------------------------------------------------------------
    # Life cycle

    def attach(self, model: torch.nn.Module) -> torch.nn.Module:
        """Find the channel groups, check the limits are feasible, hook the neuron nodes."""
        self.model = model
        self.graph = channel_graph(model, self.input_shape)
        if not self.graph.spaces:
            raise UnsupportedError(
                "the model has no hidden channels to prune",
                where="pruning sca",
                field="model",
                value=type(model).__name__,
                fix="Use a model with at least two synaptic layers, or an unstructured method.",
            )
        self.keep = {s: np.ones(self.graph.width(s), dtype=bool) for s in self.graph.spaces}
        self.costs = self._measure_costs()
        self.limits = self._limits()
        select_channels(self.costs, self._uniform_values(), self.limits)
        self.monitor = ActivityMonitor(model, self.graph)
        self._reset_scores()
        self.phase = "prune"
        return model

    def on_train_begin(self, model, optimizer, steps_per_epoch: int, epochs: int) -> None:
        if self.phase != "prune":
            return
        self.epochs = max(1, int(epochs))
        self.total_steps = max(1, int(steps_per_epoch) * self.epochs)
        self.step = 0
        self._reset_scores()

    def before_step(self) -> None:
        """L1 on conv weights, then record the regrowth gradients (prune phase only)."""
        if self.phase != "prune":
            return
        self._add_l1()
        self._record_gradients()

    def after_step(self, iteration: int, lr: float) -> None:
        if self.phase in ("prune", "finetune"):
            self._apply_masks()
            self.step += 1

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Mask update every ``interval`` epochs (the last epoch's is :meth:`project`)."""
        if self.phase == "prune" and epoch % self.interval == 0 and epoch < self.epochs:
            self._update(final=False)
        return super().on_epoch_end(epoch, metrics)

    def project(self, budget: Budget | None = None) -> dict[str, int]:
        """Choose the final structure (knapsack on the last scores); masks frozen from now on."""
        if budget is not None:
            self.budget, self.synapse_target = budget, budget.synapses
        self.costs = self._measure_costs()
        self.limits = self._limits()
        self._update(final=True)
        self.phase = "finetune"
        if self.monitor is not None:
            self.monitor.active = False
        return self.counts()

    def finalize(self, model: torch.nn.Module | None = None, *, remove: bool = True):
        """Zero the removed channels, drop the hooks; return the narrower model (``remove``).

        With ``remove=False`` the model itself comes back with the removed channels zeroed (the
        "masked model", same outputs as the narrower one).
        """
        if self.phase == "prune":
            self.project()
        model = model if model is not None else self.model
        zero_channels(model, self.graph, self.keep)
        if self.monitor is not None:
            self.monitor.remove()
            self.monitor = None
        self.phase = "done"
        return remove_channels(model, self.graph, self.keep) if remove else model

    # ----------------------------------------------------------------------------------------
    # Counts and metrics

    def counts(self) -> dict[str, int]:
        """Synapses per layer of the current structure (as if removed)."""
        return self.costs.layer_synapses(self.keep)

    @property
    def dense_synapses(self) -> int:
        return sum(self.costs.layer_synapses(self.costs.full()).values())

    def predicted(self) -> int:
        return sum(self.counts().values())

    def extra_metrics(self) -> dict[str, Any]:
        totals = self.costs.totals(self.keep)
        return {
            "channels": totals["channels"],
            "channels_total": self.graph.total_members(),
            "neurons": totals["neurons"],
            "mask_updates": self.updates,
            "widths": {s: int(k.sum()) for s, k in self.keep.items()},
        }

    # ----------------------------------------------------------------------------------------
    # Mask updates

    def _update(self, *, final: bool) -> None:
        values = self._importance()
        if final:
            keep = select_channels(self.costs, values, self.limits)
        else:
            keep = self._prune_and_regrow(values)
        self._set_keep(keep)
        self.knob = 1.0 - kept_members(self.graph, self.keep) / self.graph.total_members()
        self.updates += 1
        self._reset_scores()

    def _prune_and_regrow(self, values: Mapping[str, np.ndarray]) -> Keep:
        target = select_channels(self.costs, values, self.limits)
        regrow_count = int(round(self.q * self.graph.total_members()))
        if regrow_count == 0:
            return target
        floor = sum(w * self.graph.members(s) for s, w in self.limits.min_width.items())
        limit = max(kept_members(self.graph, target) - regrow_count, floor)
        provisional = select_channels(self.costs, values, with_channel_limit(self.limits, limit))
        return regrow(
            self.graph, provisional, self._gradient_scores(), regrow_count, fits=self._fits
        )

    def _fits(self, keep: Keep) -> bool:
        """True when ``keep`` meets every limit (synapses, neurons, channels, widths)."""
        widths_ok = all(int(keep[s].sum()) <= w for s, w in self.limits.max_width.items())
        return widths_ok and not self.limits.excess(self.costs.totals(keep))

    def _importance(self) -> dict[str, np.ndarray]:
        """Activity scores; without any recorded batch, the mean ``|W|`` of each filter."""
        scores = self.monitor.space_scores() if self.monitor is not None else None
        if scores is not None:
            return scores
        return self._filter_magnitudes()

    def _filter_magnitudes(self) -> dict[str, np.ndarray]:
        out = {}
        for space in self.graph.spaces:
            per = []
            for wired in self.graph.producers(space):
                weight = self.model.get_submodule(wired.name).weight.detach()
                per.append(weight.abs().flatten(1).mean(1).double().cpu().numpy())
            out[space] = np.mean(per, axis=0) * self.keep[space]
        return out

    def _uniform_values(self) -> dict[str, np.ndarray]:
        return {s: np.ones(self.graph.width(s)) for s in self.graph.spaces}

    def _gradient_scores(self) -> dict[str, np.ndarray]:
        steps = max(self.grad_steps, 1)
        return {s: g / steps for s, g in self.grad_sum.items()}

    def _reset_scores(self) -> None:
        if self.monitor is not None:
            self.monitor.reset()
        self.grad_sum = {s: np.zeros(self.graph.width(s)) for s in self.graph.spaces}
        self.grad_steps = 0

    def _limits(self) -> ChannelLimits:
        members = self.graph.total_members()
        return ChannelLimits(
            synapses=self.synapse_target,
            neurons=self.neuron_budget,
            channels=math.floor((1.0 - self.p) * members + 1e-9),
            min_width=self.graph.min_widths(self.min_fraction),
            max_width=self._fan_in_widths() if self.enforce_fan_in else {},
            layer_min_synapses=dict(self.budget.per_layer_min),
        )

    def _fan_in_widths(self) -> dict[str, int]:
        """Most input channels per space so that ``width * max taps per channel <= cap``."""
        cap = self.budget.fan_in_cap
        if cap is None:
            return {}
        widths: dict[str, int] = {}
        with self._latent_values():
            per_channel = {w.name: max_tap_fan_in(self.model, w) for w in self.graph.layers}
        for wired in self.graph.layers:
            taps = per_channel[wired.name]
            if taps == 0:
                continue
            if wired.in_space is None:
                _check_input_fan_in(wired, wired.in_channels * taps, cap)
                continue
            widths[wired.in_space] = min(widths.get(wired.in_space, cap // taps), cap // taps)
        return widths

    # ----------------------------------------------------------------------------------------
    # Masks

    def _masked_params(self, wired: SynapseLayer) -> list[torch.nn.Parameter]:
        return producer_params(self.model, wired)

    def _set_keep(self, keep: Keep) -> None:
        """Mask newly pruned groups (saving their values), restore regrown ones."""
        with torch.no_grad():
            for space in self.graph.spaces:
                dropped = self.keep[space] & ~keep[space]
                restored = ~self.keep[space] & keep[space]
                for wired in self.graph.producers(space):
                    for i, param in enumerate(self._masked_params(wired)):
                        latent = self.latent.setdefault((wired.name, i), param.detach().clone())
                        gone = torch.as_tensor(dropped, device=param.device)
                        back = torch.as_tensor(restored, device=param.device)
                        latent[gone] = param.detach()[gone]
                        param[back] = latent[back]
                        param[gone] = 0.0
        self.keep = {s: np.asarray(k, dtype=bool).copy() for s, k in keep.items()}

    def _apply_masks(self) -> None:
        with torch.no_grad():
            for space in self.graph.spaces:
                gone = ~self.keep[space]
                if not gone.any():
                    continue
                for wired in self.graph.producers(space):
                    for param in self._masked_params(wired):
                        param[torch.as_tensor(gone, device=param.device)] = 0.0

    @contextlib.contextmanager
    def _latent_values(self):
        """Masked channels temporarily hold their saved values (for measuring costs)."""
        with torch.no_grad():
            for space in self.graph.spaces:
                gone = torch.as_tensor(~self.keep[space])
                for wired in self.graph.producers(space):
                    for i, param in enumerate(self._masked_params(wired)):
                        latent = self.latent.get((wired.name, i))
                        if latent is not None:
                            index = gone.to(param.device)
                            param[index] = latent[index]
        try:
            yield
        finally:
            self._apply_masks()

    def _measure_costs(self) -> ChannelCosts:
        with self._latent_values():
            return ChannelCosts.from_model(
                self.model, self.graph, conv_weight_sharing=self.budget.conv_weight_sharing
            )

    # ----------------------------------------------------------------------------------------
    # Gradients

    def _add_l1(self) -> None:
        if self.l1 <= 0:
            return
        for wired in self.graph.layers:
            weight = self.model.get_submodule(wired.name).weight
            if wired.kind == "conv" and weight.grad is not None:
                weight.grad.add_(self.l1 * torch.sign(weight.detach()))

    def _record_gradients(self) -> None:
        for space in self.graph.spaces:
            for wired in self.graph.producers(space):
                self.grad_sum[space] += self._scale_gradient(wired, space)
        self.grad_steps += 1

    def _scale_gradient(self, wired: SynapseLayer, space: str) -> np.ndarray:
        """``|dL/dgamma_c|`` with BN, else ``|sum_j W_cj dL/dW_cj|`` (saved values if masked)."""
        if wired.batchnorm is not None:
            grad = self.model.get_submodule(wired.batchnorm).weight.grad
            if grad is None:
                return np.zeros(self.graph.width(space))
            return grad.detach().abs().double().cpu().numpy()
        weight = self.model.get_submodule(wired.name).weight
        if weight.grad is None:
            return np.zeros(self.graph.width(space))
        values = weight.detach()
        latent = self.latent.get((wired.name, 0))
        if latent is not None:
            gone = torch.as_tensor(~self.keep[space], device=values.device)
            values = torch.where(_expand(gone, values), latent, values)
        return (values * weight.grad).flatten(1).sum(1).abs().double().cpu().numpy()


def regrow(
    graph: ChannelGraph,
    provisional: Mapping[str, np.ndarray],
    scores: Mapping[str, np.ndarray],
    channels: int,
    *,
    fits: Callable[[Keep], bool] | None = None,
) -> Keep:
    """Re-activate pruned groups by descending gradient score until ``channels`` are back.

    Groups with score 0 never regrow; ties go to the earlier space and lower index; a group
    whose return would break the limits (``fits(keep)`` False) is skipped, so the structure
    stays within budget at every update. Returns a new keep mask.
    """
    keep = {s: np.asarray(k, dtype=bool).copy() for s, k in provisional.items()}
    order = {s: i for i, s in enumerate(graph.spaces)}
    candidates = sorted(
        (-float(scores[s][c]), order[s], int(c), s)
        for s in graph.spaces
        for c in np.flatnonzero(~keep[s])
        if scores[s][c] > 0
    )
    back = 0
    for _, _, channel, space in candidates:
        if back >= channels:
            break
        keep[space][channel] = True
        if fits is not None and not fits(keep):
            keep[space][channel] = False
            continue
        back += graph.members(space)
    return keep


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1))).expand_as(like)


def _check_input_fan_in(wired: SynapseLayer, fan_in: int, cap: int) -> None:
    if fan_in > cap:
        raise BudgetError(
            f"layer {wired.name!r} reads the network input with fan-in up to {fan_in}, above the "
            f"chip's cap {cap}; channel pruning cannot remove input channels",
            where="pruning sca",
            field="fan_in_cap",
            value=cap,
            fix="Use sca+stds (unstructured pruning inside the kept channels enforces the cap).",
        )


# --------------------------------------------------------------------------------------------
# Option checks


def _option_error(name: str, value: object, fix: str) -> None:
    raise ConfigError("invalid sca option", where="pruning sca", field=name, value=value, fix=fix)


def _fraction(name: str, value: object, *, upper_inclusive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    upper_ok = ok and (value <= 1.0 if upper_inclusive else value < 1.0)
    if not (ok and value >= 0.0 and upper_ok):
        _option_error(name, value, "Use a fraction in [0, 1).")
    return float(value)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _option_error(name, value, "Use a positive integer.")
    return int(value)


def _optional_positive_int(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        _option_error(name, value, "Use a positive integer, or leave it out for no limit.")
    return int(value)


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        _option_error(name, value, "Use a value >= 0.")
    return float(value)
