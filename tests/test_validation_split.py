"""Honest validation (issue 25, item 5): the validation part is cut from the training split
before any training, no stage trains on it, every keep/revert and early-stop decision reads it,
a tie keeps the simpler PTQ model and says so, and the epochs that ran are reported.

The end-to-end tests record the dataset every ``train`` call of a tiny ``neuroprune fit``
receives and look the validation rows up in them by content; the same check is shown failing on
a deliberately leaky cut (the validation rows left in the training split)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner
from fit_args import tiny_fit_args

from neuroprune.cli.app import main
from neuroprune.data import split
from neuroprune.data.datasets import load_dataset
from neuroprune.train import distributed


@pytest.fixture
def always_fine_tune(monkeypatch):
    """Fine-tune even when post-training quantization lost nothing on validation (the
    skip of :func:`neuroprune.quantize.api.ptq_lost_nothing`): these tests check the
    fine-tuning path itself."""
    from neuroprune.quantize import api

    monkeypatch.setattr(api, "ptq_lost_nothing", lambda val_float, val_ptq: False)


TINY = [
    "--chip",
    "loihi",
    *tiny_fit_args(quant_epochs=None, timesteps=None, sparsity=0.5, backend="reference", seed=0),
    "--floating-point",
]


def _fit(tmp_path, *args):
    argv = ["fit", "--out", str(tmp_path), "--name", "run", *TINY, *args]
    return CliRunner().invoke(main, argv, env={"COLUMNS": "200"})


# ------------------------------------------------------------------------------------------
# The cut itself


def test_the_cut_is_seeded_disjoint_and_complete():
    data = load_dataset("digits")
    n = data.train_size
    cut = split.hold_out(data, seed=3)
    val, rest = set(cut.val_indices.tolist()), set(cut.train_indices.tolist())
    assert not val & rest and val | rest == set(range(n))
    assert len(val) == round(0.1 * n) and cut.train.train_size == n - len(val)
    np.testing.assert_array_equal(cut.x_val, data.x_train[sorted(val)])
    np.testing.assert_array_equal(cut.train.x_train, data.x_train[sorted(rest)])
    assert cut.train.x_test is data.x_test  # the test split is untouched
    again, other = split.hold_out(data, seed=3), split.hold_out(data, seed=4)
    np.testing.assert_array_equal(again.val_indices, cut.val_indices)
    assert again.digest == cut.digest and other.digest != cut.digest


# ------------------------------------------------------------------------------------------
# No training stage sees a validation row (and the check catches one that does)


def _record_training(monkeypatch) -> list:
    """Wrap every ``train`` the stages call; return the list of datasets they are handed."""
    import neuroprune.pipeline.prune_loop as prune_loop
    import neuroprune.pipeline.structured as structured
    import neuroprune.quantize.api as quantize_api
    import neuroprune.train.loop as loop

    seen: list = []
    real = loop.train

    def recording(model, dataset, *args, **kwargs):
        seen.append(dataset)
        return real(model, dataset, *args, **kwargs)

    for module in (loop, prune_loop, structured, quantize_api):
        monkeypatch.setattr(module, "train", recording)
    return seen


def _record_cut(monkeypatch, leaky: bool) -> list:
    """Wrap the run's cut (``leaky``: keep the validation rows in the training split too)."""
    import neuroprune.pipeline.preflight as preflight

    cuts: list = []

    def cut(dataset, *, seed):
        made = split.hold_out(dataset, seed=seed)
        if leaky:
            made = dataclasses.replace(made, train=dataset)
        cuts.append(made)
        return made

    monkeypatch.setattr(preflight, "hold_out", cut)
    return cuts


def _trained_validation_rows(seen: list, cut, full) -> tuple[int, int]:
    """``(validation rows found in some training split, validation rows checkable)``: a row
    is checkable when its image is unique in the full training split (no duplicate elsewhere
    could be the one trained on)."""
    rows = [r.tobytes() for r in full.x_train]
    unique = {b for b, c in Counter(rows).items() if c == 1}
    checkable = {rows[i] for i in cut.val_indices if rows[i] in unique}
    trained = {r.tobytes() for dataset in seen for r in dataset.x_train}
    return len(checkable & trained), len(checkable)


