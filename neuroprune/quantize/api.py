"""Library entry point: :func:`quantize_model` (``neuroprune quantize RUN`` is
:func:`neuroprune.pipeline.commands.quantize_run`, which owns the run files through ``RunDir``).

Steps of :func:`quantize_model`:

1. accuracy of the pruned float model (``accuracy_float``);
2. post-training quantization (BN folded, every layer snapped to the chip grid, thresholds,
   decays and biases in the chip's precision); for a chip that declares its neuron arithmetic
   the neurons become chip-arithmetic nodes (:mod:`neuroprune.quantize.chip`), so every
   accuracy below is under the chip's integer arithmetic -> ``accuracy_ptq``;
3. up to ``finetune_epochs`` of quantization-aware fine-tuning on the frozen grids with the
   pruning mask kept (:mod:`neuroprune.quantize.qat`), trained on the training split minus its
   validation part (:class:`neuroprune.data.split.Holdout`: the fit run's own cut, handed in,
   or cut here by the same seeded rule). After every epoch the validation loss decides: the
   best epoch is remembered, and training stops after :data:`PATIENCE` epochs without
   improvement (``qat.stopped`` says which). The fine-tune is **kept only if its best
   validation loss is lower than post-training quantization's**; a tie keeps the simpler PTQ
   model (``qat.reason = "tie: kept PTQ"``), a higher loss too (``qat.decision =
   "reverted"``). The test split is only reported, never used to decide.

The validation loss is :func:`spike_count_nll`, the cross-entropy of the output spike counts
read as logits (the training loss, ``neuroprune.train.loop.spike_loss``). It replaced the
validation accuracy as the criterion (issue 23): on the 144 samples of the digits' validation
part one sample is 0.7 points, so equal accuracies were common and a one-sample difference
decided; the loss sees every sample's margin. The accuracies are still recorded beside it.

Accuracies are test accuracies (0..1) with the training config's timesteps and encoding;
``qat`` holds the validation accuracies and losses that took the decisions.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuroprune.chip.schema import ChipProfile
from neuroprune.core.progress import Progress, emit
from neuroprune.data.split import Holdout, hold_out
from neuroprune.quantize.chip import sync_chip_nodes, use_chip_arithmetic
from neuroprune.quantize.mapping import choose_mappings
from neuroprune.quantize.model import QuantizedLayer, layer_row, ptq_model, requantize_layer
from neuroprune.quantize.qat import QuantAwareCallback
from neuroprune.train.loop import TrainConfig, evaluate, predict, train

PATIENCE = 1  # epochs without a lower validation loss before fine-tuning stops


@dataclass(frozen=True)
class ValidationScore:
    """A model on the validation part: ``accuracy`` (0..1) and ``loss``
    (:func:`spike_count_nll`, nats per sample). A lower loss is better."""

    accuracy: float
    loss: float


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
            model, after post-training quantization, after fine-tuning (its best validation
            epoch; = PTQ when no epochs). Reported only.
        format: the weight format name.
        notes: every layer note once, prefixed with the layers it applies to.
        chip: profile id.
        history: per-epoch metrics of the fine-tuning (with ``val_accuracy``).
        arithmetic: the chip neuron arithmetic the model runs, or ``None`` (float neurons).
        qat: the decision: ``decision`` ("kept", "reverted" or "not run"), ``reason`` (one
            line, "tie: kept PTQ" on a tie), ``val_ptq``, ``val_qat`` (validation accuracies,
            0..1), ``val_loss_float``, ``val_loss_ptq``, ``val_loss_qat`` (validation losses,
            :func:`spike_count_nll`, the criterion), ``val_samples``, ``val_digest`` (the cut's
            :attr:`~neuroprune.data.split.Holdout.digest`), ``epochs_asked``, ``epochs_run``, ``best_epoch``,
            ``stopped`` (why fine-tuning stopped).
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
    arithmetic: str | None = None
    qat: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Everything but the model, JSON-serialisable."""
        return {
            "chip": self.chip,
            "format": self.format,
            "arithmetic": self.arithmetic,
            "accuracy_float": self.accuracy_float,
            "accuracy_ptq": self.accuracy_ptq,
            "accuracy_qat": self.accuracy_qat,
            "qat": dict(self.qat),
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
    holdout: Holdout | None = None,
    progress: Progress | None = None,
    skip_if_lossless: bool = False,
) -> QuantizeResult:
    """Quantize a pruned model to ``profile``'s formats and fine-tune it (module docstring).

    ``model`` is left unchanged. ``dataset`` is a :class:`neuroprune.data.dataset.Dataset`;
    ``train_config`` gives optimizer, batch size, timesteps, encoding and seed (its ``epochs``
    is replaced by ``finetune_epochs``; 0 skips fine-tuning). ``holdout``: the run's validation
    cut (fine-tuning trains on ``holdout.train``, decisions read ``holdout``'s validation rows);
    None cuts it here from ``dataset`` with ``train_config.seed``
    (:func:`neuroprune.data.split.hold_out`, the cut a fit run with that seed made).
    ``skip_if_lossless``: skip the fine-tuning epochs when post-training quantization lost
    nothing on validation (:func:`ptq_lost_nothing`); ``fit`` asks for it only when nothing
    binds (the model is the dense model, no pruning or fine-tuning ran), so a pruned model
    always gets its fine-tune, kept only if it beats PTQ on validation.
    """
    holdout = holdout if holdout is not None else hold_out(dataset, seed=train_config.seed)
    acc_float = _accuracy(model, dataset, train_config)
    analog = holdout.train.x_train if train_config.encoding == "direct" else None
    x_val, y_val = holdout.x_val, holdout.y_val
    float_score = validation_score(model, x_val, y_val, train_config)
    val_float = float_score.accuracy

    def build(options: Mapping[str, int]):
        qmodel, layers = ptq_model(model, profile, dataset.input_shape, options=options)
        return (qmodel, *use_chip_arithmetic(qmodel, layers, profile, analog_images=analog))

    def validation(candidate) -> float:
        return _score(candidate[0], x_val, y_val, train_config)

    default = qmodel, layers, arithmetic, chip_notes = build({})
    if len(y_val) and any(len(layer.options) > 1 for layer in layers):
        options, mappings = choose_mappings(layers, build, validation, default)
        if options:
            qmodel, layers, arithmetic, chip_notes = build(options)
        chip_notes = chip_notes + [choice.note() for choice in mappings]
    for layer in layers:
        emit(progress, event="quantize_layer", **layer_row(layer.block, layer.quant))
    ptq_score = validation_score(qmodel, x_val, y_val, train_config)
    val_ptq = ptq_score.accuracy
    acc_ptq = _accuracy(qmodel, dataset, train_config)
    emit(progress, event="ptq", accuracy=acc_ptq, accuracy_float=acc_float, val_accuracy=val_ptq)
    ptq_rows = [layer_row(layer.block, layer.quant) for layer in layers]
    qat = {
        "decision": "not run",
        "reason": "no fine-tuning epochs asked: kept PTQ",
        "val_float": val_float,
        "val_ptq": val_ptq,
        "val_qat": None,
        "val_loss_float": float_score.loss,
        "val_loss_ptq": ptq_score.loss,
        "val_loss_qat": None,
        "val_samples": len(y_val),
        "val_digest": holdout.digest,
        "epochs_asked": int(finetune_epochs),
        "epochs_run": 0,
        "best_epoch": 0,
        "stopped": "not run",
    }
    history: tuple[dict[str, Any], ...] = ()
    acc_qat = acc_ptq
    if finetune_epochs > 0 and skip_if_lossless and ptq_lost_nothing(val_float, val_ptq):
        qat.update(decision="skipped", reason=skip_reason(val_float, val_ptq), stopped="skipped")
    elif finetune_epochs > 0:
        saved = copy.deepcopy((qmodel, layers))
        tuned, history, best = _finetune(
            qmodel,
            layers,
            profile,
            holdout.train,
            (x_val, y_val),
            train_config,
            finetune_epochs,
            progress,
        )
        acc_qat = _accuracy(qmodel, dataset, train_config)
        keep, reason = qat_decision(ptq_score, best["score"])
        qat.update(
            decision="kept" if keep else "reverted",
            reason=reason,
            val_qat=best["score"].accuracy,
            val_loss_qat=best["score"].loss,
            epochs_run=len(history),
            best_epoch=best["epoch"],
            stopped=stop_reason(len(history), finetune_epochs, best["epoch"]),
        )
        qmodel, layers = (qmodel, tuned) if keep else saved
    rows = [_final_row(layer, ptq) for layer, ptq in zip(layers, ptq_rows, strict=True)]
    return QuantizeResult(
        model=qmodel.cpu().eval(),
        layers=rows,
        accuracy_float=acc_float,
        accuracy_ptq=acc_ptq,
        accuracy_qat=acc_qat,
        format=profile.weights.format,
        notes=merged_notes(rows) + tuple(chip_notes),
        chip=profile.id,
        history=history,
        arithmetic=arithmetic,
        qat=qat,
    )


