"""Lava LIF/Sparse parameters for a deployment spec (torch-free and lava-free).

Float (``floating_pt``, docs/lava.md §4.1), per layer with SpikingJelly ``tau``:

=======================  ===============  ===  =======  ============  =============================
neuron                   Sparse weights   du   dv       bias_mant     vth
=======================  ===============  ===  =======  ============  =============================
LIF ``decay_input=True``  ``W / tau``     1    1/tau    ``b / tau``   ``v_th``
LIF ``decay_input=False`` ``W``           1    1/tau    ``b``         ``v_th``
IF                        ``W``           1    0        ``b``         ``v_th``
=======================  ===============  ===  =======  ============  =============================

Lava, NIR and neuroprune's neurons all fire on ``v > vth``. Only a legacy graph marked
``threshold: ">="`` gets ``vth = nextafter(v_th, -inf)`` (``v > nextafter(v_th, -inf)`` is
exactly ``v >= v_th`` for floats).

Fixed (``fixed_pt``, bit-accurate Loihi, docs/lava.md §2, §4.2), in weight LSBs with
``K = threshold_int``: Sparse weights ``2 * weight_int`` with ``weight_exp = -1`` (exact for 8-bit
mixed-sign weights; raw odd weights would lose their LSB), ``du = 4095`` (u holds no state),
``dv = round(4096 / tau)`` (0 for IF), ``bias_mant = bias_int``, ``bias_exp = 6`` and

* LIF ``decay_input=True``: ``vth = round(K * tau)`` (v is scaled by tau instead of dividing X),
* LIF ``decay_input=False``: ``vth = K``,
* IF: ``vth = K`` (``K - 1`` for a legacy ``">="`` graph: exact because v stays a multiple of 64).

Lava fires on ``v > vth * 64`` (v in 1/64 LSB), so LIF layers keep Loihi's strict ``>``.

Graphs: a layer reading several sources is several projections into one population: one Sparse
per source (its column block of the weights, sign mode, clipping and truncation decided per
block, as Lava does) all connected to the LIF's ``a_in``, whose InPort sums them. The split is
exact in fixed point because every block's products are even (``2 * weight_int``), so each
``>> 1`` loses nothing (``tests/test_sim_graph.py`` checks it). :attr:`LavaLayer.wiring` says
where each block comes from and how many steps it waits (:class:`~neuroprune.sim.spec.LayerWiring`).

Host-computed first layer (analog input, :mod:`neuroprune.sim.inputs`): Loihi's synaptic input
is an integer, so the first layer runs in units of ``2**-k`` weight LSB: the injected current is
``rint(2**k * W_int x)``, ``vth`` and ``bias_mant`` are multiplied by ``2**k`` (IF: ``K * 2**k - 1``).
:func:`injection_shift` picks the largest ``k <= 6`` for which vth, bias and u still fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.sparse as sp

from neuroprune.chip.arithmetic import (
    ACT_SHIFT,
    BIAS_MANT_MAX,
    DECAY_MAX,
    VTH_MAX,
    LayerFacts,
    SpinnakerLayer,
    arithmetic_for_format,
    get_arithmetic,
    layer_neuron,
    loihi_dv,
    loihi_input_shift,
    loihi_vth,
)
from neuroprune.chip.arithmetic.spinnaker import RING_BUFFER_MAX, SPINNAKER
from neuroprune.chip.arithmetic.truenorth import TRUENORTH, TrueNorthLayer
from neuroprune.core.errors import UnsupportedError
from neuroprune.sim.spec import DeploymentSpec, LayerSpec, LayerWiring

BIAS_MANT_MIN = -(2**12)  # signed 13-bit
BIAS_EXP = ACT_SHIFT  # bias_mant << 6 puts the bias in weight LSBs (v is in 1/64 LSB)
WEIGHT_INT_MIN, WEIGHT_INT_MAX = -128, 127  # 2*w must fit Loihi's 9-bit mixed range
FIX_8BIT = "Quantize for Loihi with at most 8-bit signed weights (--chip loihi)."


@dataclass(frozen=True, eq=False)
class LavaLayer:
    """Parameters of one ``Sparse -> LIFReset`` pair, in Lava's own units.

    Attributes:
        name: neuron layer name.
        weights: ``neurons x inputs`` CSR (float64 in float mode, int64 in fixed mode).
        weight_exp / num_weight_bits: Sparse fixed-point settings (ignored in float).
        du, dv, vth: LIF decays and threshold (float, or 12/12/17-bit integers).
        bias_mant: per-neuron bias mantissa; bias_exp: its exponent (fixed only).
        input_gain: factor on a host-computed input current ``X`` (``1/tau`` with
            decay_input in float mode, else 1), used when the first layer is injected.
        wiring: sources, column blocks, depth and per-source delays
            (:meth:`DeploymentSpec.wiring`); ``None`` only for a layer built by hand outside
            :func:`lava_layers` (it cannot be simulated).
        chip: for a layer that runs another chip arithmetic than Loihi's (:func:`chip_words`):
            its name and integer words, run by a ``ChipNeuron`` instead of ``LIFReset``
            (weights and bias are then the plain integers, in float Sparse processes).
    """

    name: str
    weights: sp.csr_matrix
    weight_exp: int
    num_weight_bits: int
    du: float | int
    dv: float | int
    vth: float | int
    bias_mant: np.ndarray
    bias_exp: int
    input_gain: float = 1.0
    wiring: LayerWiring | None = None
    chip: dict | None = None

    @property
    def neurons(self) -> int:
        return int(self.weights.shape[0])

    def blocks(self) -> list[tuple[int, sp.csr_matrix, int]]:
        """``(source, column block of weights, delay in steps)`` per projection."""
        wiring = self.wiring
        if wiring is None:
            raise ValueError(f"layer {self.name} has no wiring (build it with lava_layers)")
        return [
            (source, self.weights[:, start:stop].tocsr(), delay)
            for source, (start, stop), delay in zip(
                wiring.sources, wiring.columns, wiring.delays, strict=True
            )
        ]


def lava_layers(
    spec: DeploymentSpec, fixed_point: bool, input_shift: int = 0
) -> tuple[LavaLayer, ...]:
    """Lava parameters for every layer of ``spec`` (fixed needs a quantized spec);
    ``input_shift`` scales the first fixed layer by ``2**input_shift`` (module docstring)."""
    if not fixed_point:
        layers = [float_layer(layer) for layer in spec.layers]
    else:
        first = fixed_layer(spec.layers[0], shift=input_shift)
        layers = [first, *(fixed_layer(layer) for layer in spec.layers[1:])]
    return tuple(replace(layer, wiring=spec.wiring(k)) for k, layer in enumerate(layers))


def float_layer(layer: LayerSpec) -> LavaLayer:
    """Float mapping (table in the module docstring)."""
    neuron = layer.neuron
    bias = np.zeros(layer.neurons) if layer.bias is None else layer.bias
    weights = layer.weight.astype(np.float64)
    if neuron.model == "LIF" and neuron.decay_input:
        weights, bias = (weights / neuron.tau).tocsr(), bias / neuron.tau
    vth = neuron.v_threshold if neuron.strict else np.nextafter(neuron.v_threshold, -np.inf)
    return LavaLayer(
        name=layer.neuron_name,
        weights=weights.tocsr(),
        weight_exp=0,
        num_weight_bits=8,
        du=1.0,
        dv=neuron.leak,
        vth=float(vth),
        bias_mant=np.asarray(bias, dtype=np.float64),
        bias_exp=0,
        input_gain=neuron.input_gain,
    )


def fixed_layer(layer: LayerSpec, shift: int = 0) -> LavaLayer:
    """Loihi fixed_pt mapping (module docstring); validates every range Lava would not.
    ``shift`` > 0 only for a first layer whose current is injected in ``2**-shift`` LSB."""
    where = f"layer {layer.neuron_name}"
    quant = layer.quant
    if quant is None:
        raise UnsupportedError(
            "fixed-point simulation needs a quantized model",
            where=where,
            field="quantized",
            value=False,
            fix="Run the quantize stage (or drop --fixed-point).",
        )
    _check_weight_range(quant.weight_int, where)
    bias = np.zeros(layer.neurons, np.int64) if quant.bias_int is None else quant.bias_int
    bias = np.asarray(bias, dtype=np.int64) << shift
    _check_range(bias, BIAS_MANT_MIN, BIAS_MANT_MAX, "bias_int", where)
    return LavaLayer(
        name=layer.neuron_name,
        weights=(quant.weight_int.astype(np.int64) * 2).tocsr(),
        weight_exp=-1,
        num_weight_bits=8,
        du=DECAY_MAX,
        dv=fixed_dv(layer, where),
        vth=fixed_vth(layer, quant.threshold_int, where, shift),
        bias_mant=bias,
        bias_exp=BIAS_EXP,
    )


def fixed_dv(layer: LayerSpec, where: str) -> int:
    """``round(4096 / tau)`` for LIF (12-bit), 0 for IF (:func:`neuroprune.chip.arithmetic.loihi_dv`)."""
    dv = loihi_dv(layer.neuron.model, layer.neuron.tau)
    _check_range(np.array([dv]), 0, DECAY_MAX, "dv = round(4096/tau)", where)
    return dv


def fixed_vth(layer: LayerSpec, threshold_int: int, where: str, shift: int = 0) -> int:
    """Threshold mantissa (Lava compares ``v > vth << 6``); see the module docstring."""
    neuron = layer.neuron
    vth = loihi_vth(neuron.model, neuron.tau, neuron.decay_input, threshold_int, shift)
    if neuron.model == "IF" and not neuron.strict:
        vth -= 1  # legacy ">=" graph: v stays a multiple of 64, so v > (K-1)*64 is v >= K*64
    _check_range(np.array([vth]), 0, VTH_MAX, "vth", where)
    return int(vth)


def injection_shift(layer: LayerSpec, max_current: float) -> int:
    """Largest ``k`` in ``0..6`` such that the first layer, scaled by ``2**k``, keeps vth within
    17 bits, ``bias_int << k`` within 13 bits and the injected ``|a| <= max_current * 2**k``
    below 2**16 (0 when even ``k = 0`` does not fit; :func:`fixed_layer` then reports it)."""
    quant = layer.quant
    if quant is None:
        return 0
    bias = 0 if quant.bias_int is None else int(np.max(np.abs(quant.bias_int), initial=0))
    return loihi_input_shift(quant.threshold_int, layer.neuron.tau, bias, max_current)


def _check_weight_range(weight_int: sp.csr_matrix, where: str) -> None:
    data = weight_int.data if weight_int.nnz else np.zeros(1, np.int64)
    _check_range(data, WEIGHT_INT_MIN, WEIGHT_INT_MAX, "weight_int", where, fix=FIX_8BIT)


def _check_range(values, low: int, high: int, field: str, where: str, fix: str | None = None):
    lo, hi = int(np.min(values)), int(np.max(values))
    if lo < low or hi > high:
        raise UnsupportedError(
            f"{field} outside Loihi's fixed-point range [{low}, {high}]",
            where=where,
            field=field,
            value=(lo, hi),
            fix=fix or "Choose a chip format whose parameters fit, or simulate in float.",
        )


# --------------------------------------------------------------------------------------------
# Other chip arithmetics (neuroprune.chip.arithmetic): one LayerNeuron per layer


def spec_arithmetic(spec: DeploymentSpec) -> str | None:
    """The chip arithmetic of a quantized graph, from its first layer's weight format."""
    quant = spec.layers[0].quant
    return None if quant is None else arithmetic_for_format(quant.format)


