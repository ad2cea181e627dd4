"""The fit pipeline (layer L4): wires the stages and writes the run directory.

``run_fit(cfg)``: profile -> data -> model -> budget (checked before training) -> dense training
-> pruning to the budget -> quantization -> fit check -> NIR/ONNX export -> simulation of the
exported file -> report. Every artifact is written atomically; ``--resume`` reuses the
artifacts of completed stages (dense training also resumes per epoch).

Run directory (architecture.md): config.yaml, profile.yaml, dense.pt, pruned.pt, quantized.pt,
model.nir, model.onnx, fit.json, simulation.json, report.json, report.md, plots/*.png, log.txt.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from neuroprune import __version__, distributed
from neuroprune.atomic import write_json, write_text
from neuroprune.config import RunConfig, event_options, save_config
from neuroprune.errors import ArtifactError, ConfigError, UnsupportedError
from neuroprune.profiles import ChipProfile, load_profile

Progress = Callable[[Mapping[str, Any]], None]
STRUCTURED_METHODS = ("sca", "sca+stds")
CHAIN_ONLY_STAGES = ("quantize", "export", "simulate")


@dataclass(frozen=True)
class RunOutcome:
    """What ``neuroprune fit`` returns: the run directory, report.json's content, exit code."""

    run_dir: Path
    report: dict[str, Any]
    exit_code: int


@dataclass
class _Run:
    """Mutable state of one pipeline run (internal)."""

    cfg: RunConfig
    run_dir: Path
    profile: ChipProfile
    progress: Progress
    report: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    started_bars: set[str] = field(default_factory=set)
    writes: bool = True  # False on torchrun ranks > 0: only rank 0 writes the run directory

    def emit(self, stage: str, message: str | None = None, **event: Any) -> None:
        if message is not None:
            self.log_lines.append(f"{time.strftime('%H:%M:%S')} {stage}: {message}")
            if self.writes:
                write_text(self.run_dir / "log.txt", "\n".join(self.log_lines) + "\n")
            event["message"] = message
        self.progress({"stage": stage, **event})


def _noop(_: Mapping[str, Any]) -> None:
    return None


# ------------------------------------------------------------------------------------------
# Helpers shared by commands


def with_model_defaults(cfg: RunConfig) -> RunConfig:
    """Fill ``epochs``, ``lr``, ``batch_size`` and ``timesteps`` left unset with the model's
    measured defaults (``neuroprune.models.train.DEFAULTS``; user models get the mlp's)."""
    from neuroprune.models.train import DEFAULTS

    defaults = DEFAULTS.get(cfg.model, DEFAULTS["mlp"])
    unset = {k: defaults[k] for k in ("epochs", "lr", "batch_size", "timesteps")
             if getattr(cfg, k) is None and k in defaults}  # fmt: skip
    return replace(cfg, **unset)


def train_config(cfg: RunConfig, epochs: int):
    """The :class:`TrainConfig` of a stage with ``epochs`` epochs."""
    from neuroprune.models import default_config

    cfg = with_model_defaults(cfg)
    return default_config(
        cfg.model if cfg.model in ("mlp", "conv") else "mlp",
        epochs=max(epochs, 1), batch_size=cfg.batch_size, lr=cfg.lr, optimizer=cfg.optimizer,
        timesteps=cfg.timesteps, encoding=cfg.encoding, seed=cfg.seed, device=cfg.device,
    )  # fmt: skip


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
        rows.append({
            "layer": layer.name,
            "kind": layer.kind,
            "neurons": layer.neurons,
            "synapses": synapses,
            "dense": dense,
            "sparsity": 1 - synapses / dense if dense else 0.0,
            "max_fan_in": layer.max_fan_in,
            "mean_fan_in": round(layer.mean_fan_in, 3),
        })  # fmt: skip
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


