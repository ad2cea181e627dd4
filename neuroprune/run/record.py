"""The run record, ``report.json``: its typed, versioned schema (:class:`RunRecord`) and the
lenient reading a sweep needs (:class:`SavedRecord`).

Stable keys (docs/architecture.md "report.json: keys other tools rely on") are fields here;
sections may carry more keys (``extra="allow"``); a stage that did not run is ``None``. The
reports (layer L7) read these typed attributes; :class:`neuroprune.run.rundir.RunDir` reads and
writes the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

RECORD_VERSION = 1


class _Section(BaseModel):
    """A report.json section: typed fields, and any further keys a stage writes (``extra``).

    Fields named in ``_optional`` are ones a stage may leave out (and older or partial records
    lack); they are written only when set, so report.json holds the keys its stages wrote.
    Keys are written in a fixed order: the section's other (stable) fields as declared, then
    every further key in the order it was given or assigned, as report.json always had them
    (a row, ``_stable_first`` False: every key in the order given)."""

    model_config = ConfigDict(extra="allow")
    _optional: ClassVar[frozenset[str]] = frozenset()
    _stable_first: ClassVar[bool] = True
    _order: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        model = handler(data)
        if isinstance(data, Mapping) and isinstance(model, _Section):
            model._order = [str(k) for k in data]
        return model

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_") and name not in self._order:
            self._order.append(name)

    @model_serializer(mode="wrap")
    def _written_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        fields = type(self).model_fields if self._stable_first else {}
        stable = [n for n in fields if n not in self._optional]
        later = {n: i for i, n in enumerate(self._order)}
        rest = sorted(
            (k for k in data if k not in stable and (k in later or k not in self._optional)),
            key=lambda k: later.get(k, len(later)),
        )
        return {k: data[k] for k in [*stable, *rest] if k in data}


Number = int | float  # a figure kept as written: an int shows with thousands separators


class LayerRow(_Section):
    """One layer of a stage's network: spiking ``neurons``, physical ``synapses`` of ``dense``
    positions, ``sparsity`` (0..1), fan-in (synapses per neuron); further keys (``kind``)."""

    _optional = frozenset({"max_fan_in", "mean_fan_in"})
    _stable_first = False

    layer: str
    neurons: Number
    synapses: Number
    dense: Number
    sparsity: Number
    max_fan_in: Number | None = None
    mean_fan_in: Number | None = None


class QuantLayerRow(_Section):
    """One quantized layer: ``weight_scale`` (weight per integer step), ``clipped_fraction``
    (0..1 of weights clipped), max and mean absolute weight error; further keys (``bits``...)."""

    _optional = frozenset(
        {"layer", "weight_scale", "clipped_fraction", "max_abs_error", "mean_abs_error"}
    )
    _stable_first = False

    layer: str = ""
    weight_scale: Number | None = None
    clipped_fraction: Number | None = None
    max_abs_error: Number | None = None
    mean_abs_error: Number | None = None


class SimLayerRow(_Section):
    """One simulated neuron layer: spikes per sample, ``rate`` (spikes per neuron and step,
    0..1), ``agreement`` (0..1 of samples with identical counts; None: not compared)."""

    _optional = frozenset({"layer", "spikes_per_sample", "rate", "agreement"})
    _stable_first = False

    layer: str | None = None
    spikes_per_sample: Number | None = None
    rate: Number | None = None
    agreement: Number | None = None


class BudgetRecord(_Section):
    """The synapse budget: ``synapses`` (B), its ``source``; ``binds`` (False: B is at least the
    dense network's synapses, nothing to prune), ``dense_cores`` (cores the dense network needs
    in the allocation) of ``cores_allocated``; ``core_blocks``: one line per layer the projection
    prunes into core blocks (:meth:`neuroprune.chip.capacity.InputBlocks.describe`), and why."""

    _optional = frozenset({"binds", "dense_cores", "cores_allocated", "core_blocks"})

    synapses: int
    source: str
    binds: bool | None = None
    dense_cores: int | None = None
    cores_allocated: int | None = None
    core_blocks: list[str] | None = None


class StageRecord(_Section):
    """dense / pruned / quantized: test accuracy (0..1), physical synapses, spiking neurons;
    ``layers``: one :class:`LayerRow` per layer (the rows the plots draw); ``skipped``: why the
    stage's training did not run (the pruned model is then the dense model)."""

    _optional = frozenset({"layers", "skipped"})

    accuracy: float
    synapses: int
    neurons: int
    max_fan_in: int | None = None
    layers: list[LayerRow] = []
    skipped: str | None = None


