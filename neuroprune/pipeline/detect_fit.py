"""``neuroprune fit`` for the spiking detector (``--model detector``, ``--dataset spikecam-digits``
or ``spikecam``): the detection branch of :func:`neuroprune.pipeline.run.run_fit`.

Stages, as for a classifier, with mAP in place of accuracy:

1. **dense**: :func:`neuroprune.train.detect.train_detector` for ``--epochs``;
2. **prune** to ``B = min(B_chip, floor(f * S_dense))`` synapses (``f = --params``, ``S`` counted
   with conv weight sharing by :func:`neuroprune.pipeline.detect.shared_synapses`; ``B_chip`` the
   allocation's budget, ``--budget``/``--sparsity`` included): ``sca+stds`` ends at exactly ``B``,
   ``sca`` at ``<= B`` (:mod:`neuroprune.pipeline.detect`, ADD-joined channels pruned together),
   ``stds`` (unstructured, every channel kept) at exactly ``B``;
   nothing is pruned when ``B >= S_dense``;
3. **quantize**: post-training quantization to the chip's weights
   (:func:`neuroprune.quantize.model.ptq_model`; no QAT epochs for the detector);
4. **fit** check, **export** model.nir (the quantized model) and model.onnx (the pruned float
   model, whose head spikes ONNX reproduces: ``tests/test_detector_deploy.py``), **simulate**
   model.nir in fixed point (``reference``: against the quantized torch model; ``lava``:
   against the bit-exact emulation), the gate being ``--agreement-threshold``;
5. **report**: report.json (``map_50`` = mAP@0.5 and ``map`` = mAP@0.5:0.95 per stage, in
   ``[0, 1]``, by torchmetrics' ``MeanAveragePrecision``) and report.md with the mAP-per-stage
   plot and the predicted boxes on four test scenes.

Scenes: ``--scenes N`` training scenes (``max(4, N // 4)`` test scenes), ``--timesteps`` frames.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import EXIT_DOES_NOT_FIT, EXIT_OK, ConfigError
from neuroprune.core.progress import Progress, emit
from neuroprune.data.spikecam import DETECTION_DATASETS, SpikecamOptions, load_detection_dataset
from neuroprune.pipeline.config import RunConfig
from neuroprune.pipeline.context import RunOutcome
from neuroprune.pipeline.preflight import check_backend
from neuroprune.run.rundir import RunDir

DETECT_METHODS = ("sca", "sca+stds", "stds")
DEFAULT_SCENES = 512
BOX_SCENES = 4  # test scenes drawn in plots/detection_boxes.png


def is_detection(cfg: RunConfig) -> bool:
    """The run trains the detector (the model or the dataset says so)."""
    return cfg.model == "detector" or cfg.dataset in DETECTION_DATASETS


def check_detection_config(cfg: RunConfig) -> None:
    """A detection run needs both the detector and a detection dataset, and a channel
    pruning method; one line naming the field otherwise (before anything is written)."""
    if cfg.model != "detector":
        raise ConfigError(
            "a detection dataset is trained with the detector only",
            where="config", field="model", value=cfg.model, fix="Use --model detector.",
        )  # fmt: skip
    if cfg.dataset not in DETECTION_DATASETS:
        raise ConfigError(
            "the detector trains on a detection dataset only",
            where="config", field="dataset", value=cfg.dataset,
            fix=f"Use --dataset {' or '.join(DETECTION_DATASETS)}.",
        )  # fmt: skip
    if cfg.method not in DETECT_METHODS:
        raise ConfigError(
            "the detector is pruned by sca, sca+stds (channels, ADD-joined ones together) or stds",
            where="config", field="method", value=cfg.method,
            fix=f"Use --method {' or '.join(DETECT_METHODS)}.",
        )  # fmt: skip
    check_backend(cfg.backend)


def run_detection_fit(
    cfg: RunConfig, *, progress: Progress | None = None, command: str | None = None
) -> RunOutcome:
    """Every stage of the module docstring; the run is published like a classifier's."""
    check_detection_config(cfg)
    profile = load_profile(cfg.chip)
    scenes = cfg.scenes or DEFAULT_SCENES
    options = SpikecamOptions(
        train_scenes=scenes,
        test_scenes=max(BOX_SCENES, scenes // 4),
        timesteps=cfg.timesteps or SpikecamOptions.timesteps,
        seed=cfg.seed,
    )
    data = load_detection_dataset(cfg.dataset, cfg.data_dir, options)
    target = RunDir.of(cfg.out, cfg.run_name)
    with target.build(resumable=False) as build:
        log = _Log(build.staging, progress)
        report = _stages(cfg, profile, data, build.staging, log)
        report["command"] = command
        build.staging.plots.mkdir(exist_ok=True)
        report["plots"] = _plots(build.staging, data, report.pop("_models"), report)
        (build.staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (build.staging / "report.md").write_text(detection_markdown(report))
        log("report", "wrote report.json, report.md and 2 plots")
        (build.staging / "log.txt").write_text("\n".join(log.lines) + "\n")
        path = build.publish()
    code = EXIT_OK if report["fits"] and report["verified"] else EXIT_DOES_NOT_FIT
    return RunOutcome(path, report, code)


class _Log:
    """The run's log lines (log.txt) and progress events."""

    def __init__(self, rundir: RunDir, progress: Progress | None) -> None:
        self.lines: list[str] = []
        self.progress = progress

    def __call__(self, stage: str, message: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {stage}: {message}")
        emit(self.progress, stage=stage, message=message)

    def epochs(self, stage: str, total: int):
        """A bar of ``total`` epochs for ``stage``; the returned callable takes
        :func:`neuroprune.train.detect.train_detector`'s ``{"event": "epoch", ...}`` rows."""
        emit(self.progress, stage=stage, total=total, unit="epochs")

        def forward(row: dict[str, Any]) -> None:
            shown = {k: row[k] for k in ("epoch", "loss") if k in row}
            emit(self.progress, stage=stage, advance=1, epochs=total, **shown)

        return forward


def _stages(cfg: RunConfig, profile, data, rundir: RunDir, log: _Log) -> dict[str, Any]:
    """Train, prune, quantize, check, export, simulate; the report.json sections."""
    import copy

    import numpy as np

    from neuroprune.export.nir_export import export_nir
    from neuroprune.export.onnx_export import export_onnx
    from neuroprune.models.detector import build_detector
    from neuroprune.pipeline.detect import (
        prune_detector_channels,
        prune_detector_sca_stds,
        prune_detector_stds,
    )
    from neuroprune.pipeline.detect import shared_synapses as synapses_of
    from neuroprune.quantize.model import ptq_model
    from neuroprune.train.detect import DetectTrainConfig, train_detector

    shape = data.input_shape
    widths = {} if cfg.hidden is None else {"stages": tuple((int(w), 1) for w in cfg.hidden)}
    # build_detector seeds its own forked RNG (the zoo's build_model would leave it at 0)
    model = build_detector(shape, data.num_classes, neuron=cfg.neuron, seed=cfg.seed, **widths)
    train = DetectTrainConfig(
        epochs=cfg.epochs or DetectTrainConfig.epochs,
        lr=cfg.lr or DetectTrainConfig.lr,
        batch_size=cfg.batch_size or DetectTrainConfig.batch_size,
        seed=cfg.seed,
    )
    dense_synapses = synapses_of(model, shape)
    budget, source = _budget(cfg, profile, model, shape, dense_synapses)
    log("setup", f"{profile.name}: budget {budget:,} synapses ({source}); dense {dense_synapses:,}")
    started = time.perf_counter()
    log("dense", f"training the detector on {cfg.dataset} for {train.epochs} epochs")
    train_detector(model, data, train, progress=log.epochs("dense", train.epochs))
    stages: dict[str, dict[str, Any]] = {"dense": _measure(model, data, started)}
    _save_state(rundir, "dense", model)
    log("dense", _line(stages["dense"]))
    started = time.perf_counter()
    if budget < dense_synapses:
        prune = {
            "sca": prune_detector_channels,
            "sca+stds": prune_detector_sca_stds,
            "stds": prune_detector_stds,
        }[cfg.method]
        log("prune", f"{cfg.method} to {budget:,} synapses")
        pruned = prune(
            copy.deepcopy(model), data, train, params_fraction=budget / dense_synapses,
            synapses=budget, epochs=cfg.prune_epochs, finetune_epochs=cfg.finetune_epochs,
        )  # fmt: skip
        skipped = None
    else:
        pruned, skipped = model, f"the budget holds all {dense_synapses:,} dense synapses"
        log("prune", f"skipped: {skipped}")
    pruned.eval()
    stages["pruned"] = {**_measure(pruned, data, started), "method": cfg.method}
    if skipped:
        stages["pruned"]["skipped"] = skipped
    _save_state(rundir, "pruned", pruned)
    log("prune", _line(stages["pruned"]))
    started = time.perf_counter()
    quantized, _ = ptq_model(pruned, profile, shape)
    stages["quantized"] = {**_measure(quantized, data, started), "chip": profile.id}
    _save_state(rundir, "quantized", quantized)
    log("quantize", f"to {profile.name}'s weights (post-training): " + _line(stages["quantized"]))
    fit = _fit_check(quantized, profile, cfg, shape, data.timesteps)
    log("fit", f"fits: {fit['fits']}, {fit['cores_used']} core(s)")
    steps = {"timesteps": data.timesteps, "input_shape": shape}
    nir = export_nir(quantized, rundir / "model.nir", encoding="events", chip=profile.id, **steps)
    export_onnx(pruned, rundir / "model.onnx", **steps)
    log("export", "wrote model.nir, model.onnx")
    x = np.asarray(data.x_test[: cfg.samples]).transpose(1, 0, 2, 3, 4).astype(np.float32)
    simulation = _simulate(cfg, profile, nir, x, quantized, log)
    verified = simulation is None or simulation["spike_agreement"] >= cfg.agreement_threshold
    for stage in stages.values():
        stage["map_50_drop_points"] = None
    for name in ("pruned", "quantized"):
        stages[name]["map_50_drop_points"] = 100 * (
            stages["dense"]["map_50"] - stages[name]["map_50"]
        )
    return {
        "task": "detect",
        "chip": profile.id,
        "chip_name": profile.name,
        "config": cfg.as_dict(),
        "dataset": {"train_scenes": data.train_size, "test_scenes": len(data.x_test),
                    "timesteps": data.timesteps, "input_shape": list(shape)},
        "budget": {"synapses": budget, "source": source, "dense_synapses": dense_synapses,
                   "binds": budget < dense_synapses},
        "metric": "COCO mAP by torchmetrics MeanAveragePrecision: map_50 (IoU 0.5), "
                  "map (IoU 0.50:0.05:0.95), in [0, 1]",
        **stages,
        "fit": fit,
        "artifacts": {"nir": "model.nir", "onnx": "model.onnx"},
        "simulation": simulation,
        "fits": fit["fits"],
        "verified": verified,
        "_models": {"dense": model, "pruned": pruned, "quantized": quantized},
    }  # fmt: skip


def _save_state(rundir: RunDir, stage: str, model) -> None:
    """``detector_<stage>.pt``: the model's ``state_dict`` (torch tensors only, loadable with
    ``torch.load(weights_only=True)``; the run's safe model files do not hold the detector)."""
    import torch

    torch.save(model.state_dict(), rundir / f"detector_{stage}.pt")


def _budget(cfg: RunConfig, profile, model, shape, dense: int) -> tuple[int, str]:
    """``(B, source)``: the smallest of the allocation's budget and ``floor(params * dense)``."""
    from neuroprune.fit.allocation import Allocation, allocation_budget
    from neuroprune.models import summarize

    summary = summarize(model, shape, cfg.timesteps or SpikecamOptions.timesteps, name="detector")
    chip = allocation_budget(
        summary, profile, Allocation(cfg.chips, cfg.cores, cfg.budget, cfg.sparsity)
    )
    budget, source = min(chip.synapses, dense), chip.source
    if cfg.params is not None and int(cfg.params * dense) < budget:
        budget, source = max(1, int(cfg.params * dense)), f"--params {cfg.params:g}"
    return budget, source


def _measure(model, data, started: float) -> dict[str, Any]:
    """mAPs on the test scenes, synapses (conv weight sharing), stage wall seconds."""
    from neuroprune.pipeline.detect import shared_synapses
    from neuroprune.train.detect import mean_average_precision, parameter_count

    return {
        **mean_average_precision(model, data),
        "synapses": shared_synapses(model, data.input_shape),
        "params": parameter_count(model),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"mAP@0.5 {100 * row['map_50']:.2f} %, mAP@0.5:0.95 {100 * row['map']:.2f} %, "
        f"{row['synapses']:,} synapses"
    )


def _fit_check(model, profile, cfg: RunConfig, shape, timesteps: int) -> dict[str, Any]:
    from neuroprune.fit.rules import check_fit
    from neuroprune.models import summarize

    summary = summarize(model, shape, timesteps, name="detector")
    report = check_fit(summary, profile, chips=cfg.chips, cores=cfg.cores)
    return {"fits": report.fits, "cores_used": report.cores_used, "chips": report.chips_needed,
            "violations": [f"{v.rule} ({v.layer}): {v.actual} > {v.limit}" for v in report.violations]}  # fmt: skip


def _simulate(cfg: RunConfig, profile, nir: Path, x, quantized, log: _Log):
    """Fixed-point simulation of model.nir; None with ``--backend none``."""
    from neuroprune.sim.api import simulate

    if cfg.backend == "none":
        return None
    against = {"reference_model": quantized} if cfg.backend == "reference" else {}
    if cfg.backend != "reference":
        against = {"expected_counts": "reference"}
    result = simulate(nir, x=x, profile=profile, backend=cfg.backend, fixed_point=True,
                      timeout=cfg.sim_timeout, **against)  # fmt: skip
    data = result.as_dict()
    log("simulate", f"{cfg.backend}: spike agreement {100 * data['spike_agreement']:.2f} % "
        f"on {x.shape[1]} test scenes")  # fmt: skip
    return {
        k: data.get(k)
        for k in (
            "backend",
            "mode",
            "spike_agreement",
            "layers",
            "agreement_source",
            "samples",
            "seconds_per_sample",
        )
    }


def _plots(rundir: RunDir, data, models: dict[str, Any], report: dict[str, Any]) -> list[str]:
    from neuroprune.reports.plots import detection_boxes, map_per_stage
    from neuroprune.train.detect import predict_boxes

    rows = {name: report[name] for name in models}
    files = [map_per_stage(rows, rundir.plots / "map_per_stage.png")]
    scenes = list(range(min(BOX_SCENES, len(data.x_test))))
    found = predict_boxes(models["quantized"], data.x_test[scenes], conf=0.1)
    targets = [data.targets("test", n) for n in scenes]
    files.append(detection_boxes(data.x_test[scenes], found, targets, data.class_names,
                                 rundir.plots / "detection_boxes.png"))  # fmt: skip
    return [str(Path(f).relative_to(rundir.path)) for f in files]


def detection_markdown(report: dict[str, Any]) -> str:
    """report.md of a detection run: the stages' mAPs, budget, fit, simulation, plots."""
    lines = [
        f"# Detector on {report['chip_name']} ({report['chip']})",
        "",
        f"Budget: {report['budget']['synapses']:,} synapses ({report['budget']['source']}); "
        f"dense {report['budget']['dense_synapses']:,}.",
        "",
        "| stage | mAP@0.5 | mAP@0.5:0.95 | synapses | seconds |",
        "|---|---|---|---|---|",
    ]
    for name in ("dense", "pruned", "quantized"):
        row = report[name]
        lines.append(
            f"| {name} | {100 * row['map_50']:.2f} % | {100 * row['map']:.2f} % | "
            f"{row['synapses']:,} | {row['seconds']} |"
        )
    lines += ["", report["metric"] + ".", ""]
    lines.append(f"Fit: {'fits' if report['fits'] else 'does NOT fit'}, "
                 f"{report['fit']['cores_used']} core(s).")  # fmt: skip
    sim = report["simulation"]
    if sim is not None:
        lines.append(f"Simulation ({sim['backend']}, {sim['mode']}): spike agreement "
                     f"{100 * sim['spike_agreement']:.2f} % vs {sim['agreement_source']}.")  # fmt: skip
    lines += ["", "![mAP per stage](plots/map_per_stage.png)", "",
              "![Predicted (red) and true (green) boxes](plots/detection_boxes.png)", ""]  # fmt: skip
    return "\n".join(lines)


def detection_summary(report: dict[str, Any], run_dir: Path) -> str:
    """The lines ``neuroprune fit`` prints at the end of a detection run."""
    rows = [f"{name}: {_line(report[name])}" for name in ("dense", "pruned", "quantized")]
    sim = report["simulation"]
    if sim is not None:
        rows.append(f"simulation ({sim['backend']}): spike agreement "
                    f"{100 * sim['spike_agreement']:.2f} %")  # fmt: skip
    fits = "fits" if report["fits"] else "does NOT fit"
    rows.append(f"{report['chip_name']}: {fits}; run {run_dir} (report.md)")
    return "\n".join(rows)
