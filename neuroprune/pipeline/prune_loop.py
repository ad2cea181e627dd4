"""The library entry point the pipeline calls: :func:`prune_to_budget`.

Stages (docs/pruning.md §6.6):

0. where the budget prunes a hidden dense layer into shared-input core blocks (crossbar and
   dense-matrix chips), reorder its neurons so that each block gathers neurons with
   overlapping inputs (:func:`neuroprune.pruning.clustering.cluster_for_blocks`; the function
   the model computes is unchanged);
1. attach the method (reparameterise Linear/Conv2d weights);
2. train ``epochs`` epochs with the method as a callback (the knob steers the predicted final
   count toward ``margin * B``), under :func:`prune_config` (the training schedule, or for a
   method with ``constant_lr`` a constant rate with the same total ``sum eta``);
3. project exactly to ``B`` (:meth:`PruningMethod.project`): plain weights, mask frozen;
4. fine-tune ``finetune_epochs`` epochs at ``finetune_lr_scale * lr`` with the mask frozen;
5. finalize: a plain model whose pruned weights are exact zeros, no hooks or parametrizations.

``progress(event)`` receives the training events with ``stage`` ``"prune"``/``"finetune"``
added, plus ``{"event": "prune_begin" | "projected" | "prune_end", ...}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from neuroprune.core.progress import Progress, emit
from neuroprune.fit.budget import Budget
from neuroprune.models.translate import summarize
from neuroprune.pruning.base import PruningMethod
from neuroprune.pruning.clustering import cluster_for_blocks
from neuroprune.pruning.registry import method_class
from neuroprune.train import distributed
from neuroprune.train.loop import TrainConfig, evaluate, lr_at, train


@dataclass(frozen=True, eq=False)
class PruneResult:
    """Outcome of :func:`prune_to_budget`.

    Attributes:
        model: the pruned model: plain modules, pruned weights exactly 0.
        method: registry name of the method; ``scheduler`` its schedule (or None).
        budget: the budget it was pruned to.
        history: one dict per epoch (both stages): ``stage``, ``epoch``, ``loss``,
            ``test_accuracy``, ``lr``, ``nonzero``, ``sparsity``, ``knob`` (``knob_name``:
            threshold D, alpha or target sparsity), ``predicted`` (final count predicted).
        accuracy: test accuracy of the returned model (0..1).
        synapses: physical nonzero synapses of the returned model (``<= budget.synapses``).
        per_layer: per layer ``{layer, synapses, dense, sparsity, max_fan_in, mean_fan_in}``.
        seconds: wall-clock time of the whole call.
    """

    model: torch.nn.Module
    method: str
    scheduler: str | None
    budget: Budget
    history: tuple[dict[str, Any], ...]
    accuracy: float
    synapses: int
    per_layer: tuple[dict[str, Any], ...]
    seconds: float
    projected_counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def max_fan_in(self) -> int:
        """Largest fan-in of any neuron."""
        return max((row["max_fan_in"] for row in self.per_layer), default=0)

    @property
    def sparsity(self) -> float:
        """``1 - synapses / dense`` over all layers."""
        dense = sum(row["dense"] for row in self.per_layer)
        return 1.0 - self.synapses / dense if dense else 0.0


def prune_to_budget(
    model: torch.nn.Module,
    dataset: Any,
    train_config: TrainConfig,
    *,
    method: str,
    budget: Budget,
    scheduler: str | None = None,
    epochs: int,
    finetune_epochs: int,
    finetune_lr_scale: float = 0.5,
    options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> PruneResult:
    """Prune ``model`` (in place) to ``budget`` with ``method``; see the module docstring.

    ``options`` go to the method's constructor (e.g. ``{"beta": 10}`` for pgh, ``{"scope":
    "layer"}`` for gmp, ``{"control": KnobControl(...)}``). ``train_config.epochs`` is
    replaced by ``epochs`` and ``finetune_epochs``.
    """
    started = time.perf_counter()
    input_shape = tuple(dataset.input_shape)
    cls = method_class(method)
    prune_cfg = prune_config(train_config, epochs, constant=cls.constant_lr)
    pruner = cls(
        budget,
        input_shape=input_shape,
        scheduler=scheduler,
        lr_schedule=lr_schedule(prune_cfg, len(dataset.y_train)),
        **dict(options or {}),
    )
    cluster_for_blocks(model, budget, input_shape)
    pruner.attach(model)
    emit(
        progress,
        event="prune_begin",
        method=method,
        budget=budget.synapses,
        dense=pruner.dense_synapses,
    )
    history = _train_stage(model, dataset, prune_cfg, pruner, "prune", epochs, progress)
    projected = pruner.project()
    emit(progress, event="projected", nonzero=sum(projected.values()), budget=budget.synapses)
    ft_cfg = train_config.replace(
        epochs=max(1, int(finetune_epochs)), lr=train_config.lr * finetune_lr_scale
    )
    history += _train_stage(model, dataset, ft_cfg, pruner, "finetune", finetune_epochs, progress)
    model = pruner.finalize(model)
    return _result(
        model, dataset, train_config, pruner, method, history, projected, started, progress
    )


def _result(model, dataset, config, pruner, method, history, projected, started, progress):
    accuracy = evaluate(
        model, dataset.x_test, dataset.y_test, config.timesteps, config.encoding, seed=config.seed
    )
    per_layer = layer_report(
        model,
        tuple(dataset.input_shape),
        config.timesteps,
        conv_weight_sharing=pruner.budget.conv_weight_sharing,
    )
    synapses = sum(row["synapses"] for row in per_layer)
    emit(progress, event="prune_end", accuracy=accuracy, synapses=synapses)
    return PruneResult(
        model=model,
        method=method,
        scheduler=pruner.scheduler_name,
        budget=pruner.budget,
        history=tuple(history),
        accuracy=float(accuracy),
        synapses=int(synapses),
        per_layer=tuple(per_layer),
        seconds=time.perf_counter() - started,
        projected_counts=dict(projected),
    )


def _train_stage(model, dataset, config, pruner: PruningMethod, stage, epochs, progress):
    """Run one training stage (skipped when ``epochs`` is 0); history rows carry ``stage``."""
    if int(epochs) <= 0:
        return []
    result = train(model, dataset, config, callbacks=[pruner], progress=_tagged(progress, stage))
    return [{"stage": stage, **row} for row in result.history]


def prune_config(config: TrainConfig, epochs: int, *, constant: bool = False) -> TrainConfig:
    """Training config of the pruning stage: ``config`` for ``epochs`` epochs.

    ``constant=True``: learning rate ``eta = (1/E) sum_e lr_at(e)`` every epoch
    (``lr_schedule="none"``), the same total ``sum eta`` as the configured schedule spread evenly
    (STDS: a sine/linear threshold under a decaying rate ends in a diverging L1 strength).
    """
    cfg = config.replace(epochs=max(1, int(epochs)))
    if not constant or cfg.lr_schedule == "none":
        return cfg
    mean = sum(lr_at(cfg, e) for e in range(cfg.epochs)) / cfg.epochs
    return cfg.replace(lr=float(mean), lr_schedule="none")


def lr_schedule(config: TrainConfig, train_size: int) -> Callable[[int], float]:
    """``iteration -> learning rate`` that :func:`neuroprune.train.loop.train` will use."""
    steps = distributed.steps_per_epoch(int(train_size), config.batch_size)
    return lambda iteration: lr_at(config, iteration // steps)


def layer_report(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    timesteps: int = 1,
    *,
    conv_weight_sharing: bool = False,
) -> list[dict[str, Any]]:
    """Per layer ``{layer, synapses, dense, sparsity, max_fan_in, mean_fan_in}``.

    Counted by :func:`neuroprune.models.translate.summarize` (BN folded, conv unrolled unless
    the chip shares conv weights); fan-in is always per unrolled neuron.
    """
    summary = summarize(model, input_shape, timesteps)
    rows = []
    for layer in summary.layers:
        synapses = layer.synapses(conv_weight_sharing)
        dense = layer.dense_positions(conv_weight_sharing)
        rows.append(
            {
                "layer": layer.name,
                "synapses": int(synapses),
                "dense": int(dense),
                "sparsity": 1.0 - synapses / dense if dense else 0.0,
                "max_fan_in": int(layer.max_fan_in),
                "mean_fan_in": float(layer.mean_fan_in),
            }
        )
    return rows


def _tagged(progress: Progress | None, stage: str) -> Progress | None:
    if progress is None:
        return None
    return lambda event: progress(event.tagged(stage))