def chip_facts(spec: DeploymentSpec, input_shift: int = 0) -> list[LayerFacts]:
    """Each layer's :class:`~neuroprune.chip.arithmetic.LayerFacts` (the first with the
    stimulus' ``input_shift``); a chip arithmetic needs a quantized model."""
    out = []
    for k, layer in enumerate(spec.layers):
        quant = layer.quant
        if quant is None:
            raise UnsupportedError(
                "chip-arithmetic simulation needs a quantized model",
                where=f"layer {layer.neuron_name}",
                field="quantized",
                value=False,
                fix="Run the quantize stage (or drop --fixed-point).",
            )
        neuron = layer.neuron
        out.append(
            LayerFacts(
                model=neuron.model,
                tau=neuron.tau,
                decay_input=neuron.decay_input,
                threshold_int=int(quant.threshold_int),
                input_shift=input_shift if k == 0 else 0,
                readout=k == len(spec.layers) - 1,
            )
        )
    return out


def chip_layers(spec: DeploymentSpec, name: str, input_shift: int = 0) -> list:
    """Each layer's :class:`~neuroprune.chip.arithmetic.LayerNeuron` under ``name`` (the first
    with the stimulus' ``input_shift``); checks what the arithmetic needs of the integers."""
    facts = chip_facts(spec, input_shift)
    if name == SPINNAKER:
        for layer in spec.layers:
            _check_ring_buffers(layer)
    return [layer_neuron(name, layer_facts) for layer_facts in facts]


