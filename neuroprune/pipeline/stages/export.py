"""Stage "export": the final model as model.nir and model.onnx; report.json ``artifacts``."""

from __future__ import annotations

from neuroprune.pipeline.context import _Run
from neuroprune.pipeline.stages.base import Carry, Stage
from neuroprune.run.rundir import ArtifactsRecord


def run_export(run: _Run, carry: Carry) -> Carry:
    """Write model.nir and model.onnx (:mod:`neuroprune.export`); report.json ``artifacts``
    (:class:`ArtifactsRecord`)."""
    from neuroprune.export import (  # deferred: imports scipy, spikingjelly, torch
        export_nir,
        export_onnx,
    )

    cfg, shape = run.cfg, carry.dataset.input_shape
    nir_path = export_nir(
        carry.model,
        run.rundir.model_file("nir"),
        timesteps=cfg.timesteps,
        encoding=cfg.encoding,
        input_shape=shape,
        chip=run.profile.id,
        dt=cfg.nir_dt,
    )
    onnx_path = export_onnx(
        carry.model, run.rundir.model_file("onnx"), timesteps=cfg.timesteps, input_shape=shape
    )
    run.mark(nir_path.name)
    run.mark(onnx_path.name)
    run.record.artifacts = ArtifactsRecord(nir=nir_path.name, onnx=onnx_path.name)
    run.emit("export", f"wrote {nir_path.name} and {onnx_path.name}")
    return carry


EXPORT = Stage("export", "artifacts", run_export)