def check_dense(chip: str, *, model="mlp", hidden=None, dataset="digits", data_dir=None,
                chips=None, cores=None, neuron="lif"):  # fmt: skip
    """Fit report of the untrained dense network (every synapse present)."""
    from neuroprune.config import _parse_hidden
    from neuroprune.data import load_dataset
    from neuroprune.fit import check_fit

    profile = load_profile(chip)
    data = load_dataset(dataset, data_dir)
    from neuroprune.models import build_model, summarize  # torch only once the inputs are valid

    widths = _parse_hidden(hidden) if hidden else None
    net = build_model(model, data.input_shape, data.num_classes, hidden=widths, neuron=neuron)
    summary = summarize(net, data.input_shape, 1, name=model)
    return check_fit(summary, profile, chips=chips, cores=cores)


# ------------------------------------------------------------------------------------------
# fit


def run_fit(cfg: RunConfig, *, progress: Progress | None = None) -> RunOutcome:
    """Run every stage for ``cfg``; return the outcome (never raises for "does not fit").

    Under torchrun every rank trains (``neuroprune.distributed``); ranks > 0 write nothing and
    return after the last training stage, rank 0 goes on to fit, export, simulate and report.
    """
    with distributed.process_group(cfg.device):
        return _run_fit(cfg, progress)


def _run_fit(cfg: RunConfig, progress: Progress | None) -> RunOutcome:
    from neuroprune.budget import derive_budget
    from neuroprune.data import load_dataset
    from neuroprune.fit import allocation_capacity

    profile = load_profile(cfg.chip)
    dataset = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg))
    import torch

    from neuroprune.models import build_model, summarize  # torch only once the inputs are valid

    cfg = with_model_defaults(cfg)
    model = build_model(cfg.model, dataset.input_shape, dataset.num_classes, hidden=cfg.hidden,
                        neuron=cfg.neuron, seed=cfg.seed)  # fmt: skip
    if not isinstance(model, torch.nn.Sequential) and cfg.method not in STRUCTURED_METHODS:
        raise UnsupportedError(
            f"method {cfg.method!r} needs a Sequential chain model", where="--method",
            field="model", value=cfg.model, fix="Use --method sca with --model sew.",
        )  # fmt: skip
    dense_summary = summarize(model, dataset.input_shape, cfg.timesteps, name=cfg.model)
    capacity = allocation_capacity(dense_summary, profile, chips=cfg.chips, cores=cfg.cores)
    budget = derive_budget(profile, dense_summary, chips=cfg.chips, cores=cfg.cores,
                           budget=cfg.budget, sparsity=cfg.sparsity, capacity=capacity)  # fmt: skip
    run_dir = Path(cfg.out) / cfg.run_name
    run = _Run(cfg, run_dir, profile, progress or _noop, writes=distributed.is_main())
    if run.writes:
        _prepare_run_dir(run_dir, cfg, profile)
    run.report = _empty_report(cfg, profile, budget)
    run.emit("setup", f"{profile.name}: budget {budget.synapses:,} synapses ({budget.source}); "
                      f"dense network {dense_summary.synapses(profile.conv_weight_sharing):,} "
                      f"synapses, {dense_summary.neurons:,} neurons")  # fmt: skip
    model = _stage_dense(run, model, dataset)
    model = _stage_prune(run, model, dataset, budget)
    chain = isinstance(model, torch.nn.Sequential)
    if chain:
        model = _stage_quantize(run, model, dataset)
    if not run.writes:  # a torchrun worker: training is over, rank 0 does the rest
        return RunOutcome(run_dir, run.report, 0)
    fit_report = _stage_fit(run, model, dataset)
    sim_ok = True
    if chain:
        _stage_export(run, model, dataset)
        sim_ok = _stage_simulate(run, model, dataset)
    else:
        why = f"not supported for the {type(model).__name__} (residual) model yet"
        run.report["stages_not_run"] += [f"{stage}: {why}" for stage in CHAIN_ONLY_STAGES]
        run.emit("report", f"quantization, export and simulation {why}")
    _finish_report(run)
    exit_code = 0 if fit_report.fits and sim_ok else 1
    return RunOutcome(run_dir, run.report, exit_code)


