"""Event data (N-MNIST, DVS Gesture, SHD read with Tonic), latency/event encodings, spike input
on the chip, and every pruning method on event frames.

Oracles: the frames are checked against a binning written here from the rules in
``neuroprune.data.events`` (Tonic's ToFrame semantics) applied to the events the generator in
``tests/data/make_events.py`` wrote; the latency code against a hand-worked example.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuroprune.cli.app import main
from neuroprune.core.errors import ConfigError, DatasetError
from neuroprune.data.dataset import Dataset
from neuroprune.data.datasets import load_dataset
from neuroprune.data.encoding import encode
from neuroprune.data.events import FORMATS, EventOptions
from neuroprune.models import encode as torch_encode
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.config import RunConfig
from neuroprune.train.loop import TrainConfig

sys.path.insert(0, str(Path(__file__).parent / "data"))
from make_events import WRITERS, nmnist_bytes  # noqa: E402

torch.set_num_threads(1)
T = 4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One synthetic folder per event dataset, and the events written to it."""
    root = tmp_path_factory.mktemp("events")
    return {name: (root / name, write(root / name)) for name, write in WRITERS.items()}


def oracle_frames(sample, sensor, options: EventOptions) -> np.ndarray:
    """Binary frames ``[T, C, H, W]`` from the written events, by the documented rules."""
    x, y, t, p, _ = (np.asarray(a) for a in sample)
    order = np.argsort(t, kind="stable")
    x, y, t, p = x[order], y[order], t[order], p[order]
    if options.window_ms is not None:
        start, stop = (1000 * v for v in options.window_ms)
        keep = (t - t[0] >= start) & (t - t[0] < stop)
        x, y, t, p = x[keep], y[keep], t[keep], p[keep]
    if options.polarity in ("on", "off"):
        keep = p == (1 if options.polarity == "on" else 0)
        x, y, t, p = x[keep], y[keep], t[keep], p[keep]
    if options.binning == "time":
        width = (t[-1] - t[0]) // options.timesteps
        step = (t - t[0]) // width
    else:
        step = np.arange(len(t)) // (len(t) // options.timesteps)
    f = options.downsample
    channels = 2 if options.polarity == "both" and sensor[2] == 2 else 1
    frames = np.zeros(
        (options.timesteps, channels, math.ceil(sensor[1] / f), math.ceil(sensor[0] / f)),
        np.uint8,
    )
    kept = step < options.timesteps
    channel = p[kept] if channels == 2 else 0
    frames[step[kept], channel, y[kept] // f, x[kept] // f] = 1
    return frames


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_frames_match_the_binning_rules(name, folders):
    root, written = folders[name]
    options = EventOptions(timesteps=T, downsample=4 if name == "dvsgesture" else 1)
    data = load_dataset(name, root, options)
    assert data.is_event and data.timesteps == T and data.x_train.dtype == np.uint8
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        expected = sorted(written[split], key=lambda s: s[4])  # loaders list by label
        assert sorted(y.tolist()) == [s[4] for s in expected]
        want = {s[4]: [] for s in expected}
        for s in expected:
            want[s[4]].append(oracle_frames(s, FORMATS[name].sensor, options))
        for label in want:
            got = [f for f, lab in zip(x, y, strict=True) if lab == label]
            assert sorted(g.tobytes() for g in got) == sorted(w.tobytes() for w in want[label])
    assert data.x_train.any()


@pytest.mark.parametrize(
    "options",
    [
        EventOptions(timesteps=3, binning="count"),
        EventOptions(timesteps=5, polarity="merge", downsample=3),
        EventOptions(timesteps=4, polarity="on", window_ms=(0.0, 120.0)),
        EventOptions(timesteps=2, polarity="off", window_ms=(50.0, 200.0)),
    ],
)
def test_binning_polarity_downsample_and_window_options(options, folders):
    root, written = folders["nmnist"]
    data = load_dataset("nmnist", root, options)
    sample = written["train"][0]  # label 0, first file of Train/0
    np.testing.assert_array_equal(data.x_train[0], oracle_frames(sample, (34, 34, 2), options))
    assert data.input_shape == oracle_frames(sample, (34, 34, 2), options).shape[1:]


def test_tonic_folder_below_data_dir_is_accepted(folders, tmp_path):
    (tmp_path / "SHD").symlink_to(folders["shd"][0], target_is_directory=True)
    assert load_dataset("shd", tmp_path, EventOptions(timesteps=2)).input_shape == (1, 1, 700)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_missing_folder_names_every_expected_file(name, tmp_path):
    for data_dir in (None, tmp_path / "absent", tmp_path):
        with pytest.raises(DatasetError) as err:
            load_dataset(name, data_dir)
        assert FORMATS[name].expected in err.value.fix
        assert "\n" not in err.value.one_line()


def test_malformed_files_are_named(tmp_path):
    nm = tmp_path / "nm"
    for split in ("Train", "Test"):
        (nm / split / "3").mkdir(parents=True)
        (nm / split / "3" / "1.bin").write_bytes(nmnist_bytes([1], [2], [3], [1]) + b"\x00")
    with pytest.raises(DatasetError, match="multiple of 5") as err:
        load_dataset("nmnist", nm)
    assert err.value.where.endswith("1.bin")
    gesture = tmp_path / "g" / "ibmGestureTrain" / "user01_led"
    gesture.mkdir(parents=True)
    np.save(gesture / "2.npy", np.zeros((5, 3)))
    with pytest.raises(DatasetError, match=r"\[events, 4\]") as err:
        load_dataset("dvsgesture", tmp_path / "g")
    assert err.value.where.endswith("2.npy")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "shd_train.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="not an SHD HDF5 file") as err:
        load_dataset("shd", tmp_path / "s")
    assert err.value.where.endswith("shd_train.h5")


def test_bad_event_options_are_config_errors():
    for bad in (
        {"binning": "slices"},
        {"polarity": "up"},
        {"downsample": 0},
        {"window_ms": (5.0, 1.0)},
    ):
        with pytest.raises(ConfigError):
            EventOptions(**bad)
    with pytest.raises(ConfigError, match="START:STOP"):
        RunConfig(dataset="nmnist", event_window="soon")


# --------------------------------------------------------------------------------------------
# Encodings


def test_latency_worked_example_and_torch_twin():
    # T = 8: step rint((1 - x) * 7): x=1 -> 0, 0.5 -> rint(3.5) = 4 (half to even), 0.25 ->
    # rint(5.25) = 5, 0.07 -> rint(6.51) = 7; x = 0 never fires.
    x = np.array([[1.0, 0.5, 0.25, 0.07, 0.0]], dtype=np.float32)
    spikes = encode(x, 8, "latency")
    assert spikes.shape == (8, 1, 5)
    fired = [list(np.flatnonzero(spikes[:, 0, j])) for j in range(5)]
    assert fired == [[0], [4], [5], [7], []]
    rng = np.random.default_rng(0)
    images = rng.random((6, 1, 4, 4)).astype(np.float32)
    images[0, 0, 0] = 0.0
    twin = torch_encode(torch.from_numpy(images), 5, "latency").numpy()
    np.testing.assert_array_equal(twin, encode(images, 5, "latency"))


def test_events_encoding_uses_the_frames_as_steps():
    frames = np.random.default_rng(0).integers(0, 2, (3, T, 2, 4, 4)).astype(np.uint8)
    steps = encode(frames, T, "events")
    assert steps.shape == (T, 3, 2, 4, 4) and steps.dtype == np.float32
    np.testing.assert_array_equal(steps[2, 1], frames[1, 2])
    np.testing.assert_array_equal(torch_encode(torch.from_numpy(frames), T, "events"), steps)
    with pytest.raises(DatasetError, match="frames"):
        encode(frames, T + 1, "events")


def test_config_picks_the_events_encoding_for_event_data():
    assert RunConfig(dataset="nmnist").encoding == "events"
    assert RunConfig(dataset="digits").encoding == "direct"
    assert RunConfig(dataset="digits", encoding="latency").encoding == "latency"
    with pytest.raises(ConfigError, match="event dataset"):
        RunConfig(dataset="shd", encoding="poisson")
    with pytest.raises(ConfigError, match="image dataset"):
        RunConfig(dataset="digits", encoding="events")


# --------------------------------------------------------------------------------------------
# Spike input on the chip: placement, and the simulator sees the model's frames


def _export(model, path, shape, encoding):
    from neuroprune.export import export_nir

    return export_nir(model, path, timesteps=T, encoding=encoding, input_shape=shape)


@pytest.mark.parametrize("encoding", ["direct", "poisson", "latency", "events"])
def test_every_encoding_reports_where_each_layer_ran(encoding, tmp_path):
    from neuroprune.data.encoding import simulation_input
    from neuroprune.sim import simulate

    shape = (2, 6, 6) if encoding == "events" else (1, 8, 8)
    model = build_model("mlp", shape, 4, hidden=(12,), seed=0)
    with torch.no_grad():
        model[1].weight.mul_(8.0)
    path = _export(model.eval(), tmp_path / "m.nir", shape, encoding)
    rng = np.random.default_rng(0)
    if encoding == "events":
        frames = (rng.random((5, T, *shape)) < 0.3).astype(np.uint8)
        data = Dataset("ev", frames, np.zeros(5, np.int64), frames, np.arange(5) % 4, 4)
        x = simulation_input(data, 5)
    else:
        x = rng.random((5, *shape)).astype(np.float32)
    result = simulate(path, x=x, backend="reference", reference_model=model)
    on_host = result.as_dict()["placement"]
    assert on_host == {
        "l00_1_syn": "host" if encoding == "direct" else "chip",
        "l00_2_neuron": "chip",
        "l01_1_syn": "chip",
        "l01_2_neuron": "chip",
    }
    assert result.stimulus == ("current" if encoding == "direct" else "spikes")
    assert any(encoding in note and ("host" in note) for note in result.notes)
    assert result.spike_agreement == 1.0 and result.spike_counts[0] > 0


# --------------------------------------------------------------------------------------------
# Models and every pruning method on event frames


@pytest.fixture(scope="module")
def tiny_events():
    """Binary frames [N, T, 2, 8, 8]: class c lights column band c (learnable, fast)."""
    rng = np.random.default_rng(0)
    labels = np.arange(96) % 4
    frames = (rng.random((96, T, 2, 8, 8)) < 0.05).astype(np.uint8)
    for i, label in enumerate(labels):
        frames[i, :, :, :, 2 * label : 2 * label + 2] |= (rng.random((T, 2, 8, 2)) < 0.6).astype(
            np.uint8
        )
    return Dataset("tiny-events", frames[:64], labels[:64], frames[64:], labels[64:], 4)


@pytest.mark.parametrize("kind", ["conv", "sew"])
def test_conv_models_take_two_channel_frames(kind, tiny_events):
    model = build_model(kind, tiny_events.input_shape, 4, hidden=(2, 4), seed=0)
    steps = torch_encode(torch.from_numpy(tiny_events.x_test[:3]), T, "events")
    assert model(steps).shape == (T, 3, 4)


def test_mlp_takes_shd_channels(folders):
    data = load_dataset("shd", folders["shd"][0], EventOptions(timesteps=2))
    model = build_model("mlp", data.input_shape, data.num_classes, hidden=(8,), seed=0)
    assert summarize(model, data.input_shape, 2).layers[0].max_fan_in == 700


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_every_method_prunes_event_inputs(kind, tiny_events):
    from neuroprune.fit.budget import derive_budget
    from neuroprune.pipeline.prune_loop import prune_to_budget
    from neuroprune.pruning import METHODS

    config = TrainConfig(epochs=1, batch_size=32, timesteps=T, lr=3e-3, encoding="events")
    for name in sorted(METHODS):
        model = build_model(
            kind, tiny_events.input_shape, 4, hidden=(16,) if kind == "mlp" else (2, 4), seed=0
        )
        dense = summarize(model, tiny_events.input_shape, T)
        budget = derive_budget(None, dense, sparsity=0.5)
        result = prune_to_budget(
            model, tiny_events, config, method=name, budget=budget, epochs=1, finetune_epochs=0
        )
        pruned = summarize(result.model, tiny_events.input_shape, T)
        assert result.synapses == pruned.synapses() <= budget.synapses, name
        if getattr(METHODS[name], "structured", False):  # SCA: channels ranked by activity
            assert pruned.neurons < dense.neurons, name
        assert 0.0 <= result.accuracy <= 1.0


# --------------------------------------------------------------------------------------------
# fit end to end on Lava: the first layer on the chip, 100 % agreement

FIT = [
    "--chip",
    "loihi",
    "--hidden",
    "24",
    "--epochs",
    "4",
    "--batch-size",
    "8",
    "--prune-epochs",
    "1",
    "--finetune-epochs",
    "0",
    "--quant-epochs",
    "0",
    "--sparsity",
    "0.3",
    "--timesteps",
    str(T),
    "--samples",
    "20",
    "--json",
]


def run_fit(tmp_path, *args):
    argv = ["fit", *FIT, "--out", str(tmp_path), "--name", "run", *args]
    result = CliRunner().invoke(main, argv, env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)["simulation"]


def assert_first_layer_on_chip(sim):
    assert sim["backend"] == "lava" and sim["mode"] == "fixed"
    assert sim["stimulus"] == "spikes" and sim["placement"]["l00_1_syn"] == "chip"
    assert sim["spike_agreement"] == 1.0 and sim["agreement_source"] == "reference"
    assert sim["layers"][0]["spikes"] > 0, "a silent first layer would prove nothing"


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_fit_on_event_data_runs_the_first_layer_on_lava(name, folders, tmp_path):
    extra = ["--event-downsample", "8"] if name == "dvsgesture" else []
    sim = run_fit(tmp_path, "--dataset", name, "--data-dir", str(folders[name][0]), *extra)
    assert_first_layer_on_chip(sim)
    assert sim["timesteps"] == T


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["poisson", "latency"])
def test_fit_on_spike_encoded_digits_runs_the_first_layer_on_lava(encoding, tmp_path):
    sim = run_fit(tmp_path, "--dataset", "digits", "--encoding", encoding)
    assert_first_layer_on_chip(sim)


