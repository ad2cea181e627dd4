"""report.md's "NeuroBench metrics" section (layer L7), from report.json ``neurobench``
(:class:`~neuroprune.run.record.NeuroBenchRecord`): NeuroBench's figures of the final model,
the chip's bits beside NeuroBench's bytes, and each cross-check with neuroprune's own count."""

from __future__ import annotations

from typing import Any

from neuroprune.run.record import NeuroBenchRecord, RunRecord


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def neurobench_markdown(record: RunRecord) -> list[str]:
    """The section's lines (empty when the run has no ``neurobench`` section)."""
    section = record.neurobench
    if section is None:
        return []
    out = ["", "## NeuroBench metrics", ""]
    if not section.computed:
        return out + [f"Not computed: {section.reason}. No figure is given in their place."]
    out.append(
        f"NeuroBench {section.version} on the {section.model} model (pruning masks written "
        f"into the weights), {section.samples:,} test samples at T = {section.timesteps}; "
        "operations per sample."
    )
    out += ["", *_footprint(section), "", "| metric | NeuroBench | neuroprune | agree | note |"]
    out.append("|---|---|---|---|---|")
    out += [
        f"| {row.metric} | {_cell(row.neurobench)} | {_cell(row.neuroprune)} | "
        f"{'—' if row.agree is None else _cell(row.agree)} | {row.note} |"
        for row in section.cross_check
    ]
    return out


def _footprint(section: NeuroBenchRecord) -> list[str]:
    """NeuroBench's bytes beside the chip's bits."""
    stored = section.results.get("Footprint")
    parts = [f"Footprint: NeuroBench {_cell(stored)} bytes (float32 as stored)"]
    if section.chip_weight_bits is not None:
        parts.append(f"the chip's weights {_cell(section.chip_weight_bits)} bits")
    if section.chip_memory_bits is not None:
        parts.append(f"the chip's synaptic memory {_cell(section.chip_memory_bits)} bits")
    return ["; ".join(parts) + "."]
