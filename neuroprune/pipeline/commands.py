"""Commands on a saved run: load its report and config, export, quantize, simulate.

A command never leaves a run contradicting itself: ``quantize`` for another chip writes a new
run derived from the old one (:func:`quantize_run`), ``quantize`` for the run's own chip and
``simulate`` rebuild the run beside it and replace it in one step, with every file that depends
on what changed written anew (:meth:`neuroprune.run.rundir.RunDir.build`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuroprune import sim as simulators  # a lazy face: Lava and torch load on first use
from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import (
    ArtifactError,
)
from neuroprune.core.progress import Progress
from neuroprune.data.datasets import canonical_name, is_event_dataset, load_dataset
from neuroprune.data.encoding import simulation_input
from neuroprune.data.events import EventOptions
from neuroprune.pipeline.config import RunConfig, config_from_saved, event_options
from neuroprune.pipeline.context import RunOutcome, _noop, _Run, with_model_defaults
from neuroprune.pipeline.deploy import (
    DEPLOY_FORMATS,
    DeployPlan,
    check_deploy_format,
    deploy_plan,
)
from neuroprune.pipeline.run import Derivation, run_fit
from neuroprune.pipeline.stages import Carry
from neuroprune.pipeline.stages.export import export_model
from neuroprune.pipeline.stages.fit import FIT
from neuroprune.pipeline.stages.report import REPORT
from neuroprune.pipeline.stages.simulate import SIMULATE, bit_exact_check, fixed_by_default
from neuroprune.run.record import DeploymentRecord
from neuroprune.run.rundir import MODEL_FILES, RunDir, RunRecord, run_files
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
    ``dt`` is the NIR file's seconds per step (default 2**-10). The file names the chip of the
    run's profile.yaml, the one its weights were quantized for."""
    rundir = RunDir(run_dir)
    cfg = saved_config(rundir)
    if fmt in DEPLOY_FORMATS:  # a run for another chip: refused before anything is read
        chip = _run_chip(rundir, cfg)
        arithmetic = load_profile(rundir.profile_path if rundir.profile_path.is_file() else chip)
        check_deploy_format(fmt, arithmetic.neuron.arithmetic, chip, f"export {run_dir}")
    shape = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg)).input_shape
    default = rundir.deploy_file(fmt) if fmt in DEPLOY_FORMATS else rundir.model_file(fmt)
    with contextlib.ExitStack() as stack:
        if out is None:
            stack.enter_context(rundir.lock())
        model = rundir.final_model()
        return export_model(
            model,
            fmt,
            out or default,
            timesteps=cfg.timesteps,
            encoding=cfg.encoding,
            input_shape=shape,
            chip=_run_chip(rundir, cfg),
            dt=dt,
        )


def deploy_run(run_dir: Path) -> DeployPlan:
    """``neuroprune deploy RUN``: which artifact of the run goes to which vendor tool, and
    the exact commands (:func:`neuroprune.pipeline.deploy.deploy_plan`)."""
    rundir = RunDir(run_dir)
    cfg = saved_config(rundir)
    chip = rundir.profile_path if rundir.profile_path.is_file() else _run_chip(rundir, cfg)
    return deploy_plan(Path(run_dir), load_profile(chip), files=run_files(rundir.path))


def _run_chip(rundir: RunDir, cfg: RunConfig) -> str:
    """The id of the run's chip: its profile.yaml's (the configured name for older runs)."""
    if rundir.profile_path.is_file():
        return load_profile(rundir.profile_path).id
    return Path(cfg.chip).stem


@dataclass(frozen=True)
class QuantizeOutcome:
    """What ``neuroprune quantize RUN`` did: the run it wrote (``outcome``, as ``fit`` returns
    it), the run it started from, and whether the run written is a new one (``derived``: in
    another folder) or the run itself, rebuilt."""

    outcome: RunOutcome
    source: Path
    derived: bool


