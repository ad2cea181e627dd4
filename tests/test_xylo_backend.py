"""``--backend xylosim``: SynSense's XyloSim on Rockpool's mapping of a run quantized for Xylo
Audio 2. End to end on ``digits-4x4`` (16 input channels, 8 classes): XyloSim's spike counts
equal the bit-exact emulation's and the trained quantized model's in every layer, for every
sample, and so do the accuracies; without the ``lava`` environment the backend says how to
install it (one line, exit 3) before anything trains."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fit_args import tiny_fit_args

from neuroprune.cli.app import main

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


@pytest.mark.lava
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
