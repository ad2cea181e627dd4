"""Weight formats (layer L1, torch-free): ``profile.weights.format`` -> :class:`Quantizer`.

:data:`QUANTIZERS` is the registry of weight formats, one module per family: :mod:`.loihi`
(loihi, loihi2), :mod:`.uniform` (spinnaker, int, brainscales), :mod:`.truenorth`,
:mod:`.dynapse`. A quantizer is numpy arithmetic on a profile's numbers (the grid a chip's
weights, thresholds and decays take), so it lives with the chip facts: profile validation
checks ``weights.format`` against the registry without reaching up to the torch side
(:mod:`neuroprune.quantize`, which applies the quantizers to a trained model).

Adding a weight format: a :class:`Quantizer` subclass decorated with
``@register_quantizer("name")`` in a module imported below.
"""

from __future__ import annotations

from neuroprune.chip.formats import dynapse, loihi, truenorth, uniform  # noqa: F401  (registration)
from neuroprune.chip.formats.base import (
    QUANTIZERS,
    LayerQuant,
    Quantizer,
    get_quantizer,
    register_quantizer,
    validate_format,
)
from neuroprune.chip.formats.grid import Grid, snap
from neuroprune.chip.formats.neuron import NeuronParams

WEIGHT_FORMATS = QUANTIZERS
"""The weight-format names a profile may give (the quantizer registry)."""

__all__ = [
    "QUANTIZERS",
    "WEIGHT_FORMATS",
    "Grid",
    "LayerQuant",
    "NeuronParams",
    "Quantizer",
    "get_quantizer",
    "register_quantizer",
    "snap",
    "validate_format",
]
