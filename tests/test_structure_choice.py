"""fit on a chip whose finest weight mapping a pruned readout could take (TrueNorth: 4 axons per
input where <= 64 inputs stay used, CapacityModel.finest_mapping_blocks): the readout is also
pruned into that block from the same dense model, both are quantized, and the candidate whose
deployed model validates best is kept (a tie: the ordinary pruning). Only its files are in the
run; the test split never chooses."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner
from fit_args import neuron_of, tiny_fit_args

from neuroprune.cli.app import main
from neuroprune.pipeline.neuron_choice import choose
from neuroprune.pipeline.stages import quantize as quantize_stage
from neuroprune.run.record import NeuronCandidateRecord
from neuroprune.run.rundir import RunDir

BLOCK_INPUTS = 256 // 4  # TrueNorth: 256 axons per core, 4 axons per input (vendor_notes.md)
HIDDEN = 128  # readout inputs: more than the block holds, so the block applies
SPARSITY = "0.5"  # the budget binds (one whole chip holds the dense mlp)


def _readout_inputs(model: torch.nn.Module) -> int:
    """Inputs of the readout (the last linear layer) with a nonzero weight, counted from the
    weights."""
    readout = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return int((readout.weight.detach() != 0).any(dim=0).sum())


def _structure_of(model: torch.nn.Module) -> str:
    """``readout-block`` when the readout uses no more inputs than the block holds (the ordinary
    pruning keeps about half of its 128 x 10 weights: nearly every input), else ``ordinary``."""
    return "readout-block" if _readout_inputs(model) <= BLOCK_INPUTS else "ordinary"


def _forced(monkeypatch, validation: dict[tuple[str, str], float]) -> None:
    """Every quantization reports ``validation[(neuron, structure)]`` as its validation figure
    after PTQ (QAT reverted), and the opposite order on the test split (``1 - figure``): a
    choice that read the test split would pick the other candidate."""
    original = quantize_stage.quantize_pruned

    def forced(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        value = validation[(neuron_of(model), _structure_of(model))]
        result.qat.update(val_ptq=value, val_qat=value - 0.01, decision="reverted")
        return dataclasses.replace(result, accuracy_ptq=1 - value, accuracy_qat=1 - value)

    monkeypatch.setattr(quantize_stage, "quantize_pruned", forced)


def _fit(tmp_path, *options: str):
    args = ["fit", *options, "--backend", "reference", "--sparsity", SPARSITY]
    args += [*tiny_fit_args(hidden=HIDDEN), "--out", str(tmp_path), "--name", "run"]
    return CliRunner().invoke(main, args, env={"COLUMNS": "300"})


def _only_the_run_is_left(tmp_path) -> None:
    run = tmp_path / "run"
    assert not [p for p in run.rglob("*") if "candidate" in p.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging left


@pytest.mark.parametrize(
    ("ordinary", "block", "chosen", "rule"),
    [
        (0.50, 0.75, "readout-block", "best deployed model on validation"),
        (0.75, 0.50, "ordinary", "best deployed model on validation"),
        (0.60, 0.60, "ordinary", "tie on validation"),
    ],
)
def test_the_structure_that_validates_best_is_kept_with_its_files_only(
    tmp_path, monkeypatch, ordinary, block, chosen, rule
):
    _forced(monkeypatch, {("lif", "ordinary"): ordinary, ("lif", "readout-block"): block})
    result = _fit(tmp_path, "--chip", "truenorth")
    assert result.exit_code in (0, 1), result.output
    run = tmp_path / "run"
    choice = json.loads((run / "report.json").read_text())["neuron_choice"]
    assert choice["asked"] == "lif" and choice["chosen"] == "lif"
    assert choice["structure"] == chosen and rule in choice["rule"]
    assert {n: c["val_deployed"] for n, c in choice["candidates"].items()} == {
        "ordinary": ordinary,
        "readout-block": block,
    }
    assert f"{BLOCK_INPUTS} inputs" in choice["readout_block"]
    for stage in ("pruned", "quantized"):  # the chosen candidate's models, recounted
        model, _ = RunDir(run).load_model(stage)
        assert _structure_of(model) == chosen, stage
    _only_the_run_is_left(tmp_path)
    line = f"pruning: {chosen} pruning chosen for lif: {rule}"
    assert line in result.output and line in (run / "log.txt").read_text()
    assert f"Pruning: **{chosen}**, chosen for lif" in (run / "report.md").read_text()
    log = (run / "log.txt").read_text()
    assert "prune (ordinary):" in log and "quantize (readout-block):" in log
    assert log.count("dense: training") == 1  # one dense model for both structures


def test_auto_chooses_among_neuron_and_structure_pairs(tmp_path, monkeypatch):
    figures = {
        ("lif", "ordinary"): 0.6,
        ("lif", "readout-block"): 0.5,
        ("if", "ordinary"): 0.55,
        ("if", "readout-block"): 0.7,
    }
    _forced(monkeypatch, figures)
    result = _fit(tmp_path, "--chip", "truenorth", "--neuron", "auto")
    assert result.exit_code in (0, 1), result.output
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    choice = report["neuron_choice"]
    assert (choice["chosen"], choice["structure"]) == ("if", "readout-block")
    assert list(choice["candidates"]) == ["lif", "lif+readout-block", "if", "if+readout-block"]
    assert report["config"]["neuron"] == "if"
    for stage in ("dense", "pruned", "quantized"):
        model, _ = RunDir(run).load_model(stage)
        assert neuron_of(model) == "if", stage
    model, _ = RunDir(run).load_model("pruned")
    assert _structure_of(model) == "readout-block"
    _only_the_run_is_left(tmp_path)
    assert "neuron: if with readout-block pruning chosen by --neuron auto" in result.output
    log = (run / "log.txt").read_text()
    assert log.count("training mlp") == 2  # one dense model per neuron
    assert "prune (if+readout-block):" in log


def test_resume_prunes_the_ordinary_way_and_says_so(tmp_path):
    result = _fit(tmp_path, "--chip", "truenorth", "--resume")
    assert result.exit_code in (0, 1), result.output
    run = tmp_path / "run"
    assert "neuron_choice" not in json.loads((run / "report.json").read_text())
    assert "readout pruned for the chip's finest weight mapping is not tried" in result.output
    model, _ = RunDir(run).load_model("pruned")
    assert _readout_inputs(model) > BLOCK_INPUTS


def test_resume_after_a_chosen_block_does_not_reuse_its_pruned_model(tmp_path, monkeypatch):
    """A run that chose the readout block, resumed: --resume prunes the ordinary way, so the
    block-pruned pruned.pt (its inputs name the core blocks it was pruned into) is not reused
    under the ordinary structure's label."""
    _forced(monkeypatch, {("lif", "ordinary"): 0.5, ("lif", "readout-block"): 0.75})
    first = _fit(tmp_path, "--chip", "truenorth")
    assert first.exit_code in (0, 1), first.output
    model, _ = RunDir(tmp_path / "run").load_model("pruned")
    assert _structure_of(model) == "readout-block"
    again = _fit(tmp_path, "--chip", "truenorth", "--resume")
    assert again.exit_code in (0, 1), again.output
    assert "rerunning, pruned.pt was made with other options: core_blocks" in again.output
    assert "reused pruned.pt" not in again.output
    model, _ = RunDir(tmp_path / "run").load_model("pruned")
    assert _readout_inputs(model) > BLOCK_INPUTS


def test_a_chip_without_a_finer_mapping_runs_as_before(tmp_path):
    result = _fit(tmp_path, "--chip", "loihi")
    assert result.exit_code in (0, 1), result.output
    run = tmp_path / "run"
    assert "neuron_choice" not in json.loads((run / "report.json").read_text())
    assert "prune (" not in (run / "log.txt").read_text()
    _only_the_run_is_left(tmp_path)


def test_a_tie_that_leaves_out_the_default_keeps_the_candidate_tried_first():
    figures = {"lif": 0.5, "lif+readout-block": 0.6, "if": 0.7, "if+readout-block": 0.7}
    pairs = {name: (name.split("+")[0], name.partition("+")[2] or "ordinary") for name in figures}
    scores = {name: NeuronCandidateRecord(val_deployed=value) for name, value in figures.items()}
    chosen, record = choose(scores, {}, pairs)
    assert chosen == "if" and (record.chosen, record.structure) == ("if", "ordinary")
    assert "kept if, tried first" in record.rule and "default" not in record.rule
