"""Stage "quantize": quantize for the chip's weight format and fine-tune (or reuse
quantized.pt); report.json ``quantized``. ``neuroprune quantize RUN`` runs the same
:func:`quantize_pruned` on a saved run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from neuroprune import quantize  # a lazy face: torch loads on first use
from neuroprune.core.progress import Progress
from neuroprune.pipeline.context import _epoch_progress, _layer_rows, _Run, train_config
from neuroprune.pipeline.resume import stage_inputs
from neuroprune.pipeline.stages.base import Carry, Stage, measure
from neuroprune.reports.units import format_words
from neuroprune.run.rundir import QuantizedRecord


def run_quantize(run: _Run, carry: Carry) -> Carry:
    """Quantization (+ QAT fine-tuning); report.json ``quantized`` (:class:`QuantizedRecord`)."""
    qmodel, record = _quantized_model(run, carry)
    run.history["quantize"] = list(record.pop("history", []))
    accuracy, summary = measure(run, qmodel, carry.dataset)
    run.record.quantized = QuantizedRecord(
        **{
            **record,
            "accuracy": accuracy,
            "neurons": summary.neurons,
            "synapses": summary.synapses(run.profile.conv_weight_sharing),
            "stored_layers": _layer_rows(summary, run.profile.conv_weight_sharing),
        }
    )
    run.emit("quantize", run.record.quantized.qat.line())
    run.emit("quantize", f"test accuracy {100 * accuracy:.2f} % ({run.profile.name}'s weights)")
    return replace(carry, model=qmodel)


def _quantized_model(run: _Run, carry: Carry) -> tuple[Any, dict[str, Any]]:
    cfg = run.cfg
    inputs = stage_inputs(cfg, run.profile, "quantized", carry.budget)
    done = run.reusable("quantized", inputs)
    if done:
        qmodel, meta = done
        run.mark("quantized.pt")
        run.note_stage("quantized", inputs, reused=True)
        run.emit("quantize", "reused quantized.pt (--resume)")
        return qmodel, dict(meta.get("record", {}))
    run.emit(
        "quantize",
        f"to {run.profile.name}'s weights ({format_words(run.profile.weights.format)}, "
        f"{run.profile.weights.bits} bit{'' if run.profile.weights.bits == 1 else 's'}) "
        f"+ up to {cfg.quant_epochs} fine-tuning epochs (early stop on the validation part)",
    )
    result = quantize_pruned(
        carry.model,
        run.profile,
        carry.dataset,
        train_config(cfg, cfg.quant_epochs),
        cfg.quant_epochs,
        _epoch_progress(run, "quantize", epochs=cfg.quant_epochs),
        holdout=carry.holdout,
        skip_if_lossless=not carry.budget.binds,  # nothing binds: no fine-tuning epochs
    )
    run.emit("quantize", done=True)  # an early stop leaves no bar half drawn
    record = quant_record(result)
    run.save_model("quantized", result.model, inputs, record=record)
    return result.model, record


def quantize_pruned(
    model,
    profile,
    dataset,
    config,
    epochs: int,
    progress: Progress | None,
    holdout=None,
    skip_if_lossless: bool = False,
):
    """Quantize ``model`` for ``profile`` with up to ``epochs`` QAT fine-tuning epochs
    (:func:`neuroprune.quantize.quantize_model`); the fit run (its own validation cut,
    ``holdout``) and ``neuroprune quantize RUN`` (``holdout`` None: the same seeded cut, made
    again from the run's dataset and seed) both go through here."""
    return quantize.quantize_model(
        model,
        profile,
        dataset,
        config,
        finetune_epochs=epochs,
        holdout=holdout,
        progress=progress,
        skip_if_lossless=skip_if_lossless,
    )


def quant_record(result) -> dict[str, Any]:
    """The quantized.pt ``record`` (one shape, whichever command wrote it)."""
    return {
        "chip": result.chip,
        "format": result.format,
        "accuracy_float": result.accuracy_float,
        "accuracy_ptq": result.accuracy_ptq,
        "accuracy_qat": result.accuracy_qat,
        "arithmetic": getattr(result, "arithmetic", None),
        "qat": dict(getattr(result, "qat", {}) or {}),
        "layers": [dict(row) for row in result.layers],
        "notes": list(result.notes),
        "history": [dict(row) for row in getattr(result, "history", ())],
    }


def _is_chain(model) -> bool:
    """torchrun ranks > 0 quantize a Sequential chain too (QAT trains on every rank)."""
    from neuroprune.models.reader import CHAIN, model_kind  # deferred: imports torch

    return model_kind(model) == CHAIN


QUANTIZE = Stage("quantize", "quantized", run_quantize, on_workers=_is_chain)
