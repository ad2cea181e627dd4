"""Stage "prune": prune to the synapse budget and fine-tune (or reuse pruned.pt); report.json
``pruned``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from neuroprune.pipeline.context import (
    _epoch_progress,
    _Run,
    _stage_record,
    train_config,
)
from neuroprune.pipeline.resume import stage_inputs
from neuroprune.pipeline.stages.base import Carry, Stage, measure
from neuroprune.pruning.registry import method_entry
from neuroprune.run.rundir import StageRecord


def run_prune(run: _Run, carry: Carry) -> Carry:
    """Pruning (+ fine-tuning); report.json ``pruned`` (:class:`StageRecord` with ``method``,
    ``scheduler`` and per-layer rows). When the budget does not bind (``B`` holds every dense
    synapse) nothing is pruned: :func:`skip_pruning` (unless a derived run takes pruned.pt as
    it is)."""
    cfg = run.cfg
    if not carry.budget.binds and "pruned" not in run.derived:
        return skip_pruning(run, carry)
    model = _pruned_model(run, carry)
    accuracy, summary = measure(run, model, carry.dataset)
    shared = run.profile.conv_weight_sharing
    run.record.pruned = StageRecord(
        **_stage_record(summary, shared, accuracy), method=cfg.method, scheduler=cfg.scheduler
    )
    run.emit(
        "prune", f"{summary.synapses(shared):,} synapses kept, test accuracy {100 * accuracy:.2f} %"
    )
    return replace(carry, model=model)


def skip_pruning(run: _Run, carry: Carry) -> Carry:
    """Nothing to prune: the pruned model is the dense model, no pruning or fine-tuning epoch
    runs. pruned.pt is still written (the dense weights; later stages and ``--resume`` read
    it), and report.json ``pruned`` repeats the dense figures with ``skipped`` saying why."""
    cfg, budget = run.cfg, carry.budget
    reason = (
        f"nothing to prune: the budget ({budget.synapses:,} synapses, {budget.source}) holds "
        f"all {budget.dense_synapses:,} synapses of the dense network"
    )
    inputs = stage_inputs(cfg, run.profile, "pruned", carry.budget)
    history: dict[str, list] = {"prune": [], "finetune": []}
    run.history.update(history)
    run.save_model(
        "pruned", carry.model, inputs, history=history, method=cfg.method, skipped=reason
    )
    dense = run.record.dense.model_dump() if run.record.dense is not None else {}
    run.record.pruned = StageRecord(
        **{**dense, "method": cfg.method, "scheduler": cfg.scheduler, "skipped": reason}
    )
    run.emit("prune", f"skipped, {reason}; the pruned model is the dense model")
    return carry


def _pruned_model(run: _Run, carry: Carry):
    cfg = run.cfg
    inputs = stage_inputs(cfg, run.profile, "pruned", carry.budget)
    done = run.reusable("pruned", inputs)
    if done:
        model, meta = done
        run.history.update(meta.get("history", {}))
        run.mark("pruned.pt")
        run.note_stage("pruned", inputs, reused=True)
        run.emit("prune", "reused pruned.pt (--resume)")
        return model
    run.emit(
        "prune",
        f"{cfg.method} to {carry.budget.synapses:,} synapses, {cfg.prune_epochs} "
        f"epochs + {cfg.finetune_epochs} fine-tuning epochs",
    )
    result = _prune(run, carry.model, carry.dataset, carry.budget)
    history = _split_history(result.history)
    run.history.update(history)
    run.save_model("pruned", result.model, inputs, history=history, method=cfg.method)
    return result.model


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


def _always(_: Any) -> bool:
    return True


PRUNE = Stage("prune", "pruned", run_prune, on_workers=_always)
