"""Post-training quantization of a convention model (docs/conventions.md §1-§3).

:func:`ptq_model` folds BatchNorm (``models.translate.fold_batchnorm``), turns average pooling
into sum pooling (:func:`sum_pooling`), quantizes every ``Linear``/``Conv2d`` of a chain or a
wired (residual) model with the profile's quantizer and writes the result into a new model:

* ``m.weight = weight_int * weight_scale`` (float32, exact), ``m.weight_int`` (int32 buffer);
* ``m.bias = bias_int * weight_scale`` and ``m.bias_int`` where the layer has a bias;
* ``m.neuroprune_weight_bits`` and the ``m.neuroprune_quant`` dict;
* the following neuron's ``v_threshold = threshold_int * weight_scale`` and, where the chip's
  decay had to be rounded, its ``tau`` set to the value the chip realises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from spikingjelly.activation_based import neuron

from neuroprune.chip.formats.base import LayerQuant, get_quantizer
from neuroprune.chip.formats.grid import Grid, error_stats
from neuroprune.chip.formats.neuron import NeuronParams
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import UnsupportedError
from neuroprune.core.progress import Progress, emit
from neuroprune.models.blocks import Block
from neuroprune.models.quantized import QUANT_ATTR
from neuroprune.models.translate import WEIGHT_BITS_ATTR, fold_batchnorm
from neuroprune.models.zoo import model_blocks


@dataclass(frozen=True, eq=False)
class QuantizedLayer:
    """A block of the quantized model with its quantization and the float values it came from.

    ``float_weight``/``float_bias``/``float_neuron``: the BN-folded pruned values (reference for
    errors and for re-projection after fine-tuning). ``options``: the names of the mappings the
    format offers for this layer (``Quantizer.option_names``; empty: one mapping only).
    """

    block: Block
    quant: LayerQuant
    float_weight: np.ndarray
    float_bias: np.ndarray | None
    float_neuron: NeuronParams
    options: tuple[str, ...] = ()


def neuron_params(node: torch.nn.Module) -> NeuronParams:
    """:class:`NeuronParams` of a SpikingJelly LIF/IF node (tau in time steps)."""
    if isinstance(node, neuron.IFNode):
        return NeuronParams(
            model="IF", tau=None, decay_input=True, v_threshold=float(node.v_threshold)
        )
    return NeuronParams(
        model="LIF",
        tau=float(node.tau),
        decay_input=bool(node.decay_input),
        v_threshold=float(node.v_threshold),
    )


def ptq_model(
    model: torch.nn.Module,
    profile: ChipProfile,
    input_shape: Sequence[int],
    *,
    options: Mapping[str, int] | None = None,
    progress: Progress | None = None,
) -> tuple[torch.nn.Module, list[QuantizedLayer]]:
    """Quantize a copy of ``model`` to ``profile.weights`` (the input model is not changed).

    ``options``: layer name -> index into the format's mappings for that layer
    (``Quantizer.grid_options``; absent: 0, the default).

    Every synaptic layer is quantized on its own scale against its own neuron's threshold.
    That is consistent where branches sum: a residual ADD sums *spikes* (0/1 per source), and
    the layer reading it applies one integer weight set to each source, so
    ``W_int (s_a + s_b) = W_int s_a + W_int s_b`` in one population's units.
    """
    quantizer = get_quantizer(profile.weights, profile.path)
    format_params = quantizer.read_params(profile.weights, profile.path)
    qmodel = fold_batchnorm(model)
    layers = []
    for block in model_blocks(qmodel, input_shape, where="quantize"):
        sum_pooling(block)
        weight, bias = _float_values(block)
        params = neuron_params(block.neuron)
        lq = quantizer.quantize_layer(
            weight,
            bias,
            params,
            profile.weights,
            neuron_spec=profile.neuron,
            option=(options or {}).get(block.name, 0),
            where=profile.path,
        )
        apply_layer_quant(block, lq)
        names = quantizer.option_names(weight, format_params)
        layers.append(QuantizedLayer(block, lq, weight, bias, params, names))
        emit(progress, **{"event": "quantize_layer", "layer": block.name, **layer_row(block, lq)})
    return qmodel, layers


def sum_pooling(block: Block) -> None:
    """Make the block read sum pooling instead of average pooling (in place, exact).

    ``W avg_k(S) = (W / k**2) sum_k(S)``: the ``AvgPool2d(k)`` before the synapse gets
    ``divisor_override=1`` and the weight is divided by ``k**2`` (a power of two for ``k`` = 2
    or 4, so exact in float). A chip then adds the ``k**2`` spikes of a window through one
    integer weight each, and the quantized weights stay integers (no ``1/k**2`` level).
    """
    if block.pool_kind != "avg":
        return
    with torch.no_grad():
        block.synapse.weight.div_(float(block.pool_kernel**2))
    block.pool.divisor_override = 1


def requantize_layer(
    layer: QuantizedLayer,
    profile: ChipProfile,
    weight: np.ndarray,
    bias: np.ndarray | None,
    grid: Grid | None = None,
) -> QuantizedLayer:
    """Snap fine-tuned float values onto ``grid`` (default: the PTQ grid; a re-fitted grid must
    keep its scale) and write them to the model.

    The error statistics compare the result with the pruned float weights (``float_weight``),
    i.e. they measure how far the chip's model is from the float model it came from; grid facts
    and notes chosen at post-training quantization are kept.
    """
    quantizer = get_quantizer(profile.weights, profile.path)
    lq = quantizer.quantize_layer(
        weight * (layer.quant.weight_int != 0),
        bias,
        layer.float_neuron,
        profile.weights,
        neuron_spec=profile.neuron,
        grid=grid or layer.quant.grid,
        where=profile.path,
    )
    lq = replace(
        lq,
        stats=error_stats(layer.float_weight, lq.weight_int, lq.grid),
        extra={**layer.quant.extra, **lq.extra},
        notes=tuple(dict.fromkeys(layer.quant.notes + lq.notes)),
    )
    apply_layer_quant(layer.block, lq)
    return replace(layer, quant=lq)


def _float_values(block: Block) -> tuple[np.ndarray, np.ndarray | None]:
    syn = block.synapse
    weight = syn.weight.detach().cpu().double().numpy()
    bias = None if syn.bias is None else syn.bias.detach().cpu().double().numpy()
    return weight, bias


def apply_layer_quant(block: Block, lq: LayerQuant) -> None:
    """Write ``lq`` into the block's synapse and neuron (conventions §3); checks exactness."""
    syn, node = block.synapse, block.neuron
    with torch.no_grad():
        syn.weight.copy_(_as_float(lq.weight_int, lq.scale, syn.weight))
        _set_buffer(syn, "weight_int", lq.weight_int)
        if syn.bias is not None:
            bias_int = (
                lq.bias_int if lq.bias_int is not None else np.zeros(syn.bias.shape, np.int64)
            )
            syn.bias.copy_(_as_float(bias_int, lq.scale, syn.bias))
            _set_buffer(syn, "bias_int", bias_int)
    setattr(syn, WEIGHT_BITS_ATTR, int(lq.bits))
    setattr(syn, QUANT_ATTR, lq.quant_dict())
    node.v_threshold = lq.v_threshold
    if lq.tau is not None and not isinstance(node, neuron.IFNode):
        node.tau = float(lq.tau)
    _check_exact(block.name, syn.weight, lq.weight_int, lq.scale)


