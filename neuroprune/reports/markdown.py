"""report.md (layer L7): the run report as Markdown for people, from the typed
:class:`~neuroprune.run.rundir.RunRecord` (report.json) and its typed sections and rows."""

from __future__ import annotations

from typing import Any

from neuroprune.run.rundir import (
    FitRecord,
    QuantizedRecord,
    RunRecord,
    SimulationRecord,
    StageRecord,
)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f} %"


def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += [
        "| " + " | ".join(_num(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows
    ]
    return "\n".join(lines)


def report_markdown(record: RunRecord) -> str:
    """Render the sections: verdict (with what the simulation verified and the accuracy gate),
    warnings, budget, stages, per layer, fit, simulation, plots."""
    out = [f"# neuroprune run on {record.chip_name or record.chip}", ""]
    if record.fit is not None:
        out.append(_verdict(record.fit))
    sim = record.simulation
    if sim is not None and sim.verification is not None:
        out += ["", f"Verification: **{sim.verification.kind}** — {sim.verification.detail}."]
    out += _gate(record)
    out += _warnings(record)
    out += [
        "",
        f"Budget: {_num(record.budget.synapses)} synapses ({record.budget.source}).",
        f"Counting: {record.counting or ''}.",
    ]
    if record.budget.core_blocks:
        out.append(
            "Core blocks (the projection pruned these layers into blocks of neurons that each "
            "fit one core): " + "; ".join(record.budget.core_blocks) + "."
        )
    out += _validation(record)
    out += ["", "## Stages", ""]
    out.append(_stages(record))
    if record.pruned is not None and record.pruned.layers:
        out += ["", "## Per layer after pruning", "", _pruned_layers(record.pruned)]
    if record.quantized is not None and record.quantized.layers:
        out += _quantization(record.quantized)
    if record.fit is not None:
        out += _fit(record.fit)
    if record.simulation is not None:
        out += _simulation(record.simulation)
    if record.stages_not_run:
        out += ["", "Not run: " + "; ".join(record.stages_not_run) + "."]
    if record.plots:
        out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in record.plots]
    return "\n".join(out) + "\n"


def _validation(record: RunRecord) -> list[str]:
    """The validation part: its size, held out before any training, what reads it."""
    val = record.validation
    if val is None:
        return []
    total = val.samples + val.train_samples
    return [
        f"Validation: {_num(val.samples)} of {_num(total)} training samples held out before "
        f"any training (seed {val.seed}, cut {val.digest}); no stage trained on them; every "
        "keep/revert and early-stop decision read them, the test split none.",
    ]


def _gate(record: RunRecord) -> list[str]:
    gate = record.accuracy_gate
    if gate is None:
        return []
    if not gate.passed:
        return ["", f"**Does not meet**: {gate.reason}."]
    drop = "not measured" if gate.drop is None else f"{gate.drop:.2f} points lost"
    return ["", f"Meets --max-accuracy-drop {gate.max_drop:g} ({drop})."]


def _warnings(record: RunRecord) -> list[str]:
    """``## Warnings``: one line per warning (kind, stage, message), or that there are none."""
    out = ["", "## Warnings", ""]
    if not record.warnings:
        return out + ["None."]
    return out + [f"- **{w.kind}** ({w.stage}): {w.message}." for w in record.warnings]


def _verdict(fit: FitRecord) -> str:
    verdict = "**fits**" if fit.fits else "**does not fit**"
    return (
        f"Verdict: {verdict} — {fit.cores} core(s) used of {fit.cores_allocated} "
        f"allocated, {fit.chips} chip(s) needed."
    )


def _stages(record: RunRecord) -> str:
    rows: list[list[Any]] = [
        [
            name,
            _pct(rec.accuracy),
            rec.synapses,
            rec.neurons,
            f"skipped: {rec.skipped}" if rec.skipped else "",
        ]
        for name, rec in (
            ("dense", record.dense),
            ("pruned", record.pruned),
            ("quantized", record.quantized),
        )
        if rec is not None
    ]
    return _table(["stage", "test accuracy", "synapses", "neurons", "note"], rows)


def _pruned_layers(pruned: StageRecord) -> str:
    return _table(
        ["layer", "neurons", "synapses", "dense", "sparsity", "max fan-in", "mean fan-in"],
        [
            [
                r.layer,
                r.neurons,
                r.synapses,
                r.dense,
                _pct(r.sparsity),
                r.max_fan_in,
                r.mean_fan_in,
            ]
            for r in pruned.layers
        ],
    )


def _quantization(quant: QuantizedRecord) -> list[str]:
    out = ["", f"## Quantization ({quant.format})", ""]
    out.append(
        _table(
            ["layer", "scale", "clipped", "max abs err", "mean abs err"],
            [
                [
                    r.layer,
                    r.weight_scale,
                    _pct(r.clipped_fraction),
                    r.max_abs_error,
                    r.mean_abs_error,
                ]
                for r in quant.layers
            ],
        )
    )
    out.append("")
    arith = quant.arithmetic
    out.append(
        f"Test accuracy ({'chip arithmetic ' + arith if arith else 'float neurons'}): "
        f"float {_pct(quant.accuracy_float)}, post-training "
        f"{_pct(quant.accuracy_ptq)}, after fine-tuning "
        f"{_pct(quant.accuracy_qat)}."
    )
    qat = quant.qat
    if qat.decision in ("kept", "reverted"):
        out.append(
            f"Fine-tuning {qat.decision} on the validation part "
            f"({qat.val_samples} training samples held out before any training, never trained "
            f"on): validation {_pct(qat.val_ptq)} post-training vs {_pct(qat.val_qat)} "
            f"fine-tuned (best epoch {qat.best_epoch} of {qat.epochs_run} run"
            + (f", {qat.epochs_asked} asked" if qat.epochs_asked is not None else "")
            + ")"
            + (f"; {qat.reason}" if qat.reason else "")
            + (f"; {qat.stopped}" if qat.stopped else "")
            + "."
        )
    out += [f"- {n}" for n in quant.notes]
    return out


def _fit(fit: FitRecord) -> list[str]:
    out = ["", "## Fit", ""]
    if fit.violations:
        out.append(
            _table(
                ["rule", "layer", "limit", "actual", "hint"],
                [[v.rule, v.layer, v.limit, v.actual, v.hint] for v in fit.violations],
            )
        )
    else:
        out.append("No violations.")
    util = ", ".join(f"{k} {_pct(v)}" for k, v in fit.utilisation.items())
    out.append(f"\nUtilisation of the cores used: {util}.")
    if fit.cores_set_by is not None:
        out.append(f"\nCore count set by {fit.cores_set_by.detail}.")
    return out


def _simulation(sim: SimulationRecord) -> list[str]:
    kind = sim.verification.kind if sim.verification is not None else "kind not recorded"
    out = ["", f"## Simulation ({sim.backend}, {sim.mode or ''}, {kind})", ""]
    if sim.verification is not None:
        out += [f"Every figure below is **{kind}**: {sim.verification.proves}.", ""]
    out.append(
        f"{sim.samples} samples; spike agreement {_pct(sim.spike_agreement)}; "
        f"prediction agreement {_pct(sim.prediction_agreement)}; accuracy "
        f"{_pct(sim.accuracy)}; {_num((sim.seconds_per_sample or 0) * 1000)} "
        f"ms per sample."
    )
    if sim.agreement_source:
        out.append(
            f"Agreement is measured against: {sim.agreement_source} (per layer: the "
            "fraction of samples whose every neuron's spike count is identical)."
        )
    if sim.model_agreement is not None:
        drift = ", ".join(f"{100 * a:.2f} %" for a in sim.model_agreement)
        counts = ", ".join(f"{100 * a:.2f} %" for a in sim.model_count_agreement or [])
        out.append(
            f"Trained quantized PyTorch model vs this run: samples with identical "
            f"counts per layer {drift}; identical per-neuron counts {counts}; "
            f"prediction agreement {_pct(sim.model_prediction_agreement)}."
        )
    if sim.float_drift is not None:
        fd = sim.float_drift
        layers = ", ".join(f"{100 * a:.2f} %" for a in fd.layer_agreement)
        out.append(
            f"Float-to-chip drift (the same weights on float neurons): samples with "
            f"identical counts per layer {layers}; prediction agreement "
            f"{_pct(fd.prediction_agreement)}; float accuracy "
            f"{_pct(fd.accuracy)}."
        )
    out += [f"- {n}" for n in sim.notes]
    if sim.synops_per_sample is not None:
        energy = sim.energy_per_sample_j
        out.append(
            f"Synaptic operations per sample: {_num(sim.synops_per_sample)}"
            + (f"; energy estimate {energy * 1e9:.3g} nJ per sample." if energy else ".")
        )
    if sim.layers:
        out.append("")
        out.append(
            _table(
                ["layer", "spikes/sample", "rate", "agreement"],
                [[r.layer, r.spikes_per_sample, r.rate, _pct(r.agreement)] for r in sim.layers],
            )
        )
    return out
