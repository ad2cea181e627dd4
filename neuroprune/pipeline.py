"""The fit pipeline (layer L4): wires the stages and writes the run directory.

``run_fit(cfg)``: profile -> data -> model -> budget (checked before training) -> dense training
-> pruning to the budget -> quantization -> fit check -> NIR/ONNX export -> simulation of the
exported file -> report. Every artifact is written atomically; ``--resume`` reuses the
artifacts of completed stages (dense training also resumes per epoch).

Run directory (architecture.md): config.yaml, profile.yaml, dense.pt, pruned.pt, quantized.pt,
model.nir, model.onnx, fit.json, simulation.json, report.json, report.md, plots/*.png, log.txt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroprune import __version__, distributed
from neuroprune.config import RunConfig, config_from_saved, event_options, parse_hidden
from neuroprune.errors import (
    ArtifactError,
    BackendUnavailableError,
    ConfigError,
    NeuropruneError,
    SimulationError,
    UnsupportedError,
)
from neuroprune.profiles import ChipProfile, load_profile
from neuroprune.rundir import CHECKPOINT, MODEL_FILES, RECORD_VERSION, RunDir, RunRecord

Progress = Callable[[Mapping[str, Any]], None]
STRUCTURED_METHODS = ("sca", "sca+stds")


@dataclass(frozen=True)
class RunOutcome:
    """What ``neuroprune fit`` returns: the run directory, report.json's content, exit code,
    and the error of a stage that failed after the run started (recorded in the report)."""

    run_dir: Path
    report: dict[str, Any]
    exit_code: int
    error: NeuropruneError | None = None


@dataclass
class _Run:
    """Mutable state of one pipeline run (internal)."""

    cfg: RunConfig
    rundir: RunDir
    profile: ChipProfile
    progress: Progress
    report: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    writes: bool = True  # False on torchrun ranks > 0: only rank 0 writes the run directory
    fitted: tuple[Any, Any] | None = None  # (summary, packing) of the fit check, for traffic

    @property
    def run_dir(self) -> Path:
        return self.rundir.path

    def emit(self, stage: str, message: str | None = None, **event: Any) -> None:
        if message is not None:
            self.log_lines.append(f"{time.strftime('%H:%M:%S')} {stage}: {message}")
            if self.writes:
                self.rundir.write_log(self.log_lines)
            event["message"] = message
        self.progress({"stage": stage, **event})

    def reusable(self, stage: str, inputs: Mapping[str, Any]):
        """``(model, meta)`` of the stage's artifact when ``--resume`` may reuse it (made with
        the same inputs), else None; a mismatch is logged naming the options that changed."""
        found = self._matching(stage, inputs) if self.writes else None
        if not distributed.from_main(found is not None):  # rank 0 decides for every rank
            return None
        return found or self.rundir.load_model(stage)

    def _matching(self, stage: str, inputs: Mapping[str, Any]):
        if not self.cfg.resume or not self.rundir.has_model(stage):
            return None
        model, meta = self.rundir.load_model(stage)
        if meta.get("inputs_hash") == input_hash(inputs):
            return model, meta
        changed = ", ".join(changed_inputs(meta.get("inputs"), inputs))
        self.emit(
            stage,
            f"--resume: rerunning, {MODEL_FILES[stage]} was made with other options: {changed}",
        )
        return None

    def save_model(self, stage: str, model, inputs: Mapping[str, Any], **meta: Any) -> None:
        if not self.writes:
            return
        self.rundir.save_model(
            stage, model, {**meta, "inputs": dict(inputs), "inputs_hash": input_hash(inputs)}
        )
        self.report["stages"][stage] = {"inputs_hash": input_hash(inputs)}

    def mark(self, name: str) -> None:
        """Record that this run reused the run file ``name``."""
        self.rundir.mark(name)


def _noop(_: Mapping[str, Any]) -> None:
    return None


# ------------------------------------------------------------------------------------------
# Helpers shared by commands


def with_model_defaults(cfg: RunConfig) -> RunConfig:
    """Fill ``epochs``, ``lr``, ``batch_size`` and ``timesteps`` left unset with the model's
    measured defaults (``neuroprune.models.train.DEFAULTS``; user models get the mlp's)."""
    from neuroprune.models.train import DEFAULTS

    defaults = DEFAULTS.get(cfg.model, DEFAULTS["mlp"])
    unset = {
        k: defaults[k]
        for k in ("epochs", "lr", "batch_size", "timesteps")
        if getattr(cfg, k) is None and k in defaults
    }
    return cfg.replace(**unset) if unset else cfg


def train_config(cfg: RunConfig, epochs: int):
    """The :class:`TrainConfig` of a stage with ``epochs`` epochs."""
    from neuroprune.models import default_config

    cfg = with_model_defaults(cfg)
    return default_config(
        cfg.model if cfg.model in ("mlp", "conv") else "mlp",
        epochs=max(epochs, 1),
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        timesteps=cfg.timesteps,
        encoding=cfg.encoding,
        seed=cfg.seed,
        device=cfg.device,
    )


def _epoch_progress(run: _Run, stage: str) -> Progress:
    """Adapt training events to the renderer's bar events."""

    def forward(event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == "train_begin":
            total = event["epochs"] - event.get("start_epoch", 0)
            run.progress({"stage": stage, "total": total})
        elif kind == "epoch":
            shown = {
                k: event[k] for k in ("epoch", "loss", "test_accuracy", "sparsity") if k in event
            }
            run.progress({"stage": stage, "advance": 1, **shown})

    return forward


def _layer_rows(summary, shared: bool) -> list[dict[str, Any]]:
    rows = []
    for layer in summary.layers:
        synapses, dense = layer.synapses(shared), layer.dense_positions(shared)
        rows.append(
            {
                "layer": layer.name,
                "kind": layer.kind,
                "neurons": layer.neurons,
                "synapses": synapses,
                "dense": dense,
                "sparsity": 1 - synapses / dense if dense else 0.0,
                "max_fan_in": layer.max_fan_in,
                "mean_fan_in": round(layer.mean_fan_in, 3),
            }
        )
    return rows


def _stage_record(summary, shared: bool, accuracy: float) -> dict[str, Any]:
    return {
        "accuracy": accuracy,
        "synapses": summary.synapses(shared),
        "neurons": summary.neurons,
        "max_fan_in": summary.max_fan_in,
        "layers": _layer_rows(summary, shared),
    }


# ------------------------------------------------------------------------------------------
# check


def check_dense(
    chip: str,
    *,
    model="mlp",
    hidden=None,
    dataset="digits",
    data_dir=None,
    chips=None,
    cores=None,
    neuron="lif",
    from_nir=None,
    nir_dt=None,
):
    """Fit report of the untrained dense network (every synapse present), or of the network in
    the NIR file ``from_nir`` (with its weights: zeros there are not synapses)."""
    from neuroprune.data import dataset_shape
    from neuroprune.fit import check_fit

    profile = load_profile(chip)
    shape, classes = dataset_shape(dataset, data_dir)
    from neuroprune.models import build_model, summarize  # torch only once the inputs are valid

    if from_nir:
        from neuroprune.models.nir_model import load_nir_model

        net = load_nir_model(from_nir, input_shape=shape, num_classes=classes, dt=nir_dt).model
        model = Path(from_nir).stem
    else:
        widths = parse_hidden(hidden) if hidden else None
        check_model_size(model, widths, shape, classes)
        net = build_model(model, shape, classes, hidden=widths, neuron=neuron)
    summary = summarize(net, shape, 1, name=model)
    return check_fit(summary, profile, chips=chips, cores=cores)


# ------------------------------------------------------------------------------------------
# fit


def run_fit(cfg: RunConfig, *, progress: Progress | None = None) -> RunOutcome:
    """Run every stage for ``cfg``; return the outcome (never raises for "does not fit").

    Under torchrun every rank trains (``neuroprune.distributed``); ranks > 0 write nothing and
    return after the last training stage, rank 0 goes on to fit, export, simulate and report.

    Every input is checked before the run directory is touched (:func:`_preflight`); then the
    run's lock is taken, files of an earlier run that this run does not reuse are removed, and
    the stages run. A simulator failure is recorded in report.json (``errors``) and returned
    in the outcome, not raised.
    """
    with distributed.process_group(cfg.device):
        plan = _preflight(cfg)
        rundir = RunDir.of(plan.cfg.out, plan.cfg.run_name)
        if not distributed.is_main():  # a torchrun worker: trains, writes nothing
            run = _Run(plan.cfg, rundir, plan.profile, progress or _noop, writes=False)
            return _run_worker_rank(run, plan)
        with rundir.lock():
            return _run_main(plan, rundir, progress)


def _run_worker_rank(run: _Run, plan: _Plan) -> RunOutcome:
    run.report = _empty_report(plan.cfg, plan.profile, plan.budget)
    model = _stage_dense(run, plan.model, plan.dataset)
    model = _stage_prune(run, model, plan.dataset, plan.budget)
    if _is_chain(model):
        _stage_quantize(run, model, plan.dataset)
    return RunOutcome(run.run_dir, run.report, 0)


def _is_chain(model) -> bool:
    import torch

    return isinstance(model, torch.nn.Sequential)


def _run_main(plan: _Plan, rundir: RunDir, progress: Progress | None) -> RunOutcome:
    """Rank 0 (or the only process), holding the run's lock: clean, run, record."""
    cfg = plan.cfg
    if not cfg.resume:
        rundir.remove_files(keep=set())
    _prepare_run_dir(rundir, cfg, plan.profile)
    run = _Run(cfg, rundir, plan.profile, progress or _noop)
    run.report = _empty_report(cfg, plan.profile, plan.budget)
    run.emit(
        "setup",
        f"{plan.profile.name}: budget {plan.budget.synapses:,} synapses "
        f"({plan.budget.source}); dense network {plan.dense_synapses:,} "
        f"synapses, {plan.dense_neurons:,} neurons",
    )
    exit_code, error = _run_stages(run, plan)
    _finish_report(run)
    if cfg.resume:
        rundir.remove_files(keep=rundir.written)
    return RunOutcome(rundir.path, run.report, exit_code, error)


@dataclass(frozen=True)
class _Plan:
    """Everything checked before the run directory is touched."""

    cfg: RunConfig
    profile: ChipProfile
    dataset: Any
    model: Any
    budget: Any
    dense_synapses: int
    dense_neurons: int


def _preflight(cfg: RunConfig) -> _Plan:
    """Validate every input (profile, data, model, options against the registries, device,
    budget) and build the dense model; nothing is written."""
    from neuroprune.data import load_dataset

    profile = load_profile(cfg.chip)
    dataset = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg))
    check_model_size(cfg.model, cfg.hidden, dataset.input_shape, dataset.num_classes)
    import torch

    from neuroprune.models import summarize  # torch only once the inputs are valid

    _check_method(cfg)
    _check_device(cfg.device, torch)
    if cfg.from_nir:
        imported = _nir_model(cfg.from_nir, dataset, cfg.nir_dt)
        cfg = cfg.replace(timesteps=cfg.timesteps or imported.timesteps)
        model = imported.model.train()
    cfg = with_model_defaults(cfg)
    if not cfg.from_nir:
        model = configured_model(cfg, dataset.input_shape, dataset.num_classes)
    chain_or_wired = isinstance(model, torch.nn.Sequential) or hasattr(model, "wiring")
    if not chain_or_wired and cfg.method not in STRUCTURED_METHODS:
        raise UnsupportedError(
            f"method {cfg.method!r} needs a Sequential chain model",
            where="--method",
            field="model",
            value=cfg.model,
            fix="Use --method sca with --model sew.",
        )
    summary = summarize(model, dataset.input_shape, cfg.timesteps, name=cfg.model)
    budget = configured_budget(cfg, profile, summary)
    shared = profile.conv_weight_sharing
    return _Plan(cfg, profile, dataset, model, budget, summary.synapses(shared), summary.neurons)


