"""The structured-pruning recipe (sca, sca+stds): train with SCA, remove channels, check the
fit, then (sca+stds) prune the kept channels to the exact budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from neuroprune.core.progress import Progress, emit
from neuroprune.fit.budget import Budget, per_layer_minimums
from neuroprune.fit.rules import check_fit
from neuroprune.models.sew import summarize_model
from neuroprune.pipeline.prune_loop import PruneResult, prune_to_budget
from neuroprune.pruning.channel_surgery import remove_channels
from neuroprune.pruning.sca import (
    DEFAULT_P,
    DEFAULT_Q,
    SCA,
    STRUCTURE_FRACTION,
    STRUCTURE_SLACK,
    _option_error,
)
from neuroprune.train.loop import TrainConfig, evaluate, train

# --------------------------------------------------------------------------------------------
# Entry point


@dataclass(frozen=True, eq=False)
class StructuredPruneResult(PruneResult):
    """:class:`PruneResult` of :func:`prune_structured`, plus the structure before and after.

    ``per_layer`` rows hold PruneResult's keys (``layer, synapses, dense, sparsity, max_fan_in,
    mean_fan_in``) and ``channels_before/after, neurons_before/after, synapses_before/after,
    cores_before/after`` (cores: None without a profile).

    Attributes (besides PruneResult's):
        accuracy_dense: test accuracy of the model handed in.
        accuracy_masked: after structured pruning and fine-tuning, removed channels zeroed.
        accuracy_removed: right after physical removal (equals ``accuracy_masked``).
        neurons / neurons_before: spiking neurons after / before.
        synapses_before: physical synapses before.
        cores / cores_before: cores used (``fit.check_fit``) after / before; None without a
            profile.
        fits: whether the final model fits the profile (None without one).
        widths: channel space -> (groups before, groups after).
        neuron_budget: the neuron limit the structure met (None: none).
        stds: the :class:`PruneResult` of the STDS stage of ``sca+stds`` (else None).
    """

    accuracy_dense: float = 0.0
    accuracy_masked: float = 0.0
    accuracy_removed: float = 0.0
    neurons: int = 0
    neurons_before: int = 0
    synapses_before: int = 0
    cores: int | None = None
    cores_before: int | None = None
    fits: bool | None = None
    widths: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    neuron_budget: int | None = None
    stds: PruneResult | None = None


def prune_structured(
    model: torch.nn.Module,
    dataset: Any,
    train_config: TrainConfig,
    *,
    budget: Budget,
    neuron_budget: int | None = None,
    epochs: int,
    finetune_epochs: int,
    p: float = DEFAULT_P,
    q: float = DEFAULT_Q,
    then_stds: bool = False,
    profile: Any = None,
    finetune_lr_scale: float = 0.5,
    structure_fraction: float = STRUCTURE_FRACTION,
    structure_slack: float = STRUCTURE_SLACK,
    options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> StructuredPruneResult:
    """SCA (``then_stds=False``, method ``sca``) or SCA then STDS (method ``sca+stds``).

    ``sca``: ``epochs`` epochs of SCA training (mask update every interval), final structure
    within ``budget.synapses``/``neuron_budget``, ``finetune_epochs`` epochs at
    ``finetune_lr_scale * lr`` with the structure frozen, then physical removal.

    ``sca+stds``: SCA for ``ceil(structure_fraction * epochs)`` epochs with the synapse limit
    ``structure_slack * B`` (the neuron budget in full), physical removal, then
    :func:`neuroprune.pruning.prune_to_budget` with ``stds`` for the remaining epochs and
    ``finetune_epochs``: exactly ``B`` synapses (and the fan-in cap) inside the kept channels.
    Needs a Sequential model (:class:`UnsupportedError` otherwise).

    ``profile`` (a ChipProfile) adds cores per layer and the fit verdict. ``options`` go to
    :class:`SCA` (``interval``, ``l1``, ``min_fraction``...). ``model`` is changed in place
    (masked); the result's ``model`` is the narrower copy.
    """
    started = time.perf_counter()
    input_shape = tuple(dataset.input_shape)
    sharing = budget.conv_weight_sharing
    before = _snapshot(model, dataset, train_config, profile, sharing)
    sca_epochs, stds_epochs = _split_epochs(epochs, then_stds, structure_fraction)
    target = _structure_target(budget, then_stds, structure_slack)
    pruner = SCA(
        budget,
        input_shape=input_shape,
        p=p,
        q=q,
        neuron_budget=neuron_budget,
        synapse_target=target,
        enforce_fan_in=not then_stds,
        **dict(options or {}),
    )
    pruner.attach(model)
    emit(
        progress,
        event="prune_begin",
        method="sca+stds" if then_stds else "sca",
        budget=budget.synapses,
        dense=pruner.dense_synapses,
        neurons=before.neurons,
    )
    cfg = train_config.replace(epochs=max(1, sca_epochs))
    history = _stage(model, dataset, cfg, pruner, "prune", sca_epochs, progress)
    projected = pruner.project()
    emit(progress, event="projected", nonzero=sum(projected.values()), budget=budget.synapses)
    if not then_stds:
        ft_cfg = _finetune_config(train_config, finetune_epochs, finetune_lr_scale)
        history += _stage(model, dataset, ft_cfg, pruner, "finetune", finetune_epochs, progress)
    masked = pruner.finalize(model, remove=False)
    removed = remove_channels(masked, pruner.graph, pruner.keep)
    accuracy_masked = _accuracy(masked, dataset, train_config)
    accuracy_removed = _accuracy(removed, dataset, train_config)
    emit(
        progress,
        event="removed",
        accuracy_masked=accuracy_masked,
        accuracy_removed=accuracy_removed,
    )
    final, stds = removed, None
    if then_stds:
        stds = _stds_stage(
            removed,
            dataset,
            train_config,
            budget,
            stds_epochs,
            finetune_epochs,
            finetune_lr_scale,
            progress,
        )
        final = stds.model
        history += [{**row, "method": "stds"} for row in stds.history]
    after = _snapshot(final, dataset, train_config, profile, sharing)
    emit(progress, event="prune_end", accuracy=after.accuracy, synapses=after.synapses)
    return StructuredPruneResult(
        model=final,
        method="sca+stds" if then_stds else "sca",
        scheduler=stds.scheduler if stds is not None else None,
        budget=budget,
        history=tuple(history),
        accuracy=after.accuracy,
        synapses=after.synapses,
        per_layer=_layer_rows(before, after, sharing),
        seconds=time.perf_counter() - started,
        projected_counts=dict(projected),
        accuracy_dense=before.accuracy,
        accuracy_masked=accuracy_masked,
        accuracy_removed=accuracy_removed,
        neurons=after.neurons,
        neurons_before=before.neurons,
        synapses_before=before.synapses,
        cores=after.cores,
        cores_before=before.cores,
        fits=after.fits,
        widths=_widths(pruner),
        neuron_budget=neuron_budget,
        stds=stds,
    )


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """Counts of one model: summary, accuracy, and the fit report (or None)."""

    summary: Any
    accuracy: float
    fit: Any
    sharing: bool

    @property
    def synapses(self) -> int:
        return int(self.summary.synapses(self.sharing))

    @property
    def neurons(self) -> int:
        return int(self.summary.neurons)

    @property
    def cores(self) -> int | None:
        return None if self.fit is None else int(self.fit.cores_used)

    @property
    def fits(self) -> bool | None:
        return None if self.fit is None else bool(self.fit.fits)

    def layer_cores(self, name: str) -> int | None:
        if self.fit is None:
            return None
        return len(set(self.fit.core_map.get(name, [])))


def _snapshot(model, dataset, config: TrainConfig, profile, sharing: bool) -> _Snapshot:

    input_shape = tuple(dataset.input_shape)
    summary = summarize_model(model, input_shape, config.timesteps)
    fit = check_fit(summary, profile) if profile is not None else None
    return _Snapshot(summary, _accuracy(model, dataset, config), fit, sharing)


def _layer_rows(before: _Snapshot, after: _Snapshot, sharing: bool) -> tuple[dict, ...]:
    """Per layer: PruneResult's keys plus channels/neurons/synapses/cores before and after."""
    rows = []
    for old in before.summary.layers:
        new = after.summary.layer(old.name)
        synapses, dense = new.synapses(sharing), new.dense_positions(sharing)
        rows.append(
            {
                "layer": old.name,
                "synapses": int(synapses),
                "dense": int(dense),
                "sparsity": 1.0 - synapses / dense if dense else 0.0,
                "max_fan_in": int(new.max_fan_in),
                "mean_fan_in": float(new.mean_fan_in),
                "channels_before": int(old.out_shape[0]),
                "channels_after": int(new.out_shape[0]),
                "neurons_before": old.neurons,
                "neurons_after": new.neurons,
                "synapses_before": int(old.synapses(sharing)),
                "synapses_after": int(synapses),
                "cores_before": before.layer_cores(old.name),
                "cores_after": after.layer_cores(old.name),
            }
        )
    return tuple(rows)


def _widths(pruner: SCA) -> dict[str, tuple[int, int]]:
    return {s: (pruner.graph.width(s), int(k.sum())) for s, k in pruner.keep.items()}


def _split_epochs(epochs: int, then_stds: bool, fraction: float) -> tuple[int, int]:
    """``(sca epochs, stds epochs)``: all to SCA, or ``ceil(fraction * E)`` and the rest.

    Without STDS, 0 epochs skips SCA training (the structure then follows filter magnitudes);
    with STDS each stage gets at least one epoch.
    """
    if not then_stds:
        return max(0, int(epochs)), 0
    epochs = max(1, int(epochs))
    if not 0.0 < float(fraction) < 1.0:
        _option_error("structure_fraction", fraction, "Use a fraction in (0, 1).")
    sca_epochs = min(max(1, math.ceil(fraction * epochs)), max(1, epochs - 1))
    return sca_epochs, max(1, epochs - sca_epochs)


def _structure_target(budget: Budget, then_stds: bool, slack: float) -> int:
    if not then_stds:
        return budget.synapses
    if isinstance(slack, bool) or not isinstance(slack, (int, float)) or slack < 1.0:
        _option_error(
            "structure_slack",
            slack,
            "Use a factor >= 1 (synapses the structure keeps before STDS, in units of B).",
        )
    return max(1, math.ceil(float(slack) * budget.synapses))


def _finetune_config(config: TrainConfig, epochs: int, lr_scale: float) -> TrainConfig:
    return config.replace(epochs=max(1, int(epochs)), lr=config.lr * lr_scale)


def _stage(model, dataset, config, pruner, stage: str, epochs: int, progress) -> list[dict]:
    if int(epochs) <= 0:
        return []
    result = train(model, dataset, config, callbacks=[pruner], progress=_tagged(progress, stage))
    return [{"stage": stage, "method": "sca", **row} for row in result.history]


def _stds_stage(model, dataset, config, budget, epochs, finetune_epochs, lr_scale, progress):
    """STDS on the narrow model to exactly ``B`` (minimums recomputed for the new widths)."""
    input_shape = tuple(dataset.input_shape)
    summary = summarize_model(model, input_shape, config.timesteps)
    sharing = budget.conv_weight_sharing
    narrow = replace(
        budget,
        per_layer_min=per_layer_minimums(summary, conv_weight_sharing=sharing),
        dense_synapses=summary.dense_positions(sharing),
    )
    return prune_to_budget(
        model,
        dataset,
        config,
        method="stds",
        budget=narrow,
        epochs=epochs,
        finetune_epochs=finetune_epochs,
        finetune_lr_scale=lr_scale,
        progress=_tagged(progress, "stds"),
    )


def _accuracy(model, dataset, config: TrainConfig) -> float:
    return float(
        evaluate(
            model,
            dataset.x_test,
            dataset.y_test,
            config.timesteps,
            config.encoding,
            seed=config.seed,
        )
    )


def _tagged(progress: Progress | None, stage: str) -> Progress | None:
    if progress is None:
        return None
    return lambda event: progress(event.tagged(stage, keep=True))
