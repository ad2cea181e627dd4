"""Intel Loihi / Loihi 2 fixed point, as Lava's bit-accurate models implement it.

Weights (docs/lava.md §3): a signed mantissa of ``mantissa_bits`` with one shared
power-of-two exponent per layer. In mixed-sign mode Lava drops the mantissa LSB
(``mixed_sign_drops_lsb``), so a layer holds ``mantissa_bits - 1`` magnitude bits:

    weight_int in [-(2**(m-1) - 1), 2**(m-1) - 1],   weight = weight_int * 2**weight_exp

(``m = mantissa_bits`` when the LSB is kept). Downstream Lava Dense gets
``weights = 2 * weight_int`` with ``weight_exp = -1`` (exact: the even sum shifted by one), or
``weights = weight_int`` with ``weight_exp = 0`` when no LSB is dropped; the synaptic input is
then ``a = sum(weight_int * s)`` in weight LSBs (``neuroprune_quant["lava"]`` holds
``weights_factor``, ``weight_exp``, ``num_weight_bits``). ``neuroprune_quant["weight_exp"]`` is
``log2(weight_scale)``, the float value of one LSB chosen per layer to minimise the squared error
(:func:`best_pow2_scale`); it is *not* Lava's ``weight_exp``. The chip never sees the float unit
(only ratios of weights, threshold and bias matter), so the hardware exponent range only has to
contain the Lava exponent above.

Neuron (docs/lava.md §2, §4.2): ``v`` counts 1/64 LSB (``threshold_shift``); the threshold
mantissa ``vth`` (``threshold_mantissa_bits`` unsigned, recorded as ``lava_vth``) is
``threshold_int`` (or ``rint(threshold_int * tau)`` when ``decay_input`` folds ``1/tau`` into the
threshold, docs/lava.md §4.2; Lava compares with a strict ``>``); the voltage
decay is ``dv = rint(2**decay_bits / tau)`` (12-bit; tau = 4096/dv is what the chip realises),
``du = 2**decay_bits - 1`` (the current holds no state); the bias is ``bias_mant << bias_exp``
with ``bias_exp = threshold_shift``, so ``bias_mant = bias_int`` (``bias_mantissa_bits`` signed).
The per-step synaptic sum must stay below ``2**(state_bits - 1 - threshold_shift)`` LSB or ``u``
wraps; layers that can exceed it are noted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neuroprune.chip.formats.base import Quantizer, register_quantizer
from neuroprune.chip.formats.grid import Grid, best_pow2_scale
from neuroprune.chip.formats.neuron import NeuronParams, bias_to_int, threshold_to_int
from neuroprune.chip.formats.params import param_bool, param_int, param_range
from neuroprune.chip.schema import NeuronSpec, WeightFormat
from neuroprune.core.errors import ProfileError


@dataclass(frozen=True)
class LoihiParams:
    """Loihi precisions from ``weights.params`` (bits unless stated)."""

    mantissa_bits: int
    exponent_range: tuple[int, int]
    mixed_sign_drops_lsb: bool
    threshold_mantissa_bits: int
    threshold_shift: int
    decay_bits: int
    bias_mantissa_bits: int
    bias_exponent_bits: int
    state_bits: int

    @property
    def magnitude_max(self) -> int:
        """Largest |weight_int|: ``2**(m-1) - 1`` with the LSB dropped, else ``2**m - 1``."""
        magnitude_bits = self.mantissa_bits - 1 if self.mixed_sign_drops_lsb else self.mantissa_bits
        return 2**magnitude_bits - 1

    @property
    def lava_dense(self) -> dict[str, int]:
        """How a Lava fixed-point Dense reproduces ``sum(weight_int * s)`` exactly."""
        if self.mixed_sign_drops_lsb:
            return {"weights_factor": 2, "weight_exp": -1, "num_weight_bits": self.mantissa_bits}
        return {"weights_factor": 1, "weight_exp": 0, "num_weight_bits": self.mantissa_bits}


@register_quantizer("loihi", "loihi2")
class LoihiQuantizer(Quantizer):
    """Signed mantissa with a shared power-of-two exponent per layer (Loihi 1 and 2)."""

    def read_params(self, fmt: WeightFormat, where: str) -> LoihiParams:
        params = LoihiParams(
            mantissa_bits=param_int(fmt, "mantissa_bits", where, minimum=2),
            exponent_range=param_range(fmt, "exponent_range", where),
            mixed_sign_drops_lsb=param_bool(fmt, "mixed_sign_drops_lsb", where, default=True),
            threshold_mantissa_bits=param_int(fmt, "threshold_mantissa_bits", where),
            threshold_shift=param_int(fmt, "threshold_shift", where, minimum=0),
            decay_bits=param_int(fmt, "decay_bits", where),
            bias_mantissa_bits=param_int(fmt, "bias_mantissa_bits", where, minimum=2),
            bias_exponent_bits=param_int(fmt, "bias_exponent_bits", where),
            state_bits=param_int(fmt, "state_bits", where, minimum=2),
        )
        low, high = params.exponent_range
        lava_exp = params.lava_dense["weight_exp"]
        if not low <= lava_exp <= high:
            raise ProfileError(
                f"exponent range must contain the Lava weight_exp {lava_exp}",
                where=where,
                field="weights.params.exponent_range",
                value=[low, high],
                fix="Use the chip's exponent range, e.g. [-8, 7].",
            )
        if params.threshold_shift > 2**params.bias_exponent_bits - 1:
            raise ProfileError(
                "bias exponent cannot express the threshold shift",
                where=where,
                field="weights.params.bias_exponent_bits",
                value=params.bias_exponent_bits,
                fix="bias_exponent_bits must allow bias_exp = threshold_shift.",
            )
        return params

    def choose_grid(
        self, weight: np.ndarray, params: LoihiParams
    ) -> tuple[Grid, dict[str, Any], list[str]]:
        qmax = params.magnitude_max
        scale = best_pow2_scale(weight, -qmax, qmax)
        grid = Grid(scale=scale, int_min=-qmax, int_max=qmax)
        extra = {"lava": dict(params.lava_dense)}
        if params.mixed_sign_drops_lsb:
            note = (
                f"mixed-sign mantissa drops its LSB in Lava: weights use {params.mantissa_bits - 1}"
                f"-bit magnitude (|weight_int| <= {qmax}); pass 2*weight_int with weight_exp=-1"
            )
        else:
            note = f"weights use {params.mantissa_bits}-bit magnitude (|weight_int| <= {qmax})"
        notes = [note, *self._overflow_notes(weight, grid, params)]
        return grid, extra, notes

    @staticmethod
    def _overflow_notes(weight: np.ndarray, grid: Grid, params: LoihiParams) -> list[str]:
        """Note when one step's synaptic sum could wrap the 24-bit current u."""
        limit = 2 ** (params.state_bits - 1 - params.threshold_shift)
        rows = np.rint(np.abs(weight.reshape(weight.shape[0], -1)) / grid.scale)
        worst = float(np.minimum(rows, grid.int_max).sum(axis=1).max(initial=0.0))
        if worst < limit:
            return []
        return [
            f"a neuron's summed |weight_int| {worst:.0f} can exceed the {limit} LSB current range"
        ]

    def neuron_fields(
        self,
        grid: Grid,
        bias: np.ndarray | None,
        neuron: NeuronParams,
        params: LoihiParams,
        neuron_spec: NeuronSpec | None,
    ) -> tuple[dict[str, Any], list[str]]:
        dv, du, tau, notes = loihi_decay(neuron, params.decay_bits)
        fold = neuron.decay_input and tau is not None
        fold_tau = tau if tau is not None else 1.0  # read only where fold holds
        thr_limit = 2**params.threshold_mantissa_bits - 1
        threshold_int, thr_notes = threshold_to_int(
            neuron.v_threshold, grid.scale, int(thr_limit // fold_tau) if fold else thr_limit
        )
        if fold and float(threshold_int * fold_tau) != round(threshold_int * fold_tau):
            thr_notes.append(
                f"decay_input folds tau into vth: threshold_int*tau = {threshold_int * fold_tau:g} "
                "is not an integer, so Lava's vth must round it"
            )
        bias_max = 2 ** (params.bias_mantissa_bits - 1) - 1
        bias_int, bias_notes = bias_to_int(bias, grid.scale, -bias_max - 1, bias_max)
        bias_range = {"bias_range": [-bias_max - 1, bias_max]} if bias is not None else {}
        lava_vth = int(round(threshold_int * fold_tau)) if fold else threshold_int
        fields = {
            "threshold_int": threshold_int,
            "bias_int": bias_int,
            "bias_exp": params.threshold_shift if bias is not None else None,
            "decay_v": dv,
            "decay_u": du,
            "tau": tau,
            "extra": {"lava_vth": lava_vth, **bias_range},
        }
        return fields, notes + thr_notes + bias_notes


def loihi_decay(neuron: NeuronParams, decay_bits: int) -> tuple[int, int, float | None, list[str]]:
    """Loihi decays for a SpikingJelly neuron.

    ``dv = rint(2**decay_bits / tau)`` clipped to ``[0, 2**decay_bits - 1]`` (IF: ``dv = 0``),
    ``du = 2**decay_bits - 1`` (Lava's +1 offset on du clears u every step). Returns
    ``(dv, du, tau_realised, notes)`` with ``tau_realised = 2**decay_bits / dv``.
    """
    full = 2**decay_bits
    du = full - 1
    if neuron.tau is None:
        return 0, du, None, []
    dv = int(min(max(round(full / neuron.tau), 1), full - 1))
    tau = full / dv
    notes = []
    if tau != neuron.tau:
        notes.append(
            f"tau {neuron.tau:g} is not exact in {decay_bits}-bit decay: dv={dv} realises "
            f"tau={tau:.6g} (model tau set to it)"
        )
    return dv, du, tau, notes