def configured_model(cfg: RunConfig, input_shape, num_classes: int):
    """The dense model a run config names (``model``, ``hidden``, ``neuron``, ``seed``)."""
    from neuroprune.models import build_model

    return build_model(
        cfg.model, input_shape, num_classes, hidden=cfg.hidden, neuron=cfg.neuron, seed=cfg.seed
    )


def configured_budget(cfg: RunConfig, profile: ChipProfile, summary):
    """The synapse budget a run config asks of ``profile`` for the network ``summary``
    (``chips``, ``cores``, ``budget``, ``sparsity``; :func:`neuroprune.budget.derive_budget`).
    Raises the budget's one-line errors when no budget can make the network fit."""
    from neuroprune.budget import derive_budget
    from neuroprune.fit import allocation_capacity

    capacity = allocation_capacity(summary, profile, chips=cfg.chips, cores=cfg.cores)
    return derive_budget(
        profile,
        summary,
        chips=cfg.chips,
        cores=cfg.cores,
        budget=cfg.budget,
        sparsity=cfg.sparsity,
        capacity=capacity,
    )


MAX_DENSE_WEIGHTS = 200_000_000  # 0.8 GB of float32 weights, several times that to train


def check_model_size(model: str, hidden, input_shape, num_classes: int) -> None:
    """Refuse an mlp whose weights alone would not fit in memory, before building it."""
    if model != "mlp" or not hidden:
        return
    sizes = [math.prod(int(s) for s in input_shape), *hidden, int(num_classes)]
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    if weights > MAX_DENSE_WEIGHTS:
        raise ConfigError(
            f"the dense mlp would have {weights:,} weights (limit {MAX_DENSE_WEIGHTS:,})",
            where="config",
            field="hidden",
            value=",".join(map(str, hidden)),
            fix="Use narrower hidden layers.",
        )


