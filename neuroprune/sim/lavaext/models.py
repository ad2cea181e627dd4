"""Python process models (floating_pt and fixed_pt) for :mod:`neuroprune.sim.lavaext.process`."""

from __future__ import annotations

import os
import time
from collections import deque

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.sparse.models import AbstractPySparseModelBitAcc, AbstractPySparseModelFloat
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

from neuroprune.chip.arithmetic import LayerFacts, layer_neuron
from neuroprune.chip.arithmetic.spinnaker import SPINNAKER, SpinnakerLayer, SpinnakerNeuron
from neuroprune.chip.arithmetic.truenorth import TRUENORTH, TrueNorthLayer
from neuroprune.sim.batching import batched_dot
from neuroprune.sim.lavaext.process import (
    BatchedSparse,
    ChipNeuron,
    CountSink,
    FrameSource,
    SampleCountSink,
)


class _FrameSourceModel(PyLoihiProcessModel):
    """Row ``time_step - 1`` of the memory-mapped array, cast to the port's dtype."""

    out_dtype = np.float64

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._frames = None
        self._zeros = np.zeros(proc_params["shape"], dtype=self.out_dtype)

    def run_spk(self) -> None:
        if self._frames is None:
            self._frames = np.load(self.proc_params["path"], mmap_mode="r")
        row = self.time_step - 1
        if row < self.proc_params["frames"]:
            self.s_out.send(np.asarray(self._frames[row], dtype=self.out_dtype))
        else:
            self.s_out.send(self._zeros)


