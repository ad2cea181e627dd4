"""Stages -> NIR graph -> file: nodes, edges and neuroprune's metadata."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from neuroprune import __version__
from neuroprune.core.atomic import write_through_memory
from neuroprune.core.errors import ConfigError
from neuroprune.graph.stages import (
    FORMAT_VERSION,
    INPUT,
    NIR_DT,
    NODES_KEY,
    FlattenStage,
    NeuronStage,
    PoolStage,
    Stage,
    SynapseStage,
    chain_inputs,
    node_names,
    threshold_in_file,
)


def build_graph(
    stages: Sequence[Stage],
    *,
    input_shape: Sequence[int],
    timesteps: int,
    encoding: str,
    chip: str | None = None,
    dt: float = NIR_DT,
    inputs: Sequence[Sequence[int]] | None = None,
):
    """The ``nir.NIRGraph`` of ``stages`` (module docstring); ``dt`` seconds per step.

    ``inputs[i]``: the stages whose outputs sum into stage ``i`` (:data:`INPUT` for the network
    input; default a chain). Each becomes one edge, so a residual ADD is several edges into
    one node, which NIR sums. The last stage feeds the Output.
    """
    import nir  # deferred: imports nir

    dt = check_dt(dt)
    shape = tuple(int(s) for s in input_shape)
    stages = list(stages)
    sources = [tuple(int(i) for i in s) for s in (inputs or chain_inputs(len(stages)))]
    _check_sources(stages, sources)
    names = node_names(stages)
    if _leading_flatten(stages, sources):
        stages, names = stages[1:], names[1:]
        sources = [tuple(INPUT if i == 0 else i - 1 for i in s) for s in sources[1:]]
    first = stages[0].in_shape if stages else shape  # type: ignore[union-attr]  # never a neuron
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.asarray(first)})}
    node_meta: dict[str, dict[str, Any]] = {}
    for name, stage in zip(names, stages, strict=True):
        nodes[name], node_meta[name] = _node(stage, dt)
    last = _out_shape(stages[-1]) if stages else shape
    nodes["output"] = nir.Output(output_type={"output": np.asarray(last)})
    quantized = any(isinstance(s, SynapseStage) and s.quant is not None for s in stages)
    metadata = {
        "neuroprune_version": __version__,
        "neuroprune_nir_format": FORMAT_VERSION,
        "dt": float(dt),
        "integration": "forward_euler",
        "threshold": ">",
        "reset": "hard_zero",
        "timesteps": int(timesteps),
        "encoding": str(encoding),
        "input_shape": np.asarray(shape, dtype=np.int64),
        "chip": "" if chip is None else str(chip),
        "quantized": bool(quantized),
        NODES_KEY: json.dumps(node_meta, sort_keys=True, default=_json_default),
    }
    edges = [
        ("input" if src == INPUT else names[src], name)
        for name, srcs in zip(names, sources, strict=True)
        for src in srcs
    ]
    edges.append((names[-1] if names else "input", "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _check_sources(stages: Sequence[Stage], sources: Sequence[tuple[int, ...]]) -> None:
    """Internal invariant: one non-empty source list per stage, each source before it."""
    ok = len(sources) == len(stages) and all(
        srcs and all(INPUT <= s < i for s in srcs) for i, srcs in enumerate(sources)
    )
    if not ok:
        raise ConfigError(
            "stage inputs must name earlier stages (-1: the network input), one list per stage",
            where="nir export",
            field="inputs",
            value=str(list(sources))[:200],
        )


def _leading_flatten(stages: Sequence[Stage], sources: Sequence[tuple[int, ...]]) -> bool:
    """A Flatten of the input that nothing else reads is dropped (module docstring)."""
    if not stages or not isinstance(stages[0], FlattenStage) or sources[0] != (INPUT,):
        return False
    return all(INPUT not in srcs for srcs in sources[1:])


def _out_shape(stage: Stage) -> tuple[int, ...]:
    return stage.shape if isinstance(stage, NeuronStage) else stage.out_shape


def _node(stage: Stage, dt: float):
    if isinstance(stage, FlattenStage):
        return flatten_node(stage), {"module": stage.module}
    if isinstance(stage, PoolStage):
        return pool_node(stage), {"module": stage.module, "in_shape": list(stage.in_shape)}
    if isinstance(stage, SynapseStage):
        return synapse_node(stage), synapse_metadata(stage)
    return neuron_node(stage, dt), neuron_metadata(stage)


def pool_node(stage: PoolStage):
    """NIR ``SumPool2d`` or ``AvgPool2d``: kernel = stride = ``k``, padding 0."""
    import nir  # deferred: imports nir

    kind = nir.SumPool2d if stage.kind == "sum" else nir.AvgPool2d
    k = np.array([stage.kernel, stage.kernel])
    return kind(kernel_size=k, stride=k.copy(), padding=np.zeros(2, dtype=np.int64))


def flatten_node(stage: FlattenStage):
    """NIR Flatten over the whole sample (NIR shapes exclude the batch: ``start_dim=0``)."""
    import nir  # deferred: imports nir

    shape = np.asarray(stage.in_shape)
    return nir.Flatten(input_type={"input": shape}, start_dim=0, end_dim=-1)


def synapse_node(stage: SynapseStage):
    """``Affine`` (zero bias when none) or ``Conv2d`` with the float32 weights bit for bit."""
    import nir  # deferred: imports nir

    out = stage.weight.shape[0]
    bias = stage.bias if stage.bias is not None else np.zeros(out, np.float32)
    if stage.kind != "conv":
        return nir.Affine(weight=stage.weight, bias=bias)
    return nir.Conv2d(
        input_shape=tuple(int(s) for s in stage.in_shape[1:]),
        weight=stage.weight,
        stride=(stage.stride, stage.stride),
        padding=(stage.padding, stage.padding),
        dilation=(1, 1),
        groups=1,
        bias=bias,
    )


def neuron_node(stage: NeuronStage, dt: float = NIR_DT):
    """NIR ``LIF``/``IF`` of a SpikingJelly neuron (module docstring); float64 parameters.

    ``v_reset`` is not passed (nir 1.0.8 fills in 0; 1.0.4's nodes have no such field) and
    :func:`write_graph` leaves a zero ``v_reset`` out of the file. Graph metadata
    ``reset: "hard_zero"`` states the reset."""
    import nir  # deferred: imports nir

    full = np.ones(stage.shape, dtype=np.float64)
    v_th = full * threshold_in_file(stage.v_threshold, stage.strict)
    if stage.model == "IF":
        return nir.IF(r=full / dt, v_threshold=v_th)
    tau = cast(float, stage.tau)  # a LIF has a tau
    r = full if stage.decay_input else full * tau
    return nir.LIF(tau=full * (tau * dt), r=r, v_leak=full * 0.0, v_threshold=v_th)


def synapse_metadata(stage: SynapseStage) -> dict[str, Any]:
    """``module``, ``kind`` and, when quantized, ``weight_scale``, ``bits``, ``format`` and
    ``neuroprune_quant`` (the integers are ``weight / weight_scale``, checked on reading)."""
    meta: dict[str, Any] = {"module": stage.module, "kind": stage.kind}
    if stage.quant is not None:
        meta.update(
            weight_scale=stage.quant.weight_scale,
            bits=int(stage.quant.bits),
            format=str(stage.quant.params.get("format", "")),
            has_bias_int=stage.quant.bias_int is not None,
            neuroprune_quant=dict(stage.quant.params),
        )
    return meta


def neuron_metadata(stage: NeuronStage) -> dict[str, Any]:
    """``module``, ``model``, the model's own ``v_threshold`` and firing rule, LIF ``tau_steps``
    and ``decay_input``, and ``threshold_int`` when quantized."""
    meta: dict[str, Any] = {
        "module": stage.module,
        "model": stage.model,
        "model_v_threshold": float(stage.v_threshold),
        "model_threshold_rule": ">" if stage.strict else ">=",
    }
    if stage.model == "LIF":
        meta.update(tau_steps=float(cast(float, stage.tau)), decay_input=bool(stage.decay_input))
    if stage.threshold_int is not None:
        meta["threshold_int"] = int(stage.threshold_int)
    return meta


# Neuron nodes whose ``v_reset`` nir >= 1.0.7 writes (as zeros when the node was built without
# one) and nir 1.0.4 cannot read: its LIF/IF/CubaLIF have no such field, so ``nir.read`` there
# fails on the whole file with "unexpected keyword argument 'v_reset'".
RESET_NODE_TYPES = ("LIF", "IF", "CubaLIF")


def write_graph(graph, path: str | os.PathLike) -> Path:
    """``nir.write`` to ``path`` atomically (temporary file, then rename), without the zero
    ``v_reset`` datasets of :data:`RESET_NODE_TYPES` (:func:`drop_zero_resets`): the file then
    reads on nir 1.0.4 (Sinabs 3.1's pin) and means the same on every version, since 1.0.8
    reads a missing ``v_reset`` as 0."""
    import nir  # deferred: imports nir

    def write(buffer) -> None:  # through memory: HDF5's write errors name no file
        nir.write(buffer, graph)
        drop_zero_resets(buffer)

    return write_through_memory(path, write)


def drop_zero_resets(path: str | os.PathLike | io.BytesIO) -> list[str]:
    """Delete every all-zero ``v_reset`` dataset of a LIF/IF/CubaLIF node group in the NIR file
    at ``path`` (a file name or an in-memory file; nested graphs included); a nonzero one is kept. Returns the groups changed."""
    import h5py  # deferred: imports h5py

    changed: list[str] = []

    def visit(name: str, item: Any) -> None:
        if not isinstance(item, h5py.Group) or "type" not in item or "v_reset" not in item:
            return
        kind = item["type"][()]
        kind = kind.decode("utf8") if isinstance(kind, bytes) else str(kind)
        if kind in RESET_NODE_TYPES and not np.any(np.asarray(item["v_reset"][()]) != 0):
            changed.append(name)

    with h5py.File(path, "a") as handle:
        handle.visititems(visit)
        for name in changed:
            del handle[name]["v_reset"]
    return changed


def check_dt(dt: Any) -> float:
    """``dt`` as a positive finite float (seconds per step), else :class:`ConfigError`."""
    ok = isinstance(dt, int | float | np.floating) and not isinstance(dt, bool)
    if not ok or not math.isfinite(float(dt)) or not float(dt) > 0:
        raise ConfigError(
            "the NIR time step must be a positive number of seconds",
            where="nir",
            field="nir_dt",
            value=dt,
            fix="Use e.g. --nir-dt 1e-4 (snnTorch) or leave it out (2**-10 s).",
        )
    return float(dt)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
