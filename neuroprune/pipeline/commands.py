"""Commands on a saved run: load its report and config, export, quantize, simulate."""

from __future__ import annotations

import contextlib
from pathlib import Path

from neuroprune import sim as simulators  # a lazy face: Lava and torch load on first use
from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import (
    ArtifactError,
)
from neuroprune.core.progress import Progress
from neuroprune.data.datasets import is_event_dataset, load_dataset
from neuroprune.data.encoding import simulation_input
from neuroprune.data.events import EventOptions
from neuroprune.pipeline.config import RunConfig, config_from_saved, event_options
from neuroprune.pipeline.context import train_config, with_model_defaults
from neuroprune.pipeline.resume import input_hash, stage_inputs
from neuroprune.pipeline.stages.export import export_model
from neuroprune.pipeline.stages.quantize import quant_record, quantize_pruned
from neuroprune.pipeline.stages.simulate import bit_exact_check, fixed_by_default
from neuroprune.run.rundir import RunDir, RunRecord
from neuroprune.sim.backends import get_backend

# ------------------------------------------------------------------------------------------
# Commands on a saved run


def load_report(run_dir: Path) -> RunRecord:
    """report.json of a run, checked against :class:`RunRecord` (one-line error when it is
    absent, corrupt or off the schema)."""
    return RunDir(run_dir).load_record()


def saved_config(rundir: RunDir) -> RunConfig:
    """The resolved config a run was made with (``config.yaml``), with model defaults filled."""
    values = rundir.load_config()
    return with_model_defaults(config_from_saved(values, where=str(rundir / "config.yaml")))


def export_run(run_dir: Path, fmt: str, out: Path | None, dt: float | None = None) -> Path:
    """Export the run's final model (quantized, else pruned, else dense) to NIR or ONNX;
    ``dt`` is the NIR file's seconds per step (default 2**-10)."""
    rundir = RunDir(run_dir)
    cfg = saved_config(rundir)
    shape = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg)).input_shape
    with contextlib.ExitStack() as stack:
        if out is None:
            stack.enter_context(rundir.lock())
        model = rundir.final_model()
        return export_model(
            model,
            fmt,
            out or rundir.model_file(fmt),
            timesteps=cfg.timesteps,
            encoding=cfg.encoding,
            input_shape=shape,
            chip=Path(cfg.chip).stem,
            dt=dt,
        )


def quantize_run(
    run_dir: Path,
    chip: str | None = None,
    *,
    finetune_epochs: int | None = None,
    progress: Progress | None = None,
):
    """``neuroprune quantize RUN_DIR``: quantize the run's pruned.pt for ``chip`` (default: the
    run's profile.yaml) with the run's own dataset and training options (config.yaml), and write
    quantized.pt. ``finetune_epochs`` overrides the run's ``quant_epochs``."""

    rundir = RunDir(run_dir)
    cfg = saved_config(rundir)
    if not rundir.has_model("pruned"):
        raise ArtifactError(
            "no pruned.pt in this run directory",
            where=str(rundir.path),
            fix="Run 'neuroprune fit' first.",
        )
    profile = load_profile(chip or rundir.profile_path)
    dataset = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg))
    epochs = cfg.quant_epochs if finetune_epochs is None else int(finetune_epochs)
    with rundir.lock():
        model, _ = rundir.load_model("pruned")
        result = quantize_pruned(
            model, profile, dataset, train_config(cfg, epochs), epochs, progress
        )
        inputs = stage_inputs(cfg.replace(quant_epochs=epochs), profile, "quantized")
        rundir.save_model(
            "quantized",
            result.model,
            {"record": quant_record(result), "inputs": inputs, "inputs_hash": input_hash(inputs)},
        )
    return result


def simulate_target(
    target: Path,
    *,
    chip=None,
    backend="lava",
    samples=None,
    fixed_point=None,
    dataset=None,
    data_dir=None,
    timeout=None,
):
    """Simulate a run directory's model.nir or a .nir file on the dataset's test split. An
    unavailable backend is answered first (``BackendUnavailableError``, exit code 3)."""

    get_backend(backend).check_available()
    target = Path(target)
    reference, events = None, None
    if target.is_dir():
        rundir = RunDir(target)
        cfg = saved_config(rundir)
        chip, dataset = chip or cfg.chip, dataset or cfg.dataset
        data_dir = data_dir or cfg.data_dir
        nir_path = rundir.model_file("nir")
        reference = rundir.final_model()
        events = event_options(cfg)
    else:
        nir_path = target
    if not nir_path.is_file():
        raise ArtifactError(
            "NIR file not found",
            where=str(nir_path),
            fix="Export first: neuroprune export RUN_DIR --format nir.",
        )
    if events is None and is_event_dataset(dataset or "digits"):
        events = _graph_event_options(nir_path)
    profile = load_profile(chip) if chip else None
    data = load_dataset(dataset or "digits", data_dir, events)
    n = min(samples or len(data.x_test), len(data.x_test))
    if fixed_point is None:
        fixed_point = bool(profile and fixed_by_default(profile))
    return simulators.simulate(
        nir_path,
        x=simulation_input(data, n),
        y=data.y_test[:n],
        profile=profile,
        backend=backend,
        fixed_point=fixed_point,
        timeout=timeout,
        expected_counts=bit_exact_check(backend, fixed_point),
        reference_model=reference,
    )


def _graph_event_options(nir_path: Path):
    """Event binning for a bare ``.nir`` file: T frames, T = the graph's ``timesteps``."""

    return EventOptions(timesteps=simulators.read_deployment(nir_path).timesteps or 8)
