"""Export a convention model to ONNX, unrolled over T time steps (layer L5).

Choice: ONNX has no spiking neuron operator, so the network becomes a plain torch module
(:class:`UnrolledSNN`) whose neuron state arithmetic is written out and unrolled over the
``timesteps`` fixed at export (SpikingJelly eval-mode equations, hard reset to 0)::

    LIF, decay_input=True :  H = V + (X - V) / tau
    LIF, decay_input=False:  H = V - V / tau + X
    IF                    :  H = V + X
    S = (H > v_threshold);  V = H * (1 - S);  V starts at 0      (strict, as the model)

Synaptic layers run on the whole sequence at once (``[T*B, ...]``), exactly as SpikingJelly's
multi-step layers do, so the unrolled module gives the same float32 spikes as the model.

Graphs: a stage graph (``stages`` + ``inputs``, :class:`neuroprune.graph.stages.NirNetwork`'s
vocabulary) unrolls the same way; stage ``i`` reads the sum of its sources' outputs over the
whole sequence (``-1``: the input), which per step is NIR's sum of the edges into a node.
Pooling (square, stride = kernel, no padding): ``"avg"`` is ``avg_pool2d(x, k)``; ``"sum"`` is
a depthwise convolution with a ``k x k`` kernel of ones and stride ``k`` (an exact window sum,
where ``avg_pool2d * k**2`` would round for ``k`` not a power of two). Entry points:
:func:`export_onnx` for a model (a chain, or a model with ``stage_graph(input_shape)`` such as
:class:`neuroprune.models.graph_net.GraphNet`), :func:`export_onnx_graph` for stages + inputs.

Graph interface: input ``"input"`` float32 ``[T, B, *input_shape]`` with a dynamic batch axis,
output ``"spikes"`` float32 ``[T, B, classes]``; opset :data:`ONNX_OPSET`. Exported with the
TorchScript exporter (``torch.onnx.export(..., dynamo=False)``): the dynamo exporter needs
``onnxscript``, which is not a dependency, and a fixed-T unrolled loop traces cleanly. Its
deprecation warning is silenced. The model's ``metadata_props`` record ``neuroprune_version``,
``timesteps``, ``input_shape`` and the layout.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neuroprune.core.atomic import write_through_memory
from neuroprune.core.errors import ArtifactError, BackendUnavailableError, ConfigError
from neuroprune.export.stages import check_input_shape, check_timesteps, model_graph
from neuroprune.graph.read import stage_out_shape
from neuroprune.graph.stages import (
    INPUT,
    FlattenStage,
    NeuronStage,
    PoolStage,
    Stage,
    SynapseStage,
    chain_inputs,
)

from .. import __version__

ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "spikes"


class UnrolledSNN(torch.nn.Module):
    """Stateless module: ``[T, B, *input_shape]`` -> output spikes ``[T, B, classes]``.

    ``inputs[i]`` are the steps whose outputs sum into step ``i`` (``-1``: the input); None
    is a chain."""

    def __init__(
        self,
        steps: Sequence[torch.nn.Module],
        timesteps: int,
        inputs: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        self.steps = torch.nn.ModuleList(steps)
        self.timesteps = int(timesteps)
        chain = chain_inputs(len(self.steps))
        self.inputs = tuple(tuple(int(j) for j in s) for s in inputs) if inputs else chain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = {INPUT: x}
        for index, step in enumerate(self.steps):
            sources = self.inputs[index]
            total = outputs[sources[0]]
            for j in sources[1:]:
                total = total + outputs[j]
            outputs[index] = step(total)
        return outputs[len(self.steps) - 1]


class FlattenStep(torch.nn.Module):
    """``[T, B, C, H, W]`` -> ``[T, B, C*H*W]`` (C order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class DenseStep(torch.nn.Module):
    """``y = x W^T (+ b)`` on ``[T, B, in]``."""

    def __init__(self, stage: SynapseStage) -> None:
        super().__init__()
        self.register_buffer("weight", torch.from_numpy(stage.weight.copy()))
        bias = None if stage.bias is None else torch.from_numpy(stage.bias.copy())
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class ConvStep(torch.nn.Module):
    """Convolution of every step and sample: ``[T, B, C, H, W]`` -> ``[T, B, C', H', W']``."""

    def __init__(self, stage: SynapseStage, timesteps: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.from_numpy(stage.weight.copy()))
        bias = None if stage.bias is None else torch.from_numpy(stage.bias.copy())
        self.register_buffer("bias", bias)
        self.stride, self.padding = stage.stride, stage.padding
        self.timesteps, self.out_shape = int(timesteps), tuple(stage.out_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x.flatten(0, 1), self.weight, self.bias, self.stride, self.padding)
        return y.reshape(self.timesteps, -1, *self.out_shape)


class PoolStep(torch.nn.Module):
    """Square pooling, stride = kernel (module docstring): ``[T, B, C, H, W]`` ->
    ``[T, B, C, H//k, W//k]``; ``"sum"``: window sum, ``"avg"``: window sum / k**2."""

    def __init__(self, stage: PoolStage, timesteps: int) -> None:
        super().__init__()
        self.kind, self.kernel = stage.kind, int(stage.kernel)
        channels = int(stage.in_shape[0])
        self.register_buffer("ones", torch.ones(channels, 1, self.kernel, self.kernel))
        self.timesteps, self.out_shape = int(timesteps), tuple(stage.out_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat, k = x.flatten(0, 1), self.kernel
        if self.kind == "avg":
            y = F.avg_pool2d(flat, k, stride=k)
        else:
            y = F.conv2d(flat, self.ones, None, stride=k, groups=self.ones.shape[0])
        return y.reshape(self.timesteps, -1, *self.out_shape)


class NeuronStep(torch.nn.Module):
    """LIF/IF recurrence unrolled over T (module docstring); returns spikes ``[T, B, ...]``."""

    def __init__(self, stage: NeuronStage, timesteps: int) -> None:
        super().__init__()
        self.model, self.timesteps = stage.model, int(timesteps)
        self.tau, self.decay_input = stage.tau, stage.decay_input
        self.v_threshold = float(stage.v_threshold)

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.model == "IF":
            return v + x
        if self.decay_input:
            return v + (x - v) / self.tau
        return v - v / self.tau + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x[0])
        spikes = []
        for t in range(self.timesteps):
            h = self.charge(v, x[t])
            s = (h > self.v_threshold).to(h.dtype)
            v = h * (1.0 - s)
            spikes.append(s)
        return torch.stack(spikes)


def build_unrolled(
    model: torch.nn.Module, *, timesteps: int, input_shape: Sequence[int]
) -> UnrolledSNN:
    """The :class:`UnrolledSNN` equivalent of ``model`` for ``timesteps`` steps (eval mode).

    The model's stage graph comes from :func:`~neuroprune.export.stages.model_graph` (chains,
    pooling, wired residual models and imported :class:`~neuroprune.models.graph_net.GraphNet`
    graphs alike)."""
    shape = check_input_shape(input_shape)
    stages, inputs = model_graph(model, shape)
    return build_unrolled_graph(stages, inputs, timesteps=timesteps, input_shape=shape)


def build_unrolled_graph(
    stages: Sequence[Stage],
    inputs: Sequence[Sequence[int]] | None,
    *,
    timesteps: int,
    input_shape: Sequence[int],
) -> UnrolledSNN:
    """The :class:`UnrolledSNN` of a stage graph: ``inputs[i]`` the stages whose outputs sum
    into stage ``i`` (``-1``: the input of shape ``input_shape``); None: a chain."""
    steps_t = check_timesteps(timesteps)
    shape = check_input_shape(input_shape)
    stages = list(stages)
    sources = [tuple(int(j) for j in s) for s in (inputs or chain_inputs(len(stages)))]
    _check_graph(stages, sources, shape)
    steps = [_step(stage, steps_t) for stage in stages]
    return UnrolledSNN(steps, steps_t, sources).eval()


def _check_graph(stages: list[Stage], sources: list[tuple[int, ...]], shape) -> None:
    """One non-empty list of earlier sources per stage, all of one shape, the stage's input."""
    ok = bool(stages) and len(sources) == len(stages)
    ok = ok and all(srcs and all(INPUT <= j < i for j in srcs) for i, srcs in enumerate(sources))
    if not ok:
        raise ConfigError(
            "stage inputs must name earlier stages (-1: the input), one list per stage",
            where="export onnx",
            field="inputs",
            value=str(sources)[:200],
            fix="Pass inputs[i] as indices of earlier stages, e.g. ((-1,), (0,), (1, 0)).",
        )
    for index, (stage, srcs) in enumerate(zip(stages, sources, strict=True)):
        got = {shape if j == INPUT else stage_out_shape(stages[j]) for j in srcs}
        want = stage.shape if isinstance(stage, NeuronStage) else stage.in_shape
        if got != {tuple(want)}:
            raise ConfigError(
                f"stage {index} ({stage.module!r}) reads {sorted(got)}, not its input {want}",
                where="export onnx",
                field=f"inputs[{index}]",
                value=str(srcs),
                fix="Sum only sources whose output has the shape the stage reads.",
            )


def _step(stage: Stage, timesteps: int) -> torch.nn.Module:
    if isinstance(stage, FlattenStage):
        return FlattenStep()
    if isinstance(stage, PoolStage):
        return PoolStep(stage, timesteps)
    if isinstance(stage, NeuronStage):
        return NeuronStep(stage, timesteps)
    return DenseStep(stage) if stage.kind == "dense" else ConvStep(stage, timesteps)


def export_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    timesteps: int,
    input_shape: Sequence[int],
    progress: Callable[[dict], None] | None = None,
) -> Path:
    """Write ``model`` unrolled over ``timesteps`` as ONNX (atomically, checked with
    ``onnx.checker``) and return the path. See the module docstring for the graph interface."""
    shape = check_input_shape(input_shape)
    unrolled = build_unrolled(model, timesteps=timesteps, input_shape=shape)
    return _write(unrolled, shape, path, progress)


