"""The model zoo's registry (torch-free): ``--model`` name -> :class:`ModelEntry`.

:data:`MODEL_ZOO` is the one list of built-in model names: ``build_model``, the run config,
``neuroprune fit --help`` and the "unknown model" error read it. Builders are named lazily
(``"module:function"``), so listing the names imports no torch. Adding a model: a builder
function and one ``register`` line below (``chain=True`` builders take
``(input_shape, num_classes, widths, make_neuron)`` and return a ``Sequential`` chain;
``chain=False`` builders take ``(input_shape, num_classes, neuron, tau, v_threshold, hidden)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neuroprune.core.errors import ModelError
from neuroprune.core.registry import Lazy, Registry


@dataclass(frozen=True)
class ModelEntry:
    """One built-in model: its builder (``"module:function"``), whether it is a ``Sequential``
    chain, and its default hidden widths (None: the builder's own)."""

    builder: str
    chain: bool = True
    hidden: tuple[int, ...] | None = None

    def build_function(self) -> Callable[..., Any]:
        """The builder (imports torch)."""
        return Lazy(self.builder).load()


MODEL_ZOO: Registry[ModelEntry] = Registry(
    "model", where="model", field="model", error=ModelError, hint="Or give PATH.py:FACTORY."
)
MODEL_ZOO.register("mlp", ModelEntry("neuroprune.models.zoo:build_mlp", hidden=(128,)))
MODEL_ZOO.register("conv", ModelEntry("neuroprune.models.zoo:build_conv", hidden=(8, 16)))
MODEL_ZOO.register("vgg", ModelEntry("neuroprune.models.zoo:build_vgg", hidden=(8, 16)))
MODEL_ZOO.register("sew", ModelEntry("neuroprune.models.sew:build_sew_from_spec", chain=False))
MODEL_ZOO.register(
    "detector", ModelEntry("neuroprune.models.detector:build_detector_from_spec", chain=False)
)

NEURON_MODELS: dict[str, str] = {"lif": "LIF", "if": "IF"}
"""``--neuron`` name -> the chip profile's ``neuron.models`` name of the neurons the built-in
models train (torch-free). The first is the default, kept on a tie by ``--neuron auto``."""
AUTO_NEURON = "auto"
"""``--neuron auto``: every neuron of :data:`NEURON_MODELS` the chip runs is tried; the one whose
deployed model validates best is kept (:mod:`neuroprune.pipeline.neuron_choice`)."""
