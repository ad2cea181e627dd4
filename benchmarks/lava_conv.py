"""Benchmark: Lava's weight-shared ``Conv`` process against the unrolled CSR matrix in ``Sparse``.

Question (issue 14, item 3): is Lava's own ``lava.proc.conv.process.Conv`` cheaper per time step
than the unrolled conv matrix neuroprune hands to Lava's ``Sparse`` or to the repo's
``BatchedSparse`` (``neuroprune.sim.lavaext``)?

Each layer is a 3x3 conv (padding 1, stride 1 or 2) with 80 % of its kernel entries zero
(``--keep``: exactly ``round(0.2 * size)`` kept, at random positions, seed 0), integer weights in
[-127, 127]. Float mode uses ``w_int * 2**-6`` (dyadic, so every partial sum is exact and all
summation orders give the same float); fixed mode uses the integers the way neuroprune does:
``Sparse``/``BatchedSparse`` get ``2 * w_int`` with ``weight_exp = -1`` (Lava's bit-accurate
Sparse drops the LSB of mixed-sign weights), ``Conv`` gets ``w_int`` (its fixed_pt model
ignores ``weight_exp``, see the checks). Inputs are random spikes (rate 0.1, seed 1).

Layouts: PyTorch/neuroprune kernels are ``(C_out, C_in, kh, kw)`` on ``(C, H, W)`` inputs and
compute a correlation; Lava's Conv takes ``(C_out, kx, ky, C_in)`` kernels on ``(W, H, C)``
inputs and computes a true convolution (``scipy.signal.convolve2d``, kernel flipped), so its
kernel is ``w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)``. The Sparse matrix is
``neuroprune.core.summary.unrolled_conv`` (C-order rows and columns), the one the simulator uses.

Every Lava network is ``FrameSource -> synapse -> sink`` (no neurons: only the synapse differs),
run with ``Loihi2SimCfg`` (floating_pt or fixed_pt). ``start`` is compile + process start + the
first step (``run(RunSteps(1))``); ``ms/step`` is the wall time of a blocking
``RunSteps(--steps)`` divided by the steps. Each network is built ``--rounds`` times (all kinds
in turn, then again) and run for ``--blocks`` such blocks; both figures are the fastest seen
(the machine is shared; the minimum is the least disturbed figure). It includes Lava's
per-step overhead of the processes, the same for every synapse kind at one batch size.
"Arithmetic alone" is each synapse model's arithmetic called in this process without Lava
(Lava's ``conv.utils.conv``, the ``W.dot`` of Lava's Sparse model, neuroprune's
``batched_dot``), the fastest of 20 calls.

Batch 16: ``Sparse`` holds ``kron(I_16, W)``; ``BatchedSparse(batch=16)`` holds ``W`` once.
Conv has no batch, so it is measured two ways and the cheaper counts:
``16 proc``: 16 Conv processes in one network, fed by ONE shared source (fan-out) and summed
into ONE sink (fan-in) - fewer processes than a real deployment would need (16 sources/neuron
populations), so this favours Conv; ``stacked``: ONE Conv process whose input is the 16
samples side by side along W, each padded by 1 column of zeros on both sides (Conv's own
padding only along H), so every sample's outputs are exact and the ``(W + 2) / s - W_out``
columns between samples are discarded (needs ``(W + 2) % s == 0``). 16 separate runs would
cost 16 x the batch-1 figure per step.

Checks first (before any timing): Conv, Sparse and BatchedSparse outputs over ``--check-steps``
steps, read from a Lava ``RingBuffer`` sink, against an independent NumPy direct correlation
written here (:func:`reference_conv`), per sample, exactly (``array_equal``), float and fixed.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/lava_conv.py            # 4-6 min
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/lava_conv.py --layers 0 4 --steps 10
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from common import machine  # noqa: E402  (benchmarks/common.py)

from neuroprune.core.summary import unrolled_conv
from neuroprune.sim.batching import batched_dot

KEEP = 0.2  # fraction of kernel entries left nonzero (80 % pruned)
RATE = 0.1  # input spike probability per neuron and step
SCALE = 2.0**-6  # float weights = w_int * SCALE (dyadic: exact sums)
BATCH = 16
PADDING = 1
MODES = ("float", "fixed")


@dataclass(frozen=True)
class ConvLayer:
    """A 3x3 conv ``c_in -> c_out`` on a ``size x size`` input, padding 1."""

    c_in: int
    c_out: int
    size: int
    stride: int
    keep: float = KEEP  # fraction of kernel entries left nonzero

    @property
    def name(self) -> str:
        name = f"{self.c_in}->{self.c_out} {self.size}x{self.size} s{self.stride}"
        return name if self.keep == KEEP else f"{name} ({100 * self.keep:g} % kept)"

    @property
    def out_size(self) -> int:
        return (self.size + 2 * PADDING - 3) // self.stride + 1

    @property
    def chw_in(self) -> tuple[int, int, int]:
        return (self.c_in, self.size, self.size)


LAYERS = (
    ConvLayer(2, 8, 28, 1),
    ConvLayer(2, 8, 28, 2),
    ConvLayer(2, 8, 32, 1),
    ConvLayer(2, 8, 32, 2),
    ConvLayer(8, 16, 16, 1),
    ConvLayer(8, 16, 16, 2),
    ConvLayer(16, 16, 16, 1),
    ConvLayer(16, 16, 16, 2),
    ConvLayer(16, 16, 32, 1),  # larger; not in the default set
)
DEFAULT_LAYERS = tuple(range(8))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=list(DEFAULT_LAYERS))
    parser.add_argument("--keep", type=float, default=KEEP, help="nonzero kernel fraction")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=2, help="timed blocks per network")
    parser.add_argument("--rounds", type=int, default=2, help="networks built per kind")
    parser.add_argument("--check-steps", type=int, default=5)
    parser.add_argument("--check-layers", type=int, nargs="+", default=[0, 5])
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------
# Weights, spikes and the independent reference


def pruned_kernel(layer: ConvLayer, seed: int = 0) -> np.ndarray:
    """Integer kernel ``(C_out, C_in, 3, 3)``: ``round(keep * size)`` nonzeros in [-127, 127]."""
    rng = np.random.default_rng(seed)
    size = layer.c_out * layer.c_in * 9
    values = rng.integers(1, 128, size) * rng.choice((-1, 1), size)
    values[rng.permutation(size)[round(layer.keep * size) :]] = 0
    return values.reshape(layer.c_out, layer.c_in, 3, 3).astype(np.int64)


def spike_frames(layer: ConvLayer, steps: int, batch: int, seed: int = 1) -> np.ndarray:
    """Random 0/1 spikes ``[steps, batch, C, H, W]`` (rate :data:`RATE`)."""
    rng = np.random.default_rng(seed)
    return (rng.random((steps, batch, *layer.chw_in)) < RATE).astype(np.float64)


def reference_conv(x: np.ndarray, kernel: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """PyTorch-style correlation, written out tap by tap: for input ``x (C_in, H, W)`` and
    kernel ``(C_out, C_in, kh, kw)``,
    ``out[o, y, x'] = sum_{c, ky, kx} k[o, c, ky, kx] * xpad[c, y*s + ky, x'*s + kx]``.

    Worked example: one channel, x = [[1, 0], [0, 1]], 3x3 kernel of ones, padding 1, stride 1:
    every output sees both ones, so out = [[2, 2], [2, 2]]."""
    c_out, _, kh, kw = kernel.shape
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    h_out = (padded.shape[1] - kh) // stride + 1
    w_out = (padded.shape[2] - kw) // stride + 1
    out = np.zeros((c_out, h_out, w_out), dtype=np.result_type(x, kernel))
    for ky in range(kh):
        for kx in range(kw):
            rows = slice(ky, ky + stride * (h_out - 1) + 1, stride)
            cols = slice(kx, kx + stride * (w_out - 1) + 1, stride)
            out += np.einsum("oc,chw->ohw", kernel[:, :, ky, kx], padded[:, rows, cols])
    return out


def lava_kernel(kernel: np.ndarray) -> np.ndarray:
    """Lava Conv's kernel ``(C_out, kx, ky, C_in)`` for a true convolution on ``(W, H, C)``."""
    return np.ascontiguousarray(kernel[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def to_whc(chw: np.ndarray) -> np.ndarray:
    """``(..., C, H, W)`` -> ``(..., W, H, C)`` (Lava's image layout)."""
    return np.swapaxes(chw, -1, -3)


# --------------------------------------------------------------------------------------------
# Synapse processes


@dataclass(frozen=True)
class Weights:
    """One layer's weights in every form the processes take, for one mode."""

    kernel: np.ndarray  # (C_out, C_in, 3, 3), float or int
    csr: sp.csr_matrix  # unrolled, neurons x inputs, as Sparse receives it
    conv: np.ndarray  # Lava layout
    weight_exp: int  # Sparse's
    conv_exp: int = 0  # Conv's (only the weight_exp check sets it)


def layer_weights(layer: ConvLayer, mode: str) -> Weights:
    w_int = pruned_kernel(layer)
    if mode == "float":
        kernel = w_int * SCALE
        csr, _ = unrolled_conv(kernel, layer.chw_in, layer.stride, PADDING)
        return Weights(kernel, csr.tocsr(), lava_kernel(kernel), 0)
    csr, _ = unrolled_conv(w_int, layer.chw_in, layer.stride, PADDING)
    csr = (2 * csr).astype(np.int32).tocsr()
    return Weights(w_int, csr, lava_kernel(w_int).astype(np.int32), -1)


def make_synapse(lava, kind: str, layer: ConvLayer, weights: Weights, fixed: bool):
    """``(process, input shape, output shape)`` for kind ``conv``, ``sparse``, ``bsparse``,
    ``sparse16``, ``bsparse16`` or ``stacked16``."""
    fixed_kwargs = {"weight_exp": weights.weight_exp, "num_weight_bits": 8} if fixed else {}
    if kind in ("conv", "stacked16"):
        shape, padding = (layer.size, layer.size, layer.c_in), PADDING
        if kind == "stacked16":
            shape, padding = ((layer.size + 2 * PADDING) * BATCH, layer.size, layer.c_in), (0, 1)
        proc = lava["Conv"](
            weight=weights.conv,
            input_shape=shape,
            padding=padding,
            stride=layer.stride,
            weight_exp=weights.conv_exp,
            num_message_bits=1,
        )
        return proc, shape, tuple(int(s) for s in proc.output_shape)
    batch = BATCH if kind.endswith("16") else 1
    rows, cols = weights.csr.shape
    if kind.startswith("bsparse"):
        proc = lava["BatchedSparse"](
            weights=weights.csr, batch=batch, num_message_bits=1, **fixed_kwargs
        )
    else:
        matrix = sp.kron(sp.identity(batch, dtype=weights.csr.dtype), weights.csr, format="csr")
        proc = lava["Sparse"](weights=matrix, num_message_bits=1, **fixed_kwargs)
    return proc, (batch * cols,), (batch * rows,)


def source_frames(kind: str, layer: ConvLayer, frames: np.ndarray) -> np.ndarray:
    """The ``[steps, ...]`` array a FrameSource sends into synapse ``kind``."""
    if kind == "conv":
        return to_whc(frames[:, 0])
    if kind == "stacked16":
        padded = np.pad(to_whc(frames), ((0, 0), (0, 0), (PADDING, PADDING), (0, 0), (0, 0)))
        return padded.reshape(frames.shape[0], -1, layer.size, layer.c_in)
    batch = BATCH if kind.endswith("16") else 1
    return frames[:, :batch].reshape(frames.shape[0], -1)


def outputs_chw(kind: str, layer: ConvLayer, data: np.ndarray) -> np.ndarray:
    """Sink data ``[*out_shape, steps]`` -> ``[steps, batch, C_out, H_out, W_out]``."""
    data = np.moveaxis(data, -1, 0)
    o, c = layer.out_size, layer.c_out
    if kind == "conv":
        return to_whc(data)[:, None]
    if kind == "stacked16":
        period = (layer.size + 2 * PADDING) // layer.stride
        columns = np.concatenate([np.arange(o) + b * period for b in range(BATCH)])
        picked = data[:, columns].reshape(data.shape[0], BATCH, o, o, c)
        return to_whc(picked)
    return data.reshape(data.shape[0], -1, c, o, o)


# --------------------------------------------------------------------------------------------
# Lava runs


def import_lava() -> dict:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer
    from lava.proc.sparse.process import Sparse

    from neuroprune.sim.lavaext.process import BatchedSparse, CountSink, FrameSource

    return {
        "RunSteps": RunSteps,
        "Loihi2SimCfg": Loihi2SimCfg,
        "Conv": Conv,
        "Sparse": Sparse,
        "RingBuffer": RingBuffer,
        "BatchedSparse": BatchedSparse,
        "CountSink": CountSink,
        "FrameSource": FrameSource,
    }


def run_config(lava, mode: str):
    return lava["Loihi2SimCfg"](select_tag="fixed_pt" if mode == "fixed" else "floating_pt")


def save_frames(tmp: Path, name: str, frames: np.ndarray, mode: str) -> Path:
    path = tmp / f"{name}.npy"
    np.save(path, frames.astype(np.int32) if mode == "fixed" else frames)
    return path


def recorded_outputs(lava, kind, layer, weights, mode, frames, tmp: Path) -> np.ndarray:
    """Run ``FrameSource -> synapse -> RingBuffer`` for ``len(frames)`` steps; the synapse
    outputs as ``[steps, batch, C_out, H_out, W_out]``."""
    steps = frames.shape[0]
    sent = source_frames(kind, layer, frames)
    path = save_frames(tmp, f"check-{kind}", sent, mode)
    synapse, in_shape, out_shape = make_synapse(lava, kind, layer, weights, mode == "fixed")
    source = lava["FrameSource"](shape=in_shape, path=str(path), frames=steps)
    sink = lava["RingBuffer"](shape=out_shape, buffer=steps)
    source.s_out.connect(synapse.s_in)
    synapse.a_out.connect(sink.a_in)
    source.run(condition=lava["RunSteps"](num_steps=steps), run_cfg=run_config(lava, mode))
    data = sink.data.get()
    source.stop()
    return outputs_chw(kind, layer, data)


def expected_outputs(layer: ConvLayer, weights: Weights, frames: np.ndarray) -> np.ndarray:
    """What the sink records: zeros at step 1, the synapse's response to frame ``t - 2`` at
    step ``t`` (the source sends frame ``t - 1`` at step ``t``; the synapse adds one step)."""
    steps, batch = frames.shape[:2]
    out = np.zeros((steps, batch, layer.c_out, layer.out_size, layer.out_size))
    for t in range(1, steps):
        for b in range(batch):
            out[t, b] = reference_conv(frames[t - 1, b], weights.kernel, layer.stride, PADDING)
    return out


def check_layer(lava, layer: ConvLayer, mode: str, args, tmp: Path) -> list[str]:
    """One line per synapse kind: identical to the reference or not (with the max error)."""
    weights = layer_weights(layer, mode)
    frames = spike_frames(layer, args.check_steps, BATCH)
    expected = expected_outputs(layer, weights, frames)
    kinds = ["conv", "sparse", "bsparse"]
    batch_values = BATCH * layer.c_out * layer.out_size**2 * args.check_steps
    if (layer.size + 2 * PADDING) % layer.stride == 0 and batch_values <= 100_000:
        kinds += ["stacked16", "sparse16", "bsparse16"]  # Var.get costs ~30 us per value
    lines = []
    for kind in kinds:
        got = recorded_outputs(lava, kind, layer, weights, mode, frames, tmp)
        want = expected[:, : got.shape[1]]
        same = np.array_equal(got, want)
        error = float(np.max(np.abs(got - want)))
        lines.append(
            f"- {layer.name} {mode} {KIND_NAMES[kind]}: "
            + ("identical to the reference" if same else f"DIFFERS (max |error| {error:g})")
            + f" ({got.shape[1]} sample(s) x {args.check_steps} steps)"
        )
    return lines


def check_weight_exp(lava, layer: ConvLayer, args, tmp: Path) -> str:
    """Does Conv's fixed_pt model apply ``weight_exp``? Kernel ``2 * w_int``, ``weight_exp=-1``
    should give the reference if it does, twice the reference if it does not."""
    weights = layer_weights(layer, "fixed")
    doubled = Weights(weights.kernel, weights.csr, 2 * weights.conv, 0, conv_exp=-1)
    frames = spike_frames(layer, args.check_steps, 1)
    expected = expected_outputs(layer, weights, frames)
    got = recorded_outputs(lava, "conv", layer, doubled, "fixed", frames, tmp)
    if np.array_equal(got, expected):
        return f"- {layer.name} fixed Conv with weight 2w, weight_exp -1: applies weight_exp"
    doubled_out = np.array_equal(got, 2 * expected)
    return (
        f"- {layer.name} fixed Conv with weight 2w, weight_exp -1: "
        + ("output = 2 x reference, weight_exp IGNORED" if doubled_out else "output wrong")
        + " (Lava 0.10's PyConvModelFixed never reads it)"
    )


@dataclass(frozen=True)
class Timing:
    start_s: float  # compile + process start + first step
    ms_per_step: float


def timed_run(lava, kind, layer, weights, mode, steps: int, blocks: int, tmp: Path) -> Timing:
    """``FrameSource -> synapse(s) -> CountSink``: start (1 step) timed, then ``blocks`` runs
    of ``steps`` steps; ms/step of the fastest block (the machine is shared: the minimum is
    the least disturbed figure)."""
    total = 1 + steps * blocks
    frames = spike_frames(layer, total, BATCH, seed=2)
    base_kind = "conv" if kind == "conv16" else kind
    path = save_frames(tmp, f"time-{kind}", source_frames(base_kind, layer, frames), mode)
    copies = BATCH if kind == "conv16" else 1
    synapses = [
        make_synapse(lava, base_kind, layer, weights, mode == "fixed") for _ in range(copies)
    ]
    _, in_shape, out_shape = synapses[0]
    source = lava["FrameSource"](shape=in_shape, path=str(path), frames=total)
    sink = lava["CountSink"](
        shape=out_shape,
        first_step=1,
        last_step=total,
        final_step=total,
        out_path=str(tmp / f"counts-{kind}.npy"),
    )
    for synapse, _, _ in synapses:
        source.s_out.connect(synapse.s_in)
        synapse.a_out.connect(sink.a_in)
    config = run_config(lava, mode)
    begin = time.perf_counter()
    source.run(condition=lava["RunSteps"](num_steps=1), run_cfg=config)
    start_s = time.perf_counter() - begin
    block_ms = []
    for _ in range(blocks):
        begin = time.perf_counter()
        source.run(condition=lava["RunSteps"](num_steps=steps), run_cfg=config)
        block_ms.append(1000 * (time.perf_counter() - begin) / steps)
    source.stop()
    return Timing(start_s, min(block_ms))


KIND_NAMES = {
    "conv": "Conv",
    "sparse": "Sparse",
    "bsparse": "BatchedSparse",
    "conv16": "16 x Conv processes",
    "stacked16": "Conv stacked x16",
    "sparse16": "Sparse kron(I16, W)",
    "bsparse16": "BatchedSparse(16)",
}
B1_KINDS = ("conv", "sparse", "bsparse")
B16_KINDS = ("conv16", "stacked16", "sparse16", "bsparse16")


def arithmetic_us(layer: ConvLayer, weights: Weights) -> dict[str, float]:
    """Fastest of 20 calls (us) of each model's arithmetic (float), outside Lava."""
    from lava.proc.conv import utils

    frames = spike_frames(layer, 1, BATCH, seed=3)[0]
    one_whc = to_whc(frames[0])
    one_flat = frames[0].ravel()
    batch_flat = frames.reshape(-1)
    kron = sp.kron(sp.identity(BATCH, dtype=weights.csr.dtype), weights.csr, format="csr")
    calls = {
        "conv": lambda: utils.conv(
            one_whc, weights.conv, (3, 3), (layer.stride,) * 2, (PADDING,) * 2, (1, 1), 1
        ),
        "sparse": lambda: weights.csr.dot(one_flat),
        "bsparse": lambda: batched_dot(weights.csr, one_flat, 1),
        "sparse16": lambda: kron.dot(batch_flat),
        "bsparse16": lambda: batched_dot(weights.csr, batch_flat, BATCH),
    }
    return {kind: _fastest_us(call) for kind, call in calls.items()}


def _fastest_us(call, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    return 1e6 * min(times)


# --------------------------------------------------------------------------------------------
# Tables


def time_layer(lava, layer: ConvLayer, mode: str, args, tmp: Path) -> dict[str, Timing]:
    """Every synapse kind, built and timed ``--rounds`` times in turn (kind after kind, then
    again), so a burst of load from other jobs hits one round; each figure is the fastest."""
    weights = layer_weights(layer, mode)
    kinds = B1_KINDS + B16_KINDS
    if (layer.size + 2 * PADDING) % layer.stride != 0:
        kinds = tuple(k for k in kinds if k != "stacked16")
    rounds = [
        {
            kind: timed_run(lava, kind, layer, weights, mode, args.steps, args.blocks, tmp)
            for kind in kinds
        }
        for _ in range(args.rounds)
    ]
    return {
        kind: Timing(min(r[kind].start_s for r in rounds), min(r[kind].ms_per_step for r in rounds))
        for kind in kinds
    }


def step_row(layer: ConvLayer, mode: str, t: dict[str, Timing]) -> str:
    synapses = layer_weights(layer, mode).csr.nnz
    ms = {kind: timing.ms_per_step for kind, timing in t.items()}
    conv16 = min(ms["conv16"], ms.get("stacked16", np.inf))
    cells = [layer.name, mode, f"{synapses:,}"]
    cells += [f"{ms[k]:.2f}" for k in B1_KINDS]
    cells += [f"{ms['conv'] / ms['sparse']:.2f}", f"{ms['conv'] / ms['bsparse']:.2f}"]
    cells += [f"{ms['conv16']:.1f}", f"{ms['stacked16']:.1f}" if "stacked16" in ms else "n/a"]
    cells += [f"{ms['sparse16']:.2f}", f"{ms['bsparse16']:.2f}"]
    cells += [f"{conv16 / ms['sparse16']:.2f}", f"{conv16 / ms['bsparse16']:.2f}"]
    return "| " + " | ".join(cells) + " |"


STEP_HEADER = [
    "layer",
    "mode",
    "synapses (unrolled, per sample)",
    "B=1 Conv ms/step",
    "B=1 Sparse",
    "B=1 BatchedSparse",
    "B=1 Conv/Sparse",
    "B=1 Conv/BatchedSparse",
    "B=16 16 x Conv proc",
    "B=16 Conv stacked",
    "B=16 Sparse kron",
    "B=16 BatchedSparse",
    "B=16 best Conv/Sparse",
    "B=16 best Conv/BatchedSparse",
]


def start_row(layer: ConvLayer, mode: str, t: dict[str, Timing]) -> str:
    cells = [layer.name, mode]
    cells += [f"{t[k].start_s:.2f}" if k in t else "n/a" for k in B1_KINDS + B16_KINDS]
    return "| " + " | ".join(cells) + " |"


def arithmetic_row(layer: ConvLayer, us: dict[str, float]) -> str:
    cells = [layer.name, f"{us['conv']:.0f}", f"{us['sparse']:.0f}", f"{us['bsparse']:.0f}"]
    cells += [f"{us['sparse16']:.0f}", f"{us['bsparse16']:.0f}"]
    cells += [f"{us['conv'] / us['sparse']:.1f}", f"{us['conv'] / us['bsparse']:.1f}"]
    return "| " + " | ".join(cells) + " |"


def print_table(header: list[str], rows: list[str]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print(row)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    layers = [dataclasses.replace(LAYERS[i], keep=args.keep) for i in args.layers]
    began = time.perf_counter()
    lava = import_lava()
    checked = {i: dataclasses.replace(LAYERS[i], keep=args.keep) for i in args.check_layers}
    checks, step_rows, start_rows, arith_rows = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="lava-conv-") as tmp_name:
        tmp = Path(tmp_name)
        for index in args.check_layers:
            for mode in MODES:
                checks += check_layer(lava, checked[index], mode, args, tmp)
        checks.append(check_weight_exp(lava, checked[args.check_layers[0]], args, tmp))
        for line in checks:
            print(line, flush=True)
        for layer in layers:
            arith_rows.append(
                arithmetic_row(layer, arithmetic_us(layer, layer_weights(layer, "float")))
            )
            for mode in MODES:
                timings = time_layer(lava, layer, mode, args, tmp)
                step_rows.append(step_row(layer, mode, timings))
                start_rows.append(start_row(layer, mode, timings))
                print(step_rows[-1], flush=True)
    total = time.perf_counter() - began
    command = (
        f"OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/lava_conv.py {' '.join(sys.argv[1:])}"
    )
    print(f"\nCommand: `{command.rstrip()}`")
    print(f"Machine: {machine()}; total {total:.0f} s\n")
    print("Checks (outputs over the check steps against the NumPy direct correlation):\n")
    print("\n".join(checks) + "\n")
    print(
        f"Lava ms per time step (fastest of {args.rounds} networks x {args.blocks} blocks of"
        f" {args.steps} steps after the first; B=16: the whole batch):\n"
    )
    print_table(STEP_HEADER, step_rows)
    print(f"\nCompile + start + first step, seconds (fastest of {args.rounds}):\n")
    print_table(["layer", "mode"] + [KIND_NAMES[k] for k in B1_KINDS + B16_KINDS], start_rows)
    print("\nArithmetic alone (float, outside Lava), fastest of 20 calls, us:\n")
    header = ["layer", "conv.utils.conv", "W.dot", "batched_dot B=1", "kron W.dot B=16"]
    header += ["batched_dot B=16", "conv / W.dot", "conv / batched_dot B=1"]
    print_table(header, arith_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
