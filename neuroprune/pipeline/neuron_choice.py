"""The candidates of a fit run, chosen on validation: the neuron model (``fit --neuron auto``) and
the pruning structure (ordinary, or with the readout block of the chip's finest weight mapping).

The candidates are the ``--neuron`` names of the registry
(:data:`neuroprune.models.registry.NEURON_MODELS`) whose run passes the preflight on the chip
(its profile's ``neuron.models`` and, where it declares one, its neuron arithmetic decide:
TrueNorth runs LIF and IF, Speck IF only). Each candidate runs the stages that depend on the
neuron (dense, prune, quantize) in a folder of its own inside the run's staging folder
(:data:`CANDIDATES`); the one whose *deployed* model scores best on the validation part is kept:

    val_deployed = val_qat if the QAT was kept (keep/revert rule) else val_ptq

(validation accuracies, 0..1, on the part held out before training; the test split is never
read to choose). A tie keeps the registry's first name (LIF, the default). Only the chosen
candidate's model files move into the run; the folder of candidates is removed before the run
is published, so a run never mixes candidates.

The pruning structure: where the chip's quantizer and the network make
:meth:`neuroprune.chip.capacity.CapacityModel.finest_mapping_blocks` non-empty (TrueNorth: the
readout's inputs times 4 axons do not fit one core but its neurons do; the conv on digits) and
the budget binds, each neuron is pruned twice from its one dense model: the ordinary way, and
with one block of ``K = axons per core // 4`` inputs shared by the readout's neurons
(:data:`READOUT_BLOCK`), so that the readout may take the 4-axon mapping. Both are quantized and
the same rule keeps one: a candidate is then a (neuron, structure) pair, and a tie keeps the
ordinary pruning (docs/benchmarks.md, "TrueNorth LIF on conv: a readout pruned for the 4-axon
mapping": deployed - pruned float -2.3 -> -1.2 on three seeds). This applies with a named
neuron too (``--neuron lif``, the default); under ``--resume`` or ``--nproc`` > 1 it is not
made (the ordinary pruning only, said in the log).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from neuroprune.core.errors import ConfigError, NeuropruneError
from neuroprune.models.registry import AUTO_NEURON, NEURON_MODELS
from neuroprune.pipeline.config import RunConfig
from neuroprune.run.record import NeuronCandidateRecord, NeuronChoiceRecord, QuantizedRecord

CANDIDATES = ".neuron-candidates"
"""The folder inside the staging folder where each candidate's stages write (removed before the
run is published)."""
NEURON_STAGES = ("dense", "prune", "quantize")
"""The stages whose result depends on the candidate: run once per candidate (dense once per
neuron: its structures are pruned from the same dense model)."""
ORDINARY, READOUT_BLOCK = "ordinary", "readout-block"
"""The pruning structures: the run's own budget, or the readout pruned into the block of the
chip's finest weight mapping (:meth:`CapacityModel.finest_mapping_blocks`)."""


def is_auto(cfg: RunConfig) -> bool:
    """Whether ``cfg`` asks for the neuron model to be chosen (``--neuron auto``)."""
    return cfg.neuron == AUTO_NEURON


def check_auto(cfg: RunConfig, *, detection: bool = False) -> None:
    """Refuse (exit 2, before anything is written) what ``--neuron auto`` cannot do: continue a
    partial run (``--resume``: the candidates are not kept), train under torchrun (``--nproc``)
    or choose for a network read from a NIR file or for the detector (``detection``: their
    neurons are given)."""
    refusals = [
        (
            cfg.resume,
            "resume",
            cfg.resume,
            "--resume continues one neuron's stages; the candidates of --neuron auto are not kept",
            "Resume with the neuron the run chose (report.json neuron_choice.chosen, "
            "e.g. --neuron if), or run again without --resume.",
        ),
        (
            cfg.nproc > 1,
            "nproc",
            cfg.nproc,
            "--neuron auto trains its candidates in one process",
            "Use --nproc 1, or name the neuron (--neuron lif or --neuron if).",
        ),
        (
            bool(cfg.from_nir),
            "from_nir",
            cfg.from_nir,
            "a network read from a NIR file has its own neurons",
            "Drop --neuron auto.",
        ),
        (
            detection,
            "model",
            cfg.model,
            "the detector trains its own neurons; --neuron auto chooses for mlp, conv and vgg",
            "Drop --neuron auto.",
        ),
    ]
    for refused, field, value, message, fix in refusals:
        if refused:
            raise ConfigError(message, where="--neuron auto", field=field, value=value, fix=fix)