def _check_ring_buffers(layer: LayerSpec) -> None:
    """sPyNNaker's 16-bit ring buffers saturate; the quantizer keeps every neuron's summed
    excitatory and inhibitory weights within one word, so they never do on spike input."""
    weight = layer.quant.weight_int.tocsr()  # type: ignore[union-attr]
    exc = np.asarray(weight.multiply(weight > 0).sum(axis=1))
    inh = -np.asarray(weight.multiply(weight < 0).sum(axis=1))
    largest = (int(np.max(exc, initial=0)), int(np.max(inh, initial=0)))
    if max(largest) > RING_BUFFER_MAX:
        raise UnsupportedError(
            "summed weights of one neuron exceed sPyNNaker's 16-bit ring buffer",
            where=f"layer {layer.neuron_name}",
            field="weight_int",
            value=largest,
            fix="Quantize for SpiNNaker with this version (--chip spinnaker).",
        )


def chip_words(name: str, neuron, facts: LayerFacts | None = None) -> dict:
    """What a Lava ``ChipNeuron`` rebuilds ``neuron`` from (JSON-ready): SpiNNaker's and
    TrueNorth's integer words; for any other registered arithmetic the layer's
    :class:`LayerFacts` (its ``layer`` factory is pure). ``graded``: the neuron emits spike
    counts (its process sends them and the sink adds them up)."""
    graded = get_arithmetic(name).spec.multi_spike
    if name == TRUENORTH and isinstance(neuron, TrueNorthLayer):
        return {"arithmetic": name, "graded": graded, **neuron.words()}
    if name != SPINNAKER and facts is not None:
        return {"arithmetic": name, "graded": graded, "facts": asdict(facts)}
    if name != SPINNAKER or not isinstance(neuron, SpinnakerLayer):
        raise UnsupportedError(
            f"no Lava process model for chip arithmetic {name!r}",
            where="lava backend",
            field="neuron.arithmetic",
            value=name,
            fix="Simulate with --backend reference.",
        )
    words = neuron.neuron
    return {
        "arithmetic": name,
        "graded": graded,
        "exp_tc": words.exp_tc,
        "r_membrane": words.r_membrane,
        "v_thresh": words.v_thresh,
        "v_reset": words.v_reset,
        "v_rest": words.v_rest,
        "t_refract": words.t_refract,
        "shift": neuron.shift,
        "input_shift": neuron.input_shift,
    }