@pytest.mark.slow
@pytest.mark.parametrize("leaky", [False, True], ids=["honest", "leaky-cut-is-caught"])
def test_no_training_stage_sees_a_validation_row(tmp_path, monkeypatch, leaky, always_fine_tune):
    seen = _record_training(monkeypatch)
    cuts = _record_cut(monkeypatch, leaky)
    result = _fit(tmp_path, "--quant-epochs", "1", "--json")
    assert result.exit_code == 0, result.output[-2000:]
    assert len(cuts) == 1  # cut once, before training
    stages = len(seen)
    assert stages >= 4  # dense, prune, fine-tune, QAT all trained
    leaked, checkable = _trained_validation_rows(seen, cuts[0], load_dataset("digits"))
    assert checkable >= 0.9 * cuts[0].size
    if leaky:
        assert leaked == checkable  # the check fails on a cut that trains on validation rows
    else:
        assert leaked == 0
        report = json.loads(result.stdout)
        assert report["validation"]["samples"] == cuts[0].size
        assert report["validation"]["digest"] == cuts[0].digest
        assert report["quantized"]["qat"]["val_digest"] == cuts[0].digest


# ------------------------------------------------------------------------------------------
# Decisions: validation only, ties keep PTQ, the epochs that ran


def _quantize_inputs():
    from neuroprune.chip.profiles import load_profile
    from neuroprune.models.zoo import build_model
    from neuroprune.train.loop import default_config, train

    data = load_dataset("digits")
    data = dataclasses.replace(
        data,
        x_train=data.x_train[:400],
        y_train=data.y_train[:400],
        x_test=data.x_test[:100],
        y_test=data.y_test[:100],
    )
    config = default_config(timesteps=4, batch_size=64, seed=0)
    model = build_model("mlp", data.input_shape, 10, hidden=(32,), seed=0)
    cut = split.hold_out(data, seed=0)
    train(model, cut.train, config.replace(epochs=2))
    return model, load_profile("loihi"), data, config, cut


@pytest.mark.slow
def test_qat_decision_reads_validation_and_not_the_test_split():
    """Changing the test labels leaves the decision as it was; changing the validation labels
    changes the validation figures the decision compares."""
    from neuroprune.quantize.api import quantize_model

    model, profile, data, config, cut = _quantize_inputs()
    shifted_test = dataclasses.replace(data, y_test=(data.y_test + 1) % 10)
    shifted_val = dataclasses.replace(cut, y_val=(cut.y_val + 1) % 10)
    base, other_test, other_val = (
        quantize_model(model, profile, d, config, finetune_epochs=2, holdout=h)
        for d, h in ((data, cut), (shifted_test, cut), (data, shifted_val))
    )
    assert other_test.accuracy_ptq != base.accuracy_ptq  # the test split did change ...
    assert other_test.qat == base.qat  # ... and nothing decided changed
    assert other_val.qat["val_ptq"] != base.qat["val_ptq"]  # validation is what is compared


@pytest.mark.slow
def test_a_tie_keeps_ptq_and_says_so(always_fine_tune):
    """Validation labels no model can predict (-1): every epoch scores 0 = PTQ's 0, a tie."""
    from neuroprune.quantize.api import quantize_model

    model, profile, data, config, cut = _quantize_inputs()
    impossible = dataclasses.replace(cut, y_val=np.full_like(cut.y_val, -1))
    result = quantize_model(model, profile, data, config, finetune_epochs=3, holdout=impossible)
    assert result.qat["val_ptq"] == result.qat["val_qat"] == 0.0
    assert result.qat["decision"] == "reverted"
    assert result.qat["reason"].startswith("tie: kept PTQ")
    assert result.accuracy_qat is not None  # test accuracy still reported


