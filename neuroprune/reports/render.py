"""Rendering for people (layer L7): rich tables and text from the typed run record
(:class:`~neuroprune.run.rundir.RunRecord` and its sections), result dicts and dataclasses.

Functions here build renderables; only the CLI prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from neuroprune.chip.capacity import capacity_model
from neuroprune.chip.schema import ChipProfile
from neuroprune.reports.units import (
    agreement_words,
    copies_sentence,
    energy_line,
    energy_text,
    format_words,
)
from neuroprune.run.rundir import FitRecord, QatRecord, RunRecord, SimulationRecord
from neuroprune.sim.verification import CHIP_EXACT


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


# ------------------------------------------------------------------------------------------
# profiles


def profile_rows(profiles: Iterable[ChipProfile]) -> list[dict[str, Any]]:
    """One row per chip: the numbers `profiles list` shows."""
    return [
        {
            "chip": p.id,
            "name": p.name,
            "cores": p.cores,
            "neurons": p.neurons_max,
            "synapses": p.synapses_headline,
            "synapses_per_core": capacity_model(p).synapses_per_core(sparse=True),
            "weight_bits": p.weights.bits,
            "weight_format": p.weights.format,
            "fan_in": p.neuron.fan_in_max,
            "conv_shared": p.conv_weight_sharing,
        }
        for p in profiles
    ]


def profiles_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Chip profiles (neuroprune profiles show CHIP for units and sources)")
    headers = [
        ("chip", "chip"),
        ("name", "name"),
        ("cores", "cores/chip"),
        ("neurons", "neurons/chip"),
        ("synapses", "synapses/chip (headline)"),
        ("synapses_per_core", "synapses/core (sparse)"),
        ("weight_bits", "weight bits"),
        ("weight_format", "format"),
        ("fan_in", "fan-in max"),
    ]
    for key, title in headers:
        table.add_column(
            title, justify="left" if key in ("chip", "name", "weight_format") else "right"
        )
    for row in rows:
        table.add_row(*(_fmt(row[key]) for key, _ in headers))
    return table


def profile_detail(profile: ChipProfile) -> Group:
    head = Text(f"{profile.name} ({profile.id}) — {profile.vendor}\n", style="bold")
    head.append(f"file: {profile.path}\nsha256: {profile.sha256[:16]}…\n", style="dim")
    table = Table("field", "value", "unit", "status", "source", "note")
    for path, q in sorted(profile.quantities.items()):
        table.add_row(
            path, _fmt(q.value), q.unit or "", q.status or "", q.source or "", q.note or ""
        )
    derived = Table("derived limit", "value", title="Derived (neuroprune.chip.capacity)")
    model = capacity_model(profile)
    derived.add_row("synapses per core, dense form", _fmt(model.synapses_per_core(sparse=False)))
    derived.add_row("synapses per core, sparse form", _fmt(model.synapses_per_core(sparse=True)))
    derived.add_row(
        "weight format",
        f"{profile.weights.format}, {profile.weights.bits} bits, "
        f"sign {profile.weights.sign}, scale {profile.weights.scale_kind}",
    )
    derived.add_row("synapse encoding", profile.core.encoding.kind)
    derived.add_row("conv weight sharing", _fmt(profile.conv_weight_sharing))
    derived.add_row("neuron models", ", ".join(profile.neuron.models))
    sources = Table("id", "source", title="Sources")
    for key, text in profile.sources.items():
        sources.add_row(key, str(text))
    return Group(head, table, derived, sources)


# ------------------------------------------------------------------------------------------
# fit


def fit_text(report) -> Group:
    """Verdict line, one line per violation (rule, layer, limit, actual, hint), core use;
    ``report`` is a :class:`~neuroprune.fit.report.FitReport` or its ``as_dict()``."""
    data = report.as_dict() if hasattr(report, "as_dict") else dict(report)
    return fit_group(FitRecord.model_validate(data))


def fit_group(fit: FitRecord) -> Group:
    ok = fit.fits
    verdict = Text(
        f"{'FITS' if ok else 'DOES NOT FIT'} on {fit.chip}: {fit.cores} core(s) of "
        f"{fit.cores_allocated} allocated, {fit.chips} chip(s) needed; "
        f"{_fmt(fit.synapses)} synapses, {_fmt(fit.neurons)} neurons",
        style="bold green" if ok else "bold red",
    )
    parts: list[Any] = [verdict]
    if fit.violations:
        table = Table("rule", "layer", "limit", "actual", "hint", title="Violations")
        for v in fit.violations:
            table.add_row(v.rule, v.layer, _fmt(v.limit), _fmt(v.actual), v.hint)
        parts.append(table)
    util = ", ".join(f"{k} {_pct(v)}" for k, v in fit.utilisation.items())
    if util:
        parts.append(Text(f"utilisation of the cores used: {util}", style="dim"))
    if fit.cores_set_by is not None:
        parts.append(Text(f"core count set by {fit.cores_set_by.detail}", style="dim"))
    if fit.copies is not None:
        parts.append(Text(copies_sentence(fit.copies).rstrip("."), style="dim"))
    return Group(*parts)


# ------------------------------------------------------------------------------------------
# run summary


def summary_text(record: RunRecord, run_dir: Path | None = None) -> Group:
    """The end-of-run summary: stages, accuracy, sparsity per layer, fit, simulation."""
    parts: list[Any] = [_stages_table(record)]
    choice = record.neuron_choice
    if choice is not None:  # --neuron auto, pruning structure: which, and why, in one line
        parts.append(Text(f"{choice.topic}: {choice.line()}", style="bold"))
    layers = record.pruned.layers if record.pruned is not None else []
    if layers:
        table = Table("layer", "synapses", "dense", "sparsity", "max fan-in", title="Per layer")
        for row in layers:
            table.add_row(
                row.layer,
                _fmt(row.synapses),
                _fmt(row.dense),
                _pct(row.sparsity),
                _fmt(row.max_fan_in),
            )
        parts.append(table)
    if record.fit is not None:
        parts.append(fit_group(record.fit))
    if record.simulation is not None:
        parts.append(simulation_text(record.simulation, record.chip_name or record.chip))
    parts += warnings_text(record)
    if run_dir is not None:
        parts.append(Text(f"run directory: {run_dir}", style="dim"))
    return Group(*parts)


def warnings_text(record: RunRecord) -> list[Any]:
    """The warnings section (:func:`neuroprune.run.warnings.run_warnings`, in report.json) and
    the ``--max-accuracy-drop`` verdict."""
    parts: list[Any] = []
    if record.warnings:
        parts.append(Text(f"Warnings ({len(record.warnings)})", style="bold yellow"))
        parts += [Text(f"  ! {w.stage}: {w.message}", style="yellow") for w in record.warnings]
    gate = record.accuracy_gate
    if gate is not None and not gate.passed:
        parts.append(Text(f"DOES NOT MEET: {gate.reason}", style="bold red"))
    elif gate is not None and gate.drop is not None:
        parts.append(
            Text(
                f"meets --max-accuracy-drop {gate.max_drop:g}: the deployed model loses "
                f"{gate.drop:.2f} points against the pruned float model",
                style="bold green",
            )
        )
    return parts


def _stages_table(record: RunRecord) -> Table:
    """One row per stage that ran: accuracy (%), synapses, neurons, notes."""
    stages = Table("stage", "accuracy", "synapses", "neurons", "notes", title="Pipeline")
    dense, pruned, quant, budget = record.dense, record.pruned, record.quantized, record.budget
    if dense is not None:
        stages.add_row("dense", _pct(dense.accuracy), _fmt(dense.synapses), _fmt(dense.neurons), "")
    if pruned is not None:
        skipped = "; skipped: nothing to prune" if pruned.skipped else ""
        blocks = f"; core blocks: {'; '.join(budget.core_blocks)}" if budget.core_blocks else ""
        stages.add_row(
            "pruned",
            _pct(pruned.accuracy),
            _fmt(pruned.synapses),
            _fmt(pruned.neurons),
            f"budget {_fmt(budget.synapses)} ({budget.source}), "
            f"max fan-in {_fmt(pruned.max_fan_in)}{skipped}{blocks}",
        )
    if quant is not None:
        stages.add_row(
            "quantized",
            _pct(quant.accuracy),
            _fmt(quant.synapses),
            _fmt(quant.neurons),
            format_words(quant.format),
        )
    return stages


def quantize_text(result) -> Group:
    data = result if isinstance(result, Mapping) else result.as_dict()
    table = Table(
        "layer", "format", "scale", "clipped", "max |err|", "mean |err|", title="Quantization"
    )
    for row in data.get("layers", []):
        table.add_row(
            row.get("layer", ""),
            str(row.get("format", "")),
            _fmt(row.get("weight_scale")),
            _pct(row.get("clipped_fraction")),
            _fmt(row.get("max_abs_error")),
            _fmt(row.get("mean_abs_error")),
        )
    acc = Text(
        f"accuracy: float {_pct(data.get('accuracy_float'))}, after PTQ "
        f"{_pct(data.get('accuracy_ptq'))}, after fine-tuning {_pct(data.get('accuracy_qat'))}"
    )
    qat = Text(QatRecord.model_validate(data.get("qat") or {}).line())
    notes = [Text(f"note: {n}", style="yellow") for n in data.get("notes", [])]
    return Group(table, acc, qat, *notes)


def simulation_text(sim: SimulationRecord, chip: str | None = None) -> Group:
    """The simulation: every agreement figure under its verification kind (chip-exact, float
    stand-in, vendor simulator), then the comparisons, activity and energy (``chip``: the
    profile's name, said where it has no energy figure)."""
    kind = sim.verification.kind if sim.verification is not None else "kind not recorded"
    head = Text(
        f"simulation ({sim.backend}, {sim.mode or ''}) [{kind}]: {sim.samples} samples, "
        f"spike agreement {_pct(sim.spike_agreement)}, prediction agreement "
        f"{_pct(sim.prediction_agreement)}, accuracy {_pct(sim.accuracy)}, "
        f"{_fmt(sim.seconds_per_sample and 1000 * sim.seconds_per_sample)} ms/sample",
        style="bold",
    )
    parts: list[Any] = [head]
    if sim.verification is not None:
        parts.append(
            Text(
                f"{kind}: {sim.verification.detail}; {sim.verification.proves or ''}",
                style="green" if kind == CHIP_EXACT else "yellow",
            )
        )
    if sim.agreement_source:
        parts.append(
            Text(f"agreement measured against {agreement_words(sim.agreement_source)}", style="dim")
        )
    if sim.model_agreement is not None:
        per_layer = ", ".join(f"{100 * a:.2f} %" for a in sim.model_agreement)
        per_count = ", ".join(f"{100 * a:.2f} %" for a in sim.model_count_agreement or [])
        parts.append(
            Text(
                f"trained quantized PyTorch model vs this run: samples with identical "
                f"counts per layer {per_layer}; identical per-neuron counts {per_count}; prediction "
                f"agreement {_pct(sim.model_prediction_agreement)}"
            )
        )
    if sim.float_drift is not None:
        layers = ", ".join(f"{100 * a:.2f} %" for a in sim.float_drift.layer_agreement)
        parts.append(
            Text(
                f"float-to-chip drift (same weights, float neurons): identical counts per layer "
                f"{layers}; prediction agreement {_pct(sim.float_drift.prediction_agreement)}"
            )
        )
    if sim.layers:
        table = Table("layer", "spikes/sample", "rate", "agreement", title="Spiking activity")
        for row in sim.layers:
            table.add_row(
                row.layer or "",
                _fmt(row.spikes_per_sample),
                _fmt(row.rate),
                _pct(row.agreement),
            )
        parts.append(table)
    if sim.synops_per_sample is not None:
        energy = energy_line(sim.energy_per_sample_j, sim.energy_basis, sim.energy_missing, chip)
        parts.append(Text(f"synaptic operations per sample: {_fmt(sim.synops_per_sample)}"))
        parts.append(Text(energy, style="yellow" if sim.energy_per_sample_j is None else ""))
    return Group(*parts)


def sweep_table(rows: list[Mapping[str, Any]], pareto: Mapping[str, Any] | None = None) -> Table:
    """One row per sweep trial; ``*`` marks a trial on its chip's accuracy-vs-synapses front."""
    front = {name for chip in (pareto or {}).values() for name in chip.get("synapses", ())}
    table = Table(
        "trial",
        "chip",
        "method",
        "budget",
        "synapses",
        "accuracy",
        "cores",
        "energy/sample",
        "fits",
        "status",
        title="Sweep (* Pareto: accuracy vs synapses)",
    )
    for r in rows:
        energy = r.get("energy_per_sample_j")
        mark = "*" if r.get("trial") in front else ""
        table.add_row(
            f"{r.get('trial')}{mark}",
            _fmt(r.get("chip")),
            _fmt(r.get("method")),
            _fmt(r.get("budget")),
            _fmt(r.get("synapses")),
            _pct(r.get("accuracy")),
            _fmt(r.get("cores")),
            energy_text(energy) if energy is not None else "-",
            _fmt(r.get("fits")),
            r.get("error") or _fmt(r.get("status")),
        )
    return table


# ------------------------------------------------------------------------------------------
# progress


class ProgressRenderer:
    """A ``progress(event)`` callable that drives a rich progress bar.

    Events are dicts: ``{"stage": str, "message": str}`` announces a stage;
    ``{"stage", "total": n, "unit": "batches"}`` starts a bar; ``{"stage", "advance": k,
    ...metrics}`` moves it (the ETA column: the time left at its speed); ``{"stage", "done":
    True}`` ends it.
    """

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            EtaColumn(),
            console=console,
            disable=quiet,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ProgressRenderer:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: Mapping[str, Any]) -> None:
        if self.quiet:
            return
        stage = str(event.get("stage", ""))
        if "message" in event and event.get("warning"):
            self.progress.console.print(f"[bold yellow]{stage}[/]: {event['message']}")
        elif "message" in event:
            self.progress.console.print(f"[bold cyan]{stage}[/]: {event['message']}")
        if "total" in event:
            self.tasks[stage] = self.progress.add_task(
                stage, total=event["total"], info="", unit=event.get("unit", "")
            )
        task = self.tasks.get(stage)
        if task is None:
            return
        info = " ".join(f"{k}={_fmt(v)}" for k, v in event.items() if k in _SHOWN)
        if "advance" in event:
            self.progress.update(task, advance=event["advance"], info=info)
        if event.get("done"):  # a bare end keeps the last metrics shown
            shown = {"info": info} if info else {}
            self.progress.update(task, completed=self.progress.tasks[task].total, **shown)


_SHOWN = ("epoch", "loss", "accuracy", "test_accuracy", "sparsity", "nonzero", "threshold")


class EtaColumn(ProgressColumn):
    """``eta 0:01:23``: the time left at the bar's measured speed (``eta -`` until known,
    ``done`` at the end)."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text("done", style="dim")
        left = task.time_remaining
        if left is None:
            return Text("eta -", style="dim")
        minutes, seconds = divmod(int(left), 60)
        return Text(f"eta {minutes // 60}:{minutes % 60:02d}:{seconds:02d}", style="cyan")