def _as_float(ints: np.ndarray, scale: float, like: torch.Tensor) -> torch.Tensor:
    values = torch.from_numpy(ints.astype(np.float64) * scale)
    return values.to(dtype=like.dtype, device=like.device)


def _set_buffer(module: torch.nn.Module, name: str, ints: np.ndarray) -> None:
    tensor = torch.from_numpy(np.asarray(ints, dtype=np.int32).copy())
    module.register_buffer(name, tensor.to(module.weight.device))


def _check_exact(name: str, weight: torch.Tensor, ints: np.ndarray, scale: float) -> None:
    """Internal invariant: the float32 weight equals ``weight_int * scale`` exactly."""
    stored = weight.detach().cpu().double().numpy()
    if not np.array_equal(stored, ints.astype(np.float64) * scale):
        raise UnsupportedError(
            "quantized weight is not exactly weight_int * weight_scale in float32",
            where=f"quantize [{name}]",
            field="weight_scale",
            value=scale,
            fix="Report this bug; the format needs a scale with fewer significant bits.",
        )


def layer_row(block: Block, lq: LayerQuant) -> dict[str, Any]:
    """The per-layer report row (JSON-serialisable; ``mapping`` where the format has several,
    e.g. TrueNorth's ``4x``/``2x`` axons per input)."""
    q = lq.quant_dict()
    return {
        "layer": block.name,
        "neuron": block.neuron_name,
        "kind": block.kind,
        "format": lq.format,
        "weight_scale": q["weight_scale"],
        "weight_exp": q["weight_exp"],
        "bits": q["bits"],
        "int_bits": q["int_bits"],
        "threshold_int": q["threshold_int"],
        "decay_v": q["decay_v"],
        "clipped_fraction": q["clipped_fraction"],
        "max_abs_error": q["max_abs_error"],
        "mean_abs_error": q["mean_abs_error"],
        "nonzero_before": q["nonzero_before"],
        "nonzero_after": q["nonzero_after"],
        "notes": list(lq.notes),
        **({"mapping": q["mapping"]} if "mapping" in q else {}),
    }


def grid_tensors(grid: Grid, like: torch.Tensor) -> torch.Tensor | None:
    """Level values ``levels * scale`` as a float64 tensor on ``like``'s device (None: uniform)."""
    if grid.levels is None:
        return None
    return torch.as_tensor(np.asarray(grid.levels, np.float64) * grid.scale, device=like.device)