def quantize_run(
    run_dir: Path,
    chip: str | None = None,
    *,
    out: Path | None = None,
    finetune_epochs: int | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> QuantizeOutcome:
    """``neuroprune quantize RUN_DIR``: quantize the run's pruned.pt for ``chip`` (default: the
    run's own profile.yaml) with the run's own dataset and training options (config.yaml);
    ``finetune_epochs`` overrides the run's ``quant_epochs``; ``command``: the command line,
    for the new run's deployment record.

    Every stage after pruning depends on the quantized model, so quantize, the fit check,
    export, simulation (with the run's backend; none if it had none) and the report all run
    again (:func:`neuroprune.pipeline.run.run_fit` with a :class:`Derivation`: dense.pt and
    pruned.pt taken as they are). For another chip, or with ``out``, that is a new run
    directory (``out``, default ``RUN-<chip>`` beside the run) and the run is not touched;
    for the run's own chip the run is rebuilt beside itself and replaced when complete."""
    source = RunDir(run_dir)
    cfg = saved_config(source)
    for stage in ("pruned", "dense"):
        if not source.has_model(stage):
            raise ArtifactError(
                f"no {MODEL_FILES[stage]} in this run directory",
                where=str(source.path),
                fix="Run 'neuroprune fit' first.",
            )
    own = load_profile(source.profile_path)
    profile = load_profile(chip) if chip else own
    target = Path(out) if out is not None else Path(run_dir)
    if out is None and profile.id != own.id:
        folder = Path(os.path.abspath(run_dir))
        target = folder.parent / f"{folder.name}-{profile.id}"
    changes: dict[str, Any] = {"out": str(target.parent), "name": target.name, "resume": False}
    if chip:
        changes["chip"] = chip
    if finetune_epochs is not None:
        changes["quant_epochs"] = int(finetune_epochs)
    derive = Derivation(source, ("dense", "pruned"), None if chip else source.profile_path)
    same_folder = RunDir(target).real_path == source.real_path
    with contextlib.ExitStack() as stack:
        if not same_folder:  # the source must not change while its models are copied
            stack.enter_context(source.lock())
        outcome = run_fit(cfg.replace(**changes), progress=progress, derive=derive, command=command)
    return QuantizeOutcome(outcome, source.path, derived=not same_folder)


@dataclass(frozen=True)
class SimulateOutcome:
    """What ``neuroprune simulate`` did: the simulation (report.json's ``simulation`` shape),
    the run it was recorded in (None for a bare file or a foreign setting), and why a run's
    simulation was not recorded (``not_recorded``)."""

    simulation: dict[str, Any]
    recorded_in: Path | None = None
    not_recorded: str | None = None


def simulate_command(
    target: Path,
    *,
    chip: str | None = None,
    backend: str = "lava",
    samples: int | None = None,
    fixed_point: bool | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    timeout: float | None = None,
    threshold: float | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> SimulateOutcome:
    """``neuroprune simulate TARGET``: a run directory simulated with its own chip and data is
    recorded in the run (:func:`simulate_run`); a bare ``.nir`` file, or a run simulated with
    another chip or dataset, is simulated without touching anything (:func:`simulate_target`).
    An unavailable backend is answered first (``BackendUnavailableError``, exit code 3)."""
    get_backend(backend).check_available()
    target = Path(target)
    foreign = _foreign_settings(target, chip, dataset, data_dir) if target.is_dir() else None
    if target.is_dir() and not foreign:
        sim = simulate_run(
            target,
            backend=backend,
            samples=samples,
            fixed_point=fixed_point,
            timeout=timeout,
            threshold=threshold,
            progress=progress,
            command=command,
        )
        return SimulateOutcome(sim, target)
    result = simulate_target(
        target,
        chip=chip,
        backend=backend,
        samples=samples,
        fixed_point=fixed_point,
        dataset=dataset,
        data_dir=data_dir,
        timeout=timeout,
    )
    return SimulateOutcome(result.as_dict(), None, foreign)


def _foreign_settings(run_dir: Path, chip, dataset, data_dir) -> str | None:
    """Why a simulation of the run with these options is not the run's own (None when it is)."""
    rundir = RunDir(run_dir)
    cfg = saved_config(rundir)
    reasons = []
    if chip and load_profile(chip).id != _run_chip(rundir, cfg):
        reasons.append(f"--chip {chip} is not the run's chip")
    if dataset and canonical_name(dataset) != canonical_name(cfg.dataset):
        reasons.append(f"--dataset {dataset} is not the run's dataset")
    if data_dir and os.path.abspath(data_dir) != os.path.abspath(cfg.data_dir or ""):
        reasons.append("--data-dir is not the run's data folder")
    return "; ".join(reasons) or None


def simulate_run(
    run_dir: Path,
    *,
    backend: str = "lava",
    samples: int | None = None,
    fixed_point: bool | None = None,
    timeout: float | None = None,
    threshold: float | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Simulate a run's model.nir as the fit's simulate stage does, and record the result in
    the run: simulation.json, report.json's ``simulation`` (an earlier one, a recorded
    simulator failure and "not run" replaced), fit.json's chip traffic, report.md, the plots
    and log.txt, all written beside the run and swapped in together. A simulator failure
    raises and leaves the run as it was. ``command`` (the command line) joins the deployment
    record's ``later`` commands. Returns the ``simulation`` section."""
    rundir = RunDir(run_dir)
    cfg = saved_config(rundir)
    if not rundir.model_file("nir").is_file():
        raise ArtifactError(
            "NIR file not found",
            where=str(rundir.model_file("nir")),
            fix="Export first: neuroprune export RUN_DIR --format nir.",
        )
    record = rundir.load_record()
    profile = load_profile(rundir.profile_path)
    dataset = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg))
    changes: dict[str, Any] = {
        "backend": backend,
        "samples": samples,
        "fixed_point": fixed_point,
        "sim_timeout": timeout,
    }
    if threshold is not None:
        changes["agreement_threshold"] = threshold
    with rundir.build(resumable=False) as build:
        build.take(rundir, run_files(rundir.path))
        staging = build.staging
        run = _Run(cfg.replace(**changes), staging, profile, progress or _noop, record)
        run.log_lines = _log_lines(staging)
        run.history = dict(getattr(record, "history", None) or {})
        _forget_simulation(record)
        if command is not None:
            record.deployment = record.deployment or DeploymentRecord()
            record.deployment.later = [*record.deployment.later, command]
        run.emit("simulate", "neuroprune simulate: the run's model.nir simulated again")
        carry = Carry(staging.final_model(), dataset, budget=None)
        for stage in (FIT, SIMULATE):  # the fit check again: its packing gives chip traffic
            carry = stage.run(run, carry)
        if carry.error is not None:
            raise carry.error
        REPORT.run(run, carry)
        build.publish()
    return record.simulation.model_dump(mode="json") if record.simulation else {}


def _log_lines(rundir: RunDir) -> list[str]:
    path = rundir / "log.txt"
    return path.read_text(errors="replace").splitlines() if path.is_file() else []


def _forget_simulation(record: RunRecord) -> None:
    """Drop what an earlier simulation left in ``record``: its section, a recorded simulator
    failure, and the "simulation not run" note."""
    record.simulation = None
    record.errors = [e for e in record.errors if e.stage != "simulate"]
    record.stages_not_run = [s for s in record.stages_not_run if not s.startswith("simulation")]


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
        own = str(rundir.profile_path) if rundir.profile_path.is_file() else cfg.chip
        chip, dataset = chip or own, dataset or cfg.dataset  # energy: the run's own chip
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