class QatRecord(_Section):
    """Quantization-aware fine-tuning: ``decision`` (``kept``, ``reverted``, ``skipped`` or
    ``not run``) and its one-line ``reason`` ("tie: kept PTQ ..." when the validation
    accuracies are equal; ``skipped`` when post-training quantization lost nothing on
    validation, ``val_ptq >= val_float``), the validation accuracies (0..1, of the
    pruned float model, after PTQ and the fine-tune's best epoch) and losses (``val_loss_*``,
    mean cross-entropy of the spike counts in nats: the keep/revert criterion), held-out
    samples and their cut's ``val_digest`` (:class:`ValidationRecord` ``digest``), epochs asked (``--quant-epochs``) and run, the best epoch, and why it ``stopped``
    (every epoch ran, or early stop)."""

    _optional = frozenset(
        {
            "decision",
            "reason",
            "val_float",
            "val_ptq",
            "val_qat",
            "val_loss_float",
            "val_loss_ptq",
            "val_loss_qat",
            "val_samples",
            "val_digest",
            "epochs_asked",
            "epochs_run",
            "best_epoch",
            "stopped",
        }
    )

    decision: str | None = None
    reason: str | None = None
    val_float: float | None = None
    val_ptq: float | None = None
    val_qat: float | None = None
    val_loss_float: float | None = None
    val_loss_ptq: float | None = None
    val_loss_qat: float | None = None
    val_samples: int | None = None
    val_digest: str | None = None
    epochs_asked: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    stopped: str | None = None

    def line(self) -> str:
        """One line for the console and log.txt: epochs run of asked, why it stopped, the
        validation samples and the decision's reason ("tie: kept PTQ ..." on a tie)."""
        asked = "?" if self.epochs_asked is None else self.epochs_asked
        if self.decision in (None, "not run"):
            return f"fine-tuning: 0 of {asked} epochs ran; {self.reason or 'kept PTQ'}"
        if self.decision == "skipped":
            return (
                f"fine-tuning: 0 of {asked} epochs ran; on {self.val_samples} validation "
                f"samples: {self.reason}"
            )
        return (
            f"fine-tuning: {self.epochs_run} of {asked} epochs ran ({self.stopped}); "
            f"on {self.val_samples} validation samples: {self.reason or self.decision}"
        )


class ValidationRecord(_Section):
    """The validation part (:mod:`neuroprune.data.split`): cut from the training split before
    any training and never trained on; every keep/revert and early-stop decision reads it.
    ``samples`` held out, ``train_samples`` left to train on, the cut's ``seed``, ``rule`` and
    ``digest`` (sha256 of the held-out row numbers, 16 hex digits: equal on every resume and
    torchrun rank of the run)."""

    samples: int
    train_samples: int
    seed: int
    rule: str
    digest: str


class QuantizedRecord(StageRecord):
    """The quantized stage: its weight ``format``, test accuracy (0..1) of the float model,
    after PTQ and after fine-tuning, the chip ``arithmetic`` of its neurons (None: float
    neurons), fine-tuning, one :class:`QuantLayerRow` per layer; ``stored_layers``: one
    :class:`LayerRow` per layer counted as the chip stores it (nonzero integers after
    quantization: a weight rounded to zero is no synapse)."""

    _optional = StageRecord._optional | {
        "accuracy_float",
        "accuracy_ptq",
        "accuracy_qat",
        "arithmetic",
        "qat",
        "notes",
        "stored_layers",
    }

    format: str
    accuracy_float: float | None = None
    accuracy_ptq: float | None = None
    accuracy_qat: float | None = None
    arithmetic: str | None = None
    qat: QatRecord = QatRecord()
    layers: list[QuantLayerRow] = []  # type: ignore[assignment]  # a stage's own rows
    notes: list[str] = []
    stored_layers: list[LayerRow] = []


class ViolationRecord(_Section):
    """One broken fit rule: the layer, the chip's limit and the network's value, a hint."""

    rule: str
    layer: str
    limit: int | float | str  # a neuron_model finding names models (e.g. "IF", "LIF")
    actual: int | float | str
    hint: str


class CoresSetByRecord(_Section):
    """The limit that sets the core count (:func:`neuroprune.fit.rules.core_count_limit`):
    ``resource`` (``neurons``, ``input_axons``, ``synapse_memory`` or ``fan_out``), the cores
    that resource alone needs (``cores``) and a sentence (``detail``)."""

    resource: str
    cores: int
    detail: str


