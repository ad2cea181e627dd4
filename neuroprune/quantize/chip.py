"""Put a quantized model on its chip's neuron arithmetic (conventions.md §3).

For a profile that declares ``neuron.arithmetic`` (:data:`neuroprune.chip.arithmetic.ARITHMETICS`),
every neuron node of the quantized model becomes a chip-arithmetic node
(:class:`neuroprune.models.neurons.ChipLIFNode` / ``ChipIFNode``): the forward pass computes the
chip's integer dynamics exactly, the backward pass a surrogate gradient. Quantization-aware
fine-tuning trains that model, and its accuracy is the accuracy under the chip's arithmetic.

Analog input (``direct`` encoding): the chip's host injects the first layer's current as the
integer ``rint(2**k W_int x)`` (units of ``2**-k`` weight LSB). ``k`` is fixed here, from the
training images (the arithmetic's ``analog_shift``), and stored as
``neuroprune_quant["input_shift"]`` on the first synaptic layer so the simulators inject the
same integers; that layer computes in float64 (as the simulator's ``W_int x`` does).
A chip without declared arithmetic keeps float neurons; :func:`use_chip_arithmetic` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from neuroprune.chip.arithmetic import LayerFacts, get_arithmetic
from neuroprune.chip.schema import ChipProfile
from neuroprune.models.neurons import CHIP_TYPES, chip_copy, compute_in_float64
from neuroprune.models.zoo import set_module
from neuroprune.quantize.model import QUANT_ATTR, QuantizedLayer

FLOAT_NOTE = "neurons in float: the profile declares no neuron arithmetic (neuron.arithmetic)"
BATCH = 2048


def use_chip_arithmetic(
    qmodel: torch.nn.Module,
    layers: Sequence[QuantizedLayer],
    profile: ChipProfile,
    *,
    analog_images: np.ndarray | None,
) -> tuple[list[QuantizedLayer], str | None, list[str]]:
    """Swap every neuron of ``qmodel`` for its chip-arithmetic node (in place).

    ``analog_images``: the training images ``[N, *input_shape]`` when the first layer receives
    analog input (``direct`` encoding), else ``None``. Returns the layers (pointing at the new
    nodes), the arithmetic name (``None``: float neurons kept) and notes.
    """
    name = profile.neuron.arithmetic
    if name is None:
        return list(layers), None, [FLOAT_NOTE]
    shift = 0
    if analog_images is not None:
        shift = _input_shift(qmodel, layers[0], analog_images, name)
        compute_in_float64(layers[0].block.synapse)
    out = []
    for i, layer in enumerate(layers):
        k = shift if i == 0 else 0
        analog = analog_images is not None and i == 0
        out.append(_swap_neuron(qmodel, layer, name, k, analog, readout=i == len(layers) - 1))
    notes = [f"neurons run the chip's integer arithmetic, {name}, in training and evaluation"]
    if analog_images is not None:
        notes.append(f"analog first layer injected in 2**-{shift} weight LSB (input_shift={shift})")
    return out, name, notes


def _swap_neuron(
    qmodel, layer: QuantizedLayer, name: str, shift: int, analog: bool, *, readout: bool
):
    block, syn = layer.block, layer.block.synapse
    quant = getattr(syn, QUANT_ATTR)
    chip = {
        "arithmetic": name,
        "threshold_int": int(quant["threshold_int"]),
        "weight_scale": float(quant["weight_scale"]),
        "input_shift": int(shift),
        "readout": bool(readout),
    }
    node = chip_copy(block.neuron, chip)
    set_module(qmodel, block.neuron_name, node)
    extra = dict(layer.quant.extra)
    if analog:
        extra["input_shift"] = int(shift)
        setattr(syn, QUANT_ATTR, {**quant, "input_shift": int(shift)})
    quant_layer = replace(layer.quant, extra=extra)
    return replace(layer, block=replace(block, neuron=node), quant=quant_layer)


def sync_chip_nodes(layers: Sequence[QuantizedLayer]) -> None:
    """After re-quantization: copy each layer's threshold and scale into its chip node."""
    for layer in layers:
        node, quant = layer.block.neuron, getattr(layer.block.synapse, QUANT_ATTR)
        if isinstance(node, CHIP_TYPES):
            node.chip = {
                **node.chip,
                "threshold_int": int(quant["threshold_int"]),
                "weight_scale": float(quant["weight_scale"]),
            }


def _input_shift(qmodel, first: QuantizedLayer, images: np.ndarray, name: str) -> int:
    """``k`` for the analog first layer from the largest ``|W_int x|`` over ``images``."""
    quant = first.quant
    bias = 0 if quant.bias_int is None else int(np.max(np.abs(quant.bias_int), initial=0))
    largest = _largest_current(qmodel, first, images)
    node = first.block.neuron
    facts = LayerFacts(
        model="IF" if quant.tau is None else "LIF",
        tau=quant.tau,
        decay_input=bool(getattr(node, "decay_input", True)),
        threshold_int=int(quant.threshold_int),
    )
    return get_arithmetic(name).analog_shift(facts, bias, largest)


def _largest_current(qmodel, first: QuantizedLayer, images: np.ndarray) -> float:
    """``max |W_int x|`` (weight LSBs, bias excluded) over the images, in float64."""
    prefix = []  # a wired model's first layer reads the input itself
    children = qmodel.named_children() if isinstance(qmodel, torch.nn.Sequential) else ()
    for name, module in children:
        if name == first.block.name:
            break
        prefix.append(module)
    syn = first.block.synapse
    weight_int = torch.as_tensor(first.quant.weight_int, dtype=torch.float64)
    largest = 0.0
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            x = torch.as_tensor(np.asarray(images[start : start + BATCH]), dtype=torch.float64)
            h = x.unsqueeze(0)
            for module in prefix:
                h = module(h)
            current = _weights_only(syn, weight_int, h[0])
            largest = max(largest, float(current.abs().max()))
    return largest


def _weights_only(syn: torch.nn.Module, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if isinstance(syn, torch.nn.Conv2d):
        return torch.nn.functional.conv2d(x, weight, None, syn.stride, syn.padding)
    return torch.nn.functional.linear(x, weight)


def arithmetic_of(model: torch.nn.Module) -> dict[str, Any] | None:
    """``{"arithmetic": name, "layers": n}`` when the model's neurons run chip arithmetic."""
    nodes = [m for m in model.modules() if isinstance(m, CHIP_TYPES)]
    if not nodes:
        return None
    return {"arithmetic": nodes[0].chip["arithmetic"], "layers": len(nodes)}
