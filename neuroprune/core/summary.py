"""Network summary (layer L0, torch-free): what a chip must hold.

A :class:`NetworkSummary` lists the synaptic layers of a feed-forward SNN in order. Each
:class:`LayerSummary` holds the layer's connectivity as a sparse boolean matrix
(``neurons x inputs``, conv layers unrolled) so that fit rules can count physical synapses,
fan-in, fan-out and per-core memory exactly.

Counting convention (stated in every report): a synapse is a nonzero weight as the chip stores
it, after BN folding and quantization. Dense: nonzero matrix entries. Conv on a chip without
on-chip weight sharing: the unrolled count, i.e. the sum over output neurons of their nonzero
in-bounds kernel taps. Conv on a chip with weight sharing: nonzero kernel entries.

Build layers with :func:`dense_layer` and :func:`conv_layer` from numpy weights; the torch
translator in ``neuroprune.models`` only extracts weights and calls these.

Pooling (average or sum, ``k x k``, stride ``k``, no padding) of spikes is not a neuron: on a
chip without pooling hardware it is a fixed-weight sparse projection ``P`` that the next layer's
weights ``W`` absorb, so the chip wires ``W P`` (:func:`pooled_layer`). Each pre-pool input lies
in exactly one window, so ``W P`` holds ``k^2`` copies of every nonzero of ``W`` (scaled by
``1/k^2`` for average pooling): a pooled layer has ``k^2`` times the synapses and fan-in of the
same layer reading the pooled map. With conv weight sharing the kernel count is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

COUNTING_CONVENTION = (
    "synapse = nonzero weight as the chip stores it (after BN folding and quantization); "
    "conv layers unrolled to (output neuron, in-bounds input) pairs unless the chip shares "
    "conv weights, then nonzero kernel entries"
)


@dataclass(frozen=True, eq=False)
class LayerSummary:
    """One synaptic layer followed by its spiking neurons.

    Attributes:
        name: layer name (module path in the torch model).
        kind: ``"dense"`` or ``"conv"``.
        in_shape / out_shape: input and output shapes without time and batch, e.g. ``(64,)`` or
            ``(8, 8, 8)`` (C, H, W).
        connectivity: ``neurons x inputs`` boolean CSR matrix of physical synapses (unrolled).
        kernel_nonzeros: nonzero entries of the weight tensor (= synapses when shared).
        kernel_entries: all entries of the weight tensor (dense positions of the kernel).
        neuron_model: NIR-style name of the neuron (``"LIF"``, ``"IF"``, ``"CubaLIF"``).
        neuron_params: model parameters (tau, v_threshold, decay_input, ...), for reports.
        weight_bits: stored weight width after quantization; ``None`` while float.
        distinct_values_max: most distinct nonzero weight values any neuron receives
            (``None`` while float); TrueNorth allows 4.
        conv: conv geometry ``{kernel: (kh, kw), stride, padding, in_channels, out_channels}``.
        flat_shape: for a dense layer that reads a flattened ``(C, H, W)`` map, that map's
            shape (``None``: not known); a conv-kernel chip (Speck) holds it as a conv with an
            ``H x W`` kernel over ``C`` channels, as Sinabs converts a Linear.
        sources: names of the layers whose neurons are the input columns, block after block
            (each block as wide as that layer's neurons): a layer reading ``k`` ADDed (residual)
            spike sources lists ``k`` names. ``()``: the layer before (the network input for
            the first layer).
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    connectivity: sp.csr_matrix
    kernel_nonzeros: int
    kernel_entries: int
    neuron_model: str = "LIF"
    neuron_params: Mapping[str, Any] = field(default_factory=dict)
    weight_bits: int | None = None
    distinct_values_max: int | None = None
    conv: Mapping[str, Any] | None = None
    sources: tuple[str, ...] = ()
    flat_shape: tuple[int, ...] | None = None
    negative: sp.csr_matrix | None = None
    entries: sp.csr_matrix | None = None

    @property
    def neurons(self) -> int:
        """Spiking units fed by this layer (conv: channels x positions)."""
        return int(self.connectivity.shape[0])

    @property
    def inputs(self) -> int:
        """Presynaptic sources (input axons) of this layer."""
        return int(self.connectivity.shape[1])

    @property
    def unrolled_synapses(self) -> int:
        """Physical synapses with conv unrolled (one per nonzero in-bounds tap per neuron)."""
        return int(self.connectivity.nnz)

    def synapses(self, conv_weight_sharing: bool = False) -> int:
        """Physical synapses as the chip stores them (see module docstring)."""
        if self.kind == "conv" and conv_weight_sharing:
            return self.kernel_nonzeros
        return self.unrolled_synapses

    def dense_positions(self, conv_weight_sharing: bool = False) -> int:
        """Synapses this layer would have with nothing pruned."""
        if self.kind == "conv" and conv_weight_sharing:
            return self.kernel_entries
        if self.kind == "conv":
            return int(self.conv.get("dense_unrolled", self.unrolled_synapses)) if self.conv else 0
        return self.neurons * self.inputs

    @property
    def fan_in(self) -> np.ndarray:
        """Nonzero inputs per neuron (int array, length ``neurons``)."""
        return np.diff(self.connectivity.indptr).astype(np.int64)

    @property
    def fan_out(self) -> np.ndarray:
        """Targets per input (int array, length ``inputs``)."""
        return np.bincount(self.connectivity.indices, minlength=self.inputs).astype(np.int64)

    @property
    def max_fan_in(self) -> int:
        return int(self.fan_in.max(initial=0))

    @property
    def fan_in_entries(self) -> np.ndarray:
        """Chip entries per neuron (int array, length ``neurons``): the sum of ``entries`` over
        the neuron's synapses, or ``fan_in`` where every synapse takes one entry."""
        if self.entries is None:
            return self.fan_in
        return np.asarray(self.entries.sum(axis=1)).ravel().astype(np.int64)

    def rows_per_input(self, rows: slice | None = None) -> np.ndarray | None:
        """Signs each input uses among the neurons ``rows`` (all by default): 0 (no synapse),
        1 (all of one sign) or 2 (both signs), i.e. the synapse rows the input needs on a chip
        that sets the sign per row. ``None`` where the signs are not known."""
        if self.negative is None:
            return None
        rows = slice(None) if rows is None else rows
        conn, neg = self.connectivity[rows], self.negative[rows]
        total = np.bincount(conn.indices, minlength=self.inputs)
        negative = np.bincount(neg.indices, minlength=self.inputs)
        return ((total - negative) > 0).astype(np.int64) + (negative > 0).astype(np.int64)

    @property
    def mean_fan_in(self) -> float:
        return float(self.fan_in.mean()) if self.neurons else 0.0


@dataclass(frozen=True, eq=False)
class NetworkSummary:
    """The synaptic layers of a feed-forward SNN in order, plus input shape and time steps."""

    layers: tuple[LayerSummary, ...]
    input_shape: tuple[int, ...]
    timesteps: int = 1
    name: str = "network"

    @property
    def neurons(self) -> int:
        return sum(layer.neurons for layer in self.layers)

    def synapses(self, conv_weight_sharing: bool = False) -> int:
        return sum(layer.synapses(conv_weight_sharing) for layer in self.layers)

    def dense_positions(self, conv_weight_sharing: bool = False) -> int:
        return sum(layer.dense_positions(conv_weight_sharing) for layer in self.layers)

    @property
    def max_fan_in(self) -> int:
        return max((layer.max_fan_in for layer in self.layers), default=0)

    def layer(self, name: str) -> LayerSummary:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


# --------------------------------------------------------------------------------------------
# Builders from numpy weights


def _distinct_values_max(rows: Sequence[np.ndarray]) -> int:
    return max((len(np.unique(r[r != 0])) for r in rows), default=0)


def dense_layer(
    name: str,
    weight: np.ndarray,
    *,
    neuron_model: str = "LIF",
    neuron_params: Mapping[str, Any] | None = None,
    weight_bits: int | None = None,
    flat_shape: tuple[int, ...] | None = None,
    entries: np.ndarray | None = None,
) -> LayerSummary:
    """Summary of a fully connected layer with weight matrix ``(out, in)`` (``flat_shape``:
    the ``(C, H, W)`` map it reads flattened, if any; ``entries``: chip entries per weight,
    same shape, where a synapse may take several)."""
    weight = np.asarray(weight)
    conn = sp.csr_matrix(weight != 0)
    entry_matrix = None
    if entries is not None:
        entry_matrix = sp.csr_matrix(np.where(weight != 0, np.asarray(entries), 0).astype(np.int64))
    distinct = _distinct_values_max(list(weight)) if weight_bits is not None else None
    return LayerSummary(
        name=name,
        kind="dense",
        in_shape=(weight.shape[1],),
        out_shape=(weight.shape[0],),
        connectivity=conn,
        kernel_nonzeros=int(conn.nnz),
        kernel_entries=int(weight.size),
        neuron_model=neuron_model,
        neuron_params=dict(neuron_params or {}),
        weight_bits=weight_bits,
        distinct_values_max=distinct,
        flat_shape=None if flat_shape is None else tuple(int(v) for v in flat_shape),
        negative=sp.csr_matrix(weight < 0),
        entries=entry_matrix,
    )


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution: ``floor((size + 2*padding - kernel) / stride) + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def unrolled_conv(
    weight: np.ndarray, in_shape: tuple[int, int, int], stride: int, padding: int
) -> tuple[sp.csr_matrix, np.int64]:
    """Unroll a conv kernel ``(C_out, C_in, kh, kw)`` over an input ``(C_in, H, W)``.

    Returns the ``(C_out*H_out*W_out) x (C_in*H*W)`` CSR matrix of weights (zeros dropped,
    out-of-bounds taps dropped) in C-order (channel, row, column) on both sides, and the number of
    in-bounds taps (the dense unrolled positions).
    """
    c_out, c_in, kh, kw = weight.shape
    _, h, w = in_shape
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    co, oy, ox, ci, ky, kx = np.meshgrid(
        np.arange(c_out),
        np.arange(h_out),
        np.arange(w_out),
        np.arange(c_in),
        np.arange(kh),
        np.arange(kw),
        indexing="ij",
    )
    iy = oy * stride - padding + ky
    ix = ox * stride - padding + kx
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    rows = ((co * h_out + oy) * w_out + ox)[inside]
    cols = ((ci * h + iy) * w + ix)[inside]
    vals = weight[co[inside], ci[inside], ky[inside], kx[inside]]
    shape = (c_out * h_out * w_out, c_in * h * w)
    positions = len(rows)
    keep = vals != 0
    matrix = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=shape)
    matrix.sum_duplicates()
    return matrix, np.int64(positions)


