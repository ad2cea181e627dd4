"""Model zoo and the model convention (layer L3).

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
  (``k^2`` synapses per weight, :func:`neuroprune.core.summary.pooled_layer`).

User models: ``spec = "path/to/file.py:factory"``. The file is imported and called as
``factory(input_shape=(C, H, W), num_classes=K) -> torch.nn.Sequential``; the result is put in
multi-step mode and must satisfy the convention above (checked with a dry forward pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from spikingjelly.activation_based import functional, layer, surrogate

from neuroprune.core.errors import ModelError
from neuroprune.core.registry import lookup
from neuroprune.core.summary import conv_output_size
from neuroprune.models import neurons
from neuroprune.models.blocks import POOL_TYPES, Block, _prod
from neuroprune.models.reader import model_wiring
from neuroprune.models.registry import MODEL_ZOO, NEURON_MODELS, ModelEntry
from neuroprune.models.user_model import load_user_model
from neuroprune.models.walker import parse_blocks

MODELS = MODEL_ZOO
"""The built-in model names (:data:`neuroprune.models.registry.MODEL_ZOO`)."""
NEURONS = tuple(NEURON_MODELS)  # the registry's names (lif first: the default)
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {"hidden": entry.hidden} for name, entry in MODEL_ZOO.items() if entry.hidden
}


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
    if spec in MODEL_ZOO:
        return _build_entry(
            spec, MODEL_ZOO[spec], input_shape, num_classes, neuron_kind, tau, v_threshold, hidden
        )
    return lookup(MODEL_ZOO, spec)  # raises ModelError: unknown model, with the closest names


def _build_entry(
    spec, entry: ModelEntry, input_shape, num_classes, neuron_kind, tau, v_threshold, hidden
):
    """Model ``spec`` from its registry ``entry`` (its builder, the convention check)."""
    build = entry.build_function()
    if not entry.chain:  # models that are not Sequential chains (e.g. models/sew.py)
        return build(input_shape, num_classes, neuron_kind, tau, v_threshold, hidden)
    widths = tuple(MODEL_DEFAULTS[spec]["hidden"] if hidden is None else hidden)
    make = neuron_factory(neuron_kind, tau, v_threshold)
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


def model_blocks(
    model: torch.nn.Module, input_shape: Sequence[int], *, where: str, allow_bias: bool = True
) -> list[Block]:
    """Every synaptic layer of a model in forward order: a Sequential chain's blocks
    (:func:`parse_blocks`, pooling allowed) or a wired model's (``model.blocks(input_shape)``,
    e.g. :class:`neuroprune.models.sew.SEWResNet`), as
    :func:`neuroprune.models.reader.model_wiring` reads them."""
    return list(model_wiring(model, input_shape, where=where, allow_bias=allow_bias).blocks)


def set_module(root: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    """Replace the submodule at dotted ``path`` (``"stages.0.blocks.1.neuron2"``) by ``module``.

    SpikingJelly's ``reset_net(root)`` caches the stateful modules it found on its first call
    (weak references); while the replaced module is still referenced elsewhere, that list
    would keep resetting it instead of ``module``, whose state would then run on from one
    batch into the next. The cache of ``root`` is dropped here."""
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
    functional.invalidate_reset_cache(root)


def has_pooling(model: torch.nn.Module) -> bool:
    """True when a Sequential model holds an ``AvgPool2d`` child (see the convention)."""
    return isinstance(model, torch.nn.Sequential) and any(
        isinstance(child, POOL_TYPES) for child in model.children()
    )
