"""lava-dl's Network Exchange (netx) HDF5 file of a Loihi-quantized network (torch-free).

The file is what ``lava.lib.dl.netx.hdf5.Network(net_config=PATH)`` (lava-dl 0.6.0,
``lava/lib/dl/netx/hdf5.py``) turns into Lava processes, in the layout its ``NetDict``
(``netx/utils.py``) reads::

    /layer/0   type "input", shape (C, H, W) or (F,)       # no neuron: only the input shape
    /layer/1   type "dense", shape (N,), weight int [N, F], bias? int [N],
               neuron/{type "CUBA", iDecay, vDecay, vThMant, refDelay, gradedSpike}
    /layer/k   type "conv", shape (C, H, W), weight int [C_out, C_in, kh, kw],
               stride/padding/dilation [2], groups, bias? int [C_out], neuron/...
    /layer/k   type "flatten"                             # before a dense layer reading a conv

netx reads ``shape`` in reverse (its blocks are W, H, C: ``create_conv``, ``create_input``),
flips conv kernels (``weight[:, :, ::-1, ::-1]``) and flattens a conv's output as
``out.transpose([2, 1, 0]).flatten()``, i.e. in C-order (channel, row, column), so the file
holds PyTorch's layouts (SpikingJelly's, neuroprune's) unchanged.

Neuron parameters, for ``K = threshold_int`` (docs/conventions.md §3) and the LIF of
:mod:`neuroprune.sim.lava_map` (Loihi's arithmetic, ``loihi_fixed_pt``: 24-bit ``u``, ``v``,
12-bit decays, spike on ``v > vth << 6``): netx builds ``LIF(du = iDecay - 1, dv = vDecay,
vth = vThMant, bias_mant = bias, bias_exp = 6)`` (``get_neuron_params``), so the file holds
``iDecay = du + 1 = 4096`` (u holds no state), ``vDecay = round(4096 / tau)`` (0 for IF),
``vThMant`` = :func:`neuroprune.sim.lava_map.fixed_vth` and ``bias = bias_int``.

Weights: the integers ``weight_int`` (8-bit signed, ``[-128, 127]``). netx does not read a
weight exponent from the file: ``create_dense`` re-derives it with its
``optimize_weight_bits`` (weights shifted left by ``s``, ``weight_exp = -s``) and Lava's Dense
then clips and truncates them to ``num_weight_bits`` (lava#859); a conv block passes the
integers to Lava's Conv unchanged (no exponent). :func:`netx_dense_weights` transcribes that
path and :func:`write_netx` refuses a layer whose weights it would change (all weights of one
sign with the extreme value on the negative side lose it there), so the loaded network computes
``sum(weight_int * s) << 6`` exactly as the trained quantized model.

Sparsity: netx 0.6.0 has no sparse layout in the file (``NetDict`` reads ``weight`` as one
dense array); its sparse option is the loader's ``sparse_fc_layer=True`` (Lava ``Sparse``
processes for every dense block, lava-dl#238/#239). The file stores every weight array of
16 KiB or more chunked and gzip-compressed, so the zeros of a pruned layer take next to no
space (about 2 bytes per kept synapse at 90 % pruning); the root attribute
``neuroprune_sparse_fc_layer`` says whether to load with ``sparse_fc_layer=True``.

Analog (``direct``) input: the host computes the first layer's current ``rint(2**k W_int x)``
(:mod:`neuroprune.sim.inputs`); that layer's ``vThMant`` and ``bias`` are then in ``2**-k``
weight LSB (root attributes ``neuroprune_input = "current"`` and ``neuroprune_input_shift =
k``): the current goes into ``net.layers[0].neuron.a_in``, not through its synapse.

netx has no block for pooling (``create_pool`` raises NotImplementedError) nor for residual
sums (``average``/``concat`` raise it too): such graphs are refused with one line naming the
layer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuroprune.chip.arithmetic import DECAY_MAX, LOIHI
from neuroprune.core.atomic import atomic_path
from neuroprune.core.errors import ConfigError, UnsupportedError
from neuroprune.graph.stages import PoolStage
from neuroprune.sim.lava_map import fixed_layer, injection_shift, spec_arithmetic
from neuroprune.sim.spec import DeploymentSpec

NETX_FORMAT = "lava-dl netx hdf5 (lava-dl 0.6.0)"
REF_DELAY = 1  # netx's default refractory delay (read by no CUBA model)
WEIGHT_BITS = 8
COMPRESSION = "gzip"
# Below this many bytes a weight array is stored plainly: HDF5's chunk index costs more than
# gzip saves (measured: a 3.8 kB conv network's file grew from 31 kB to 41 kB compressed).
COMPRESS_MIN_BYTES = 16 * 1024
WHERE = "netx"


@dataclass(frozen=True)
class NetxFileSummary:
    """What :func:`write_netx` wrote.

    Attributes:
        path: the file.
        bytes: its size on disk.
        layers: ``(type, neurons, kept synapses)`` per layer block (conv: kernel entries).
        weight_bytes: bytes the weight datasets take in the file (compressed storage).
        dense_weight_bytes: bytes the same weights take as uncompressed int8 arrays.
        input_kind: ``"spikes"`` or ``"current"``; input_shift: ``k`` of a current input.
        sparse_fc_layer: whether to load with ``sparse_fc_layer=True``.
    """

    path: Path
    bytes: int
    layers: tuple[tuple[str, int, int], ...]
    weight_bytes: int
    dense_weight_bytes: int
    input_kind: str
    input_shift: int
    sparse_fc_layer: bool


def check_netx_spec(spec: DeploymentSpec, where: str = WHERE) -> None:
    """Refuse (one line) what a netx file cannot hold: a model not quantized for Loihi's
    arithmetic, a graph that is not a chain (netx has no residual block), or pooling."""
    arithmetic = spec_arithmetic(spec) if spec.quantized else None
    if arithmetic != LOIHI:
        chip = spec.metadata.get("chip") or "none"
        raise ConfigError(
            f"a netx file holds a network quantized for Loihi's arithmetic ({LOIHI}); this "
            f"one is for chip {chip!r}",
            where=where,
            field="chip",
            value=chip,
            fix="Export a run fitted with --chip loihi or --chip loihi2 (SpiNNaker: --format "
            "pynn).",
        )
    for k, layer in enumerate(spec.layers):
        if tuple(layer.sources) != (k - 1,):
            raise UnsupportedError(
                "lava-dl netx 0.6.0 has no block for a residual sum or a layer reading "
                "several sources ('average'/'concat' raise NotImplementedError)",
                where=f"{where}: layer {layer.neuron_name}",
                field="sources",
                value=list(layer.sources),
                fix="Export a chain (mlp, conv) for netx, or deploy the NIR file with Lava "
                "(neuroprune simulate RUN --backend lava).",
            )


def check_netx_stages(stages, where: str = WHERE) -> None:
    """Refuse a pooling stage: netx's ``create_pool`` raises NotImplementedError."""
    for name, stage in stages:
        if isinstance(stage, PoolStage):
            raise UnsupportedError(
                "lava-dl netx 0.6.0 has no pooling block (its 'pool' layer raises "
                "NotImplementedError)",
                where=f"{where}: layer {name}",
                field="type",
                value=f"{stage.kind}pool{stage.kernel}",
                fix="Use a model that downsamples with strided convs (--model conv) for netx.",
            )


