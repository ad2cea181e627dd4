"""Speck runs as Speck does (issue 24): what ``fit --chip speck`` refuses before training (one
line, exit 2, no run directory), and where the layers go (one whole layer per core)."""

from __future__ import annotations

import re

import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner
from fit_args import tiny_fit_args
from spikingjelly.activation_based import layer

from neuroprune.chip.profiles import load_profile
from neuroprune.cli.app import main
from neuroprune.core.summary import LayerSummary as layer_summary
from neuroprune.core.summary import NetworkSummary
from neuroprune.fit.rules import check_fit
from neuroprune.models.neurons import IFNode
from neuroprune.models.translate import summarize


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((), "speck_iaf has no LIF neuron.*--neuron if"),  # the defaults: LIF, direct
        (("--neuron", "if"), "spike events only.*--encoding latency"),
        (("--neuron", "if", "--encoding", "direct"), "spike events only"),
    ],
)
def test_speck_refuses_lif_and_analog_input_before_training(tmp_path, options, message):
    args = ["fit", "--chip", "speck", "--model", "conv", *options, "--backend", "none"]
    args += [*tiny_fit_args(), "--out", str(tmp_path), "--name", "run"]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(message, errors[0])
    assert "dense:" not in result.output  # nothing trained
    assert not (tmp_path / "run").exists()


def test_speck_lower_bound_and_placement_are_one_layer_per_core():
    """Three small layers that would share one core by size take three cores (the ones
    Sinabs' mapper picks), and the lower bound says so."""
    model = torch.nn.Sequential(
        layer.Conv2d(1, 2, 3, padding=1, bias=False, step_mode="m"),
        IFNode(step_mode="m"),
        layer.Conv2d(2, 2, 3, padding=1, bias=False, step_mode="m"),
        IFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(2 * 8 * 8, 10, bias=False, step_mode="m"),
        IFNode(step_mode="m"),
    )
    report = check_fit(summarize(model, (1, 8, 8), 4), load_profile("speck"))
    assert report.fits and report.cores_lower_bound == 3
    assert sorted(c for cores in report.core_map.values() for c in cores) == [0, 1, 2]


def _one_conv_layer(out_hw: tuple[int, int]) -> NetworkSummary:
    """One 16 x 16 conv, 1 -> 256 channels: 1 * 2**(8 + 8) = 65,536 kernel entries, which
    only cores 5 and 6 hold (their neuron memory: 16 Ki entries). Connectivity is left empty:
    the memories depend on the shapes only."""
    h, w = out_hw
    in_shape = (1, h + 15, w + 15)
    conv = layer_summary(
        name="0",
        kind="conv",
        in_shape=in_shape,
        out_shape=(256, h, w),
        connectivity=sp.csr_matrix((256 * h * w, h * w), dtype=bool),
        kernel_nonzeros=65536,
        kernel_entries=65536,
        neuron_model="IF",
        conv={"kernel": (16, 16), "stride": 1, "padding": 0, "in_channels": 1, "out_channels": 256},
    )
    return NetworkSummary(layers=(conv,), input_shape=in_shape, timesteps=4)


def test_a_layer_needs_one_core_that_holds_both_its_memories():
    """Issue 24's case: kernel 64 Ki entries (cores 5, 6) and neurons 32 Ki (cores 0-4) fits
    no core, though each memory alone fits some core; with 16 Ki neurons core 5 takes it."""
    profile = load_profile("speck")
    both = check_fit(_one_conv_layer((8, 16)), profile)  # 256 * 2**(3 + 4) = 32,768
    assert not both.fits
    # placed on the free core it overflows least (one memory), so that one is named
    assert len(both.violations) == 1
    assert both.violations[0].rule in ("layer_memory", "layer_neurons")
    small = check_fit(_one_conv_layer((8, 8)), profile)  # 256 * 2**(3 + 3) = 16,384
    assert small.fits and small.core_map == {"0": [5]}


def test_samna_standin_only_answers_imports():
    """The stand-in the Sinabs child puts in place of SynSense's driver: imports and
    annotations resolve, any construction or call raises and is recorded (so a Sinabs path
    that needed the driver could not pass silently)."""
    import subprocess
    import sys

    code = (
        "from neuroprune.sim.sinabs_env import install_samna_standin, standin_facts\n"
        "install_samna_standin()\n"
        "import samna, samnagui\n"
        "from samna.speck2f.configuration import SpeckConfiguration\n"
        "assert isinstance(samna.device.DeviceInfo, type)\n"
        "print(standin_facts()['samna_standin_called'])\n"
        "try:\n"
        "    SpeckConfiguration()\n"
        "except RuntimeError as exc:\n"
        "    print('raised', 'needs the driver' in str(exc))\n"
        "print(standin_facts())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[]" and lines[1] == "raised True"
    assert "samna.speck2f.configuration.SpeckConfiguration" in lines[2]
    assert "'samna_real_imported': False" in lines[2]
