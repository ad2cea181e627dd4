"""``simulate``: run an exported NIR file on a simulator backend and measure agreement."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from neuroprune.core.errors import ConfigError, DatasetError
from neuroprune.graph.stages import INPUT
from neuroprune.sim import result as metrics
from neuroprune.sim.backends import get_backend
from neuroprune.sim.base import BackendRun, Progress, SimBackend, emit
from neuroprune.sim.inputs import CURRENT, Stimulus, placement, prepare_stimulus
from neuroprune.sim.reference import ReferenceBackend
from neuroprune.sim.result import SimulationResult
from neuroprune.sim.spec import DeploymentSpec, read_deployment
from neuroprune.sim.torch_reference import model_counts
from neuroprune.sim.verification import (
    CHIP_EXACT,
    VENDOR_SIMULATOR,
    Verification,
    verification_kind,
)

REFERENCE = "reference"


def simulate(
    nir_path: str | Path,
    *,
    x: np.ndarray,
    y: np.ndarray | None = None,
    profile: Any = None,
    backend: str | SimBackend = "lava",
    fixed_point: bool = False,
    samples: int | None = None,
    timeout: float | None = None,
    expected_counts: Sequence[np.ndarray] | str | None = None,
    reference_model: Any = None,
    float_model: Any = None,
    progress: Progress = None,
) -> SimulationResult:
    """Simulate the network in ``nir_path`` on ``backend`` and report counts and agreement.

    Args:
        nir_path: ``.nir`` file (conventions.md §4).
        x: encoded input ``[T, N, *input_shape]`` (binary spikes, or analog values for
            ``direct`` encoding), or static images ``[N, *input_shape]`` that are encoded with
            the graph's ``timesteps`` and ``encoding`` (poisson: seed 0).
        y: labels ``[N]`` for accuracy.
        profile: a ``ChipProfile``, a chip id or a profile path, for the energy estimate.
        backend: ``"lava"``, ``"reference"`` or a :class:`SimBackend` instance.
        fixed_point: Loihi fixed_pt arithmetic (needs a quantized graph) instead of float.
        samples: simulate only the first ``samples`` samples.
        timeout: seconds before the Lava worker is killed (default ``20 + 0.05 * N``).
        expected_counts: per-layer ``[N, neurons]`` counts to compare with (e.g. another
            result's ``counts``), or ``"reference"`` to compute them with the reference backend
            in the same mode.
        reference_model: the SpikingJelly model (conventions.md §1) to compare with when
            ``expected_counts`` is not given; it runs in this process on the same input. In
            fixed-point mode this measures the drift of Loihi arithmetic (12-bit decay
            truncation, integer input current) from the float model, not the mapping: use
            ``expected_counts="reference"`` for the bit-exact check. When both are given, the
            expected counts gate ``spike_agreement`` and the model's agreement is reported as
            ``model_agreement`` (drift).
        float_model: optional second torch model, the chip-arithmetic ``reference_model``'s
            weights on float neurons; its agreement with this run is ``float_drift`` (the
            float-to-chip drift, reported, never gated on).

    Returns:
        a :class:`SimulationResult` (definitions in :mod:`neuroprune.sim.result`); its
        ``verification`` says what the run verified (:mod:`neuroprune.sim.verification`:
        chip-exact, float stand-in or vendor simulator, from ``profile``, ``backend`` and the
        mode), and ``model_accuracy`` is ``reference_model``'s accuracy on the same samples.

    Raises:
        ArtifactError / UnsupportedError: the file cannot be read or simulated.
        DatasetError / ConfigError: bad ``x``, ``y``, ``samples``, ``timeout`` or expected counts.
        BackendUnavailableError: lava-nc is missing (exit code 3).
        SimulationError: the Lava worker crashed or timed out (one line; nothing left running).
        progress: optional callable receiving event dicts.
    """
    start = time.perf_counter()
    chosen = get_backend(backend)
    _check_timeout(timeout)
    chosen.check_available()
    chip = _resolve_profile(profile)
    verification = verification_kind(chip, chosen, fixed_point=fixed_point)
    spec = read_deployment(nir_path)
    stimulus = prepare_stimulus(spec, x, samples=samples, fixed_point=fixed_point)
    labels = _labels(y, stimulus.samples)
    emit(
        progress,
        "start",
        backend=chosen.name,
        samples=stimulus.samples,
        mode=_mode(fixed_point),
        stimulus=stimulus.kind,
    )
    begin = time.perf_counter()
    run = chosen.run(spec, stimulus, fixed_point=fixed_point, timeout=timeout, progress=progress)
    backend_seconds = time.perf_counter() - begin
    expected, source = _expected(expected_counts, reference_model, chosen, spec, stimulus, run)
    result = build_result(
        chosen.name,
        spec,
        stimulus,
        run,
        fixed_point=fixed_point,
        labels=labels,
        profile=chip,
        expected=expected,
        agreement_source=source,
        backend_seconds=backend_seconds,
        wall=time.perf_counter() - start,
        verification=verification,
    )
    if getattr(chosen, "float_only", False):  # e.g. pynn: floating point whatever was asked
        result = replace(result, mode=_mode(False))
    if expected_counts is not None and reference_model is not None:
        drift, _ = _expected(None, reference_model, chosen, spec, stimulus, run)
        result = replace(
            result,
            model_agreement=metrics.layer_agreement(run.counts, drift),
            model_prediction_agreement=_prediction_agreement(result.predictions, drift),
            model_count_agreement=metrics.count_agreement(run.counts, drift),
            model_accuracy=_accuracy_of(drift, labels),
        )
    elif reference_model is not None:
        result = replace(result, model_accuracy=_accuracy_of(expected, labels))
    if float_model is not None:
        result = replace(
            result,
            float_drift=_float_drift(float_model, chosen, spec, stimulus, run, result, labels),
        )
    emit(
        progress,
        "done",
        backend=chosen.name,
        spike_agreement=result.spike_agreement,
        seconds_per_sample=result.seconds_per_sample,
    )
    return result


def build_result(
    name: str,
    spec: DeploymentSpec,
    stimulus: Stimulus,
    run: BackendRun,
    *,
    fixed_point: bool,
    labels: np.ndarray | None,
    profile: Any,
    expected: Sequence[np.ndarray] | None,
    agreement_source: str | None = None,
    backend_seconds: float,
    wall: float,
    verification: Verification | None = None,
) -> SimulationResult:
    """Assemble a :class:`SimulationResult` from a backend run (definitions in ``result``);
    ``verification`` defaults to what the backend ``name`` verifies without a profile."""
    if verification is None:
        verification = verification_kind(profile, name, fixed_point=fixed_point)
    counts = run.counts
    steps, samples = stimulus.timesteps, stimulus.samples
    predictions = metrics.predictions_from(counts[-1])
    agreement = None if expected is None else metrics.layer_agreement(counts, expected)
    synops = metrics.synops_per_sample(spec, stimulus, counts)
    neurons = tuple(layer.neurons for layer in spec.layers)
    energy = metrics.energy_estimate(profile, synops, sum(neurons), steps)
    return SimulationResult(
        backend=name,
        mode=_mode(fixed_point),
        samples=samples,
        timesteps=steps,
        stimulus=stimulus.kind,
        layer_names=spec.layer_names,
        layer_neurons=neurons,
        spike_counts=tuple(int(c.sum()) for c in counts),
        spike_rates=tuple(
            float(c.sum()) / (samples * n * steps) for c, n in zip(counts, neurons, strict=True)
        ),
        counts=tuple(counts),
        predictions=predictions,
        layer_agreement=agreement,
        spike_agreement=None if agreement is None else min(agreement),
        agreement_source=None if agreement is None else agreement_source,
        first_divergent_layer=_first_divergent(spec, agreement),
        prediction_agreement=_prediction_agreement(predictions, expected),
        accuracy=metrics.agreement_with_labels(predictions, labels),
        synops_per_sample=synops,
        energy_per_sample_j=energy.joules,
        energy_basis=energy.basis,
        energy_missing=energy.missing,
        seconds_per_sample=backend_seconds / samples,
        wall_seconds=wall,
        timings=dict(run.timings),
        notes=_notes(spec, stimulus, run, fixed_point, verification),
        placement=placement(spec, stimulus),
        verification=verification,
    )


def _mode(fixed_point: bool) -> str:
    return "fixed" if fixed_point else "float"


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError(
            "timeout must be a positive number of seconds",
            where="simulate",
            field="timeout",
            value=timeout,
        )


def _resolve_profile(profile: Any) -> Any:
    if profile is None or hasattr(profile, "energy"):
        return profile
    from neuroprune.chip.profiles import load_profile  # deferred: imports yaml

    return load_profile(profile)


def _labels(y: np.ndarray | None, samples: int) -> np.ndarray | None:
    if y is None:
        return None
    labels = np.asarray(y).ravel()
    if labels.shape[0] < samples:
        raise DatasetError(
            "fewer labels than samples",
            where="simulate",
            field="len(y)",
            value=int(labels.shape[0]),
            fix=f"Pass {samples} labels.",
        )
    return labels[:samples].astype(np.int64)


def _float_drift(float_model, chosen, spec, stimulus, run, result, labels) -> dict[str, Any]:
    """Agreement of the float-neuron twin with this run (see ``simulate(float_model=...)``)."""
    counts, _ = _expected(None, float_model, chosen, spec, stimulus, run)
    predictions = metrics.predictions_from(counts[-1])
    return {
        "layer_agreement": list(metrics.layer_agreement(run.counts, counts)),
        "count_agreement": list(metrics.count_agreement(run.counts, counts)),
        "prediction_agreement": _prediction_agreement(result.predictions, counts),
        "accuracy": metrics.agreement_with_labels(predictions, labels),
    }


def _expected(expected_counts, reference_model, chosen, spec, stimulus, run):
    """``(counts, source)`` to compare with (module docstring of ``result``), or ``(None, None)``."""
    if expected_counts is None and reference_model is None:
        return None, None
    if expected_counts is None:
        counts = model_counts(reference_model, stimulus.inputs)
        return _check_layer_count(counts, spec, "reference_model"), "reference_model"
    if isinstance(expected_counts, str):
        if expected_counts != REFERENCE:
            raise ConfigError(
                "expected_counts must be arrays or 'reference'",
                where="simulate",
                field="expected_counts",
                value=expected_counts,
            )
        if chosen.name == REFERENCE:
            return run.counts, REFERENCE
        counts = ReferenceBackend().run(spec, stimulus, fixed_point=stimulus.fixed_point).counts
        return counts, REFERENCE
    counts = [np.asarray(e)[: stimulus.samples] for e in expected_counts]
    return _check_layer_count(counts, spec, "expected_counts"), "expected_counts"


def _check_layer_count(counts, spec: DeploymentSpec, field: str):
    if len(counts) != len(spec.layers):
        raise ConfigError(
            f"{field} has {len(counts)} neuron layers, the graph has {len(spec.layers)}",
            where="simulate",
            field=field,
            value=len(counts),
            fix="Compare with the model that was exported to this file.",
        )
    return counts


def _accuracy_of(counts, labels: np.ndarray | None) -> float | None:
    """Accuracy (0..1) of the predictions that per-layer ``counts`` make, or None."""
    if counts is None:
        return None
    return metrics.agreement_with_labels(metrics.predictions_from(np.asarray(counts[-1])), labels)


def _prediction_agreement(predictions: np.ndarray, expected) -> float | None:
    if expected is None:
        return None
    return float(np.mean(predictions == metrics.predictions_from(np.asarray(expected[-1]))))


def _first_divergent(spec: DeploymentSpec, agreement) -> str | None:
    if agreement is None:
        return None
    return next((spec.layer_names[k] for k, a in enumerate(agreement) if a < 1.0), None)


def _notes(
    spec: DeploymentSpec,
    stimulus: Stimulus,
    run: BackendRun,
    fixed_point: bool,
    verification: Verification,
):
    notes = list(run.notes)
    encoding = spec.encoding or "unknown"
    computed = _as_computed(verification)
    if stimulus.kind == CURRENT:
        shift = stimulus.current_shift
        rounding = f", in units of 2**-{shift} weight LSB" if fixed_point else ""
        notes.append(
            f"analog input ({encoding} encoding): first layer's synaptic current "
            f"({spec.layers[0].name}) computed on the host{rounding}; every neuron layer and "
            f"every later synaptic layer is placed on the chip and {computed}"
        )
    else:
        readers = ", ".join(layer.name for layer in spec.layers if INPUT in layer.sources)
        notes.append(
            f"spike input ({encoding} encoding): the input spike generator sends each step's "
            f"frame to {readers}; every synaptic and neuron layer is placed on the chip, none "
            f"on the host, and {computed}"
        )
    if spec.timesteps and spec.timesteps != stimulus.timesteps:
        notes.append(
            f"input has T={stimulus.timesteps}, the graph was exported with T={spec.timesteps}"
        )
    if any(not layer.neuron.strict for layer in spec.layers):
        notes.append("legacy graph with threshold '>=': simulated as v >= v_th")
    return tuple(notes)


def _as_computed(verification: Verification) -> str:
    """How the chip-placed layers were computed, by verification kind."""
    if verification.kind == CHIP_EXACT:
        return f"ran as the chip computes it ({verification.kind}: {verification.detail})"
    if verification.kind == VENDOR_SIMULATOR:
        return f"ran as the vendor's simulator computes it ({verification.detail})"
    return f"did not run as the chip computes it ({verification.kind}: {verification.detail})"