def export_onnx_format(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    timesteps: int,
    encoding: str,
    input_shape: Sequence[int],
    chip: str | None = None,
    progress: Callable[[dict], None] | None = None,
) -> Path:
    """:func:`export_onnx` with the signature of every export format
    (:mod:`neuroprune.export.formats`). ONNX takes the encoded input, so ``encoding`` and
    ``chip`` are not stored."""
    del encoding, chip
    return export_onnx(model, path, timesteps=timesteps, input_shape=input_shape, progress=progress)


def export_onnx_graph(
    stages: Sequence[Stage],
    inputs: Sequence[Sequence[int]] | None,
    path: str | os.PathLike,
    *,
    timesteps: int,
    input_shape: Sequence[int],
    progress: Callable[[dict], None] | None = None,
) -> Path:
    """:func:`export_onnx` of a stage graph (:func:`build_unrolled_graph`): the same file
    layout, with the sum of the sources' outputs into every stage."""
    shape = check_input_shape(input_shape)
    unrolled = build_unrolled_graph(stages, inputs, timesteps=timesteps, input_shape=shape)
    return _write(unrolled, shape, path, progress)


def _write(unrolled: UnrolledSNN, shape, path, progress) -> Path:
    onnx = _require("onnx")
    example = torch.zeros((unrolled.timesteps, 2, *shape), dtype=torch.float32)
    path = Path(path)

    def write(buffer: io.BytesIO) -> None:  # through memory: torch's write errors name no file
        exported = io.BytesIO()
        _torch_export(unrolled, example, exported)
        proto = onnx.load_from_string(exported.getvalue())
        _add_metadata(proto, unrolled.timesteps, shape)
        onnx.checker.check_model(proto, full_check=True)
        buffer.write(proto.SerializeToString())

    write_through_memory(path, write)
    if progress is not None:
        progress({"event": "exported", "format": "onnx", "path": str(path), "opset": ONNX_OPSET})
    return path


def _torch_export(module: torch.nn.Module, example: torch.Tensor, target) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            target,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {1: "batch"}, OUTPUT_NAME: {1: "batch"}},
        )


def _add_metadata(proto, timesteps: int, input_shape: tuple[int, ...]) -> None:
    entries = {
        "neuroprune_version": __version__,
        "timesteps": str(timesteps),
        "input_shape": ",".join(map(str, input_shape)),
        "layout": "input [T, B, *input_shape] -> spikes [T, B, classes]",
        "threshold": ">",
        "reset": "hard_zero",
    }
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value


def run_onnx(path: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Run an exported file in onnxruntime (CPU, one thread): ``[T, B, ...]`` -> spikes."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ArtifactError(
            f"onnxruntime cannot load the file ({type(exc).__name__})",
            where=str(path),
            fix="Re-export with `neuroprune export RUN_DIR --format onnx`.",
        ) from exc
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x, dtype=np.float32)})[0]


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{module} is not installed",
            where="export onnx",
            field="package",
            value=module,
            fix=f"pip install {module}",
        ) from exc
