"""The model convention's vocabulary: the allowed layer types and :class:`Block`, one
synaptic layer with its pooling and neuron.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import layer

from neuroprune.models import neurons

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
    ``AvgPool2d`` precedes the block (``pool``), ``pool_in_shape`` is the spike map it pools;
    ``flat_shape`` is the ``(C, H, W)`` map a Linear reads through a Flatten.
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
    flat_shape: tuple[int, ...] | None = None

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


def pool_kind(module: torch.nn.Module) -> str:
    """``"sum"`` for ``AvgPool2d(k, divisor_override=1)``, else ``"avg"``."""
    return "sum" if getattr(module, "divisor_override", None) == 1 else "avg"


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out
