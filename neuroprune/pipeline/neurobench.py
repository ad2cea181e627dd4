"""report.json ``neurobench``: NeuroBench 2.3.0's metrics of a run's final model, measured by the
``neurobench`` package (:mod:`neuroprune.sim.neurobench`), beside neuroprune's own counts.

What is measured: the run's last model (the quantized one when the quantize stage ran, its
pruning masks written into the weights as exact zeros) on the same test samples the simulator
ran, encoded as the simulator encodes them (``encode(x, T, encoding, seed=0)``). NeuroBench
hooks the model's own spiking layers in PyTorch; neuroprune's figures come from the simulation
(``simulation.json``: spikes, synaptic operations, accuracy) and the fit check (memory bits),
so a cross-check row compares two independent counts.

The definitions (NeuroBench 2.3.0, ``neurobench/metrics/``) and why a figure may differ:

* ``ConnectionSparsity`` = zero weight entries / all entries of ``nn.Linear``/``nn.Conv*``,
  rounded to 4 decimals; neuroprune: ``1 - kernel_nonzeros / kernel_entries`` of its summary.
  Same definition; a conv layer's *synapses* on a chip without weight sharing are the unrolled
  count (``synapses``), which NeuroBench has no figure for.
* ``SynapticOperations`` (per sample): ``Effective_MACs`` for layers whose input is not binary
  (the direct-encoded first layer), ``Effective_ACs`` for spike inputs; their sum against the
  simulation's ``synops_per_sample`` (nonzero input x nonzero weight, every layer, host ones
  included).
* ``ActivationSparsity`` = ``1 - spikes / (T N neurons)`` over the hooked spiking layers;
  neuroprune: the same from the simulator's spike counts. Equal when the simulation agrees
  spike for spike with the model.
* ``ClassificationAccuracy`` (``ChooseMaxCount``: most output spikes) against the simulation's
  accuracy.
* ``Footprint`` = bytes of every parameter and buffer as stored (float32 here, zeros, biases,
  BatchNorm statistics and neuron buffers included): pruning and quantization do not change
  it. The chip's figure is its synaptic memory (``chip_memory_bits``, the fit check's bits,
  weights plus the synapse encoding's index overhead) and the weights alone
  (``chip_weight_bits``: kept synapses x the format's bits); they are shown beside it, never
  compared as equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neuroprune.core.errors import NeuropruneError
from neuroprune.data.encoding import encode
from neuroprune.models import summarize
from neuroprune.pipeline.context import _Run
from neuroprune.run.record import NeuroBenchRecord, NeuroBenchRow, RunRecord
from neuroprune.sim.neurobench import NeuroBenchChild, neurobench_metrics

if TYPE_CHECKING:  # stages.report imports this module: Carry for annotations only
    from neuroprune.pipeline.stages.base import Carry

SPARSITY_DECIMALS = 4  # NeuroBench 2.3.0 rounds ConnectionSparsity to 4 decimals
RATE_TOLERANCE = 1e-9  # two ratios of the same integer counts agree to float rounding


def neurobench_section(run: _Run, carry: Carry) -> NeuroBenchRecord:
    """Measure NeuroBench's metrics of ``carry.model`` on the simulated samples and cross-check
    them (module docstring). A missing environment or a failed child gives ``computed`` False
    with the one-line reason; nothing is estimated in their place."""
    record, dataset, cfg = run.record, carry.dataset, run.cfg
    assert record is not None
    stage = next(s for s in ("quantized", "pruned", "dense") if getattr(record, s) is not None)
    samples = record.simulation.samples if record.simulation else len(dataset.x_test)
    timesteps = int(cfg.timesteps)
    base: dict[str, Any] = {"model": stage, "samples": samples, "timesteps": timesteps}
    if not cfg.neurobench:
        return NeuroBenchRecord(computed=False, reason="--no-neurobench", **base)
    started = _take_started(run, carry.model, samples)
    try:
        if started is not None:
            measured = started.result()
        else:
            x = encode(dataset.x_test[:samples], timesteps, cfg.encoding, seed=0)
            measured = neurobench_metrics(carry.model, x, dataset.y_test[:samples])
    except NeuropruneError as exc:
        run.emit("report", f"NeuroBench metrics not computed: {exc.one_line()}")
        return NeuroBenchRecord(computed=False, reason=exc.one_line(), **base)
    results = measured["results"]
    summary = summarize(carry.model, dataset.input_shape, timesteps)
    section = NeuroBenchRecord(
        computed=True,
        version=measured["version"],
        results=results,
        chip_memory_bits=chip_memory_bits(record),
        chip_weight_bits=chip_weight_bits(record),
        **base,
    )
    section.cross_check = cross_check(results, carry.model, summary, record, samples, timesteps)
    run.emit("report", f"NeuroBench {measured['version']} metrics of the {stage} model")
    return section


@dataclass
class StartedNeuroBench:
    """NeuroBench's child started early (:func:`spawn_neurobench`), the model and sample count
    handed to it (:func:`start_neurobench`; None before), or the error starting it raised
    (said at the report, as a child started there would have raised it)."""

    child: NeuroBenchChild | None = None
    error: NeuropruneError | None = None
    model: Any = None
    samples: int | None = None

    def result(self) -> dict[str, Any]:
        """The child's result (:meth:`NeuroBenchChild.result`), or the start's error raised."""
        if self.error is not None:
            raise self.error
        assert self.child is not None
        return self.child.result()

    def cancel(self) -> None:
        if self.child is not None:
            self.child.cancel()


def spawn_neurobench(run: _Run) -> None:
    """Start NeuroBench's child at the start of a fit run: it imports torch and NeuroBench
    (seconds) on the second core while the run trains, then waits for the model
    (:func:`start_neurobench`). Nothing is started with ``--no-neurobench`` or on a torchrun
    rank that writes nothing; an environment that is not ready is said at the report."""
    if not run.cfg.neurobench or not run.writes or run.neurobench is not None:
        return
    started = StartedNeuroBench()
    try:
        started.child = NeuroBenchChild()
    except NeuropruneError as exc:
        started.error = exc
    run.neurobench = started


def start_neurobench(run: _Run, carry: Carry) -> None:
    """Hand ``carry.model`` to the spawned child now (the fit run calls it once the model is
    final, after the quantize and fit stages), so that it measures while export, simulation
    and the plots run; :func:`neurobench_section` collects it. The samples are those the
    simulation will run (``--samples``, else the whole test split); a report whose simulation
    ran other samples, or another model, measures afresh."""
    started, dataset, cfg = run.neurobench, carry.dataset, run.cfg
    if started is None or started.child is None or started.model is not None:
        return
    samples = min(int(cfg.samples or len(dataset.x_test)), len(dataset.x_test))
    x = encode(dataset.x_test[:samples], int(cfg.timesteps), cfg.encoding, seed=0)
    started.child.measure(carry.model, x, dataset.y_test[:samples])
    started.model, started.samples = carry.model, samples


def cancel_neurobench(run: _Run) -> None:
    """Stop a started NeuroBench child that no report collected (a failed or interrupted
    run)."""
    started, run.neurobench = run.neurobench, None
    if started is not None:
        started.cancel()


def _take_started(run: _Run, model: Any, samples: int) -> StartedNeuroBench | None:
    """The started measurement when it measures ``model`` on ``samples``, else None (and a
    mismatched one cancelled)."""
    started, run.neurobench = run.neurobench, None
    if started is None:
        return None
    if started.error is not None or (started.model is model and started.samples == samples):
        return started
    started.cancel()
    return None


def chip_memory_bits(record: RunRecord) -> int | None:
    """The chip's synaptic memory the fit check placed, in bits (sum over the used cores)."""
    per_core = getattr(record.fit, "per_core", None) if record.fit else None
    if not per_core:
        return None
    return int(sum(core.get("memory_bits", 0) for core in per_core))


