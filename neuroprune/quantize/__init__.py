"""Quantization to each chip's number formats (layer L5).

``QUANTIZERS`` maps ``profile.weights.format`` to a :class:`Quantizer`; the quantizers are
torch-free chip facts and live in :mod:`neuroprune.chip.formats` (re-exported here). :func:`quantize_model` folds BatchNorm, quantizes every layer after
training (PTQ), fine-tunes with the weights projected onto the chip's grid after every step
(quantization-aware, straight-through, pruning mask kept) and returns the model in the form of
docs/conventions.md §3.

Importing this package does not import torch; the torch entry points load on first use.
"""

from __future__ import annotations

from neuroprune.chip.formats import (
    QUANTIZERS,
    Grid,
    LayerQuant,
    NeuronParams,
    Quantizer,
    get_quantizer,
    register_quantizer,
    snap,
    validate_format,
)
from neuroprune.core.lazy import lazy_getattr

_TORCH_API = {
    "QuantizeResult": "neuroprune.quantize.api",
    "quantize_model": "neuroprune.quantize.api",
    "ptq_model": "neuroprune.quantize.model",
    "QuantAwareCallback": "neuroprune.quantize.qat",
}

__all__ = [
    "QUANTIZERS",
    "Grid",
    "LayerQuant",
    "NeuronParams",
    "QuantAwareCallback",
    "QuantizeResult",
    "Quantizer",
    "get_quantizer",
    "ptq_model",
    "quantize_model",
    "register_quantizer",
    "snap",
    "validate_format",
]


__getattr__ = lazy_getattr(__name__, _TORCH_API)
