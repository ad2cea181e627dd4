"""Stage "simulate": run the exported model.nir on the chosen simulator and compare its spikes;
simulation.json and report.json ``simulation`` (and ``fit.partition`` on several chips).
``neuroprune simulate RUN`` uses the same defaults (:func:`fixed_by_default`,
:func:`bit_exact_check`) and ``neuroprune report`` the same gate (:func:`verification_passed`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from neuroprune import sim as simulators  # a lazy face: Lava and torch load on first use
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import BackendUnavailableError, SimulationError
from neuroprune.data.encoding import simulation_input
from neuroprune.pipeline.context import _Run, _simulation_progress
from neuroprune.pipeline.stages.base import Carry, Stage
from neuroprune.run.rundir import ErrorRecord, SimulationRecord
from neuroprune.sim.verification import CHIP_EXACT

LAVA_BACKENDS = ("lava", "netx")  # run in a Lava worker: scaled time limit, bit-exact check


def run_simulate(run: _Run, carry: Carry) -> Carry:
    """Simulate model.nir; a simulator failure is recorded (report.json ``errors``) and carried
    on, not raised, so the report is still written."""
    if run.cfg.backend == "none":
        run.record.stages_not_run.append("simulation (--backend none)")
        return carry
    try:
        verified = _simulate(run, carry)
    except (SimulationError, BackendUnavailableError) as exc:
        run.record.errors.append(
            ErrorRecord(stage="simulate", kind=type(exc).__name__, message=exc.one_line())
        )
        run.emit("simulate", f"failed: {exc.one_line()}")
        return replace(carry, error=exc)
    return replace(carry, verified=verified)


_NODE_INDEX = re.compile(r"^l(\d+)_")


def model_layer_names(data: dict[str, Any], record) -> dict[str, Any]:
    """The simulation's layer rows named as report.md, fit.json and the plots name layers (the
    model's layer names, ``record.pruned.layers``), each row keeping the NIR neuron node it was
    read from as ``node``. NIR node ``l<i>_..`` is synaptic layer ``i`` of the model
    (docs/conventions.md section 4); a node of another form keeps its own name."""
    pruned = getattr(record, "pruned", None)
    names = [row.layer for row in pruned.layers] if pruned is not None else []
    rows = []
    for row in data.get("layers", []):
        found = _NODE_INDEX.match(str(row.get("layer", "")))
        index = int(found.group(1)) if found else None
        if index is not None and index < len(names):
            row = {
                "layer": names[index],
                "node": row["layer"],
                **{k: v for k, v in row.items() if k != "layer"},
            }
        rows.append(row)
    return {**data, "layers": rows}


def _simulate(run: _Run, carry: Carry) -> bool:
    """Simulate the exported model.nir; True when agreement meets the threshold."""
    cfg, dataset = run.cfg, carry.dataset
    fixed = cfg.fixed_point if cfg.fixed_point is not None else fixed_by_default(run.profile)
    samples = cfg.samples or len(dataset.x_test)
    run.emit(
        "simulate",
        f"{cfg.backend} backend, {'fixed' if fixed else 'floating'} point, {samples} test samples",
    )
    x, y = simulation_input(dataset, samples), dataset.y_test[:samples]
    timeout = cfg.sim_timeout
    if timeout is None and cfg.backend in LAVA_BACKENDS:
        timeout = calibrated_timeout(run.rundir.model_file("nir"), x, fixed)
        run.emit(
            "simulate",
            f"Lava time limit {timeout:.0f} s, scaled from the network's "
            f"measured cost (--sim-timeout overrides)",
        )
    # Fixed point gates on the bit-exact integer emulation (must be 100 %) and reports the
    # agreement of the trained quantized model (chip arithmetic where the profile declares it)
    # and the float-to-chip drift; floating point gates on the PyTorch model itself.
    from neuroprune.models.neurons import float_twin  # deferred: imports spikingjelly, torch

    result = simulators.simulate(
        run.rundir.model_file("nir"),
        x=x,
        y=y,
        profile=run.profile,
        backend=cfg.backend,
        fixed_point=fixed,
        timeout=timeout,
        expected_counts=bit_exact_check(cfg.backend, fixed),
        reference_model=carry.model,
        float_model=float_twin(carry.model),
        progress=_simulation_progress(run),
    )
    data = model_layer_names(result.as_dict(), run.record)
    run.rundir.write_simulation(data)
    run.record.simulation = SimulationRecord(**data)
    _chip_traffic(run, result.counts)
    run.emit("simulate", _agreement_line(data))
    return verification_passed(data, cfg.agreement_threshold)


AGAINST = {
    "reference": "the bit-exact emulation",
    "reference_model": "the PyTorch model",
    "expected_counts": "the expected counts",
}
"""What a simulation's ``agreement_source`` compared it with, in words."""


