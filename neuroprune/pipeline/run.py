"""``run_fit``: the run directory, the stages in order, the report.

A run is built beside its folder and replaces an earlier run there only when it completes
(:meth:`neuroprune.run.rundir.RunDir.build`); a run may also be derived from another run's
models (:class:`Derivation`, ``neuroprune quantize RUN``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from neuroprune import __version__
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import DatasetError
from neuroprune.core.progress import Progress
from neuroprune.data.split import SPLIT_RULE, Holdout
from neuroprune.envs import BACKEND, ENVIRONMENTS, recorded_versions
from neuroprune.pipeline import neuron_choice
from neuroprune.pipeline.config import RunConfig
from neuroprune.pipeline.context import RunOutcome, _noop, _Run
from neuroprune.pipeline.detect_fit import is_detection, run_detection_fit
from neuroprune.pipeline.neurobench import (
    cancel_neurobench,
    spawn_neurobench,
    start_neurobench,
)
from neuroprune.pipeline.preflight import _Plan, _preflight
from neuroprune.pipeline.stages import STAGES, Carry
from neuroprune.run.record import DeploymentRecord
from neuroprune.run.rundir import (
    MODEL_FILES,
    RECORD_VERSION,
    RESUMABLE,
    ArtifactsRecord,
    BudgetRecord,
    DerivationRecord,
    RunBuild,
    RunDir,
    RunRecord,
    ValidationRecord,
    remove_tree,
)
from neuroprune.run.warnings import preflight_warnings
from neuroprune.train import distributed

REPORTED_BUDGET = ("synapses", "source", "binding", "fan_in_cap")  # report.json ``budget``

# ------------------------------------------------------------------------------------------
# fit


@dataclass(frozen=True)
class Derivation:
    """A run made from another run's models (``neuroprune quantize RUN``).

    The model files of ``stages`` (in stage order, e.g. dense and pruned) are taken from
    ``source`` as they are, whatever options or chip they were made with; every later stage
    runs anew for the new configuration. ``profile``: the chip profile file to use instead of
    the configuration's ``chip`` (a run's own profile.yaml when the chip stays)."""

    source: RunDir
    stages: tuple[str, ...] = ("dense", "pruned")
    profile: Path | None = None


def run_fit(
    cfg: RunConfig,
    *,
    progress: Progress | None = None,
    derive: Derivation | None = None,
    command: str | None = None,
) -> RunOutcome:
    """Run every stage for ``cfg``; return the outcome (never raises for "does not fit").

    Under torchrun every rank trains (``neuroprune.train.distributed``); ranks > 0 write nothing and
    return after the last training stage, rank 0 goes on to fit, export, simulate and report.

    Every input is checked before anything is written (:func:`_preflight`); then the run is
    built in the staging folder beside ``out/name`` under the run's lock, and replaces an
    earlier run there only once every stage ran (:meth:`RunDir.build`); an error or a signal
    before that leaves the earlier run as it was and the partial run for ``--resume``. A
    simulator failure is recorded in report.json (``errors``) and returned in the outcome, not
    raised: the run completes. ``derive``: take models from another run (:class:`Derivation`).
    ``neuron: auto`` (not with ``derive``): each neuron the chip runs is preflighted, then tried
    through dense, prune and quantize inside the staging folder, and the run goes on with the
    one whose deployed model validates best (:mod:`neuroprune.pipeline.neuron_choice`); where
    the chip's finest weight mapping could take a pruned readout, each neuron is also pruned
    with that readout block from the same dense model, and the same rule chooses.
    ``command``: the command line, for the run's deployment record.
    """
    auto_neuron = neuron_choice.is_auto(cfg) and derive is None
    if auto_neuron:  # refused before anything is read where it cannot choose
        neuron_choice.check_auto(cfg, detection=is_detection(cfg))
    if is_detection(cfg) and derive is None:  # the detector: its own stages, mAP for accuracy
        return run_detection_fit(cfg, progress=progress, command=command)
    auto = None
    if derive is None:  # the candidates: --neuron auto, the readout block of the finest mapping
        auto = neuron_choice.plan_candidates(cfg, _preflight)
        plan = next(iter(auto.plans.values()))
    else:
        plan = _preflight_for(cfg, derive)
    record = _empty_record(plan)
    with distributed.process_group(plan.cfg.device):
        target = RunDir.of(plan.cfg.out, plan.cfg.run_name)
        if not distributed.is_main():  # a torchrun worker: trains, reads rank 0's staging folder
            staging = RunDir(target.staging_path())
            run = _Run(plan.cfg, staging, plan.profile, progress or _noop, record, writes=False)
            check_same_holdout(plan.holdout)
            return _run_worker_rank(run, plan)
        check_same_holdout(plan.holdout)
        with target.build(resumable=derive is None, resume=plan.cfg.resume) as build:
            record.deployment = DeploymentRecord(command=command)
            return _run_main(plan, record, build, progress, derive, auto)


def _preflight_for(cfg: RunConfig, derive: Derivation | None) -> _Plan:
    """The preflight of ``cfg``, with the chip profile ``derive.profile`` when given (the
    configuration keeps its ``chip``)."""
    if derive is None or derive.profile is None:
        return _preflight(cfg)
    plan = _preflight(cfg.replace(chip=str(derive.profile)))
    return dataclasses.replace(plan, cfg=plan.cfg.replace(chip=cfg.chip))


def _run_worker_rank(run: _Run, plan: _Plan) -> RunOutcome:
    """A torchrun rank > 0: the training stages only, nothing written."""
    carry = Carry(plan.model, plan.holdout.train, plan.budget, holdout=plan.holdout)
    for stage in STAGES:
        if stage.on_workers(carry.model):
            carry = stage.run(run, carry)
    return RunOutcome(run.run_dir, run.record.as_dict(), 0)


def _run_main(
    plan: _Plan,
    record: RunRecord,
    build: RunBuild,
    progress: Progress | None,
    derive: Derivation | None,
    auto: neuron_choice.Candidates | None = None,
) -> RunOutcome:
    """Rank 0 (or the only process), holding the run's lock: every stage writes into the
    staging folder; files there that this run neither wrote nor reused are removed (a partial
    run continued by ``--resume`` may hold some); then the run is published. ``auto``: the
    candidates of ``--neuron auto`` (:func:`_choose_neuron` runs them and keeps one)."""
    cfg, rundir = plan.cfg, build.staging
    run = _Run(cfg, rundir, plan.profile, progress or _noop, record)
    provenance = _provenance(plan.profile)
    if record.deployment is not None:
        record.deployment.provenance = dict(provenance)
    if derive is not None:
        provenance["derived_from"] = _take_derived(run, build, derive)
    elif cfg.resume:
        build.take(build.target, RESUMABLE)  # the finished run's models, where the partial has none
    rundir.save_config(cfg.as_dict(), provenance)
    rundir.save_profile(Path(plan.profile.path).read_text())
    rundir.plots.mkdir(exist_ok=True)
    run.emit(
        "setup",
        f"{plan.profile.name}: budget {plan.budget.synapses:,} synapses "
        f"({plan.budget.source}); dense network {plan.dense_synapses:,} "
        f"synapses, {plan.dense_neurons:,} neurons, {plan.dense_cores:,} of "
        f"{plan.cores_allocated:,} cores",
    )
    run.emit(
        "setup",
        f"validation: {plan.holdout.size:,} of {plan.dataset.train_size:,} training samples "
        f"held out before training (seed {plan.holdout.seed}); no stage trains on them, every "
        "keep/revert and early-stop decision reads them",
    )
    if derive is not None:
        taken = ", ".join(MODEL_FILES[stage] for stage in derive.stages)
        run.emit(
            "setup",
            f"derived from {derive.source.path}: {taken} taken as they are; every later stage "
            f"runs for {plan.profile.id}",
        )
    for warning in preflight_warnings(record):  # said before training
        run.warn(warning)
    carry = Carry(plan.model, plan.holdout.train, plan.budget, holdout=plan.holdout)
    stages = STAGES
    try:
        spawn_neurobench(run)  # imports on the second core while the run trains
        if auto is not None and auto.note:
            run.emit("prune", auto.note)
        if auto is not None and auto.chooses:
            carry = _choose_neuron(run, auto, provenance)
            stages = tuple(s for s in STAGES if s.name not in neuron_choice.NEURON_STAGES)
        for stage in stages:
            if stage.name == "export":  # the model is final: NeuroBench measures meanwhile
                start_neurobench(run, carry)
            carry = stage.run(run, carry)
    finally:
        cancel_neurobench(run)  # only one no report collected (a failure, an interrupt)
    rundir.remove_files(keep=rundir.written)
    remove_tree(rundir / neuron_choice.CANDIDATES)  # a partial auto run's candidates, if any
    path = build.publish()
    return RunOutcome(path, run.record.as_dict(), carry.exit_code, carry.error)


def _choose_neuron(run: _Run, auto: neuron_choice.Candidates, provenance: dict) -> Carry:
    """Run the candidates' stages (dense once per neuron; prune and quantize once per pruning
    structure), each candidate in its own folder under the staging folder, and keep the one
    whose deployed model validates best (:func:`neuroprune.pipeline.neuron_choice.choose`):
    its model files move into the run, its record sections become the run's, the other
    candidates' files are removed. ``run`` then goes on as a run of the chosen candidate
    (config.yaml says which neuron); report.json ``neuron_choice`` records the choice. Returns
    the chosen candidate's carry."""
    profile = run.profile
    only = len(auto.plans) == 1 and not auto.blocks
    if only:  # --neuron auto on a chip that runs one neuron, no readout block: nothing to try
        neuron, plan = next(iter(auto.plans.items()))
        choice = neuron_choice.only_choice(neuron, auto.excluded, profile.name)
        run.emit("neuron", choice.line())  # said before training: nothing is tried
        tried = {neuron: _try_neuron(run, auto, neuron, plan, alone=True)[neuron]}
        chosen = neuron
    else:
        tried = {}
        for neuron, plan in auto.plans.items():
            tried.update(_try_neuron(run, auto, neuron, plan, alone=False))
        scores = {n: neuron_choice.candidate_record(t[0].record) for n, t in tried.items()}
        pairs = {n: (t[2], t[3]) for n, t in tried.items()}
        block = next(iter(auto.blocks.values()), None)
        chosen, choice = neuron_choice.choose(
            scores,
            auto.excluded,
            pairs,
            asked=neuron_choice.AUTO_NEURON if auto.auto else run.cfg.neuron,
            block="; ".join(b.describe(name) for name, b in block.items()) if block else None,
        )
    chosen_run, carry, neuron, _ = tried[chosen]
    dense_folder = run.rundir / neuron_choice.CANDIDATES / auto.name(neuron, neuron_choice.ORDINARY)
    for stage in ("dense", "pruned", "quantized"):
        name = MODEL_FILES[stage]
        source = (dense_folder if stage == "dense" else chosen_run.rundir.path) / name
        if source.is_file():
            os.replace(source, run.rundir / name)
            run.mark(name)
    remove_tree(run.rundir / neuron_choice.CANDIDATES)
    record = chosen_run.record
    record.deployment = run.record.deployment
    record.neuron_choice = choice
    run.record, run.cfg, run.history = record, chosen_run.cfg, chosen_run.history
    run.rundir.save_config(run.cfg.as_dict(), provenance)
    if not only:
        run.emit(choice.topic, choice.line())
    return carry