@pytest.mark.slow
def test_quant_epochs_10_with_early_stop_reports_the_epochs_that_ran(
    tmp_path, monkeypatch, always_fine_tune
):
    """Through the CLI: a validation part no model can score on stops QAT after the patience
    epoch; report.json, log.txt and the console say 2 of 10 epochs ran, and the tie."""
    import neuroprune.pipeline.preflight as preflight

    def unscorable(dataset, *, seed):
        made = split.hold_out(dataset, seed=seed)
        return dataclasses.replace(made, y_val=np.full_like(made.y_val, -1))

    monkeypatch.setattr(preflight, "hold_out", unscorable)
    result = _fit(tmp_path, "--quant-epochs", "10")
    assert result.exit_code == 0, result.output[-2000:]
    qat = json.loads((tmp_path / "run" / "report.json").read_text())["quantized"]["qat"]
    assert (qat["epochs_asked"], qat["epochs_run"], qat["best_epoch"]) == (10, 2, 1)
    assert qat["stopped"].startswith("early stop after epoch 2 of 10")
    assert qat["reason"].startswith("tie: kept PTQ")
    line = "fine-tuning: 2 of 10 epochs ran (early stop after epoch 2 of 10"
    assert line in result.output
    log = (tmp_path / "run" / "log.txt").read_text()
    assert line in log and "tie: kept PTQ" in log


@pytest.mark.slow
def test_fine_tuning_is_skipped_exactly_when_ptq_lost_nothing_on_validation(monkeypatch):
    """The skip reads validation only: ``val_float`` is the pruned float model's validation
    accuracy (recomputed here with ``evaluate``), and fine-tuning runs iff PTQ scored below
    it. A validation part no model can score on (labels -1: 0 % = 0 %) skips with no
    training step at all."""
    from neuroprune.quantize import api
    from neuroprune.train.loop import evaluate

    model, profile, data, config, cut = _quantize_inputs()
    trained = []
    real_train = api.train
    monkeypatch.setattr(api, "train", lambda *a, **k: trained.append(1) or real_train(*a, **k))
    result = api.quantize_model(
        model, profile, data, config, finetune_epochs=2, holdout=cut, skip_if_lossless=True
    )
    val_float = evaluate(model, cut.x_val, cut.y_val, 4, "direct", seed=0)
    assert result.qat["val_float"] == val_float
    lost_nothing = result.qat["val_ptq"] >= val_float
    assert (result.qat["decision"] == "skipped") == lost_nothing
    assert bool(trained) == (not lost_nothing)

    trained.clear()
    impossible = dataclasses.replace(cut, y_val=np.full_like(cut.y_val, -1))
    skipped = api.quantize_model(
        model, profile, data, config, finetune_epochs=2, holdout=impossible, skip_if_lossless=True
    )

    assert (skipped.qat["val_float"], skipped.qat["val_ptq"]) == (0.0, 0.0)
    assert skipped.qat["decision"] == "skipped" and skipped.qat["epochs_run"] == 0
    assert skipped.qat["reason"].startswith("skipped: post-training quantization lost nothing")
    assert not trained and skipped.history == ()
    assert skipped.accuracy_qat == skipped.accuracy_ptq
    # without skip_if_lossless (a pruned model in fit, `neuroprune quantize RUN`) it trains
    ran = api.quantize_model(model, profile, data, config, finetune_epochs=1, holdout=impossible)
    assert trained and ran.qat["decision"] in ("kept", "reverted")
    assert ran.qat["epochs_run"] == 1