def first_layer_shift(spec: DeploymentSpec) -> int:
    """``k`` of the host-injected current of a ``direct`` network: the quantizer's
    ``input_shift``, else the largest that fits inputs in [0, 1]
    (:func:`neuroprune.sim.lava_map.injection_shift` with the largest row sum of ``|W_int|``)."""
    layer = spec.layers[0]
    quant = layer.quant
    if quant is None:
        return 0
    if quant.input_shift is not None:
        return int(quant.input_shift)
    rows = np.asarray(abs(quant.weight_int).sum(axis=1)).ravel()
    return injection_shift(layer, float(np.max(rows, initial=0)))


def netx_dense_weights(weight_int: np.ndarray) -> np.ndarray:
    """The weights Lava's fixed-point Dense computes with after netx loads ``weight_int``,
    as multiples of one weight LSB: netx's ``optimize_weight_bits`` (``netx/utils.py``:
    scale, left shift by ``s``, ``num_weight_bits = 8 - s - n``, ``weight_exp = -s``), then
    Lava's ``clip_weights`` and ``truncate_weights`` (``lava/utils/weightutils.py``, sign mode
    from the shifted weights), then ``* 2**weight_exp``."""
    w = np.asarray(weight_int, dtype=np.int64)
    if not w.any():
        return w
    high, low = int(w.max()), int(w.min())
    if high < 0:
        signed, scale = 0, -256 / low
    elif low >= 0:
        signed, scale = 0, 255 / high
    else:
        pos = 127 / high if high else np.inf
        neg = -128 / low if low else np.inf
        signed, scale = 1, min(pos, neg)
    shift = int(np.floor(np.log2(scale))) + signed
    n = WEIGHT_BITS
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    bits = WEIGHT_BITS - shift - n
    shifted = w << shift if shift >= 0 else w >> -shift
    # Lava: sign mode of the shifted weights, clip, truncate
    if shifted.min() >= 0:
        mode_mixed, negate = 0, False
    elif shifted.max() <= 0:
        mode_mixed, negate = 0, True
    else:
        mode_mixed, negate = 1, False
    v = -shifted if negate else shifted
    v = np.clip(v, -(2**WEIGHT_BITS) * mode_mixed, 2**WEIGHT_BITS - 1)
    cut = WEIGHT_BITS - bits + mode_mixed
    if cut > 0:
        v = (v >> cut) << cut
    v = -v if negate else v
    return v >> shift if shift >= 0 else v << -shift