def _check_method(cfg: RunConfig) -> None:
    """The method and scheduler exist in the registries and go together."""
    if cfg.method in STRUCTURED_METHODS:
        return
    from neuroprune.pruning.registry import method_class

    cls = method_class(cfg.method)
    if cfg.scheduler is not None and getattr(cls, "default_scheduler", None) is None:
        raise ConfigError(
            f"method {cfg.method!r} has no threshold scheduler",
            where="config",
            field="scheduler",
            value=cfg.scheduler,
            fix="Leave --scheduler out for this method.",
        )


def _check_device(device: str, torch) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "no CUDA device is available on this machine",
            where="config",
            field="device",
            value=device,
            fix="Use --device cpu.",
        )


def _run_stages(run: _Run, plan: _Plan) -> tuple[int, NeuropruneError | None]:
    dataset = plan.dataset
    model = _stage_dense(run, plan.model, dataset)
    model = _stage_prune(run, model, dataset, plan.budget)
    model = _stage_quantize(run, model, dataset)
    fit_report = _stage_fit(run, model, dataset)
    _stage_export(run, model, dataset)
    try:
        sim_ok = _stage_simulate(run, model, dataset)
    except (SimulationError, BackendUnavailableError) as exc:
        run.report["errors"].append(
            {"stage": "simulate", "kind": type(exc).__name__, "message": exc.one_line()}
        )
        run.emit("simulate", f"failed: {exc.one_line()}")
        return exc.exit_code, exc
    return (0 if fit_report.fits and sim_ok else 1), None


