"""The training stages of a fit run: dense training, pruning, quantization."""

from __future__ import annotations

from typing import Any

from neuroprune import quantize  # a lazy face: torch loads on first use
from neuroprune.pipeline.context import (
    _epoch_progress,
    _Run,
    _stage_record,
    train_config,
)
from neuroprune.pipeline.resume import input_hash, stage_inputs
from neuroprune.pruning.registry import method_entry
from neuroprune.run.rundir import CHECKPOINT
from neuroprune.train import distributed


def _stage_dense(run: _Run, model, dataset):
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch
    from neuroprune.train.checkpoint import (
        CheckpointCallback,  # deferred: imports spikingjelly, torch
    )
    from neuroprune.train.loop import evaluate, train  # deferred: imports spikingjelly, torch

    cfg = run.cfg
    shared = run.profile.conv_weight_sharing
    inputs = stage_inputs(cfg, run.profile, "dense")
    done = run.reusable("dense", inputs)
    if done:
        model, meta = done
        run.history["dense"] = meta.get("history", [])
        run.mark("dense.pt")
        run.report["stages"]["dense"] = {"inputs_hash": input_hash(inputs), "reused": True}
        run.emit("dense", "reused dense.pt (--resume)")
    elif cfg.from_nir and not cfg.train_dense:
        run.history["dense"] = []
        run.save_model("dense", model, inputs, history=[])
        run.emit("dense", f"imported {cfg.from_nir} with its weights (no dense training)")
    else:
        ckpt_path = run.rundir.checkpoint_path
        start, opt_state, history = _dense_checkpoint(run, model, inputs)
        run.emit(
            "dense",
            f"training {cfg.model} on {cfg.dataset} for {cfg.epochs} epochs "
            f"(T={cfg.timesteps}, {cfg.encoding} encoding)",
        )
        callback = CheckpointCallback(
            ckpt_path, meta={"inputs_hash": input_hash(inputs)}, initial_history=history
        )
        result = train(
            model,
            dataset,
            train_config(cfg, cfg.epochs),
            callbacks=[callback] if run.writes else [],
            progress=_epoch_progress(run, "dense"),
            start_epoch=start,
            optimizer_state=opt_state,
        )
        run.history["dense"] = history + [dict(h) for h in result.history]
        run.save_model("dense", model, inputs, history=run.history["dense"])
        if run.writes:
            ckpt_path.unlink(missing_ok=True)
    accuracy = evaluate(model, dataset.x_test, dataset.y_test, cfg.timesteps, cfg.encoding)
    summary = summarize(model, dataset.input_shape, cfg.timesteps)
    run.report["dense"] = _stage_record(summary, shared, accuracy)
    run.emit("dense", f"test accuracy {100 * accuracy:.2f} %")
    return model


def _dense_checkpoint(run: _Run, model, inputs) -> tuple[int, Any, list]:
    """``(start_epoch, optimizer_state, history)`` from dense.ckpt when ``--resume`` may use it
    (same dense inputs); ``(0, None, [])`` otherwise."""
    from neuroprune.train.checkpoint import load_checkpoint  # deferred: imports spikingjelly, torch

    path = run.rundir.checkpoint_path
    usable = run.cfg.resume and path.is_file()
    if usable and load_checkpoint(path).meta.get("inputs_hash") != input_hash(inputs):
        run.emit("dense", "--resume: dense.ckpt was made with other options; training anew")
        usable = False
    if not distributed.from_main(bool(usable)):  # rank 0 decides for every rank
        return 0, None, []
    ckpt = load_checkpoint(path)
    ckpt.restore(model)
    run.mark(CHECKPOINT)
    run.emit("dense", f"resuming dense training after epoch {ckpt.epoch}")
    return ckpt.epoch, ckpt.optimizer_state, list(ckpt.meta.get("history", []))