def conv_layer(
    name: str,
    weight: np.ndarray,
    in_shape: tuple[int, int, int],
    *,
    stride: int = 1,
    padding: int = 0,
    neuron_model: str = "LIF",
    neuron_params: Mapping[str, Any] | None = None,
    weight_bits: int | None = None,
    entries: np.ndarray | None = None,
) -> LayerSummary:
    """Summary of a 2-D convolution with kernel ``(C_out, C_in, kh, kw)`` on input ``(C, H, W)``
    (``entries``: chip entries per kernel weight, same shape, where a synapse may take several;
    every unrolled copy of a tap takes its entries)."""
    weight = np.asarray(weight)
    c_out, c_in, kh, kw = weight.shape
    matrix, positions = unrolled_conv(weight, in_shape, stride, padding)
    entry_matrix = None
    if entries is not None:
        kept_entries = np.where(weight != 0, np.asarray(entries), 0).astype(np.float64)
        unrolled_entries, _ = unrolled_conv(kept_entries, in_shape, stride, padding)
        entry_matrix = unrolled_entries.astype(np.int64).tocsr()
    h_out = conv_output_size(in_shape[1], kh, stride, padding)
    w_out = conv_output_size(in_shape[2], kw, stride, padding)
    distinct = None
    if weight_bits is not None:
        distinct = _distinct_values_max([matrix.getrow(i).data for i in range(matrix.shape[0])])
    conn = matrix.astype(bool).tocsr()
    negative = (matrix < 0).astype(bool).tocsr()
    return LayerSummary(
        name=name,
        kind="conv",
        in_shape=tuple(in_shape),
        out_shape=(c_out, h_out, w_out),
        connectivity=conn,
        kernel_nonzeros=int(np.count_nonzero(weight)),
        kernel_entries=int(weight.size),
        neuron_model=neuron_model,
        neuron_params=dict(neuron_params or {}),
        weight_bits=weight_bits,
        distinct_values_max=distinct,
        conv={
            "kernel": (kh, kw),
            "stride": stride,
            "padding": padding,
            "in_channels": c_in,
            "out_channels": c_out,
            "dense_unrolled": int(positions),
        },
        negative=negative,
        entries=entry_matrix,
    )