def ptq_lost_nothing(val_float: float, val_ptq: float) -> bool:
    """True when post-training quantization lost nothing on the validation part: its
    accuracy there is at least the float model's, ``val_ptq >= val_float``. Where nothing
    binds (``skip_if_lossless``) fine-tuning is then skipped: there is no quantization loss to
    recover and the dense model was already trained to its end (a decision that reads
    validation only). A pruned model keeps its fine-tune: there it also continues the
    pruned model's short fine-tuning and often gains (e.g. SpiNNaker at --sparsity 0.9 on
    digits: 93.06 % PTQ, 94.17 % kept QAT)."""
    return val_ptq >= val_float


def skip_reason(val_float: float, val_ptq: float) -> str:
    """The one-line reason of a skipped fine-tune (:func:`ptq_lost_nothing`)."""
    return (
        "skipped: post-training quantization lost nothing on validation "
        f"({_pct(val_ptq)} >= {_pct(val_float)} of the float model): kept PTQ"
    )


def qat_decision(ptq: ValidationScore, qat: ValidationScore) -> tuple[bool, str]:
    """``(keep the fine-tune, one-line reason)``: kept only when its best validation loss is
    strictly lower than post-training quantization's; a tie keeps the simpler PTQ model. The
    reason gives both losses and both accuracies."""
    scores = (
        f"validation loss {qat.loss:.4f} vs {ptq.loss:.4f}, "
        f"accuracy {_pct(qat.accuracy)} vs {_pct(ptq.accuracy)}"
    )
    if qat.loss < ptq.loss:
        return True, f"better on validation: kept QAT ({scores})"
    if qat.loss == ptq.loss:
        return False, f"tie: kept PTQ ({scores})"
    return False, f"worse on validation: kept PTQ ({scores})"