def _nir_model(path, dataset, dt):
    """``--from FILE.nir``: the graph as a SpikingJelly model for ``dataset``."""
    from neuroprune.models.nir_model import load_nir_model

    return load_nir_model(
        path, input_shape=dataset.input_shape, num_classes=dataset.num_classes, dt=dt
    )


def _prepare_run_dir(rundir: RunDir, cfg: RunConfig, profile: ChipProfile) -> None:
    rundir.save_config(cfg.as_dict(), _provenance(profile))
    rundir.save_profile(Path(profile.path).read_text())
    rundir.plots.mkdir(exist_ok=True)


def _provenance(profile: ChipProfile) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("torch", "spikingjelly", "lava-nc", "nir", "numpy", "onnx"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "neuroprune_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "profile": {"id": profile.id, "path": profile.path, "sha256": profile.sha256},
    }


def _empty_report(cfg: RunConfig, profile: ChipProfile, budget) -> dict[str, Any]:
    return {
        "record_version": RECORD_VERSION,
        "neuroprune_version": __version__,
        "chip": profile.id,
        "chip_name": profile.name,
        "config": cfg.as_dict(),
        "counting": budget.counting,
        "budget": {
            "synapses": budget.synapses,
            "source": budget.source,
            "binding": budget.binding,
            "fan_in_cap": budget.fan_in_cap,
        },
        "dense": None,
        "pruned": None,
        "quantized": None,
        "fit": None,
        "simulation": None,
        "artifacts": {"nir": None, "onnx": None},
        "stages_not_run": [],
        "errors": [],
        "stages": {},
    }


# ------------------------------------------------------------------------------------------
# Resume: each stage's inputs

