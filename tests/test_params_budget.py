"""``--params F``: the budget becomes ``floor(F * dense)`` when that is below the chip's, and a
classifier's fit run keeps exactly that many synapses."""

from __future__ import annotations

import json

from click.testing import CliRunner

from neuroprune.cli.app import main
from neuroprune.fit.budget import Budget
from neuroprune.pipeline.preflight import with_params


def test_the_smallest_budget_wins():
    chip = Budget(synapses=900, source="chip:loihi", dense_synapses=1000, binding="chip")
    lowered = with_params(chip, 0.25)
    assert (lowered.synapses, lowered.binding, lowered.source) == (250, "params", "--params 0.25")
    assert with_params(chip, 0.95) is chip  # 950 > 900: the chip's budget stays
    assert with_params(chip, None) is chip


def test_a_classifier_fit_keeps_floor_params_times_dense(tmp_path):
    args = "fit --chip loihi --dataset digits --epochs 1 --prune-epochs 1 --finetune-epochs 0"
    result = CliRunner().invoke(
        main,
        [*args.split(), "--quant-epochs", "0", "--params", "0.3", "--backend", "none",
         "--out", str(tmp_path), "--name", "c"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert report["budget"]["synapses"] == int(0.3 * report["dense"]["synapses"])
    assert report["pruned"]["synapses"] == report["budget"]["synapses"]
