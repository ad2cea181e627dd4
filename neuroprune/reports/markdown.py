"""report.md (layer L7): the run report as Markdown for people, from report.json's dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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


def report_markdown(report: Mapping[str, Any]) -> str:
    """Render the sections: verdict, budget, stages, per layer, fit, simulation, plots."""
    out = [f"# neuroprune run on {report.get('chip_name', report['chip'])}", ""]
    fit = report.get("fit")
    if fit:
        verdict = "**fits**" if fit["fits"] else "**does not fit**"
        out.append(
            f"Verdict: {verdict} — {fit['cores']} core(s) used of {fit['cores_allocated']} "
            f"allocated, {fit['chips']} chip(s) needed."
        )
    budget = report["budget"]
    out += [
        "",
        f"Budget: {_num(budget['synapses'])} synapses ({budget['source']}).",
        f"Counting: {report.get('counting', '')}.",
        "",
        "## Stages",
        "",
    ]
    rows = []
    for stage in ("dense", "pruned", "quantized"):
        rec = report.get(stage)
        if rec:
            rows.append([stage, _pct(rec.get("accuracy")), rec.get("synapses"), rec.get("neurons")])
    out.append(_table(["stage", "test accuracy", "synapses", "neurons"], rows))
    pruned = report.get("pruned") or {}
    if pruned.get("layers"):
        out += ["", "## Per layer after pruning", ""]
        out.append(
            _table(
                ["layer", "neurons", "synapses", "dense", "sparsity", "max fan-in", "mean fan-in"],
                [
                    [
                        r["layer"],
                        r["neurons"],
                        r["synapses"],
                        r["dense"],
                        _pct(r["sparsity"]),
                        r["max_fan_in"],
                        r["mean_fan_in"],
                    ]
                    for r in pruned["layers"]
                ],
            )
        )
    quant = report.get("quantized") or {}
    if quant.get("layers"):
        out += ["", f"## Quantization ({quant.get('format')})", ""]
        out.append(
            _table(
                ["layer", "scale", "clipped", "max abs err", "mean abs err"],
                [
                    [
                        r.get("layer", ""),
                        r.get("weight_scale"),
                        _pct(r.get("clipped_fraction")),
                        r.get("max_abs_error"),
                        r.get("mean_abs_error"),
                    ]
                    for r in quant["layers"]
                ],
            )
        )
        out.append("")
        arith = quant.get("arithmetic")
        out.append(
            f"Test accuracy ({'chip arithmetic ' + arith if arith else 'float neurons'}): "
            f"float {_pct(quant.get('accuracy_float'))}, post-training "
            f"{_pct(quant.get('accuracy_ptq'))}, after fine-tuning "
            f"{_pct(quant.get('accuracy_qat'))}."
        )
        qat = quant.get("qat") or {}
        if qat.get("decision") in ("kept", "reverted"):
            out.append(
                f"Fine-tuning {qat['decision']} on the validation split "
                f"({qat.get('val_samples')} training samples held out): validation "
                f"{_pct(qat.get('val_ptq'))} post-training vs {_pct(qat.get('val_qat'))} "
                f"fine-tuned (best of {qat.get('epochs_run')} epochs: "
                f"{qat.get('best_epoch')})."
            )
        out += [f"- {n}" for n in quant.get("notes", [])]
    if fit:
        out += ["", "## Fit", ""]
        if fit["violations"]:
            out.append(
                _table(
                    ["rule", "layer", "limit", "actual", "hint"],
                    [
                        [v["rule"], v["layer"], v["limit"], v["actual"], v["hint"]]
                        for v in fit["violations"]
                    ],
                )
            )
        else:
            out.append("No violations.")
        util = ", ".join(f"{k} {_pct(v)}" for k, v in fit.get("utilisation", {}).items())
        out.append(f"\nUtilisation of the cores used: {util}.")
    sim = report.get("simulation")
    if sim:
        out += ["", f"## Simulation ({sim.get('backend')}, {sim.get('mode', '')})", ""]
        out.append(
            f"{sim.get('samples')} samples; spike agreement {_pct(sim.get('spike_agreement'))}; "
            f"prediction agreement {_pct(sim.get('prediction_agreement'))}; accuracy "
            f"{_pct(sim.get('accuracy'))}; {_num((sim.get('seconds_per_sample') or 0) * 1000)} "
            f"ms per sample."
        )
        if sim.get("agreement_source"):
            out.append(
                f"Agreement is measured against: {sim['agreement_source']} (per layer: the "
                "fraction of samples whose every neuron's spike count is identical)."
            )
        if sim.get("model_agreement") is not None:
            drift = ", ".join(f"{100 * a:.2f} %" for a in sim["model_agreement"])
            counts = ", ".join(f"{100 * a:.2f} %" for a in sim.get("model_count_agreement") or [])
            out.append(
                f"Trained quantized PyTorch model vs this run: samples with identical "
                f"counts per layer {drift}; identical per-neuron counts {counts}; "
                f"prediction agreement {_pct(sim.get('model_prediction_agreement'))}."
            )
        if sim.get("float_drift"):
            fd = sim["float_drift"]
            layers = ", ".join(f"{100 * a:.2f} %" for a in fd["layer_agreement"])
            out.append(
                f"Float-to-chip drift (the same weights on float neurons): samples with "
                f"identical counts per layer {layers}; prediction agreement "
                f"{_pct(fd.get('prediction_agreement'))}; float accuracy "
                f"{_pct(fd.get('accuracy'))}."
            )
        out += [f"- {n}" for n in sim.get("notes", [])]
        if sim.get("synops_per_sample") is not None:
            energy = sim.get("energy_per_sample_j")
            out.append(
                f"Synaptic operations per sample: {_num(sim['synops_per_sample'])}"
                + (f"; energy estimate {energy * 1e9:.3g} nJ per sample." if energy else ".")
            )
        if sim.get("layers"):
            out.append("")
            out.append(
                _table(
                    ["layer", "spikes/sample", "rate", "agreement"],
                    [
                        [
                            r.get("layer"),
                            r.get("spikes_per_sample"),
                            r.get("rate"),
                            _pct(r.get("agreement")),
                        ]
                        for r in sim["layers"]
                    ],
                )
            )
    if report.get("stages_not_run"):
        out += ["", "Not run: " + "; ".join(report["stages_not_run"]) + "."]
    if report.get("plots"):
        out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]]
    return "\n".join(out) + "\n"
