"""Model artifacts of a run directory (``dense.pt``, ``pruned.pt``, ``quantized.pt``).

Trust model: a run directory is **data**. Loading one never executes code found in it.

* A model file holds tensors (the ``state_dict``, including the quantizers' ``weight_int`` /
  ``bias_int`` buffers) plus a declarative, JSON-able **architecture description**: a tree of
  module kinds from a fixed allow-list (:data:`LEAVES`, :data:`CONTAINERS`) with their
  constructor arguments, neuron parameters and the quantization metadata
  (``neuroprune_quant``, ``neuroprune_weight_bits``), and a ``meta`` dict of plain values.
* It is read with ``torch.load(weights_only=True)`` (PyTorch's restricted unpickler: tensors,
  numbers, strings, lists and dicts only), then the model is rebuilt from the description by
  neuroprune's own constructors. A kind outside the allow-list is refused, never imported.
* A user model factory (``--model FILE.py:FACTORY``) runs only when the user names it on the
  command line or in a config file; a saved user model is rebuilt from its description, so the
  factory file is not needed (nor run) to load it.

Writes are atomic; a file that cannot be read gives one :class:`ArtifactError` naming it and
the fix.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from spikingjelly.activation_based import layer, neuron, surrogate

from neuroprune.core.atomic import write_bytes
from neuroprune.core.errors import ArtifactError
from neuroprune.models import neurons

MODEL_FORMAT = "neuroprune-model"
MODEL_VERSION = 2
QUANT_ATTRS = ("neuroprune_quant", "neuroprune_weight_bits")
_FIX = "Rerun the stage that writes it (neuroprune fit without --resume)."


@dataclass(frozen=True)
class LeafKind:
    """One allow-listed leaf module: its class, ``describe(module) -> kwargs`` and
    ``build(kwargs) -> module``."""

    cls: type
    describe: Callable[[torch.nn.Module], dict[str, Any]]
    build: Callable[[dict[str, Any]], torch.nn.Module]


SURROGATES: dict[str, type] = {"atan": surrogate.ATan, "sigmoid": surrogate.Sigmoid}


def _surrogate_of(module: torch.nn.Module) -> dict[str, Any]:
    fn = module.surrogate_function
    for name, cls in SURROGATES.items():
        if type(fn) is cls:
            return {"name": name, "alpha": float(fn.alpha), "spiking": bool(fn.spiking)}
    raise ArtifactError(
        "cannot describe this surrogate function",
        where="save model",
        field="surrogate_function",
        value=type(fn).__name__,
        fix=f"Use one of: {', '.join(SURROGATES)} (spikingjelly.activation_based.surrogate).",
    )


def _make_surrogate(desc: dict[str, Any]):
    return SURROGATES[_choice(desc["name"], SURROGATES, "surrogate")](
        alpha=float(desc["alpha"]), spiking=bool(desc["spiking"])
    )


def _neuron_common(m) -> dict[str, Any]:
    return {
        "v_threshold": float(m.v_threshold),
        "v_reset": None if m.v_reset is None else float(m.v_reset),
        "detach_reset": bool(m.detach_reset),
        "step_mode": str(m.step_mode),
        "store_v_seq": bool(m.store_v_seq),
        "surrogate": _surrogate_of(m),
    }


def _build_neuron(cls, kwargs: dict[str, Any]):
    kwargs = dict(kwargs)
    kwargs.pop("backend", None)  # written before SpikingJelly 2, whose nodes take no backend
    kwargs["surrogate_function"] = _make_surrogate(kwargs.pop("surrogate"))
    return cls(**kwargs)


def _conv_args(m) -> dict[str, Any]:
    return {
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size),
        "stride": list(m.stride),
        "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
        "dilation": list(m.dilation),
        "groups": m.groups,
        "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
        "step_mode": m.step_mode,
    }


def _build_conv(k: dict[str, Any]):
    tupled = {key: tuple(v) if isinstance(v, list) else v for key, v in k.items()}
    return layer.Conv2d(**tupled)


LEAVES: dict[str, LeafKind] = {
    "sj.Flatten": LeafKind(
        layer.Flatten,
        lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim, "step_mode": m.step_mode},
        lambda k: layer.Flatten(**k),
    ),
    "sj.Linear": LeafKind(
        layer.Linear,
        lambda m: {
            "in_features": m.in_features,
            "out_features": m.out_features,
            "bias": m.bias is not None,
            "step_mode": m.step_mode,
        },
        lambda k: layer.Linear(**k),
    ),
    "sj.Conv2d": LeafKind(layer.Conv2d, _conv_args, _build_conv),
    "sj.AvgPool2d": LeafKind(
        layer.AvgPool2d,
        lambda m: {
            "kernel_size": m.kernel_size,
            "stride": m.stride,
            "padding": m.padding,
            "ceil_mode": bool(m.ceil_mode),
            "count_include_pad": bool(m.count_include_pad),
            "divisor_override": m.divisor_override,
            "step_mode": m.step_mode,
        },
        lambda k: layer.AvgPool2d(
            **{key: tuple(v) if isinstance(v, list) else v for key, v in k.items()}
        ),
    ),
    # a BatchNorm folded into its conv (neuroprune.models.sew.SEWResNet.fold_batchnorm)
    "torch.Identity": LeafKind(torch.nn.Identity, lambda m: {}, lambda k: torch.nn.Identity()),
    "sj.BatchNorm2d": LeafKind(
        layer.BatchNorm2d,
        lambda m: {
            "num_features": m.num_features,
            "eps": float(m.eps),
            "momentum": m.momentum,
            "affine": bool(m.affine),
            "track_running_stats": bool(m.track_running_stats),
            "step_mode": m.step_mode,
        },
        lambda k: layer.BatchNorm2d(**k),
    ),
    "sj.LIFNode": LeafKind(
        neuron.LIFNode,
        lambda m: {"tau": float(m.tau), "decay_input": bool(m.decay_input), **_neuron_common(m)},
        lambda k: _build_neuron(neuron.LIFNode, k),
    ),
    "sj.IFNode": LeafKind(neuron.IFNode, _neuron_common, lambda k: _build_neuron(neuron.IFNode, k)),
    # neuroprune's strict-threshold nodes (fire on v > v_th): same parameters as SpikingJelly's
    "np.LIFNode": LeafKind(
        neurons.LIFNode,
        lambda m: {"tau": float(m.tau), "decay_input": bool(m.decay_input), **_neuron_common(m)},
        lambda k: _build_neuron(neurons.LIFNode, k),
    ),
    "np.IFNode": LeafKind(
        neurons.IFNode, _neuron_common, lambda k: _build_neuron(neurons.IFNode, k)
    ),
    # chip-arithmetic nodes (neuroprune.quantize.chip): the same plus the layer's chip facts
    "np.ChipLIFNode": LeafKind(
        neurons.ChipLIFNode,
        lambda m: {
            "tau": float(m.tau),
            "decay_input": bool(m.decay_input),
            "chip": dict(m.chip),
            **_neuron_common(m),
        },
        lambda k: _build_neuron(neurons.ChipLIFNode, k),
    ),
    "np.ChipIFNode": LeafKind(
        neurons.ChipIFNode,
        lambda m: {"chip": dict(m.chip), **_neuron_common(m)},
        lambda k: _build_neuron(neurons.ChipIFNode, k),
    ),
}


def _containers() -> dict[str, type]:
    """Container kinds: rebuilt empty (``Module.__init__`` only) and filled with their children.
    Their ``forward`` reads only the children, so no constructor arguments are needed."""
    from neuroprune.models.sew import SEWBlock, SEWResNet, SEWStage  # deferred: imports scipy

    return {
        "Sequential": torch.nn.Sequential,
        "ModuleList": torch.nn.ModuleList,
        "sew.SEWResNet": SEWResNet,
        "sew.SEWStage": SEWStage,
        "sew.SEWBlock": SEWBlock,
    }


# --------------------------------------------------------------------------------------------
# Describing a model


def describe_model(model: torch.nn.Module) -> dict[str, Any]:
    """The JSON-able architecture description of ``model`` (module docstring)."""
    for kind, leaf in LEAVES.items():
        if type(model) is leaf.cls:
            return _leaf_description(kind, leaf, model)
    for kind, cls in _containers().items():
        if type(model) is cls:
            children = [[name, describe_model(child)] for name, child in model.named_children()]
            return {"kind": kind, "children": children}
    raise ArtifactError(
        "cannot save a model with this module type",
        where="save model",
        field="module",
        value=type(model).__name__,
        fix="Build the model from the documented layers (docs/conventions.md §1).",
    )


def _leaf_description(kind: str, leaf: LeafKind, module: torch.nn.Module) -> dict[str, Any]:
    desc: dict[str, Any] = {"kind": kind, "args": leaf.describe(module)}
    standard = set(leaf.build(json.loads(json.dumps(desc["args"]))).state_dict())
    extra = [name for name, _ in module.named_buffers(recurse=False) if name not in standard]
    if extra:
        desc["buffers"] = extra
    attrs = {a: getattr(module, a) for a in QUANT_ATTRS if hasattr(module, a)}
    if attrs:
        desc["attrs"] = json.loads(json.dumps(attrs))
    return desc


# --------------------------------------------------------------------------------------------
# Rebuilding a model


def build_from_description(desc: Any, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Rebuild the module tree of ``desc`` and load ``state`` into it (strict)."""
    model = _build_node(desc, "model", state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"state mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


def _build_node(desc: Any, path: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    if not isinstance(desc, dict) or not isinstance(desc.get("kind"), str):
        raise ValueError(f"{path}: not a module description")
    kind = desc["kind"]
    if kind in LEAVES:
        module = LEAVES[kind].build(dict(desc.get("args") or {}))
        prefix = "" if path == "model" else path.removeprefix("model.") + "."
        for name in desc.get("buffers", []):
            module.register_buffer(name, torch.zeros_like(state[prefix + name]))
        for attr, value in (desc.get("attrs") or {}).items():
            if attr not in QUANT_ATTRS:
                raise ValueError(f"{path}: attribute {attr!r} is not allowed")
            setattr(module, attr, value)
        neurons.restore_chip_input(module)
        return module
    containers = _containers()
    cls = containers[_choice(kind, containers, "module kind")]
    module = cls.__new__(cls)
    torch.nn.Module.__init__(module)
    for name, child in desc.get("children", []):
        module.add_module(str(name), _build_node(child, f"{path}.{name}", state))
    return module


def _choice(name: Any, options, what: str) -> str:
    if name not in options:
        raise ValueError(f"{what} {name!r} is not allowed")
    return name


# --------------------------------------------------------------------------------------------
# Files


def save_model(path: Path, model: torch.nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Atomically write ``model``'s description, tensors (on CPU) and ``meta`` to ``path``.

    ``meta`` must be JSON-able (it is stored as a JSON string).
    """
    payload = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "architecture": json.dumps(describe_model(model)),
        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": json.dumps(dict(meta or {}), default=_plain),
    }
    buffer = io.BytesIO()  # serialised in memory: a failed write is a plain OSError
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())
    return Path(path)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Read a model written by :func:`save_model`; returns ``(model, meta)``.

    Safe on untrusted files: ``torch.load(weights_only=True)`` and a rebuild from the
    allow-listed description (module docstring). Anything else is an :class:`ArtifactError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError("model file not found", where=str(path), fix=_FIX)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            "model file is corrupt, truncated, or holds objects other than tensors "
            f"({type(exc).__name__}); it was not executed",
            where=str(path),
            field="size_bytes",
            value=path.stat().st_size,
            fix=_FIX,
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ArtifactError("not a neuroprune model file", where=str(path), fix=_FIX)
    if payload.get("version") != MODEL_VERSION:
        raise ArtifactError(
            "model file of another format version",
            where=str(path),
            field="version",
            value=payload.get("version"),
            fix=_FIX,
        )
    try:
        model = build_from_description(json.loads(payload["architecture"]), payload["state"])
        meta = json.loads(payload.get("meta") or "{}")
    except Exception as exc:
        raise ArtifactError(
            f"model file's architecture cannot be rebuilt ({exc})", where=str(path), fix=_FIX
        ) from exc
    return model.eval(), meta
