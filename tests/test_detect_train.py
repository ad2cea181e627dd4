"""Detector training, mAP by torchmetrics, and channel pruning that keeps ADDed channels together."""

from __future__ import annotations

import pytest
import torch

from neuroprune.data.spikecam import SpikecamOptions, make_spikecam_digits
from neuroprune.models.detector import HEAD_FIELDS, build_detector
from neuroprune.pipeline.detect import prune_detector_channels
from neuroprune.train.detect import (
    DetectTrainConfig,
    mean_average_precision,
    parameter_count,
    train_detector,
)

TINY = SpikecamOptions(train_scenes=16, test_scenes=4, canvas=16, timesteps=4, max_digits=1)


@pytest.fixture(scope="module")
def data():
    return make_spikecam_digits(TINY)


def _perfect_spikes(model, data, shift: float = 0.0):
    """Spikes whose rates encode every ground-truth box exactly (oracle built from the
    docstring's decoding, not from encode_targets), boxes moved right by ``shift`` px."""
    g_h, g_w = model.grid
    s_h, s_w = 16 / g_h, 16 / g_w
    t_steps = 4
    spikes = torch.zeros(t_steps, data.test_size, HEAD_FIELDS + data.num_classes, g_h, g_w)
    for n in range(data.test_size):
        boxes, labels = data.targets("test", n)
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist(), strict=True):
            x0, x1 = x0 + shift, x1 + shift
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            j, i = int(cx // s_w), int(cy // s_h)
            # rates in steps of 1/4: choose boxes whose values are multiples of 1/4
            rates = [1.0, cx / s_w - j, cy / s_h - i, (x1 - x0) / 8, (y1 - y0) / 8]
            for channel, rate in enumerate(rates):
                spikes[: round(rate * t_steps), n, channel, i, j] = 1.0
            spikes[:, n, HEAD_FIELDS + label, i, j] = 1.0
    return spikes


def test_map_is_one_for_exact_boxes_and_zero_for_boxes_off_target(data, monkeypatch):
    model = build_detector((1, 16, 16), 10, stages=((4, 1), (4, 1)))  # cells 2 px, max box 8
    for n in range(data.test_size):  # make every coordinate representable in quarters
        data.boxes_test[n, 0] = [2.0, 4.0, 8.0, 12.0]
    perfect = _perfect_spikes(model, data)
    monkeypatch.setattr(model, "forward", lambda x: perfect)
    assert mean_average_precision(model, data) == {"map_50": 1.0, "map": 1.0}
    moved = _perfect_spikes(model, data, shift=6.0)  # IoU 0 with the truth
    monkeypatch.setattr(model, "forward", lambda x: moved)
    assert mean_average_precision(model, data)["map_50"] == 0.0


def test_training_lowers_the_loss(data):
    model = build_detector((1, 16, 16), 10, stages=((4, 1), (4, 1)))
    history = train_detector(model, data, DetectTrainConfig(epochs=3, batch_size=8, lr=1e-2))
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_channel_pruning_meets_the_parameter_fraction_and_keeps_adds_aligned(data, fraction):
    model = build_detector((1, 16, 16), 10, stages=((8, 1), (8, 1)))
    dense = parameter_count(model)
    config = DetectTrainConfig(batch_size=8)
    pruned = prune_detector_channels(
        model, data, config, params_fraction=fraction, epochs=1, finetune_epochs=0
    )
    assert parameter_count(pruned) <= fraction * dense
    for stage in pruned.stages:  # an ADD's two sides keep the same channels
        assert stage.conv.out_channels == stage.blocks[0].conv2.out_channels
    assert pruned.stages[1].conv.in_channels == pruned.stages[0].conv.out_channels
    assert pruned.head.in_channels == pruned.stages[1].conv.out_channels
    out = pruned((torch.rand(4, 2, 1, 16, 16) < 0.3).float())
    assert out.shape == (4, 2, HEAD_FIELDS + 10, 8, 8)


@pytest.mark.parametrize(
    ("args", "field"),
    [(("--dataset", "spikecam-digits"), "dataset")],  # a classifier on detection scenes
)
def test_fit_refuses_detection_in_one_line_before_writing(tmp_path, args, field):
    """A classifier cannot take a detection dataset: one line, exit 2, nothing written (``fit
    --model detector`` itself runs: tests/test_detect_fit.py)."""
    from click.testing import CliRunner

    from neuroprune.cli.app import main

    result = CliRunner().invoke(
        main, ["fit", "--chip", "loihi", *args, "--out", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0]
    assert not any(tmp_path.iterdir())
