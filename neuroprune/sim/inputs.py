"""Simulator input (torch-free): encoded input ``[T, N, *input_shape]`` -> :class:`Stimulus`.

Binary input (every value 0 or 1, e.g. ``poisson``) is fed as spikes through the first Sparse
layer. Analog input (``direct`` encoding) cannot travel as binary spikes, so the first layer's
synaptic current is computed on the host and injected straight into the first neuron layer
(the chip's host would do the same). This keeps the comparison exact:

* float: ``I[t] = W_1 x[t]`` (float64). The reference adds ``b_1`` and applies SpikingJelly's
  charge; Lava receives ``input_gain * I`` (``1/tau`` with decay_input) and adds the bias itself.
* fixed: ``I[t] = rint(2**k W_1,int x[t])``: Loihi's synaptic input is an integer, so the first
  layer runs in units of ``2**-k`` weight LSB (its threshold and bias scaled by ``2**k``,
  :func:`neuroprune.sim.lava_map.injection_shift` picks ``k <= 6``, unless quantization fixed
  it as ``neuroprune_quant["input_shift"]`` for chip-arithmetic training); the only rounding is to
  ``2**-k`` LSB (none for digits with k >= 4). Reference and Lava receive the same integers.

A static input ``[N, *input_shape]`` (images in [0, 1]) is encoded here with the graph's
``timesteps`` and ``encoding``: repeated for ``direct``, or ``neuroprune.data.encoding.encode(x, T,
encoding, seed=0)`` for ``poisson`` and ``latency`` (so every backend and the torch model see
the same spikes). An ``events`` graph takes its frames as the steps ``[T, N, *input_shape]``
(``neuroprune.data.encoding.simulation_input``).

Where each layer runs (:func:`placement`): with spike input every synaptic layer, the first
included, runs on the chip (the spikes enter through the input spike generator,
``neuroprune.sim.lavaext.FrameSource``, in Lava); with analog input the first synaptic layer's
``W_1 x`` runs on the host and every neuron layer and later synaptic layer on the chip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuroprune.core.errors import DatasetError, UnsupportedError
from neuroprune.data.encoding import encode
from neuroprune.graph.stages import INPUT
from neuroprune.sim.lava_map import injection_shift
from neuroprune.sim.spec import DeploymentSpec

SPIKES = "spikes"
CURRENT = "current"


@dataclass(frozen=True, eq=False)
class Stimulus:
    """What the first layer receives for ``N`` samples over ``T`` steps.

    Attributes:
        kind: ``"spikes"`` (frames ``uint8 [T, N, inputs]``) or ``"current"`` (frames
            ``[T, N, neurons of layer 0]``: float64 in float mode, int64 in fixed mode).
        frames: see ``kind``.
        input_events: ``[N, inputs]`` presynaptic events into layer 0 per sample (spikes, or
            nonzero analog values for a current), for synaptic-operation counts.
        fixed_point: whether ``frames`` are fixed-point currents.
        inputs: the encoded input ``[T, N, *input_shape]`` (what a torch model would receive).
        current_shift: ``k``: fixed-point currents are in ``2**-k`` weight LSB.
    """

    kind: str
    frames: np.ndarray
    input_events: np.ndarray
    fixed_point: bool = False
    inputs: np.ndarray | None = None
    current_shift: int = 0

    @property
    def timesteps(self) -> int:
        return int(self.frames.shape[0])

    @property
    def samples(self) -> int:
        return int(self.frames.shape[1])


def prepare_stimulus(
    spec: DeploymentSpec, x: np.ndarray, *, samples: int | None = None, fixed_point: bool = False
) -> Stimulus:
    """Validate ``x`` against ``spec`` and build the first layer's :class:`Stimulus`."""
    x = np.asarray(x)
    if samples is not None and x.ndim == len(spec.input_shape) + 1:
        x = x[: _check_samples(samples)]
    inputs = _time_major(spec, x)
    if samples is not None:
        inputs = inputs[:, : _check_samples(samples)]
    if inputs.shape[1] < 1:
        raise DatasetError(
            "no samples to simulate", where="simulate input", field="x.shape", value=tuple(x.shape)
        )
    flat = inputs.reshape(inputs.shape[0], inputs.shape[1], spec.input_size)
    if _is_binary(flat):
        spikes = flat.astype(np.uint8)
        events = spikes.sum(axis=0, dtype=np.int64)
        return Stimulus(SPIKES, spikes, events, fixed_point, inputs)
    events = np.count_nonzero(flat, axis=0).astype(np.int64)
    _check_analog_readers(spec)
    current = first_layer_current(spec, flat, fixed_point)
    if not (fixed_point and spec.layers[0].quant is not None):
        return Stimulus(CURRENT, current, events, fixed_point, inputs)
    shift = spec.layers[0].quant.input_shift
    if shift is None:
        shift = injection_shift(spec.layers[0], float(np.max(np.abs(current), initial=0.0)))
    current = np.rint(current * 2.0**shift).astype(np.int64)
    return Stimulus(CURRENT, current, events, fixed_point, inputs, shift)


