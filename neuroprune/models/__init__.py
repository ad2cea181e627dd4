"""Models (layer L3): model zoo and convention, encodings, summary translation.

See :mod:`neuroprune.models.zoo` for the model convention every later stage relies on.
"""

from neuroprune.data.encoding import ENCODINGS
from neuroprune.models.blocks import Block
from neuroprune.models.encoding import encode, make_generator
from neuroprune.models.walker import parse_blocks
from neuroprune.models.zoo import MODEL_DEFAULTS, MODELS, NEURONS, build_model

from . import sew  # noqa: F401  (registers the 'sew' builder)
from .translate import fold_batchnorm, summarize

__all__ = [
    "ENCODINGS",
    "MODELS",
    "MODEL_DEFAULTS",
    "NEURONS",
    "Block",
    "build_model",
    "encode",
    "fold_batchnorm",
    "make_generator",
    "parse_blocks",
    "summarize",
]
