"""Model zoo and the model convention (layer L2).

MODEL CONVENTION. Pruning, quantization, NIR/ONNX export and the Lava simulation all rely on
it, and :func:`parse_blocks` checks it for every model, built-in or user-supplied:

* The model is a ``torch.nn.Sequential`` in SpikingJelly multi-step mode
  (``functional.set_step_mode(net, "m")``). Input: ``[T, B, C, H, W]`` (time first); output:
  the spikes of the last neuron layer, ``[T, B, num_classes]``.
* Its children are only ``layer.Flatten`` (``start_dim=1``, C-order), ``layer.AvgPool2d(k)``
  (square, stride = kernel, no padding; only between blocks, on a conv block's spikes, and
  only where a stage accepts pooling: training, counting/fit and unstructured pruning;
  ``MaxPool2d`` is refused), ``layer.Linear``
  (``bias=False``), ``layer.Conv2d`` (``bias=False``, ``groups=1``, ``dilation=1``, integer
  stride/padding equal in both directions, zero padding), ``layer.BatchNorm2d`` (only
  directly after a ``Conv2d``, with running statistics), and neuroprune's strict-threshold
  ``neurons.LIFNode`` / ``neurons.IFNode`` (:mod:`neuroprune.models.neurons`; a user model's
  plain SpikingJelly LIF/IF nodes are swapped for them with the same parameters).
* Every ``Linear``/``Conv2d`` (with its optional ``BatchNorm2d``) is followed by exactly one
  neuron node, and every neuron node follows one. A *block* is that synapse-(BN)-neuron
  group; ``Flatten`` may sit only between blocks.
* Neurons use a hard reset to zero (``v_reset=0.0``). The LIF charge equation is SpikingJelly's
  ``decay_input=True`` form, ``H[t] = V[t-1] + (X[t] - V[t-1]) / tau``; IF is
  ``H[t] = V[t-1] + X[t]``. A neuron spikes when ``H[t] > v_threshold`` (strict, as Loihi,
  Lava and NIR; SpikingJelly's own nodes use ``>=``) and then
  ``V[t] = 0``, else ``V[t] = H[t]``. Potentials and thresholds are dimensionless (input units);
  ``tau`` is in time steps. Built-in models use ``detach_reset=True`` and the ATan surrogate
  (training-only choices, not checked).
* Prediction: the class with the most output spikes over the ``T`` steps; ties go to the lowest
  class index (``argmax`` of the counts). Simple and deterministic, and a chip can do it by
  counting.

Built-in models (:data:`MODELS`):

* ``mlp``: ``Flatten -> [Linear(in, h) -> LIF] per hidden width -> Linear(h, classes) -> LIF``.
  ``hidden`` = widths, default ``(128,)``.
* ``conv``: ``[Conv2d 3x3 (pad 1) -> BatchNorm2d -> LIF] per channel count -> Flatten ->
  Linear(C*H*W, classes) -> LIF``. ``hidden`` = channels, default ``(8, 16)``; the first conv
  has stride 1, every later conv stride 2 (8x8 digits: 8x8 -> 4x4). Downsampling uses strided
  convolutions, never pooling: pooled spikes are graded values that chips carrying binary
  spikes cannot transmit.
* ``vgg``: ``[Conv2d 3x3 (pad 1, stride 1) -> BatchNorm2d -> LIF] per channel count with
  ``AvgPool2d(2)`` between consecutive conv blocks -> Flatten -> Linear -> LIF``; ``hidden`` =
  channels, default ``(8, 16)`` (8x8 digits: 8 -> 4; 32x32: 32 -> 16). The pooled
  spike counts are graded, so a chip without pooling wires each pooled layer as ``W P``
  (``k^2`` synapses per weight, :func:`neuroprune.summary.pooled_layer`).

User models: ``spec = "path/to/file.py:factory"``. The file is imported and called as
``factory(input_shape=(C, H, W), num_classes=K) -> torch.nn.Sequential``; the result is put in
multi-step mode and must satisfy the convention above (checked with a dry forward pass).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate

from ..errors import ModelError, UnsupportedError, did_you_mean
from ..summary import conv_output_size
from . import neurons

MODELS = ("mlp", "conv", "vgg", "sew")
# Builders of non-chain models, registered by their modules (neuroprune.models imports them):
# name -> fn(input_shape, num_classes, neuron, tau, v_threshold, hidden) -> nn.Module
EXTRA_BUILDERS: dict[str, Any] = {}
NEURONS = ("lif", "if")
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": (128,)},
    "conv": {"hidden": (8, 16)},
    "vgg": {"hidden": (8, 16)},
}
POOL_TYPES = (layer.AvgPool2d,)
MAX_POOL_TYPES = (layer.MaxPool2d, torch.nn.MaxPool2d, torch.nn.AdaptiveMaxPool2d)
SYNAPSE_TYPES = (layer.Linear, layer.Conv2d)
NEURON_TYPES = (*neurons.STRICT_TYPES, *neurons.CHIP_TYPES)
ALLOWED_TYPES = (layer.Flatten, *SYNAPSE_TYPES, layer.BatchNorm2d, *NEURON_TYPES)
_ALLOWED_TEXT = (
    "layer.Flatten, layer.Linear, layer.Conv2d, layer.BatchNorm2d, neuroprune.models.neurons."
    "LIFNode/IFNode (downsample with a strided Conv2d, not pooling)"
)


@dataclass(frozen=True, eq=False)
class Block:
    """One synaptic layer, its optional BatchNorm and its neuron node.

    ``name``/``neuron_name`` are the child names in the Sequential; shapes exclude time and
    batch (``(F,)`` or ``(C, H, W)``). ``in_shape`` is what the synapse reads; when an
    ``AvgPool2d`` precedes the block (``pool``), ``pool_in_shape`` is the spike map it pools.
    """

    name: str
    synapse: torch.nn.Module
    batchnorm: torch.nn.Module | None
    neuron_name: str
    neuron: torch.nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    pool: torch.nn.Module | None = None
    pool_in_shape: tuple[int, ...] | None = None

    @property
    def pool_kernel(self) -> int:
        """``k`` of the ``k x k`` pooling this block's synapse reads (1: none)."""
        return 1 if self.pool is None else int(_pair(self.pool.kernel_size)[0])

    @property
    def pool_kind(self) -> str | None:
        """``"avg"`` (``AvgPool2d(k)``), ``"sum"`` (``AvgPool2d(k, divisor_override=1)``, the
        quantized form) or None (no pooling)."""
        return None if self.pool is None else pool_kind(self.pool)

    @property
    def kind(self) -> str:
        """``"dense"`` or ``"conv"``."""
        return "conv" if type(self.synapse) is layer.Conv2d else "dense"