def _try_neuron(
    run: _Run, auto: neuron_choice.Candidates, neuron: str, plan: _Plan, *, alone: bool
) -> dict[str, tuple[_Run, Carry, str, str]]:
    """One neuron's candidates: its dense stage once, then prune and quantize once per pruning
    structure (:meth:`Candidates.structures`), each from a copy of the same dense model and
    written into the candidate's own folder (``alone``: the only candidate, its events carry no
    name; a named neuron's dense stage carries none either). Returns candidate name -> (its run:
    record, history, files; its carry after quantization; neuron; structure)."""
    structures = auto.structures(neuron)
    names = {s: auto.name(neuron, s) for s in structures}
    dense_label = None if alone or not auto.auto else neuron
    first = _trial(run, plan, names[neuron_choice.ORDINARY], dense_label)
    dense = Carry(plan.model, plan.holdout.train, plan.budget, holdout=plan.holdout)
    dense = _stage("dense").run(first, dense)
    out = {}
    for structure in structures:
        label = None if alone else names[structure]
        if structure == neuron_choice.ORDINARY:
            trial, budget = first, plan.budget
            trial.candidate = label
        else:
            blocked = neuron_choice.with_block(plan, auto.blocks[neuron])
            trial, budget = _trial(run, blocked, names[structure], label), blocked.budget
            trial.record.dense = first.record.dense
            if "dense" in first.record.stages:
                trial.record.stages["dense"] = first.record.stages["dense"]
            trial.history["dense"] = first.history.get("dense", [])
        carry = dataclasses.replace(dense, model=copy.deepcopy(dense.model), budget=budget)
        for name in ("prune", "quantize"):
            carry = _stage(name).run(trial, carry)
        out[names[structure]] = (trial, carry, neuron, structure)
    return out