def _check_analog_readers(spec: DeploymentSpec) -> None:
    """Analog input reaches the chip only as the first layer's host-computed current: a later
    layer that reads the input too (a skip from the input) would need the analog values."""
    readers = [layer.neuron_name for layer in spec.layers[1:] if INPUT in layer.sources]
    if readers:
        raise UnsupportedError(
            "analog (direct) input feeds a layer other than the first; only the first layer's "
            "current can be computed on the host",
            where="simulate input",
            field=f"{readers[0]}.sources",
            value=readers[0],
            fix="Simulate with spike input (poisson/latency/events encoding).",
        )


def first_layer_current(spec: DeploymentSpec, flat: np.ndarray, fixed_point: bool) -> np.ndarray:
    """``W_1 x[t]`` for every step and sample: ``[T, N, neurons]`` (see module docstring)."""
    layer = spec.layers[0]
    steps, count, size = flat.shape
    columns = flat.reshape(steps * count, size).astype(np.float64).T
    if fixed_point and layer.quant is not None:
        current = layer.quant.weight_int.astype(np.float64) @ columns  # weight LSBs, unrounded
    else:
        current = layer.weight @ columns
    return np.ascontiguousarray(current.T).reshape(steps, count, layer.neurons)


def _time_major(spec: DeploymentSpec, x: np.ndarray) -> np.ndarray:
    """``x`` as ``[T, N, *input_shape]`` (a static ``[N, *input_shape]`` is encoded)."""
    shape = tuple(spec.input_shape)
    if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        return encode_static(spec, x)
    if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != shape or min(x.shape[:2]) < 1:
        raise DatasetError(
            f"input must be [T, N, {', '.join(map(str, shape))}] for this model",
            where="simulate input",
            field="x.shape",
            value=tuple(x.shape),
            fix="Encode the test split with neuroprune.data.encoding.encode(x, T, encoding).",
        )
    if not np.all(np.isfinite(x)):
        raise DatasetError("input holds NaN or inf", where="simulate input", field="x", value="nan")
    return x


def encode_static(spec: DeploymentSpec, x: np.ndarray) -> np.ndarray:
    """Encode static images with the graph's ``timesteps`` and ``encoding`` (module docstring)."""
    if not spec.timesteps:
        raise DatasetError(
            "static input needs the graph's timesteps metadata",
            where="simulate input",
            field="x.shape",
            value=tuple(x.shape),
            fix="Pass encoded input [T, N, ...] (neuroprune.data.encoding.encode).",
        )
    if spec.encoding == "events":
        raise DatasetError(
            "an events graph takes event frames [T, N, ...], not static images",
            where="simulate input",
            field="x.shape",
            value=tuple(x.shape),
            fix="Pass the frames as steps: neuroprune.data.encoding.simulation_input(dataset, N).",
        )
    if spec.encoding in ("poisson", "latency"):
        return encode(x, spec.timesteps, spec.encoding, seed=0)
    return np.broadcast_to(x, (spec.timesteps, *x.shape))


CHIP = "chip"
HOST = "host"


def placement(spec: DeploymentSpec, stimulus: Stimulus) -> tuple[tuple[str, str], ...]:
    """``((node, "chip" | "host"), ...)`` for every synaptic and neuron node, in graph order
    (module docstring): only a host-computed first-layer current puts the first synaptic layer on the host."""
    rows = []
    for k, layer in enumerate(spec.layers):
        on_host = k == 0 and stimulus.kind == CURRENT
        rows += [(layer.name, HOST if on_host else CHIP), (layer.neuron_name, CHIP)]
    return tuple(rows)


def _check_samples(samples: int) -> int:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise DatasetError(
            "samples must be a positive integer", where="simulate", field="samples", value=samples
        )
    return int(samples)


def _is_binary(flat: np.ndarray) -> bool:
    return bool(np.all((flat == 0) | (flat == 1)))
