"""The integer form a quantized synaptic layer carries (docs/conventions.md §3), read once.

``weight_int`` / ``bias_int`` buffers and the ``neuroprune_quant`` dict of a Linear/Conv2d, as a
:class:`neuroprune.graph.stages.QuantStage`, with the contract proven on reading:
``weight == weight_int * weight_scale`` exactly (float64), likewise the bias. The exporters
(:mod:`neuroprune.export.stages`) and the imported-graph network
(:class:`neuroprune.models.graph_net.GraphNet`) both read layers through :func:`quant_stage`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from neuroprune.core.errors import ModelError
from neuroprune.graph.stages import QuantStage

from .translate import WEIGHT_BITS_ATTR

QUANT_ATTR = "neuroprune_quant"


def quant_stage(
    name: str,
    syn: torch.nn.Module,
    weight: np.ndarray,
    bias: np.ndarray | None,
    *,
    where: str = "export",
) -> QuantStage | None:
    """Read ``weight_int``/``bias_int``/``neuroprune_quant``; None for a float layer.

    ``weight``/``bias``: the float values the layer computes with (float32 numpy); errors are
    located at ``"{where} [{name}]"``."""
    if getattr(syn, "weight_int", None) is None:
        return None
    params = getattr(syn, QUANT_ATTR, None)
    if not isinstance(params, Mapping) or "weight_scale" not in params:
        raise ModelError(
            "quantized layer has weight_int but no neuroprune_quant dict with weight_scale",
            where=f"{where} [{name}]",
            field=QUANT_ATTR,
            value=params,
            fix="Quantize with neuroprune.quantize (conventions §3).",
        )
    scale = float(params["weight_scale"])
    weight_int = _as_int32(syn.weight_int)
    _require_exact(name, "weight", weight, weight_int, scale, where)
    bias_int = None
    if getattr(syn, "bias_int", None) is not None:
        bias_int = _as_int32(syn.bias_int)
        _require_exact(name, "bias", bias, bias_int, scale, where)
    bits = int(getattr(syn, WEIGHT_BITS_ATTR, params.get("bits", 0)))
    return QuantStage(weight_int, bias_int, bits, dict(params))


def _require_exact(
    name: str, what: str, value, integers: np.ndarray, scale: float, where: str
) -> None:
    """Raise unless ``value == integers * scale`` exactly (float64 comparison)."""
    ok = value is not None and value.shape == integers.shape
    ok = ok and np.array_equal(value.astype(np.float64), integers.astype(np.float64) * scale)
    if not ok:
        raise ModelError(
            f"{what} is not exactly {what}_int * weight_scale",
            where=f"{where} [{name}]",
            field=f"{what}_int",
            value=f"scale={scale!r}",
            fix="Use a power-of-two weight_scale and set the float weights from the integers.",
        )


def _as_int32(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.int32)