def chip_weight_bits(record: RunRecord) -> int | None:
    """Bits of the stored weights alone: kept synapses x the format's weight bits, per layer."""
    if record.quantized is None:
        return None
    total = 0
    for row in record.quantized.layers:
        kept, bits = getattr(row, "nonzero_after", None), getattr(row, "bits", None)
        if kept is None or bits is None:
            return None
        total += int(kept) * int(bits)
    return total


def cross_check(
    results: dict[str, Any],
    model: Any,
    summary: Any,
    record: RunRecord,
    samples: int,
    timesteps: int,
) -> list[NeuroBenchRow]:
    """One row per NeuroBench metric against neuroprune's own count (module docstring)."""
    entries = sum(layer.kernel_entries for layer in summary.layers)
    nonzeros = sum(layer.kernel_nonzeros for layer in summary.layers)
    ours_sparsity = round(1 - nonzeros / entries, SPARSITY_DECIMALS)
    sim = record.simulation
    rows = [
        NeuroBenchRow(
            metric="ConnectionSparsity",
            neurobench=results["ConnectionSparsity"],
            neuroprune=ours_sparsity,
            agree=results["ConnectionSparsity"] == ours_sparsity,
            note=f"zero weight entries / all entries ({nonzeros:,} of {entries:,} kept); "
            f"the chip's unrolled synapse count is {summary.synapses():,}",
        ),
        NeuroBenchRow(
            metric="ParameterCount",
            neurobench=results["ParameterCount"],
            neuroprune=entries,
            agree=results["ParameterCount"] == entries,
            note="NeuroBench counts every parameter, zeros, biases and BatchNorm included; "
            "neuroprune's figure is the weight entries",
        ),
    ]
    synops = results["SynapticOperations"]
    total = synops["Effective_MACs"] + synops["Effective_ACs"]
    ours_ops = sim.synops_per_sample if sim else None
    rows.append(
        NeuroBenchRow(
            metric="SynapticOperations (Effective_MACs + Effective_ACs)",
            neurobench=total,
            neuroprune=ours_ops,
            agree=None if ours_ops is None else abs(total - ours_ops) <= 1e-9 * max(1.0, total),
            note=f"per sample; {synops['Effective_MACs']:,.1f} MACs (non-binary input: the "
            f"direct-encoded first layer) + {synops['Effective_ACs']:,.1f} ACs (spike inputs); "
            "neuroprune: the simulation's nonzero-input x nonzero-weight count"
            + ("" if sim else " (no simulation ran)"),
        )
    )
    spikes = _simulated_spike_density(record, samples, timesteps)
    rows.append(
        NeuroBenchRow(
            metric="ActivationSparsity",
            neurobench=results["ActivationSparsity"],
            neuroprune=None if spikes is None else 1 - spikes,
            agree=None
            if spikes is None
            else abs(results["ActivationSparsity"] - (1 - spikes)) <= RATE_TOLERANCE,
            note="NeuroBench: zero outputs of the model's spiking layers in PyTorch; "
            "neuroprune: 1 - simulated spikes / (T x samples x neurons)",
        )
    )
    accuracy = sim.accuracy if sim else None
    rows.append(
        NeuroBenchRow(
            metric="ClassificationAccuracy",
            neurobench=results["ClassificationAccuracy"],
            neuroprune=accuracy,
            agree=None
            if accuracy is None
            else abs(results["ClassificationAccuracy"] - accuracy) <= 1e-6,
            note="most output spikes (NeuroBench's ChooseMaxCount) against the simulator's "
            "prediction; ties may break differently",
        )
    )
    stored = stored_bytes(model)
    rows.append(
        NeuroBenchRow(
            metric="Footprint (bytes as stored)",
            neurobench=results["Footprint"],
            neuroprune=sum(stored.values()),
            agree=results["Footprint"] == sum(stored.values()),
            note="every parameter and buffer at its stored dtype, zeros included: "
            + ", ".join(f"{name} {size:,} B" for name, size in stored.items())
            + "; pruning and quantization do not shrink it",
        )
    )
    rows.append(
        NeuroBenchRow(
            metric="Footprint (bits) against the chip's synaptic memory",
            neurobench=8 * results["Footprint"],
            neuroprune=chip_memory_bits(record),
            agree=None,
            note="different quantities side by side: NeuroBench's stored bytes x 8 against the "
            "fit check's synaptic memory (kept weights in the chip's format plus the synapse "
            "encoding's index overhead)",
        )
    )
    return rows