def _agreement_line(data: Mapping[str, Any]) -> str:
    """The log line of a simulation: its verification kind, then every agreement figure."""
    agreement = data.get("spike_agreement")
    drift = data.get("model_spike_agreement")
    versus = AGAINST.get(data.get("agreement_source") or "", "nothing")
    kind = (data.get("verification") or {}).get("kind", "unverified")
    extra = f"; {100 * drift:.2f} % vs the trained PyTorch model" if drift is not None else ""
    if data.get("float_drift"):
        floats = min(data["float_drift"]["layer_agreement"])
        extra += f" ({100 * floats:.2f} % vs its weights on float neurons)"
    return (
        f"{kind}: spike agreement {100 * (agreement or 0):.2f} % vs {versus}{extra}, "
        f"{1000 * (data.get('seconds_per_sample') or 0):.2f} ms/sample"
    )


def _chip_traffic(run: _Run, counts) -> None:
    """report.json ``fit.partition``: layer -> chips, cores per chip and the simulated spikes
    per sample crossing chip boundaries (:func:`neuroprune.fit.traffic.chip_traffic`)."""
    from neuroprune.fit.traffic import chip_traffic  # deferred: imports scipy

    if run.fitted is None or not counts:
        return
    summary, packing = run.fitted
    rates = [c.mean(axis=0) for c in counts]
    run.record.fit.partition = chip_traffic(summary, packing, rates)
    run.rundir.write_fit(run.record.fit.model_dump(mode="json"))


CALIBRATION_SAMPLES = 8


def calibrated_timeout(nir_path: Path, x, fixed: bool) -> float:
    """Lava's time limit for ``len(x)`` samples, scaled from the measured cost of this network:
    the numpy reference simulates ``CALIBRATION_SAMPLES`` samples first
    (:func:`neuroprune.sim.lava_backend.scaled_timeout` turns that into seconds)."""
    from neuroprune.sim.lava_backend import scaled_timeout  # deferred: imports scipy

    probe = simulators.simulate(
        nir_path, x=x[:CALIBRATION_SAMPLES], backend="reference", fixed_point=fixed
    )
    return scaled_timeout(len(x), probe.as_dict()["seconds_per_sample"])


def verification_passed(sim: Mapping[str, Any], threshold: float) -> bool:
    """True when the simulation's gating agreement meets ``threshold``.

    Fixed point compared only with the PyTorch model (reference backend) measures the drift of
    the chip arithmetic from float neurons where the model has float neurons (a float stand-in):
    not expected to be exact, it is reported, not gated on. Where the run is chip-exact the
    model runs the same integer arithmetic, so that comparison is gated like any other (it
    passed at 0.00 % before).
    """
    kind = (sim.get("verification") or {}).get("kind")
    drift_only = sim.get("mode") == "fixed" and sim.get("agreement_source") == "reference_model"
    if drift_only and kind != CHIP_EXACT:
        return True
    agreement = sim.get("spike_agreement")
    return agreement is None or agreement >= threshold


VERIFIED_BY_REFERENCE = (*LAVA_BACKENDS, "sinabs", "xylosim")
"""Backends whose fixed-point counts are gated on the numpy bit-exact emulation (the trained
model's agreement reported beside it): Lava, lava-dl's netx in Lava, Sinabs on Speck, XyloSim
on Xylo."""


def bit_exact_check(backend: str, fixed: bool) -> str | None:
    """Lava fixed point (``lava``, and ``netx``: lava-dl's loader in Lava), Sinabs and XyloSim
    are checked against the numpy bit-exact emulation; the emulation itself (reference backend)
    has no independent oracle, so it is compared with the model only."""
    return "reference" if fixed and backend in VERIFIED_BY_REFERENCE else None


def fixed_by_default(profile: ChipProfile) -> bool:
    """Fixed point where the chip's integer neuron arithmetic is modelled: the profile declares
    ``neuron.arithmetic`` (Loihi, Loihi 2 and SpiNNaker), whose integer neurons the reference
    and Lava both run, so the run can be chip-exact (:mod:`neuroprune.sim.verification`)."""
    return profile.neuron.arithmetic is not None


SIMULATE = Stage("simulate", "simulation", run_simulate)
