"""The deployment record of a run (report.json ``deployment``, report.md "Deployment record"):
every setting resolved to the value it took, and the run's files with their checksums.

A setting left unset (``None`` in config.yaml, where it must stay None so that ``--resume``
and a sweep compare what the user asked) is written here as what the run used: the cores
the allocation gave, the budget it set, the model's hidden widths, the method's scheduler,
whether the simulation ran in fixed point, the NIR step, and so on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from neuroprune.chip.schema import ChipProfile
from neuroprune.models.registry import MODEL_ZOO
from neuroprune.pipeline.config import RunConfig
from neuroprune.run.record import ArtifactChecksum, RunRecord

NIR_DT_DEFAULT = 2.0**-10  # seconds per step (graph.write's default), docs/conventions.md §4

# the run files whose checksums the record holds, in the order a reader meets them
CHECKSUMMED = (
    "config.yaml",
    "profile.yaml",
    "dense.pt",
    "pruned.pt",
    "quantized.pt",
    "model.nir",
    "model.onnx",
    "fit.json",
    "simulation.json",
)


def resolved_settings(
    cfg: RunConfig, record: RunRecord, profile: ChipProfile, run_name: str
) -> dict[str, Any]:
    """``cfg.as_dict()`` with every unset setting replaced by the value the run used (read from
    the record of what ran) or a phrase saying what took its place ("all test samples",
    "no limit"); nothing is None."""
    values = cfg.as_dict()
    budget, fit, sim = record.budget, record.fit, record.simulation
    dense = record.dense.synapses if record.dense is not None else None
    derived: dict[str, Any] = {
        "chip": profile.id,
        "chips": getattr(fit, "chips_allocated", None) or 1,
        "cores": budget.cores_allocated or getattr(fit, "cores_allocated", None),
        "budget": budget.synapses,
        "sparsity": round(1 - budget.synapses / dense, 6) if dense else None,
        "hidden": _hidden(cfg),
        "scheduler": _scheduler(cfg),
        "data_dir": "none: the dataset is built in" if cfg.dataset == "digits" else None,
        "event_window": "all events",
        "samples": f"all test samples ({sim.samples})" if sim is not None else "no simulation",
        "fixed_point": (sim.mode == "fixed") if sim is not None and sim.mode else None,
        "max_accuracy_drop": "no limit",
        "sim_timeout": "scaled from the network's measured cost"
        if cfg.backend == "lava"
        else "none",
        "nir_dt": NIR_DT_DEFAULT,
        "from_nir": "none: built --model",
        "name": run_name,
    }
    out = {}
    for key, value in values.items():
        if value is None:
            value = derived.get(key)
        out[key] = "not used by this run" if value is None else value
    return out


def _hidden(cfg: RunConfig) -> list[int] | str | None:
    """The model's default widths (the model zoo's entry) where --hidden was not given."""
    if cfg.from_nir:
        return "from the NIR graph"
    entry = MODEL_ZOO.get(cfg.model) if cfg.model in MODEL_ZOO else None
    if entry is None or entry.hidden is None:
        return "the model file's own"
    return list(entry.hidden)


def _scheduler(cfg: RunConfig) -> str:
    """The method's own threshold scheduler where --scheduler was not given."""
    from neuroprune.pruning.registry import PRUNING_METHODS  # deferred: imports torch

    entry = PRUNING_METHODS.get(cfg.method.partition("-")[0])
    if not entry.scheduled:
        return "none: the method has no threshold scheduler"
    method = entry.method_class()
    default = getattr(method, "default_scheduler", None)
    return f"{default} (the method's default)" if default else "the method's own"


def checksums(folder: Path, names: Iterable[str] = CHECKSUMMED) -> dict[str, ArtifactChecksum]:
    """sha256 and size of each of ``names`` that exists in ``folder``, and of its plots."""
    present = [n for n in names if (folder / n).is_file()]
    plots = sorted(p.relative_to(folder).as_posix() for p in (folder / "plots").glob("*.png"))
    return {name: _checksum(folder / name) for name in [*present, *plots]}


def _checksum(path: Path) -> ArtifactChecksum:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return ArtifactChecksum(sha256=digest.hexdigest(), bytes=path.stat().st_size)