def _trial(run: _Run, plan: _Plan, name: str, label: str | None) -> _Run:
    """The run of one candidate: its own folder under the staging folder, its own record;
    its events named ``label`` and written to the run's one log."""
    folder = RunDir(run.rundir / neuron_choice.CANDIDATES / name)
    folder.path.mkdir(parents=True, exist_ok=True)
    trial = _Run(plan.cfg, folder, plan.profile, run.progress, _empty_record(plan), candidate=label)
    trial.log_lines = run.log_lines  # one log: every candidate's lines, named
    return trial


def _stage(name: str):
    """The stage called ``name`` (:data:`neuroprune.pipeline.stages.STAGES`)."""
    return next(stage for stage in STAGES if stage.name == name)


def _take_derived(run: _Run, build: RunBuild, derive: Derivation) -> dict[str, Any]:
    """Copy the source run's models of ``derive.stages`` into the new run, have the stages
    take them as they are, and return what report.json and config.yaml record of it."""
    names = [MODEL_FILES[stage] for stage in derive.stages]
    build.take(derive.source, names)
    run.derived = {stage: str(derive.source.path) for stage in derive.stages}
    entry = DerivationRecord(run=str(derive.source.path), taken=names)
    run.record.derived_from = entry
    return entry.model_dump(mode="json")