class FitRecord(_Section):
    """The fit check (:class:`neuroprune.fit.report.FitReport`): verdict, cores used of
    ``cores_allocated``, chips needed, violations, ``utilisation`` (resource -> 0..1 of the
    cores used); ``chip``, ``synapses`` and ``neurons`` of the network checked; ``copies``
    per layer where the chip copies neurons for fan-out."""

    _optional = frozenset(
        {"chip", "cores_allocated", "synapses", "neurons", "utilisation", "cores_set_by", "copies"}
    )

    fits: bool
    cores: int
    chips: int
    violations: list[ViolationRecord]
    chip: str | None = None
    cores_allocated: int | None = None
    synapses: int | None = None
    neurons: int | None = None
    utilisation: dict[str, float] = {}
    cores_set_by: CoresSetByRecord | None = None
    copies: dict[str, int] | None = None
    """Layer -> copy neurons in its cores where fan-out is met by copies in the source core
    (TrueNorth: a neuron drives one axon, so it is copied once per further axon it drives);
    absent on chips without copies."""


class FloatDriftRecord(_Section):
    """The same weights on float neurons vs the chip run: per layer the fraction (0..1) of
    samples with identical counts, prediction agreement and accuracy (0..1)."""

    _optional = frozenset({"prediction_agreement", "accuracy"})

    layer_agreement: list[float]
    prediction_agreement: float | None = None
    accuracy: float | None = None


class VerificationRecord(_Section):
    """What a simulation verified (:mod:`neuroprune.sim.verification`): ``kind``
    (``chip-exact``, ``float stand-in`` or ``vendor simulator``), what ran (``detail``) and what
    the kind proves (``proves``)."""

    _optional = frozenset({"proves"})

    kind: str
    detail: str
    proves: str | None = None


class SimulationRecord(_Section):
    """The simulation (:class:`neuroprune.sim.result.SimulationResult`): agreements are
    fractions (0..1), ``seconds_per_sample`` in s, ``energy_per_sample_j`` in J (what it sums:
    ``energy_basis``; the profile's fields without a figure: ``energy_missing``); ``layers``:
    one :class:`SimLayerRow` per neuron layer; ``verification``: the kind every agreement
    figure carries; ``model_accuracy``: the compared model's accuracy on the same samples."""

    _optional = frozenset(
        {
            "verification",
            "model_accuracy",
            "mode",
            "accuracy",
            "agreement_source",
            "model_agreement",
            "model_count_agreement",
            "model_prediction_agreement",
            "float_drift",
            "notes",
            "synops_per_sample",
            "energy_per_sample_j",
            "energy_basis",
            "energy_missing",
            "layers",
        }
    )

    backend: str
    samples: int
    spike_agreement: float | None = None
    prediction_agreement: float | None = None
    seconds_per_sample: float | None = None
    verification: VerificationRecord | None = None
    model_accuracy: float | None = None
    mode: str | None = None
    accuracy: float | None = None
    agreement_source: str | None = None
    model_agreement: list[float] | None = None
    model_count_agreement: list[float] | None = None
    model_prediction_agreement: float | None = None
    float_drift: FloatDriftRecord | None = None
    notes: list[str] = []
    synops_per_sample: int | float | None = None
    energy_per_sample_j: float | None = None
    energy_basis: str | None = None
    energy_missing: list[str] = []
    layers: list[SimLayerRow] = []


class ArtifactsRecord(_Section):
    nir: str | None = None
    onnx: str | None = None
    netx: str | None = None  # lava-dl netx file (Loihi, Loihi 2)
    pynn: str | None = None  # PyNN script for SpiNNaker (its .npz weights beside it)


class DerivationRecord(_Section):
    """A run made from another run (``neuroprune quantize RUN --chip OTHER``): the source
    ``run`` (its path) and the model files ``taken`` from it as they are; every later stage
    ran for this run's own chip."""

    run: str
    taken: list[str]


class ErrorRecord(_Section):
    """A stage that failed after the run started (the run still wrote its record)."""

    stage: str
    kind: str
    message: str


class WarningRecord(_Section):
    """One warning about a run (:func:`neuroprune.run.warnings.run_warnings`): its ``kind`` (a
    key of :data:`neuroprune.run.warnings.WARNING_KINDS`), the ``stage`` it concerns and a
    one-line ``message`` naming the figures."""

    kind: str
    stage: str
    message: str


