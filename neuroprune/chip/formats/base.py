"""Quantizer interface and registry (torch-free).

One quantizer per chip weight format (``profile.weights.format``). A quantizer turns one
synaptic layer's float weight (and bias, and the following neuron's threshold and decay) into
the integers the chip stores plus one float scale per layer:

    weight = weight_int * scale                       (exact in float32)
    v_threshold = threshold_int * scale               (threshold in weight LSBs)
    bias = bias_int * scale

The allowed integers form the layer's :class:`~neuroprune.chip.formats.grid.Grid`: every integer of
a range (uniform formats) or explicit levels, shared by the layer (DYNAP-SE) or one set per
output neuron (TrueNorth). A format only chooses the grid and the neuron fields; snapping and
error statistics are shared (:mod:`neuroprune.chip.formats.grid`).

Adding a format is one module with a :class:`Quantizer` subclass decorated with
:func:`register_quantizer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuroprune.chip.formats.grid import Grid, error_stats, pow2_exponent, signed_width, snap
from neuroprune.chip.formats.neuron import NeuronParams, generic_neuron_fields
from neuroprune.chip.schema import NeuronSpec, WeightFormat
from neuroprune.core.errors import ProfileError
from neuroprune.core.registry import Registry, lookup


@dataclass(frozen=True, eq=False)
class LayerQuant:
    """One layer quantized to a chip format.

    Attributes:
        format: the format name (registry key).
        grid: the grid the weights were snapped to (reuse it to re-project fine-tuned weights).
        weight_int: integers the chip stores (int64, shape of the weight); 0 = no synapse.
        bias_int: bias in weight LSBs (int64) or ``None``.
        threshold_int: neuron threshold in weight LSBs, ``v_threshold = threshold_int * scale``.
        bits: stored width per synapse for memory accounting (``profile.weights.bits``).
        int_bits: signed width needed by ``weight_int`` values (sign included).
        weight_exp: ``log2(scale)`` when the scale is a power of two, else ``None``.
        decay_v / decay_u: chip decay constants (Loihi: 12-bit ``dv``, ``du``) or ``None``.
        bias_exp: chip bias exponent (Loihi: ``bias_mant << bias_exp``) or ``None``.
        tau: the neuron time constant the chip realises (``None`` for IF); differs from the
            float tau where the decay had to be rounded.
        stats: ``clipped_fraction``, ``max_abs_error``, ``mean_abs_error`` (weight units,
            over the layer's nonzero float weights), ``nonzero_before``/``nonzero_after``
            (nonzero weight entries before and after).
        extra: format-specific JSON-serialisable facts (e.g. ``axon_duplication``, ``lava``).
        notes: human-readable statements about approximations and rounding.
    """

    format: str
    grid: Grid
    weight_int: np.ndarray
    bias_int: np.ndarray | None
    threshold_int: int
    bits: int
    int_bits: int
    weight_exp: int | None = None
    decay_v: int | None = None
    decay_u: int | None = None
    bias_exp: int | None = None
    tau: float | None = None
    stats: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def scale(self) -> float:
        return self.grid.scale

    @property
    def v_threshold(self) -> float:
        """Threshold in model units: ``threshold_int * scale``."""
        return float(self.threshold_int) * self.scale

    def quant_dict(self) -> dict[str, Any]:
        """The ``neuroprune_quant`` dict of docs/conventions.md §3 (JSON-serialisable)."""
        return {
            "format": self.format,
            "bits": int(self.bits),
            "weight_scale": float(self.scale),
            "weight_exp": self.weight_exp,
            "threshold_int": int(self.threshold_int),
            "decay_v": self.decay_v,
            "decay_u": self.decay_u,
            "bias_exp": self.bias_exp,
            "clipped_fraction": float(self.stats.get("clipped_fraction", 0.0)),
            "max_abs_error": float(self.stats.get("max_abs_error", 0.0)),
            "mean_abs_error": float(self.stats.get("mean_abs_error", 0.0)),
            "notes": list(self.notes),
            "int_bits": int(self.int_bits),
            "int_min": int(self.grid.int_min),
            "int_max": int(self.grid.int_max),
            "tau": self.tau,
            "nonzero_before": int(self.stats.get("nonzero_before", 0)),
            "nonzero_after": int(self.stats.get("nonzero_after", 0)),
            **dict(self.extra),
        }


class Quantizer:
    """Quantizes one layer to a chip weight format.

    Subclasses implement :meth:`read_params` and :meth:`choose_grid`, and override
    :meth:`neuron_fields` (chip-specific threshold/decay/bias) and :meth:`refit_grid`
    (data-dependent levels) where needed; :func:`register_quantizer` sets ``name``.
    """

    name: str = ""

    def read_params(self, fmt: WeightFormat, where: str) -> Any:
        """Validate ``fmt.params`` and return them as a typed object; raise ProfileError."""
        raise NotImplementedError

    def choose_grid(
        self, weight: np.ndarray, params: Any
    ) -> tuple[Grid, dict[str, Any], list[str]]:
        """Pick the layer's grid for ``weight`` (float64, zeros = pruned).

        Returns the grid, format facts for ``LayerQuant.extra`` and notes.
        """
        raise NotImplementedError

    def grid_options(
        self, weight: np.ndarray, params: Any
    ) -> list[tuple[Grid, dict[str, Any], list[str]]]:
        """Every grid the format may use for ``weight``, the default (:meth:`choose_grid`)
        first; a format with several mappings that fit (TrueNorth: 4 or 2 axons per input)
        lists them all, so the caller may choose by validation."""
        return [self.choose_grid(weight, params)]

    def option_names(self, weight: np.ndarray, params: Any) -> tuple[str, ...]:
        """Names of :meth:`grid_options`' entries, computed without building the grids; empty
        where the format has one mapping only (nothing to choose)."""
        return ()

    def finest_input_copies(self, params: Any) -> int | None:
        """Axons per input of the format's finest mapping where that mapping needs more copies
        than the coarsest one (TrueNorth: 4 axons, 15 levels, against 2), else None: a layer
        whose used inputs times this number fit a core's axons may take the finest mapping, so
        the pruning may anticipate it (:meth:`neuroprune.chip.capacity.CapacityModel.input_blocks`)."""
        return None

    def frozen_grid(self, weight: np.ndarray, grid: Grid, params: Any) -> tuple[Grid, list[str]]:
        """The grid fine-tuned weights are re-projected onto: ``grid`` itself, unless the format
        has a rule the new weights could break on it (SpiNNaker's ring-buffer bound widens the
        scale); returns the grid and notes."""
        return grid, []

    def refit_grid(self, weight: np.ndarray, grid: Grid, params: Any) -> Grid:
        """Re-fit a level grid to fine-tuned weights, keeping its scale and integer range.

        Formats whose levels are data-dependent (TrueNorth per-neuron magnitudes, DYNAP-SE shared
        values) override this so fine-tuning can move the levels; the default keeps the grid.
        """
        return grid

    def grid_facts(self, grid: Grid, weight_int: np.ndarray) -> dict[str, Any]:
        """Facts of the stored integers for ``LayerQuant.extra`` that hold on a chosen and on a
        frozen or re-fitted grid alike (DYNAP-SE1's synapse-type units and CAM slots); the
        default has none."""
        return {}

    def neuron_fields(
        self,
        grid: Grid,
        bias: np.ndarray | None,
        neuron: NeuronParams,
        params: Any,
        neuron_spec: NeuronSpec | None,
    ) -> tuple[dict[str, Any], list[str]]:
        """Threshold, bias and decay in the chip's precision.

        Returns LayerQuant keyword fields (``threshold_int``, ``bias_int``, ``decay_v``,
        ``decay_u``, ``bias_exp``, ``tau``, optionally ``extra``) and notes.
        """
        return generic_neuron_fields(grid, bias, neuron, neuron_spec)

    def quantize_layer(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        neuron_params: NeuronParams | Mapping[str, Any],
        fmt: WeightFormat,
        *,
        neuron_spec: NeuronSpec | None = None,
        grid: Grid | None = None,
        option: int = 0,
        where: str = "profile",
    ) -> LayerQuant:
        """Quantize a float weight (``(out, in)`` or ``(out, in, kh, kw)``), its bias and the
        following neuron's parameters. Pass ``grid`` to re-project onto a frozen grid (used after
        fine-tuning); otherwise the grid is chosen from the weights: :meth:`grid_options`'s
        entry ``option`` (0: the default mapping).
        """
        params = self.read_params(fmt, where)
        neuron = as_neuron_params(neuron_params)
        w = np.asarray(weight, dtype=np.float64)
        notes: list[str] = []
        extra: dict[str, Any] = {}
        if grid is None:
            choice = self.grid_options(w, params)[option] if option else self.choose_grid(w, params)
            grid, extra, notes = choice
        else:
            grid, notes = self.frozen_grid(w, grid, params)
        weight_int = snap(w, grid)
        fields, neuron_notes = self.neuron_fields(grid, bias, neuron, params, neuron_spec)
        extra = {**extra, **self.grid_facts(grid, weight_int), **fields.pop("extra", {})}
        return LayerQuant(
            format=self.name,
            grid=grid,
            weight_int=weight_int,
            bits=fmt.bits,
            int_bits=signed_width(grid.int_min, grid.int_max),
            weight_exp=pow2_exponent(grid.scale),
            stats=error_stats(w, weight_int, grid),
            extra=extra,
            notes=tuple(dict.fromkeys(notes + neuron_notes)),
            **fields,
        )

    def dequantize(self, lq: LayerQuant) -> tuple[np.ndarray, np.ndarray | None]:
        """Float weight and bias: ``weight_int * scale``, ``bias_int * scale``."""
        weight = lq.weight_int.astype(np.float64) * lq.scale
        bias = None if lq.bias_int is None else lq.bias_int.astype(np.float64) * lq.scale
        return weight, bias


QUANTIZERS: Registry[Quantizer] = Registry(
    "weight format", where="profile", field="weights.format", error=ProfileError
)
"""Registry: ``profile.weights.format`` -> its :class:`Quantizer` instance."""


def register_quantizer(*names: str) -> Callable[[type[Quantizer]], type[Quantizer]]:
    """Class decorator: register one instance under each format name."""

    def decorate(cls: type[Quantizer]) -> type[Quantizer]:
        for name in names:
            instance = cls()
            instance.name = name
            QUANTIZERS.register(name, instance)
        return cls

    return decorate


def get_quantizer(fmt: WeightFormat, where: str = "profile") -> Quantizer:
    """The registered quantizer for ``fmt.format``; ProfileError naming the field if unknown."""
    return lookup(QUANTIZERS, fmt.format, where=where)


def validate_format(fmt: WeightFormat, where: str = "profile") -> Any:
    """Check that a profile's weight format can be quantized; return its typed parameters."""
    return get_quantizer(fmt, where).read_params(fmt, where)


def as_neuron_params(value: NeuronParams | Mapping[str, Any]) -> NeuronParams:
    """Accept a :class:`NeuronParams` or a plain mapping with the same keys."""
    if isinstance(value, NeuronParams):
        return value
    known = {k: value[k] for k in ("model", "tau", "decay_input", "v_threshold") if k in value}
    return NeuronParams(**known)