def check_same_holdout(holdout: Holdout) -> None:
    """Under torchrun: every rank must have cut the same validation rows as rank 0 (the cut is
    seeded, so they do unless the ranks read different data); raises ``DatasetError`` when not.
    Alone: nothing to compare."""
    mine = holdout.digest
    main = distributed.from_main(mine)
    if main != mine:
        raise DatasetError(
            "this rank cut another validation part than rank 0 (different training data?)",
            where=f"torchrun rank {distributed.rank()}",
            field="validation digest",
            value=mine,
            fix=f"Give every rank the same dataset and --seed (rank 0: {main}).",
        )


def _provenance(profile: ChipProfile) -> dict[str, Any]:

    versions = {}
    for pkg in ("torch", "spikingjelly", "lava-nc", "nir", "numpy", "onnx"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    # the simulators' own environments (lava: its Python 3.10 and its requirements' versions)
    backends = {
        name: recorded_versions(spec)
        for name, spec in ENVIRONMENTS.items()
        if spec.purpose == BACKEND
    }
    versions["lava-nc"] = versions["lava-nc"] or backends.get("lava", {}).get("lava-nc")
    return {
        "neuroprune_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "backend_environments": backends,
        "profile": {"id": profile.id, "path": profile.path, "sha256": profile.sha256},
    }


def _empty_record(plan: _Plan) -> RunRecord:
    """The run record before any stage ran: chip, configuration, budget (whether it binds, the
    cores the dense network uses); every stage section empty."""
    cfg, profile, budget, holdout = plan.cfg, plan.profile, plan.budget, plan.holdout
    budget_fields = budget.to_dict()
    return RunRecord(
        record_version=RECORD_VERSION,
        chip=profile.id,
        budget=BudgetRecord(
            **{k: budget_fields[k] for k in REPORTED_BUDGET},
            binds=budget.binds,
            dense_cores=plan.dense_cores,
            cores_allocated=plan.cores_allocated,
            core_blocks=[blocks.describe(name) for name, blocks in budget.input_blocks.items()]
            or None,
        ),
        artifacts=ArtifactsRecord(),
        stages_not_run=[],
        errors=[],
        neuroprune_version=__version__,
        chip_name=profile.name,
        config=cfg.as_dict(),
        counting=budget.counting,
        stages={},
        validation=ValidationRecord(
            samples=holdout.size,
            train_samples=holdout.train.train_size,
            seed=holdout.seed,
            rule=SPLIT_RULE,
            digest=holdout.digest,
        ),
    )