class AccuracyGateRecord(_Section):
    """``--max-accuracy-drop``: the most test-accuracy points (``max_drop``) the deployed model
    may lose against the pruned float model, the loss measured (``drop``, points), whether it
    ``passed``, and the one-line ``reason`` when not."""

    max_drop: float
    drop: float | None = None
    passed: bool = True
    reason: str | None = None


class ArtifactChecksum(_Section):
    """One file of the run as it was when the report was written: ``sha256`` (hex) and size in
    ``bytes``."""

    sha256: str
    bytes: int


class DeploymentRecord(_Section):
    """What a deployment engineer needs to trust and repeat the run: the ``command`` line that
    made it (only the options given on it), the ``later`` commands that rebuilt it
    (``quantize RUN``, ``simulate RUN``), every setting ``resolved`` (a default shows as the
    value it took, never None), the ``provenance`` (package versions, Python, the profile's id,
    path and sha256) and the run's files with their checksums (``artifacts``: name ->
    :class:`ArtifactChecksum`; report.json and report.md cannot hold their own)."""

    _optional = frozenset({"command", "later", "resolved", "provenance", "artifacts"})

    command: str | None = None
    later: list[str] = []
    resolved: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    artifacts: dict[str, ArtifactChecksum] = {}


class NeuroBenchRow(_Section):
    """One cross-check of a NeuroBench metric against neuroprune's own count of the same
    thing: the ``metric``, NeuroBench's value, neuroprune's, whether they ``agree`` (to the
    rounding NeuroBench applies), and the ``note`` that explains a difference in definition."""

    _stable_first = False
    metric: str
    neurobench: Number | None = None
    neuroprune: Number | None = None
    agree: bool | None = None
    note: str = ""


class NeuroBenchRecord(_Section):
    """report.json ``neurobench``: NeuroBench 2.3.0's metrics of the run's final (quantized)
    model on the simulated test samples (:mod:`neuroprune.pipeline.neurobench`), measured by the
    ``neurobench`` package in its own environment. ``computed`` False means they were not
    measured and ``reason`` says why (never estimated). ``results`` is NeuroBench's dict as it
    returned it (``Footprint`` in bytes, ``SynapticOperations`` per sample); ``chip_memory_bits``
    the chip's synaptic memory the fit check used, ``chip_weight_bits`` the stored weights'
    bits; ``cross_check`` one :class:`NeuroBenchRow` per metric."""

    computed: bool
    reason: str | None = None
    version: str | None = None
    model: str | None = None
    samples: int | None = None
    timesteps: int | None = None
    results: dict[str, Any] = {}
    chip_memory_bits: int | None = None
    chip_weight_bits: int | None = None
    cross_check: list[NeuroBenchRow] = []


class NeuronCandidateRecord(_Section):
    """One neuron model tried by ``--neuron auto``: its deployed model's validation accuracy
    (``val_deployed``, 0..1: after fine-tuning when the QAT was kept, else after post-training
    quantization) with the two it was chosen from (``val_ptq``, ``val_qat``), the QAT
    ``decision``, and its test accuracies (0..1, for the record only: never used to choose)."""

    _optional = frozenset({"val_qat", "qat_decision", "test_pruned", "test_deployed"})

    val_deployed: float | None = None
    val_ptq: float | None = None
    val_qat: float | None = None
    qat_decision: str | None = None
    test_pruned: float | None = None
    test_deployed: float | None = None


