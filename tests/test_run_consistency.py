"""A run never contradicts itself (issue 25, item 4), driven through the CLI.

`quantize RUN --chip OTHER` writes a new run derived from RUN (RUN is byte-identical after it);
`quantize RUN` for the run's own chip rebuilds every file that depends on quantized.pt;
`simulate RUN` records its result in the run. The oracle reads the files themselves (JSON,
YAML, Markdown, text, NIR and ONNX metadata, the model file's stored metadata), never the
code that wrote them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
import torch
import yaml
from click.testing import CliRunner
from fit_args import tiny_fit_args

from neuroprune.cli.app import main

pytestmark = pytest.mark.slow  # every test here runs `neuroprune fit` end to end

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "neuroprune" / "hardware_profiles"
TINY = tiny_fit_args(quant_epochs=None, sparsity=0.8, seed=0)
TEXT_FILES = ("report.json", "fit.json", "simulation.json", "config.yaml", "report.md", "log.txt")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200"})


def fit(out: Path, *extra: str) -> Path:
    result = cli("fit", "--chip", "loihi", "--out", out, "--name", "run", *TINY, *extra)
    assert result.exit_code == 0, result.stderr
    return out / "run"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def stored_meta(model_file: Path) -> dict:
    """The metadata a model file stores (read with torch's safe loader, not neuroprune's)."""
    return json.loads(torch.load(model_file, map_location="cpu", weights_only=True)["meta"])


def shipped_chips() -> dict[str, str]:
    """Every shipped chip: id -> its name (e.g. 'truenorth' -> 'IBM TrueNorth')."""
    chips = {}
    for path in PROFILES.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        chips[data["id"]] = data["name"]
    return chips


def nir_metadata(path: Path) -> dict[str, str]:
    """The graph metadata of a NIR file, as text (read with h5py)."""
    with h5py.File(path, "r") as f:
        group = f["node"].get("metadata", {})
        out = {}
        for key in group:
            value = group[key][()]
            out[key] = value.decode() if isinstance(value, bytes) else str(value)
        return out


def nir_weights(path: Path) -> list[np.ndarray]:
    """The synapse weights of a NIR file in node-name order (forward order)."""
    with h5py.File(path, "r") as f:
        nodes = f["node"]["nodes"]
        return [np.asarray(nodes[n]["weight"][()]) for n in sorted(nodes) if "weight" in nodes[n]]


def brand(chip_id: str) -> str:
    """A chip family's word: the id without a trailing generation number (loihi2 -> loihi)."""
    return re.sub(r"\d+$", "", chip_id)


def words_naming_others(chip_id: str, chips: dict[str, str]) -> re.Pattern:
    """Whole words (any case) that name a chip of another family than ``chip_id``: its id, its
    family word ('TrueNorth' in 'IBM TrueNorth') and its full name."""
    words = set()
    for other, name in chips.items():
        if brand(other) != brand(chip_id):
            words |= {re.escape(other), re.escape(brand(other)), re.escape(name)}
    return re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(words)) + r")(?![a-z])", re.I)


def chip_problems(run_dir: Path, chips: dict[str, str]) -> list[str]:
    """Everything in ``run_dir`` that names a chip other than the one its quantized.pt was
    quantized for (empty when the run is consistent)."""
    chip = stored_meta(run_dir / "quantized.pt")["record"]["chip"]
    other = words_naming_others(chip, chips)
    problems = []
    report = json.loads((run_dir / "report.json").read_text())
    fields = {
        "report.json chip": report["chip"],
        "report.json fit.chip": report["fit"]["chip"],
        "report.json config.chip": report["config"]["chip"],
        "fit.json chip": json.loads((run_dir / "fit.json").read_text())["chip"],
        "config.yaml config.chip": yaml.safe_load((run_dir / "config.yaml").read_text())["config"][
            "chip"
        ],
        "config.yaml profile.id": yaml.safe_load((run_dir / "config.yaml").read_text())["profile"][
            "id"
        ],
        "profile.yaml id": yaml.safe_load((run_dir / "profile.yaml").read_text())["id"],
        "model.nir chip": nir_metadata(run_dir / "model.nir")["chip"],
    }
    problems += [f"{where} = {value!r}" for where, value in fields.items() if value != chip]
    quantized = stored_meta(run_dir / "quantized.pt")["record"]["format"]
    if report["quantized"]["format"] != quantized:
        problems.append(f"report.json quantized.format {report['quantized']['format']!r}")
    texts = {
        name: (run_dir / name).read_text() for name in TEXT_FILES if (run_dir / name).is_file()
    }
    texts["model.nir metadata"] = json.dumps(nir_metadata(run_dir / "model.nir"))
    model = onnx.load(str(run_dir / "model.onnx"), load_external_data=False)
    texts["model.onnx metadata"] = json.dumps({p.key: p.value for p in model.metadata_props})
    for name, text in texts.items():
        problems += [f"{name} names {m.group(0)!r}" for m in other.finditer(text)]
    return problems