def test_dataset_rejects_non_binary_dtype_for_frames():
    frames = np.zeros((2, T, 2, 4, 4), np.float32)
    with pytest.raises(DatasetError, match="uint8"):
        Dataset("bad", frames, np.zeros(2, np.int64), frames, np.zeros(2, np.int64), 2)


def test_lava_input_generator_emits_the_frames_the_model_trains_on(folders, tmp_path):
    """The ``frames_c0.npy`` the Lava worker's FrameSource streams (step ``t`` sends row
    ``t - 1``) equals the model's input ``[T, N, ...]``, sample-major per row."""
    from neuroprune.data.encoding import simulation_input
    from neuroprune.sim import LavaBackend, prepare_stimulus, read_deployment
    from neuroprune.sim.lava_backend import write_job
    from neuroprune.sim.lava_map import lava_layers

    data = load_dataset("nmnist", folders["nmnist"][0], EventOptions(timesteps=T))
    model = build_model("mlp", data.input_shape, 10, hidden=(8,), seed=0).eval()
    path = _export(model, tmp_path / "m.nir", data.input_shape, "events")
    spec = read_deployment(path)
    stimulus = prepare_stimulus(spec, simulation_input(data, 6))
    backend = LavaBackend(chunk_samples=6)
    layers = lava_layers(spec, False)
    write_job(tmp_path, layers, stimulus, backend.chunks(layers, stimulus), False, backend)
    streamed = np.load(tmp_path / "frames_c0.npy")
    trained_on = torch_encode(torch.from_numpy(data.x_test[:6]), T, "events").numpy()
    np.testing.assert_array_equal(streamed, trained_on.reshape(T, -1))
    assert streamed.dtype == np.uint8 and streamed.any()


