"""Pruning the spiking detector to a fraction ``f`` of its size: ``sca`` and ``sca+stds``.

:func:`prune_detector_sca_stds` (method ``sca+stds``) ends at exactly ``B = floor(f * S)``
synapses, ``S`` the dense count of :func:`shared_synapses` (the chip convention with conv
weight sharing: nonzero kernel entries, once per ADDed source a layer reads); its docstring
gives the recipe. :func:`prune_detector_channels` (method ``sca``) runs SCA (:mod:`neuroprune.pruning.sca`) inside
:func:`neuroprune.train.detect.train_detector`. Channels joined by an ADD (a stage's stream:
its stage conv and every block's second conv, read by the next stage and by the head) are one
group (:mod:`neuroprune.pruning.channels`) and are removed together, so the skip connections
stay valid. The target is a fraction ``f`` of the dense **parameters** (nonzero conv/linear
weights): the budget uses ``conv_weight_sharing`` (a conv's synapses are its kernel entries),
``B = floor(f * dense)``, and the structure keeps ``<= B``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neuroprune.fit.budget import Budget
from neuroprune.models.detector import SpikingDetector
from neuroprune.pruning.channel_surgery import remove_channels
from neuroprune.pruning.sca import SCA
from neuroprune.train.detect import DetectTrainConfig, parameter_count, train_detector


def prune_detector_channels(
    model: SpikingDetector,
    data: Any,
    config: DetectTrainConfig,
    *,
    params_fraction: float,
    epochs: int,
    finetune_epochs: int,
    synapses: int | None = None,
) -> torch.nn.Module:
    """SCA to ``params_fraction`` of the dense parameters, fine-tuned, channels removed
    (module docstring; ``synapses``: the budget as is instead of ``floor(f * dense)``);
    returns the narrower model."""
    dense = parameter_count(model)
    budget = _params_budget(dense, params_fraction, synapses)
    pruner = SCA(budget, input_shape=data.input_shape, enforce_fan_in=False)
    pruner.attach(model)
    _train_then_finetune(model, data, config, pruner, epochs, finetune_epochs)
    masked = pruner.finalize(model, remove=False)
    assert pruner.graph is not None
    return remove_channels(masked, pruner.graph, pruner.keep)


def _params_budget(dense: int, params_fraction: float, synapses: int | None) -> Budget:
    """``B = floor(f * dense)`` (at least 1), or ``synapses`` as given, with conv sharing."""
    return Budget(
        synapses=synapses or max(1, int(params_fraction * dense)),
        source=f"--params {params_fraction}",
        conv_weight_sharing=True,
        dense_synapses=dense,
    )


def _train_then_finetune(model, data, config, pruner, epochs: int, finetune_epochs: int) -> None:
    """Train ``epochs`` with ``pruner`` attached, project onto its budget, then fine-tune
    ``finetune_epochs`` at half the learning rate with the pruner still holding the mask."""
    train_detector(model, data, _with_epochs(config, epochs), callbacks=[pruner])
    pruner.project()
    if finetune_epochs:
        finetune = DetectTrainConfig(finetune_epochs, config.lr / 2, config.batch_size, config.seed)
        train_detector(model, data, finetune, callbacks=[pruner])


def _with_epochs(config: DetectTrainConfig, epochs: int) -> DetectTrainConfig:
    return DetectTrainConfig(max(1, epochs), config.lr, config.batch_size, config.seed)


def shared_synapses(model: torch.nn.Module, input_shape) -> int:
    """Synapses in the budget's convention with conv weight sharing: nonzero kernel entries,
    counted once per ADDed source a layer reads (:func:`layer_report`)."""
    from neuroprune.pipeline.prune_loop import layer_report

    return sum(
        int(row["synapses"])
        for row in layer_report(model, tuple(input_shape), conv_weight_sharing=True)
    )


def prune_detector_sca_stds(
    model: SpikingDetector,
    data: Any,
    config: DetectTrainConfig,
    *,
    params_fraction: float,
    epochs: int,
    finetune_epochs: int,
    synapses: int | None = None,
) -> torch.nn.Module:
    """``sca+stds`` for the detector, as :func:`neuroprune.pipeline.structured.prune_structured`
    does for classifiers: SCA for ``ceil(STRUCTURE_FRACTION * epochs)`` epochs with the synapse
    limit ``STRUCTURE_SLACK * B``, channels removed (ADD groups together), then STDS inside the
    kept channels for the other epochs and ``finetune_epochs``, ending at **exactly**
    ``B = floor(f * S_dense)`` synapses (``synapses``: that ``B`` given as is, e.g. a chip's
    budget), ``S`` counted by :func:`shared_synapses`."""
    from neuroprune.pruning.registry import method_class
    from neuroprune.pruning.sca import STRUCTURE_FRACTION, STRUCTURE_SLACK

    dense = shared_synapses(model, data.input_shape)
    budget = _params_budget(dense, params_fraction, synapses)
    sca_epochs = max(1, math.ceil(STRUCTURE_FRACTION * epochs))
    stds_epochs = max(1, epochs - sca_epochs)
    target = min(dense, int(STRUCTURE_SLACK * budget.synapses))
    sca = SCA(budget, input_shape=data.input_shape, synapse_target=target, enforce_fan_in=False)
    sca.attach(model)
    train_detector(model, data, _with_epochs(config, sca_epochs), callbacks=[sca])
    sca.project()
    masked = sca.finalize(model, remove=False)
    assert sca.graph is not None
    narrow = remove_channels(masked, sca.graph, sca.keep)
    stds = method_class("stds")(
        budget, input_shape=data.input_shape, lr_schedule=lambda iteration: config.lr
    )
    stds.attach(narrow)
    _train_then_finetune(narrow, data, config, stds, stds_epochs, finetune_epochs)
    return stds.finalize(narrow)


def prune_detector_stds(
    model: SpikingDetector,
    data: Any,
    config: DetectTrainConfig,
    *,
    params_fraction: float,
    epochs: int,
    finetune_epochs: int,
    synapses: int | None = None,
) -> torch.nn.Module:
    """Unstructured ``stds`` for the detector: STDS (:mod:`neuroprune.pruning`) for ``epochs``
    and ``finetune_epochs`` with every channel kept, ending at **exactly**
    ``B = floor(f * S_dense)`` synapses (``synapses``: ``B`` as is), ``S`` counted by
    :func:`shared_synapses`; the model keeps its shape (masked weights)."""
    from neuroprune.pruning.registry import method_class

    dense = shared_synapses(model, data.input_shape)
    budget = _params_budget(dense, params_fraction, synapses)
    stds = method_class("stds")(
        budget, input_shape=data.input_shape, lr_schedule=lambda iteration: config.lr
    )
    stds.attach(model)
    _train_then_finetune(model, data, config, stds, epochs, finetune_epochs)
    return stds.finalize(model)
