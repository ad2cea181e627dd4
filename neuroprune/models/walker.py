"""The convention check: :func:`parse_blocks` walks a Sequential's children into blocks
and names the first layer that breaks the convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from spikingjelly.activation_based import layer, neuron

from neuroprune.core.errors import ModelError, UnsupportedError
from neuroprune.core.summary import conv_output_size
from neuroprune.models.blocks import (
    _ALLOWED_TEXT,
    ALLOWED_TYPES,
    MAX_POOL_TYPES,
    POOL_TYPES,
    Block,
    _pair,
    _prod,
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
        self.flat_shape: tuple[int, ...] | None = None  # the map the last Flatten flattened
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
        self.flat_shape = self.shape if len(self.shape) == 3 else self.flat_shape
        self.shape = (_prod(self.shape),)

    def pooling(self, name: str, module) -> None:
        """``AvgPool2d(k)`` of a block's spikes (kernel = stride, no padding), read by the next
        synaptic layer (which the chip wires as ``W P``, :func:`neuroprune.core.summary.pooled_layer`)."""
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
            "flat": self.flat_shape if len(self.shape) == 1 else None,
        }
        self.pool = None
        self.flat_shape = None

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
        self.blocks.append(Block(*parts, pool=pool, pool_in_shape=pool_in, flat_shape=pend["flat"]))
        self.shape = pend["out"]

    def finish(self, num_classes: int | None) -> list[Block]:
        if self.pending is not None:
            self.fail(self.pending["name"], "the last synaptic layer has no neuron node after it")
        if not self.blocks:
            self.fail(
                "-",
                "model has no Linear/Conv2d + neuron block",
                field="blocks",
                value=0,
                fix="Return a Sequential of Linear/Conv2d layers, each followed by a LIF/IF node.",
            )
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
