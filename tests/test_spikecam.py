"""spikecam-digits (generated spike-camera scenes) and the spikecam local-folder format."""

from __future__ import annotations

import numpy as np
import pytest

from neuroprune.core.errors import ConfigError, DatasetError
from neuroprune.data.datasets import DATASETS, is_detection_dataset, load_dataset
from neuroprune.data.spikecam import (
    SpikecamOptions,
    integrate_and_fire,
    load_spikecam_folder,
    make_spikecam_digits,
)

SMALL = SpikecamOptions(train_scenes=24, test_scenes=8, timesteps=6, seed=3)


def test_pixel_model_fires_floor_of_integrated_light():
    # A[0] in [0, 1); constant I over T steps fires floor(A[0] + T*I) spikes, so for T*I an
    # integer the count is exactly T*I whatever the start phase.
    t_steps = 10
    levels = np.array([0.0, 0.1, 0.5, 1.0])
    intensity = np.broadcast_to(levels, (t_steps, 4)).copy()
    counts = integrate_and_fire(intensity, seed=5).sum(axis=0)
    assert counts.tolist() == [0, 1, 5, 10]


def test_pixel_model_is_one_spike_per_step_at_most_and_binary():
    spikes = integrate_and_fire(np.full((5, 3, 3), 0.7), gain=3.0, seed=0)
    assert spikes.dtype == np.uint8 and set(np.unique(spikes)) <= {0, 1}
    assert (spikes == 1).all()  # 2.1 per step > threshold: fires every step


def test_scenes_are_seeded_and_labelled():
    first, again = make_spikecam_digits(SMALL), make_spikecam_digits(SMALL)
    assert np.array_equal(first.x_train, again.x_train)
    assert np.array_equal(first.boxes_test, again.boxes_test)
    other = make_spikecam_digits(SpikecamOptions(train_scenes=24, test_scenes=8, seed=4))
    assert not np.array_equal(first.x_train[:, :6], other.x_train[:, :6])
    assert first.x_train.shape == (24, 6, 1, 32, 32) and first.x_test.shape[0] == 8
    counts = (first.labels_train >= 0).sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= 3
    assert first.input_shape == (1, 32, 32) and first.timesteps == 6


def test_boxes_lie_on_the_canvas_do_not_overlap_and_hold_the_brighter_pixels():
    data = make_spikecam_digits(SMALL)
    inside, outside = [], []
    for n in range(data.train_size):
        boxes, labels = data.targets("train", n)
        assert ((labels >= 0) & (labels < 10)).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 32).all()
        assert (boxes[:, :2] < boxes[:, 2:]).all()
        mask = np.zeros((32, 32), bool)
        for x0, y0, x1, y1 in boxes.astype(int):
            assert not mask[y0:y1, x0:x1].any()  # no overlap
            mask[y0:y1, x0:x1] = True
        rate = data.x_train[n, :, 0].mean(axis=0)
        inside.append(rate[mask].mean())
        outside.append(rate[~mask].mean())
    # the background (intensity 0.1) fires about 0.1 per step; digits much more
    assert np.mean(outside) < 0.2 < np.mean(inside)


def test_bad_options_are_one_config_error():
    with pytest.raises(ConfigError) as info:
        SpikecamOptions(canvas=10)
    assert info.value.field == "canvas"


def test_registry_knows_the_detection_datasets_and_load_dataset_refuses_them():
    assert "spikecam-digits" in DATASETS and "spikecam" in DATASETS
    assert is_detection_dataset("spikecam-digits") and not is_detection_dataset("digits")
    with pytest.raises(DatasetError) as info:
        load_dataset("spikecam-digits")
    assert "detection" in info.value.one_line()


# --------------------------------------------------------------------------------------------
# the local folder


def _write_scene(path, spikes, boxes, labels):
    np.savez(path, spikes=spikes, boxes=np.asarray(boxes, float), labels=np.asarray(labels))


def _folder(tmp_path, *, labels=(1,), boxes=((2, 3, 6, 7),), spikes=None):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "classes.txt").write_text("car\nperson\n")
    frames = np.zeros((4, 10, 12), np.uint8) if spikes is None else spikes
    frames[:, 3:7, 2:6] = 1
    _write_scene(tmp_path / "train" / "a.npz", frames, boxes, labels)
    _write_scene(tmp_path / "train" / "b.npz", frames, [], np.zeros(0, np.int64))
    _write_scene(tmp_path / "test" / "c.npz", frames, boxes, labels)
    return tmp_path


def test_folder_round_trip(tmp_path):
    data = load_spikecam_folder(_folder(tmp_path))
    assert data.x_train.shape == (2, 4, 1, 10, 12) and data.class_names == ("car", "person")
    boxes, labels = data.targets("train", 0)
    assert boxes.tolist() == [[2, 3, 6, 7]] and labels.tolist() == [1]
    assert data.targets("train", 1)[1].size == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"labels": (2,)}, "labels"),
        ({"boxes": ((2, 3, 13, 7),)}, "boxes[0]"),
        ({"spikes": np.full((4, 10, 12), 2, np.uint8)}, "spikes"),
        ({"labels": (0, 1)}, "labels"),
    ],
)
def test_folder_errors_name_file_field_and_fix(tmp_path, kwargs, field):
    root = _folder(tmp_path, **kwargs)
    with pytest.raises(DatasetError) as info:
        load_spikecam_folder(root)
    assert info.value.field == field and info.value.where.endswith(".npz") and info.value.fix


def test_folder_missing_parts(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_spikecam_folder(tmp_path / "nowhere")
    assert info.value.field == "data_dir"
    with pytest.raises(DatasetError) as info:
        load_spikecam_folder(tmp_path)
    assert info.value.field == "classes.txt"
    (tmp_path / "classes.txt").write_text("a\n")
    with pytest.raises(DatasetError) as info:
        load_spikecam_folder(tmp_path)
    assert info.value.field == "*.npz" and info.value.where.endswith("train")