def _prepare_run_dir(run_dir: Path, cfg: RunConfig, profile: ChipProfile) -> None:
    # A fresh run over an old one replaces each artifact atomically as its stage completes.
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "plots").mkdir(exist_ok=True)
    save_config(cfg, run_dir / "config.yaml", extra=_provenance(profile))
    write_text(run_dir / "profile.yaml", Path(profile.path).read_text())


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
    }


def _resumable(run: _Run, name: str) -> Path | None:
    path = run.run_dir / name
    reuse = distributed.from_main(run.cfg.resume and path.is_file())  # rank 0 decides
    return path if reuse else None


def _stage_dense(run: _Run, model, dataset):
    from neuroprune.artifacts import load_model, save_model
    from neuroprune.models import CheckpointCallback, evaluate, load_checkpoint, summarize, train

    cfg = run.cfg
    shared = run.profile.conv_weight_sharing
    done = _resumable(run, "dense.pt")
    if done:
        model, meta = load_model(done)
        run.history["dense"] = meta.get("history", [])
        run.emit("dense", "reused dense.pt (--resume)")
    else:
        ckpt_path = run.run_dir / "dense.ckpt"
        start, opt_state, history = 0, None, []
        if _resumable(run, ckpt_path.name):
            ckpt = load_checkpoint(ckpt_path)
            ckpt.restore(model)
            start, opt_state = ckpt.epoch, ckpt.optimizer_state
            history = list(ckpt.meta.get("history", []))
            run.emit("dense", f"resuming dense training after epoch {start}")
        run.emit("dense", f"training {cfg.model} on {cfg.dataset} for {cfg.epochs} epochs "
                          f"(T={cfg.timesteps}, {cfg.encoding} encoding)")  # fmt: skip
        result = train(
            model, dataset, train_config(cfg, cfg.epochs),
            callbacks=[CheckpointCallback(ckpt_path, initial_history=history)] if run.writes else [],
            progress=_epoch_progress(run, "dense"), start_epoch=start, optimizer_state=opt_state,
        )  # fmt: skip
        run.history["dense"] = history + [dict(h) for h in result.history]
        if run.writes:
            save_model(run.run_dir / "dense.pt", model, {"history": run.history["dense"]})
            ckpt_path.unlink(missing_ok=True)
    accuracy = evaluate(model, dataset.x_test, dataset.y_test, cfg.timesteps, cfg.encoding)
    summary = summarize(model, dataset.input_shape, cfg.timesteps)
    run.report["dense"] = _stage_record(summary, shared, accuracy)
    run.emit("dense", f"test accuracy {100 * accuracy:.2f} %")
    return model


def _stage_prune(run: _Run, model, dataset, budget):
    from neuroprune.artifacts import load_model, save_model
    from neuroprune.models import evaluate, summarize

    cfg = run.cfg
    shared = run.profile.conv_weight_sharing
    done = _resumable(run, "pruned.pt")
    if done:
        model, meta = load_model(done)
        run.history.update(meta.get("history", {}))
        run.emit("prune", "reused pruned.pt (--resume)")
    else:
        run.emit("prune", f"{cfg.method} to {budget.synapses:,} synapses, {cfg.prune_epochs} "
                          f"epochs + {cfg.finetune_epochs} fine-tuning epochs")  # fmt: skip
        result = _prune(run, model, dataset, budget)
        model = result.model
        run.history.update(_split_history(result.history))
        if run.writes:
            meta = {"history": _split_history(result.history), "method": cfg.method}
            save_model(run.run_dir / "pruned.pt", model, meta)
    accuracy = evaluate(model, dataset.x_test, dataset.y_test, cfg.timesteps, cfg.encoding)
    summary = summarize(model, dataset.input_shape, cfg.timesteps)
    run.report["pruned"] = {**_stage_record(summary, shared, accuracy), "method": cfg.method,
                            "scheduler": cfg.scheduler}  # fmt: skip
    run.emit("prune", f"{summary.synapses(shared):,} synapses kept, test accuracy "
                      f"{100 * accuracy:.2f} %")  # fmt: skip
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

        return prune_structured(model, dataset, config, then_stds=cfg.method == "sca+stds",
                                profile=run.profile, **common)  # fmt: skip
    return prune_to_budget(model, dataset, config, method=cfg.method, scheduler=cfg.scheduler,
                           **common)  # fmt: skip