def _stage_prune(run: _Run, model, dataset, budget):
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch
    from neuroprune.train.loop import evaluate  # deferred: imports spikingjelly, torch

    cfg = run.cfg
    shared = run.profile.conv_weight_sharing
    inputs = stage_inputs(cfg, run.profile, "pruned")
    done = run.reusable("pruned", inputs)
    if done:
        model, meta = done
        run.history.update(meta.get("history", {}))
        run.mark("pruned.pt")
        run.report["stages"]["pruned"] = {"inputs_hash": input_hash(inputs), "reused": True}
        run.emit("prune", "reused pruned.pt (--resume)")
    else:
        run.emit(
            "prune",
            f"{cfg.method} to {budget.synapses:,} synapses, {cfg.prune_epochs} "
            f"epochs + {cfg.finetune_epochs} fine-tuning epochs",
        )
        result = _prune(run, model, dataset, budget)
        model = result.model
        run.history.update(_split_history(result.history))
        run.save_model(
            "pruned", model, inputs, history=_split_history(result.history), method=cfg.method
        )
    accuracy = evaluate(model, dataset.x_test, dataset.y_test, cfg.timesteps, cfg.encoding)
    summary = summarize(model, dataset.input_shape, cfg.timesteps)
    run.report["pruned"] = {
        **_stage_record(summary, shared, accuracy),
        "method": cfg.method,
        "scheduler": cfg.scheduler,
    }
    run.emit(
        "prune", f"{summary.synapses(shared):,} synapses kept, test accuracy {100 * accuracy:.2f} %"
    )
    return model


def _prune(run: _Run, model, dataset, budget):
    """Unstructured methods go through ``prune_to_budget``; ``sca``/``sca+stds`` remove
    whole channels (``prune_structured``) and return a narrower model."""
    from neuroprune.pipeline.prune_loop import (
        prune_to_budget,  # deferred: imports scipy, spikingjelly, torch
    )

    cfg = run.cfg
    common = {
        "budget": budget,
        "epochs": cfg.prune_epochs,
        "finetune_epochs": cfg.finetune_epochs,
        "progress": _epoch_progress(run, "prune"),
    }
    config = train_config(cfg, cfg.prune_epochs)
    entry = method_entry(cfg.method)
    if entry.structured:  # the structured recipe: sca, or a composite ending in stds
        from neuroprune.pipeline.structured import (
            prune_structured,  # deferred: imports scipy, spikingjelly, torch
        )

        return prune_structured(
            model,
            dataset,
            config,
            then_stds=entry.then_stds,
            profile=run.profile,
            **common,
        )
    return prune_to_budget(
        model, dataset, config, method=cfg.method, scheduler=cfg.scheduler, **common
    )


def _split_history(history) -> dict[str, list]:
    """Split a pruning history into 'prune' and 'finetune' rows (by a ``phase`` key if any)."""
    out: dict[str, list] = {"prune": [], "finetune": []}
    for row in history:
        out["finetune" if row.get("phase") == "finetune" else "prune"].append(dict(row))
    return out


def _stage_quantize(run: _Run, model, dataset):
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch
    from neuroprune.train.loop import evaluate  # deferred: imports spikingjelly, torch

    cfg = run.cfg
    inputs = stage_inputs(cfg, run.profile, "quantized")
    done = run.reusable("quantized", inputs)
    if done:
        qmodel, meta = done
        record = dict(meta.get("record", {}))
        run.mark("quantized.pt")
        run.report["stages"]["quantized"] = {"inputs_hash": input_hash(inputs), "reused": True}
        run.emit("quantize", "reused quantized.pt (--resume)")
    else:
        run.emit(
            "quantize",
            f"to {run.profile.weights.format} ({run.profile.weights.bits} bits) "
            f"+ {cfg.quant_epochs} fine-tuning epochs",
        )
        result = quantize.quantize_model(
            model,
            run.profile,
            dataset,
            train_config(cfg, cfg.quant_epochs),
            finetune_epochs=cfg.quant_epochs,
            progress=_epoch_progress(run, "quantize"),
        )
        qmodel = result.model
        record = quant_record(result)
        run.save_model("quantized", qmodel, inputs, record=record)
    run.history["quantize"] = list(record.pop("history", []))
    accuracy = evaluate(qmodel, dataset.x_test, dataset.y_test, cfg.timesteps, cfg.encoding)
    summary = summarize(qmodel, dataset.input_shape, cfg.timesteps)
    run.report["quantized"] = {
        **record,
        "accuracy": accuracy,
        "neurons": summary.neurons,
        "synapses": summary.synapses(run.profile.conv_weight_sharing),
    }
    run.emit("quantize", f"test accuracy {100 * accuracy:.2f} % ({record.get('format')})")
    return qmodel


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
