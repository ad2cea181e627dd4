"""Stage "export": the final model as model.nir and model.onnx; report.json ``artifacts``."""

from __future__ import annotations

from pathlib import Path

from neuroprune.pipeline.context import _Run
from neuroprune.pipeline.stages.base import Carry, Stage
from neuroprune.run.rundir import ArtifactsRecord


def run_export(run: _Run, carry: Carry) -> Carry:
    """Write model.nir and model.onnx (:func:`export_model`); report.json ``artifacts``
    (:class:`ArtifactsRecord`)."""
    cfg = run.cfg
    written = {
        fmt: export_model(
            carry.model,
            fmt,
            run.rundir.model_file(fmt),
            timesteps=cfg.timesteps,
            encoding=cfg.encoding,
            input_shape=carry.dataset.input_shape,
            chip=run.profile.id,
            dt=cfg.nir_dt,
        )
        for fmt in ("nir", "onnx")
    }
    nir_path, onnx_path = written["nir"], written["onnx"]
    run.mark(nir_path.name)
    run.mark(onnx_path.name)
    deployable = _deployable(run, carry)
    run.record.artifacts = ArtifactsRecord(nir=nir_path.name, onnx=onnx_path.name, **deployable)
    extra = "".join(f", {name}" for name in deployable.values())
    run.emit("export", f"wrote {nir_path.name}, {onnx_path.name}{extra}")
    return carry


def _deployable(run: _Run, carry: Carry) -> dict[str, str]:
    """The vendor artifact of the run's chip (Loihi: model.netx; SpiNNaker: model_pynn.py
    and .npz), when the chip has one and the graph fits it; a graph the format cannot express
    (pooling, residual sums, analog input for PyNN) is said as a note, not a failure."""
    from neuroprune.core.errors import UnsupportedError
    from neuroprune.pipeline.deploy import deploy_format_for

    fmt = deploy_format_for(run.profile.neuron.arithmetic)
    if fmt is None:
        return {}
    cfg = run.cfg
    target = run.rundir.deploy_file(fmt)
    try:
        path = export_model(
            carry.model,
            fmt,
            target,
            timesteps=cfg.timesteps,
            encoding=cfg.encoding,
            input_shape=carry.dataset.input_shape,
            chip=run.profile.id,
            dt=cfg.nir_dt,
        )
    except UnsupportedError as exc:
        run.emit("export", f"no {fmt} artifact: {exc.one_line()}")
        return {}
    run.mark(path.name)
    if fmt == "pynn":
        run.mark(path.with_suffix(".npz").name)
    return {fmt: path.name}


def export_model(
    model,
    fmt: str,
    target: Path,
    *,
    timesteps: int,
    encoding: str,
    input_shape,
    chip: str,
    dt: float | None,
) -> Path:
    """Write ``model`` as NIR (``fmt == "nir"``, ``dt`` seconds per step, default 2**-10), as
    NIR for Rockpool's importer (``"rockpool-nir"``, a Xylo run), ONNX, or a deployment format
    (``netx``, ``pynn``: :mod:`neuroprune.pipeline.deploy`) to ``target``; the fit run and
    ``neuroprune export RUN`` both go through here."""
    from neuroprune.export import export_onnx  # deferred: imports scipy, spikingjelly, torch
    from neuroprune.export.formats import get_exporter

    if fmt == "onnx":  # unrolled over T steps: no encoding, chip or dt in the file
        return export_onnx(model, target, timesteps=timesteps, input_shape=input_shape)
    return get_exporter(fmt)(  # every other format takes the NIR exporter's arguments
        model,
        target,
        timesteps=timesteps,
        encoding=encoding,
        input_shape=input_shape,
        chip=chip,
        dt=dt,
    )


EXPORT = Stage("export", "artifacts", run_export)
