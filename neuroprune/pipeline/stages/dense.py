"""Stage "dense": train the dense network (or reuse dense.pt / resume dense.ckpt) and record
its accuracy and size (report.json ``dense``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from neuroprune.pipeline.context import _epoch_progress, _Run, _stage_record, train_config
from neuroprune.pipeline.resume import input_hash, stage_inputs
from neuroprune.pipeline.stages.base import Carry, Stage, measure
from neuroprune.run.rundir import CHECKPOINT, StageRecord
from neuroprune.train import distributed


def run_dense(run: _Run, carry: Carry) -> Carry:
    """Dense training; report.json ``dense`` (:class:`StageRecord`)."""
    inputs = stage_inputs(run.cfg, run.profile, "dense")
    model = _dense_model(run, carry, inputs)
    accuracy, summary = measure(run, model, carry.dataset)
    shared = run.profile.conv_weight_sharing
    run.record.dense = StageRecord(**_stage_record(summary, shared, accuracy))
    run.emit("dense", f"test accuracy {100 * run.record.dense.accuracy:.2f} %")
    return replace(carry, model=model)


def _dense_model(run: _Run, carry: Carry, inputs: dict[str, Any]):
    """The trained dense model: reused, imported as is (``--from`` without
    ``--train-dense``), or trained here."""
    cfg = run.cfg
    done = run.reusable("dense", inputs)
    if done:
        model, meta = done
        run.history["dense"] = meta.get("history", [])
        run.mark("dense.pt")
        run.note_stage("dense", inputs, reused=True)
        run.emit("dense", "reused dense.pt (--resume)")
        return model
    if cfg.from_nir and not cfg.train_dense:
        run.history["dense"] = []
        run.save_model("dense", carry.model, inputs, history=[])
        run.emit("dense", f"imported {cfg.from_nir} with its weights (no dense training)")
        return carry.model
    return _train_dense(run, carry, inputs)


def _train_dense(run: _Run, carry: Carry, inputs: dict[str, Any]):
    from neuroprune.train.checkpoint import (
        CheckpointCallback,  # deferred: imports spikingjelly, torch
    )
    from neuroprune.train.loop import train  # deferred: imports spikingjelly, torch

    cfg, model = run.cfg, carry.model
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
        carry.dataset,
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


def _always(_: Any) -> bool:
    return True


DENSE = Stage("dense", "dense", run_dense, on_workers=_always)