def _split_history(history) -> dict[str, list]:
    """Split a pruning history into 'prune' and 'finetune' rows (by a ``phase`` key if any)."""
    out: dict[str, list] = {"prune": [], "finetune": []}
    for row in history:
        out["finetune" if row.get("phase") == "finetune" else "prune"].append(dict(row))
    return out


def _stage_quantize(run: _Run, model, dataset):
    from neuroprune.artifacts import load_model, save_model
    from neuroprune.models import evaluate, summarize
    from neuroprune.quantize import quantize_model

    cfg = run.cfg
    done = _resumable(run, "quantized.pt")
    if done:
        qmodel, meta = load_model(done)
        record = meta.get("record", {})
        run.emit("quantize", "reused quantized.pt (--resume)")
    else:
        run.emit("quantize", f"to {run.profile.weights.format} ({run.profile.weights.bits} bits) "
                             f"+ {cfg.quant_epochs} fine-tuning epochs")  # fmt: skip
        result = quantize_model(model, run.profile, dataset, train_config(cfg, cfg.quant_epochs),
                                finetune_epochs=cfg.quant_epochs,
                                progress=_epoch_progress(run, "quantize"))  # fmt: skip
        qmodel = result.model
        record = _quant_record(result)
        record["history"] = [dict(row) for row in getattr(result, "history", ())]
        if run.writes:
            save_model(run.run_dir / "quantized.pt", qmodel, {"record": record})
    run.history["quantize"] = list(record.pop("history", []))
    accuracy = evaluate(qmodel, dataset.x_test, dataset.y_test, cfg.timesteps, cfg.encoding)
    summary = summarize(qmodel, dataset.input_shape, cfg.timesteps)
    run.report["quantized"] = {**record, "accuracy": accuracy, "neurons": summary.neurons,
                               "synapses": summary.synapses(run.profile.conv_weight_sharing)}  # fmt: skip
    run.emit("quantize", f"test accuracy {100 * accuracy:.2f} % ({record.get('format')})")
    return qmodel


def _quant_record(result) -> dict[str, Any]:
    return {
        "format": result.format,
        "accuracy_float": result.accuracy_float,
        "accuracy_ptq": result.accuracy_ptq,
        "accuracy_qat": result.accuracy_qat,
        "layers": [dict(row) for row in result.layers],
        "notes": list(result.notes),
    }


def _stage_fit(run: _Run, model, dataset):
    from neuroprune.fit import check_fit
    from neuroprune.models import summarize

    summary = summarize(model, dataset.input_shape, run.cfg.timesteps)
    report = check_fit(summary, run.profile, chips=run.cfg.chips, cores=run.cfg.cores)
    data = report.as_dict()
    write_json(run.run_dir / "fit.json", data)
    run.report["fit"] = data
    verdict = "fits" if report.fits else f"does NOT fit ({len(report.violations)} violations)"
    run.emit("fit", f"{verdict}: {report.cores_used} core(s), {report.chips_needed} chip(s)")
    return report


