"""The quantization-aware fine-tune's keep/revert and best-epoch criterion (issue 23): the
validation loss, the cross-entropy of the output spike counts read as logits, not the
validation accuracy (144 samples: one sample is 0.7 points, equal accuracies are common).

The loss is checked against torch's own cross-entropy; the decision and the epoch choice
against scripted validation scores (the fine-tune's model is trained for real, only the
validation figures it is judged by are given), so each test fails when the accuracy decides."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neuroprune.data import split
from neuroprune.data.datasets import load_dataset
from neuroprune.quantize import api
from neuroprune.quantize.api import ValidationScore, qat_decision, spike_count_nll


def test_spike_count_nll_is_torchs_cross_entropy_of_the_counts():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=(50, 10))
    labels = rng.integers(0, 10, size=50)
    oracle = torch.nn.functional.cross_entropy(
        torch.as_tensor(counts, dtype=torch.float64), torch.as_tensor(labels)
    )
    assert spike_count_nll(counts, labels) == pytest.approx(float(oracle), rel=1e-12)


def test_spike_count_nll_leaves_out_rows_without_a_class_label():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 9, size=(20, 10))
    labels = rng.integers(0, 10, size=20)
    labels[::3] = -1
    keep = labels >= 0
    oracle = torch.nn.functional.cross_entropy(
        torch.as_tensor(counts[keep], dtype=torch.float64), torch.as_tensor(labels[keep])
    )
    assert spike_count_nll(counts, labels) == pytest.approx(float(oracle), rel=1e-12)
    assert spike_count_nll(counts, np.full(20, -1)) == 0.0


def test_a_confident_mistake_costs_more_than_a_hesitant_one_at_equal_accuracy():
    """The point of the loss: two models with the same accuracy differ in their margins."""
    labels = np.array([0, 1])
    hesitant = np.array([[5, 0], [3, 2]])  # second sample wrong by one spike
    confident = np.array([[5, 0], [8, 0]])  # second sample wrong by eight spikes
    assert spike_count_nll(hesitant, labels) < spike_count_nll(confident, labels)


@pytest.mark.parametrize(
    ("ptq", "qat", "keep", "reason"),
    [
        ((0.90, 0.40), (0.85, 0.30), True, "better on validation"),  # lower loss, lower acc
        ((0.85, 0.30), (0.90, 0.40), False, "worse on validation"),  # higher loss, higher acc
        ((0.90, 0.30), (0.95, 0.30), False, "tie: kept PTQ"),  # equal loss: PTQ
    ],
)
def test_the_loss_decides_not_the_accuracy(ptq, qat, keep, reason):
    kept, why = qat_decision(ValidationScore(*ptq), ValidationScore(*qat))
    assert kept is keep
    assert why.startswith(reason)
    assert f"{qat[1]:.4f} vs {ptq[1]:.4f}" in why  # both losses named


def _inputs():
    from neuroprune.chip.profiles import load_profile
    from neuroprune.models.zoo import build_model
    from neuroprune.train.loop import default_config

    data = load_dataset("digits")
    data = dataclasses.replace(
        data,
        x_train=data.x_train[:200],
        y_train=data.y_train[:200],
        x_test=data.x_test[:50],
        y_test=data.y_test[:50],
    )
    config = default_config(timesteps=2, batch_size=64, seed=0)
    model = build_model("mlp", data.input_shape, 10, hidden=(16,), seed=0)
    return model, load_profile("loihi"), data, config, split.hold_out(data, seed=0)


def _scripted(monkeypatch, scores):
    """``api.validation_score`` answers the scripted ``(accuracy, loss)`` pairs in call order:
    the float model, PTQ, then one per fine-tuning epoch."""
    answers = iter([ValidationScore(*s) for s in scores])
    monkeypatch.setattr(api, "validation_score", lambda *args, **kwargs: next(answers))


def test_the_epoch_with_the_lowest_validation_loss_is_kept(monkeypatch):
    """Epoch 2 has the lowest loss but the lowest accuracy: it is the best epoch, and it is
    kept against PTQ although PTQ's accuracy is higher."""
    model, profile, data, config, cut = _inputs()
    float_, ptq = (0.90, 0.50), (0.85, 0.35)
    _scripted(monkeypatch, [float_, ptq, (0.90, 0.40), (0.80, 0.30), (0.95, 0.33)])
    result = api.quantize_model(model, profile, data, config, finetune_epochs=3, holdout=cut)
    qat = result.qat
    assert (qat["best_epoch"], qat["epochs_run"]) == (2, 3)
    assert (qat["val_qat"], qat["val_loss_qat"]) == (0.80, 0.30)
    assert (qat["val_ptq"], qat["val_loss_ptq"], qat["val_loss_float"]) == (0.85, 0.35, 0.50)
    assert qat["decision"] == "kept"
    assert [row["val_loss"] for row in result.history] == [0.40, 0.30, 0.33]


def test_a_higher_validation_loss_stops_and_reverts_even_with_a_higher_accuracy(monkeypatch):
    model, profile, data, config, cut = _inputs()
    _scripted(monkeypatch, [(0.90, 0.50), (0.85, 0.35), (0.95, 0.36), (0.99, 0.37)])
    result = api.quantize_model(model, profile, data, config, finetune_epochs=5, holdout=cut)
    qat = result.qat
    assert (qat["best_epoch"], qat["epochs_run"]) == (1, 2)  # patience 1: stops after epoch 2
    assert qat["stopped"].startswith("early stop after epoch 2 of 5: no lower validation loss")
    assert qat["decision"] == "reverted"
    assert qat["reason"].startswith("worse on validation")
    assert result.accuracy_qat is not None  # the fine-tune's test accuracy is still reported


def _reverted_record():
    from neuroprune.run.record import QatRecord, QuantizedRecord

    qat = QatRecord(
        decision="reverted",
        reason="worse on validation: kept PTQ",
        val_ptq=0.90,
        val_qat=0.95,
        val_loss_ptq=0.1234,
        val_loss_qat=0.5678,
        val_samples=144,
        epochs_asked=2,
        epochs_run=2,
        best_epoch=1,
    )
    return QuantizedRecord(accuracy=0.9, synapses=10, neurons=2, format="loihi", qat=qat)


def test_report_md_names_each_loss_with_its_model():
    from neuroprune.reports.markdown import _quantization

    text = "\n".join(_quantization(_reverted_record()))
    assert "validation loss 0.1234 post-training vs 0.5678 fine-tuned" in text
    assert "validation 90.00 % post-training vs 95.00 % fine-tuned" in text


def test_the_reverted_warning_gives_both_losses():
    from neuroprune.run.record import BudgetRecord, RunRecord
    from neuroprune.run.warnings import qat_reverted

    budget = BudgetRecord(synapses=10, source="test", binding="dense", binds=False)
    record = RunRecord(chip="loihi", budget=budget)
    record.quantized = _reverted_record()
    (warning,) = qat_reverted(record, None)
    assert "validation loss 0.5678 vs 0.1234" in warning.message  # fine-tuned vs PTQ
