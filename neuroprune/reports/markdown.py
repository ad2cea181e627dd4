"""report.md (layer L7): the run report as Markdown for people, from the typed
:class:`~neuroprune.run.rundir.RunRecord` (report.json) and its typed sections and rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neuroprune.reports.neurobench_section import neurobench_markdown
from neuroprune.reports.units import agreement_words, copies_sentence, energy_line, format_words
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


Section = Callable[[RunRecord], list[str]]


def report_markdown(record: RunRecord) -> str:
    """report.md: each of :data:`SECTIONS` in order (a section returns its lines, none when it
    has nothing to say). Another section is one function added to :data:`SECTIONS`."""
    out: list[str] = []
    for section in SECTIONS:
        out += section(record)
    return "\n".join(out) + "\n"


def _run_name(record: RunRecord) -> str | None:
    deployment = record.deployment
    return None if deployment is None else deployment.resolved.get("name")


def _heading(record: RunRecord) -> list[str]:
    """Title (run and chip), verdict, what the simulation verified, the accuracy gate."""
    name = _run_name(record)
    chip = record.chip_name or record.chip
    out = [f"# neuroprune run {name} on {chip}" if name else f"# neuroprune run on {chip}", ""]
    if record.fit is not None:
        out.append(_verdict(record.fit))
    sim = record.simulation
    if sim is not None and sim.verification is not None:
        out += ["", f"Verification: **{sim.verification.kind}** — {sim.verification.detail}."]
    return out + _gate(record)


def _budget(record: RunRecord) -> list[str]:
    """The budget, the counting convention, the core blocks, the validation part."""
    out = [
        "",
        f"Budget: {_num(record.budget.synapses)} synapses ({record.budget.source}).",
        f"Counting: {record.counting or ''}.",
    ]
    if record.budget.core_blocks:
        out.append(
            "Core blocks (the projection pruned these layers into blocks of neurons that each "
            "fit one core): " + "; ".join(record.budget.core_blocks) + "."
        )
    return out + _validation(record)


def _stage_section(record: RunRecord) -> list[str]:
    return ["", "## Stages", "", _stages(record)]


def _pruned_section(record: RunRecord) -> list[str]:
    if record.pruned is None or not record.pruned.layers:
        return []
    return ["", "## Per layer after pruning", "", _pruned_layers(record.pruned)]


def _quantization_section(record: RunRecord) -> list[str]:
    if record.quantized is None or not record.quantized.layers:
        return []
    return _quantization(record.quantized)


def _fit_section(record: RunRecord) -> list[str]:
    return [] if record.fit is None else _fit(record.fit)


def _simulation_section(record: RunRecord) -> list[str]:
    if record.simulation is None:
        return []
    return _simulation(record.simulation, record.chip_name or record.chip)


def _not_run(record: RunRecord) -> list[str]:
    if not record.stages_not_run:
        return []
    return ["", "Not run: " + "; ".join(record.stages_not_run) + "."]


def _plots(record: RunRecord) -> list[str]:
    if not record.plots:
        return []
    return ["", "## Plots", ""] + [f"![{p}]({p})" for p in record.plots]


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
    return out + [
        f"- **{w.kind.replace('_', ' ')}** ({w.stage}): {w.message}." for w in record.warnings
    ]


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
    bits = next((getattr(r, "bits", None) for r in quant.layers), None)
    width = f", {bits} bit{'s' if bits != 1 else ''} stored per weight" if bits else ""
    out = ["", f"## Quantization: {format_words(quant.format)}{width}", ""]
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
            f"fine-tuned"
            + (
                f", validation loss {qat.val_loss_ptq:.4f} post-training vs "
                f"{qat.val_loss_qat:.4f} fine-tuned (the criterion: the lower is kept)"
                if qat.val_loss_ptq is not None and qat.val_loss_qat is not None
                else ""
            )
            + f" (best epoch {qat.best_epoch} of {qat.epochs_run} run"
            + (f", {qat.epochs_asked} asked" if qat.epochs_asked is not None else "")
            + ")"
            + (f"; {qat.reason}" if qat.reason else "")
            + (f"; {qat.stopped}" if qat.stopped else "")
            + "."
        )
    if qat.decision == "skipped":
        out.append(
            f"Fine-tuning skipped ({qat.epochs_asked} epoch(s) asked, 0 run): post-training "
            f"quantization lost nothing on the validation part ({qat.val_samples} training "
            f"samples held out before any training, never trained on): validation "
            f"{_pct(qat.val_ptq)} post-training vs {_pct(qat.val_float)} float."
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
    if fit.copies is not None:
        out.append(f"\n{copies_sentence(fit.copies)}")
    return out


def _simulation(sim: SimulationRecord, chip: str | None) -> list[str]:
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
            f"Agreement is measured against {agreement_words(sim.agreement_source)} (per "
            "layer: the "
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
        energy = energy_line(sim.energy_per_sample_j, sim.energy_basis, sim.energy_missing, chip)
        out.append(f"Synaptic operations per sample: {_num(sim.synops_per_sample)}; {energy}.")
    if sim.layers:
        out.append("")
        out.append(
            _table(
                ["layer", "spikes/sample", "rate", "agreement"],
                [[r.layer, r.spikes_per_sample, r.rate, _pct(r.agreement)] for r in sim.layers],
            )
        )
    return out


def _stored_section(record: RunRecord) -> list[str]:
    """Per layer: synapses kept by pruning and as the chip stores them after quantization
    (a weight rounded to zero is no synapse), against the budget."""
    quant, pruned = record.quantized, record.pruned
    if quant is None or not quant.stored_layers or pruned is None:
        return []
    kept = {r.layer: r.synapses for r in pruned.layers}
    rows = [
        [
            r.layer,
            r.neurons,
            kept.get(r.layer),
            r.synapses,
            _lost(kept.get(r.layer), r.synapses),
            r.dense,
            _pct(r.sparsity),
            r.max_fan_in,
        ]
        for r in quant.stored_layers
    ]
    stored = sum(r.synapses for r in quant.stored_layers)
    budget = record.budget.synapses
    return [
        "",
        "## Per layer as the chip stores it",
        "",
        _table(
            [
                "layer",
                "neurons",
                "kept by pruning",
                "stored on the chip",
                "lost to rounding",
                "dense",
                "sparsity",
                "max fan-in",
            ],
            rows,
        ),
        "",
        f"Stored in all: {_num(stored)} synapses of a budget of {_num(budget)} "
        f"({_pct(stored / budget if budget else None)} of it).",
    ]


def _lost(kept: int | float | None, stored: int | float) -> str:
    if kept is None:
        return "—"
    lost = kept - stored
    return "0" if not lost else f"{_num(lost)} ({_pct(lost / kept if kept else None)})"


def _cores_section(record: RunRecord) -> list[str]:
    """The core map: which neurons of which layer sit on which core of which chip, each core's
    use, and the lower bound on the core count with the resource that sets it."""
    fit = record.fit
    per_core = getattr(fit, "per_core", None) if fit is not None else None
    if fit is None or not per_core:
        return []
    placed: dict[int, list[str]] = {}
    for p in getattr(fit, "placements", None) or []:
        placed.setdefault(int(p["core"]), []).append(
            f"layer {p['layer']} neurons {p['start']}–{int(p['stop']) - 1}"
        )
    rows = [
        [
            c["core"],
            c.get("chip", 0),
            "; ".join(placed.get(int(c["core"]), [])) or ", ".join(map(str, c.get("layers", []))),
            _neurons_with_copies(c),
            c.get("input_axons"),
            c.get("synapses"),
            c.get("memory_bits"),
        ]
        for c in per_core
    ]
    bound = getattr(fit, "cores_lower_bound", None)
    set_by = fit.cores_set_by.detail if fit.cores_set_by is not None else None
    out = ["", "## Cores", ""]
    out.append(
        f"{_num(fit.cores)} core(s) used of {_num(fit.cores_allocated)} allocated"
        + (f"; lower bound {_num(bound)} core(s)" if bound is not None else "")
        + (f", set by {set_by}" if set_by else "")
        + "."
    )
    out += [
        "",
        _table(
            ["core", "chip", "placed", "neurons", "input axons", "synapses", "memory bits"], rows
        ),
    ]
    return out


def _neurons_with_copies(core: dict) -> Any:
    """A core's neurons, and where the chip copies neurons for fan-out how many of its neuron
    slots are copies, e.g. ``192 (96 copies)``."""
    if not core.get("copies"):
        return core.get("neurons")
    return f"{core.get('neurons')} ({core['copies']} copies)"


def _neuron_choice_lines(record: RunRecord) -> list[str]:
    """``--neuron auto`` and the pruning structure: what the run chose and why, with each
    candidate's validation accuracy of its deployed model (what chose) and its test accuracies
    (for the reader)."""
    choice = record.neuron_choice
    if choice is None:
        return []
    if choice.structure is None:
        said = f"Neuron model: **{choice.chosen}**, chosen by `--neuron {choice.asked}`"
    elif choice.asked == "auto":
        said = (
            f"Neuron model: **{choice.chosen}**, pruning: **{choice.structure}**, chosen by "
            "`--neuron auto` and the pruning structure choice"
        )
    else:
        said = f"Pruning: **{choice.structure}**, chosen for {choice.chosen}"
    out = ["", f"{said}: {choice.rule}."]
    if choice.readout_block:
        out += ["", f"Readout block tried: {choice.readout_block}."]
    rows = [
        [
            name + (" (chosen)" if name == choice.chosen_candidate else ""),
            _pct(c.val_deployed),
            _pct(c.val_ptq),
            _pct(c.val_qat),
            c.qat_decision or "—",
            _pct(c.test_pruned),
            _pct(c.test_deployed),
        ]
        for name, c in choice.candidates.items()
    ]
    if rows:
        out += [
            "",
            _table(
                [
                    "neuron" if choice.structure is None else "candidate",
                    "validation, deployed",
                    "validation, PTQ",
                    "validation, QAT",
                    "QAT",
                    "test, pruned float",
                    "test, deployed",
                ],
                rows,
            ),
        ]
    out += [f"- {name}: not run by the chip ({why})" for name, why in choice.excluded.items()]
    return out


def _deployment_section(record: RunRecord) -> list[str]:
    """How the run was made and what it wrote: the command line (and later commands that
    rebuilt it), every setting as resolved, the versions and the profile's hash, the files
    with their sha256."""
    deployment = record.deployment
    if deployment is None:
        return []
    out = ["", "## Deployment record", ""]
    if deployment.command:
        out += ["Made with:", "", "```", deployment.command, "```"]
    if deployment.later:
        out += ["", "Then rebuilt by:", "", "```", *deployment.later, "```"]
    out += _neuron_choice_lines(record)
    prov = deployment.provenance
    if prov:
        profile = prov.get("profile") or {}
        packages = ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)
        out += [
            "",
            f"neuroprune {prov.get('neuroprune_version')}, Python {prov.get('python')} on "
            f"{prov.get('platform')}; {packages}.",
            f"Chip profile {profile.get('id')} ({profile.get('path')}), sha256 "
            f"`{profile.get('sha256')}`.",
        ]
        for env, versions in (prov.get("backend_environments") or {}).items():
            if versions:
                listed = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
                out.append(f"Backend environment {env}: {listed}.")
    if deployment.resolved:
        out += ["", "Settings, every one as the run used it:", ""]
        out.append(
            _table(["setting", "value"], [[k, _setting(v)] for k, v in deployment.resolved.items()])
        )
    if deployment.artifacts:
        out += ["", "Files (report.json and report.md cannot hold their own checksum):", ""]
        out.append(
            _table(
                ["file", "bytes", "sha256"],
                [[name, a.bytes, f"`{a.sha256}`"] for name, a in deployment.artifacts.items()],
            )
        )
    return out


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


SECTIONS: list[Section] = [
    _heading,
    _warnings,
    _budget,
    _stage_section,
    _pruned_section,
    _stored_section,
    _quantization_section,
    _fit_section,
    _cores_section,
    _simulation_section,
    neurobench_markdown,
    _not_run,
    _plots,
    _deployment_section,
]
"""report.md's sections in order: each ``(RunRecord) -> lines`` (empty: nothing to say)."""