def _stage_export(run: _Run, model, dataset) -> None:
    from neuroprune.export import export_nir, export_onnx

    cfg = run.cfg
    nir_path = export_nir(model, run.run_dir / "model.nir", timesteps=cfg.timesteps,
                          encoding=cfg.encoding, input_shape=dataset.input_shape,
                          chip=run.profile.id)  # fmt: skip
    onnx_path = export_onnx(model, run.run_dir / "model.onnx", timesteps=cfg.timesteps,
                            input_shape=dataset.input_shape)  # fmt: skip
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
    run.emit("simulate", f"{cfg.backend} backend, {'fixed' if fixed else 'floating'} point, "
                         f"{samples} test samples")  # fmt: skip
    x, y = simulation_input(dataset, samples), dataset.y_test[:samples]
    # Fixed point gates on the bit-exact integer emulation (must be 100 %) and reports the
    # drift from the float PyTorch model; floating point gates on the PyTorch model itself.
    result = simulate(run.run_dir / "model.nir", x=x, y=y, profile=run.profile,
                      backend=cfg.backend, fixed_point=fixed, timeout=cfg.sim_timeout,
                      expected_counts=_bit_exact_check(cfg.backend, fixed),
                      reference_model=model)  # fmt: skip
    data = result.as_dict()
    write_json(run.run_dir / "simulation.json", data)
    run.report["simulation"] = data
    agreement = data.get("spike_agreement")
    drift = data.get("model_spike_agreement")
    versus = "the bit-exact emulation" if fixed else "the PyTorch model"
    extra = f"; {100 * drift:.2f} % vs the float PyTorch model" if drift is not None else ""
    run.emit("simulate", f"spike agreement {100 * (agreement or 0):.2f} % vs {versus}{extra}, "
                         f"{1000 * (data.get('seconds_per_sample') or 0):.2f} ms/sample")  # fmt: skip
    return verification_passed(data, cfg.agreement_threshold)


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
    from neuroprune.reports.plots import core_usage, layer_sparsity, spike_rates, training_curves

    plots = run.run_dir / "plots"
    files = [training_curves(run.history, plots / "training.png")]
    if run.report.get("pruned"):
        files.append(layer_sparsity(run.report["pruned"]["layers"], plots / "layer_sparsity.png"))
    sim = run.report.get("simulation") or {}
    if sim.get("layers"):
        files.append(spike_rates(sim["layers"], plots / "spike_rates.png"))
    if run.report.get("fit"):
        core = run.profile.core
        limits = {"neurons": core.neurons_max, "input_axons": core.input_axons_max,
                  "memory_bits": core.synapse_memory_bits}  # fmt: skip
        files.append(core_usage(run.report["fit"]["per_core"], limits, plots / "cores.png"))
    run.report["history"] = run.history
    run.report["plots"] = [str(p.relative_to(run.run_dir)) for p in files]
    write_json(run.run_dir / "report.json", run.report)
    write_text(run.run_dir / "report.md", report_markdown(run.report))
    run.emit("report", f"wrote report.json, report.md and {len(files)} plots")


# ------------------------------------------------------------------------------------------
# Commands on a saved run


def load_report(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise ArtifactError("no report.json in this run directory", where=str(run_dir),
                            fix="Run 'neuroprune fit' first, or check the path.")  # fmt: skip
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"report.json is corrupt ({exc.msg})", where=str(path)) from exc


def _run_config(run_dir: Path) -> RunConfig:
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ArtifactError("not a run directory (no config.yaml)", where=str(run_dir),
                            fix="Pass a folder written by 'neuroprune fit'.")  # fmt: skip
    try:
        raw = yaml.safe_load(path.read_text())["config"]
    except Exception as exc:
        raise ArtifactError("config.yaml is unreadable", where=str(path)) from exc
    raw["hidden"] = tuple(raw["hidden"]) if raw.get("hidden") else None
    return RunConfig(**raw)


def _final_model(run_dir: Path):
    from neuroprune.artifacts import load_model

    for name in ("quantized.pt", "pruned.pt", "dense.pt"):
        path = Path(run_dir) / name
        if path.is_file():
            return load_model(path)[0]
    raise ArtifactError("no model in this run directory", where=str(run_dir),
                        fix="Run 'neuroprune fit' first.")  # fmt: skip