def spike_count_nll(counts: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats) of the output spike counts ``[N, K]`` read as logits against
    ``labels [N]``: ``mean_n(logsumexp(counts_n) - counts_n[y_n])``, the training loss
    (``spike_loss``, ``ce``: the counts are ``T`` times the rates). Rows whose label is not a
    class index (``0 <= y < K``) are left out; none left: 0.0."""
    counts = np.asarray(counts, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if counts.ndim != 2 or not len(labels):
        return 0.0
    valid = (labels >= 0) & (labels < counts.shape[1])
    if not valid.any():
        return 0.0
    rows, y = counts[valid], labels[valid]
    top = rows.max(axis=1)
    logsumexp = top + np.log(np.exp(rows - top[:, None]).sum(axis=1))
    return float(np.mean(logsumexp - rows[np.arange(len(y)), y]))


def validation_score(model, x, y, config: TrainConfig) -> ValidationScore:
    """Accuracy and :func:`spike_count_nll` of ``model`` on ``(x, y)`` (one prediction pass)."""
    labels = y.cpu().numpy() if torch.is_tensor(y) else np.asarray(y)
    if not len(labels):
        return ValidationScore(accuracy=0.0, loss=0.0)
    predictions, counts = predict(model, x, config.timesteps, config.encoding, seed=config.seed)
    accuracy = float(np.mean(predictions == labels))
    return ValidationScore(accuracy=accuracy, loss=spike_count_nll(counts, labels))


def stop_reason(epochs_run: int, epochs_asked: int, best_epoch: int) -> str:
    """Why fine-tuning stopped: every asked epoch ran, or early stop after :data:`PATIENCE`
    epochs without a better validation accuracy than epoch ``best_epoch``."""
    if epochs_run >= epochs_asked:
        return f"all {epochs_asked} epochs ran"
    return (
        f"early stop after epoch {epochs_run} of {epochs_asked}: no lower validation "
        f"loss for {PATIENCE} epoch(s) after epoch {best_epoch}"
    )


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _finetune(qmodel, layers, profile, fit_part, val, config, epochs, progress):
    """Fine-tune epoch by epoch; keep the latent weights of the epoch with the lowest
    validation loss and stop after :data:`PATIENCE` epochs without a lower one; re-snap the
    best onto the grids.

    Returns ``(layers, history, {"score": its ValidationScore, "epoch": its epoch})``.
    """
    callback = QuantAwareCallback(layers, profile)
    best: dict[str, Any] = {"score": None, "epoch": 0, "state": None}
    history, optimizer_state = [], None
    for epoch in range(epochs):
        result = train(
            qmodel,
            fit_part,
            config.replace(epochs=epoch + 1),
            callbacks=(callback,),
            progress=progress,
            start_epoch=epoch,
            optimizer_state=optimizer_state,
        )
        optimizer_state = result.optimizer_state
        score = validation_score(qmodel, val[0], val[1], config)
        history.append(
            {**result.history[-1], "val_accuracy": score.accuracy, "val_loss": score.loss}
        )
        emit(
            progress,
            event="qat_validation",
            epoch=epoch + 1,
            val_accuracy=score.accuracy,
            val_loss=score.loss,
        )
        if best["score"] is None or score.loss < best["score"].loss:
            best = {"score": score, "epoch": epoch + 1, "state": callback.snapshot()}
        elif epoch + 1 - best["epoch"] >= PATIENCE:
            break
    final = [_requantize(layer, profile, best["state"]) for layer in layers]
    sync_chip_nodes(final)
    return final, tuple(history), {"score": best["score"], "epoch": best["epoch"]}


def _requantize(layer: QuantizedLayer, profile: ChipProfile, state) -> QuantizedLayer:
    syn = layer.block.synapse
    weight, grid = state[id(syn.weight)]
    bias = None if syn.bias is None else state[id(syn.bias)][0]
    return requantize_layer(layer, profile, weight, bias, grid)


def _score(model, x, y, config: TrainConfig) -> float:
    """Validation accuracy (0..1)."""
    return evaluate(model, x, y, config.timesteps, config.encoding, seed=config.seed)


def _final_row(layer: QuantizedLayer, ptq_row: dict[str, Any]) -> dict[str, Any]:
    row = layer_row(layer.block, layer.quant)
    row["ptq"] = {
        k: ptq_row[k]
        for k in ("clipped_fraction", "max_abs_error", "mean_abs_error", "nonzero_after")
    }
    return row


def _accuracy(model: torch.nn.Module, dataset: Any, config: TrainConfig) -> float:
    return evaluate(
        model, dataset.x_test, dataset.y_test, config.timesteps, config.encoding, seed=config.seed
    )


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
