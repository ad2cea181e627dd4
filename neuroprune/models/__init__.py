"""Models (layer L2): model zoo and convention, encodings, summary translation, training.

See :mod:`neuroprune.models.zoo` for the model convention every later stage relies on.
"""

from . import sew  # noqa: F401  (registers the 'sew' builder)
from .encoding import ENCODINGS, encode, make_generator
from .train import (
    DEFAULTS,
    Callback,
    Checkpoint,
    CheckpointCallback,
    TrainCallback,
    TrainConfig,
    TrainResult,
    default_config,
    evaluate,
    load_checkpoint,
    predict,
    save_checkpoint,
    train,
)
from .translate import fold_batchnorm, summarize
from .zoo import MODEL_DEFAULTS, MODELS, NEURONS, Block, build_model, parse_blocks

__all__ = [
    "DEFAULTS",
    "ENCODINGS",
    "MODELS",
    "MODEL_DEFAULTS",
    "NEURONS",
    "Block",
    "Callback",
    "Checkpoint",
    "CheckpointCallback",
    "TrainCallback",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "default_config",
    "encode",
    "evaluate",
    "fold_batchnorm",
    "load_checkpoint",
    "make_generator",
    "parse_blocks",
    "predict",
    "save_checkpoint",
    "summarize",
    "train",
]
