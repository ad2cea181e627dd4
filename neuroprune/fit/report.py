"""The result types of fit analysis (torch-free): findings, core loads, placements, packings
and the :class:`FitReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neuroprune.chip.capacity import (
    Excess,
    Group,
    Load,
)
from neuroprune.core.summary import LayerSummary


@dataclass(frozen=True)
class Finding:
    """One violated limit: which rule, where, the limit, the actual value and how to fix it."""

    rule: str
    layer: str
    limit: float | int | str
    actual: float | int | str
    hint: str

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "layer": self.layer,
            "limit": self.limit,
            "actual": self.actual,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class CoreLoad:
    """What one core holds after packing, recounted by the capacity model from its content."""

    index: int
    chip: int
    neurons: int
    input_axons: int
    memory_bits: int
    synapses: int
    layers: tuple[str, ...]
    excess: tuple[Excess, ...] = ()
    copies: int = 0
    """Of ``neurons`` (the core's neuron slots), the copies of neurons on it that drive more
    than one axon (fan-out met by copies in the source core; 0 elsewhere)."""


@dataclass(frozen=True)
class Placement:
    """Neurons ``start:stop`` of ``layer`` live on core ``core``."""

    layer: str
    core: int
    start: int
    stop: int


@dataclass(frozen=True)
class Packing:
    """Cores used (in index order), where every neuron lives, and the strategy that won."""

    cores: tuple[CoreLoad, ...]
    placements: tuple[Placement, ...]
    strategy: str = "next_fit"
    cores_per_chip: int = 1

    def core_map(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for p in self.placements:
            cores = out.setdefault(p.layer, [])
            if p.core not in cores:
                cores.append(p.core)
        return out

    def chip_map(self) -> dict[str, list[int]]:
        """Layer -> chips its neurons live on."""
        return {
            layer: sorted({c // self.cores_per_chip for c in cores})
            for layer, cores in self.core_map().items()
        }

    def cores_per_chip_used(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for core in self.cores:
            out[core.chip] = out.get(core.chip, 0) + 1
        return out

    @property
    def chips_used(self) -> int:
        return len({core.chip for core in self.cores})

    def core_of_neuron(self, layer: LayerSummary) -> np.ndarray:
        owner = np.full(layer.neurons, -1, dtype=np.int64)
        for p in self.placements:
            if p.layer == layer.name:
                owner[p.start : p.stop] = p.core
        return owner


@dataclass(frozen=True)
class CoreCountLimit:
    """The limit that sets how many cores a network uses.

    ``resource``: ``neurons``, ``input_axons`` or ``memory_bits`` (the per-core resource whose
    network total, divided by one core's capacity, is largest), or, when the packing needs more
    cores than every total does, ``fan_out`` (a neuron's targets must sit in few cores),
    ``layers`` (one layer per core) or ``packing`` (layers split into partly filled cores);
    ``cores``: the cores that ``resource`` alone needs; ``detail``: a sentence with the figures.
    """

    resource: str
    cores: int
    detail: str

    def as_dict(self) -> dict:
        return {"resource": self.resource, "cores": self.cores, "detail": self.detail}


@dataclass(frozen=True)
class FitReport:
    """Verdict of :func:`check_fit`. ``fits`` is True iff there are no violations."""

    chip: str
    fits: bool
    violations: tuple[Finding, ...]
    cores_used: int
    cores_allocated: int
    chips_needed: int
    chips_allocated: int
    core_map: dict[str, list[int]]
    utilisation: dict[str, float]
    synapses: int
    neurons: int
    packing: Packing = field(repr=False)
    cores_lower_bound: int = 1
    cores_set_by: CoreCountLimit | None = None
    copies: dict[str, int] | None = None
    """Layer -> copy neurons its neurons need in their cores, where fan-out is met by copies in
    the source core (TrueNorth: one per axon a neuron drives beyond the first); None where
    copies are not modelled."""

    def as_dict(self) -> dict:
        """JSON-ready dict (report.json ``fit.*``)."""
        return {
            "chip": self.chip,
            "fits": self.fits,
            "cores": self.cores_used,
            "cores_allocated": self.cores_allocated,
            "cores_lower_bound": self.cores_lower_bound,
            "cores_set_by": None if self.cores_set_by is None else self.cores_set_by.as_dict(),
            "chips": self.chips_needed,
            "chips_allocated": self.chips_allocated,
            "synapses": self.synapses,
            "neurons": self.neurons,
            "violations": [v.as_dict() for v in self.violations],
            "core_map": self.core_map,
            "chip_map": self.packing.chip_map(),
            "cores_per_chip": {str(k): v for k, v in self.packing.cores_per_chip_used().items()},
            "packing": self.packing.strategy,
            "utilisation": self.utilisation,
            **({} if self.copies is None else {"copies": self.copies}),
            "placements": [
                {"layer": p.layer, "core": p.core, "start": p.start, "stop": p.stop}
                for p in self.packing.placements
            ],
            "per_core": [
                {
                    "core": c.index,
                    "chip": c.chip,
                    "neurons": c.neurons,
                    "input_axons": c.input_axons,
                    "memory_bits": c.memory_bits,
                    "synapses": c.synapses,
                    "layers": list(c.layers),
                    **({} if self.copies is None else {"copies": c.copies}),
                }
                for c in self.packing.cores
            ],
        }


# --------------------------------------------------------------------------------------------
# Packing


@dataclass
class _OpenCore:
    index: int
    chip: int
    load: Load = field(default_factory=Load)
    groups: list[Group] = field(default_factory=list)