def test_check_reads_no_recordings(folders, monkeypatch):
    import neuroprune.data.events

    def refuse(*args, **kwargs):
        raise AssertionError("check must not bin the recordings")

    monkeypatch.setattr(neuroprune.data.events, "load_event_dataset", refuse)
    monkeypatch.setattr("neuroprune.data.datasets.load_event_dataset", refuse)
    argv = ["check", "--chip", "loihi", "--dataset", "nmnist", "--model", "mlp", "--hidden", "8"]
    result = CliRunner().invoke(main, [*argv, "--data-dir", str(folders["nmnist"][0])])
    assert result.exit_code == 0, result.output
    missing = CliRunner().invoke(main, [*argv, "--data-dir", str(folders["shd"][0])])
    assert missing.exit_code == 2 and "Train/<0..9>/*.bin" in missing.output


def test_simulate_a_bare_nir_file_bins_events_with_the_graph_timesteps(folders, tmp_path):
    data = load_dataset("nmnist", folders["nmnist"][0], EventOptions(timesteps=3))
    model = build_model("mlp", data.input_shape, 10, hidden=(8,), seed=0).eval()
    from neuroprune.export import export_nir

    path = export_nir(
        model, tmp_path / "m.nir", timesteps=3, encoding="events", input_shape=data.input_shape
    )
    from neuroprune.pipeline.commands import simulate_target

    result = simulate_target(
        path, backend="reference", dataset="nmnist", samples=4, data_dir=folders["nmnist"][0]
    )
    assert result.timesteps == 3 and result.samples == 4
    assert not any("exported with T=" in note for note in result.notes)