@dataclass(frozen=True)
class Candidates:
    """The plans (``neuron -> preflight plan``, in registry order) of the neurons the chip
    runs, and why each other neuron was left out (``excluded``: neuron -> one line).
    ``blocks``: neuron -> the readout block of :data:`READOUT_BLOCK` (layer name ->
    ``InputBlocks``; absent where the structure choice does not apply); ``auto``: whether the
    neuron is chosen (``--neuron auto``); ``note``: why the structure choice was not made
    where it would apply (``--resume``, ``--nproc``), else None."""

    plans: dict[str, Any]
    excluded: dict[str, str]
    blocks: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    auto: bool = True
    note: str | None = None

    @property
    def chooses(self) -> bool:
        """Whether the run has anything to try: ``--neuron auto``, or a readout block."""
        return self.auto or bool(self.blocks)

    def structures(self, neuron: str) -> tuple[str, ...]:
        """The pruning structures tried for ``neuron``, the ordinary one first."""
        return (ORDINARY, READOUT_BLOCK) if self.blocks.get(neuron) else (ORDINARY,)

    def name(self, neuron: str, structure: str) -> str:
        """The candidate's name (its folder, its events, report.json): the neuron under
        ``--neuron auto`` (``lif``; ``lif+readout-block``), else the structure."""
        if not self.auto:
            return structure
        return neuron if structure == ORDINARY else f"{neuron}+{structure}"


def plan_candidates(cfg: RunConfig, preflight) -> Candidates:
    """The run's candidates: the neurons (:func:`candidates` under ``--neuron auto``, else the
    one ``cfg`` names, preflighted by ``preflight``) and, per neuron, the readout block
    (:func:`readout_block`). Under ``--resume`` or ``--nproc`` > 1 (a named neuron: ``auto``
    refuses them) no block is tried and ``note`` says why."""
    auto = is_auto(cfg)
    found = candidates(cfg, preflight) if auto else Candidates({cfg.neuron: preflight(cfg)}, {})
    blocks = {n: b for n, plan in found.plans.items() if (b := readout_block(plan))}
    note = None
    if blocks and (cfg.resume or cfg.nproc > 1):
        why = "--resume continues one run" if cfg.resume else "--nproc trains in one group"
        note = (
            f"the readout pruned for the chip's finest weight mapping is not tried ({why}): "
            "ordinary pruning only"
        )
        blocks = {}
    return dataclasses.replace(found, blocks=blocks, auto=auto, note=note)


def readout_block(plan) -> dict[str, Any]:
    """The readout block of the chip's finest weight mapping for ``plan``'s dense network
    (:meth:`neuroprune.chip.capacity.CapacityModel.finest_mapping_blocks`), or ``{}`` where it
    does not apply or the budget does not bind (nothing is pruned)."""
    from neuroprune.chip.capacity import capacity_model  # deferred: imports scipy
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch

    if not plan.budget.binds:
        return {}
    summary = summarize(plan.model, plan.dataset.input_shape, plan.cfg.timesteps)
    return capacity_model(plan.profile).finest_mapping_blocks(summary)


def with_block(plan, blocks: dict[str, Any]):
    """``plan`` whose budget also prunes ``blocks`` (they replace the budget's blocks of the
    same layers)."""
    budget = dataclasses.replace(plan.budget, input_blocks={**plan.budget.input_blocks, **blocks})
    return dataclasses.replace(plan, budget=budget)


def candidates(cfg: RunConfig, preflight) -> Candidates:
    """Preflight ``cfg`` once per registry neuron (``preflight``: ``RunConfig -> plan``); a
    neuron the chip does not run (an error on the field ``neuron``) is left out with its
    reason. Every other error, and a chip that runs none of them, is raised as it is (the
    first neuron's refusal)."""
    plans: dict[str, Any] = {}
    excluded: dict[str, str] = {}
    refusals: list[NeuropruneError] = []
    for neuron in NEURON_MODELS:
        try:
            plans[neuron] = preflight(cfg.replace(neuron=neuron))
        except NeuropruneError as error:
            if error.field != "neuron":
                raise
            excluded[neuron] = error.message
            refusals.append(error)
    if not plans:
        raise refusals[0]
    return Candidates(plans, excluded)


