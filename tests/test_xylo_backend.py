"""``--backend xylosim``: SynSense's XyloSim on Rockpool's mapping of a run quantized for Xylo
Audio 2. End to end on ``digits-4x4`` (16 input channels, 8 classes): XyloSim's spike counts
equal the bit-exact emulation's and the trained quantized model's in every layer, for every
sample, and so do the accuracies; the run's ``--format rockpool-nir`` file, read by Rockpool's
NIR importer and mapped by its Xylo mapper, runs in XyloSim with the model's output counts
(``tests/xylo_oracle.py`` children, a stand-in for the samna driver import there); without the
``lava`` environment the backend says how to install it (one line, exit 3) before anything
trains."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fit_args import tiny_fit_args

from neuroprune.cli.app import main
from neuroprune.data.datasets import load_dataset
from neuroprune.envs import environment_python
from neuroprune.run.artifacts import load_model
from neuroprune.sim.inputs import prepare_stimulus
from neuroprune.sim.spec import read_deployment
from neuroprune.sim.torch_reference import model_counts

ORACLE = Path(__file__).with_name("xylo_oracle.py")

XYLO_FIT = ["fit", "--chip", "xylo", "--dataset", "digits-4x4", "--encoding", "latency"]


def run_fit(tmp_path, *extra: str):
    args = [*XYLO_FIT, *tiny_fit_args(hidden=32, timesteps=6), "--out", str(tmp_path)]
    return CliRunner().invoke(main, [*args, "--name", "run", *extra])


def test_xylosim_without_its_environment_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROPRUNE_ENVS", str(tmp_path / "envs"))
    result = run_fit(tmp_path, "--backend", "xylosim")
    assert result.exit_code == 3, result.output
    message = result.stderr.strip()
    assert "\n" not in message and "neuroprune backends install lava" in message, message
    assert not (tmp_path / "run").exists() and not (tmp_path / "envs").exists()


def child(env: str, *args: str) -> None:
    done = subprocess.run(
        [str(environment_python(env)), str(ORACLE), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.lava
@pytest.mark.rockpool
@pytest.mark.slow
def test_xylosim_equals_the_emulation_and_the_trained_model(tmp_path):
    result = run_fit(tmp_path, "--backend", "xylosim")
    assert result.exit_code == 0, result.output
    sim = json.loads((tmp_path / "run" / "simulation.json").read_text())
    assert sim["backend"] == "xylosim" and sim["mode"] == "fixed"
    assert sim["verification"]["kind"] == "vendor simulator"
    assert sim["agreement_source"] == "reference"  # the bit-exact emulation
    assert [layer["agreement"] for layer in sim["layers"]] == [1.0, 1.0]
    assert sim["model_agreement"] == [1.0, 1.0]  # the trained quantized PyTorch model
    assert sim["prediction_agreement"] == 1.0 and sim["accuracy"] == sim["model_accuracy"]
    assert sim["samples"] == 289

    # the Xylo-target NIR file through Rockpool's importer, mapper and XyloSim
    run = tmp_path / "run"
    nir_file = tmp_path / "xylo.rockpool.nir"
    exported = CliRunner().invoke(
        main, ["export", str(run), "--format", "rockpool-nir", "--out", str(nir_file)]
    )
    assert exported.exit_code == 0, exported.output
    stimulus = prepare_stimulus(
        read_deployment(run / "model.nir"), load_dataset("digits-4x4").x_test
    )
    model = load_model(run / "quantized.pt")[0].eval()
    want = model_counts(model, stimulus.inputs)[-1]
    np.save(tmp_path / "frames.npy", stimulus.frames)
    child("rockpool", "import-nir", str(nir_file), str(tmp_path / "spec.npz"))
    child("lava", "run-spec", *(str(tmp_path / f) for f in ("spec.npz", "frames.npy", "out.npy")))
    got = np.load(tmp_path / "out.npy")
    assert np.mean(np.all(got == want, axis=1)) >= 0.99


def test_direct_encoding_is_refused_before_training(tmp_path):
    """Xylo takes 16 input event channels: analog pixels (direct, the image default) are
    refused in one line before anything trains or is written."""
    args = ["fit", "--chip", "xylo", "--dataset", "digits-4x4", *tiny_fit_args(hidden=32)]
    args += ["--backend", "reference"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path), "--name", "run"])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "\n" not in message and "--encoding latency" in message, message
    assert not any(tmp_path.iterdir())