DENSE_INPUTS = (
    "model",
    "hidden",
    "neuron",
    "dataset",
    "data_dir",
    "epochs",
    "timesteps",
    "encoding",
    "event_binning",
    "event_downsample",
    "event_polarity",
    "event_window",
    "batch_size",
    "lr",
    "optimizer",
    "seed",
    "nproc",
    "from_nir",
    "nir_dt",
    "train_dense",
)
PRUNE_INPUTS = (
    "chips",
    "cores",
    "budget",
    "sparsity",
    "method",
    "scheduler",
    "prune_epochs",
    "finetune_epochs",
)
QUANT_INPUTS = ("quant_epochs",)


def stage_inputs(cfg: RunConfig, profile: ChipProfile, stage: str) -> dict[str, Any]:
    """The options (and chip profile hash) a stage's artifact depends on; a stage depends on
    everything its earlier stages depend on."""
    keys = DENSE_INPUTS
    if stage in ("pruned", "quantized"):
        keys += PRUNE_INPUTS
    if stage == "quantized":
        keys += QUANT_INPUTS
    values = cfg.as_dict()
    inputs = {key: values[key] for key in keys}
    if stage != "dense":
        inputs["chip"] = profile.id
        inputs["profile_sha256"] = profile.sha256
    return inputs