# --------------------------------------------------------------------------------------------
# Building


def build_model(
    spec: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    neuron: str = "lif",
    tau: float = 2.0,
    v_threshold: float = 1.0,
    hidden: Sequence[int] | None = None,
    seed: int = 0,
) -> torch.nn.Sequential:
    """Build model ``spec`` (``"mlp"``, ``"conv"`` or ``"file.py:factory"``) for the data.

    Weights are initialised from ``torch.manual_seed(seed)`` inside a forked RNG, so the global
    torch RNG is untouched. ``neuron``/``tau``/``v_threshold``/``hidden`` apply to built-in models
    only (see module docstring). Raises :class:`ModelError` for an unknown spec or a model that
    breaks the convention.
    """
    input_shape = tuple(int(s) for s in input_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if is_user_spec(spec):
            model = load_user_model(spec, input_shape, num_classes)
        else:
            model = _build_builtin(spec, input_shape, num_classes, neuron, tau, v_threshold, hidden)
    return model


def is_user_spec(spec: str) -> bool:
    """True for ``"path.py:factory"`` specs (anything with a ``:`` or ending in ``.py``)."""
    return ":" in spec or spec.endswith(".py")


SPIKINGJELLY_ZOO = {
    **{f"sew_resnet{d}": "sew" for d in (18, 34, 50, 101, 152)},
    **{f"spiking_resnet{d}": "sew" for d in (18, 34, 50, 101, 152)},
    **{f"spiking_vgg{d}{bn}": "vgg" for d in (11, 13, 16, 19) for bn in ("", "_bn")},
}
"""SpikingJelly model-zoo names (``spikingjelly.activation_based.model``) -> neuroprune's model
of the same family. Theirs do not fit the chip conventions, so none is built (see
:func:`_refuse_spikingjelly_zoo`)."""


def _refuse_spikingjelly_zoo(spec: str) -> None:
    """SpikingJelly's zoo models downsample with ``MaxPool2d`` (the max of spike trains is not a
    weighted sum: no chip synapse computes it, no exact conversion exists), end in
    ``AdaptiveAvgPool2d`` and a readout ``Linear`` without spiking neurons, and target 224x224
    ImageNet inputs; neuroprune's ``sew``/``vgg`` keep their structure with chip-mappable parts."""
    ours = SPIKINGJELLY_ZOO[spec]
    raise ModelError(
        f"SpikingJelly's {spec} cannot run on a chip as built: it uses max pooling (no exact "
        "chip form) and a readout without spiking neurons",
        where="model",
        field="model",
        value=spec,
        fix=f"Use --model {ours} (the same family with strided-conv or average-pooling "
        "downsampling and a spiking readout; --hidden sets the stage widths).",
    )


def _build_builtin(spec, input_shape, num_classes, neuron_kind, tau, v_threshold, hidden):
    if spec in SPIKINGJELLY_ZOO:
        _refuse_spikingjelly_zoo(spec)
    if spec not in MODELS:
        hint = did_you_mean(spec, MODELS)
        raise ModelError(
            "unknown model",
            where="model",
            field="model",
            value=spec,
            fix=f"{hint}Use one of {', '.join(MODELS)} or PATH.py:FACTORY.",
        )
    if spec in EXTRA_BUILDERS:  # models that are not Sequential chains (e.g. models/sew.py)
        return EXTRA_BUILDERS[spec](input_shape, num_classes, neuron_kind, tau, v_threshold, hidden)
    widths = tuple(MODEL_DEFAULTS[spec]["hidden"] if hidden is None else hidden)
    make = neuron_factory(neuron_kind, tau, v_threshold)
    build = {"mlp": build_mlp, "conv": build_conv, "vgg": build_vgg}[spec]
    model = build(input_shape, num_classes, widths, make)
    functional.set_step_mode(model, "m")
    parse_blocks(model, input_shape, num_classes, where=f"model {spec}", allow_pooling=True)
    return model


def neuron_factory(kind: str = "lif", tau: float = 2.0, v_threshold: float = 1.0):
    """Return a zero-argument callable making the convention's LIF or IF node."""
    if kind not in NEURONS:
        raise ModelError(
            "unknown neuron model",
            where="model",
            field="neuron",
            value=kind,
            fix=f"Use one of {', '.join(NEURONS)}.",
        )
    if kind == "lif" and not float(tau) > 1.0:
        raise ModelError("LIF tau must be > 1 time step", where="model", field="tau", value=tau)
    if not float(v_threshold) > 0.0:
        raise ModelError(
            "v_threshold must be > 0", where="model", field="v_threshold", value=v_threshold
        )
    common = {
        "v_threshold": float(v_threshold),
        "v_reset": 0.0,
        "detach_reset": True,
        "surrogate_function": surrogate.ATan(),
    }
    if kind == "if":
        return lambda: neurons.IFNode(**common)
    return lambda: neurons.LIFNode(tau=float(tau), decay_input=True, **common)


def build_mlp(input_shape, num_classes: int, hidden: Sequence[int], make) -> torch.nn.Sequential:
    """``Flatten -> (Linear -> neuron) x len(hidden) -> Linear(classes) -> neuron``."""
    sizes = [_prod(input_shape), *hidden, num_classes]
    modules: list[torch.nn.Module] = [layer.Flatten()]
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        modules += [layer.Linear(n_in, n_out, bias=False), make()]
    return torch.nn.Sequential(*modules)


def build_conv(input_shape, num_classes: int, channels: Sequence[int], make) -> torch.nn.Sequential:
    """``(Conv3x3 -> BN -> neuron) per channel count -> Flatten -> Linear -> neuron``.

    The first conv keeps the resolution (stride 1); every later conv halves it (stride 2).
    """
    c, h, w = input_shape
    modules: list[torch.nn.Module] = []
    for i, c_out in enumerate(channels):
        stride = 1 if i == 0 else 2
        modules += [
            layer.Conv2d(c, c_out, 3, stride=stride, padding=1, bias=False),
            layer.BatchNorm2d(c_out),
            make(),
        ]
        c, h, w = c_out, conv_output_size(h, 3, stride, 1), conv_output_size(w, 3, stride, 1)
    modules += [layer.Flatten(), layer.Linear(c * h * w, num_classes, bias=False), make()]
    return torch.nn.Sequential(*modules)


def build_vgg(input_shape, num_classes: int, channels: Sequence[int], make) -> torch.nn.Sequential:
    """``Conv3x3 -> BN -> neuron`` per channel count, with ``AvgPool2d(2)`` of the spikes between
    consecutive conv blocks, then ``Flatten -> Linear -> neuron``: a VGG-style stack of stride-1
    convs (8x8 digits with two convs: 8 -> 4; 28x28: 28 -> 14; 32x32: 32 -> 16). The classifier
    reads the last conv's spikes unpooled, so its synapses stay one per weight and an exact
    synapse budget can be met. Pooling is skipped where the map is already below 2x2.
    """
    c, h, w = input_shape
    modules: list[torch.nn.Module] = []
    for i, c_out in enumerate(channels):
        if i > 0 and h >= 2 and w >= 2:
            modules.append(layer.AvgPool2d(2))
            h, w = h // 2, w // 2
        modules += [layer.Conv2d(c, c_out, 3, padding=1, bias=False), layer.BatchNorm2d(c_out)]
        modules.append(make())
        c = c_out
    modules += [layer.Flatten(), layer.Linear(c * h * w, num_classes, bias=False), make()]
    return torch.nn.Sequential(*modules)


def pool_kind(module: torch.nn.Module) -> str:
    """``"sum"`` for ``AvgPool2d(k, divisor_override=1)``, else ``"avg"``."""
    return "sum" if getattr(module, "divisor_override", None) == 1 else "avg"


def model_blocks(
    model: torch.nn.Module, input_shape: Sequence[int], *, where: str, allow_bias: bool = True
) -> list[Block]:
    """Every synaptic layer of a model in forward order: a Sequential chain's blocks
    (:func:`parse_blocks`, pooling allowed) or a wired model's (``model.blocks(input_shape)``,
    e.g. :class:`neuroprune.models.sew.SEWResNet`)."""
    if hasattr(model, "wiring"):
        return list(model.blocks(input_shape))
    return parse_blocks(model, input_shape, where=where, allow_bias=allow_bias, allow_pooling=True)


def set_module(root: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    """Replace the submodule at dotted ``path`` (``"stages.0.blocks.1.neuron2"``) by ``module``."""
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def has_pooling(model: torch.nn.Module) -> bool:
    """True when a Sequential model holds an ``AvgPool2d`` child (see the convention)."""
    return isinstance(model, torch.nn.Sequential) and any(
        isinstance(child, POOL_TYPES) for child in model.children()
    )


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


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


# --------------------------------------------------------------------------------------------
# Convention check


def parse_blocks(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    *,
    where: str = "model",
    allow_bias: bool = False,
    allow_pooling: bool = False,
) -> list[Block]:
    """Check the model convention and return its blocks in order.

    ``allow_bias=True`` accepts biased layers (the BN-folded export form made by
    ``translate.fold_batchnorm``). ``allow_pooling=True`` accepts ``AvgPool2d`` between blocks
    (stages that handle it: training, counting, unstructured pruning); elsewhere a pooling layer
    raises :class:`UnsupportedError`. Raises :class:`ModelError` naming the offending child.
    """
    if not isinstance(model, torch.nn.Sequential):
        raise ModelError(
            "model must be a torch.nn.Sequential", where=where, field="type", value=type(model)
        )
    walker = _Walker(tuple(int(s) for s in input_shape), where, allow_bias, allow_pooling)
    for name, module in model.named_children():
        walker.visit(name, module)
    return walker.finish(num_classes)


class _Walker:
    """State machine over the Sequential's children (see :func:`parse_blocks`)."""

    def __init__(
        self, shape: tuple[int, ...], where: str, allow_bias: bool, allow_pooling: bool = False
    ) -> None:
        self.shape = shape
        self.where = where
        self.allow_bias = allow_bias
        self.allow_pooling = allow_pooling
        self.pool: tuple[torch.nn.Module, tuple[int, ...]] | None = None
        self.pending: dict[str, Any] | None = None
        self.blocks: list[Block] = []

    def fail(
        self,
        name: str,
        message: str,
        field: str = "module",
        value: object = None,
        fix: str | None = None,
    ):
        """Raise :class:`ModelError` located at child ``name`` of the Sequential."""
        raise ModelError(message, where=f"{self.where} [{name}]", field=field, value=value, fix=fix)

    def visit(self, name: str, module: torch.nn.Module) -> None:
        kind = type(module)
        if kind in (neuron.LIFNode, neuron.IFNode):
            self.fail(
                name,
                "SpikingJelly's own LIF/IF nodes fire on v >= v_th; the convention is strict v > v_th",
                "type",
                kind.__name__,
                f"Use neuroprune.models.neurons.{kind.__name__} (or neurons.make_strict(model)).",
            )
        if isinstance(module, MAX_POOL_TYPES):
            self.fail(
                name,
                "max pooling is not supported: the max of spike trains is not a weighted sum, "
                "so no chip synapse can compute it and no exact conversion exists",
                "type",
                kind.__name__,
                "Use layer.AvgPool2d(k) (kernel = stride, no padding) or a strided Conv2d.",
            )
        if kind in POOL_TYPES:
            return self.pooling(name, module)
        if kind not in ALLOWED_TYPES:
            self.fail(
                name, "module type not allowed", "type", kind.__name__, f"Use only {_ALLOWED_TEXT}."
            )
        if getattr(module, "step_mode", "m") != "m":
            self.fail(
                name,
                "module is not in multi-step mode",
                "step_mode",
                module.step_mode,
                "Call functional.set_step_mode(net, 'm').",
            )
        handler = {
            layer.Flatten: self.flatten,
            layer.Linear: self.linear,
            layer.Conv2d: self.conv,
            layer.BatchNorm2d: self.batchnorm,
        }.get(kind, self.neuron)
        handler(name, module)

    def flatten(self, name: str, module) -> None:
        if self.pending is not None:
            self.fail(name, "Flatten between a synaptic layer and its neuron node")
        if module.start_dim != 1 or module.end_dim != -1:
            self.fail(
                name, "Flatten must use start_dim=1, end_dim=-1", "start_dim", module.start_dim
            )
        self.shape = (_prod(self.shape),)

    def pooling(self, name: str, module) -> None:
        """``AvgPool2d(k)`` of a block's spikes (kernel = stride, no padding), read by the next
        synaptic layer (which the chip wires as ``W P``, :func:`neuroprune.summary.pooled_layer`)."""
        if not self.allow_pooling:
            raise UnsupportedError(
                f"pooling layers are not supported by {self.where.split()[0]} yet",
                where=f"{self.where} [{name}]",
                field="type",
                value=type(module).__name__,
                fix="Use a model without pooling (--model conv: strided convolutions).",
            )
        if self.pending is not None or self.pool is not None or len(self.shape) != 3:
            self.fail(name, "AvgPool2d must follow a neuron node of a conv block")
        kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        regular = kernel[0] == kernel[1] == stride[0] == stride[1] and _pair(module.padding) == (
            0,
            0,
        )
        if not regular or module.ceil_mode or module.divisor_override not in (None, 1):
            self.fail(
                name,
                "AvgPool2d must be square with stride = kernel, no padding, floor mode "
                "(divisor_override None, or 1 for sum pooling)",
                "kernel_size",
                module.kernel_size,
                "Use layer.AvgPool2d(k).",
            )
        c, h, w = self.shape
        if h < kernel[0] or w < kernel[0]:
            self.fail(name, "pooling window larger than the map", "kernel_size", kernel[0])
        self.pool = (module, self.shape)
        self.shape = (c, h // kernel[0], w // kernel[0])

    def _start_block(self, name: str, module, out_shape: tuple[int, ...]) -> None:
        if self.pending is not None:
            self.fail(name, "two synaptic layers without a neuron node between them")
        if module.bias is not None and not self.allow_bias:
            self.fail(
                name,
                "synaptic layers must have bias=False",
                "bias",
                True,
                "Create the layer with bias=False.",
            )
        self.pending = {
            "name": name,
            "synapse": module,
            "bn": None,
            "out": out_shape,
            "in": self.shape,
            "pool": self.pool,
        }
        self.pool = None

    def linear(self, name: str, module) -> None:
        if len(self.shape) != 1 or self.shape[0] != module.in_features:
            self.fail(
                name,
                f"Linear expects {module.in_features} inputs but gets shape {self.shape}",
                "in_features",
                module.in_features,
                "Put a Flatten before it.",
            )
        self._start_block(name, module, (module.out_features,))

    def conv(self, name: str, module) -> None:
        if len(self.shape) != 3 or self.shape[0] != module.in_channels:
            self.fail(
                name,
                f"Conv2d expects {module.in_channels} channels but gets shape {self.shape}",
                "in_channels",
                module.in_channels,
            )
        self._check_conv_geometry(name, module)
        k, s, p = module.kernel_size, module.stride[0], module.padding[0]
        h = conv_output_size(self.shape[1], k[0], s, p)
        w = conv_output_size(self.shape[2], k[1], s, p)
        if h <= 0 or w <= 0:
            self.fail(name, "conv output would be empty", "output_size", (h, w))
        self._start_block(name, module, (module.out_channels, h, w))

    def _check_conv_geometry(self, name: str, module) -> None:
        padding = module.padding
        checks = {
            "groups": (module.groups, module.groups == 1),
            "dilation": (module.dilation, tuple(module.dilation) == (1, 1)),
            "padding_mode": (module.padding_mode, module.padding_mode == "zeros"),
            "stride": (module.stride, len(set(module.stride)) == 1),
            "padding": (padding, not isinstance(padding, str) and len(set(padding)) == 1),
        }
        for attr, (value, ok) in checks.items():
            if not ok:
                self.fail(
                    name,
                    f"unsupported Conv2d {attr}",
                    attr,
                    value,
                    "Use groups=1, dilation=1, zero padding, equal int stride/padding.",
                )

    def batchnorm(self, name: str, module) -> None:
        pend = self.pending
        if pend is None or type(pend["synapse"]) is not layer.Conv2d or pend["bn"] is not None:
            self.fail(name, "BatchNorm2d must directly follow a Conv2d")
        if module.num_features != pend["out"][0] or module.running_var is None:
            self.fail(
                name,
                "BatchNorm2d needs num_features = conv channels and running stats",
                "num_features",
                module.num_features,
            )
        pend["bn"] = module

    def neuron(self, name: str, module) -> None:
        if self.pending is None:
            self.fail(name, "neuron node without a Linear/Conv2d before it")
        check_neuron(module, where=f"{self.where} [{name}]")
        pend, self.pending = self.pending, None
        pool, pool_in = pend["pool"] if pend["pool"] else (None, None)
        parts = (pend["name"], pend["synapse"], pend["bn"], name, module, pend["in"], pend["out"])
        self.blocks.append(Block(*parts, pool=pool, pool_in_shape=pool_in))
        self.shape = pend["out"]

    def finish(self, num_classes: int | None) -> list[Block]:
        if self.pending is not None:
            self.fail(self.pending["name"], "the last synaptic layer has no neuron node after it")
        if not self.blocks:
            self.fail("-", "model has no Linear/Conv2d + neuron block")
        if self.pool is not None:
            self.fail("-", "AvgPool2d after the last block: no synaptic layer reads it")
        if num_classes is not None and self.shape != (num_classes,):
            self.fail(
                self.blocks[-1].name,
                f"output must be {num_classes} neurons (one per class) after a Flatten",
                "output_shape",
                self.shape,
            )
        return self.blocks


def check_neuron(module: torch.nn.Module, *, where: str) -> None:
    """Raise :class:`ModelError` unless ``module`` is a convention LIF/IF node (hard reset to 0)."""
    if module.v_reset is None or float(module.v_reset) != 0.0:
        raise ModelError(
            "neurons must hard-reset to 0",
            where=where,
            field="v_reset",
            value=module.v_reset,
            fix="Use v_reset=0.0.",
        )
    if isinstance(module, neuron.LIFNode) and not module.decay_input:
        raise ModelError(
            "LIF neurons must use decay_input=True",
            where=where,
            field="decay_input",
            value=False,
        )
    if not float(module.v_threshold) > 0.0:
        raise ModelError(
            "v_threshold must be > 0", where=where, field="v_threshold", value=module.v_threshold
        )


def neuron_info(module: torch.nn.Module) -> tuple[str, dict[str, Any]]:
    """NIR-style neuron name and parameters: ``("LIF", {tau, v_threshold, v_reset, decay_input})``
    or ``("IF", {v_threshold, v_reset})``; tau in time steps, potentials dimensionless."""
    params = {"v_threshold": float(module.v_threshold), "v_reset": float(module.v_reset)}
    if isinstance(module, neuron.IFNode):
        return "IF", params
    return "LIF", {"tau": float(module.tau), **params, "decay_input": bool(module.decay_input)}