@implements(proc=FrameSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFrameSourceFloat(_FrameSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=FrameSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyFrameSourceFixed(_FrameSourceModel):
    out_dtype = np.int32
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


class _CountSinkModel(PyLoihiProcessModel):
    """Accumulates ``a_in != 0`` (``graded``: the spike counts ``a_in`` carries) inside the
    window and saves the counts at ``final_step``."""

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._counts = np.zeros(proc_params["shape"], dtype=np.int32)

    def run_spk(self) -> None:
        spikes = self.a_in.recv()
        step = self.time_step
        params = self.proc_params
        self._inject_fault(params["fault"], step)
        if params["first_step"] <= step <= params["last_step"]:
            self._counts += np.rint(spikes).astype(np.int32) if params["graded"] else spikes != 0
        if step == params["final_step"]:
            _save_atomically(params["out_path"], self._counts)

    @staticmethod
    def _inject_fault(fault: str, step: int) -> None:
        if fault == "raise" and step == 2:
            raise RuntimeError("fault injected by the test suite")
        if fault == "hang" and step == 2:
            time.sleep(3600)


def _save_atomically(path: str, counts: np.ndarray) -> None:
    tmp = f"{path}.part.npy"
    np.save(tmp, counts)
    os.replace(tmp, path)


@implements(proc=CountSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCountSinkFloat(_CountSinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)


@implements(proc=CountSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyCountSinkFixed(_CountSinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)


class _SampleCountSinkModel(PyLoihiProcessModel):
    """Adds ``a_in != 0`` to sample ``(step - first_step) // steps``; saves after the last."""

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        shape = (proc_params["samples"], *proc_params["shape"])
        self._counts = np.zeros(shape, dtype=np.int32)

    def run_spk(self) -> None:
        spikes = self.a_in.recv()
        params = self.proc_params
        offset = self.time_step - params["first_step"]
        sample = offset // params["steps"] if offset >= 0 else -1
        if 0 <= sample < params["samples"]:
            self._counts[sample] += spikes != 0
        if offset == params["samples"] * params["steps"] - 1:
            _save_atomically(params["out_path"], self._counts)


@implements(proc=SampleCountSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySampleCountSinkFloat(_SampleCountSinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)


@implements(proc=SampleCountSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PySampleCountSinkFixed(_SampleCountSinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)


def delayed(model: PyLoihiProcessModel, value: np.ndarray) -> np.ndarray:
    """``value`` back out after ``proc_params["delay"]`` more calls (one per step), zeros
    (of its dtype) until then: a FIFO of whole steps in front of ``a_out``."""
    delay = model.proc_params.get("delay", 0)
    if not delay:
        return value
    fifo = getattr(model, "_fifo", None)
    if fifo is None:
        fifo = model._fifo = deque(np.zeros_like(value) for _ in range(delay))
    fifo.append(np.array(value, copy=True))
    return fifo.popleft()


@implements(proc=BatchedSparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBatchedSparseFloat(AbstractPySparseModelFloat):
    """Lava's float Sparse model (port and Var types inherited); ``W.dot`` batched, then
    :func:`delayed`."""

    def run_spk(self) -> None:
        self.a_out.send(delayed(self, self.a_buff))
        self.a_buff = batched_dot(self.weights, self.s_in.recv(), self.proc_params["batch"])


@implements(proc=BatchedSparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyBatchedSparseBitAcc(AbstractPySparseModelBitAcc):
    """Lava's bit-accurate Sparse model: its first-step weight clipping and truncation
    (``clip_weights``, ``truncate_weights``, sign mode from the weights) and its
    ``weight_exp`` shift, around the batched product, then :func:`delayed`."""

    def run_spk(self) -> None:
        params = self.proc_params
        if not self.weights_set:
            sign_mode = params.get("sign_mode") or determine_sign_mode(self.weights)
            self.weights = clip_weights(self.weights, sign_mode, num_bits=8)
            self.weights = truncate_weights(
                self.weights, sign_mode, params.get("num_weight_bits", 8)
            )
            self.weights_set = True
        self.a_out.send(delayed(self, self.a_buff))
        accumulated = batched_dot(self.weights, self.s_in.recv(), params["batch"])
        exp = params.get("weight_exp", 0)
        if exp > 0:
            self.a_buff = np.left_shift(accumulated, exp)
        else:
            self.a_buff = np.right_shift(accumulated, -exp)


def chip_layer(chip: dict):
    """The :class:`~neuroprune.chip.arithmetic.LayerNeuron` that training and the reference
    run, rebuilt from the layer's words (:func:`neuroprune.sim.lava_map.chip_words`):
    SpiNNaker's and TrueNorth's integer words, or any other registered arithmetic's layer
    facts."""
    if chip["arithmetic"] == TRUENORTH:
        return TrueNorthLayer.from_words(chip)
    if chip["arithmetic"] != SPINNAKER:
        if "facts" not in chip:
            raise ValueError(f"no Lava process model for chip arithmetic {chip['arithmetic']!r}")
        return layer_neuron(chip["arithmetic"], LayerFacts(**chip["facts"]))
    neuron = SpinnakerNeuron(
        exp_tc=int(chip["exp_tc"]),
        r_membrane=int(chip["r_membrane"]),
        v_thresh=int(chip["v_thresh"]),
        v_reset=int(chip["v_reset"]),
        v_rest=int(chip["v_rest"]),
        t_refract=int(chip["t_refract"]),
    )
    return SpinnakerLayer(neuron, int(chip["shift"]), int(chip["input_shift"]))


@implements(proc=ChipNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyChipNeuronModel(PyLoihiProcessModel):
    """Runs :func:`chip_layer`'s ``step`` (the same code as training and the reference) on
    ``rint(a_in)``; sends the spikes as 0/1 floats, or as spike counts where the arithmetic
    emits several per step (the next Sparse weights them: ``W c``)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._layer = chip_layer(proc_params["chip"])
        self._bias = np.asarray(proc_params["bias"], dtype=np.int64)
        self._zeros = np.zeros(proc_params["shape"], dtype=np.int64)
        self._state = self._layer.zero_state(self._zeros)

    def run_spk(self) -> None:
        a = np.rint(self.a_in.recv()).astype(np.int64)
        if self.time_step == self.proc_params["reset_offset"]:
            self._state = self._layer.zero_state(self._zeros)
        self._state, fired = self._layer.step(self._state, a, self._bias)
        self.s_out.send(fired.astype(np.float64))