def run_folders(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------------------------


def test_the_oracle_sees_a_run_that_names_another_chip(tmp_path):
    """The chip scan can fail: quantized.pt of another chip in a Loihi run is found."""
    out = tmp_path / "runs"
    run_dir = fit(out, "--backend", "none", "--quant-epochs", "0")
    chips = shipped_chips()
    assert chip_problems(run_dir, chips) == []
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in run_dir.iterdir():
        if f.is_file():
            (mixed / f.name).write_bytes(f.read_bytes())
    payload = torch.load(run_dir / "quantized.pt", weights_only=True)
    meta = json.loads(payload["meta"])
    meta["record"]["chip"] = "truenorth"
    payload["meta"] = json.dumps(meta)
    torch.save(payload, mixed / "quantized.pt")
    found = chip_problems(mixed, chips)
    assert "report.json chip = 'loihi'" in found and "model.nir chip = 'loihi'" in found
    assert any(" names " in p and "loihi" in p.lower() for p in found), found


def test_quantize_for_another_chip_writes_a_new_consistent_run(tmp_path):
    """`quantize RUN --chip truenorth` on a Loihi run: a new run RUN-truenorth, named in the
    output, with its own fit check; RUN byte-identical; afterwards no file in any run
    directory names a chip other than the one its weights were quantized for; export and
    simulate of the new run speak of TrueNorth."""
    out = tmp_path / "runs"
    run_dir = fit(out, "--backend", "reference", "--quant-epochs", "1")
    before = snapshot(run_dir)
    result = cli("quantize", run_dir, "--chip", "truenorth")
    assert result.exit_code in (0, 1), result.stderr  # 1: a verdict, "does not fit"
    chips = shipped_chips()
    for folder in run_folders(out):
        assert chip_problems(folder, chips) == [], folder
    assert snapshot(run_dir) == before
    new = out / "run-truenorth"
    assert [p.name for p in run_folders(out)] == ["run", "run-truenorth"]
    assert f"new run {new}" in result.output and "is unchanged" in result.output
    report = json.loads((new / "report.json").read_text())
    assert report["chip"] == "truenorth" and report["fit"]["fits"] == (result.exit_code == 0)
    assert report["derived_from"] == {"run": str(run_dir), "taken": ["dense.pt", "pruned.pt"]}
    assert report["simulation"]["backend"] == "reference"  # the original had a simulation
    assert (new / "pruned.pt").read_bytes() == (run_dir / "pruned.pt").read_bytes()
    assert stored_meta(new / "quantized.pt")["record"]["chip"] == "truenorth"

    exported = cli("export", new)
    assert exported.exit_code == 0, exported.stderr
    assert nir_metadata(new / "model.nir")["chip"] == "truenorth"
    simulated = cli("simulate", new, "--backend", "reference", "--samples", "30")
    assert simulated.exit_code == 0, simulated.stderr
    assert json.loads((new / "report.json").read_text())["simulation"]["samples"] == 30
    for folder in run_folders(out):
        assert chip_problems(folder, chips) == [], folder
    assert sorted(p.name for p in out.iterdir()) == ["run", "run-truenorth"]  # nothing beside


def test_quantize_for_the_runs_own_chip_rewrites_every_dependent_file(tmp_path):
    """`quantize RUN --quant-epochs 1` on a run quantized without fine-tuning: quantized.pt
    changes, and config, report, fit check, NIR weights and simulation all describe the new
    one; dense.pt and pruned.pt are untouched."""
    out = tmp_path / "runs"
    run_dir = fit(out, "--backend", "reference", "--quant-epochs", "0")
    before = snapshot(run_dir)
    result = cli("quantize", run_dir, "--quant-epochs", "1")
    assert result.exit_code == 0, result.stderr
    assert f"rebuilt {run_dir}" in result.output
    after = snapshot(run_dir)
    for name in ("dense.pt", "pruned.pt", "profile.yaml"):
        assert after[name] == before[name], name
    assert after["quantized.pt"] != before["quantized.pt"]

    meta = stored_meta(run_dir / "quantized.pt")
    report = json.loads((run_dir / "report.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())["config"]
    assert meta["inputs"]["quant_epochs"] == config["quant_epochs"] == 1
    assert report["config"]["quant_epochs"] == 1
    assert report["stages"]["quantized"]["inputs_hash"] == meta["inputs_hash"]
    assert report["quantized"]["accuracy_qat"] == meta["record"]["accuracy_qat"]
    fit_json = json.loads((run_dir / "fit.json").read_text())
    assert fit_json["synapses"] == report["fit"]["synapses"] == report["quantized"]["synapses"]
    state = torch.load(run_dir / "quantized.pt", weights_only=True)["state"]
    weights = [state[k].numpy() for k in state if k.endswith(".weight")]
    pairs = zip(nir_weights(run_dir / "model.nir"), weights, strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)
    simulation = json.loads((run_dir / "simulation.json").read_text())
    assert simulation == report["simulation"]
    assert chip_problems(run_dir, shipped_chips()) == []
    assert sorted(p.name for p in out.iterdir()) == ["run"]


def test_simulate_records_its_result_in_the_run(tmp_path):
    """`simulate RUN` on a run fit with --backend none: simulation.json, report.json's
    simulation section, report.md and the spike-rate plot appear; the models and exported
    files are untouched. With another chip it is not recorded."""
    out = tmp_path / "runs"
    run_dir = fit(out, "--backend", "none", "--quant-epochs", "0")
    before = snapshot(run_dir)
    fit_log = (run_dir / "log.txt").read_text()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["simulation"] is None and any("simulation" in s for s in report["stages_not_run"])

    result = cli("simulate", run_dir, "--backend", "reference", "--samples", "40")
    assert result.exit_code == 0, result.stderr
    assert f"recorded in {run_dir}" in result.output
    after = snapshot(run_dir)
    for name in (
        "dense.pt",
        "pruned.pt",
        "quantized.pt",
        "model.nir",
        "model.onnx",
        "config.yaml",
        "profile.yaml",
    ):
        assert after[name] == before[name], name
    report = json.loads((run_dir / "report.json").read_text())
    simulation = json.loads((run_dir / "simulation.json").read_text())
    assert simulation == report["simulation"]
    assert simulation["backend"] == "reference" and simulation["samples"] == 40
    assert not any("simulation" in s for s in report["stages_not_run"])
    assert "plots/spike_rates.png" in report["plots"] and "plots/spike_rates.png" in after
    assert after["report.md"] != before["report.md"]
    assert "reference" in (run_dir / "report.md").read_text()
    log = (run_dir / "log.txt").read_text()
    assert log.startswith(fit_log) and "simulate: reference backend" in log[len(fit_log) :]

    recorded = snapshot(run_dir)
    other = cli(
        "simulate", run_dir, "--backend", "reference", "--samples", "10", "--chip", "tianjic"
    )
    assert "not recorded in the run" in other.output, other.output
    assert snapshot(run_dir) == recorded
    assert sorted(p.name for p in out.iterdir()) == ["run"]


def test_a_derived_run_takes_pruned_pt_even_where_its_budget_would_not_prune(tmp_path, monkeypatch):
    """On the new chip the run's allocation may not bind (fit would skip pruning there); the
    derived run still quantizes RUN's pruned model, not its dense one."""
    from neuroprune.fit.budget import Budget

    out = tmp_path / "runs"
    run_dir = fit(out, "--backend", "none", "--quant-epochs", "0")
    monkeypatch.setattr(Budget, "binds", property(lambda self: False))
    result = cli("quantize", run_dir, "--chip", "truenorth")
    assert result.exit_code in (0, 1), result.stderr
    new = out / "run-truenorth"
    assert (new / "pruned.pt").read_bytes() == (run_dir / "pruned.pt").read_bytes()
    report = json.loads((new / "report.json").read_text())
    pruned = json.loads((run_dir / "report.json").read_text())["pruned"]
    assert report["pruned"]["synapses"] == pruned["synapses"] < report["dense"]["synapses"]
    assert "skipped" not in report["pruned"]