def write_netx(
    spec: DeploymentSpec,
    path: str | os.PathLike,
    *,
    input_shift: int | None = None,
    compress: bool = True,
) -> NetxFileSummary:
    """Write ``spec`` (a Loihi-quantized chain compiled from a NIR graph: its ``network``
    gives conv geometry and pooling) as a netx file at ``path``, atomically; see the
    module docstring. ``input_shift``: ``k`` of a current input (default
    :func:`first_layer_shift`); ``compress=False`` writes plain arrays (for size comparisons)."""
    import h5py  # deferred: imports h5py (only netx needs it)

    check_netx_spec(spec)
    if spec.network is None:
        raise ConfigError(
            "a netx file is written from a spec read from a NIR file",
            where=WHERE,
            field="spec.network",
            fix="Read the spec with neuroprune.sim.spec.read_deployment.",
        )
    stages = list(zip(spec.network.names, spec.network.stages, strict=True))
    check_netx_stages(stages)
    current = (spec.encoding or "direct") == "direct"
    shift = (first_layer_shift(spec) if input_shift is None else int(input_shift)) if current else 0
    synapses = [stage for _, stage in stages if hasattr(stage, "weight")]
    blocks: list[tuple[str, int, int]] = []
    weight_bytes = dense_bytes = 0
    sparse = False
    target = Path(path)
    options = {"compression": COMPRESSION, "compression_opts": 9} if compress else {}
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["neuroprune_format"] = NETX_FORMAT
        handle.attrs["neuroprune_input"] = "current" if current else "spikes"
        handle.attrs["neuroprune_input_shift"] = shift
        handle.attrs["neuroprune_timesteps"] = int(spec.timesteps or 0)
        handle.attrs["neuroprune_chip"] = str(spec.metadata.get("chip") or "")
        group = handle.create_group("layer")
        entries: list[tuple[str, dict]] = [("input", {"shape": spec.input_shape})]
        previous_kind = "input"
        for k, (layer, syn) in enumerate(zip(spec.layers, synapses, strict=True)):
            where = f"{WHERE}: layer {layer.neuron_name}"
            lava = fixed_layer(layer, shift=shift if k == 0 else 0)
            quant = layer.quant
            assert quant is not None  # check_netx_spec: quantized
            neuron = {
                "type": "CUBA",
                "iDecay": int(lava.du) + 1,
                "vDecay": int(lava.dv),
                "vThMant": int(lava.vth),
                "refDelay": REF_DELAY,
                "gradedSpike": False,
            }
            if int(lava.du) != DECAY_MAX:
                raise UnsupportedError("u must hold no state", where=where, field="du")
            entry: dict = {"neuron": neuron}
            if layer.kind == "conv":
                kernel = np.asarray(syn.quant.weight_int, dtype=np.int64)
                entry.update(
                    shape=tuple(layer.out_shape),
                    weight=kernel,
                    stride=np.array([syn.stride, syn.stride]),
                    padding=np.array([syn.padding, syn.padding]),
                    dilation=np.array([1, 1]),
                    groups=1,
                )
                bias = syn.quant.bias_int
                kept = int(np.count_nonzero(kernel))
            else:
                if previous_kind == "conv":
                    entries.append(("flatten", {}))
                dense = np.asarray(quant.weight_int.toarray(), dtype=np.int64)
                effective = netx_dense_weights(dense)
                if not np.array_equal(effective, dense):
                    raise UnsupportedError(
                        "lava-dl netx would change this layer's weights when it loads them "
                        "(optimize_weight_bits, then Lava's clip and truncate: lava#859)",
                        where=where,
                        field="weight_int",
                        value=(int(dense.min()), int(dense.max())),
                        fix="Deploy the NIR file with Lava (--backend lava); a layer whose "
                        "weights are all <= 0 with -128 among them cannot go through netx.",
                    )
                entry.update(shape=(layer.neurons,), weight=dense)
                bias = quant.bias_int
                kept = int(np.count_nonzero(dense))
                sparse = sparse or kept < dense.size
            if bias is not None and np.any(bias):
                entry["bias"] = np.asarray(bias, dtype=np.int64) << (shift if k == 0 else 0)
            entries.append((layer.kind if layer.kind == "conv" else "dense", entry))
            blocks.append((layer.kind, layer.neurons, kept))
            previous_kind = layer.kind
        for index, (kind, entry) in enumerate(entries):
            node = group.create_group(str(index))
            node.create_dataset("type", (1,), "S10", kind.encode("ascii"))
            for key, value in entry.items():
                if key == "neuron":
                    sub = node.create_group("neuron")
                    for name, item in value.items():
                        if name == "type":
                            sub.create_dataset("type", (1,), "S10", item.encode("ascii"))
                        else:
                            sub.create_dataset(name, data=item)
                elif key == "weight":
                    data = np.asarray(value, dtype=np.int8)
                    packed = compress and data.nbytes >= COMPRESS_MIN_BYTES
                    extra = {"chunks": True, **options} if packed else {}
                    dataset = node.create_dataset("weight", data=data, **extra)
                    weight_bytes += int(dataset.id.get_storage_size())
                    dense_bytes += int(data.nbytes)
                else:
                    node.create_dataset(key, data=np.asarray(value))
        handle.attrs["neuroprune_sparse_fc_layer"] = bool(sparse)
    return NetxFileSummary(
        path=target,
        bytes=target.stat().st_size,
        layers=tuple(blocks),
        weight_bytes=weight_bytes,
        dense_weight_bytes=dense_bytes,
        input_kind="current" if current else "spikes",
        input_shift=shift,
        sparse_fc_layer=sparse,
    )
