"""Library entry point: :func:`quantize_model` (``neuroprune quantize RUN`` is
:func:`neuroprune.pipeline.quantize_run`, which owns the run files through ``RunDir``).

Steps of :func:`quantize_model`:

1. accuracy of the pruned float model (``accuracy_float``);
2. post-training quantization (BN folded, every layer snapped to the chip grid, thresholds,
   decays and biases in the chip's precision) -> ``accuracy_ptq``;
3. ``finetune_epochs`` of quantization-aware fine-tuning on the frozen grids with the pruning
   mask kept (:mod:`neuroprune.quantize.qat`) -> ``accuracy_qat``; the final integers are the
   fine-tuned latent weights snapped to the same grids.

Accuracies are test accuracies (0..1) with the training config's timesteps and encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from neuroprune.models.train import TrainConfig, evaluate, train
from neuroprune.profiles import ChipProfile
from neuroprune.quantize.model import QuantizedLayer, layer_row, ptq_model, requantize_layer
from neuroprune.quantize.qat import QuantAwareCallback

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, eq=False)
class QuantizeResult:
    """Outcome of :func:`quantize_model`.

    Attributes:
        model: the quantized model (a new object, docs/conventions.md §3).
        layers: one row per layer: ``layer``, ``format``, ``weight_scale``, ``weight_exp``,
            ``bits``, ``int_bits``, ``threshold_int``, ``decay_v``, ``clipped_fraction``,
            ``max_abs_error``/``mean_abs_error`` (weight units, final weights vs the float
            weights they were snapped from), ``nonzero_before``/``nonzero_after``, ``notes``,
            and the post-training figures under ``ptq``.
        accuracy_float / accuracy_ptq / accuracy_qat: test accuracy (0..1) of the pruned float
            model, after post-training quantization, after fine-tuning (= PTQ when no epochs).
        format: the weight format name.
        notes: every layer note once, prefixed with the layers it applies to.
        chip: profile id.
        history: per-epoch metrics of the fine-tuning.
    """

    model: torch.nn.Module
    layers: list[dict[str, Any]]
    accuracy_float: float
    accuracy_ptq: float
    accuracy_qat: float
    format: str
    notes: tuple[str, ...] = ()
    chip: str = ""
    history: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Everything but the model, JSON-serialisable."""
        return {
            "chip": self.chip,
            "format": self.format,
            "accuracy_float": self.accuracy_float,
            "accuracy_ptq": self.accuracy_ptq,
            "accuracy_qat": self.accuracy_qat,
            "layers": [dict(row) for row in self.layers],
            "notes": list(self.notes),
            "history": [dict(row) for row in self.history],
        }


def quantize_model(
    model: torch.nn.Module,
    profile: ChipProfile,
    dataset: Any,
    train_config: TrainConfig,
    *,
    finetune_epochs: int,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Quantize a pruned model to ``profile``'s formats and fine-tune it (module docstring).

    ``model`` is left unchanged. ``dataset`` is a :class:`neuroprune.data.Dataset`;
    ``train_config`` gives optimizer, batch size, timesteps, encoding and seed (its ``epochs``
    is replaced by ``finetune_epochs``; 0 skips fine-tuning).
    """
    acc_float = _accuracy(model, dataset, train_config)
    qmodel, layers = ptq_model(model, profile, dataset.input_shape, progress=progress)
    acc_ptq = _accuracy(qmodel, dataset, train_config)
    _emit(progress, event="ptq", accuracy=acc_ptq, accuracy_float=acc_float)
    ptq_rows = [layer_row(layer.block, layer.quant) for layer in layers]
    history: tuple[dict[str, Any], ...] = ()
    if finetune_epochs > 0:
        layers, history = _finetune(qmodel, layers, profile, dataset, train_config,
                                    finetune_epochs, progress)  # fmt: skip
    acc_qat = _accuracy(qmodel, dataset, train_config) if finetune_epochs > 0 else acc_ptq
    rows = [_final_row(layer, ptq) for layer, ptq in zip(layers, ptq_rows, strict=True)]
    return QuantizeResult(
        model=qmodel.cpu().eval(),
        layers=rows,
        accuracy_float=acc_float,
        accuracy_ptq=acc_ptq,
        accuracy_qat=acc_qat,
        format=profile.weights.format,
        notes=merged_notes(rows),
        chip=profile.id,
        history=history,
    )


def _finetune(qmodel, layers, profile, dataset, config, epochs, progress):
    """Quantization-aware fine-tuning, then re-snap the latent weights onto the frozen grids."""
    callback = QuantAwareCallback(layers, profile)
    result = train(qmodel, dataset, config.replace(epochs=epochs), callbacks=(callback,),
                   progress=progress)  # fmt: skip
    final: list[QuantizedLayer] = []
    for layer in layers:
        syn = layer.block.synapse
        weight, grid = callback.state_of(syn.weight)
        bias = None if syn.bias is None else callback.state_of(syn.bias)[0]
        final.append(requantize_layer(layer, profile, weight, bias, grid))
    return final, tuple(dict(row) for row in result.history)


def _final_row(layer: QuantizedLayer, ptq_row: dict[str, Any]) -> dict[str, Any]:
    row = layer_row(layer.block, layer.quant)
    row["ptq"] = {k: ptq_row[k] for k in ("clipped_fraction", "max_abs_error",
                                          "mean_abs_error", "nonzero_after")}  # fmt: skip
    return row


def _accuracy(model: torch.nn.Module, dataset: Any, config: TrainConfig) -> float:
    return evaluate(model, dataset.x_test, dataset.y_test, config.timesteps, config.encoding,
                    seed=config.seed)  # fmt: skip


def _emit(progress: Progress | None, **event: Any) -> None:
    if progress is not None:
        progress(event)


def merged_notes(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """Each distinct note once, prefixed with the layers that carry it."""
    owners: dict[str, list[str]] = {}
    for row in rows:
        for note in row["notes"]:
            owners.setdefault(note, []).append(row["layer"])
    every = len(rows)
    return tuple(
        note if len(names) == every else f"{', '.join(names)}: {note}"
        for note, names in owners.items()
    )
