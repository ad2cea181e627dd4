"""A self-contained PyNN script (and its ``.npz`` weights) of a SpiNNaker-quantized network
(torch-free).

:func:`write_pynn` fills ``pynn_template.py`` (beside this module: the script itself, with its
semantics in its docstring) from a :class:`~neuroprune.sim.spec.DeploymentSpec` quantized for
``spinnaker_lif`` (:mod:`neuroprune.chip.arithmetic.spinnaker`): per layer the cell parameters
of neuroprune's SpiNNaker mapping in PyNN units (mV, nA, nF, ms; s16.15 value = bits / 2**15)

* ``tau_m = -dt / ln(exp_TC / 2**15)`` with ``dt = 1 ms`` (the chip's ``exp_TC``),
* ``cm = tau_m / R`` with ``R = r_membrane / 2**15`` MOhm,
* ``v_thresh = (threshold_int << s) / 2**15`` mV, ``i_offset = (bias_int << s) / 2**15`` nA,
* weights ``(weight_int << s) / 2**15`` nA as ``(pre, post, weight)`` lists per receptor
  (``excitatory``: > 0, ``inhibitory``: < 0), for ``FromListConnector``; only kept synapses.

Spike input only: a ``direct`` (analog) network's first layer is a host-computed current
(``current_offset`` on the chip) that the script does not write; it is refused in one line.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import neuroprune
from neuroprune.chip.arithmetic import LayerFacts
from neuroprune.chip.arithmetic.spinnaker import (
    FRAC_BITS,
    SPINNAKER,
    spinnaker_layer,
)
from neuroprune.core.atomic import atomic_path, write_text
from neuroprune.core.errors import ConfigError, UnsupportedError
from neuroprune.sim.lava_map import spec_arithmetic
from neuroprune.sim.spec import DeploymentSpec

TEMPLATE = Path(__file__).with_name("pynn_template.py")
WHERE = "pynn"
DT_MS = 1.0
ONE = float(1 << FRAC_BITS)


@dataclass(frozen=True)
class PynnFiles:
    """What :func:`write_pynn` wrote: the ``script``, its ``weights`` (.npz), the per-layer
    cell parameters (``layers``) and the synapses written per layer."""

    script: Path
    weights: Path
    layers: tuple[dict, ...]
    synapses: tuple[int, ...]


def check_pynn_spec(spec: DeploymentSpec, where: str = WHERE) -> None:
    """Refuse (one line) a network not quantized for SpiNNaker's arithmetic, a non-chain, or
    analog input."""
    arithmetic = spec_arithmetic(spec) if spec.quantized else None
    if arithmetic != SPINNAKER:
        chip = spec.metadata.get("chip") or "none"
        raise ConfigError(
            f"a PyNN script for sPyNNaker holds a network quantized for {SPINNAKER}; this one "
            f"is for chip {chip!r}",
            where=where,
            field="chip",
            value=chip,
            fix="Export a run fitted with --chip spinnaker (Loihi: --format netx).",
        )
    for k, layer in enumerate(spec.layers):
        if tuple(layer.sources) != (k - 1,):
            raise UnsupportedError(
                "the PyNN script writes a chain of populations; this layer reads several sources",
                where=f"{where}: layer {layer.neuron_name}",
                field="sources",
                value=list(layer.sources),
                fix="Export a chain (mlp, conv) for SpiNNaker.",
            )
    if (spec.encoding or "direct") == "direct":
        raise UnsupportedError(
            "the PyNN script takes spike input (SpikeSourceArray); this network's first layer "
            "is a host-computed analog current",
            where=f"{where}: layer {spec.layers[0].neuron_name}",
            field="encoding",
            value=spec.encoding or "direct",
            fix="Fit with spike input for SpiNNaker (--encoding latency or poisson).",
        )


def layer_cells(spec: DeploymentSpec) -> list[dict]:
    """Per layer: name, neurons and the PyNN cell parameters (module docstring)."""
    cells = []
    for layer in spec.layers:
        quant = layer.quant
        assert quant is not None
        neuron = layer.neuron
        facts = LayerFacts(
            model=neuron.model,
            tau=neuron.tau,
            decay_input=neuron.decay_input,
            threshold_int=quant.threshold_int,
        )
        chip = spinnaker_layer(facts)
        tau_m = -DT_MS / math.log(chip.neuron.exp_tc / ONE)
        resistance = chip.neuron.r_membrane / ONE
        cells.append(
            {
                "name": layer.neuron_name,
                "neurons": layer.neurons,
                "tau_m": tau_m,
                "cm": tau_m / resistance,
                "v_thresh": chip.neuron.v_thresh / ONE,
                "shift": chip.shift,
            }
        )
    return cells


def write_pynn(
    spec: DeploymentSpec, script: str | os.PathLike, *, max_atoms_per_core: int = 256
) -> PynnFiles:
    """Write the script at ``script`` and its weights beside it (``.npz``, same stem);
    ``max_atoms_per_core``: the profile's neurons per core (sPyNNaker's default 256)."""
    check_pynn_spec(spec)
    script = Path(script)
    weights_path = script.with_suffix(".npz")
    cells = layer_cells(spec)
    arrays: dict[str, np.ndarray] = {}
    synapses = []
    for k, (layer, cell) in enumerate(zip(spec.layers, cells, strict=True)):
        quant = layer.quant
        assert quant is not None
        lsb = 2.0 ** (cell["shift"] - FRAC_BITS)
        matrix = quant.weight_int.tocoo()
        for receptor, keep in (("excitatory", matrix.data > 0), ("inhibitory", matrix.data < 0)):
            arrays[f"pre{k}_{receptor}"] = matrix.col[keep].astype(np.int64)
            arrays[f"post{k}_{receptor}"] = matrix.row[keep].astype(np.int64)
            arrays[f"weight{k}_{receptor}"] = matrix.data[keep].astype(np.float64) * lsb
        bias = np.zeros(layer.neurons) if quant.bias_int is None else quant.bias_int
        arrays[f"i_offset{k}"] = np.asarray(bias, dtype=np.float64) * lsb
        synapses.append(int(np.count_nonzero(matrix.data)))
    layers = [{key: value for key, value in c.items() if key != "shift"} for c in cells]
    text = TEMPLATE.read_text(encoding="utf-8")
    title = f"{script.stem}: {len(layers)} layers of {spec.metadata.get('chip') or 'spinnaker'}"
    for key, value in {
        "__TITLE__": title,
        "__VERSION__": neuroprune.__version__,
        "__SCRIPT__": script.name,
        "__WEIGHTS__": weights_path.name,
        "__MAX_ATOMS__": str(int(max_atoms_per_core)),
        "__TIMESTEPS__": str(int(spec.timesteps or 0)),
        "__INPUT_SHAPE__": repr(tuple(int(s) for s in spec.input_shape)),
        "__LAYERS__": json.dumps(layers, indent=4),
    }.items():
        text = text.replace(key, value)
    text = text.replace("# ruff: noqa\n", "", 1)
    with atomic_path(weights_path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    write_text(script, text)
    return PynnFiles(script, weights_path, tuple(layers), tuple(synapses))
