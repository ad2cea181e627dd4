"""Models (layer L3): model zoo and convention, encodings, summary translation.

See :mod:`neuroprune.models.zoo` for the model convention every later stage relies on, and
:mod:`neuroprune.models.registry` for the built-in model names (torch-free). Names load lazily
so that reading the registry (``neuroprune --help``, config validation) imports no torch.
"""

from __future__ import annotations

from neuroprune.core.lazy import lazy_getattr

_EXPORTS = {
    "ENCODINGS": "neuroprune.data.encoding",
    "Block": "neuroprune.models.blocks",
    "encode": "neuroprune.models.encoding",
    "make_generator": "neuroprune.models.encoding",
    "parse_blocks": "neuroprune.models.walker",
    "MODEL_DEFAULTS": "neuroprune.models.zoo",
    "MODELS": "neuroprune.models.zoo",
    "NEURONS": "neuroprune.models.zoo",
    "build_model": "neuroprune.models.zoo",
    "MODEL_ZOO": "neuroprune.models.registry",
    "ModelWiring": "neuroprune.models.reader",
    "model_kind": "neuroprune.models.reader",
    "model_wiring": "neuroprune.models.reader",
    "fold_batchnorm": "neuroprune.models.translate",
    "summarize": "neuroprune.models.translate",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
