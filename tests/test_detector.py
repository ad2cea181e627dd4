"""The spiking detector (--model detector): wiring, loss targets, decoding."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional

from neuroprune.core.errors import ModelError
from neuroprune.models import build_model
from neuroprune.models.detector import (
    HEAD_FIELDS,
    SpikingDetector,
    box_iou,
    build_detector,
    decode,
    detection_loss,
    encode_targets,
)
from neuroprune.models.reader import model_wiring


def _model(**kwargs):
    return build_detector((1, 16, 16), 3, stages=((4, 1), (6, 1)), **kwargs)


def test_zoo_builds_a_detector_whose_output_is_a_spike_grid():
    model = build_model("detector", (1, 16, 16), 3, hidden=(4, 6))
    assert isinstance(model, SpikingDetector) and model.grid == (8, 8)
    out = model((torch.rand(5, 2, 1, 16, 16) < 0.3).float())
    assert out.shape == (5, 2, HEAD_FIELDS + 3, 8, 8)
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_wiring_reads_the_head_from_the_last_residual_stream():
    model = _model()
    wiring = model_wiring(model, (1, 16, 16))
    assert wiring.is_wired
    head = wiring.layers[-1]
    assert head.name == "head" and head.in_space == "stages.1" and head.out_space is None
    assert head.sources == 2  # the stage conv's spikes + one block's spikes, ADDed
    assert head.out_shape == (HEAD_FIELDS + 3, 8, 8)
    assert ("head", "head_bn") in model.conv_batchnorm_pairs()
    functional.reset_net(model)
    folded = model.fold_batchnorm()
    assert isinstance(folded.head_bn, torch.nn.Identity)


def test_targets_put_each_box_in_the_cell_holding_its_centre():
    model = _model()  # 16 px, grid 8: cells of 2 px; max box 8 px
    boxes = torch.tensor([[[2.0, 4.0, 6.0, 12.0], [0, 0, 0, 0]]])
    labels = torch.tensor([[2, -1]])
    responsible, box, cls = encode_targets(model, boxes, labels)
    # centre (4, 8) -> column 2, row 4, offsets 0, 0; size 4/8, 8/8
    assert responsible.sum() == 1 and responsible[0, 4, 2]
    assert box[0, :, 4, 2].tolist() == [0.0, 0.0, 0.5, 1.0]
    assert cls[0, 4, 2] == 2


def test_loss_is_zero_for_perfect_rates_and_decoding_returns_the_box():
    model = _model()
    boxes = torch.tensor([[[2.0, 4.0, 6.0, 12.0]]])
    labels = torch.tensor([[2]])
    rates = torch.zeros(1, HEAD_FIELDS + 3, 8, 8)
    rates[0, :HEAD_FIELDS, 4, 2] = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    rates[0, HEAD_FIELDS + 2, 4, 2] = 1.0
    spikes = rates.unsqueeze(0).repeat(4, 1, 1, 1, 1)  # rate r = spike every step when r = 1
    spikes[::2, 0, 3, 4, 2] = 0.0  # w rate 0.5: two spikes of four steps
    assert detection_loss(model, spikes, boxes, labels).item() == pytest.approx(0.0)
    (found,) = decode(model, spikes)
    assert found["labels"].tolist() == [2] and found["scores"].tolist() == [1.0]
    assert found["boxes"].tolist() == [[2.0, 4.0, 6.0, 12.0]]


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class():
    a = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    assert box_iou(a, torch.tensor([[2.0, 0.0, 6.0, 4.0]])).item() == pytest.approx(8 / 24)
    model = _model()
    spikes = torch.zeros(2, 1, HEAD_FIELDS + 3, 8, 8)
    for col, steps in ((2, 2), (3, 1)):  # neighbouring cells, same box size and class
        spikes[:steps, 0, 0, 4, col] = 1.0
        spikes[:, 0, 3:5, 4, col] = 1.0
        spikes[:, 0, HEAD_FIELDS, 4, col] = 1.0
    (found,) = decode(model, spikes, conf=0.0)
    assert found["scores"].tolist() == [1.0]  # the 0.5-score twin overlaps it by IoU 0.6


def test_bad_max_box_is_a_model_error():
    with pytest.raises(ModelError) as info:
        _model(max_box=0.0)
    assert info.value.field == "max_box"


def test_plots_of_boxes_and_map_per_stage_are_pngs(tmp_path):
    from neuroprune.data.spikecam import SpikecamOptions, make_spikecam_digits
    from neuroprune.reports.plots import detection_boxes, map_per_stage

    data = make_spikecam_digits(SpikecamOptions(train_scenes=1, test_scenes=2))
    targets = [data.targets("test", n) for n in range(2)]
    found = [
        {"boxes": torch.tensor(b), "labels": torch.tensor(lab), "scores": torch.ones(len(lab))}
        for b, lab in targets
    ]
    paths = [
        detection_boxes(data.x_test[:2], found, targets, data.class_names, tmp_path / "b.png"),
        map_per_stage({"dense": {"map_50": 0.5, "map": 0.2}}, tmp_path / "m.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