def input_hash(inputs: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``inputs`` (16 hex digits)."""
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_inputs(saved: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """``["hidden (128 -> 32)", ...]``: options that differ between ``saved`` and ``now``."""
    if not isinstance(saved, Mapping):
        return ["(no record of the options it was made with)"]
    keys = sorted(set(saved) | set(now))
    return [f"{k} ({saved.get(k)!r} -> {now.get(k)!r})" for k in keys if saved.get(k) != now.get(k)]


def _stage_dense(run: _Run, model, dataset):
    from neuroprune.models import CheckpointCallback, evaluate, summarize, train

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
    from neuroprune.models import load_checkpoint

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
    from neuroprune.models import evaluate, summarize

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
    from neuroprune.pruning import prune_to_budget

    cfg = run.cfg
    common = {
        "budget": budget,
        "epochs": cfg.prune_epochs,
        "finetune_epochs": cfg.finetune_epochs,
        "progress": _epoch_progress(run, "prune"),
    }
    config = train_config(cfg, cfg.prune_epochs)
    if cfg.method in STRUCTURED_METHODS:
        from neuroprune.pruning.sca import prune_structured

        return prune_structured(
            model,
            dataset,
            config,
            then_stds=cfg.method == "sca+stds",
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
    from neuroprune.models import evaluate, summarize
    from neuroprune.quantize import quantize_model

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
        result = quantize_model(
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


def _stage_fit(run: _Run, model, dataset):
    from neuroprune.fit import check_fit
    from neuroprune.models import summarize

    summary = summarize(model, dataset.input_shape, run.cfg.timesteps)
    report = check_fit(summary, run.profile, chips=run.cfg.chips, cores=run.cfg.cores)
    data = report.as_dict()
    run.rundir.write_fit(data)
    run.report["fit"] = data
    run.fitted = (summary, report.packing)
    verdict = "fits" if report.fits else f"does NOT fit ({len(report.violations)} violations)"
    run.emit("fit", f"{verdict}: {report.cores_used} core(s), {report.chips_needed} chip(s)")
    return report


def _stage_export(run: _Run, model, dataset) -> None:
    from neuroprune.export import export_nir, export_onnx

    cfg = run.cfg
    nir_path = export_nir(
        model,
        run.rundir.model_file("nir"),
        timesteps=cfg.timesteps,
        encoding=cfg.encoding,
        input_shape=dataset.input_shape,
        chip=run.profile.id,
        dt=cfg.nir_dt,
    )
    onnx_path = export_onnx(
        model,
        run.rundir.model_file("onnx"),
        timesteps=cfg.timesteps,
        input_shape=dataset.input_shape,
    )
    run.mark(nir_path.name)
    run.mark(onnx_path.name)
    run.report["artifacts"] = {"nir": nir_path.name, "onnx": onnx_path.name}
    run.emit("export", f"wrote {nir_path.name} and {onnx_path.name}")


def _stage_simulate(run: _Run, model, dataset) -> bool:
    """Simulate the exported model.nir; True when agreement meets the threshold."""
    cfg = run.cfg
    if cfg.backend == "none":
        run.report["stages_not_run"].append("simulation (--backend none)")
        return True
    from neuroprune.data import simulation_input
    from neuroprune.sim import simulate

    fixed = cfg.fixed_point if cfg.fixed_point is not None else _fixed_by_default(run.profile)
    samples = cfg.samples or len(dataset.x_test)
    run.emit(
        "simulate",
        f"{cfg.backend} backend, {'fixed' if fixed else 'floating'} point, {samples} test samples",
    )
    x, y = simulation_input(dataset, samples), dataset.y_test[:samples]
    timeout = cfg.sim_timeout
    if timeout is None and cfg.backend == "lava":
        timeout = calibrated_timeout(run.rundir.model_file("nir"), x, fixed)
        run.emit(
            "simulate",
            f"Lava time limit {timeout:.0f} s, scaled from the network's "
            f"measured cost (--sim-timeout overrides)",
        )
    # Fixed point gates on the bit-exact integer emulation (must be 100 %) and reports the
    # agreement of the trained quantized model (chip arithmetic where the profile declares it)
    # and the float-to-chip drift; floating point gates on the PyTorch model itself.
    from neuroprune.models.neurons import float_twin

    result = simulate(
        run.rundir.model_file("nir"),
        x=x,
        y=y,
        profile=run.profile,
        backend=cfg.backend,
        fixed_point=fixed,
        timeout=timeout,
        expected_counts=_bit_exact_check(cfg.backend, fixed),
        reference_model=model,
        float_model=float_twin(model),
    )
    data = result.as_dict()
    run.rundir.write_simulation(data)
    run.report["simulation"] = data
    _chip_traffic(run, result.counts)
    agreement = data.get("spike_agreement")
    drift = data.get("model_spike_agreement")
    versus = "the bit-exact emulation" if fixed else "the PyTorch model"
    extra = f"; {100 * drift:.2f} % vs the trained PyTorch model" if drift is not None else ""
    if data.get("float_drift"):
        floats = min(data["float_drift"]["layer_agreement"])
        extra += f" ({100 * floats:.2f} % vs its weights on float neurons)"
    run.emit(
        "simulate",
        f"spike agreement {100 * (agreement or 0):.2f} % vs {versus}{extra}, "
        f"{1000 * (data.get('seconds_per_sample') or 0):.2f} ms/sample",
    )
    return verification_passed(data, cfg.agreement_threshold)


def _chip_traffic(run: _Run, counts) -> None:
    """report.json ``fit.partition``: layer -> chips, cores per chip and the simulated spikes
    per sample crossing chip boundaries (:func:`neuroprune.fit.chip_traffic`)."""
    from neuroprune.fit import chip_traffic

    if run.fitted is None or not counts:
        return
    summary, packing = run.fitted
    rates = [c.mean(axis=0) for c in counts]
    run.report["fit"]["partition"] = chip_traffic(summary, packing, rates)
    run.rundir.write_fit(run.report["fit"])


CALIBRATION_SAMPLES = 8


def calibrated_timeout(nir_path: Path, x, fixed: bool) -> float:
    """Lava's time limit for ``len(x)`` samples, scaled from the measured cost of this network:
    the numpy reference simulates ``CALIBRATION_SAMPLES`` samples first
    (:func:`neuroprune.sim.lava_backend.scaled_timeout` turns that into seconds)."""
    from neuroprune.sim import simulate
    from neuroprune.sim.lava_backend import scaled_timeout

    probe = simulate(nir_path, x=x[:CALIBRATION_SAMPLES], backend="reference", fixed_point=fixed)
    return scaled_timeout(len(x), probe.as_dict()["seconds_per_sample"])


def verification_passed(sim: Mapping[str, Any], threshold: float) -> bool:
    """True when the simulation's gating agreement meets ``threshold``.

    Fixed point compared only with the float model (reference backend) measures the drift of
    the chip arithmetic, which is not expected to be exact: it is reported, not gated on.
    """
    if sim.get("mode") == "fixed" and sim.get("agreement_source") == "reference_model":
        return True
    agreement = sim.get("spike_agreement")
    return agreement is None or agreement >= threshold


def _bit_exact_check(backend: str, fixed: bool) -> str | None:
    """Lava fixed point is checked against the numpy bit-exact emulation; the emulation itself
    (reference backend) has no independent oracle, so it is compared with the model only."""
    return "reference" if fixed and backend == "lava" else None


def _fixed_by_default(profile: ChipProfile) -> bool:
    """Bit-accurate simulation where Lava has a bit-accurate model of the chip (Loihi)."""
    return profile.weights.format in ("loihi", "loihi2")


def _finish_report(run: _Run) -> None:
    from neuroprune.reports.markdown import report_markdown
    from neuroprune.reports.plots import (
        chip_partition,
        core_usage,
        layer_sparsity,
        spike_rates,
        training_curves,
    )

    plots = run.rundir.plots
    files = [training_curves(run.history, plots / "training.png")]
    if run.report.get("pruned"):
        files.append(layer_sparsity(run.report["pruned"]["layers"], plots / "layer_sparsity.png"))
    sim = run.report.get("simulation") or {}
    if sim.get("layers"):
        files.append(spike_rates(sim["layers"], plots / "spike_rates.png"))
    if run.report.get("fit"):
        core = run.profile.core
        limits = {
            "neurons": core.neurons_max,
            "input_axons": core.input_axons_max,
            "memory_bits": core.synapse_memory_bits,
        }
        files.append(core_usage(run.report["fit"]["per_core"], limits, plots / "cores.png"))
        partition = run.report["fit"].get("partition")
        if partition and partition["chips_used"] > 1:
            files.append(chip_partition(partition, plots / "chips.png"))
    run.report["history"] = run.history
    run.report["plots"] = [str(p.relative_to(run.run_dir)) for p in files]
    record = RunRecord.model_validate(run.report)
    run.report = record.as_dict()
    run.rundir.write_record(record, report_markdown(run.report))
    for plot in run.report["plots"]:
        run.rundir.mark(plot)
    run.emit("report", f"wrote report.json, report.md and {len(files)} plots")


# ------------------------------------------------------------------------------------------
# Commands on a saved run


def load_report(run_dir: Path) -> dict[str, Any]:
    """report.json of a run, checked against :class:`RunRecord`."""
    return RunDir(run_dir).load_record().as_dict()


def saved_config(rundir: RunDir) -> RunConfig:
    """The resolved config a run was made with (``config.yaml``), with model defaults filled."""
    values = rundir.load_config()
    return with_model_defaults(config_from_saved(values, where=str(rundir / "config.yaml")))


def export_run(run_dir: Path, fmt: str, out: Path | None, dt: float | None = None) -> Path:
    """Export the run's final model (quantized, else pruned, else dense) to NIR or ONNX;
    ``dt`` is the NIR file's seconds per step (default 2**-10)."""
    from neuroprune.data import load_dataset
    from neuroprune.export import export_nir, export_onnx

    rundir = RunDir(run_dir)
    cfg = saved_config(rundir)
    shape = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg)).input_shape
    with contextlib.ExitStack() as stack:
        if out is None:
            stack.enter_context(rundir.lock())
        model = rundir.final_model()
        target = out or rundir.model_file(fmt)
        if fmt == "nir":
            return export_nir(
                model,
                target,
                timesteps=cfg.timesteps,
                encoding=cfg.encoding,
                input_shape=shape,
                chip=Path(cfg.chip).stem,
                dt=dt,
            )
        return export_onnx(model, target, timesteps=cfg.timesteps, input_shape=shape)


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
    from neuroprune.data import load_dataset
    from neuroprune.quantize import quantize_model

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
        result = quantize_model(
            model,
            profile,
            dataset,
            train_config(cfg, epochs),
            finetune_epochs=epochs,
            progress=progress,
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
    """Simulate a run directory's model.nir or a .nir file on the dataset's test split."""
    from neuroprune.data import is_event_dataset, load_dataset, simulation_input
    from neuroprune.sim import simulate

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
        fixed_point = bool(profile and _fixed_by_default(profile))
    return simulate(
        nir_path,
        x=simulation_input(data, n),
        y=data.y_test[:n],
        profile=profile,
        backend=backend,
        fixed_point=fixed_point,
        timeout=timeout,
        expected_counts=_bit_exact_check(backend, fixed_point),
        reference_model=reference,
    )


def _graph_event_options(nir_path: Path):
    """Event binning for a bare ``.nir`` file: T frames, T = the graph's ``timesteps``."""
    from neuroprune.events import EventOptions
    from neuroprune.sim import read_deployment

    return EventOptions(timesteps=read_deployment(nir_path).timesteps or 8)


__all__ = [
    "RunOutcome",
    "check_dense",
    "export_run",
    "load_report",
    "run_fit",
    "verification_passed",
    "simulate_target",
    "train_config",
]
