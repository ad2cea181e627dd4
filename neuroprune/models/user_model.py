"""User models (``PATH.py:FACTORY``): import the file, build the model, check the convention."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import torch
from spikingjelly.activation_based import functional

from neuroprune.core.errors import ModelError
from neuroprune.models import neurons
from neuroprune.models.walker import parse_blocks

# --------------------------------------------------------------------------------------------
# User models


def load_user_model(spec: str, input_shape: tuple[int, ...], num_classes: int):
    """Import ``file.py``, call ``factory(input_shape=..., num_classes=...)``, check the result."""
    path, factory_name = _split_spec(spec)
    factory = getattr(_import_file(path, spec), factory_name, None)
    if not callable(factory):
        raise ModelError(
            f"no factory function {factory_name!r} in the model file",
            where=str(path),
            field="model",
            value=spec,
            fix=f"Define def {factory_name}(input_shape, num_classes) -> torch.nn.Sequential.",
        )
    try:
        model = factory(input_shape=tuple(input_shape), num_classes=int(num_classes))
    except (Exception, SystemExit) as exc:  # a factory calling sys.exit() is an error too
        raise ModelError(
            f"factory {factory_name}() raised {type(exc).__name__}: {exc}",
            where=str(path),
            field="model",
            value=spec,
            fix="Make the factory accept input_shape=(C, H, W) and num_classes=K.",
        ) from exc
    where = f"{path}:{factory_name}"
    if not isinstance(model, torch.nn.Sequential):
        raise ModelError(
            f"factory returned {type(model).__name__}, not torch.nn.Sequential",
            where=where,
            field="model",
            value=spec,
            fix="Return torch.nn.Sequential(layer.Flatten(), layer.Linear(...), ...).",
        )
    neurons.make_strict(model)
    functional.set_step_mode(model, "m")
    parse_blocks(model, input_shape, num_classes, where=where, allow_pooling=True)
    dry_run(model, input_shape, num_classes, where=where)
    return model


def _split_spec(spec: str) -> tuple[Path, str]:
    path_text, sep, factory_name = spec.rpartition(":")
    if not sep or not path_text or not factory_name.isidentifier():
        raise ModelError(
            "a user model must be given as PATH.py:FACTORY",
            where="model",
            field="model",
            value=spec,
            fix="Example: --model my_net.py:make_net",
        )
    path = Path(path_text)
    if not path.is_file():
        raise ModelError(
            "model file not found",
            where=str(path),
            field="model",
            value=spec,
            fix="Check the path (relative paths start at the current directory).",
        )
    return path, factory_name


def _import_file(path: Path, spec: str):
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"neuroprune_user_model_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelError("cannot import the model file", where=str(path), field="model", value=spec)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a file calling sys.exit() is an error too
        sys.modules.pop(module_name, None)
        raise ModelError(
            f"importing the model file failed: {type(exc).__name__}: {exc}",
            where=str(path),
            field="model",
            value=spec,
            fix="Run `python FILE.py` to see the full error.",
        ) from exc
    return module


def dry_run(model: torch.nn.Sequential, input_shape, num_classes: int, *, where: str) -> None:
    """Forward zeros ``[1, 1, *input_shape]``; the output must be ``[1, 1, num_classes]``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, 1, *input_shape)))
    except Exception as exc:
        raise ModelError(
            f"forward pass on input [T, B, {', '.join(map(str, input_shape))}] failed: {exc}",
            where=where,
            field="input_shape",
            value=tuple(input_shape),
        ) from exc
    finally:
        functional.reset_net(model)
        model.train(was_training)
    if tuple(out.shape) != (1, 1, num_classes):
        raise ModelError(
            "output must be [T, B, num_classes] spikes",
            where=where,
            field="output_shape",
            value=tuple(out.shape[2:]),
        )