def chip_lava_layers(
    spec: DeploymentSpec, name: str, input_shift: int = 0
) -> tuple[LavaLayer, ...]:
    """Lava layers for chip arithmetic ``name``: float Sparse processes holding the integer
    weights (their products are exact integers), integer biases, and each layer's words."""
    neurons = chip_layers(spec, name, input_shift)
    facts = chip_facts(spec, input_shift)
    layers = []
    for k, (layer, neuron) in enumerate(zip(spec.layers, neurons, strict=True)):
        quant = layer.quant
        bias = np.zeros(layer.neurons) if quant.bias_int is None else quant.bias_int  # type: ignore[union-attr]
        layers.append(
            LavaLayer(
                name=layer.neuron_name,
                weights=quant.weight_int.astype(np.float64).tocsr(),  # type: ignore[union-attr]
                weight_exp=0,
                num_weight_bits=16,
                du=0,
                dv=0,
                vth=0,
                bias_mant=np.asarray(bias, dtype=np.float64),
                bias_exp=0,
                wiring=spec.wiring(k),
                chip=chip_words(name, neuron, facts[k]),
            )
        )
    return tuple(layers)


# --------------------------------------------------------------------------------------------
# What Lava's fixed-point Sparse does to the weights on its first step (docs/lava.md §3)


def lava_projections(layer: LavaLayer) -> list[tuple[int, sp.csr_matrix]]:
    """``(source, effective weights)`` per projection: each column block preprocessed on its own
    (:func:`lava_effective_weights`), as each Sparse process does on its first step."""
    return [
        (source, lava_effective_weights(replace(layer, weights=block, wiring=None)))
        for source, block, _ in layer.blocks()
    ]


def lava_effective_weights(layer: LavaLayer) -> sp.csr_matrix:
    """Weights after Lava's sign-mode detection, 8-bit clipping and LSB truncation (int64).

    Sign mode from the whole matrix (implicit zeros included): all >= 0 excitatory, all <= 0
    inhibitory, else mixed. Clip to [-256, 255] (mixed) or [0, 255] (mirrored for inhibitory),
    then drop ``8 - num_weight_bits + mixed`` low bits (``(w >> n) << n`` on |w| for inhibitory).
    """
    w = layer.weights.astype(np.int64).tocsr()
    lo, hi = (w.min(), w.max()) if w.nnz else (0, 0)
    excitatory = lo >= 0
    inhibitory = not excitatory and hi <= 0
    mixed = int(not excitatory and not inhibitory)
    sign = -1 if inhibitory else 1
    data = w.data * sign
    data = np.clip(data, -256 if mixed else 0, 255)
    drop = 8 - layer.num_weight_bits + mixed
    data = ((data >> drop) << drop) * sign
    out = sp.csr_matrix((data, w.indices.copy(), w.indptr.copy()), shape=w.shape)
    out.eliminate_zeros()
    return out