def export_run(run_dir: Path, fmt: str, out: Path | None) -> Path:
    """Export the run's final model (quantized, else pruned, else dense) to NIR or ONNX."""
    from neuroprune.data import load_dataset
    from neuroprune.export import export_nir, export_onnx

    cfg = _run_config(run_dir)
    model = _final_model(run_dir)
    shape = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg)).input_shape
    target = out or Path(run_dir) / f"model.{fmt}"
    if fmt == "nir":
        return export_nir(model, target, timesteps=cfg.timesteps, encoding=cfg.encoding,
                          input_shape=shape, chip=Path(cfg.chip).stem)  # fmt: skip
    return export_onnx(model, target, timesteps=cfg.timesteps, input_shape=shape)


def simulate_target(target: Path, *, chip=None, backend="lava", samples=None, fixed_point=None,
                    dataset=None, data_dir=None, timeout=None):  # fmt: skip
    """Simulate a run directory's model.nir or a .nir file on the dataset's test split."""
    from neuroprune.data import load_dataset, simulation_input
    from neuroprune.sim import simulate

    target = Path(target)
    reference = None
    if target.is_dir():
        cfg = _run_config(target)
        chip, dataset = chip or cfg.chip, dataset or cfg.dataset
        data_dir = data_dir or cfg.data_dir
        nir_path = target / "model.nir"
        reference = _final_model(target)
    else:
        nir_path = target
    if not nir_path.is_file():
        raise ArtifactError("NIR file not found", where=str(nir_path),
                            fix="Export first: neuroprune export RUN_DIR --format nir.")  # fmt: skip
    profile = load_profile(chip) if chip else None
    events = event_options(cfg) if target.is_dir() else None
    data = load_dataset(dataset or "digits", data_dir, events)
    n = samples or len(data.x_test)
    if fixed_point is None:
        fixed_point = bool(profile and _fixed_by_default(profile))
    return simulate(nir_path, x=simulation_input(data, n), y=data.y_test[:n], profile=profile,
                    backend=backend, fixed_point=fixed_point, timeout=timeout,
                    expected_counts=_bit_exact_check(backend, fixed_point),
                    reference_model=reference)  # fmt: skip


def run_sweep(chip: str, *, budgets=None, sparsities=None, method="stds", out="runs"):
    """One fit run per budget (or sparsity); returns table rows and the plot path."""
    from neuroprune.reports.plots import sweep_plot

    values = [v for v in (budgets or sparsities).split(",") if v.strip()]
    key = "budget" if budgets else "sparsity"
    rows = []
    for value in values:
        try:
            parsed = int(value) if key == "budget" else float(value)
        except ValueError as exc:
            raise ConfigError(f"not a number in --{key}s", field=key, value=value) from exc
        cfg = RunConfig(chip=chip, method=method, out=out, backend="none",
                        name=f"sweep-{Path(chip).stem}-{method}-{key}{value}",
                        **{key: parsed})  # fmt: skip
        report = run_fit(cfg).report
        pruned, quant = report["pruned"], report["quantized"]
        rows.append({
            "budget": report["budget"]["synapses"],
            "sparsity": 1 - pruned["synapses"] / max(report["dense"]["synapses"], 1),
            "accuracy": pruned["accuracy"],
            "quantized_accuracy": quant and quant["accuracy"],
            "fits": report["fit"]["fits"],
        })  # fmt: skip
    plot = sweep_plot(rows, Path(out) / f"sweep-{Path(chip).stem}-{method}.png")
    write_json(Path(out) / f"sweep-{Path(chip).stem}-{method}.json", rows)
    return rows, plot


__all__ = [
    "RunOutcome", "check_dense", "export_run", "load_report", "run_fit", "verification_passed",
    "run_sweep", "simulate_target", "train_config",
]  # fmt: skip
