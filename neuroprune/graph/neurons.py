"""NIR neuron nodes (LIF, IF, CubaLIF) -> :class:`~neuroprune.graph.stages.NeuronStage`, with
the parameter checks and the threshold, gain and time-step conversions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from neuroprune.graph.files import _bad_param, _shape_error, unsupported_node
from neuroprune.graph.stages import (
    INPUT,
    NeuronStage,
    NirNetwork,
    Stage,
    SynapseStage,
    threshold_in_file,
)


def _neuron_stage(
    name, node, shape, dt, node_meta, where, legacy_rule: bool = False
) -> tuple[NeuronStage, float]:
    """Map NIR LIF/IF (and CubaLIF with ``tau_syn == dt``) to SpikingJelly units.

    LIF: ``tau_sj = tau/dt``; ``r == 1`` -> decay_input; ``r == tau_sj`` -> no decay_input;
    another ``r`` is returned as the gain to fold into the synapse before.
    IF: ``H = V + dt r X``. ``v_leak`` and ``v_reset`` must be 0.
    """
    kind = type(node).__name__
    if kind == "CubaLIF":
        node = _cuba_as_lif(name, node, dt, where)
    params = {f: _uniform(name, kind, f, getattr(node, f), where) for f in _neuron_fields(node)}
    for field in ("v_leak", "v_reset"):
        if params.get(field, 0.0) != 0.0:
            raise _bad_param(name, kind, field, params[field], "Use 0 (hard reset to zero).", where)
    v_th, strict = _model_threshold(params["v_threshold"], node_meta, legacy_rule)
    threshold_int = node_meta.get("threshold_int")
    threshold_int = None if threshold_int is None else int(threshold_int)
    module = str(node_meta.get("module", name))
    if isinstance(shape, tuple) and np.size(node.v_threshold) not in (1, int(np.prod(shape))):
        raise _shape_error(name, kind, np.shape(node.v_threshold), shape, where, "v_threshold")
    if kind == "IF":
        gain = _snap(params["r"] * dt)
        return NeuronStage(module, "IF", shape, v_th, None, True, threshold_int, strict), gain
    tau = _tau_steps(params["tau"] / dt, node_meta)
    if not tau >= 1.0:
        raise _bad_param(
            name, kind, "tau", params["tau"], f"tau/dt must be >= 1 (dt={dt!r} s).", where
        )
    r = params["r"]
    if math.isclose(r, 1.0, rel_tol=1e-6):
        return NeuronStage(module, "LIF", shape, v_th, tau, True, threshold_int, strict), 1.0
    if math.isclose(r, tau, rel_tol=1e-6):
        return NeuronStage(module, "LIF", shape, v_th, tau, False, threshold_int, strict), 1.0
    return NeuronStage(module, "LIF", shape, v_th, tau, True, threshold_int, strict), r


def _neuron_fields(node) -> tuple[str, ...]:
    fields = (
        ("r", "v_threshold", "v_reset")
        if type(node).__name__ == "IF"
        else ("tau", "r", "v_leak", "v_threshold", "v_reset")
    )
    return tuple(f for f in fields if getattr(node, f, None) is not None)


def _cuba_as_lif(name, node, dt, where):
    """A CubaLIF whose synapse has ``tau_syn == dt`` passes ``w_in S`` on at once (forward
    Euler: ``I <- I + (dt/tau_syn)(w_in S - I) = w_in S``), so it is a LIF with ``r w_in``."""
    import nir  # deferred: imports nir

    tau_syn = np.asarray(node.tau_syn, np.float64)
    if not np.allclose(tau_syn, dt, rtol=1e-6):
        raise unsupported_node(
            where, name, "CubaLIF", f"tau_syn={float(tau_syn.ravel()[0])!r} s is not dt={dt!r} s"
        )
    w_in = np.broadcast_to(np.asarray(node.w_in, np.float64), np.shape(node.r))
    reset = {"v_reset": node.v_reset} if getattr(node, "v_reset", None) is not None else {}
    return nir.LIF(
        tau=np.asarray(node.tau_mem, np.float64),
        r=np.asarray(node.r, np.float64) * w_in,
        v_leak=np.asarray(node.v_leak, np.float64),
        v_threshold=np.asarray(node.v_threshold, np.float64),
        **reset,
    )


def _uniform(name: str, kind: str, field: str, values: Any, where: str) -> float:
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0 or not np.all(flat == flat[0]):
        distinct = len(np.unique(flat))
        raise _bad_param(
            name, kind, field, f"{distinct} distinct values", "Use one value per layer.", where
        )
    return float(flat[0])


def _model_threshold(
    in_file: float, node_meta: Mapping[str, Any], legacy_rule: bool = False
) -> tuple[float, bool]:
    """``(v_threshold, strict)`` of the model the file came from: a neuroprune ``>=`` model
    whose ``nextafter32`` is the file's value gets its own threshold back, anything else keeps
    the file's value with NIR's strict rule (``legacy_rule``: a format-1 file saying ``>=``)."""
    if legacy_rule:
        return float(in_file), False
    model: Any = node_meta.get("model_v_threshold")
    own_rule = node_meta.get("model_threshold_rule") == ">=" and model is not None
    if own_rule and threshold_in_file(float(model), strict=False) == in_file:
        return float(model), False
    return float(in_file), True


def _tau_steps(value: float, node_meta: Mapping[str, Any]) -> float:
    """``tau / dt`` in steps: the exporter's ``tau_steps`` when it agrees, else snapped to 12
    significant digits (float noise of float32 files)."""
    stated = node_meta.get("tau_steps")
    if stated is not None and math.isclose(float(stated), value, rel_tol=1e-6):
        return float(stated)
    nearest = round(value)
    return float(nearest) if math.isclose(value, nearest, rel_tol=1e-6) else _snap(value)


def _snap(value: float) -> float:
    return float(f"{value:.12g}")


def _fold_gain(
    stages: list[Stage], sources: tuple[int, ...], stage, gain: float, name: str, where: str
) -> list[Stage]:
    """Fold a neuron's input gain (``r``, or ``dt r`` for IF, when it is not SpikingJelly's)
    into the synapse it reads: ``g (W x + b) = (g W) x + g b``. Not for quantized layers."""
    index = sources[0] if len(sources) == 1 else INPUT
    syn = stages[index] if index != INPUT else None
    if not isinstance(syn, SynapseStage) or syn.quant is not None:
        raise _bad_param(
            name, stage.model, "r", gain, "Put a float synaptic layer right before it.", where
        )
    weight = (syn.weight.astype(np.float64) * gain).astype(np.float32)
    bias = None if syn.bias is None else (syn.bias.astype(np.float64) * gain).astype(np.float32)
    stages = list(stages)
    stages[index] = dataclasses.replace(syn, weight=weight, bias=bias)
    return stages


def with_decay_input(network: NirNetwork) -> NirNetwork:
    """The same network with every LIF in ``decay_input=True`` form (the model convention):
    ``H = V (1 - 1/tau) + X`` is ``H = V + (tau X - V)/tau``, so the synapse before a
    ``decay_input=False`` LIF is scaled by ``tau`` (float layers only)."""
    stages: list[Stage] = []
    for i, (name, stage) in enumerate(zip(network.names, network.stages, strict=True)):
        if isinstance(stage, NeuronStage) and stage.model == "LIF" and not stage.decay_input:
            sources = network.sources(i)
            tau = cast(float, stage.tau)  # a LIF has a tau
            stages = _fold_gain(stages, sources, stage, float(tau), name, network.source)
            stage = dataclasses.replace(stage, decay_input=True)
        stages.append(stage)
    return dataclasses.replace(network, stages=tuple(stages))