@pytest.mark.slow
def test_a_skipped_fine_tune_is_said_in_log_report_json_and_report_md(tmp_path, monkeypatch):
    """Through the CLI: PTQ that loses nothing on validation (here 0 % = 0 %, labels no model
    can predict) skips the QAT epochs, and the console, log.txt, report.json and report.md
    say so."""
    import neuroprune.pipeline.preflight as preflight

    def unscorable(dataset, *, seed):
        made = split.hold_out(dataset, seed=seed)
        return dataclasses.replace(made, y_val=np.full_like(made.y_val, -1))

    monkeypatch.setattr(preflight, "hold_out", unscorable)
    unbound = [a for a in TINY if a not in ("--sparsity", "0.5")]  # nothing binds
    argv = ["fit", "--out", str(tmp_path), "--name", "run", *unbound, "--quant-epochs", "3"]
    result = CliRunner().invoke(main, argv, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    qat = report["quantized"]["qat"]
    assert (qat["decision"], qat["epochs_asked"], qat["epochs_run"]) == ("skipped", 3, 0)
    assert (qat["val_float"], qat["val_ptq"]) == (0.0, 0.0)
    line = "fine-tuning: 0 of 3 epochs ran; on "
    assert line in result.output and "lost nothing on validation" in result.output
    log = (tmp_path / "run" / "log.txt").read_text()
    assert line in log and "lost nothing on validation" in log
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "Fine-tuning skipped (3 epoch(s) asked, 0 run)" in markdown
    # a binding budget: the pruned model gets its fine-tune whatever PTQ scored
    pruned = _fit(tmp_path / "pruned", "--quant-epochs", "1")
    assert pruned.exit_code == 0, pruned.output[-2000:]
    report = json.loads((tmp_path / "pruned" / "run" / "report.json").read_text())
    assert report["quantized"]["qat"]["decision"] in ("kept", "reverted")
    assert report["quantized"]["qat"]["epochs_run"] == 1


# ------------------------------------------------------------------------------------------
# Resume, `neuroprune quantize RUN` and torchrun ranks cut the same rows


@pytest.mark.slow
def test_resume_and_quantize_run_reproduce_the_cut(tmp_path):
    first = _fit(tmp_path, "--quant-epochs", "1")
    assert first.exit_code == 0, first.output[-2000:]
    report_path = tmp_path / "run" / "report.json"
    digest = json.loads(report_path.read_text())["validation"]["digest"]
    resumed = _fit(tmp_path, "--quant-epochs", "1", "--resume")
    assert resumed.exit_code == 0, resumed.output[-2000:]
    report = json.loads(report_path.read_text())
    assert report["validation"]["digest"] == digest
    assert report["stages"]["dense"].get("reused")  # same inputs, same cut: reused
    requant = CliRunner().invoke(main, ["quantize", str(tmp_path / "run")])
    assert requant.exit_code == 0, requant.output[-2000:]
    assert "epochs ran" in requant.output
    from neuroprune.run.artifacts import load_model

    _, meta = load_model(tmp_path / "run" / "quantized.pt")
    assert meta["record"]["qat"]["val_digest"] == digest


def _rank_cut(seed_by_rank: bool) -> str | None:
    """In each rank: cut digits (seed = rank when ``seed_by_rank``) and compare with rank 0."""
    from neuroprune.core.errors import DatasetError
    from neuroprune.pipeline.run import check_same_holdout

    with distributed.process_group("cpu"):
        seed = distributed.rank() if seed_by_rank else 0
        try:
            check_same_holdout(split.hold_out(load_dataset("digits"), seed=seed))
        except DatasetError as exc:
            return str(exc)
        return None


@pytest.mark.slow
def test_every_torchrun_rank_cuts_the_same_rows_or_the_run_stops():
    same = distributed.run_function(2, _rank_cut, False)
    assert same == {0: None, 1: None}
    differ = distributed.run_function(2, _rank_cut, True)
    assert differ[0] is None and "another validation part than rank 0" in differ[1]


def test_a_sweep_search_steers_by_validation_not_test_accuracy():
    """The row a search reads carries the deployed model's validation accuracy: the fine-tune's
    when kept, post-training quantization's when reverted (a tie included)."""
    from neuroprune.run.rundir import SavedRecord
    from neuroprune.sweep.results import deployed_validation

    def quantized(decision: str):
        qat = {"decision": decision, "val_ptq": 0.7, "val_qat": 0.8}
        record = {"quantized": {"accuracy": 0.99, "synapses": 1, "qat": qat}}
        return SavedRecord.model_validate(record).quantized

    assert deployed_validation(quantized("kept")) == 0.8
    assert deployed_validation(quantized("reverted")) == 0.7
    assert deployed_validation(SavedRecord().quantized) is None