class NeuronChoiceRecord(_Section):
    """The candidates a fit run chose between on validation: the neuron model (``--neuron
    auto``) and, where the chip's finest weight mapping could take a pruned readout, the pruning
    structure (``ordinary`` or ``readout-block``, :mod:`neuroprune.pipeline.neuron_choice`).
    ``asked``: the ``--neuron`` option; ``chosen``: the neuron model the run kept;
    ``structure``: its pruning structure (only where more than one was tried, with
    ``readout_block``: the block tried, in words); ``candidates`` (candidate name ->
    :class:`NeuronCandidateRecord`: ``lif``, ``lif+readout-block`` under ``--neuron auto``,
    else ``ordinary``, ``readout-block``), those the chip does not run (``excluded``: name ->
    why) and the ``rule`` that chose (one line)."""

    _optional = frozenset({"excluded", "structure", "readout_block"})

    asked: str = "auto"
    chosen: str
    rule: str
    candidates: dict[str, NeuronCandidateRecord] = {}
    excluded: dict[str, str] = {}
    structure: str | None = None
    readout_block: str | None = None

    @property
    def topic(self) -> str:
        """What was chosen, for the line's label: ``neuron`` under ``--neuron auto``, else
        ``pruning`` (the structure only)."""
        return "neuron" if self.asked == "auto" else "pruning"

    @property
    def chosen_candidate(self) -> str:
        """The chosen candidate's name in ``candidates`` (``lif``, ``if+readout-block``;
        ``ordinary`` or ``readout-block`` where the neuron was named)."""
        if self.structure is None:
            return self.chosen
        if self.asked != "auto":
            return self.structure
        return self.chosen if self.structure == "ordinary" else f"{self.chosen}+{self.structure}"

    def line(self) -> str:
        """One line: which neuron (and pruning structure), and why (the console summary,
        log.txt, report.md)."""
        if self.structure is None:
            return f"{self.chosen} chosen by --neuron {self.asked}: {self.rule}"
        if self.asked == "auto":
            return (
                f"{self.chosen} with {self.structure} pruning chosen by --neuron auto: {self.rule}"
            )
        return f"{self.structure} pruning chosen for {self.chosen}: {self.rule}"


class RunRecord(_Section):
    """``report.json`` (docs/architecture.md "report.json: keys other tools rely on");
    ``chip_name`` (the profile's name), ``counting`` (the synapse counting convention) and
    ``plots`` (paths relative to the run) are written by the run, absent from older records;
    ``warnings`` (:class:`WarningRecord`), ``accuracy_gate`` (``--max-accuracy-drop``) and
    ``validation`` (:class:`ValidationRecord`) are written by runs that know them;
    ``derived_from`` only by a run derived from another (:class:`DerivationRecord`);
    ``deployment`` (:class:`DeploymentRecord`): command line, resolved settings, provenance and
    checksums."""

    _optional = frozenset(
        {
            "chip_name",
            "counting",
            "plots",
            "warnings",
            "accuracy_gate",
            "validation",
            "derived_from",
            "deployment",
            "neurobench",
            "neuron_choice",
        }
    )

    record_version: int = RECORD_VERSION
    chip: str
    budget: BudgetRecord
    dense: StageRecord | None = None
    pruned: StageRecord | None = None
    quantized: QuantizedRecord | None = None
    fit: FitRecord | None = None
    simulation: SimulationRecord | None = None
    artifacts: ArtifactsRecord = ArtifactsRecord()
    stages_not_run: list[str] = []
    errors: list[ErrorRecord] = []
    chip_name: str | None = None
    counting: str | None = None
    plots: list[str] = []
    warnings: list[WarningRecord] = []
    accuracy_gate: AccuracyGateRecord | None = None
    validation: ValidationRecord | None = None
    derived_from: DerivationRecord | None = None
    deployment: DeploymentRecord | None = None
    neurobench: NeuroBenchRecord | None = None
    neuron_choice: NeuronChoiceRecord | None = None  # --neuron auto, pruning structure: choice

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what ``report.json`` holds and ``--json`` prints)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# A saved record as a sweep reads it


class SavedStage(_Section):
    """A stage (or the budget) of a saved, possibly partial or older report.json: test
    accuracy (0..1) and physical synapses, each optional."""

    accuracy: float | None = None
    synapses: int | None = None


class SavedFit(_Section):
    """The fit section of a saved record: verdict, cores used, chips needed (each optional)."""

    fits: bool | None = None
    cores: int | None = None
    chips: int | None = None


class SavedSimulation(_Section):
    """The simulation section of a saved record: energy per sample in J (optional)."""

    energy_per_sample_j: float | None = None


class SavedRecord(_Section):
    """report.json as saved, read leniently: the fields a sweep reads, every one optional.

    A sweep resumes from trials whose record may be partial or older than :class:`RunRecord`
    (a run stopped after the fit stage; a record without ``budget``), so
    :meth:`~neuroprune.run.rundir.RunDir.saved_record` cannot demand the full schema; it still
    types what it reads. ``fit`` is the resume rule's stage: a trial whose ``fit`` is None has
    not finished (:func:`neuroprune.sweep.trials.finished_report`)."""

    config: dict[str, Any] | None = None
    budget: SavedStage | None = None
    dense: SavedStage | None = None
    pruned: SavedStage | None = None
    quantized: SavedStage | None = None
    fit: SavedFit | None = None
    simulation: SavedSimulation | None = None
