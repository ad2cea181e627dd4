"""The report's NeuroBench metrics (``neuroprune.sim.neurobench``, report.json ``neurobench``).

The oracle is a network small enough to count by hand: two fully connected layers of
neuroprune's strict IF neurons (fire on ``v > 1``, hard reset to 0, no leak), binary input
spikes, T = 2, two samples. Every figure below is worked out in the comments, not computed by
neuroprune or NeuroBench code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer
from torch.nn.utils import prune

from neuroprune.core.errors import BackendUnavailableError
from neuroprune.models.neurons import IFNode
from neuroprune.reports.neurobench_section import neurobench_markdown
from neuroprune.run.record import NeuroBenchRecord, RunRecord
from neuroprune.sim.neurobench import baked_copy, neurobench_metrics

# W1 (3 inputs -> 2 neurons): 3 of its 6 entries are zero; W2 (2 -> 2): 2 of 4 are zero.
W1 = [[1.0, 0.0, 1.0], [0.0, 0.0, 2.0]]
W2 = [[1.5, 0.0], [0.0, 1.5]]
# x[t, n, i]: sample A fires inputs 0 and 2 at t=0 and input 2 at t=1; sample B fires inputs
# 0 and 1 at t=0 and nothing at t=1.
X = np.array(
    [[[1, 0, 1], [1, 1, 0]], [[0, 0, 1], [0, 0, 0]]],
    dtype=np.float32,
)
LABELS = np.array([1, 0])


def _tiny() -> torch.nn.Sequential:
    net = torch.nn.Sequential(
        layer.Linear(3, 2, bias=False, step_mode="m"),
        IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m"),
        layer.Linear(2, 2, bias=False, step_mode="m"),
        IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m"),
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[2].weight.copy_(torch.tensor(W2))
    return net


@pytest.mark.neurobench
def test_neurobench_metrics_of_a_tiny_network_counted_by_hand():
    got = neurobench_metrics(_tiny(), X, LABELS)
    results = got["results"]
    # 10 weight entries, 5 of them zero
    assert results["ParameterCount"] == 10
    assert results["ConnectionSparsity"] == 0.5
    # 10 float32 parameters, no buffers: 40 bytes
    assert results["Footprint"] == 40
    # Layer 1 currents: A t0 = [1+1, 2] -> v [2, 2] -> both fire, reset; A t1 = [1, 2] -> v
    # [1, 2] -> only neuron 1 fires (1 is not > 1). B t0 = [1, 0] -> v [1, 0] -> none;
    # B t1 = [0, 0] -> v [1, 0] -> none. Layer 1 spikes: A [1,1], [0,1]; B none: 3 spikes.
    # Layer 2: A t0 in [1, 1] -> [1.5, 1.5] fire both; A t1 in [0, 1] -> [0, 1.5] -> neuron 1.
    # B none. Layer 2 spikes: 3. Outputs 2 layers x 2 neurons x T 2 x N 2 = 16; 6 are spikes.
    assert results["ActivationSparsity"] == pytest.approx(1 - 6 / 16)
    # ACs (binary inputs): each input spike x the nonzero weights of its column.
    # W1 columns hold 1, 0, 2 nonzeros. A: t0 inputs 0, 2 -> 1 + 2; t1 input 2 -> 2; B: t0
    # inputs 0, 1 -> 1 + 0. Layer 1: 6. W2 columns hold 1, 1: A t0 2 spikes -> 2, t1 1 -> 1.
    # Layer 2: 3. Total 9 over 2 samples: 4.5 per sample; no MACs (no analog input).
    ops = results["SynapticOperations"]
    assert ops["Effective_ACs"] == pytest.approx(9 / 2)
    assert ops["Effective_MACs"] == 0
    # Dense: every input active on every weight, T = 2 steps: 2 x (6 + 4) per sample
    assert ops["Dense"] == 2 * (6 + 4)
    # output counts A [1, 2] -> class 1 (label 1); B [0, 0] -> class 0 (first index on the
    # tie; label 0): both right
    assert results["ClassificationAccuracy"] == pytest.approx(1.0)
    assert got["activation_layers"] == ["1", "3"]  # neuroprune's IF neurons were hooked


@pytest.mark.neurobench
def test_a_pruning_mask_kept_apart_is_written_into_the_weights():
    """A torch.nn.utils.prune mask on W2's diagonal (zeroes its two nonzeros): NeuroBench must
    see 7 zeros of 10, and no operation of layer 2 is left."""
    net = _tiny()
    prune.custom_from_mask(net[2], "weight", torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    baked = baked_copy(net)
    assert not hasattr(baked[2], "weight_orig") and hasattr(net[2], "weight_orig")
    results = neurobench_metrics(net, X, LABELS)["results"]
    assert results["ConnectionSparsity"] == 0.7
    # layer 1 as above (6 ACs, 3 spikes); layer 2 has no weight left: 0 ACs, 0 spikes
    assert results["SynapticOperations"]["Effective_ACs"] == pytest.approx(6 / 2)
    assert results["ActivationSparsity"] == pytest.approx(1 - 3 / 16)


def test_without_the_environment_the_metrics_are_not_computed(tmp_path, monkeypatch):
    """No neurobench environment: the parent raises the one-line fix, and the report says
    the metrics were not computed and why, with no figure in their place."""
    monkeypatch.setenv("NEUROPRUNE_ENVS", str(tmp_path / "none"))
    with pytest.raises(BackendUnavailableError) as info:
        neurobench_metrics(_tiny(), X, LABELS)
    reason = info.value.one_line()
    assert "neuroprune backends install neurobench" in reason and "\n" not in reason
    record = RunRecord(chip="loihi", budget={"synapses": 5, "source": "test"})
    record.neurobench = NeuroBenchRecord(computed=False, reason=reason, model="quantized")
    lines = "\n".join(neurobench_markdown(record))
    assert "Not computed" in lines and reason in lines and "|" not in lines
    written = json.loads(json.dumps(record.as_dict()))["neurobench"]
    assert written["computed"] is False and written["results"] == {}


@pytest.mark.neurobench
@pytest.mark.slow
def test_a_fit_runs_report_carries_neurobenchs_metrics(tmp_path):
    """A tiny fit on Loihi, simulated bit-exact: report.json ``neurobench`` holds NeuroBench's
    figures of the quantized model, and each one that has a neuroprune counterpart in the same
    file (the chip's synapses over the dense positions, the simulation's synaptic operations
    and spikes, its accuracy) agrees with it; report.md shows the section."""
    from click.testing import CliRunner
    from fit_args import tiny_fit_args

    from neuroprune.cli.app import main

    args = ["fit", "--chip", "loihi", "--out", str(tmp_path), "--name", "run"]
    args += [*tiny_fit_args(sparsity=0.8, seed=0), "--backend", "reference", "--samples", "60"]
    args += ["--neurobench"]  # the suite's default is off (tests/conftest.py)
    result = CliRunner().invoke(main, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    section, sim = report["neurobench"], report["simulation"]
    assert section["computed"] and section["model"] == "quantized" and section["samples"] == 60
    got = section["results"]
    dense = sum(row["dense"] for row in report["pruned"]["layers"])  # an mlp: no conv sharing
    kept = report["quantized"]["synapses"]
    assert got["ConnectionSparsity"] == round(1 - kept / dense, 4)
    ops = got["SynapticOperations"]
    assert ops["Effective_MACs"] + ops["Effective_ACs"] == pytest.approx(sim["synops_per_sample"])
    spikes = sum(row["spikes"] for row in sim["layers"])
    outputs = section["timesteps"] * 60 * sum(row["neurons"] for row in sim["layers"])
    assert got["ActivationSparsity"] == pytest.approx(1 - spikes / outputs)
    assert got["ClassificationAccuracy"] == pytest.approx(sim["accuracy"])
    assert section["chip_memory_bits"] == sum(c["memory_bits"] for c in report["fit"]["per_core"])
    assert all(row["agree"] is not False for row in section["cross_check"])
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "## NeuroBench metrics" in markdown and "Footprint" in markdown


def test_no_neurobench_says_so_in_the_report(tmp_path):
    """``--no-neurobench``: the report says the metrics were not computed and why."""
    from click.testing import CliRunner
    from fit_args import tiny_fit_args

    from neuroprune.cli.app import main

    args = ["fit", "--chip", "loihi", "--out", str(tmp_path), "--name", "run", "--backend"]
    args += ["none", "--no-neurobench", *tiny_fit_args(sparsity=0.8, seed=0)]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    section = json.loads((tmp_path / "run" / "report.json").read_text())["neurobench"]
    assert section["computed"] is False and section["reason"] == "--no-neurobench"
    assert section["results"] == {} and section["cross_check"] == []
    assert "Not computed: --no-neurobench" in (tmp_path / "run" / "report.md").read_text()