def deployed_validation(quantized: QuantizedRecord | None) -> float | None:
    """Validation accuracy (0..1) of the model the run deploys: after fine-tuning when the QAT
    was kept, else after post-training quantization (None when not measured)."""
    if quantized is None:
        return None
    qat = quantized.qat
    return qat.val_qat if qat.decision == "kept" else qat.val_ptq


def candidate_record(record) -> NeuronCandidateRecord:
    """What report.json keeps of one candidate's run record (its validation figures; its test
    accuracies for the reader, never used to choose)."""
    quantized = record.quantized
    qat = quantized.qat if quantized is not None else None
    deployed = None
    if quantized is not None:
        deployed = quantized.accuracy_qat if qat.decision == "kept" else quantized.accuracy_ptq
    return NeuronCandidateRecord(
        val_deployed=deployed_validation(quantized),
        val_ptq=qat.val_ptq if qat is not None else None,
        val_qat=qat.val_qat if qat is not None else None,
        qat_decision=qat.decision if qat is not None else None,
        test_pruned=record.pruned.accuracy if record.pruned is not None else None,
        test_deployed=deployed,
    )


def choose(
    scores: dict[str, NeuronCandidateRecord],
    excluded: dict[str, str],
    pairs: dict[str, tuple[str, str]] | None = None,
    *,
    asked: str = AUTO_NEURON,
    block: str | None = None,
) -> tuple[str, NeuronChoiceRecord]:
    """The candidate with the best ``val_deployed`` (a tie, or no figure, keeps the earliest:
    registry order, the ordinary pruning before the readout block, so LIF pruned the ordinary
    way, the default), with the rule that chose it in one line. ``pairs``: candidate name ->
    (neuron, structure) (default: each name is a neuron, pruned the ordinary way); ``asked``:
    the ``--neuron`` option; ``block``: the readout block tried, in words. Returns the chosen
    candidate's name and the record (``chosen``: its neuron; ``structure``: its pruning, where
    more than one was tried)."""
    order = list(scores)
    default = order[0]
    pairs = pairs or {name: (name, ORDINARY) for name in order}

    def key(name: str) -> tuple[float, int]:
        value = scores[name].val_deployed
        return (-1.0 if value is None else value, -order.index(name))

    chosen = max(order, key=key)
    neuron, structure = pairs[chosen]
    structures = {s for _, s in pairs.values()} != {ORDINARY}
    return chosen, NeuronChoiceRecord(
        asked=asked,
        chosen=neuron,
        rule=_rule(chosen, default, scores, excluded),
        candidates=scores,
        **({"excluded": excluded} if excluded else {}),
        **({"structure": structure, "readout_block": block} if structures else {}),
    )


def only_choice(neuron: str, excluded: dict[str, str], chip: str) -> NeuronChoiceRecord:
    """The record when the chip runs one candidate only: that one, said in one line."""
    left_out = ", ".join(sorted(excluded))
    return NeuronChoiceRecord(
        chosen=neuron,
        rule=f"{chip} runs only {neuron} of {', '.join(NEURON_MODELS)} "
        f"({left_out} left out); nothing to choose",
        excluded=excluded,
    )


def _rule(
    chosen: str,
    default: str,
    scores: dict[str, NeuronCandidateRecord],
    excluded: dict[str, str],
) -> str:
    figures = ", ".join(f"{name} {_pct(score.val_deployed)}" for name, score in scores.items())
    best = scores[chosen].val_deployed
    tied = [n for n, s in scores.items() if s.val_deployed == best and n != chosen]
    if tied and chosen == default:
        why = f"tie on validation ({figures}): kept {default}, the default"
    elif tied:
        why = (
            f"tie on validation between {', '.join([chosen, *tied])} ({figures}): kept "
            f"{chosen}, tried first (neurons in registry order, the ordinary pruning before "
            "the readout block)"
        )
    else:
        why = f"best deployed model on validation ({figures})"
    if excluded:
        why += f"; {', '.join(sorted(excluded))} not run by the chip"
    return why


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"