def pool_projection(in_shape: Sequence[int], kernel: int) -> sp.csr_matrix:
    """0/1 matrix ``(C*H'*W') x (C*H*W)`` of ``k x k`` sum pooling with stride ``k``, no
    padding, ``H' = floor(H / k)`` (C-order on both sides; inputs past the last full window
    are read by no one)."""
    c, h, w = (int(v) for v in in_shape)
    h_out, w_out = h // kernel, w // kernel
    ch, oy, ox, ky, kx = np.meshgrid(
        np.arange(c),
        np.arange(h_out),
        np.arange(w_out),
        np.arange(kernel),
        np.arange(kernel),
        indexing="ij",
    )
    rows = ((ch * h_out + oy) * w_out + ox).ravel()
    cols = ((ch * h + oy * kernel + ky) * w + ox * kernel + kx).ravel()
    data = np.ones(rows.size, dtype=np.int8)
    return sp.csr_matrix((data, (rows, cols)), shape=(c * h_out * w_out, c * h * w))


def pooled_layer(layer: LayerSummary, pre_pool_shape: Sequence[int], kernel: int) -> LayerSummary:
    """``layer`` (built on the pooled map) as the chip wires it when it reads ``k x k``-pooled
    spikes of shape ``pre_pool_shape``: connectivity ``W P`` (module docstring), unrolled dense
    positions times ``k^2``; kernel counts (weight sharing) unchanged."""
    projection = pool_projection(pre_pool_shape, kernel)
    conn = (layer.connectivity.astype(np.int32) @ projection.astype(np.int32)).astype(bool)
    conv = None
    if layer.conv is not None:
        dense = int(layer.conv.get("dense_unrolled", layer.unrolled_synapses))
        conv = {**layer.conv, "dense_unrolled": dense * kernel**2, "pool_kernel": kernel}
    shape = tuple(int(v) for v in pre_pool_shape)
    negative = None
    if layer.negative is not None:
        negative = (layer.negative.astype(np.int32) @ projection.astype(np.int32)).astype(bool)
        negative = negative.tocsr()
    entries = None
    if layer.entries is not None:
        entries = (layer.entries.astype(np.int64) @ projection.astype(np.int64)).tocsr()
    return replace(
        layer,
        in_shape=shape,
        connectivity=conn.tocsr(),
        conv=conv,
        negative=negative,
        entries=entries,
    )
