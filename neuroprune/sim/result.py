"""Simulation result and the figures derived from spike counts (torch-free).

Definitions (N samples, T steps, layer k with n_k neurons, counts c_k[i, j] over the T steps):

* spike rate of layer k: ``sum(c_k) / (N * n_k * T)`` spikes per neuron per step;
* prediction: ``argmax_j c_L[i, j]`` of the output layer (first index wins ties);
* layer agreement with expected counts e_k: fraction of samples i with ``c_k[i, :] == e_k[i, :]``
  (every neuron's count equal); spike agreement = min over layers; the expected counts are
  ``expected_counts`` (arrays, or ``"reference"``: the numpy reference in the same mode) or else
  the counts of ``reference_model`` (the torch model) (``agreement_source`` says which);
* synaptic operations per sample: ``mean_i sum_k sum_j pre_k[i, j] * fan_out_k[j]`` where
  ``pre_k`` concatenates the counts of layer k's sources (the input events for the network
  input; ``pre_k = c_{k-1}`` in a chain); ``fan_out_k[j]`` = nonzero weights leaving input j of
  layer k (conv unrolled, pooling and residual sums expanded as the chip wires them);
* energy per sample (:func:`energy_estimate`): ``(synop_pj * synops + neuron_update_pj * neurons
  * T) * 1e-12`` J; a profile without ``neuron_update_pj`` (TrueNorth's 26 pJ is all-in: chip
  energy over synaptic events) gives the synaptic term alone and names the missing figure;
  ``None`` without ``synop_pj`` (the missing figures named in ``energy_missing``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuroprune.core.errors import ConfigError
from neuroprune.sim.inputs import Stimulus
from neuroprune.sim.spec import DeploymentSpec
from neuroprune.sim.verification import Verification

PICO = 1e-12


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """What :func:`neuroprune.sim.simulate` returns (see the module docstring for definitions).

    Attributes:
        backend / mode: ``"lava"``/``"reference"`` and ``"float"``/``"fixed"``.
        samples / timesteps: N and T.
        stimulus: ``"spikes"`` (binary input) or ``"current"`` (first layer on the host).
        layer_names / layer_neurons: neuron layers in order and their sizes.
        spike_counts: total spikes per layer over all samples.
        spike_rates: spikes per neuron per step, per layer.
        counts: per layer ``int32 [N, neurons]`` spike counts (feed them to another run's
            ``expected_counts``).
        predictions: ``int64 [N]`` predicted classes.
        layer_agreement / spike_agreement: against the expected counts (``None`` without).
        agreement_source: ``"expected_counts"``, ``"reference"``, ``"reference_model"`` or None.
        first_divergent_layer: first layer whose agreement is below 1 (``None`` if none).
        prediction_agreement: fraction of samples whose prediction equals the expected one.
        accuracy: fraction of correct predictions (``None`` without labels).
        synops_per_sample: synaptic operations per sample.
        energy_per_sample_j: energy estimate in joules (``None`` without ``energy.synop_pj``).
        energy_basis / energy_missing: what the estimate sums, in words; the profile fields
            without a figure (:func:`energy_estimate`).
        seconds_per_sample: backend wall time / N (Lava: includes the worker's start-up).
        wall_seconds: the whole call.
        timings: backend durations in seconds; notes: facts a report should state.
        model_agreement / model_prediction_agreement: per-layer agreement and prediction
            agreement with the PyTorch model when it was not the gating comparison (fixed-point
            runs gate on the bit-exact reference and report the model's drift here).
        model_count_agreement: per layer, the fraction of (sample, neuron) spike counts equal
            to the PyTorch model's (a finer view of the same drift).
        placement: ``((node, "chip" | "host"), ...)``: where each synaptic and neuron node ran
            (``neuroprune.sim.inputs.placement``).
        float_drift: when ``simulate(float_model=...)`` was given (a model trained with the
            chip's arithmetic, compared with the same weights on float neurons):
            ``layer_agreement``, ``count_agreement`` (per layer), ``prediction_agreement`` and
            ``accuracy`` of the float model against this run: the float-to-chip drift.
        verification: what the run verified (:mod:`neuroprune.sim.verification`): the kind
            every agreement figure above carries.
        model_accuracy: accuracy (0..1) of the PyTorch model compared with, on the same
            samples (``None`` without one or without labels).
    """

    backend: str
    mode: str
    samples: int
    timesteps: int
    stimulus: str
    layer_names: tuple[str, ...]
    layer_neurons: tuple[int, ...]
    spike_counts: tuple[int, ...]
    spike_rates: tuple[float, ...]
    counts: tuple[np.ndarray, ...]
    predictions: np.ndarray
    layer_agreement: tuple[float, ...] | None
    spike_agreement: float | None
    agreement_source: str | None
    first_divergent_layer: str | None
    prediction_agreement: float | None
    accuracy: float | None
    synops_per_sample: float
    energy_per_sample_j: float | None
    seconds_per_sample: float
    wall_seconds: float
    timings: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    model_agreement: tuple[float, ...] | None = None
    model_prediction_agreement: float | None = None
    model_count_agreement: tuple[float, ...] | None = None
    placement: tuple[tuple[str, str], ...] = ()
    float_drift: Mapping[str, Any] | None = None
    verification: Verification | None = None
    model_accuracy: float | None = None
    energy_basis: str | None = None
    energy_missing: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-sample arrays) for ``simulation.json`` / report.json."""
        return {
            "backend": self.backend,
            "mode": self.mode,
            "samples": self.samples,
            "timesteps": self.timesteps,
            "stimulus": self.stimulus,
            "placement": dict(self.placement),
            "layers": self.layer_rows(),
            "verification": None if self.verification is None else self.verification.as_dict(),
            "spike_agreement": self.spike_agreement,
            "agreement_source": self.agreement_source,
            "first_divergent_layer": self.first_divergent_layer,
            "prediction_agreement": self.prediction_agreement,
            "accuracy": self.accuracy,
            "model_accuracy": self.model_accuracy,
            "synops_per_sample": self.synops_per_sample,
            "energy_per_sample_j": self.energy_per_sample_j,
            "energy_basis": self.energy_basis,
            "energy_missing": list(self.energy_missing),
            "seconds_per_sample": self.seconds_per_sample,
            "wall_seconds": self.wall_seconds,
            "timings": dict(self.timings),
            "notes": list(self.notes),
            "model_agreement": None if self.model_agreement is None else list(self.model_agreement),
            "model_spike_agreement": None
            if self.model_agreement is None
            else min(self.model_agreement),
            "model_prediction_agreement": self.model_prediction_agreement,
            "model_count_agreement": None
            if self.model_count_agreement is None
            else list(self.model_count_agreement),
            "float_drift": None if self.float_drift is None else dict(self.float_drift),
        }

    def layer_rows(self) -> list[dict[str, Any]]:
        """Per layer: ``layer``, ``neurons``, ``spikes``, ``spikes_per_sample``, ``rate``,
        ``agreement``."""
        rows = []
        for k, name in enumerate(self.layer_names):
            rows.append(
                {
                    "layer": name,
                    "neurons": self.layer_neurons[k],
                    "spikes": self.spike_counts[k],
                    "spikes_per_sample": self.spike_counts[k] / self.samples,
                    "rate": self.spike_rates[k],
                    "agreement": None if self.layer_agreement is None else self.layer_agreement[k],
                }
            )
        return rows


def predictions_from(counts: np.ndarray) -> np.ndarray:
    """``argmax`` over output neurons of ``[N, classes]`` counts (first index wins ties)."""
    return np.argmax(counts, axis=1).astype(np.int64)


def count_agreement(counts: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> tuple:
    """Per layer: fraction of (sample, neuron) counts equal to the expected ones."""
    return tuple(
        float(np.mean(np.asarray(c) == np.asarray(e)))
        for c, e in zip(counts, expected, strict=True)
    )


def layer_agreement(counts: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> tuple:
    """Per layer, the fraction of samples whose per-neuron counts all match ``expected``."""
    check_expected(counts, expected)
    return tuple(
        float(np.mean(np.all(np.asarray(c) == np.asarray(e), axis=1)))
        for c, e in zip(counts, expected, strict=True)
    )


def check_expected(counts: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> None:
    """Raise :class:`ConfigError` if ``expected`` does not have the shape of ``counts``."""
    shapes = [tuple(np.shape(c)) for c in counts]
    given = [tuple(np.shape(e)) for e in expected]
    if given != shapes:
        raise ConfigError(
            "expected_counts do not match the simulated layers",
            where="simulate",
            field="expected_counts shapes",
            value=given,
            fix=f"Pass one [samples, neurons] array per layer: {shapes}.",
        )


def synops_per_sample(spec: DeploymentSpec, stimulus: Stimulus, counts) -> float:
    """Mean synaptic operations per sample (module docstring)."""
    return float(np.mean(sum(_layer_synops(spec, stimulus, counts))))


def synops_per_layer(spec: DeploymentSpec, stimulus: Stimulus, counts) -> tuple[float, ...]:
    """Mean synaptic operations per sample of each synaptic layer, in ``spec.layers`` order:
    ``mean_i sum_j pre_k[i, j] * fan_out_k[j]`` (module docstring); they sum to
    :func:`synops_per_sample` up to float rounding."""
    return tuple(float(np.mean(ops)) for ops in _layer_synops(spec, stimulus, counts))


def _layer_synops(spec: DeploymentSpec, stimulus: Stimulus, counts) -> list[np.ndarray]:
    """Per layer ``k``: ``float64 [N]``, the events into each input times its nonzero fan-out."""
    return [
        np.asarray(spec.layer_input(k, stimulus.input_events, counts), dtype=np.float64)
        @ layer.fan_out.astype(np.float64)
        for k, layer in enumerate(spec.layers)
    ]


ENERGY_FIELDS = ("energy.synop_pj", "energy.neuron_update_pj")


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy per sample from a profile's figures (module docstring).

    ``joules``: J per sample, ``None`` without ``energy.synop_pj``; ``basis``: what it sums, in
    words (figures and their profile notes); ``missing``: the profile fields that had no figure
    (empty when both were there)."""

    joules: float | None
    basis: str | None
    missing: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "energy_per_sample_j": self.joules,
            "energy_basis": self.basis,
            "energy_missing": list(self.missing),
        }


def energy_estimate(profile: Any, synops: float, neurons: int, steps: int) -> EnergyEstimate:
    """``synop_pj * synops + neuron_update_pj * neurons * T`` pJ per sample, with the terms the
    profile has figures for; ``joules`` None without ``synop_pj`` (a neuron-update term alone
    would pass for a whole-chip figure)."""
    if profile is None:
        return EnergyEstimate(None, None, ("a chip profile (simulate --chip CHIP)",))
    energy = getattr(profile, "energy", None)
    synop, update = (getattr(energy, name.split(".")[1], None) for name in ENERGY_FIELDS)
    missing = tuple(
        name for name, q in zip(ENERGY_FIELDS, (synop, update), strict=True) if _figure(q) is None
    )
    if _figure(synop) is None:
        return EnergyEstimate(None, None, missing)
    pj = _figure(synop) * synops
    basis = f"{synops:.4g} synaptic events x {_figure(synop):g} pJ"
    if _figure(update) is not None:
        pj += _figure(update) * neurons * steps
        basis += f" + {neurons} neurons x {steps} steps x {_figure(update):g} pJ"
    else:  # the profile's note says whether the synaptic figure already holds the rest
        basis += _note(getattr(profile, "quantities", {}), ENERGY_FIELDS[0])
    return EnergyEstimate(pj * PICO, basis, missing)


def energy_per_sample_j(profile: Any, synops: float, neurons: int, steps: int) -> float | None:
    """J per sample (:func:`energy_estimate`), or ``None`` without ``synop_pj``."""
    return energy_estimate(profile, synops, neurons, steps).joules


def _note(quantities: Any, name: str) -> str:
    """``: the profile's note on the figure`` or nothing."""
    note = getattr(quantities.get(name), "note", None)
    return f": {note}" if note else ""


def _figure(value: Any) -> float | None:
    value = getattr(value, "value", value)
    return None if value is None else float(value)


def agreement_with_labels(predictions: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else float(np.mean(predictions == labels))