def stored_bytes(model: Any) -> dict[str, int]:
    """Bytes the model stores, ``numel x element_size`` grouped as ``"parameters float32"``,
    ``"buffers int32"``, ...: the explanation of NeuroBench's ``Footprint`` (a quantized layer
    keeps its float weights, in float64 where the chip's arithmetic needs it, and an integer
    copy ``weight_int``)."""
    sizes: dict[str, int] = {}
    for kind, tensors in (("parameters", model.parameters()), ("buffers", model.buffers())):
        for tensor in tensors:
            key = f"{kind} {str(tensor.dtype).removeprefix('torch.')}"
            sizes[key] = sizes.get(key, 0) + tensor.numel() * tensor.element_size()
    return sizes


def _simulated_spike_density(record: RunRecord, samples: int, timesteps: int) -> float | None:
    """Simulated spikes / (T x samples x neurons) over the simulated neuron layers, or None."""
    sim = record.simulation
    if sim is None or not sim.layers:
        return None
    spikes = neurons = 0
    for row in sim.layers:
        count, size = getattr(row, "spikes", None), getattr(row, "neurons", None)
        if count is None or size is None:
            return None
        spikes, neurons = spikes + int(count), neurons + int(size)
    return spikes / (timesteps * samples * neurons) if neurons else None
